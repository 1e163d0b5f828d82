"""The row-parallel multiclass dual machines (Lee-Lin-Wahba, Crammer-Singer, one-vs-rest).

All three are CoCoA+ (formulations.md 1b) with a model of K columns per
feature: every example's dual variables alpha_i (a row of K) live in one row
block, on the block's worker, and a round is

1. down: per worker, the model restricted to the union of the columns its
   blocks touch (``(n_touched, m)`` floats, m = K or the classes still
   running) with those columns' indices and sigma';
2. on every block: its share of the primal loss at the round's model (the
   certificate), then local passes of dual coordinate ascent on its local
   subproblem (gradient at the worker's view of the model, curvature
   sigma' ||x_i||^2: the worker's blocks share one view, :class:`RowView`,
   moved by all their steps, so a worker is one CoCoA+ part); the new alpha
   stays on the worker as a *proposal*;
3. up: per worker, the sum over its blocks of (the change of the model,
   :class:`~dasksvm.parallel.SparseRows` over the touched columns, and the
   scalars [loss, dual linear term, its change]);
4. on the client: the exact line-search step gamma in [0, 1] along the
   summed proposal (:func:`step_certificate`), the certificate, the model
   step; gamma goes down as the round's *acceptance* and every block sets
   alpha <- alpha + gamma (proposal - alpha) before its next use.

With ``schedule="ring"`` the blocks run in turn instead, each starting from
the round's model plus the changes of the blocks before it in the round
(exact sequential dual coordinate ascent, one pass per visit, ``local_passes``
laps). The round engine (:mod:`dasksvm.parallel.engine`) runs the rounds;
this module holds what is mathematics: the block state and its local round
(:class:`RowParallel`), the line search and the step certificate, sigma'
and its adaptation, and the client's model of the machines with one
certificate for all K classes (:class:`JointMachine`, LLW and CS).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..parallel.engine import AllBlocks, Machine, Ring
from ..parallel.reduce import SparseRows, to_dense
from ._common import BestIterate, passes_per_round, saved_array, scaled_duals
from .registry import Param

__all__ = [
    "AUTO_MAX_PASSES",
    "AUTO_WORK",
    "PARAMS",
    "SCHEDULES",
    "JointMachine",
    "RowParallel",
    "adapt_sigma",
    "auto_passes",
    "line_search",
    "raw_step",
    "restrict_rows",
    "round_plan",
    "step_certificate",
]

SCHEDULES = ("parallel", "ring")

#: the parameters the three machines share (the registry's rules)
PARAMS = {
    "local_passes": Param("auto", ("auto", ("int", 1, None, False))),
    "sigma": Param(None, ("none", ("word", "adaptive", ("real", 0.0, None, True)))),
    "line_search": Param(True, ("bool",)),
    "schedule": Param("parallel", ("choice", SCHEDULES)),
}

#: local_passes="auto" aims at this many (non-zero x class) updates per block per round
AUTO_WORK = 5_000_000
AUTO_MAX_PASSES = 10


def auto_passes(blocks, n_classes):
    """Passes per round for ``local_passes="auto"``: enough that a round's compute is
    not dwarfed by its ~50 ms of scheduling (at most 10, at least 1)."""
    work = max(max(blocks.nnz, default=0), max(blocks.n_rows, default=1)) * n_classes
    return passes_per_round(work, AUTO_WORK, AUTO_MAX_PASSES)


def round_plan(blocks, n_classes, *, local_passes, sigma, schedule):
    """What a round does, from the machines' parameters.

    Returns ``(passes, sigma0, adaptive, schedule)``: the coordinate passes of one
    ``local`` call (parallel: ``local_passes``; ring: 1 per visit, ``local_passes``
    laps), the starting sigma', whether sigma' adapts (:func:`adapt_sigma`; the
    parallel schedule with ``sigma=None`` or "adaptive"), and the engine's schedule.
    """
    passes = auto_passes(blocks, n_classes) if local_passes == "auto" else int(local_passes)
    parallel = schedule == "parallel"
    named = isinstance(sigma, str) and sigma == "adaptive"
    if named and not parallel:
        raise ValueError('sigma="adaptive" is for schedule="parallel"')
    adaptive = (sigma is None or named) and parallel
    if sigma is None or named:  # a worker's blocks share one view: a worker is a part
        sigma = float(n_parts(blocks)) if parallel else 1.0
    if parallel:
        return passes, float(sigma), adaptive, AllBlocks()
    return 1, float(sigma), False, Ring(laps=passes)


def n_parts(blocks):
    """The parts of a parallel round: the workers holding blocks (the blocks of one
    worker move one shared view of the model, :class:`RowView`)."""
    return len(set(blocks.workers))


class RowView:
    """The round's model as the blocks of one worker share it: ``cols``, the sorted
    union of their columns; ``W``, the round's model on them (read only: every
    block's loss is taken there); ``view``, W moved in place by every block's
    steps (times sigma), so the worker's blocks, one after another or on its
    threads at once, act as one part; ``mv``, LLW's move of v on those columns;
    ``key``, the worker's blocks."""

    __slots__ = ("W", "active", "cols", "key", "mv", "sigma", "view")

    def __init__(self, cols, W, sigma, active, key, view=None):
        self.cols, self.W, self.sigma, self.active, self.key = cols, W, sigma, active, key
        self.view = np.array(W, dtype=np.float64, copy=True) if view is None else view
        self.mv = np.zeros(len(cols))


