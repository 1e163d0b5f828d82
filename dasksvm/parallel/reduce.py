"""All-reduce and tree reduction over futures (no SVM mathematics here).

A *partial* is what one block sends to a reduction: a float, a dense
``numpy`` array, a :class:`SparseVector` (indices and values of the touched
coordinates), a :class:`SparseRows` (the touched rows of a matrix), or a
tuple / dict nesting any of those. :func:`add_partials` adds two partials of
the same structure; sparse + sparse vectors stay sparse until they fill a
quarter of the vector, then become dense; sparse rows stay sparse rows.
"""

from __future__ import annotations

import functools
import uuid
from typing import NamedTuple

import numpy as np

__all__ = [
    "SparseRows",
    "SparseVector",
    "add_partials",
    "allreduce",
    "new_token",
    "partial_nbytes",
    "reduce_task_count",
    "to_dense",
    "tree_reduce",
]


class _Sparse(NamedTuple):
    """Entries ``indices`` (sorted, unique) along the first axis of an array of
    length ``size``, and their ``values``."""

    indices: np.ndarray
    values: np.ndarray
    size: int

    @property
    def nbytes(self):
        return int(self.indices.nbytes + self.values.nbytes)

    def toarray(self):
        out = np.zeros((self.size, *self.values.shape[1:]), dtype=self.values.dtype)
        out[self.indices] = self.values
        return out


class SparseVector(_Sparse):
    """The non-zeros of a length-``size`` vector: sorted unique ``indices``, ``values``."""

    __slots__ = ()


class SparseRows(_Sparse):
    """Rows ``indices`` (sorted, unique) of a ``(size, K)`` matrix, with their ``values``."""

    __slots__ = ()

    @classmethod
    def from_local(cls, cols, values, size):
        """Keep only the rows of a block-local (len(cols), K) change that are non-zero."""
        nz = np.flatnonzero(np.any(values != 0.0, axis=1))
        if len(nz) == len(cols):
            return cls(cols, values, size)
        return cls(cols[nz], values[nz], size)


def new_token():
    """A short random token that keeps task keys of different fits apart."""
    return uuid.uuid4().hex[:8]


def to_dense(v):
    """A dense copy of a dense, :class:`SparseVector` or :class:`SparseRows` partial."""
    if isinstance(v, _Sparse):
        return v.toarray()
    return np.asarray(v)


def _add_sparse(a, b):
    if a.size != b.size:
        raise ValueError(f"cannot add sparse vectors of sizes {a.size} and {b.size}")
    if len(a.indices) + len(b.indices) > a.size // 4:
        out = a.toarray()
        out[b.indices] += b.values
        return out
    idx = np.concatenate([a.indices, b.indices])
    val = np.concatenate([a.values, b.values])
    uniq, inv = np.unique(idx, return_inverse=True)
    return SparseVector(uniq, np.bincount(inv, weights=val, minlength=len(uniq)), a.size)


def _add_rows(a, b):
    if len(a.indices) == 0:
        return b
    if len(b.indices) == 0:
        return a
    if a.size != b.size or a.values.shape[1] != b.values.shape[1]:
        raise ValueError("cannot add SparseRows of different shapes")
    idx = np.union1d(a.indices, b.indices)
    vals = np.zeros((len(idx), a.values.shape[1]))
    vals[np.searchsorted(idx, a.indices)] += a.values
    vals[np.searchsorted(idx, b.indices)] += b.values
    return SparseRows(idx, vals, a.size)


