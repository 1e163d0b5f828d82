"""Lee-Lin-Wahba multiclass SVM by row-parallel CoCoA+ with the auxiliary v
(formulations.md section 2b)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import llw_local, llw_loss
from ._common import saved_array
from .registry import Param, register
from .rowparallel import PARAMS, JointMachine, n_parts, round_plan

__all__ = ["LLW", "LOCAL_V", "build_llw"]

# local_v -> whether the local solver keeps v optimal for the block's own changes
LOCAL_V = {"track": True, "fixed": False}


def _center(U):
    """-(U + v) with v = -(1/K) sum_k u_k: the LLW model of U, rows summing to 0."""
    return U.mean(axis=1, keepdims=True) - U


class LLW(JointMachine):
    """Certified Lee-Lin-Wahba multiclass SVM: row-parallel CoCoA+ with an auxiliary v.

    Minimizes

        P(W) = 1/2 sum_k ||w_k||^2 + sum_i C_i sum_{k != y_i} max(0, 1 + w_k . x_i)
        subject to sum_k w_k = 0

    (C_i = C times the row's weight, labels y_i in 0..K-1). With
    u_k = sum_{i: y_i != k} alpha_{i,k} x_i and the multiplier v of the
    constraint, w_k = -(u_k + v) and D(alpha, v) = sum alpha - 1/2 sum_k
    ||u_k + v||^2, 0 <= alpha_{i,k} <= C_i, alpha_{i,y_i} = 0. The row blocks
    run CoCoA+ on alpha (local curvature sigma' (1 - 1/K) ||x_i||^2 with the
    local view of v tracking the block's own changes, see ``local_v``); after
    every round v <- -(1/K) sum_k u_k in closed form, which makes
    W = -(U + v) sum to zero exactly (to rounding) and maximizes D over v.

    Shapes: the client holds U and W, (n_columns, K); every block keeps its
    alpha (n_rows_k, K) on its worker.

    One round t (one task per worker, key ``llw-local-r{t}-w{j}``):

    - down, per worker: W_t on the union of its blocks' touched columns
      ((n_touched, K) float64, with those columns' indices) and sigma';
    - each block computes its share of the loss at W_t and runs its local
      passes of dual coordinate ascent over alpha_{i,k} (k != y_i), keeping
      the proposed alpha on its worker (never sent);
    - up, per worker: one partial, the sum over its blocks of the change of
      U (SparseRows: touched columns x K, zero rows dropped) and three
      scalars (loss, sum of alpha, its change);
    - the client takes the step gamma in [0, 1] maximizing
      max_v D(alpha + gamma d_alpha, v) (exact line search on a concave
      quadratic; gamma = 1 without ``line_search``), records P(W_t),
      D(alpha_t + gamma d_alpha, v) and the gap, sets U_{t+1} = U_t + gamma dU
      and W_{t+1} = -(U_{t+1} + v_{t+1}); gamma reaches the blocks as the
      round's acceptance. P is evaluated at W_t, which satisfies the
      constraint, so the gap is a true certificate.

    Stopping rule: the first round with (P(W_t) - D) / |P(W_t)| <= tol
    returns W_t. After ``max_iter`` update rounds one more round evaluates
    P(W_T) against D(alpha_T, v_T), and a ConvergenceWarning is issued if
    tol is still not met.

    The result's ``coef`` has shape (n_classes, n_columns) with columns summing
    to 0; ``state["alpha"]`` holds futures of the blocks' accepted dual
    variables (n_rows_k, n_classes).

    Parameters
    ----------
    cols : list of ndarray
        The touched columns of every block (:meth:`BlockSet.columns`).
    n_columns, n_classes : int
    C : float > 0
    passes : int >= 1
        Coordinate passes over the block's rows in one ``local`` call.
    sigma : float > 0
        The starting sigma'.
    adaptive : bool
        Adapt sigma' after every round
        (:func:`~dasksvm.solvers.rowparallel.adapt_sigma`).
    line_search : bool
    track_v : bool
        ``local_v == "track"``.
    """

    name = "Lee-Lin-Wahba"
    prefix = "llw"
    worker_fields = (*JointMachine.worker_fields, "track_v")

    def __init__(self, cols, n_columns, n_classes, *, track_v, **kw):
        super().__init__(cols, n_columns, n_classes, **kw)
        self.track_v = bool(track_v)
        self.U = np.zeros((self.n_columns, self.n_classes))

    # --- on the workers: the block's mathematics ---------------------------------------
    def _loss(self, st, W, active):
        return np.array([llw_loss(st.indptr, st.indices, st.data, st.y, st.c, W)])

    def _lin(self, st, alpha, active):
        return np.array([alpha.sum()])

    def _kernel(self, st, alpha, rv, shared, passes, seed, active):
        dU = np.zeros((len(st.cols), self.n_classes))
        return llw_local(st.indptr, st.indices, shared, st.data, st.y, st.c, st.sqn, alpha,
                         rv.view, rv.mv, dU, rv.sigma, self.track_v, passes, seed)

    def _shift(self, view, pos, vals):
        # W = -(U + v): with v tracked W moves by center(dU), with v fixed by -dU
        view[pos] += _center(vals) if self.track_v else -vals

    def _model_rows(self, st):
        return np.asarray(st.local_X().T @ st.alpha)  # U on the touched columns

    # --- on the client -----------------------------------------------------------------
    def direction(self, rows):
        return _center(rows.values)  # change of W per unit step, on the touched rows

    def take_step(self, rows, gamma):
        self.U[rows.indices] += gamma * rows.values
        # the v step: v = -(1/K) sum_k u_k, i.e. W = center(U); only touched rows move
        self.W[rows.indices] = _center(self.U[rows.indices])

    def restore(self, total):
        self.U = self._dense(total)
        self.W = _center(self.U)

    def model_arrays(self):
        return {**super().model_arrays(), "U": self.U}

    def load_model_arrays(self, arrays):
        super().load_model_arrays(arrays)
        self.U = saved_array(arrays, "U", self.U.shape).copy()


@register("llw", "multiclass", {
    **PARAMS,
    "local_v": Param("track", ("choice", tuple(LOCAL_V))),
})
def build_llw(blocks, n_classes, seeds, *, C, tol, local_passes, sigma, line_search, schedule,
              local_v):
    """Lee-Lin-Wahba (:class:`LLW`) on the row blocks. Its own parameters:

    local_passes : int >= 1 or "auto"
        Passes over every row per round (parallel: each block's passes over
        its rows; ring: laps around the blocks, one pass per visit). "auto"
        (default): enough that a round computes about 5e6 non-zero x class
        updates per block, between 1 and 10.
    sigma : None or float > 0
        sigma' of the local subproblems (curvature sigma' ||x_i||^2). None
        (default): adaptive for the parallel schedule (starts at the number
        of parts, the safe CoCoA+ value, and is halved / doubled within
        [1, parts] when the line search's unconstrained step is above 1.5 /
        below 0.75), 1 for the ring. A part is a worker: the blocks of one
        worker move one shared view of the model (:class:`~.rowparallel.RowView`, one after
        another or on its threads at once), as CoCoA+'s do. With the line
        search any sigma' in [1, parts] keeps every round a monotone ascent
        at least as good as CoCoA averaging.
    line_search : bool
        Choose the step gamma in [0, 1] by exact line search on the dual
        (default) instead of CoCoA+'s gamma = 1.
    schedule : {"parallel", "ring"}
        "parallel": CoCoA+, all blocks at once from the same model
        (``AllBlocks``). "ring": the blocks in turn, each starting from the
        changes of those before it (``Ring(laps=local_passes)``: exact
        sequential dual coordinate ascent, no two blocks running at once).
    local_v : {"track", "fixed"}
        How the local solver treats v (see
        :func:`dasksvm.kernels.multiclass.llw_local`): "track" (default)
        keeps it optimal for the block's own changes; "fixed" holds it
        during the passes (formulations.md 2b; exact as well, but it
        alternates between alpha and v and needs far more rounds).
    """
    passes, sigma, adaptive, plan = round_plan(blocks, n_classes, local_passes=local_passes,
                                               sigma=sigma, schedule=schedule)
    machine = LLW(blocks.columns(), blocks.n_columns, n_classes, C=C, passes=passes,
                  sigma=sigma, adaptive=adaptive, line_search=line_search, n_parts=n_parts(blocks),
                  track_v=LOCAL_V[local_v])
    return machine, plan