def restrict_rows(rows, cols):
    """Positions in the sorted ``cols`` of the rows of ``rows`` that lie in it, and their values."""
    if len(rows.indices) == 0 or len(cols) == 0:
        return np.zeros(0, np.int64), rows.values[:0]
    pos = np.minimum(np.searchsorted(cols, rows.indices), len(cols) - 1)
    ok = cols[pos] == rows.indices
    return pos[ok], rows.values[ok]


def raw_step(wd, dd, dlin):
    """The unconstrained maximizer (dlin - wd) / dd of the dual along the proposal
    (> 1: the blocks' proposals were too timid; < 1: they overshot); NaN when dd = 0."""
    wd, dd, dlin = (np.asarray(a, dtype=float) for a in (wd, dd, dlin))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dd > 0.0, (dlin - wd) / np.where(dd > 0.0, dd, 1.0), np.nan)


def adapt_sigma(sigma, raw, n_blocks):
    """Adaptive sigma': halve it when the raw step exceeds 1.5, double it when under
    0.75, within [1, n_blocks] (any sigma' in that range keeps the line-searched
    round a monotone ascent at least as good as CoCoA averaging)."""
    if not np.isfinite(raw):
        return sigma
    if raw > 1.5:
        return max(1.0, sigma / 2.0)
    if raw < 0.75:
        return min(float(n_blocks), sigma * 2.0)
    return sigma


def line_search(wd, dd, dlin, enabled=True, upper=1.0):
    """Step gamma in [0, upper] maximizing lin + gamma dlin - 1/2 ||W + gamma dW||^2.

    ``wd`` = <W, dW> and ``dd`` = ||dW||^2 (floats, or arrays for one step per
    class; a dual with its own curvature along the step adds it to ``dd``, as
    the binary squared hinge does). The combination alpha + gamma * (sum of the
    blocks' proposals) is feasible for every gamma in [0, 1] (a convex
    combination of feasible points), up to ``upper`` when the blocks report
    the largest feasible step (formulations.md 1c), and the dual is a concave
    quadratic in gamma, so this is exact. Without ``enabled`` the step is
    CoCoA+'s gamma = 1.
    """
    wd = np.asarray(wd, dtype=float)
    dd = np.asarray(dd, dtype=float)
    dlin = np.asarray(dlin, dtype=float)
    if not enabled:
        return np.ones_like(dd)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(dd > 0.0, (dlin - wd) / np.where(dd > 0.0, dd, 1.0), 1.0)
    return np.clip(g, 0.0, upper)


def step_certificate(wsq, wd, dd, loss, lin, dlin, *, enabled, updated):
    """The round's step and certificate from the summed partials.

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


class _State:
    """A block's state on its worker: its rows with column indices remapped to its
    touched columns ``cols``, labels as class indices, per-row bounds C_i, squared row
    norms, the accepted dual variables ``alpha`` (n_rows, K) and the ``proposal`` of
    the last round not yet accepted (or None)."""

    __slots__ = ("alpha", "c", "cols", "data", "indices", "indptr", "merged", "n_columns",
                 "proposal", "shared", "sqn", "y")

    def local_X(self):
        """The block's rows over its touched columns, (n_rows, n_touched) CSR."""
        return sp.csr_matrix((self.data, self.indices, self.indptr),
                             shape=(len(self.y), len(self.cols)))


