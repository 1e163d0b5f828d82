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
import operator
from typing import NamedTuple

import numpy as np

from ..kernels.multiclass import row_sq_norms
from ..parallel.reduce import _combine_list, new_token, reduce_task_count

__all__ = [
    "BlockState",
    "SparseRows",
    "add_row_partials",
    "allreduce_rows",
    "block_columns",
    "check_solver_params",
    "n_round_tasks",
    "prepare_block",
    "scatter_per_block",
]


SCHEDULES = ("parallel", "ring")


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

    __slots__ = ("alpha", "c", "cols", "data", "indices", "indptr", "n_columns", "sqn", "y")

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


def restrict_rows(rows, cols):
    """Positions in the sorted ``cols`` of the rows of ``rows`` that lie in it, and their values."""
    if len(rows.indices) == 0 or len(cols) == 0:
        return np.zeros(0, np.int64), rows.values[:0]
    pos = np.minimum(np.searchsorted(cols, rows.indices), len(cols) - 1)
    ok = cols[pos] == rows.indices
    return pos[ok], rows.values[ok]


def accumulate(prev, part):
    """``part`` plus the partial handed over by the previous block of a ring round.

    A ring partial is ``(SparseRows, scalars, bytes handed over so far)``.
    """
    if prev is None:
        return part
    rows, scalars = add_row_partials(prev[:2], part)
    moved = (prev[2] if len(prev) > 2 else 0) + _nbytes(prev)
    return rows, scalars, moved


def apply_step(state, gamma):
    """The block's state after the client's step size for the last proposal.

    ``state`` is a previous round's task output ``(BlockState, partial,
    proposal)``; ``gamma`` is a float or a (K,) vector (one step per class).
    """
    st, _, prop = state
    if prop is None:
        return st
    return st.with_alpha(st.alpha + gamma * (prop - st.alpha))


def final_alpha(out, gamma):
    """A block's dual variables after the last round (on its worker)."""
    return apply_step(out, gamma).alpha


def line_search(wd, dd, dlin, enabled=True):
    """Step gamma in [0, 1] maximizing lin + gamma dlin - 1/2 ||W + gamma dW||^2.

    ``wd`` = <W, dW> and ``dd`` = ||dW||^2 (floats, or arrays for one step per
    class). The combination alpha + gamma * (sum of the blocks' proposals) is
    feasible for every gamma in [0, 1] (a convex combination of feasible
    points), and the dual is a concave quadratic in gamma, so this is exact.
    Without ``enabled`` the step is CoCoA+'s gamma = 1.
    """
    wd = np.asarray(wd, dtype=float)
    dd = np.asarray(dd, dtype=float)
    dlin = np.asarray(dlin, dtype=float)
    if not enabled:
        return np.ones_like(dd)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(dd > 0.0, (dlin - wd) / np.where(dd > 0.0, dd, 1.0), 1.0)
    return np.clip(g, 0.0, 1.0)


