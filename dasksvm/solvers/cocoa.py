"""CoCoA+ for the binary linear SVM (formulations.md section 1b)."""

from __future__ import annotations

import numpy as np

from ..kernels.sdca import cocoa_local, primal_dual_partials, row_sq_norms
from ..parallel import allreduce, reduce_task_count, to_dense
from ._common import broadcast, dual_bound, round_seeds, sparse_or_dense
from .result import History, SolverResult, warn_not_converged

__all__ = ["AGGREGATIONS", "solve_cocoa"]

# aggregation -> (gamma, sigma as a function of the number of blocks K)
AGGREGATIONS = {
    "add": lambda K: (1.0, float(K)),
    "average": lambda K: (1.0 / K, 1.0),
}


def _init_state(block, C):
    indptr, _, data = block.csr()
    c = C * block.weight
    return np.zeros(block.n_rows), None, row_sq_norms(indptr, data), c


def _local_round(block, state, seed, w, sigma, gamma, l2, local_iters):
    alpha, _, sqn, c = state
    indptr, indices, data = block.csr()
    loss, dual, u, b_sum, b_sq = primal_dual_partials(
        indptr, indices, data, block.y, c, alpha, w, l2
    )
    cert = (sparse_or_dense(u, block.cols), loss, dual, b_sum, b_sq)
    n_steps = round(local_iters * block.n_rows)
    if n_steps == 0:
        return state[0], (None, cert), sqn, c
    new_alpha = alpha.copy()
    v = cocoa_local(indptr, indices, data, block.y, c, sqn, new_alpha, w, sigma, l2, n_steps, seed)
    if gamma != 1.0:
        new_alpha = alpha + gamma * (new_alpha - alpha)
        v *= gamma
    return new_alpha, (sparse_or_dense(v, block.cols), cert), sqn, c


def _partial(state):
    dw, cert = state[1]
    return cert if dw is None else (dw, cert)


def _alpha(state):
    return state[0]


def solve_cocoa(
    blocks,
    *,
    C=1.0,
    loss="squared_hinge",
    tol=1e-3,
    max_iter=1000,
    local_iters=1.0,
    aggregation="add",
    random_state=None,
    verbose=0,
    key_prefix="cocoa",
):
    """Certified CoCoA+ for the binary linear SVM.

    Minimizes P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i) over the block
    columns (C_i = C times the row's weight, held in ``block.weight``; y in
    {-1, +1}) through its dual (formulations.md section 1).

    One round t (keys ``{key_prefix}-local-r{t}``, ``-partial-r{t}``,
    ``-allreduce-r{t}``):

    1. the client broadcasts w_t (one float64 vector of n_columns);
    2. each block, on the worker that holds it and its dual variables,
       computes its share of P(w_t) and D(alpha_t), then runs
       ``local_iters`` passes of dual coordinate ascent on its local
       subproblem (sigma' = K, gamma = 1 for ``"add"``; sigma' = 1,
       gamma = 1/K for ``"average"``) and keeps the new alpha;
    3. one all-reduce sums the blocks' (change of w, loss share, dual share),
       sending only the touched coordinates of w when that is smaller;
    4. the client records P(w_t), D(alpha_t), the gap, and sets
       w_{t+1} = w_t + sum_k dw_k.

    Stopping rule: the first round with (P - D) / |P| <= tol returns w_t
    (the iterate the certificate is for). After ``max_iter`` update rounds one
    evaluation round certifies the last iterate and a ConvergenceWarning is
    issued.

    Parameters
    ----------
    blocks : dasksvm.parallel.BlockSet
        Labels in {-1, +1}; the intercept column, if any, already appended.
    loss : {"hinge", "squared_hinge"}
    local_iters : float > 0
        Coordinate passes per block per round (fractions allowed).
    aggregation : {"add", "average"}

    Returns
    -------
    SolverResult
        ``coef`` of shape (n_columns,); ``state["alpha"]`` holds the futures
        of the blocks' states (dual variables alpha_t, shape (n_rows_k,)),
        which never leave their workers.
    """
    client = blocks.client
    K = len(blocks)
    gamma, sigma = AGGREGATIONS[aggregation](K)
    l2 = loss == "squared_hinge"
    seeds = round_seeds(random_state, K)
    n_workers = len(set(blocks.workers))
    states = blocks.map(_init_state, C, key=f"{key_prefix}-init")
    history = History(verbose, key_prefix)
    w = np.zeros(blocks.n_columns)
    converged = False
    for t in range(max_iter + 1):
        iters = local_iters if t < max_iter else 0.0
        w_fut = broadcast(client, w)
        outs = blocks.map(
            _local_round,
            w_fut,
            sigma,
            gamma,
            l2,
            iters,
            key=f"{key_prefix}-local-r{t}",
            per_block=[states, seeds(t)],
        )
        partials = blocks.pick_map(_partial, outs, key=f"{key_prefix}-partial-r{t}")
        total, nbytes = allreduce(client, partials, key_prefix=f"{key_prefix}-allreduce-r{t}")
        dw, cert = total if iters else (None, total)
        u, loss_sum, dual_sum, b_sum, b_sq = cert
        wsq = float(w @ w)
        # two dual-feasible points: the iterate alpha_t (w_t = w(alpha_t)) and
        # the best multiple of beta(w_t); the better one certifies w_t
        dual_alpha = dual_sum - 0.5 * wsq
        dual_beta = dual_bound(to_dense(u), b_sum, b_sq, l2)
        rec = history.add(
            t,
            0.5 * wsq + loss_sum,
            max(dual_alpha, dual_beta),
            n_tasks=2 * K + reduce_task_count(K),
            nbytes=nbytes + w.nbytes * n_workers,
            dual_alpha=dual_alpha,
        )
        if rec["rel_gap"] <= tol:
            converged = True
            break
        if not iters:
            break
        w = w + to_dense(dw)
        states = outs
    alpha = blocks.pick_map(_alpha, states, key=f"{key_prefix}-alpha")
    if not converged:
        warn_not_converged("CoCoA+", max_iter, rec["rel_gap"], tol)
    return SolverResult.from_record(
        w, rec, n_iter=t, converged=converged, history=history.records, state={"alpha": alpha}
    )