class RowParallel(Machine):
    """The worker side and the messages of the row-parallel multiclass machines.

    A subclass gives the machine's mathematics on one block: ``_width(active)``
    (columns of the model a round works on), ``_n_scalars(active)`` (entries
    of each scalar of the partial), ``_loss(st, W, active)`` and
    ``_lin(st, alpha, active)`` (arrays of its scalars: the loss share at the
    local model W, the dual linear term), ``_kernel(st, alpha, rv, shared,
    passes, seed, active)`` (the local passes in the :class:`RowView` ``rv``, the
    block's non-zeros at its rows ``shared``: alpha in place, the block's change
    of the model returned), ``_shift(view, pos, vals)`` (the local view moved by
    the changes of blocks before it in a ring round) and ``_model_rows(st)``
    (the block's share of the shared model from its accepted alpha), and the
    client side (``step``, ``advance``, ``restore``, ``model_arrays``, ...).

    Messages (``broadcast = False``, one per worker): ``(cols, W[cols],
    sigma, active)`` with ``cols`` the sorted union of the touched columns of
    the worker's blocks, ``active`` the classes still running (one-vs-rest)
    or None. Partials: ``(SparseRows of the change of the model, scalars)``,
    scalars = [loss, lin, dlin], each of ``_n_scalars`` entries.

    Only the worker-side settings travel with the tasks (``worker_fields``):
    the client's model stays on the client.
    """

    broadcast = False
    worker_fields = ("C", "n_classes", "n_columns", "passes")

    def __init__(self, cols, n_columns, n_classes, *, C, passes, sigma, adaptive,
                 line_search, n_parts=None):
        self.C = float(C)
        self.n_parts = len(cols) if n_parts is None else int(n_parts)
        self.n_classes = int(n_classes)
        self.n_columns = int(n_columns)
        self.passes = int(passes)
        self.cols = [np.asarray(c, dtype=np.int64) for c in cols]
        self.sigma = float(sigma)
        self.adaptive = bool(adaptive)
        self.line_search = bool(line_search)
        self._unions = {}

    def problem(self):
        return {"solver": self.prefix, "C": self.C, "n_classes": self.n_classes}

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        K = self.n_classes
        y = block.y
        yi = y.astype(np.int32)
        if y.shape[0] and (np.any(yi != y) or yi.min() < 0 or yi.max() >= K):
            raise ValueError(f"block {block.index}: labels must be class indices 0..{K - 1}")
        st = _State()
        X = block.X
        st.cols = block.cols
        st.n_columns = X.shape[1]
        st.indptr, st.indices, st.data = block.local_csr()
        st.y = yi
        st.c = self.C * np.asarray(block.weight, dtype=np.float64)
        st.sqn = block.sq_norms()
        shape = (X.shape[0], K)
        st.alpha = np.zeros(shape) if saved is None else saved_array(saved, "alpha",
                                                                     shape).copy()
        st.proposal = st.shared = st.merged = None
        return st

    def worker_view(self, message, blocks, states):
        cols, W, sigma, active = message
        return RowView(cols, W, sigma, active, tuple(b.index for b in blocks))

    @staticmethod
    def _positions(st, rv):
        """The block's columns as rows of the worker's view (``pos``) and each non-zero's
        (``shared``), made when the worker's set of blocks changes."""
        if st.shared is None or st.shared[0] != rv.key:
            pos = np.searchsorted(rv.cols, st.cols)
            st.shared = (rv.key, pos, pos[st.indices].astype(np.int64))
        return st.shared[1], st.shared[2]

    def settle(self, st, acceptance):
        """alpha <- alpha + gamma (proposal - alpha) with gamma = ``acceptance`` (a float,
        or (K,) per class); the proposal is dropped either way (so settling twice is
        settling once)."""
        if st.proposal is not None and acceptance is not None:
            st.alpha = st.alpha + acceptance * (st.proposal - st.alpha)
        st.proposal = None

    def local(self, block, st, message, seed, update, carry=None):
        """One round (or one ring visit) on one block.

        The first visit of a round starts from the accepted alpha and also returns
        the loss share at the round's model and the dual linear term; a later ring
        visit (the block's proposal of this round is still pending) continues from
        its proposal and returns zeros for those. ``carry`` (ring): the changes of
        the model made before this visit in the round, added to the local view.
        """
        if isinstance(message, RowView):  # the worker's shared view
            rv = message
            pos, shared = self._positions(st, rv)
            W = rv.W[pos]
        else:  # a ring visit (or a call outside the engine): the block's own view
            cols_u, W_u, sigma, active = message
            W = W_u[np.searchsorted(cols_u, st.cols)]  # a copy (fancy indexing)
            # the visit moves that copy itself (its loss is taken before it moves)
            rv = RowView(st.cols, W, sigma, active, None, view=W)
            shared = st.indices
        active = rv.active
        later = st.proposal is not None
        start = st.proposal if later else st.alpha
        if later:
            loss = lin = np.zeros(self._n_scalars(active))
        else:
            loss = self._loss(st, W, active)
            lin = self._lin(st, start, active)
        m = self._width(active)
        if not update:
            empty = SparseRows(np.zeros(0, np.int64), np.zeros((0, m)), st.n_columns)
            return empty, np.concatenate([loss, lin, np.zeros_like(lin)])
        if carry is not None:  # the changes before this visit, into its own view
            pos, vals = restrict_rows(carry[0], st.cols)
            self._shift(rv.view, pos, vals)
        alpha = start.copy()
        dW = self._kernel(st, alpha, rv, shared, self.passes, seed, active)
        dlin = self._lin(st, alpha, active) - self._lin(st, start, active)
        st.proposal = alpha
        rows = SparseRows.from_local(st.cols, dW, st.n_columns)
        return rows, np.concatenate([loss, lin, dlin])

    def worker_local(self, blocks, states, view, seeds, update, run):
        """Several blocks on one worker, updating: each block's loss share and dual term on
        the worker's threads, then their passes as one block of all their rows, on one
        thread (:meth:`_merged`: one visiting order over every row of the worker, as one
        block of them takes). Blocks taking their passes one after another, or on two
        threads at once, visit the rows as a fixed split of them."""
        if len(blocks) == 1 or not update:
            return super().worker_local(blocks, states, view, seeds, update, run)
        active = view.active
        starts = [st.alpha.copy() for st in states]

        def share(j):  # the block's loss share at the round's model, its dual term
            st = states[j]
            return (self._loss(st, view.W[self._positions(st, view)[0]], active),
                    self._lin(st, starts[j], active))

        shares = run(share, range(len(blocks)))
        merged = self._merged(states, view)
        alpha = np.concatenate(starts)
        dW = self._kernel(merged, alpha, view, merged.indices, self.passes, seeds[0], active)
        empty = SparseRows(np.zeros(0, np.int64), np.zeros((0, dW.shape[1])), merged.n_columns)
        out, at = [], 0
        for j, st in enumerate(states):
            st.proposal = alpha[at:at + len(st.y)]
            at += len(st.y)
            loss, lin = shares[j]
            dlin = self._lin(st, st.proposal, active) - lin
            rows = SparseRows.from_local(view.cols, dW, merged.n_columns) if j == 0 else empty
            out.append((rows, np.concatenate([loss, lin, dlin])))
        return out

    def _merged(self, states, view):
        """The worker's blocks as one :class:`_State` over the view's columns (their rows in
        order, column indices the view's; made once per set of blocks, kept on the first
        block's state: a second copy of the worker's rows)."""
        first = states[0]
        if first.merged is None or first.merged[0] != view.key:
            m = _State()
            rows = sp.vstack([sp.csr_matrix((st.data, self._positions(st, view)[1], st.indptr),
                                            shape=(len(st.y), len(view.cols)))
                              for st in states], format="csr")
            m.indptr, m.indices, m.data = rows.indptr, rows.indices, rows.data
            m.y = np.concatenate([st.y for st in states])
            m.c = np.concatenate([st.c for st in states])
            m.sqn = np.concatenate([st.sqn for st in states])
            m.cols, m.n_columns = view.cols, first.n_columns
            first.merged = (view.key, m)
        return first.merged[1]

    def rebuild(self, block, st):
        return SparseRows.from_local(st.cols, self._model_rows(st), st.n_columns)

    def save(self, st):
        return {"alpha": st.alpha}

    def export(self, st):
        return st.alpha.copy()

    # --- on the client -----------------------------------------------------------------
    def warm(self, arrays, problem):
        """The previous fit's alpha scaled by C / C_old (the model is rebuilt from it);
        with ``adaptive``, sigma' starts at the previous fit's final value (it depends on
        the blocks' coupling, not on C; it keeps adapting). Every class starts active."""
        out = scaled_duals(arrays, self.C / float(problem["C"]))
        if self.adaptive and "model__sigma" in arrays:
            self._load_sigma(_prefixed_model(arrays))
        return out

    def _union(self, blocks):
        key = tuple(blocks)
        if key not in self._unions:
            cols = [self.cols[k] for k in blocks]
            self._unions[key] = (np.unique(np.concatenate(cols)) if cols
                                 else np.zeros(0, np.int64))
        return self._unions[key]

    def message(self, blocks=None):
        cols = self._union(range(len(self.cols)) if blocks is None else blocks)
        active = self._active()
        return cols, self._slice(cols, active), self.sigma, active

    def _active(self):
        return None

    def _n_scalars(self, active):
        return 1

    def _slice(self, cols, active):
        return self.W[cols]

    def _adapt(self, raw):
        if self.adaptive:
            self.sigma = adapt_sigma(self.sigma, raw, self.n_parts)

    def _sigma_arrays(self):
        return {"sigma": np.array([self.sigma])}

    def _load_sigma(self, arrays):
        self.sigma = float(saved_array(arrays, "sigma", (1,))[0])


