"""Round-robin schedules: the 1-factorization of the complete graph.

A *1-factorization* of the complete graph on ``n`` vertices (``n`` even) is a
list of ``n - 1`` perfect matchings ("rounds") that together contain every
unordered pair exactly once. Within a round no vertex appears twice, so tasks
keyed by the pairs of one round touch disjoint state and can run at the same
time. The Weston-Watkins solver uses it over bundles of classes; nothing here
knows what the vertices stand for.
"""

from __future__ import annotations

__all__ = ["n_rounds", "one_factorization"]


def n_rounds(n):
    """Number of rounds :func:`one_factorization` yields for ``n`` vertices.

    ``n - 1`` for even ``n``, ``n`` for odd ``n`` (a bye is added), 0 for ``n = 0``.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return 0
    return n - 1 if n % 2 == 0 else n


def one_factorization(n):
    """Yield the rounds of a 1-factorization of the complete graph on ``range(n)``.

    The circle method: with ``m`` even vertices, fix vertex ``m - 1`` and rotate
    the others; round ``r`` (``r = 0..m-2``) pairs ``(r, m - 1)`` and
    ``((r + j) mod (m - 1), (r - j) mod (m - 1))`` for ``j = 1..m/2 - 1``.
    When ``n`` is odd a *bye* vertex ``n`` is added (``m = n + 1``) and the pair
    holding it is dropped from each round, so that vertex sits the round out.

    Parameters
    ----------
    n : int >= 0
        Number of vertices.

    Yields
    ------
    list of tuple (a, b)
        One round: disjoint pairs with ``a < b``, sorted. There are
        :func:`n_rounds` ``(n)`` rounds: ``n - 1`` perfect matchings of
        ``n / 2`` pairs for even ``n``; ``n`` matchings of ``(n - 1) / 2``
        pairs for odd ``n`` (each vertex sits out exactly one round; for
        ``n = 1`` the single round is empty). Every unordered pair of
        ``range(n)`` occurs in exactly one round.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return
    m = n if n % 2 == 0 else n + 1  # m - 1 == n is the bye when n is odd
    ring = m - 1
    for r in range(ring):
        pairs = [(r, m - 1)]
        for j in range(1, m // 2):
            pairs.append(((r + j) % ring, (r - j) % ring))
        out = sorted((min(a, b), max(a, b)) for a, b in pairs if a < n and b < n)
        yield out
