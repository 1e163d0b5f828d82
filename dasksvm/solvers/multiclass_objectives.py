"""Pieces shared by the row-parallel multiclass solvers (LLW, CS, OVR).

All three are CoCoA+ (formulations.md 1b) with a K x d model. Per round the
client sends every block the model restricted to the columns that block
touches (a ``(n_touched_k, K)`` slice, scattered to the block's worker), the
block runs a numba kernel on its local subproblem and keeps its new dual
variables, and the blocks' changes of the model come back as
:class:`SparseRows` partials (touched columns x classes, plus a few scalars)
summed by :func:`allreduce_rows`.

:class:`SparseRows` is a generic "some rows of an (size, K) matrix" partial;
``dasksvm.parallel.reduce.add_partials`` does not know it (a NamedTuple would
be mistaken for a tuple of partials there), so it has its own reduction here.
"""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import numpy as np

from ..kernels.multiclass import row_sq_norms
from ..parallel.reduce import _combine_list, new_token, reduce_task_count

__all__ = [
    "SparseRows",
    "add_row_partials",
    "allreduce_rows",
    "BlockState",
    "prepare_block",
    "block_columns",
    "scatter_per_block",
    "check_solver_params",
    "n_round_tasks",
]


class SparseRows(NamedTuple):
    """Rows ``indices`` (sorted, unique) of a ``(size, K)`` matrix, with their ``values``."""

    indices: np.ndarray
    values: np.ndarray
    size: int

    @property
    def nbytes(self):
        return int(self.indices.nbytes + self.values.nbytes)

    def toarray(self):
        out = np.zeros((self.size, self.values.shape[1]))
        out[self.indices] = self.values
        return out

    @classmethod
    def from_local(cls, cols, values, size):
        """Keep only the rows of a block-local (len(cols), K) change that are non-zero."""
        nz = np.flatnonzero(np.any(values != 0.0, axis=1))
        if len(nz) == len(cols):
            return cls(cols, values, size)
        return cls(cols[nz], values[nz], size)


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


def add_row_partials(a, b):
    """Sum of two partials ``(SparseRows, ndarray of scalars)``."""
    return _add_rows(a[0], b[0]), a[1] + b[1]


def _nbytes(p):
    return p[0].nbytes + int(np.asarray(p[1]).nbytes)


def _sum_leaves(parts):
    return functools.reduce(add_row_partials, parts), sum(_nbytes(p) for p in parts)


def _sum_counted(parts):
    total = functools.reduce(add_row_partials, [p for p, _ in parts])
    return total, sum(b + _nbytes(p) for p, b in parts)


def allreduce_rows(client, futures, *, split_every=8, key_prefix="allreduce"):
    """Sum ``(SparseRows, scalars)`` partials: a task tree down to ``split_every``
    partials, then gathered and added on the client (as ``parallel.allreduce``).

    Returns ``(total, nbytes)``, nbytes being every partial sent once.
    """
    token = new_token()
    futures = list(futures)
    level = 0
    while len(futures) > split_every:
        nxt = []
        for node, start in enumerate(range(0, len(futures), split_every)):
            group = futures[start : start + split_every]
            nxt.append(
                client.submit(
                    _combine_list,
                    _sum_leaves if level == 0 else _sum_counted,
                    *group,
                    key=f"{key_prefix}-l{level}-n{node}-{token}",
                    pure=False,
                )
            )
        futures = nxt
        level += 1
    parts = client.gather(futures)
    return _sum_leaves(parts) if level == 0 else _sum_counted(parts)


def n_round_tasks(n_blocks, split_every=8):
    """Tasks of one round: a local task and a partial pick per block, plus the tree."""
    return 2 * n_blocks + reduce_task_count(n_blocks, split_every)


class BlockState:
    """What a block keeps on its worker between rounds.

    The block's rows with column indices remapped to its touched columns
    (``cols``), labels as class indices, per-row bounds C_i, squared row
    norms, and the dual variables ``alpha`` (n_rows, K).
    """

    __slots__ = ("indptr", "indices", "data", "y", "c", "sqn", "cols", "n_columns", "alpha")

    def with_alpha(self, alpha):
        new = BlockState.__new__(BlockState)
        for name in BlockState.__slots__:
            setattr(new, name, getattr(self, name))
        new.alpha = alpha
        return new


def prepare_block(block, n_classes, C):
    """Build a block's :class:`BlockState` (on its worker, in round 0), alpha = 0."""
    y = block.y
    yi = y.astype(np.int32)
    if y.shape[0] and (np.any(yi != y) or yi.min() < 0 or yi.max() >= n_classes):
        raise ValueError(
            f"block {block.index}: labels must be class indices 0..{n_classes - 1}"
        )
    st = BlockState.__new__(BlockState)
    X = block.X
    st.cols = block.cols
    st.n_columns = X.shape[1]
    st.indptr = X.indptr
    st.indices = np.searchsorted(block.cols, X.indices).astype(np.int32)
    st.data = X.data
    st.y = yi
    st.c = C * np.asarray(block.weight, dtype=np.float64)
    st.sqn = row_sq_norms(X.indptr, X.data)
    st.alpha = np.zeros((X.shape[0], n_classes))
    return st


def _cols(block):
    return block.cols


def block_columns(blocks, *, key):
    """The touched columns of every block, on the client (one small task per block)."""
    futs = blocks.map(_cols, key=key)
    return [np.asarray(c, dtype=np.int64) for c in blocks.client.gather(futs)]


def scatter_per_block(client, blocks, arrays):
    """Put ``arrays[k]`` on the worker of block k (one scatter call per worker).

    Returns the futures (one per block) and the bytes sent.
    """
    by_worker = {}
    for k, w in enumerate(blocks.workers):
        by_worker.setdefault(w, []).append(k)
    out = [None] * len(arrays)
    for w, ks in by_worker.items():
        futs = client.scatter([arrays[k] for k in ks], workers=[w], hash=False)
        for k, f in zip(ks, futs, strict=True):
            out[k] = f
    return out, int(sum(a.nbytes for a in arrays))


def check_solver_params(n_classes, C, tol, max_iter, local_passes):
    """Shared argument checks of the multiclass solvers."""
    if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not (isinstance(C, numbers.Real) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive finite number, got {C!r}")
    if not (isinstance(tol, numbers.Real) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not isinstance(local_passes, numbers.Integral) or local_passes < 1:
        raise ValueError(f"local_passes must be an integer >= 1, got {local_passes!r}")