def _prefixed_model(arrays):
    return {n[len("model__"):]: a for n, a in arrays.items() if n.startswith("model__")}


class JointMachine(RowParallel):
    """Client side of the machines with one certificate for all K classes (LLW, CS).

    Holds the model W (n_columns, K) that the blocks see. :meth:`step` reads the
    summed ``(SparseRows of the proposal, [loss, lin, dlin])``, certifies W_t
    and finds the step gamma with :func:`step_certificate`; :meth:`advance`
    moves W by :meth:`take_step` and hands gamma down. The certificate's primal is
    that of the best W so far (:class:`~._common.BestIterate`; ``history_`` also
    records ``primal_iterate``, P(W_t)), and the fit returns that W. A machine overrides
    :meth:`direction` (the change of W per unit step, when the blocks send
    the change of another matrix), :meth:`take_step` and :meth:`restore`.
    """

    def __init__(self, cols, n_columns, n_classes, **kw):
        super().__init__(cols, n_columns, n_classes, **kw)
        self.W = np.zeros((self.n_columns, self.n_classes))
        self._best = BestIterate("W")  # the W_s of lowest primal so far: the one certified
        self._pending = None

    def _width(self, active):
        return self.n_classes

    def direction(self, rows):
        """The change of W per unit step on the rows ``rows.indices``."""
        return rows.values

    def take_step(self, rows, gamma):
        """W <- W + gamma * (the proposal), on the touched rows."""
        self.W[rows.indices] += gamma * rows.values

    def step(self, total, round, update):
        rows, (loss, lin, dlin) = total
        W = self.W
        dW = self.direction(rows)
        wsq = float(np.sum(W * W))
        wd = float(np.sum(W[rows.indices] * dW))
        dd = float(np.sum(dW * dW))
        gamma, primal, dual, _, raw = step_certificate(
            wsq, wd, dd, loss, lin, dlin, enabled=self.line_search, updated=update
        )
        gamma, raw = float(gamma), float(raw)
        self._pending = (rows, gamma, raw)
        return {"primal": self._best.offer(float(primal), W), "dual": float(dual),
                "extra": {"gamma": gamma, "sigma": self.sigma, "raw_step": raw,
                          "primal_iterate": float(primal)}}

    def advance(self):
        rows, gamma, raw = self._pending
        self._pending = None
        self.take_step(rows, gamma)
        self._adapt(raw)
        return gamma

    def restore(self, total):
        self.W = self._dense(total)

    def _dense(self, total):
        if total is None:
            return np.zeros((self.n_columns, self.n_classes))
        return np.array(to_dense(total), dtype=np.float64).reshape(self.n_columns,
                                                                  self.n_classes)

    def model_arrays(self):
        return {"W": self.W, **self._sigma_arrays(), **self._best.arrays(self.C)}

    def load_model_arrays(self, arrays):
        self.W = saved_array(arrays, "W", self.W.shape).copy()
        self._load_sigma(arrays)
        self._best.load(arrays, self.C, self.W.shape)

    def coef(self):
        """The W of lowest primal (the one the last certificate is for), (K, n_columns)."""
        return np.ascontiguousarray(self._best.get(self.W).T)
