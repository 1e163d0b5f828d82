"""What the estimators share: input handling, blocks, lazy prediction."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..parallel import BlockSet, get_client, to_csr
from ..utils.validation import check_X

__all__ = ["is_dask", "make_blocks", "linear_decision", "class_weight_per_class"]


def is_dask(a):
    import dask.array as da

    return isinstance(a, da.Array)


def make_blocks(
    client, X, y_encoded, weight, *, fit_intercept, intercept_scaling, name,
    shuffle=False, random_state=None,
):
    """Persist X with encoded labels and per-row weights as a BlockSet."""
    return BlockSet.from_arrays(
        client,
        X,
        y_encoded,
        weight,
        intercept_scaling=intercept_scaling if fit_intercept else None,
        shuffle=shuffle,
        random_state=random_state,
        name=name,
    )


def _decision_block(x, coef, intercept):
    if sp.issparse(x) or hasattr(x, "to_scipy_sparse"):
        out = to_csr(x) @ coef.T
    else:
        out = np.asarray(x, dtype=np.float64) @ coef.T
    out = np.asarray(out) + intercept
    return out


def linear_decision(X, coef, intercept, n_features):
    """X @ coef.T + intercept: numpy for in-memory X, a lazy dask array for dask X.

    ``coef`` has shape (n_outputs, n_features); the result has shape
    (n_samples, n_outputs).
    """
    X = check_X(X)
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the model was fitted with {n_features}"
        )
    if is_dask(X):
        return X.map_blocks(
            _decision_block,
            coef,
            intercept,
            chunks=(X.chunks[0], (coef.shape[0],)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
        )
    return _decision_block(X, coef, intercept)


def class_weight_per_class(class_weight, classes, counts):
    """Weight of each class: None -> 1, "balanced" -> n / (K * count), or a dict."""
    K = len(classes)
    if class_weight is None:
        return np.ones(K)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f'class_weight must be None, "balanced" or a dict, got {class_weight!r}')
        return counts.sum() / (K * np.maximum(counts, 1))
    if isinstance(class_weight, dict):
        unknown = set(class_weight) - set(classes.tolist())
        if unknown:
            raise ValueError(f"class_weight has labels not in y: {sorted(unknown, key=str)}")
        return np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])
    raise ValueError(f'class_weight must be None, "balanced" or a dict, got {class_weight!r}')


def encode_labels(y, classes, values):
    """Map labels to ``values[index of label in classes]`` (lazy for dask y)."""
    def enc(yb):
        idx = np.searchsorted(classes, yb)
        return np.asarray(values, dtype=np.float64)[idx]

    if is_dask(y):
        return y.map_blocks(enc, dtype=np.float64)
    return enc(np.asarray(y))


def class_counts(y, classes):
    """Number of examples of each class."""
    def cnt(yb):
        return np.bincount(np.searchsorted(classes, yb), minlength=len(classes))[None, :]

    if is_dask(y):
        return np.asarray(
            y.map_blocks(cnt, chunks=((1,) * y.numblocks[0], (len(classes),)),
                         new_axis=1, dtype=np.int64).sum(axis=0).compute()
        )
    return cnt(np.asarray(y))[0]


def row_weights(y, classes, class_w, sample_weight):
    """Per-row weight = class weight of the row's label times its sample weight."""
    w = encode_labels(y, classes, class_w)
    if sample_weight is not None:
        w = w * sample_weight
    return w


def resolve_client(client):
    return get_client(client)
