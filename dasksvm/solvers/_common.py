"""Small pieces the binary solvers share."""

import numpy as np

from ..parallel import SparseVector


def round_seeds(random_state, n_blocks):
    """A function (round) -> list of per-block int seeds, fixed by random_state."""
    base = int(np.random.RandomState(random_state).randint(0, 2**31 - 1))

    def seeds(t):
        return [int((base + 1_000_003 * t + 7_919 * k) % (2**31 - 1)) for k in range(n_blocks)]

    return seeds


def sparse_or_dense(v, cols):
    """Send only the touched coordinates when they are under a quarter of v."""
    if len(cols) < v.shape[0] // 4:
        return SparseVector(cols, v[cols], v.shape[0])
    return v


def broadcast(client, value):
    """Put ``value`` on every worker once for this round (not hashed: always fresh)."""
    return client.scatter(value, broadcast=True, hash=False)
