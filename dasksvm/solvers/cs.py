"""Crammer-Singer multiclass SVM by row-parallel CoCoA+ (formulations.md section 2c)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import cs_local, cs_loss
from ._common import round_seeds
from .multiclass_objectives import (
    SparseRows,
    allreduce_rows,
    block_columns,
    check_solver_params,
    n_round_tasks,
    prepare_block,
    scatter_per_block,
)
from .result import History, SolverResult, warn_not_converged

__all__ = ["solve_cs"]


def _cs_round(block, state, W_local, seed, C, n_classes, sigma, passes, gamma):
    """One block's task of one round: loss at the round's model, local CS passes."""
    if state is None:
        st = prepare_block(block, n_classes, C)
    else:
        st, prop = state[0], state[2]
        if prop is not None:
            st = st.with_alpha(st.alpha + gamma * (prop - st.alpha))
    if W_local is None:
        W_local = np.zeros((len(st.cols), n_classes))
    loss = cs_loss(st.indptr, st.indices, st.data, st.y, st.c, W_local)
    # sum_{i, k != y_i} alpha_{i,k} = -sum_i alpha_{i,y_i} since each alpha_i sums to 0
    ar = np.arange(len(st.y))
    lin = float(st.alpha[ar, st.y].sum())
    if passes:
        alpha = st.alpha.copy()
        dW = cs_local(
            st.indptr, st.indices, st.data, st.y, st.c, st.sqn, alpha, W_local, sigma, passes, seed
        )
        rows = SparseRows.from_local(st.cols, dW, st.n_columns)
        dlin = float(alpha[ar, st.y].sum()) - lin
    else:
        alpha = None
        rows = SparseRows(np.zeros(0, np.int64), np.zeros((0, n_classes)), st.n_columns)
        dlin = 0.0
    return st, (rows, np.array([loss, lin, dlin])), alpha


def _alpha(out, gamma):
    st, _, prop = out
    return st.alpha if prop is None else st.alpha + gamma * (prop - st.alpha)


def solve_cs(
    blocks,
    n_classes,
    *,
    C=1.0,
    tol=1e-3,
    max_iter=1000,
    local_passes=1,
    random_state=None,
    verbose=0,
    key_prefix="cs",
    split_every=8,
    sigma=None,
    line_search=True,
):
    """Certified Crammer-Singer multiclass SVM: row-parallel CoCoA+ with a K x d model.

    Minimizes

        P(W) = 1/2 sum_k ||w_k||^2 + sum_i C_i max_k ([k != y_i] + (w_k - w_{y_i}) . x_i)

    (C_i = C times the row's weight) through the dual of Keerthi et al.
    (2008): per example alpha_i in R^K with alpha_{i,k} <= C_i [k = y_i] and
    sum_k alpha_{i,k} = 0, w_k = sum_i alpha_{i,k} x_i and
    D(alpha) = -1/2 sum_k ||w_k||^2 - sum_i sum_{k != y_i} alpha_{i,k}.
    Every example's block alpha_i lives in one row block, so the blocks run
    CoCoA+ ("adding": gamma = 1, sigma' = number of blocks); each example
    step solves its K-variable QP exactly by sorting.

    One round t (task keys ``{key_prefix}-local-r{t}``, ``-partial-r{t}``,
    ``-allreduce-r{t}``):

    1. the client scatters to every block W_t restricted to the block's
       touched columns (a (n_touched, K) float64 array);
    2. each block computes its share of the loss at W_t, then runs
       ``local_passes`` passes of exact per-example steps on its local
       subproblem and keeps its new alpha (never sent);
    3. one all-reduce sums the blocks' changes of W (touched columns x K,
       zero rows dropped) and two scalars (loss, dual linear term);
    4. the client records P(W_t), D(alpha_{t+1}) and the gap, and sets
       W_{t+1} = W_t + sum_k dW_k.

    Stopping rule: the first round with (P(W_t) - D(alpha_{t+1})) / |P(W_t)|
    <= tol returns W_t (the model the certificate is for). After
    ``max_iter`` update rounds one more round evaluates P(W_T) against
    D(alpha_T) and a ConvergenceWarning is issued if tol is still not met.

    Parameters
    ----------
    blocks : dasksvm.parallel.BlockSet
        Labels encoded as class indices 0..n_classes-1; intercept column (if
        any) already appended.
    n_classes : int >= 2
    C : float > 0
    tol : float > 0
        Relative duality gap to reach.
    max_iter : int >= 1
        Update rounds at most.
    local_passes : int >= 1
        Passes over its rows each block makes per round.
    random_state : int or None
        Seeds the row orders.
    split_every : int
        Fan-in of the reduction tree (with at most this many blocks the
        partials are gathered and summed on the client).

    Returns
    -------
    SolverResult
        ``coef`` of shape (n_classes, n_columns); ``state["alpha"]`` holds
        futures of the blocks' dual variables (n_rows_k, n_classes), which
        stay on their workers.
    """
    check_solver_params(n_classes, C, tol, max_iter, local_passes)
    client = blocks.client
    nb = len(blocks)
    K = int(n_classes)
    sigma = float(nb) if sigma is None else float(sigma)
    seeds = round_seeds(random_state, nb)
    cols = block_columns(blocks, key=f"{key_prefix}-cols")
    history = History(verbose, key_prefix)
    W = np.zeros((blocks.n_columns, K))
    states = [None] * nb
    converged = False
    gamma = 1.0
    for t in range(max_iter + 1):
        passes = local_passes if t < max_iter else 0
        if t == 0:
            slices, down = [None] * nb, 0
        else:
            slices, down = scatter_per_block(client, blocks, [W[c] for c in cols])
        outs = blocks.map(
            _cs_round,
            C,
            K,
            sigma,
            passes,
            gamma,
            key=f"{key_prefix}-local-r{t}",
            per_block=[states, slices, seeds(t)],
        )
        parts = blocks.pick(outs, 1, key=f"{key_prefix}-partial-r{t}")
        (dW, (loss, lin, dlin)), up = allreduce_rows(
            client, parts, split_every=split_every, key_prefix=f"{key_prefix}-allreduce-r{t}"
        )
        wsq = float(np.sum(W * W))
        Wd = W[dW.indices]
        wd = float(np.sum(Wd * dW.values))
        dd = float(np.sum(dW.values * dW.values))
        gamma = 1.0
        if line_search and dd > 0.0:
            gamma = min(1.0, max(0.0, (dlin - wd) / dd))
        W_new = W.copy()
        W_new[dW.indices] += gamma * dW.values
        primal = 0.5 * wsq + loss
        dual = lin + gamma * dlin - 0.5 * (wsq + 2 * gamma * wd + gamma * gamma * dd)
        rec = history.add(
            t, primal, dual, n_tasks=n_round_tasks(nb, split_every), nbytes=up + down, gamma=gamma
        )
        states = outs
        if rec["rel_gap"] <= tol:
            converged = True
            break
        if not passes:
            break
        W = W_new
    if not converged:
        warn_not_converged("Crammer-Singer (CoCoA+)", max_iter, rec["rel_gap"], tol)
    alpha = blocks.pick_map(_alpha, states, gamma, key=f"{key_prefix}-alpha")
    return SolverResult(
        coef=np.ascontiguousarray(W.T),
        primal=rec["primal"],
        dual=rec["dual"],
        gap=rec["gap"],
        rel_gap=rec["rel_gap"],
        n_iter=t,
        converged=converged,
        history=history.records,
        state={"alpha": alpha},
    )
