"""Lee-Lin-Wahba multiclass SVM by row-parallel CoCoA+ with the auxiliary v
(formulations.md section 2b)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import llw_local, llw_loss
from .multiclass_objectives import JointModel, row_parallel_solver

__all__ = ["LOCAL_V", "solve_llw"]

# local_v -> whether the local solver keeps v optimal for the block's own changes
LOCAL_V = {"track": True, "fixed": False}


class _LLWSpec:
    """The Lee-Lin-Wahba machine for :func:`block_round` (runs on the workers).

    Dual linear term: lin = sum of the block's alpha (alpha[i, y_i] stays 0).
    ``track_v``: see :func:`dasksvm.kernels.multiclass.llw_local`.
    """

    def width(self, n_classes, track_v):
        return n_classes

    def n_scalars(self, n_classes, track_v):
        return 1

    def loss(self, st, W, track_v):
        return np.array([llw_loss(st.indptr, st.indices, st.data, st.y, st.c, W)])

    def lin(self, st, alpha, track_v):
        return np.array([alpha.sum()])

    def local(self, st, alpha, view, sigma, passes, seed, track_v):
        return llw_local(
            st.indptr, st.indices, st.data, st.y, st.c, st.sqn, alpha, view, sigma, track_v,
            passes, seed,
        )

    def shift(self, view, pos, vals, track_v):
        # W = -(U + v): with v tracked W moves by center(dU), with v fixed by -dU
        view[pos] += _center(vals) if track_v else -vals


def _center(U):
    """-(U + v) with v = -(1/K) sum_k u_k: the LLW model of U, rows summing to 0."""
    return U.mean(axis=1, keepdims=True) - U


class _LLWModel(JointModel):
    """Client side: U (n_columns, K), W = -(U + v) with v optimal, the steps."""

    def __init__(self, n_columns, n_classes, line_search, track_v):
        super().__init__(n_columns, n_classes, line_search)
        self.track_v = bool(track_v)
        self.U = np.zeros((n_columns, n_classes))

    def task_args(self):
        return (self.track_v,)

    def direction(self, rows):
        return _center(rows.values)  # change of W per unit step, on the touched rows

    def take_step(self, rows, gamma):
        self.U = self.U.copy()
        self.U[rows.indices] += gamma * rows.values
        # the v step: v = -(1/K) sum_k u_k, i.e. W = center(U); only touched rows move
        self.W = self.W.copy()
        self.W[rows.indices] = _center(self.U[rows.indices])


@row_parallel_solver("Lee-Lin-Wahba")
def solve_llw(
    blocks,
    n_classes,
    *,
    C=1.0,
    tol=1e-3,
    max_iter=1000,
    local_passes="auto",
    sigma=None,
    line_search=True,
    local_v="track",
    schedule="parallel",
    random_state=None,
    verbose=0,
    key_prefix="llw",
    split_every=8,
):
    """Certified Lee-Lin-Wahba multiclass SVM: row-parallel CoCoA+ with an auxiliary v.

    Minimizes

        P(W) = 1/2 sum_k ||w_k||^2 + sum_i C_i sum_{k != y_i} max(0, 1 + w_k . x_i)
        subject to sum_k w_k = 0

    (C_i = C times the row's weight). With u_k = sum_{i: y_i != k}
    alpha_{i,k} x_i and the multiplier v of the constraint, w_k = -(u_k + v)
    and D(alpha, v) = sum alpha - 1/2 sum_k ||u_k + v||^2, 0 <= alpha_{i,k}
    <= C_i. The row blocks run CoCoA+ on alpha (local curvature
    sigma' (1 - 1/K) ||x_i||^2 with the local view of v tracking the block's
    own changes, see ``local_v``; sigma' adapted within [1, number of blocks]
    by default); after every round v <- -(1/K) sum_k u_k in closed form,
    which makes W = -(U + v) sum to zero exactly (to rounding) and maximizes
    D over v.

    One round t (task keys ``{key_prefix}-local-r{t}``, ``-partial-r{t}``,
    ``-allreduce-r{t}``):

    1. the client scatters to every block W_t restricted to the block's
       touched columns (a (n_touched_k, K) float64 array);
    2. each block computes its share of the loss at W_t, runs
       ``local_passes`` passes of dual coordinate ascent over its
       alpha_{i,k} (k != y_i), and keeps the proposed alpha on
       its worker (never sent);
    3. one all-reduce sums the blocks' changes of U (touched columns x K,
       zero rows dropped) and three scalars (loss, sum of alpha, its change);
    4. the client takes the step gamma in [0, 1] maximizing
       max_v D(alpha + gamma d_alpha, v) (an exact line search on a concave
       quadratic; gamma = 1, plain CoCoA+ "adding", without ``line_search``),
       sets U_{t+1} = U_t + gamma dU and v_{t+1} = -(1/K) sum_k u_k, and
       records P(W_t), D(alpha_{t+1}, v_{t+1}) and the gap. P is evaluated
       at W_t = -(U_t + v_t), which satisfies the constraint, so the gap is
       a true certificate.

    Stopping rule: the first round with (P(W_t) - D) / |P(W_t)| <= tol
    returns W_t. After ``max_iter`` update rounds one more round evaluates
    P(W_T) against D(alpha_T, v_T), and a ConvergenceWarning is issued if
    tol is still not met.

    Parameters
    ----------
    blocks : dasksvm.parallel.BlockSet
        Labels encoded as class indices 0..n_classes-1 (float); the
        intercept column, if any, already appended (its weights then also
        sum to zero over the classes).
    {round_parameters}
    local_v : {"track", "fixed"}
        How the local solver treats v (see
        :func:`dasksvm.kernels.multiclass.llw_local`): "track" (default)
        keeps it optimal for the block's own changes; "fixed" holds it
        during the passes (formulations.md 2b; exact as well, but it
        alternates between alpha and v and needed far more rounds).
    random_state : int or None
    verbose : int
    key_prefix : str
    split_every : int
        Fan-in of the reduction tree.

    Returns
    -------
    SolverResult
        ``coef`` of shape (n_classes, n_columns) with columns summing to 0;
        ``state["alpha"]`` holds futures of the blocks' dual variables
        (n_rows_k, n_classes), which stay on their workers.
    """
    if local_v not in LOCAL_V:
        raise ValueError(f"local_v must be one of {sorted(LOCAL_V)}, got {local_v!r}")
    return _LLWSpec(), _LLWModel(blocks.n_columns, int(n_classes), line_search, LOCAL_V[local_v])
