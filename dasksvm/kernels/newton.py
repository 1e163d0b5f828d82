"""Squared-hinge (L2-loss) primal kernels for the trust-region Newton method (formulations.md
section 1d), over one CSR block ``(indptr, indices, data)``.

With per-row bounds ``c[i]`` (C times the row's weight), labels ``y[i]`` in {-1, +1} and
m_i = 1 - y_i w.x_i, a block's share of

    f(w)      = 1/2 ||w||^2 + sum_i c_i max(0, m_i)^2
    grad f(w) = w - sum_i beta_i y_i x_i,           beta_i = 2 c_i max(0, m_i)
    H(w) v    = v + sum_{i in I} 2 c_i (x_i.v) x_i,  I = {i : m_i > 0}

without the ``w`` / ``v`` terms, which the caller adds once. beta is also the dual point read
off w (a lower bound of P* for :func:`dasksvm.solvers._common.dual_bound`). Serial, ``nogil``,
cached; the column indices may be global or a block's own (``Block.local_csr``): the vectors
are then of the block's columns.
"""

import numpy as np
from numba import njit

__all__ = ["hessian_vector", "loss_gradient"]


@njit(nogil=True, cache=True)
def loss_gradient(indptr, indices, data, y, c, w, want_diag):
    """One block's share of f(w), of its gradient, of the Hessian's diagonal and its
    active set.

    Parameters
    ----------
    indptr, indices, data : CSR triple of the block
    y, c : ndarray (n_rows,)
        Labels in {-1, +1} and per-row bounds C_i (rows with c_i <= 0 are left out).
    w : ndarray (n_columns,)
        The point (in the columns ``indices`` refer to).
    want_diag : bool
        Also sum the Hessian's diagonal (the preconditioner); else ``diag`` is empty.

    Returns
    -------
    loss : float
        sum_i c_i max(0, m_i)^2 (also sum_i beta_i^2 / (4 c_i), the dual point's square term).
    b_sum : float
        sum_i beta_i.
    u : ndarray (n_columns,)
        sum_i beta_i y_i x_i: the gradient is w - u.
    diag : ndarray (n_columns,) or (0,)
        sum_{i in I} 2 c_i x_ij^2 for every column j: the Hessian's diagonal less 1.
    coef : ndarray (n_rows,)
        2 c_i on the active rows (m_i > 0), 0 elsewhere: the weights of :func:`hessian_vector`.
    """
    n = indptr.shape[0] - 1
    u = np.zeros(w.shape[0])
    diag = np.zeros(w.shape[0] if want_diag else 0)
    coef = np.zeros(n)
    loss = 0.0
    b_sum = 0.0
    for i in range(n):
        ci = c[i]
        if ci <= 0.0:
            continue
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * w[indices[p]]
        m = 1.0 - y[i] * s
        if m <= 0.0:
            continue
        loss += ci * m * m
        b = 2.0 * ci * m
        b_sum += b
        coef[i] = 2.0 * ci
        by = b * y[i]
        for p in range(indptr[i], indptr[i + 1]):
            u[indices[p]] += by * data[p]
        if want_diag:
            for p in range(indptr[i], indptr[i + 1]):
                diag[indices[p]] += 2.0 * ci * data[p] * data[p]
    return loss, b_sum, u, diag, coef


@njit(nogil=True, cache=True)
def hessian_vector(indptr, indices, data, rows, coef, v):
    """sum_{k} coef_k (x_{rows_k}.v) x_{rows_k}: one block's share of H v less v.

    Parameters
    ----------
    indptr, indices, data : CSR triple of the block
    rows : ndarray of int64
        The active rows (``flatnonzero`` of :func:`loss_gradient`'s ``coef``).
    coef : ndarray (len(rows),)
        Their weights 2 c_i.
    v : ndarray (n_columns,)

    Returns
    -------
    out : ndarray (n_columns,)
    """
    out = np.zeros(v.shape[0])
    for k in range(rows.shape[0]):
        i = rows[k]
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * v[indices[p]]
        s *= coef[k]
        if s != 0.0:
            for p in range(indptr[i], indptr[i + 1]):
                out[indices[p]] += s * data[p]
    return out
