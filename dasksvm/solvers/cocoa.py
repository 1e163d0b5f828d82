"""CoCoA+ for the binary linear SVM (formulations.md section 1b)."""

from __future__ import annotations

import numpy as np

from ..kernels.sdca import (
    cocoa_local,
    dense_cocoa_local,
    dense_primal_dual_partials,
    primal_dual_partials,
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
    squared row norms, per-row bounds C_i, and ``view``: (the worker's blocks, the union
    of their columns (all of w when one is dense), this CSR block's column positions in
    it, None for a dense block), made when that set changes."""

    __slots__ = ("alpha", "c", "proposal", "sqn", "view")

    def __init__(self, alpha, sqn, c):
        self.alpha, self.sqn, self.c, self.proposal, self.view = alpha, sqn, c, None, None


class _View:
    """The round's model as the blocks of one worker share it: ``w`` whole (for the
    certificate), ``w_u = w[cols]`` on the union ``cols`` of their columns, and ``acc``,
    the change of ``w_u`` the worker's blocks have made so far in the round."""

    __slots__ = ("acc", "cols", "w", "w_u")

    def __init__(self, w, cols):
        self.w, self.cols, self.w_u, self.acc = w, cols, w[cols], np.zeros(len(cols))


class CoCoA(Machine):
    """Certified CoCoA+ for the binary linear SVM, as a round-engine machine.

    Minimizes P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i) over the block
    columns (C_i = C times the row's weight, held in ``block.weight``; y in
    {-1, +1}) through its dual (formulations.md section 1).

    One round t (one task per worker, key ``cocoa-local-r{t}-w{j}``):

    1. the client sends w_t (one float64 vector of n_columns) to each worker;
    2. every block on the worker, where its dual variables alpha live,
       computes its share of P(w_t), of D(alpha_t) and of the dual point
       beta(w_t) read off w_t by the loss's derivative, then runs
       ``local_passes`` passes of dual coordinate ascent and keeps the
       proposed alpha. The blocks of one worker are one part of CoCoA+:
       they share one view of w and of the change made so far in the round
       (one after another, or at once on the worker's threads as in
       PASSCoDe, Hsieh, Yu and Dhillon 2015), so a worker behaves like one
       block of all its rows (Gauss-Seidel) and only the K workers are
       combined as CoCoA+ parts (sigma' = K, gamma = 1 for ``"add"``;
       sigma' = 1, gamma = 1/K for ``"average"``). Each block returns its
       own exact change, so w_{t+1} = w(alpha_{t+1}) whatever the threads'
       interleaving;
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
        Coordinate passes per block per round (fractions allowed).
    aggregation : {"add", "average"}
    """

    name = "CoCoA+"
    prefix = "cocoa"
    worker_fields = ("C", "l2", "gamma", "sigma", "local_passes")

    def __init__(self, n_columns, n_parts, *, C, loss, local_passes, aggregation):
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
        return _State(alpha, sqn, self.C * block.weight)

    def settle(self, st, acceptance):
        if st.proposal is not None and acceptance is not None:
            st.alpha = st.proposal
        st.proposal = None

    def worker_view(self, w, blocks, states):
        key = tuple((b.index, b.dense is not None) for b in blocks)
        if states[0].view is None or states[0].view[0] != key:
            if any(b.dense is not None for b in blocks):  # dense rows: the view is all of w
                cols = np.arange(len(w))
            elif len(blocks) == 1:
                cols = blocks[0].cols
            else:
                cols = np.unique(np.concatenate([b.cols for b in blocks]))
            for b, st in zip(blocks, states):
                pos = None
                if b.dense is None:
                    _, local, _ = b.local_csr()
                    pos = np.searchsorted(cols, b.cols).astype(np.int32)[local]
                st.view = (key, cols, pos)
        return _View(w, states[0].view[1])

    def local(self, block, st, view, seed, update, carry=None):
        if not isinstance(view, _View):  # run outside the engine's worker task
            view = self.worker_view(view, [block], [st])
        cert = self._certificate(block, st, view.w)
        n_steps = round(self.local_passes * block.n_rows) if update else 0
        if not update:
            return cert
        if n_steps == 0:
            return SparseVector(np.zeros(0, np.int64), np.zeros(0), len(view.w)), cert
        new = st.alpha.copy()
        v = self._ascent(block, st, view, new, n_steps, seed)
        if self.gamma != 1.0:
            new = st.alpha + self.gamma * (new - st.alpha)
            v *= self.gamma
        st.proposal = new
        return (v if block.dense is not None else block.spread(v, len(view.w))), cert

    def _certificate(self, block, st, w):
        """(u, loss, dual, b_sum, b_sq) of the block at w (:func:`primal_dual_partials`)."""
        if block.dense is not None:
            loss, dual, u, b_sum, b_sq = dense_primal_dual_partials(
                block.dense, block.y, st.c, st.alpha, w, self.l2)
            return u, loss, dual, b_sum, b_sq
        # the CSR kernels work on the block's own columns: w[cols], u of len(cols)
        indptr, indices, data = block.local_csr()
        loss, dual, u, b_sum, b_sq = primal_dual_partials(
            indptr, indices, data, block.y, st.c, st.alpha, w[block.cols], self.l2
        )
        return block.spread(u, len(w)), loss, dual, b_sum, b_sq

    def _ascent(self, block, st, view, alpha, n_steps, seed):
        """The block's ``n_steps`` coordinate steps on ``alpha`` (in place) in ``view``;
        its change of w: all columns (dense block) or ``len(block.cols)``."""
        if block.dense is not None:
            return dense_cocoa_local(block.dense, block.y, st.c, st.sqn, alpha, view.w_u,
                                     view.acc, self.sigma, self.l2, n_steps, seed)
        indptr, indices, data = block.local_csr()
        return cocoa_local(indptr, indices, st.view[2], data, block.y, st.c, st.sqn, alpha,
                           view.w_u, view.acc, len(block.cols), self.sigma, self.l2, n_steps,
                           seed)

    def rebuild(self, block, st):
        if block.dense is not None:
            return np.asarray(block.dense.T @ (st.alpha * block.y), dtype=np.float64)
        w_loc = np.asarray(block.X.T @ (st.alpha * block.y))[block.cols]
        return block.spread(w_loc)

    def save(self, st):
        return {"alpha": st.alpha}

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
        u, loss_sum, dual_sum, b_sum, b_sq = cert
        wsq = float(self.w @ self.w)
        # two dual-feasible points: the iterate alpha_t (w_t = w(alpha_t)) and the best
        # multiple of beta(w_t); the better one certifies w_t
        dual_alpha = dual_sum - 0.5 * wsq
        dual_beta = dual_bound(u, b_sum, b_sq, self.l2)
        self._dw = dw
        return {"primal": 0.5 * wsq + loss_sum, "dual": max(dual_alpha, dual_beta),
                "extra": {"dual_alpha": dual_alpha}}

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
})
def build_cocoa(blocks, n_classes, seeds, *, C, tol, loss, local_passes, aggregation):
    """CoCoA+ (:class:`CoCoA`) on every block at once."""
    machine = CoCoA(blocks.n_columns, len(set(blocks.workers)), C=C, loss=loss,
                    local_passes=local_passes,
                    aggregation=aggregation)
    return machine, AllBlocks()
