"""Kernel approximations (random Fourier, orthogonal random and Nystroem features) and
the scaler that goes before them.

Three scikit-learn transformers that map rows x (n_features,) to explicit
features z(x) (n_components,) with z(x).z(x') ~ k(x, x'), so that a linear
SVM on z (:class:`dasksvm.LinearSVC`, :class:`dasksvm.MulticlassSVC`)
approximates a kernel SVM:

* :class:`RandomFourierFeatures` (Rahimi and Recht, 2007), the RBF kernel;
* :class:`OrthogonalRandomFeatures` (Yu et al., 2016), the RBF kernel with
  orthogonal frequencies (lower variance at the same D);
* :class:`Nystroem` (Williams and Seeger, 2001), any of rbf, linear, poly,
  sigmoid, from landmark rows of the training data.

and :class:`MaxAbsScaler`, scikit-learn's scaler of sparse data, blockwise: the
scikit-learn one (like every scikit-learn transformer) calls ``numpy.asarray``
on its input, which turns a dask array of CSR blocks into a 0-d object array
("Expected 2D array, got scalar array instead"), and dask-ml's scalers do not
take sparse blocks either.

Input: numpy arrays, scipy sparse matrices (any format, used as CSR) and
dask arrays of dense or scipy-CSR blocks chunked along rows only. On dask
input ``transform`` is lazy (one ``map_blocks`` task per row block, dense
output blocks of ``dtype``, the row chunks kept); ``fit`` draws the
parameters only (the random features need only ``n_features``; Nystroem
gathers its landmark rows from the blocks that hold them, on the workers).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted

from ..kernels.features import csr_affine
from ..parallel.seeds import Seeds
from ..utils.validation import check_choice_params, check_scalar_params, check_X
from ._base import is_dask, set_init_params

__all__ = ["MaxAbsScaler", "Nystroem", "OrthogonalRandomFeatures", "RandomFourierFeatures"]

_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
_KERNELS = ("rbf", "linear", "poly", "sigmoid")


# --------------------------------------------------------------------------- helpers


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    # (dtype is None would be float64 to numpy: not accepted as a choice here)
    if dtype is None or dt is None or dt not in _DTYPES:
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}")
    return dt


def _as_block(x):
    """One block (or in-memory X) as CSR float64 or a 2-d float64 ndarray."""
    if hasattr(x, "to_scipy_sparse"):  # pydata sparse
        x = x.to_scipy_sparse()
    if sp.issparse(x):
        return sp.csr_matrix(x, dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def _check_finite_block(x):
    data = x.data if sp.issparse(x) else x
    if not np.isfinite(data).all():
        raise ValueError("X contains NaN or infinity")


def _check_n_features(est, X):
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input"
        )


def _map_rows(X, func, n_out, dtype, *args):
    """``func(block, *args)`` per row block of dask X: a lazy (n_samples, n_out) array.

    Array arguments travel as one delayed object each (a single key on a
    cluster, sent once per worker) rather than copied into every task.
    """
    import dask

    args = [dask.delayed(a, pure=True) if isinstance(a, np.ndarray) or sp.issparse(a) else a
            for a in args]
    return X.map_blocks(
        func, *args, True,
        chunks=(X.chunks[0], (n_out,)), dtype=dtype, meta=np.empty((0, 0), dtype=dtype),
    )


def _sq_norms(A):
    if sp.issparse(A):
        return np.asarray(A.multiply(A).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", A, A)


def _dot_t(A, B):
    """Dense float64 A @ B.T for dense or CSR A, B."""
    if sp.issparse(B):
        out = B @ A.T
        out = out.toarray() if sp.issparse(out) else np.asarray(out)
        return np.ascontiguousarray(out.T)
    out = A @ B.T
    return out.toarray() if sp.issparse(out) else np.asarray(out)


def pairwise_kernel(A, B, kernel, gamma, degree, coef0, b_sq=None):
    """The kernel matrix k(a_i, b_j), shape (len(A), len(B)), float64.

    rbf: exp(-gamma ||a - b||^2) (the squared distance from the dot
    products, clipped at 0); linear: a.b; poly: (gamma a.b + coef0)^degree;
    sigmoid: tanh(gamma a.b + coef0). ``b_sq`` are B's squared row norms
    (rbf only; computed when None).
    """
    K = _dot_t(A, B)
    if kernel == "linear":
        return K
    if kernel == "poly":
        K *= gamma
        K += coef0
        return K**degree
    if kernel == "sigmoid":
        K *= gamma
        K += coef0
        return np.tanh(K, out=K)
    # rbf: -gamma (|a|^2 + |b|^2 - 2 a.b), at most 0
    b_sq = _sq_norms(B) if b_sq is None else b_sq
    K *= 2.0 * gamma
    K -= gamma * _sq_norms(A)[:, None]
    K -= gamma * b_sq[None, :]
    np.minimum(K, 0.0, out=K)
    return np.exp(K, out=K)


# --------------------------------------------------------------------------- random features


#: rows of x W + b computed at a time: a float64 slab of about 2 MB, kept in cache
#: between the product, the cos and the scaling (no n x D float64 temporary)
_SLAB_BYTES = 2**21


def _cos_block(x, W, b, dtype, check_finite=False):
    """sqrt(2 / D) cos(x W + b) of one block, dense (n, D) of ``dtype``.

    Computed in slabs of rows: x W + b in float64 (BLAS for dense rows,
    :func:`~dasksvm.kernels.features.csr_affine` for CSR), then for float32 rounded
    into the output and the cos taken there (numpy's float32 cos is vectorized:
    measured 12x faster than its float64 cos on 98,000 x 100), then scaled.
    """
    x = _as_block(x)
    if check_finite:
        _check_finite_block(x)
    n, D = x.shape[0], W.shape[1]
    out = np.empty((n, D), dtype=dtype)
    scale = math.sqrt(2.0 / D)
    rows = max(1, _SLAB_BYTES // (8 * D))
    slab = None if dtype == np.float64 else np.empty((min(rows, n), D))
    sparse = sp.issparse(x)
    for a in range(0, n, rows):
        e = min(a + rows, n)
        o = out[a:e]
        P = o if slab is None else slab[: e - a]
        if sparse:
            xs = x[a:e]
            csr_affine(xs.indptr, xs.indices, xs.data, W, b, P)
        else:
            np.matmul(x[a:e], W, out=P)
            P += b
        if slab is not None:
            o[...] = P
        np.cos(o, out=o)
        o *= scale
    return out


class _RandomFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What RFF and ORF share: parameters, fit (draw W, b), transform (the cos map)."""

    def __init__(self, gamma=1.0, n_components=100, random_state=None, dtype=np.float64):
        set_init_params(self, locals())

    def _check_params(self):
        check_scalar_params(self, {
            "gamma": ("real", 0.0, None, True),
            "n_components": ("int", 1, None, False),
        })
        return _check_dtype(self.dtype)

    def _draw_weights(self, n_features, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y=None):
        """Draw the frequencies W and the offsets b; only X's number of columns is used.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
            Checked (in-memory input for NaN / infinity; dask input only for
            its shape and chunks: nothing is computed).
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        X = check_X(X)
        d = X.shape[1]
        seeds = Seeds(self.random_state)
        ss_w, ss_b = seeds.sequence(0), seeds.sequence(1)
        self.random_weights_ = np.ascontiguousarray(
            self._draw_weights(d, np.random.default_rng(ss_w)), dtype=np.float64
        )
        self.random_offset_ = np.random.default_rng(ss_b).uniform(
            0.0, 2.0 * np.pi, size=self.n_components
        )
        self.n_features_in_ = d
        return self

    def transform(self, X):
        """z(X) = sqrt(2 / D) cos(X W + b), shape (n_samples, n_components).

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)

        Returns
        -------
        ndarray or dask array of shape (n_samples, n_components), of ``dtype``
            Dense. For dask X a lazy array with X's row chunks (a block
            holding NaN or infinity raises a ValueError when computed).
        """
        check_is_fitted(self)
        dtype = _check_dtype(self.dtype)
        X = check_X(X)
        _check_n_features(self, X)
        W, b = self.random_weights_, self.random_offset_
        if is_dask(X):
            return _map_rows(X, _cos_block, W.shape[1], dtype, W, b, dtype)
        return _cos_block(X, W, b, dtype)

    @property
    def _n_features_out(self):
        return self.random_offset_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        try:
            tags.transformer_tags.preserves_dtype = [_check_dtype(self.dtype).name]
        except ValueError:
            pass
        return tags


class RandomFourierFeatures(_RandomFeatures):
    """Random Fourier features of the RBF kernel (Rahimi and Recht, NIPS 2007).

    The map

        z(x) = sqrt(2 / D) cos(x W + b),   W in R^{n_features x D},
        W_jk ~ N(0, 2 gamma),  b_k ~ U[0, 2 pi]  (all independent),

    has E[z(x).z(x')] = k(x, x') = exp(-gamma ||x - x'||^2), and the error of
    the estimate is a Monte-Carlo average of D independent terms: its
    standard deviation falls like D^{-1/2}. The estimator of scikit-learn's
    ``RBFSampler`` (same parameters and the same ``random_weights_`` /
    ``random_offset_`` layout; the draws differ).

    Parameters
    ----------
    gamma : float > 0, default=1.0
        The RBF kernel's parameter.
    n_components : int >= 1, default=100
        D, the number of features.
    random_state : int, RandomState, Generator or None, default=None
        Seeds a :class:`numpy.random.SeedSequence`, whose two children draw
        W and b.
    dtype : numpy.float64 or numpy.float32, default=numpy.float64
        Of the output. x W + b is computed in float64; for float32 it is then
        rounded to float32 and the cos taken in float32 (numpy's float32 cos
        is vectorized, about 10x faster than its float64 one; the error, about
        1e-7 (1 + |x W + b|), is far below the map's own D^{-1/2}). A
        float32 output also halves the blocks of :class:`dasksvm.LinearSVC`
        (dense float32 rows, 4 bytes a value).

    Attributes
    ----------
    random_weights_ : ndarray of shape (n_features, n_components)
        W.
    random_offset_ : ndarray of shape (n_components,)
        b.
    n_features_in_ : int

    Notes
    -----
    ``fit`` draws W and b and reads nothing of X but its number of columns.
    ``transform`` computes X W on BLAS for dense blocks and with the numba
    kernel :func:`dasksvm.kernels.features.csr_affine` for CSR blocks (cost
    O(nnz D)), then the cos in place. On dask input it is a lazy
    ``map_blocks`` keeping the row chunks.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksvm import RandomFourierFeatures
    >>> X = np.random.default_rng(0).normal(size=(5, 3))
    >>> RandomFourierFeatures(gamma=0.5, n_components=64, random_state=0).fit_transform(X).shape
    (5, 64)
    """

    def _draw_weights(self, n_features, rng):
        return rng.standard_normal((n_features, self.n_components)) * math.sqrt(2.0 * self.gamma)


class OrthogonalRandomFeatures(_RandomFeatures):
    """Orthogonal random features of the RBF kernel (Yu et al., NIPS 2016).

    As :class:`RandomFourierFeatures`, z(x) = sqrt(2 / D) cos(x W + b) with
    b_k ~ U[0, 2 pi], but the frequencies (the columns of W, rows of W^T)
    come in blocks of d = n_features mutually orthogonal vectors:

        W^T = (1 / sigma) [S_1 Q_1; S_2 Q_2; ...] truncated to D rows,
        sigma = 1 / sqrt(2 gamma),

    with Q_i a uniformly random (Haar) d x d orthogonal matrix (QR of a
    standard Gaussian matrix, signs fixed by diag(R)) and S_i diagonal with
    entries drawn from the chi distribution with d degrees of freedom, so
    that each frequency has the norm distribution of a N(0, 2 gamma I)
    vector. Each frequency is therefore distributed as in RFF (the estimate
    is unbiased) but frequencies of one block are orthogonal, which lowers
    the variance of z(x).z(x'); the error still falls like D^{-1/2}.

    Parameters
    ----------
    gamma : float > 0, default=1.0
        The RBF kernel's parameter.
    n_components : int >= 1, default=100
        D. When it is not a multiple of d the last block is truncated: only
        its first r = D mod d rows are drawn (the QR of a d x r Gaussian
        matrix, the same distribution as the first r rows of a Haar
        orthogonal matrix), so a D < d costs O(d D^2), not O(d^3).
    random_state : int, RandomState, Generator or None, default=None
        Seeds a :class:`numpy.random.SeedSequence`, whose two children draw
        W (Q and S) and b.
    dtype : numpy.float64 or numpy.float32, default=numpy.float64
        Of the output, computed as in :class:`RandomFourierFeatures`.

    Attributes
    ----------
    random_weights_ : ndarray of shape (n_features, n_components)
        W (its columns are the frequencies).
    random_offset_ : ndarray of shape (n_components,)
        b.
    n_features_in_ : int

    Notes
    -----
    ``fit`` draws ceil(D / d) blocks, QR factorizations costing
    O(d^2 min(d, D)) each; ``transform`` is that of
    :class:`RandomFourierFeatures`.
    """

    def _draw_weights(self, n_features, rng):
        from contextlib import nullcontext

        from threadpoolctl import threadpool_limits

        d, D = n_features, self.n_components
        blocks = []
        # small QRs run faster on one BLAS thread (measured 5x on a loaded 2-core
        # machine at d = 123); large ones keep the library's threads
        with threadpool_limits(1, user_api="blas") if d <= 512 else nullcontext():
            for start in range(0, D, d):
                r = min(d, D - start)
                G = rng.standard_normal((d, r))
                Q, R = np.linalg.qr(G)  # Q: (d, r) orthonormal columns
                Q *= np.where(np.diag(R) < 0, -1.0, 1.0)  # Haar: R with a positive diagonal
                S = np.sqrt(rng.chisquare(d, size=r))  # norms of d-dim Gaussian vectors
                blocks.append(Q * S)
        return np.hstack(blocks) * math.sqrt(2.0 * self.gamma)


# --------------------------------------------------------------------------- Nystroem


def _take_rows(x, rows):
    x = _as_block(x)
    return x[rows]


def gather_rows(X, rows):
    """The rows ``rows`` (sorted global indices) of dask X, computed.

    One small task per row block holding any of them, which indexes only
    those rows of its block: the blocks without one are not computed, and
    only the selected rows travel (on a distributed client: from the
    workers). Returns CSR when the blocks are sparse, else a dense array.
    """
    import dask

    bounds = np.concatenate([[0], np.cumsum(X.chunks[0])])
    blocks = X.to_delayed().ravel()
    parts = []
    for i, blk in enumerate(blocks):
        lo, hi = np.searchsorted(rows, [bounds[i], bounds[i + 1]])
        if hi > lo:
            parts.append(dask.delayed(_take_rows, pure=True)(blk, rows[lo:hi] - bounds[i]))
    got = dask.compute(*parts)
    if all(sp.issparse(g) for g in got):
        return sp.vstack(got, format="csr")
    return np.vstack([g.toarray() if sp.issparse(g) else g for g in got])


def _nystroem_block(x, components, normalization, kernel, gamma, degree, coef0, c_sq, dtype,
                    check_finite=False):
    x = _as_block(x)
    if check_finite:
        _check_finite_block(x)
    K = pairwise_kernel(x, components, kernel, gamma, degree, coef0, c_sq)
    out = K @ normalization.T
    return out.astype(dtype, copy=False)


class Nystroem(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Nystroem features of a kernel from m landmark rows (Williams and Seeger, 2001).

    With landmarks c_1..c_m sampled uniformly without replacement from the
    training rows, K_mm = [k(c_i, c_j)] and its eigendecomposition
    K_mm = V diag(lambda) V^T,

        z(x) = K_mm^{-1/2} [k(x, c_1), ..., k(x, c_m)],
        K_mm^{-1/2} = V diag(lambda_+^{-1/2}) V^T,

    so z(x).z(x') = k_x^T K_mm^+ k_x', the kernel of the projection onto the
    span of the landmarks' feature vectors: exact whenever x or x' is a
    landmark, in particular on the training rows when m = n_samples.
    Eigenvalues below max(lambda) * m * eps (numerically zero, or negative
    by rounding) are dropped (their lambda^{-1/2} is set to 0, the
    pseudo-inverse); scikit-learn's ``Nystroem`` clips them at 1e-12
    instead, which multiplies rounding noise by up to 1e6.

    Parameters
    ----------
    kernel : {"rbf", "linear", "poly", "sigmoid"}, default="rbf"
        rbf: exp(-gamma ||x - x'||^2); linear: x.x'; poly:
        (gamma x.x' + coef0)^degree; sigmoid: tanh(gamma x.x' + coef0).
    gamma : float > 0 or None, default=None
        None: 1 / n_features (ignored by "linear").
    n_components : int >= 1, default=100
        m, the number of landmarks (and of features). More than n_samples
        gives a warning and m = n_samples (the exact kernel on the rows).
    degree : int >= 1, default=3
        poly only.
    coef0 : float, default=1
        poly and sigmoid.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the :class:`numpy.random.SeedSequence` that picks the landmarks.
    dtype : numpy.float64 or numpy.float32, default=numpy.float64
        Of the output (computed in float64).

    Attributes
    ----------
    components_ : ndarray or CSR matrix of shape (m, n_features)
        The landmark rows, float64 (CSR when X is sparse).
    component_indices_ : ndarray of shape (m,)
        Their (sorted) row indices in the training X.
    normalization_ : ndarray of shape (m, m)
        K_mm^{-1/2} (symmetric).
    gamma_ : float
        The gamma used (1 / n_features when ``gamma`` is None).
    n_features_in_ : int

    Notes
    -----
    ``fit`` draws the m row indices, gathers those rows and computes
    K_mm^{-1/2} (O(m^2 n_features + m^3)). On dask input the rows are taken
    by one small task per block holding any of them (only the selected rows
    are indexed, only they come back; the other blocks are never computed),
    so the data never goes through the client. ``transform`` computes
    k(X, C) @ normalization_.T per block (BLAS / scipy products, O(n m (d + m))),
    a lazy ``map_blocks`` on dask input.
    """

    def __init__(self, kernel="rbf", gamma=None, n_components=100, degree=3, coef0=1,
                 random_state=None, dtype=np.float64):
        set_init_params(self, locals())

    def _check_params(self):
        check_choice_params(self, {"kernel": _KERNELS})
        rules = {
            "n_components": ("int", 1, None, False),
            "degree": ("int", 1, None, False),
            "coef0": ("real", None, None, False),
        }
        if self.gamma is not None:
            rules["gamma"] = ("real", 0.0, None, True)
        check_scalar_params(self, rules)
        return _check_dtype(self.dtype)

    def fit(self, X, y=None):
        """Sample the landmarks and compute K_mm^{-1/2}.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        X = check_X(X)
        n, d = X.shape
        m = self.n_components
        if m > n:
            warnings.warn(
                f"n_components={m} > n_samples={n}: using n_components = n_samples, "
                "which evaluates the full kernel",
                UserWarning,
                stacklevel=2,
            )
            m = n
        rng = Seeds(self.random_state).generator(0)
        rows = np.sort(rng.choice(n, size=m, replace=False))
        if is_dask(X):
            C = gather_rows(X, rows)
            _check_finite_block(C)
        else:
            C = _as_block(X)[rows]
        if sp.issparse(C):
            C.sum_duplicates()
            C.sort_indices()
        self.gamma_ = 1.0 / d if self.gamma is None else float(self.gamma)
        K = pairwise_kernel(C, C, self.kernel, self.gamma_, self.degree, self.coef0)
        K = 0.5 * (K + K.T)
        lam, V = np.linalg.eigh(K)
        top = max(float(lam[-1]), 0.0)
        keep = lam > top * m * np.finfo(np.float64).eps
        inv_sqrt = np.zeros_like(lam)
        inv_sqrt[keep] = 1.0 / np.sqrt(lam[keep])
        self.components_ = C
        self.component_indices_ = rows
        self.normalization_ = (V * inv_sqrt) @ V.T
        self.n_features_in_ = d
        return self

    def transform(self, X):
        """z(X) = k(X, components_) @ normalization_.T, shape (n_samples, m).

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)

        Returns
        -------
        ndarray or dask array of shape (n_samples, m), of ``dtype``
            Dense; lazy with X's row chunks for dask X.
        """
        check_is_fitted(self)
        dtype = _check_dtype(self.dtype)
        X = check_X(X)
        _check_n_features(self, X)
        C = self.components_
        c_sq = _sq_norms(C) if self.kernel == "rbf" else None
        args = (C, self.normalization_, self.kernel, self.gamma_, self.degree, self.coef0,
                c_sq, dtype)
        if is_dask(X):
            return _map_rows(X, _nystroem_block, C.shape[0], dtype, *args)
        return _nystroem_block(X, *args)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        try:
            tags.transformer_tags.preserves_dtype = [_check_dtype(self.dtype).name]
        except ValueError:
            pass
        return tags


# --------------------------------------------------------------------------- MaxAbsScaler


def _out_dtype(dtype):
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def _max_abs_block(x, check_finite=False):
    """max |x_ij| over the rows of one block, shape (1, n_features), float64."""
    x = _as_block(x)
    if check_finite:
        _check_finite_block(x)
    if x.shape[0] == 0:
        return np.zeros((1, x.shape[1]))
    if sp.issparse(x):
        return abs(x).max(axis=0).toarray()
    return np.abs(x).max(axis=0, keepdims=True)


def _scale_block(x, inv_scale, dtype):
    """x * inv_scale column by column: CSR stays CSR (same pattern), dense stays dense."""
    if hasattr(x, "to_scipy_sparse"):
        x = x.to_scipy_sparse()
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=dtype, copy=True)
        x.data *= inv_scale[x.indices].astype(dtype, copy=False)
        return x
    return (np.asarray(x, dtype=np.float64) * inv_scale).astype(dtype, copy=False)


class MaxAbsScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Divide every column by its largest absolute value, blockwise on dask arrays.

    The model of scikit-learn's ``MaxAbsScaler``: ``max_abs_[j] = max_i |x_ij|``
    over the training rows and ``transform(X)[:, j] = X[:, j] / scale_[j]``
    with ``scale_ = max_abs_`` (1 where a column is all zero), so the training
    columns end in [-1, 1]. Nothing is shifted, so sparse input stays sparse
    with the same pattern: the scaler for sparse data before a linear SVM or
    a kernel approximation.

    On a dask array of CSR (or dense, or pydata sparse) row blocks, ``fit``
    computes one (1, n_features) maximum per block on the workers and their
    maximum; ``transform`` is a lazy ``map_blocks`` that keeps the row chunks
    and the block type (CSR blocks give CSR blocks). scikit-learn's own
    ``MaxAbsScaler`` cannot take such an array (it calls ``numpy.asarray`` on
    it, which gives a 0-d object array); in a :class:`sklearn.pipeline.Pipeline`
    on dask input use this one.

    Attributes
    ----------
    max_abs_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
    n_samples_seen_ : int
    n_features_in_ : int

    Notes
    -----
    The output dtype is float32 for float32 input, else float64. NaN and
    infinity are rejected (in-memory input by ``fit``; dask input when its
    maximum is computed).

    Examples
    --------
    >>> import numpy as np
    >>> from dasksvm.estimators.features import MaxAbsScaler
    >>> MaxAbsScaler().fit_transform(np.array([[1.0, -4.0], [-2.0, 2.0]]))
    array([[ 0.5, -1. ],
           [-1. ,  0.5]])
    """

    def __init__(self):
        set_init_params(self, locals())

    def fit(self, X, y=None):
        """Compute the largest absolute value of every column.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        X = check_X(X)
        if is_dask(X):
            parts = X.map_blocks(
                _max_abs_block, True, chunks=((1,) * X.numblocks[0], (X.shape[1],)),
                dtype=np.float64, meta=np.empty((0, 0)),
            )
            max_abs = np.asarray(parts.max(axis=0).compute(), dtype=np.float64)
        else:
            max_abs = _max_abs_block(X)[0]
        self.max_abs_ = max_abs
        self.scale_ = np.where(max_abs == 0.0, 1.0, max_abs)
        self.n_samples_seen_ = int(X.shape[0])
        self.n_features_in_ = int(X.shape[1])
        return self

    def transform(self, X):
        """Divide every column by ``scale_``.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)

        Returns
        -------
        ndarray, CSR matrix or dask array of shape (n_samples, n_features)
            CSR for sparse input, dense for dense input; for dask X a lazy
            array with X's chunks whose blocks keep their type.
        """
        check_is_fitted(self)
        X = check_X(X)
        _check_n_features(self, X)
        dtype = _out_dtype(X.dtype)
        inv = 1.0 / self.scale_
        if is_dask(X):
            sparse_meta = sp.issparse(X._meta) or hasattr(X._meta, "to_scipy_sparse")
            meta = (sp.csr_matrix((0, X.shape[1]), dtype=dtype) if sparse_meta
                    else np.empty((0, 0), dtype=dtype))
            return X.map_blocks(_scale_block, inv, dtype, dtype=dtype, meta=meta)
        return _scale_block(X, inv, dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