def add_partials(a, b):
    """Sum of two partials with the same nesting (see the module docstring)."""
    if isinstance(a, SparseVector) and isinstance(b, SparseVector):
        return _add_sparse(a, b)
    if isinstance(a, SparseRows) and isinstance(b, SparseRows):
        return _add_rows(a, b)
    if isinstance(a, _Sparse) and isinstance(b, _Sparse):
        raise TypeError(f"cannot add a {type(a).__name__} and a {type(b).__name__}")
    if isinstance(a, _Sparse):
        a, b = b, a
    if isinstance(b, _Sparse):
        # checked before the tuple case: the sparse types are NamedTuples
        out = np.array(a, dtype=np.result_type(a, b.values), copy=True)
        out[b.indices] += b.values
        return out
    if isinstance(a, tuple):
        return tuple(add_partials(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: add_partials(a[k], b[k]) for k in a}
    return a + b


def partial_nbytes(p):
    """Bytes a partial occupies on the wire (arrays' buffers; 8 per scalar)."""
    if isinstance(p, (_Sparse, np.ndarray)):
        return int(p.nbytes)
    if isinstance(p, tuple):
        return sum(partial_nbytes(x) for x in p)
    if isinstance(p, dict):
        return sum(partial_nbytes(x) for x in p.values())
    return 8


def _combine_list(combine, *parts):
    return combine(list(parts))


def tree_reduce(client, futures, combine, *, split_every=2, key_prefix="tree-reduce", token=None):
    """Reduce futures by a tree of ``combine`` tasks with fan-in ``split_every``.

    Parameters
    ----------
    client : distributed.Client
    futures : list of Future
        The leaves, in order.
    combine : callable
        ``combine(list_of_values) -> value``; called on at most ``split_every``
        consecutive values of one level. A group of one is passed up unchanged.
    split_every : int >= 2
        Fan-in of the tree.
    key_prefix : str
        Task keys are ``f"{key_prefix}-l{level}-n{node}-{token}"``, so the
        dashboard shows each level of the tree by name.
    token : str, optional
        Suffix that keeps keys of different calls apart (random by default).

    Returns
    -------
    Future
        The root. With one leaf the leaf itself is returned.
    """
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    if not futures:
        raise ValueError("tree_reduce needs at least one future")
    token = token or new_token()
    level = 0
    futures = list(futures)
    while len(futures) > 1:
        nxt = []
        for node, start in enumerate(range(0, len(futures), split_every)):
            group = futures[start : start + split_every]
            if len(group) == 1:
                nxt.append(group[0])
                continue
            nxt.append(
                client.submit(
                    _combine_list,
                    combine,
                    *group,
                    key=f"{key_prefix}-l{level}-n{node}-{token}",
                    pure=False,
                )
            )
        futures = nxt
        level += 1
    return futures[0]


def allreduce(client, futures, *, split_every=8, key_prefix="allreduce", token=None):
    """Sum the partials held by ``futures`` and return the sum on the client.

    The partials are summed by a tree of tasks with fan-in ``split_every`` on
    the workers until at most ``split_every`` remain; those are gathered and
    added on the client (measured here: gathering up to 8 vectors of 50k
    floats and adding them locally costs less than one more task level).
    The caller broadcasts whatever the next round needs from the sum.

    Returns
    -------
    total : partial
        The sum, with the nesting of the inputs.
    nbytes : int
        Bytes moved by the reduction: every partial sent once up the tree.
    """
    token = token or new_token()
    futures = list(futures)
    level = 0
    while len(futures) > split_every:
        nxt = []
        for node, start in enumerate(range(0, len(futures), split_every)):
            group = futures[start : start + split_every]
            nxt.append(
                client.submit(
                    _combine_list,
                    _sum_leaves if level == 0 else _sum_counted,
                    *group,
                    key=f"{key_prefix}-l{level}-n{node}-{token}",
                    pure=False,
                )
            )
        futures = nxt
        level += 1
    parts = client.gather(futures)
    if level == 0:
        return _sum_leaves(parts)
    return _sum_counted(parts)


def _sum_leaves(parts):
    """First tree level: raw partials in, (sum, bytes received) out."""
    return functools.reduce(add_partials, parts), sum(partial_nbytes(p) for p in parts)


def _sum_counted(parts):
    """Higher levels: (partial, bytes so far) pairs in, the same out."""
    total = functools.reduce(add_partials, [p for p, _ in parts])
    return total, sum(b + partial_nbytes(p) for p, b in parts)


def reduce_task_count(n_parts, split_every=8):
    """Tasks :func:`allreduce` submits for ``n_parts`` partials."""
    count = 0
    while n_parts > split_every:
        n_parts = -(-n_parts // split_every)
        count += n_parts
    return count
