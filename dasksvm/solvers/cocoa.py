"""CoCoA+ for the binary linear SVM (formulations.md section 1b)."""

from __future__ import annotations

import numpy as np

from ..kernels.sdca import (
    cocoa_local,
    dense_cocoa_local,
    dense_primal_dual_partials,
    primal_dual_partials,
    row_combination,
    row_sq_norms,
)
from ..parallel import SparseVector, add_into, to_dense
from ..parallel.engine import AllBlocks, Machine
from ._common import LOSSES, dual_bound, saved_array, scaled_duals
from .registry import Param, register

__all__ = ["AGGREGATIONS", "CoCoA", "build_cocoa"]

# aggregation -> (gamma, sigma as a function of the number of parts K: the workers)
AGGREGATIONS = {
    "add": lambda K: (1.0, float(K)),
    "average": lambda K: (1.0 / K, 1.0),
}


class _State:
    """A block's dual variables ``alpha``, the change ``proposal`` not yet taken, its
    squared row norms, per-row bounds C_i; ``rows``, the rows the next local pass visits
    (shrinking keeps ``active[:n]``), ``lo``/``hi`` the shrinking thresholds; and ``view``:
    (the worker's blocks, the view's columns, this block's column positions in the view
    (None for a dense block), its row in the view's ``hot``), made when that set changes."""

    __slots__ = ("active", "alpha", "c", "hi", "lo", "proposal", "rows", "sqn", "view")

    def __init__(self, alpha, sqn, c):
        self.alpha, self.sqn, self.c, self.proposal, self.view = alpha, sqn, c, None, None
        self.active = np.empty(len(alpha), dtype=np.int64)
        self.rows = np.arange(len(alpha), dtype=np.int64)
        self.lo, self.hi = -np.inf, np.inf


#: a round's coordinate steps per block are at least this share of its rows (times
#: ``local_passes``): when shrinking keeps few rows, the local passes then still weigh about
#: as much as the certificate's pass over all of them (a step at a random row costs ~6
#: rows of that sequential pass), so more of the work goes to progress
MIN_STEPS_SHARE = 0.25

#: a column is hot in a worker's view when at least this share of the view's rows hold it
#: (the intercept always is), the most frequent ``MAX_HOT`` at most
HOT_SHARE, MAX_HOT = 1.0 / 16, 64


class _View:
    """The round's model as the blocks of one worker share it: ``w`` whole (for the
    certificate); on the view's columns ``cols`` (cold ones first, the ``n_hot`` hot ones
    last), ``z``: w[cols] plus, on the cold columns, sigma times the change the worker's
    blocks have made so far in the round, and ``hot`` (n_blocks, n_hot): each block's own
    change of the hot columns (a dense view: every column is hot)."""

    __slots__ = ("cols", "hot", "n_cold", "w", "z")

    def __init__(self, w, cols, n_hot, n_blocks):
        self.w, self.cols, self.z = w, cols, w[cols]
        self.n_cold = len(cols) - n_hot
        self.hot = np.zeros((n_blocks, n_hot))


def _hot_columns(blocks, cols):
    """Positions in ``cols`` of the hot columns of CSR ``blocks`` (:data:`HOT_SHARE`)."""
    counts = np.zeros(len(cols), dtype=np.int64)
    for b in blocks:
        counts[np.searchsorted(cols, b.cols)] += np.bincount(b.local_csr()[1],
                                                             minlength=len(b.cols))
    n_rows = sum(b.n_rows for b in blocks)
    hot = np.flatnonzero(counts >= max(1.0, HOT_SHARE * n_rows))
    return np.sort(hot[np.argsort(-counts[hot], kind="stable")[:MAX_HOT]])