def run_rounds(
    blocks,
    n_classes,
    round_fn,
    model,
    *,
    C,
    tol,
    max_iter,
    local_passes,
    sigma,
    random_state,
    verbose,
    key_prefix,
    split_every,
    name,
    schedule="parallel",
):
    """The round loop the row-parallel multiclass solvers share.

    Round t: scatter ``model.slice(cols_k)`` to every block; submit
    ``round_fn(block, state, W_local, prev, seed, C, n_classes, sigma,
    passes, gamma, *model.task_args())`` per block (key
    ``{key_prefix}-local-r{t}``), which returns ``(BlockState, partial,
    proposal)``; pick the partials (``-partial-r{t}``); let
    ``model.update(total)`` certify the round's model and take the step.

    ``schedule="parallel"`` (CoCoA+): all blocks run at once from the same
    model (``prev`` is None) and the partials are all-reduced
    (``-allreduce-r{t}``). ``schedule="ring"`` (block Gauss-Seidel): block k
    starts once block k-1 is done, from the round's model plus the summed
    changes of blocks 0..k-1, handed from worker to worker as ``prev`` (a
    partial: touched rows x classes); the last block's partial is the round's
    total and is the only thing gathered. The ring is exact sequential dual
    coordinate ascent over all blocks (use sigma = 1): no parallel compute,
    but it converges in as few rounds as one block does.

    Stops when the certificate's stopping gap is <= tol; after ``max_iter``
    update rounds one evaluation round (no local passes) certifies the last
    model.

    ``model`` provides ``slice(cols)``, ``task_args()``, ``update(total,
    updated) -> dict(primal, dual, stop, gamma, extra)`` and ``coef()``
    (the certified model, (n_classes, n_columns)).
    """
    from ._common import round_seeds
    from .result import History, SolverResult, warn_not_converged

    check_solver_params(n_classes, C, tol, max_iter, local_passes)
    client = blocks.client
    nb = len(blocks)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if sigma is None:
        sigma = float(nb) if schedule == "parallel" else 1.0
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    seeds = round_seeds(random_state, nb)
    cols = block_columns(blocks, key=f"{key_prefix}-cols")
    history = History(verbose, key_prefix)
    states = [None] * nb
    gamma = 1.0
    converged = False
    for t in range(max_iter + 1):
        passes = int(local_passes) if t < max_iter else 0
        if t == 0:
            slices, down = [None] * nb, 0
        else:
            slices, down = scatter_per_block(client, blocks, [model.slice(c) for c in cols])
        args = (float(C), int(n_classes), sigma, passes, gamma, *model.task_args())
        if schedule == "parallel":
            outs = blocks.map(
                round_fn,
                *args,
                key=f"{key_prefix}-local-r{t}",
                per_block=[states, slices, [None] * nb, seeds(t)],
            )
            parts = blocks.pick(outs, 1, key=f"{key_prefix}-partial-r{t}")
            total, up = allreduce_rows(
                client, parts, split_every=split_every, key_prefix=f"{key_prefix}-allreduce-r{t}"
            )
            n_tasks = n_round_tasks(nb, split_every)
        else:
            outs, prev, sd = [], None, seeds(t)
            for k in range(nb):
                where = {"workers": [blocks.workers[k]], "allow_other_workers": True, "pure": False}
                out = client.submit(
                    round_fn,
                    blocks.futures[k],
                    states[k],
                    slices[k],
                    prev,
                    sd[k],
                    *args,
                    key=f"{key_prefix}-local-r{t}-b{k}-{blocks.token}",
                    **where,
                )
                prev = client.submit(
                    operator.getitem,
                    out,
                    1,
                    key=f"{key_prefix}-partial-r{t}-b{k}-{blocks.token}",
                    **where,
                )
                outs.append(out)
            last = client.gather(prev)
            total = last[:2]
            up = (last[2] if len(last) > 2 else 0) + _nbytes(last)
            n_tasks = 2 * nb
        states = outs
        step = model.update(total, passes > 0)
        gamma = step["gamma"]
        rec = history.add(
            t,
            step["primal"],
            step["dual"],
            n_tasks=n_tasks,
            nbytes=up + down,
            bytes_reduce=up,
            bytes_model=down,
            **step.get("extra", {}),
        )
        stop = step["stop"]
        if stop <= tol:
            converged = True
            break
        if not passes:
            break
    if not converged:
        warn_not_converged(name, max_iter, stop, tol)
    alpha = blocks.pick_map(final_alpha, states, gamma, key=f"{key_prefix}-alpha")
    return SolverResult(
        coef=model.coef(),
        primal=rec["primal"],
        dual=rec["dual"],
        gap=rec["gap"],
        rel_gap=float(stop),
        n_iter=t,
        converged=converged,
        history=history.records,
        state={"alpha": alpha},
    )
