"""Pieces shared by the row-parallel multiclass solvers (LLW, CS, OVR).

All three are CoCoA+ (formulations.md 1b) with a K x d model. Per round the
client sends every block the model restricted to the columns that block
touches (a ``(n_touched_k, K)`` slice, scattered to the block's worker), the
block runs a numba kernel on its local subproblem and keeps its new dual
variables, and the blocks' changes of the model come back as
:class:`~dasksvm.parallel.SparseRows` partials (touched columns x classes,
plus a few scalars) summed by :func:`dasksvm.parallel.allreduce`.

A solver is a *machine*: a ``spec`` (what a block computes, on the workers,
see :func:`block_round`) and a ``model`` (the client's side: the model, the
certificate and the step, e.g. :class:`JointModel`), run by
:func:`run_rounds`; :func:`row_parallel_solver` makes the public solver
function from the machine's setup.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import operator

import numpy as np

from ..kernels.multiclass import row_sq_norms
from ..parallel.reduce import (
    SparseRows,
    add_partials,
    allreduce,
    partial_nbytes,
    reduce_task_count,
)
from ._common import round_seeds
from .result import History, SolverResult, warn_not_converged

__all__ = [
    "ROUND_PARAMETERS_DOC",
    "SCHEDULES",
    "BlockState",
    "JointModel",
    "accumulate",
    "adapt_sigma",
    "apply_step",
    "auto_passes",
    "block_columns",
    "block_round",
    "check_solver_params",
    "fill_doc",
    "final_alpha",
    "line_search",
    "n_round_tasks",
    "prepare_block",
    "raw_step",
    "restrict_rows",
    "row_parallel_solver",
    "run_rounds",
    "scatter_per_block",
    "step_certificate",
]


SCHEDULES = ("parallel", "ring")


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
    rows, scalars = add_partials(prev[:2], part)
    moved = (prev[2] if len(prev) > 2 else 0) + partial_nbytes(prev[:2])
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


def step_certificate(wsq, wd, dd, loss, lin, dlin, *, enabled, updated):
    """The round's step and certificate from the all-reduced sums.

    With the round's model W_t, the blocks' summed proposal dW (the change of
    W per unit step), wsq = ||W_t||^2, wd = <W_t, dW>, dd = ||dW||^2, the loss
    share sum at W_t and the dual linear term ``lin`` and its change ``dlin``:

    - gamma: :func:`line_search` (``enabled``), 1 without the line search or
      when no update was proposed (not ``updated``);
    - primal P(W_t) = 1/2 wsq + loss;
    - dual D after the step = lin + gamma dlin - 1/2 ||W_t + gamma dW||^2;
    - the relative gap (P - D) / |P| and :func:`raw_step`.

    Floats, or (m,) arrays for m independent problems (one-vs-rest).
    Returns ``(gamma, primal, dual, rel, raw)``.
    """
    wsq, wd, dd, loss, lin, dlin = (
        np.asarray(a, dtype=float) for a in (wsq, wd, dd, loss, lin, dlin)
    )
    gamma = line_search(wd, dd, dlin, enabled) if updated else np.ones_like(dd)
    primal = 0.5 * wsq + loss
    dual = lin + gamma * dlin - 0.5 * (wsq + 2.0 * gamma * wd + gamma * gamma * dd)
    rel = (primal - dual) / np.maximum(np.abs(primal), np.finfo(float).tiny)
    return gamma, primal, dual, rel, raw_step(wd, dd, dlin)


class JointModel:
    """Client side of a machine with one certificate for all K classes (LLW, CS).

    Holds the model W (n_columns, K) that the blocks see and the model the
    last certificate is for. Each round :meth:`update` reads the all-reduced
    ``(SparseRows of the proposal, [loss, lin, dlin])``, takes the step with
    :func:`step_certificate` and moves W by :meth:`take_step`. A machine
    overrides :meth:`direction` (the change of W per unit step, when the
    blocks send the change of another matrix) and :meth:`take_step`.
    """

    def __init__(self, n_columns, n_classes, line_search):
        self.W = np.zeros((n_columns, n_classes))
        self.certified = self.W
        self.line_search = line_search

    def slice(self, cols):
        return self.W[cols]

    def task_args(self):
        return ()

    def direction(self, rows):
        """The change of W per unit step on the rows ``rows.indices``."""
        return rows.values

    def take_step(self, rows, gamma):
        """Set ``self.W`` to W + gamma * (the proposal); never in place (the
        certified model is the old W)."""
        self.W = self.W.copy()
        self.W[rows.indices] += gamma * rows.values

    def update(self, total, updated):
        rows, (loss, lin, dlin) = total[0], total[1]
        W = self.W
        dW = self.direction(rows)
        wsq = float(np.sum(W * W))
        wd = float(np.sum(W[rows.indices] * dW))
        dd = float(np.sum(dW * dW))
        gamma, primal, dual, rel, raw = step_certificate(
            wsq, wd, dd, loss, lin, dlin, enabled=self.line_search, updated=updated
        )
        gamma = float(gamma)
        self.certified = W
        self.take_step(rows, gamma)
        return {"primal": float(primal), "dual": float(dual), "stop": float(rel),
                "gamma": gamma, "raw_step": float(raw), "extra": {"gamma": gamma}}

    def coef(self):
        return np.ascontiguousarray(self.certified.T)


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
            total, up = allreduce(
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
            up = (last[2] if len(last) > 2 else 0) + partial_nbytes(last[:2])
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
    return SolverResult.from_record(
        model.coef(),
        rec,
        n_iter=t,
        converged=converged,
        history=history.records,
        state={"alpha": alpha},
        rel_gap=stop,
    )


#: numpydoc entries that the row-parallel solvers' Parameters sections share
#: (put in place of a line ``{round_parameters}`` by :func:`row_parallel_solver`)
ROUND_PARAMETERS_DOC = """\
n_classes : int >= 2
C : float > 0
tol : float > 0
    Relative duality gap to reach.
