"""The local exact kernel SVM solver: LIBSVM's C-SVC dual by SMO (formulations.md, section 3).

:func:`solve_smo` solves, on one machine and one core,

    max_a  D(a) = e^T a - 1/2 a^T Q a    s.t.  0 <= a_i <= C_i,  y^T a = 0,
    Q_ij = y_i y_j K(x_i, x_j),

by sequential minimal optimisation with the second-order working-set rule of
Fan, Chen and Lin (JMLR 2005), a memory-bounded kernel-row cache and
shrinking, and stops on LIBSVM's rule m(a) - M(a) <= tol (the maximal
violating pair's gap). The numba kernel is :func:`dasksvm.kernels.smo.smo_solve`;
this module validates the input, turns it into plain arrays, restores the
feasibility of a warm start and reads the result.

The fitted function is ``f(x) = sum_i a_i y_i K(x_i, x) + b`` with LIBSVM's
bias ``b = -rho`` (from the free variables).
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..exceptions import ConvergenceWarning
from ..kernels import smo as _k

__all__ = [
    "KERNELS",
    "SMOResult",
    "as_rows",
    "decision_function",
    "dual_objective",
    "feasible_start",
    "resolve_gamma",
    "solve_smo",
]

KERNELS = tuple(_k.KERNELS)

_EMPTY_I = np.zeros(1, dtype=np.int64)
_EMPTY_F = np.zeros(0)
_EMPTY_2D = np.zeros((0, 0))


class SMOResult(NamedTuple):
    """What :func:`solve_smo` returns (a tuple: ``alpha, b, dual, n_iter, status = ...``)."""

    #: (n,) dual variables, 0 <= alpha_i <= C_i, in the input's row order
    alpha: np.ndarray
    #: the bias b = -rho of f(x) = sum_i alpha_i y_i K(x_i, x) + b
    b: float
    #: the dual value D(alpha) = e^T alpha - 1/2 alpha^T Q alpha (maximisation form)
    dual: float
    #: SMO iterations (pairs updated)
    n_iter: int
    #: "converged" (m - M <= tol) or "max_iter"
    status: str


class Rows(NamedTuple):
    """Plain-array rows for the kernels: dense (``Xd``) or CSR (``indptr, indices, data``)."""

    dense: bool
    Xd: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    sqn: np.ndarray
    n_features: int

    @property
    def n_rows(self):
        return self.Xd.shape[0] if self.dense else self.indptr.shape[0] - 1

    def args(self):
        """The positional arguments of the kernels' row description."""
        return (self.dense, self.Xd, self.indptr, self.indices, self.data, self.sqn)


def as_rows(X):
    """:class:`Rows` of a numpy array or a scipy sparse matrix (CSR kept sparse)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        data = np.ascontiguousarray(X.data, dtype=np.float64)
        if not np.all(np.isfinite(data)):
            raise ValueError("X contains NaN or infinity")
        indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(X.indices, dtype=np.int64)
        sqn = _k.sq_norms(False, _EMPTY_2D, indptr, data)
        return Rows(False, _EMPTY_2D, indptr, indices, data, sqn, X.shape[1])
    Xd = np.ascontiguousarray(X, dtype=np.float64)
    if Xd.ndim != 2:
        raise ValueError(f"X must be 2-d, got shape {Xd.shape}")
    if not np.all(np.isfinite(Xd)):
        raise ValueError("X contains NaN or infinity")
    sqn = _k.sq_norms(True, Xd, _EMPTY_I, _EMPTY_F)
    return Rows(True, Xd, _EMPTY_I, _EMPTY_I, _EMPTY_F, sqn, Xd.shape[1])


def resolve_gamma(gamma, X, kernel="rbf"):
    """A positive float gamma: ``"scale"`` is 1 / (n_features Var(X)), ``"auto"`` 1 / n_features.

    As scikit-learn (``"scale"`` falls back to 1.0 when X has zero variance).
    Raises ValueError for gamma <= 0 (ignored, and returned as 1.0, by the linear kernel).
    """
    if isinstance(gamma, str):
        if gamma == "auto":
            return 1.0 / X.shape[1]
        if gamma == "scale":
            if sp.issparse(X):
                m = X.mean()
                var = X.multiply(X).mean() - m * m
            else:
                var = np.asarray(X, dtype=np.float64).var()
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        raise ValueError(f"gamma must be 'scale', 'auto' or a positive float, got {gamma!r}")
    if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not np.isfinite(gamma):
        raise ValueError(f"gamma must be 'scale', 'auto' or a positive float, got {gamma!r}")
    if gamma <= 0:
        if kernel == "linear":
            return 1.0
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    return float(gamma)


def _check_kernel(kernel, degree, coef0):
    if kernel not in _k.KERNELS:
        raise ValueError(f"kernel must be one of {sorted(_k.KERNELS)}, got {kernel!r}")
    if (not isinstance(degree, numbers.Integral) or isinstance(degree, bool)
            or degree < 0):
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    if not isinstance(coef0, numbers.Real) or not np.isfinite(coef0):
        raise ValueError(f"coef0 must be a finite real, got {coef0!r}")


def binary_labels(y):
    """(y in {-1, +1} float64, classes): the second of ``np.unique(y)`` is +1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-d, got shape {y.shape}")
    classes = np.unique(y)
    if classes.shape[0] != 2:
        raise ValueError(f"the SMO solver is binary: y must hold exactly 2 classes, got "
                         f"{classes.shape[0]} ({classes[:5].tolist()})")
    return np.where(y == classes[1], 1.0, -1.0), classes