class CoCoA(Machine):
    """Certified CoCoA+ for the binary linear SVM, as a round-engine machine.

    Minimizes P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i) over the block
    columns (C_i = C times the row's weight, held in ``block.weight``; y in
    {-1, +1}) through its dual (formulations.md section 1).

    One round t (one task per worker, key ``cocoa-local-r{t}-w{j}``):

    1. the client sends w_t (one float64 vector of n_columns) to each worker;
    2. every block on the worker, where its dual variables alpha live,
       computes its share of P(w_t), of D(alpha_t) and of the dual point
       beta(w_t) read off w_t by the loss's derivative, picks the rows of
       its local pass (``shrinking``), then runs ``local_passes`` passes of
       dual coordinate ascent over them and keeps the proposed alpha. The
       blocks of one worker are one part of CoCoA+: they share one view of
       w and of the change made so far in the round, at once on the
       worker's threads as in PASSCoDe (Hsieh, Yu and Dhillon 2015), so a
       worker behaves like one block of all its rows (Gauss-Seidel) and
       only the K workers are combined as CoCoA+ parts (sigma' = K,
       gamma = 1 for ``"add"``; sigma' = 1, gamma = 1/K for ``"average"``).
       The hot columns of the view (the intercept, the most frequent
       features) are summed from per-block changes, so the threads lose no
       update where they meet most (without that, on 400k x 200k text-like
       rows at C = 1, the primal at w(alpha) stayed 1e2-1e3 times further
       from the optimum than one block's for 20 rounds). Blocks beyond the
       worker's threads run after the others, which converges like a pass
       over a fixed split of the rows, slower than one permutation of them
       all (there: 1.1e-3 from the optimum after 24 rounds against 5e-6),
       so use one block per thread (the default for in-memory input). Each
       block returns its own exact change, X_b^T (d_b y_b), so w_{t+1} =
       w(alpha_{t+1}) whatever the threads' interleaving;
    3. the worker sums its blocks' (change of w, loss share, dual shares)
       and sends that one partial up (touched coordinates only when that
       is smaller);
    4. the client records P(w_t), the better of D(alpha_t) and the best
       multiple of D(beta(w_t)), the gap, and sets w_{t+1} = w_t + sum dw;
       the blocks take their proposals at the start of the next round.

    Stopping rule (the engine's): the first round with (P - D) / |P| <= tol
    returns w_t, the iterate the certificate is for.

    Parameters
    ----------
    n_columns : int
    n_parts : int
        The number of workers holding blocks (K above).
    C : float > 0
    loss : {"hinge", "squared_hinge"}
    local_passes : float > 0
        Coordinate passes per block per round (fractions allowed) over the
        rows shrinking keeps, at least ``MIN_STEPS_SHARE`` of all its rows in
        steps.
    aggregation : {"add", "average"}
    shrinking : bool
        Leave out of the local passes the rows at a bound whose gradient at w_t
        pushes them against it by more than the block's largest violation at
        w_{t-1} (LIBLINEAR's rule, decided afresh from every certificate; the
        certificate sees every row).
    """

    name = "CoCoA+"
    prefix = "cocoa"
    worker_fields = ("C", "l2", "gamma", "sigma", "local_passes", "shrinking")

    def __init__(self, n_columns, n_parts, *, C, loss, local_passes, aggregation,
                 shrinking=True):
        self.shrinking = bool(shrinking)
        self.gamma, self.sigma = AGGREGATIONS[aggregation](n_parts)
        self.C, self.loss, self.l2 = float(C), loss, loss == "squared_hinge"
        self.local_passes = float(local_passes)
        self.w = np.zeros(n_columns)
        self._dw = None

    def problem(self):
        return {"solver": "cocoa", "C": self.C, "loss": self.loss}

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        if block.dense is not None:
            sqn = np.einsum("ij,ij->i", block.dense, block.dense, dtype=np.float64)
        else:
            indptr, _, data = block.csr()
            sqn = row_sq_norms(indptr, data)
        alpha = np.zeros(block.n_rows) if saved is None else saved_array(saved, "alpha",
                                                                         (block.n_rows,))
        st = _State(alpha, sqn, self.C * block.weight)
        if saved is not None and "shrink_bounds" in saved:  # a checkpoint, not a warm start
            st.lo, st.hi = saved_array(saved, "shrink_bounds", (2,))
        return st

    def settle(self, st, acceptance):
        if st.proposal is not None and acceptance is not None:
            st.alpha = st.proposal
        st.proposal = None

    def worker_view(self, w, blocks, states):
        key = tuple((b.index, b.dense is not None) for b in blocks)
        if states[0].view is None or states[0].view[0] != key:
            self._make_view(key, len(w), blocks, states)
        _, cols, _, _, n_hot = states[0].view
        return _View(w, cols, n_hot, len(blocks))

    @staticmethod
    def _make_view(key, n_columns, blocks, states):
        """The view's columns (cold first, then hot; every column, all hot, when a block
        is dense; no hot column for a lone block, which races with nobody) and each CSR
        block's positions in them."""
        if any(b.dense is not None for b in blocks):
            cols, n_hot = np.arange(n_columns), n_columns
        else:
            cols = blocks[0].cols if len(blocks) == 1 else np.unique(
                np.concatenate([b.cols for b in blocks]))
            hot = _hot_columns(blocks, cols) if len(blocks) > 1 else np.zeros(0, np.int64)
            cold = np.setdiff1d(np.arange(len(cols)), hot, assume_unique=True)
            cols, n_hot = cols[np.concatenate([cold, hot])], len(hot)
        where = np.argsort(cols)  # position in the view of each sorted column
        for me, (b, st) in enumerate(zip(blocks, states)):
            pos = None
            if b.dense is None:
                _, local, _ = b.local_csr()
                pos = where[np.searchsorted(cols[where], b.cols)].astype(np.int32)[local]
            st.view = (key, cols, pos, me, n_hot)

    def local(self, block, st, view, seed, update, carry=None):
        if not isinstance(view, _View):  # run outside the engine's worker task
            view = self.worker_view(view, [block], [st])
        cert = self._certificate(block, st, view.w, update)
        if not update:
            return cert
        n_steps = round(self.local_passes * max(len(st.rows), MIN_STEPS_SHARE * block.n_rows))
        if n_steps == 0:
            return SparseVector(np.zeros(0, np.int64), np.zeros(0), len(view.w)), cert
        new = st.alpha.copy()
        v = self._ascent(block, st, view, new, n_steps, seed)
        if self.gamma != 1.0:
            new = st.alpha + self.gamma * (new - st.alpha)
            v *= self.gamma
        st.proposal = new
        return (v if block.dense is not None else block.spread(v, len(view.w))), cert

    def _certificate(self, block, st, w, update=True):
        """(u, loss, dual, b_sum, b_sq, n_active) of the block at w
        (:func:`primal_dual_partials`); with ``update``, sets the n_active rows of the
        round's local pass (all of them without ``shrinking``) and the next thresholds."""
        lo, hi = (st.lo, st.hi) if self.shrinking else (-np.inf, np.inf)
        if block.dense is not None:
            loss, dual, u, b_sum, b_sq, n_active, lo, hi = dense_primal_dual_partials(
                block.dense, block.y, st.c, st.alpha, w, self.l2, lo, hi, st.active)
        else:
            # the CSR kernels work on the block's own columns: w[cols], u of len(cols)
            indptr, indices, data = block.local_csr()
            loss, dual, u, b_sum, b_sq, n_active, lo, hi = primal_dual_partials(
                indptr, indices, data, block.y, st.c, st.alpha, w[block.cols], self.l2, lo,
                hi, st.active)
            u = block.spread(u, len(w))
        if update:
            st.rows, st.lo, st.hi = st.active[:n_active], lo, hi
        return u, loss, dual, b_sum, b_sq, n_active

    def _ascent(self, block, st, view, alpha, n_steps, seed):
        """The block's ``n_steps`` coordinate steps on ``alpha`` (in place) in ``view``;
        its exact change of w: all columns (dense block) or ``len(block.cols)``."""
        _, _, pos, me, _ = st.view
        if block.dense is not None:
            dense_cocoa_local(block.dense, block.y, st.c, st.sqn, alpha, view.w, view.hot,
                              me, self.sigma, self.l2, st.rows, n_steps, seed)
            return view.hot[me].copy()
        indptr, indices, data = block.local_csr()
        cocoa_local(indptr, pos, data, block.y, st.c, st.sqn, alpha, view.z, view.hot, me,
                    view.n_cold, self.sigma, self.l2, st.rows, n_steps, seed)
        return row_combination(indptr, indices, data, (alpha - st.alpha) * block.y,
                               len(block.cols))

    def rebuild(self, block, st):
        if block.dense is not None:
            return np.asarray(block.dense.T @ (st.alpha * block.y), dtype=np.float64)
        w_loc = np.asarray(block.X.T @ (st.alpha * block.y))[block.cols]
        return block.spread(w_loc)

    def save(self, st):
        return {"alpha": st.alpha, "shrink_bounds": np.array([st.lo, st.hi])}

    def export(self, st):
        return st.alpha.copy()

    # --- on the client -----------------------------------------------------------------
    def warm(self, arrays, problem):
        """The previous fit's alpha scaled by C / C_old (w is rebuilt from it)."""
        return scaled_duals(arrays, self.C / float(problem["C"]))

    def message(self, blocks=None):
        return self.w

    def step(self, total, round, update):
        dw, cert = total if update else (None, total)
        u, loss_sum, dual_sum, b_sum, b_sq, n_active = cert
        wsq = float(self.w @ self.w)
        # two dual-feasible points: the iterate alpha_t (w_t = w(alpha_t)) and the best
        # multiple of beta(w_t); the better one certifies w_t
        dual_alpha = dual_sum - 0.5 * wsq
        dual_beta = dual_bound(u, b_sum, b_sq, self.l2)
        self._dw = dw
        return {"primal": 0.5 * wsq + loss_sum, "dual": max(dual_alpha, dual_beta),
                "extra": {"dual_alpha": dual_alpha, "active_rows": int(n_active)}}

    def advance(self):
        add_into(self.w, self._dw)  # w_{t+1} = w_t + sum of the blocks' changes
        self._dw = None
        return True

    def restore(self, total):
        self.w = to_dense(total).astype(np.float64, copy=True)

    def model_arrays(self):
        return {"w": self.w}

    def load_model_arrays(self, arrays):
        self.w = saved_array(arrays, "w", self.w.shape).copy()

    def coef(self):
        # the last round certified w and did not advance it
        return self.w


@register("cocoa", "binary", {
    "loss": Param("squared_hinge", ("choice", LOSSES)),
    "local_passes": Param(1.0, ("real", 0.0, None, True)),
    "aggregation": Param("add", ("choice", tuple(AGGREGATIONS))),
    "shrinking": Param(True, ("bool",)),
})
def build_cocoa(blocks, n_classes, seeds, *, C, tol, loss, local_passes, aggregation,
                shrinking):
    """CoCoA+ (:class:`CoCoA`) on every block at once."""
    machine = CoCoA(blocks.n_columns, len(set(blocks.workers)), C=C, loss=loss,
                    local_passes=local_passes, aggregation=aggregation, shrinking=shrinking)
    return machine, AllBlocks()