max_iter : int >= 1
    Update rounds at most.
local_passes : int >= 1 or "auto"
    Passes over every row per round (parallel: each block's passes over
    its rows; ring: laps around the blocks, one pass per visit).
    "auto" (default): enough that a round computes about 5e6 non-zero x
    class updates per block, between 1 and 10.
sigma : None, "adaptive" or float > 0
    sigma' of the local subproblems (curvature sigma' ||x_i||^2). None
    (default): "adaptive" for the parallel schedule (starts at the number
    of blocks, the safe CoCoA+ value, and is halved / doubled within
    [1, number of blocks] when the line search's unconstrained step is
    above 1.5 / below 0.75), 1 for the ring. With the line search any
    sigma' in [1, number of blocks] keeps every round a monotone ascent
    at least as good as CoCoA averaging.
line_search : bool
    Choose the step gamma in [0, 1] by exact line search on the dual
    (default) instead of CoCoA+'s gamma = 1.
schedule : {"parallel", "ring"}
    "parallel": CoCoA+, all blocks at once from the same model.
    "ring": the blocks in turn, each starting from the changes of those
    before it (exact sequential dual coordinate ascent, no two blocks
    running at once; see :func:`~.multiclass_objectives.run_rounds`)."""


def fill_doc(doc, **blocks):
    """``doc`` with every line that is just ``{name}`` replaced by ``blocks[name]``,
    indented as that line was (None stays None, as under ``python -OO``)."""
    if doc is None:
        return None
    out = []
    for line in doc.splitlines(keepends=True):
        key = line.strip()
        if key.startswith("{") and key.endswith("}") and key[1:-1] in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            text = blocks[key[1:-1]]
            out.extend(indent + row if row.strip() else row for row in text.splitlines(True))
            out.append("\n")
        else:
            out.append(line)
    return "".join(out)


#: the solver keywords that :func:`row_parallel_solver` hands on to :func:`run_rounds`
_ROUND_KEYWORDS = (
    "C",
    "tol",
    "max_iter",
    "local_passes",
    "sigma",
    "random_state",
    "verbose",
    "key_prefix",
    "split_every",
    "schedule",
)


def row_parallel_solver(name):
    """Decorator: a machine's ``setup(blocks, n_classes, *, ...) -> (spec, model)``
    becomes its solver.

    The solver has ``setup``'s signature and docstring (a line
    ``{round_parameters}`` in it replaced by :data:`ROUND_PARAMETERS_DOC`). A
    call checks the arguments (:func:`check_solver_params`), builds the
    machine with ``setup`` and runs :func:`run_rounds` on it with the
    keywords ``C``, ``tol``, ``max_iter``, ``local_passes``, ``sigma``,
    ``random_state``, ``verbose``, ``key_prefix``, ``split_every`` and
    ``schedule`` (which ``setup`` must therefore take); ``name`` is the
    machine's name in the ConvergenceWarning.
    """

    def decorate(setup):
        signature = inspect.signature(setup)

        @functools.wraps(setup)
        def solver(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params = bound.arguments
            n_classes = params["n_classes"]
            check_solver_params(
                n_classes, params["C"], params["tol"], params["max_iter"], params["local_passes"]
            )
            spec, model = setup(*bound.args, **bound.kwargs)
            rounds = {key: params[key] for key in _ROUND_KEYWORDS}
            return run_rounds(params["blocks"], n_classes, spec, model, name=name, **rounds)

        solver.__doc__ = fill_doc(setup.__doc__, round_parameters=ROUND_PARAMETERS_DOC)
        return solver

    return decorate
