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
from ..parallel.reduce import new_token, reduce_task_count

__all__ = [
    "SCHEDULES",
    "BlockState",
    "SparseRows",
    "accumulate",
    "adapt_sigma",
    "add_row_partials",
    "allreduce_rows",
    "apply_step",
    "auto_passes",
    "block_columns",
    "block_round",
    "check_solver_params",
    "final_alpha",
    "line_search",
    "n_round_tasks",
    "prepare_block",
    "raw_step",
    "restrict_rows",
    "run_rounds",
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


def _combine_list(combine, *parts):
    return combine(list(parts))


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


#: local_passes="auto" aims at this many (non-zero x class) updates per block per round
AUTO_WORK = 5_000_000
AUTO_MAX_PASSES = 10


def auto_passes(blocks, n_classes):
    """Passes per round for ``local_passes="auto"``: enough that a round's compute is
    not dwarfed by its ~50 ms of scheduling (at most 10, at least 1)."""
    work = max(max(blocks.nnz, default=0), max(blocks.n_rows, default=1)) * n_classes
    return int(min(AUTO_MAX_PASSES, max(1, AUTO_WORK // max(work, 1))))


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
    if local_passes != "auto" and (
        not isinstance(local_passes, numbers.Integral) or local_passes < 1
    ):
        raise ValueError(f"local_passes must be 'auto' or an integer >= 1, got {local_passes!r}")


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


def raw_step(wd, dd, dlin):
    """The unconstrained maximizer (dlin - wd) / dd of the dual along the proposal
    (> 1: the blocks' proposals were too timid; < 1: they overshot); NaN when dd = 0."""
    wd, dd, dlin = (np.asarray(a, dtype=float) for a in (wd, dd, dlin))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dd > 0.0, (dlin - wd) / np.where(dd > 0.0, dd, 1.0), np.nan)


def adapt_sigma(sigma, raw, n_blocks):
    """``sigma="adaptive"``: halve sigma' when the raw step exceeds 1.5, double it
    when under 0.75, within [1, n_blocks] (any sigma' in that range keeps the
    line-searched round a monotone ascent at least as good as CoCoA averaging)."""
    if not np.isfinite(raw):
        return sigma
    if raw > 1.5:
        return max(1.0, sigma / 2.0)
    if raw < 0.75:
        return min(float(n_blocks), sigma * 2.0)
    return sigma


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


def block_round(block, state, W_local, prev, seed, C, n_classes, sigma, passes, gamma, lap,
                spec, *args):
    """One block's task of one round (or of one lap of a ring round), on its worker.

    Parameters
    ----------
    block : Block
    state : None (round 0), or the block's output of the previous round
        (``lap == 0``: the client's step ``gamma`` is applied to its proposal
        first) or of the previous lap (``lap > 0``: continue from its
        proposal).
    W_local : ndarray (n_touched, m) or None
        The round's model on the block's touched columns (None: zeros).
    prev : partial or None
        Ring schedule: the summed changes of the blocks that ran before this
        one in the round; the local view starts from W_local plus them.
    spec : object
        The machine: ``width``, ``loss``, ``lin``, ``local`` and ``shift``
        (see the solvers).

    Returns
    -------
    (BlockState, partial, proposal)
        The partial is ``(SparseRows of the change of the model, scalars)``
        with scalars = [loss at W_local, dual linear term at the round's
        alpha, its change] (each of length ``spec.n_scalars``), accumulated
        onto ``prev``; the proposal (new alpha) stays on the worker.
    """
    if lap == 0:
        st = prepare_block(block, n_classes, C) if state is None else apply_step(state, gamma)
        start = st.alpha
    else:
        st, _, start = state
    m = spec.width(n_classes, *args)
    if W_local is None:
        W_local = np.zeros((len(st.cols), m))
    ns = spec.n_scalars(n_classes, *args)
    if lap == 0:
        loss = spec.loss(st, W_local, *args)
        lin = spec.lin(st, start, *args)
    else:
        loss = lin = np.zeros(ns)
    if not passes:
        empty = SparseRows(np.zeros(0, np.int64), np.zeros((0, m)), st.n_columns)
        return st, accumulate(prev, (empty, np.concatenate([loss, lin, np.zeros(ns)]))), None
    view = W_local
    if prev is not None:
        pos, vals = restrict_rows(prev[0], st.cols)
        view = W_local.copy()
        spec.shift(view, pos, vals, *args)
    alpha = start.copy()
    dW = spec.local(st, alpha, view, sigma, passes, seed, *args)
    dlin = spec.lin(st, alpha, *args) - spec.lin(st, start, *args)
    rows = SparseRows.from_local(st.cols, dW, st.n_columns)
    return st, accumulate(prev, (rows, np.concatenate([loss, lin, dlin]))), alpha


def run_rounds(
    blocks,
    n_classes,
    spec,
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

    Round t: scatter ``model.slice(cols_k)`` to every block; run
    :func:`block_round` on every block (task keys ``{key_prefix}-local-r{t}``);
    pick the partials (``-partial-r{t}``); let ``model.update(total)``
    certify the round's model and take the step.

    ``schedule="parallel"`` (CoCoA+): all blocks run at once from the same
    model, ``local_passes`` passes each, and the partials are all-reduced
    (``-allreduce-r{t}``). ``schedule="ring"`` (distributed sequential
    coordinate ascent): the round goes ``local_passes`` times around the
    blocks, one pass per visit; every visit starts from the round's model
    plus all changes made so far in the round, handed from worker to worker
    as a partial (touched rows x classes); only the last partial is gathered.
    The ring runs no two blocks at once, but converges in as few rounds as a
    single block does (use sigma = 1, its default).

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
    adaptive = (isinstance(sigma, str) and sigma == "adaptive") or (
        sigma is None and schedule == "parallel"
    )
    if adaptive and schedule != "parallel":
        raise ValueError('sigma="adaptive" is for schedule="parallel"')
    if sigma is None or adaptive:
        sigma = float(nb) if schedule == "parallel" else 1.0
    if not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise ValueError(f'sigma must be > 0, None or "adaptive", got {sigma!r}')
    sigma = float(sigma)
    if local_passes == "auto":
        local_passes = auto_passes(blocks, int(n_classes))
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
        targs = model.task_args()
        if schedule == "parallel":
            outs = blocks.map(
                block_round,
                float(C),
                int(n_classes),
                sigma,
                passes,
                gamma,
                0,
                spec,
                *targs,
                key=f"{key_prefix}-local-r{t}",
                per_block=[states, slices, [None] * nb, seeds(t)],
            )
            parts = blocks.pick(outs, 1, key=f"{key_prefix}-partial-r{t}")
            total, up = allreduce_rows(
                client, parts, split_every=split_every, key_prefix=f"{key_prefix}-allreduce-r{t}"
            )
            n_tasks = n_round_tasks(nb, split_every)
        else:
            outs, prev, sd = list(states), None, seeds(t)
            laps = max(passes, 1)
            for lap in range(laps):
                for k in range(nb):
                    where = {
                        "workers": [blocks.workers[k]],
                        "allow_other_workers": True,
                        "pure": False,
                    }
                    tag = f"r{t}-l{lap}-b{k}-{blocks.token}"
                    outs[k] = client.submit(
                        block_round,
                        blocks.futures[k],
                        outs[k],
                        slices[k],
                        prev,
                        (sd[k] + 104_729 * lap) % (2**31 - 1),
                        float(C),
                        int(n_classes),
                        sigma,
                        1 if passes else 0,
                        gamma,
                        lap,
                        spec,
                        *targs,
                        key=f"{key_prefix}-local-{tag}",
                        **where,
                    )
                    prev = client.submit(
                        operator.getitem, outs[k], 1, key=f"{key_prefix}-partial-{tag}", **where
                    )
            last = client.gather(prev)
            total = last[:2]
            up = (last[2] if len(last) > 2 else 0) + _nbytes(last)
            n_tasks = 2 * nb * laps
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
            sigma=sigma,
            **step.get("extra", {}),
        )
        if adaptive and passes:
            sigma = adapt_sigma(sigma, step.get("raw_step", np.nan), nb)
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
