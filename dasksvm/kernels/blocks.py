"""One pass over a dense row block: what building it must check and count."""

import numpy as np
from numba import njit

__all__ = ["dense_scan"]


@njit(nogil=True, cache=True)
def dense_scan(X):
    """The first row of ``X`` (n_rows, n_columns) holding a NaN or an infinity (-1 if
    none) and the non-zeros of each column (int64, n_columns), in one sequential pass
    (numpy needs three: ``isfinite``, ``!= 0`` and a count, each with a temporary the
    size of ``X``)."""
    n, d = X.shape
    counts = np.zeros(d, dtype=np.int64)
    bad = -1
    for i in range(n):
        finite = True
        for k in range(d):
            v = X[i, k]
            counts[k] += v != 0.0
            finite &= v - v == 0.0  # NaN for a NaN or an infinity
        if not finite and bad < 0:
            bad = i
    return bad, counts
