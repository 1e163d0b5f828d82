"""One pass over a dense row block: what building it must check and count."""

import numpy as np
from numba import njit

from .sdca import SUM_ANY_ORDER

__all__ = ["dense_scan"]


@njit(nogil=True, cache=True, fastmath=SUM_ANY_ORDER)
def _row_sq_norm(x):
    # ||x||^2 in float64 (its terms added in any order: vectorized)
    s = 0.0
    for k in range(x.shape[0]):
        v = np.float64(x[k])
        s += v * v
    return s


@njit(nogil=True, cache=True)
def dense_scan(X):
    """``(bad, counts, sq_norms)`` of a dense block ``X`` (n_rows, n_columns) in one
    sequential pass: the first row holding a NaN or an infinity (-1 if none), the
    non-zeros of each column (int64, n_columns) and each row's squared norm (float64,
    n_rows; numpy needs four passes: ``isfinite``, ``!= 0``, a count and ``einsum``,
    the first two with a temporary the size of ``X``)."""
    n, d = X.shape
    counts = np.zeros(d, dtype=np.int64)
    sq_norms = np.empty(n)
    bad = -1
    for i in range(n):
        finite = True
        for k in range(d):
            v = X[i, k]
            counts[k] += v != 0.0
            finite &= v - v == 0.0  # NaN for a NaN or an infinity
        if not finite and bad < 0:
            bad = i
        sq_norms[i] = _row_sq_norm(X[i])
    return bad, counts, sq_norms
