"""Lee-Lin-Wahba multiclass SVM by row-parallel CoCoA+ with the auxiliary v
(formulations.md section 2b)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import llw_local, llw_loss
from .multiclass_objectives import check_solver_params, line_search, raw_step, run_rounds

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


class _LLWModel:
    """Client side: U (n_columns, K), W = -(U + v) with v optimal, the steps."""

    def __init__(self, n_columns, n_classes, line_search, track_v):
        self.track_v = bool(track_v)
        self.U = np.zeros((n_columns, n_classes))
        self.W = np.zeros((n_columns, n_classes))
        self.certified = self.W
        self.line_search = line_search

    def slice(self, cols):
        return self.W[cols]

    def task_args(self):
        return (self.track_v,)

    def update(self, total, updated):
        dU, (loss, lin, dlin) = total[0], total[1]
        W = self.W
        dW = _center(dU.values)  # change of W per unit step, on the touched rows
        wsq = float(np.sum(W * W))
        wd = float(np.sum(W[dU.indices] * dW))
        dd = float(np.sum(dW * dW))
        gamma = float(line_search(wd, dd, dlin, self.line_search)) if updated else 1.0
        self.certified = W
        self.U = self.U.copy()
        self.U[dU.indices] += gamma * dU.values
        # the v step: v = -(1/K) sum_k u_k, i.e. W = center(U); only touched rows move
        self.W = W.copy()
        self.W[dU.indices] = _center(self.U[dU.indices])
        primal = 0.5 * wsq + loss
        dual = lin + gamma * dlin - 0.5 * (wsq + 2.0 * gamma * wd + gamma * gamma * dd)
        rel = (primal - dual) / max(abs(primal), np.finfo(float).tiny)
        return {"primal": primal, "dual": dual, "stop": rel, "gamma": gamma,
                "raw_step": float(raw_step(wd, dd, dlin)), "extra": {"gamma": gamma}}

    def coef(self):
        return np.ascontiguousarray(self.certified.T)


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
        running at once; see :func:`~.multiclass_objectives.run_rounds`).
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
    check_solver_params(n_classes, C, tol, max_iter, local_passes)
    if local_v not in LOCAL_V:
        raise ValueError(f"local_v must be one of {sorted(LOCAL_V)}, got {local_v!r}")
    model = _LLWModel(blocks.n_columns, int(n_classes), line_search, LOCAL_V[local_v])
    return run_rounds(
        blocks,
        n_classes,
        _LLWSpec(),
        model,
        C=C,
        tol=tol,
        max_iter=max_iter,
        local_passes=local_passes,
        sigma=sigma,
        random_state=random_state,
        verbose=verbose,
        key_prefix=key_prefix,
        split_every=split_every,
        name="Lee-Lin-Wahba",
        schedule=schedule,
    )