def row_bounds(C, n):
    """The per-row bounds C_i as an (n,) float64 array (C a positive scalar or array)."""
    c = np.asarray(C, dtype=np.float64)
    if c.ndim == 0:
        c = np.full(n, float(c))
    if c.shape != (n,):
        raise ValueError(f"C must be a scalar or an array of shape ({n},), got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("C must be positive and finite (every C_i > 0)")
    return c


def feasible_start(alpha0, y, c):
    """Project a warm start onto the feasible set's box, then restore y^T a = 0.

    Entries are clipped to [0, C_i]; when sum_i y_i a_i != 0 the alphas of the
    class with the larger sum are scaled down to the other class's sum (which
    stays in the box). Returns a new array.
    """
    a = np.asarray(alpha0, dtype=np.float64)
    if a.shape != y.shape:
        raise ValueError(f"alpha0 must have shape {y.shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("alpha0 contains NaN or infinity")
    a = np.clip(a, 0.0, c)
    pos = y > 0
    s_pos = float(a[pos].sum())
    s_neg = float(a[~pos].sum())
    if s_pos > s_neg:
        a[pos] *= s_neg / s_pos
    elif s_neg > s_pos:
        a[~pos] *= s_pos / s_neg
    a[a < 1e-300] = 0.0
    return a


def _solve_rows(rows, y, c, alpha, kernel, gamma, degree, coef0, tol, cache_size, shrinking,
                max_iter, grad0=None, gbar0=None):
    """Run the kernel on validated plain arrays; returns its raw tuple.

    ``grad0, gbar0``: the gradient ``Q alpha - e`` and ``G_bar`` at ``alpha`` when known
    (both or neither), so that no kernel row is computed before the first iteration.
    """
    n = y.shape[0]
    if max_iter is None:
        max_iter = max(10_000_000, 100 * n)
    cache_floats = int(cache_size * (1 << 20) / 4)
    g0 = _EMPTY_F if grad0 is None else np.ascontiguousarray(grad0, dtype=np.float64)
    gb0 = _EMPTY_F if gbar0 is None else np.ascontiguousarray(gbar0, dtype=np.float64)
    return _k.smo_solve(*rows.args(), y, c, alpha, _k.KERNELS[kernel], float(gamma),
                        float(coef0), int(degree), float(tol), cache_floats, bool(shrinking),
                        int(max_iter), int(rows.n_features), g0, gb0)


def _check_gradient(grad0, gbar0, alpha0, a0, c):
    """Validate a given start gradient: both arrays, alpha0 given and already feasible."""
    if (grad0 is None) != (gbar0 is None):
        raise ValueError("grad0 and gbar0 go together: give both or neither")
    if grad0 is None:
        return None, None
    if alpha0 is None:
        raise ValueError("grad0 and gbar0 need the alpha0 they belong to")
    if np.max(np.abs(a0 - np.asarray(alpha0, dtype=np.float64)), initial=0.0) > \
            1e-12 * float(np.max(c)):
        raise ValueError("grad0 and gbar0 need a feasible alpha0 (0 <= alpha0 <= C, "
                         "y^T alpha0 = 0): projecting it would make them stale")
    out = []
    for name, v in (("grad0", grad0), ("gbar0", gbar0)):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != a0.shape or not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be a finite array of shape {a0.shape}")
        out.append(v)
    return out


def solve_smo(X, y, C=1.0, *, kernel="rbf", gamma="scale", degree=3, coef0=0.0, tol=1e-3,
              cache_size=200, alpha0=None, shrinking=True, max_iter=None, grad0=None,
              gbar0=None):
    """Solve the binary C-SVC dual (LIBSVM's) exactly to ``tol`` on one core.

    Parameters
    ----------
    X : (n, d) ndarray or scipy sparse matrix
        Rows; sparse input is used as CSR (rbf uses precomputed row norms).
    y : (n,) array with exactly two distinct labels; the second of ``np.unique(y)`` is +1.
    C : float or (n,) array, > 0
        The box bound of every alpha_i (per-row bounds carry class or sample weights).
    kernel : {"rbf", "linear", "poly", "sigmoid"}
        scikit-learn's kernels: ``exp(-gamma ||x - z||^2)``, ``x.z``,
        ``(gamma x.z + coef0)^degree``, ``tanh(gamma x.z + coef0)``.
    gamma : float > 0, "scale" or "auto" (scikit-learn's meaning).
    degree : int, coef0 : float.
    tol : float
        Stop when the maximal violating pair's gap m(a) - M(a) <= tol (LIBSVM's ``eps``).
    cache_size : float
        Memory bound of the kernel-row cache in MB (float32 rows; at least two rows).
    alpha0 : (n,) array, optional
        Warm start; projected onto the box and onto y^T a = 0 (:func:`feasible_start`).
    grad0, gbar0 : (n,) arrays, optional (both or neither)
        The gradient ``Q alpha0 - e`` and ``G_bar = sum_{alpha0_j = C_j} C_j Q_:j`` at a
        feasible ``alpha0``, when known (e.g. from a model's decision values); the
        solver then starts iterating at once instead of computing one kernel row per
        non-zero alpha. They are trusted: a wrong gradient gives a wrong answer.
    shrinking : bool
        LIBSVM's shrinking heuristic (the answer does not depend on it).
    max_iter : int, optional
        Iteration cap (LIBSVM's default max(10^7, 100 n)); hitting it warns with
        :class:`~dasksvm.ConvergenceWarning` and returns status "max_iter".

    Returns
    -------
    SMOResult
        ``(alpha, b, dual, n_iter, status)``.
    """
    if not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    if not isinstance(cache_size, numbers.Real) or not cache_size > 0:
        raise ValueError(f"cache_size must be positive (MB), got {cache_size!r}")
    if max_iter is not None and (not isinstance(max_iter, numbers.Integral) or max_iter < 1):
        raise ValueError(f"max_iter must be None or an integer >= 1, got {max_iter!r}")
    _check_kernel(kernel, degree, coef0)
    if X.shape[0] != np.shape(y)[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {np.shape(y)[0]} entries")
    if X.shape[1] < 1:
        raise ValueError("X has 0 features")
    gamma = resolve_gamma(gamma, X, kernel)
    yy, _ = binary_labels(y)
    c = row_bounds(C, yy.shape[0])
    a0 = np.zeros(yy.shape[0]) if alpha0 is None else feasible_start(alpha0, yy, c)
    g0, gb0 = _check_gradient(grad0, gbar0, alpha0, a0, c)
    rows = as_rows(X)
    alpha, _grad, rho, obj, n_iter, gap, status = _solve_rows(
        rows, yy, c, a0, kernel, gamma, degree, coef0, tol, cache_size, shrinking, max_iter,
        g0, gb0)
    st = "converged" if status == 0 else "max_iter"
    if status != 0:
        warnings.warn(f"SMO stopped by max_iter={n_iter} with the violating pair's gap "
                      f"{gap:.3g} > tol={tol}; raise max_iter", ConvergenceWarning, stacklevel=2)
    return SMOResult(alpha, -float(rho), -float(obj), int(n_iter), st)


def decision_function(X, S, coef, b, *, kernel="rbf", gamma=1.0, degree=3, coef0=0.0,
                      chunk=2048):
    """``sum_j coef_j K(s_j, x) + b`` for every row x of X (numpy / scipy).

    ``S`` holds the support vectors; ``coef`` is (n_s,) or (n_s, n_out) (alpha_j y_j),
    ``b`` a scalar or (n_out,). Returns (n,) or (n, n_out).
    """
    A = as_rows(X)
    R = as_rows(S)
    coef = np.asarray(coef, dtype=np.float64)
    one = coef.ndim == 1
    coef2 = np.ascontiguousarray(coef.reshape(coef.shape[0], -1))
    b2 = np.ascontiguousarray(np.broadcast_to(np.asarray(b, dtype=np.float64),
                                              (coef2.shape[1],)))
    nf = max(A.n_features, R.n_features)
    out = _k.decision_block(*A.args(), *R.args(), coef2, b2, _k.KERNELS[kernel], float(gamma),
                            float(coef0), int(degree), int(nf), int(chunk))
    return out[:, 0] if one else out


def dual_objective(X, y, alpha, *, kernel="rbf", gamma=1.0, degree=3, coef0=0.0):
    """D(alpha) = sum_i alpha_i - 1/2 sum_ij alpha_i alpha_j y_i y_j K_ij, in float64."""
    yy = np.asarray(y, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    sv = np.flatnonzero(alpha > 0)
    if sv.size == 0:
        return 0.0
    Xs = X[sv]
    v = alpha[sv] * yy[sv]
    Kv = decision_function(Xs, Xs, v, 0.0, kernel=kernel, gamma=gamma, degree=degree,
                           coef0=coef0)
    return float(alpha[sv].sum() - 0.5 * v @ Kv)
