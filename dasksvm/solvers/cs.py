"""Crammer-Singer multiclass SVM by row-parallel CoCoA+ (formulations.md section 2c)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import cs_local, cs_loss
from .multiclass_objectives import JointModel, row_parallel_solver

__all__ = ["solve_cs"]


class _CSSpec:
    """The Crammer-Singer machine for :func:`block_round` (runs on the workers).

    Dual linear term: lin = sum_i alpha_{i,y_i}; since every alpha_i sums to
    0 it equals -sum_i sum_{k != y_i} alpha_{i,k}.
    """

    def width(self, n_classes):
        return n_classes

    def n_scalars(self, n_classes):
        return 1

    def loss(self, st, W):
        return np.array([cs_loss(st.indptr, st.indices, st.data, st.y, st.c, W)])

    def lin(self, st, alpha):
        return np.array([alpha[np.arange(len(st.y)), st.y].sum()])

    def local(self, st, alpha, view, sigma, passes, seed):
        return cs_local(
            st.indptr, st.indices, st.data, st.y, st.c, st.sqn, alpha, view, sigma, passes, seed
        )

    def shift(self, view, pos, vals):
        view[pos] += vals


@row_parallel_solver("Crammer-Singer")
def solve_cs(
    blocks,
    n_classes,
    *,
    C=1.0,
    tol=1e-3,
    max_iter=1000,
    local_passes="auto",
    sigma=None,
    line_search=True,
    schedule="parallel",
    random_state=None,
    verbose=0,
    key_prefix="cs",
    split_every=8,
):
    """Certified Crammer-Singer multiclass SVM: row-parallel CoCoA+ with a K x d model.

    Minimizes

        P(W) = 1/2 sum_k ||w_k||^2 + sum_i C_i max_k ([k != y_i] + (w_k - w_{y_i}) . x_i)

    (C_i = C times the row's weight) through the dual of Keerthi et al.
    (2008): per example alpha_i in R^K with alpha_{i,k} <= C_i [k = y_i] and
    sum_k alpha_{i,k} = 0, w_k = sum_i alpha_{i,k} x_i and
    D(alpha) = -1/2 sum_k ||w_k||^2 - sum_i sum_{k != y_i} alpha_{i,k}.
    Every example's alpha_i lives in one row block, so the blocks run CoCoA+
    (local subproblem with curvature sigma' ||x_i||^2, sigma' adapted within
    [1, number of blocks] by default); each example step solves its K-variable QP exactly
    by sorting.

    One round t (task keys ``{key_prefix}-local-r{t}``, ``-partial-r{t}``,
    ``-allreduce-r{t}``):

    1. the client scatters to every block W_t restricted to the block's
       touched columns (a (n_touched_k, K) float64 array);
    2. each block computes its share of the loss at W_t, then runs
       ``local_passes`` passes of exact per-example steps on its local
       subproblem and keeps the proposed alpha on its worker (never sent);
    3. one all-reduce sums the blocks' changes of W (touched columns x K,
       zero rows dropped) and three scalars (loss, dual linear term and its
       change);
    4. the client takes the step gamma in [0, 1] that maximizes the dual
       along the summed proposal (exact line search on a concave quadratic;
       gamma = 1, plain CoCoA+ "adding", when ``line_search=False``),
       records P(W_t), D(alpha_{t+1}) and the gap, and sets
       W_{t+1} = W_t + gamma sum_k dW_k. The blocks apply gamma to their
       proposals at the start of the next round.

    Stopping rule: the first round with (P(W_t) - D(alpha_{t+1})) / |P(W_t)|
    <= tol returns W_t (the model that certificate is for). After
    ``max_iter`` update rounds one more round evaluates P(W_T) against
    D(alpha_T), and a ConvergenceWarning is issued if tol is still not met.

    Parameters
    ----------
    blocks : dasksvm.parallel.BlockSet
        Labels encoded as class indices 0..n_classes-1 (float); the
        intercept column, if any, already appended.
    {round_parameters}
    random_state : int or None
        Seeds the row orders.
    verbose : int
        Print one line per round.
    key_prefix : str
    split_every : int
        Fan-in of the reduction tree (up to this many partials are gathered
        and summed on the client).

    Returns
    -------
    SolverResult
        ``coef`` of shape (n_classes, n_columns); ``state["alpha"]`` holds
        futures of the blocks' dual variables (n_rows_k, n_classes), which
        stay on their workers. History records also hold ``gamma``,
        ``bytes_reduce`` and ``bytes_model``.
    """
    return _CSSpec(), JointModel(blocks.n_columns, int(n_classes), line_search)
