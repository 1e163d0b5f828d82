"""Partials and their sum, and the tree reduction over futures (no SVM mathematics here).

A *partial* is what one block sends to a reduction: a float, a dense
``numpy`` array, a :class:`SparseVector` (indices and values of the touched
coordinates), a :class:`SparseRows` (the touched rows of a matrix), a
:class:`Least` (a float whose sum is the minimum: a bound every block must
respect), or a tuple / dict nesting any of those. :func:`add_partials` adds two partials of
the same structure; sparse + sparse vectors stay sparse until they fill a
quarter of the vector, then become dense; sparse rows stay sparse rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .keys import new_token, task_key

__all__ = [
    "Least",
    "SparseRows",
    "SparseVector",
    "add_into",
    "add_partials",
    "sq_norm",
    "to_dense",
    "tree_reduce",
    "wire_nbytes",
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


class Least:
    """A partial combined by the elementwise minimum: bounds each block sets on a step
    (the smallest binds). ``values``: a float64 array (0-d for one bound)."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def wire_nbytes(self):
        return int(self.values.nbytes)


def to_dense(v):
    """A dense copy of a dense, :class:`SparseVector` or :class:`SparseRows` partial."""
    if isinstance(v, _Sparse):
        return v.toarray()
    return np.asarray(v)


def add_into(v, change):
    """``v += change`` in place, for a dense, :class:`SparseVector` or :class:`SparseRows`
    ``change`` (indices unique, so a fancy-indexed add is exact); returns ``v``."""
    if isinstance(change, _Sparse):
        v[change.indices] += change.values
    else:
        v += change
    return v


def sq_norm(v):
    """The squared Euclidean (Frobenius) norm of a dense or sparse partial."""
    a = v.values if isinstance(v, _Sparse) else np.asarray(v)
    a = a.reshape(-1)
    return float(a @ a)


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
    if isinstance(a, Least) or isinstance(b, Least):
        if not (isinstance(a, Least) and isinstance(b, Least)):
            raise TypeError("a Least combines only with a Least")
        return Least(np.minimum(a.values, b.values))
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


def wire_nbytes(obj):
    """Bytes of the buffers of ``obj`` as it travels: arrays' and sparse matrices' buffers,
    containers summed, objects with a ``wire_nbytes()`` method asked, 8 per scalar,
    0 for None. The engine counts what it sends and receives with it."""
    if obj is None:
        return 0
    if hasattr(obj, "wire_nbytes"):
        return int(obj.wire_nbytes())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if hasattr(obj, "indptr") and hasattr(obj, "data"):  # scipy sparse compressed
        return int(obj.data.nbytes + obj.indices.nbytes + obj.indptr.nbytes)
    if isinstance(obj, (tuple, list)):
        return sum(wire_nbytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(wire_nbytes(x) for x in obj.values())
    if isinstance(obj, (bytes, str)):
        return len(obj)
    return 8


def _combine_list(combine, *parts):
    return combine(list(parts))


def tree_reduce(client, futures, combine, *, split_every=2, prefix="tree", step="reduce",
                round=None, token=None):
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
    prefix, step : str
        Task keys are :func:`~dasksvm.parallel.keys.task_key` ``(prefix, step,
        token, round=round, where=[f"l{level}", f"n{node}"])``: the dashboard
        groups them as ``f"{prefix}-{step}"``, the key says the level and node.
    round : int, optional
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
                    key=task_key(prefix, step, token, round=round,
                                 where=[f"l{level}", f"n{node}"]),
                    pure=False,
                )
            )
        futures = nxt
        level += 1
    return futures[0]
