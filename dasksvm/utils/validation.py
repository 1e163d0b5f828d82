"""Input checks shared by the estimators: clear errors that say what to do."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import DataConversionWarning

__all__ = [
    "check_X",
    "check_X_y",
    "check_choice_params",
    "check_labels",
    "check_scalar_params",
]


def _is_dask(a):
    import dask.array as da

    return isinstance(a, da.Array)


def _no_features(name, shape):
    return f"{name} has 0 feature(s) (shape={shape}) while a minimum of 1 is required."


def check_X(X, *, name="X"):
    """Check the shape and chunking of X (dask, numpy, scipy or pydata sparse).

    Returns X unchanged (2-d numpy / scipy CSR for in-memory input; numbers
    held in an object array are converted to float64). The messages for an
    empty or complex X, or X of the wrong rank, use scikit-learn's wording.
    """
    if _is_dask(X):
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-d, got shape {X.shape}")
        if any(np.isnan(c) for c in X.chunks[0]) or np.isnan(X.shape[0]):
            raise ValueError(
                f"{name} has unknown chunk sizes along rows; call "
                f"{name} = {name}.compute_chunk_sizes() first (or persist it)"
            )
        if len(X.chunks[1]) != 1:
            raise ValueError(
                f"{name} is chunked along columns ({len(X.chunks[1])} column chunks); "
                f"dasksvm needs whole rows in every block: use {name} = {name}.rechunk({{1: -1}})"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{name} has 0 rows; at least one sample is required")
        if X.shape[1] == 0:
            raise ValueError(_no_features(name, X.shape))
        if np.iscomplexobj(X):
            raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
        return X
    if hasattr(X, "to_scipy_sparse"):
        X = X.to_scipy_sparse()
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    else:
        X = np.asarray(X)
        if X.dtype == object:
            # numbers held as objects (e.g. from pandas); anything else raises
            # numpy's TypeError / ValueError naming the offending value
            X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-d, got shape {X.shape}. Reshape your data either using "
            f"{name}.reshape(-1, 1) if it has a single feature or {name}.reshape(1, -1) "
            "if it is a single sample"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least one sample is required")
    if X.shape[1] == 0:
        raise ValueError(_no_features(name, X.shape))
    data = X.data if sp.issparse(X) else X
    if np.iscomplexobj(data):
        raise ValueError(f"Complex data not supported: {name} has dtype {data.dtype}")
    if not np.issubdtype(data.dtype, np.number) and data.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {data.dtype}")
    if not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def check_X_y(X, y, sample_weight=None):
    """Check X, y (and sample_weight) for fitting; returns them aligned.

    Dask inputs must share row chunks. In-memory inputs are returned as
    numpy / scipy CSR. y may hold any labels (numbers or strings); NaN labels
    are rejected when the labels are computed (see :func:`check_labels`).
    """
    X = check_X(X)
    if y is None:
        raise ValueError(
            "this estimator requires y to be passed, but the target y is None"
        )
    if _is_dask(X) or _is_dask(y):
        import dask.array as da

        if not _is_dask(y):
            y = np.asarray(y)
            if y.ndim != 1:
                raise ValueError(f"y must be 1-d, got shape {y.shape}")
            if len(y) != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels")
            y = da.from_array(y, chunks=(X.chunks[0],)) if _is_dask(X) else y
        if not _is_dask(X):
            X = check_X(da.from_array(X, chunks=(y.chunks[0], -1), asarray=False))
        if y.ndim != 1:
            raise ValueError(f"y must be 1-d, got shape {y.shape}")
        if any(np.isnan(c) for c in y.chunks[0]):
            raise ValueError("y has unknown chunk sizes; call y = y.compute_chunk_sizes()")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        if y.chunks[0] != X.chunks[0]:
            raise ValueError(
                f"X and y have different row chunks ({X.chunks[0][:4]}... vs "
                f"{y.chunks[0][:4]}...); align them with y = y.rechunk(X.chunks[0])"
            )
        if sample_weight is not None:
            sample_weight = _check_weight_dask(sample_weight, X)
        return X, y, sample_weight
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; "
            "using y.ravel()",
            DataConversionWarning,
            stacklevel=4,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-d, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.ndim == 0:
            sample_weight = np.full(X.shape[0], float(sample_weight))
        if sample_weight.shape != (X.shape[0],):
            raise ValueError(
                f"sample_weight has shape {sample_weight.shape}, expected ({X.shape[0]},)"
            )
        _check_weight_values(sample_weight)
    return X, y, sample_weight


def _check_weight_values(w):
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if w.size and not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number")


def _check_weight_dask(w, X):
    import dask.array as da

    if not _is_dask(w):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(X.shape[0], float(w))
        if w.shape != (X.shape[0],):
            raise ValueError(f"sample_weight has shape {w.shape}, expected ({X.shape[0]},)")
        _check_weight_values(w)
        return da.from_array(w, chunks=(X.chunks[0],))
    if w.shape != (X.shape[0],):
        raise ValueError(f"sample_weight has shape {w.shape}, expected ({X.shape[0]},)")
    if w.chunks[0] != X.chunks[0]:
        raise ValueError("sample_weight and X have different row chunks; "
                         "use sample_weight = sample_weight.rechunk(X.chunks[0])")
    return w.astype(np.float64)


def _chunk_labels(y):
    """(distinct labels, NaN labels, None labels) of one array of labels."""
    y = np.asarray(y)
    n_nan = int(np.isnan(y).sum()) if np.issubdtype(y.dtype, np.floating) else 0
    n_none = sum(v is None for v in y) if y.dtype == object else 0
    if n_nan or n_none:
        return np.zeros(0, y.dtype), n_nan, n_none
    return np.unique(y), 0, 0


def check_labels(y):
    """The sorted distinct labels of y (computed for dask input), checked.

    Raises ValueError on NaN or None labels, complex labels, and on floats
    that are not whole numbers ("Unknown label type: continuous", as
    scikit-learn: a regression target is not a set of classes).
    """
    if _is_dask(y):
        import dask

        # one task per chunk (its labels and bad ones), one compute
        parts = dask.compute(*[dask.delayed(_chunk_labels, pure=True)(b)
                               for b in y.to_delayed().ravel()])
        n_nan, n_none = sum(p[1] for p in parts), sum(p[2] for p in parts)
        classes = np.unique(np.concatenate([p[0] for p in parts]))
    else:
        classes, n_nan, n_none = _chunk_labels(y)
    if n_nan:
        raise ValueError(f"y contains {n_nan} NaN label(s)")
    if n_none:
        raise ValueError("y contains None labels")
    classes = np.asarray(classes)
    if np.iscomplexobj(classes):
        raise ValueError("Complex data not supported: y has complex labels")
    if np.issubdtype(classes.dtype, np.floating) and np.any(classes != np.round(classes)):
        raise ValueError(
            "Unknown label type: continuous. y holds non-integer floats such as "
            f"{classes[classes != np.round(classes)][0]!r}; a classifier needs class "
            "labels (integers, strings, or floats with integer values)"
        )
    return classes


def check_scalar_params(est, constraints):
    """Check estimator parameters against ``{name: (kind, low, high, low_open)}``.

    kind is "real" or "int"; a bound of None is open-ended.
    """
    for name, (kind, low, high, low_open) in constraints.items():
        v = getattr(est, name)
        if kind == "int":
            ok_type = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        else:
            ok_type = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if not ok_type or (kind == "real" and not np.isfinite(v)):
            raise ValueError(f"{name} must be a finite {kind} number, got {v!r}")
        if low is not None and (v <= low if low_open else v < low):
            op = ">" if low_open else ">="
            raise ValueError(f"{name} must be {op} {low}, got {v!r}")
        if high is not None and v > high:
            raise ValueError(f"{name} must be <= {high}, got {v!r}")


def check_choice_params(est, choices):
    """Check estimator parameters against ``{name: allowed strings}``."""
    for name, options in choices.items():
        v = getattr(est, name)
        if not (isinstance(v, str) and v in options):
            raise ValueError(f"{name} must be one of {list(options)}, got {v!r}")
