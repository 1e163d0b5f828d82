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


def dual_bound(u, a_sum, a_sq, l2):
    """Best dual value along the ray s * beta, s >= 0 (s <= 1 for the hinge).

    For a dual-feasible direction beta with u = w(beta) = sum_i beta_i y_i x_i,
    a_sum = sum_i beta_i and a_sq = sum_i beta_i^2 / (4 c_i),

        D(s beta) = s a_sum - s^2 (||u||^2 / 2 + l2 * a_sq),

    maximized in closed form. Any dual-feasible point bounds P* from below.
    """
    quad = 0.5 * float(u @ u) + (a_sq if l2 else 0.0)
    if quad <= 0.0:
        return 0.0
    s = a_sum / (2.0 * quad)
    s = max(0.0, s if l2 else min(1.0, s))
    return s * a_sum - s * s * quad
