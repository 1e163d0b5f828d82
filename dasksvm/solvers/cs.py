"""Crammer-Singer multiclass SVM by row-parallel CoCoA+ (formulations.md section 2c)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import cs_local, cs_loss
from .registry import register
from .rowparallel import PARAMS, JointMachine, n_parts, round_plan

__all__ = ["CS", "build_cs"]


class CS(JointMachine):
    """Certified Crammer-Singer multiclass SVM: row-parallel CoCoA+ with a K x d model.

    Minimizes

        P(W) = 1/2 sum_k ||w_k||^2 + sum_i C_i max_k ([k != y_i] + (w_k - w_{y_i}) . x_i)

    (C_i = C times the row's weight, labels y_i in 0..K-1) through the dual of
    Keerthi et al. (2008): per example alpha_i in R^K with alpha_{i,k} <= C_i
    [k = y_i] and sum_k alpha_{i,k} = 0, w_k = sum_i alpha_{i,k} x_i and
    D(alpha) = -1/2 sum_k ||w_k||^2 - sum_i sum_{k != y_i} alpha_{i,k}
    (= sum_i alpha_{i,y_i} - 1/2 sum_k ||w_k||^2). Every example's alpha_i
    lives in one row block, so the blocks run CoCoA+ (local subproblem with
    curvature sigma' ||x_i||^2); each example step solves its K-variable QP
    exactly by sorting (:func:`dasksvm.kernels.multiclass.cs_subproblem`).

    Shapes: the client holds W, (n_columns, K); every block keeps its alpha
    (n_rows_k, K) on its worker.

    One round t (one task per worker, key ``cs-local-r{t}-w{j}``):

    - down, per worker: W_t on the union of its blocks' touched columns
      ((n_touched, K) float64, with those columns' indices) and sigma';
    - each block computes its share of the loss at W_t, then runs its local
      passes of exact per-example steps and keeps the proposed alpha on its
      worker (never sent);
    - up, per worker: one partial, the sum over its blocks of the change of
      W (SparseRows: touched columns x K, zero rows dropped) and three
      scalars (loss, dual linear term sum_i alpha_{i,y_i}, its change);
    - the client takes the step gamma in [0, 1] that maximizes the dual
      along the summed proposal (exact line search on a concave quadratic;
      gamma = 1, plain CoCoA+ "adding", without ``line_search``), records
      P(W_t), D(alpha_t + gamma d_alpha) and the gap, and sets
      W_{t+1} = W_t + gamma dW; gamma reaches the blocks as the round's
      acceptance.

    Stopping rule: the first round with (P(W_t) - D) / |P(W_t)| <= tol
    returns W_t (the model that certificate is for). After ``max_iter``
    update rounds one more round evaluates P(W_T) against D(alpha_T), and a
    ConvergenceWarning is issued if tol is still not met.

    The result's ``coef`` has shape (n_classes, n_columns); ``state["alpha"]``
    holds futures of the blocks' accepted dual variables (n_rows_k, n_classes).

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
    """

    name = "Crammer-Singer"
    prefix = "cs"

    # --- on the workers: the block's mathematics ---------------------------------------
    def _loss(self, st, W, active):
        return np.array([cs_loss(st.indptr, st.indices, st.data, st.y, st.c, W)])

    def _lin(self, st, alpha, active):
        # every alpha_i sums to 0, so this is -sum_i sum_{k != y_i} alpha_{i,k}
        return np.array([alpha[np.arange(len(st.y)), st.y].sum()])

    def _kernel(self, st, alpha, rv, shared, passes, seed, active):
        dW = np.zeros((len(st.cols), self.n_classes))
        return cs_local(st.indptr, st.indices, shared, st.data, st.y, st.c, st.sqn, alpha,
                        rv.view, dW, rv.sigma, passes, seed)

    def _shift(self, view, pos, vals):
        view[pos] += vals

    def _model_rows(self, st):
        return np.asarray(st.local_X().T @ st.alpha)  # W on the touched columns


@register("cs", "multiclass", PARAMS)
def build_cs(blocks, n_classes, seeds, *, C, tol, local_passes, sigma, line_search, schedule):
    """Crammer-Singer (:class:`CS`) on the row blocks. Its own parameters
    ``local_passes``, ``sigma``, ``line_search`` and ``schedule`` are those of
    :func:`dasksvm.solvers.llw.build_llw` (Lee-Lin-Wahba)."""
    passes, sigma, adaptive, plan = round_plan(blocks, n_classes, local_passes=local_passes,
                                               sigma=sigma, schedule=schedule)
    machine = CS(blocks.columns(), blocks.n_columns, n_classes, C=C, passes=passes, sigma=sigma,
                 adaptive=adaptive, line_search=line_search, n_parts=n_parts(blocks))
    return machine, plan
