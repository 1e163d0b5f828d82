"""One-vs-rest multiclass SVM: K binary hinge SVMs solved together by row-parallel
CoCoA+, certified per class (formulations.md section 2d)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import ovr_local, ovr_loss
from .multiclass_objectives import row_parallel_solver, step_certificate

__all__ = ["solve_ovr"]


class _OVRSpec:
    """The one-vs-rest machine for :func:`block_round` (runs on the workers).

    Works on the m classes still running (``classes``); per class the hinge
    loss, lin = sum_i alpha_{i,k} and its change.
    """

    def width(self, n_classes, classes):
        return len(classes)

    def n_scalars(self, n_classes, classes):
        return len(classes)

    def loss(self, st, W, classes):
        return ovr_loss(st.indptr, st.indices, st.data, st.y, st.c, W, classes)

    def lin(self, st, alpha, classes):
        return alpha[:, classes].sum(axis=0)

    def local(self, st, alpha, view, sigma, passes, seed, classes):
        return ovr_local(
            st.indptr, st.indices, st.data, st.y, st.c, st.sqn, alpha, view, classes, sigma,
            passes, seed,
        )

    def shift(self, view, pos, vals, classes):
        view[pos] += vals


class _OVRModel:
    """Client side: W (n_columns, K), per-class certificates, per-class steps.

    A class whose relative gap reaches tol is frozen: its certified model is
    kept, its dual variables stop moving and it is no longer sent.
    """

    def __init__(self, n_columns, n_classes, line_search, tol):
        self.W = np.zeros((n_columns, n_classes))
        self.coef_ = np.zeros((n_classes, n_columns))
        self.active = np.arange(n_classes)
        self.primal = np.full(n_classes, np.nan)
        self.dual = np.full(n_classes, np.nan)
        self.rel = np.full(n_classes, np.inf)
        self.line_search = line_search
        self.tol = tol

    def slice(self, cols):
        return self.W[np.ix_(cols, self.active)]

    def task_args(self):
        return (self.active,)

    def update(self, total, updated):
        act = self.active
        m = len(act)
        dW, sc = total
        loss, lin, dlin = sc[:m], sc[m : 2 * m], sc[2 * m :]
        Wa = self.W[:, act]
        wsq = np.einsum("ij,ij->j", Wa, Wa)
        wd = np.einsum("ij,ij->j", Wa[dW.indices], dW.values)
        dd = np.einsum("ij,ij->j", dW.values, dW.values)
        g, primal, dual, rel, raw = step_certificate(
            wsq, wd, dd, loss, lin, dlin, enabled=self.line_search, updated=updated
        )
        self.primal[act] = primal
        self.dual[act] = dual
        self.rel[act] = rel
        self.coef_[act] = Wa.T
        self.W[np.ix_(dW.indices, act)] += g * dW.values
        gamma = np.ones(len(self.rel))
        gamma[act] = g
        self.active = act[self.rel[act] > self.tol]
        stop = float(np.max(self.rel))
        return {
            "primal": float(np.sum(self.primal)),
            "dual": float(np.sum(self.dual)),
            "stop": stop,
            "gamma": gamma,
            "raw_step": float(np.nanmedian(raw)) if np.isfinite(raw).any() else np.nan,
            "extra": {
                "class_rel_gaps": self.rel.tolist(),
                "max_class_rel_gap": stop,
                "n_active": len(self.active),
            },
        }

    def coef(self):
        return self.coef_.copy()


@row_parallel_solver("One-vs-rest")
def solve_ovr(
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
    key_prefix="ovr",
    split_every=8,
):
    """Certified one-vs-rest linear SVM: K binary problems in one row-parallel CoCoA+.

    For every class k minimizes, independently,

        P_k(w_k) = 1/2 ||w_k||^2 + sum_i C_i max(0, 1 - y^k_i w_k . x_i),
        y^k_i = +1 if y_i = k else -1,

    (C_i = C times the row's weight) through its dual (formulations.md
    section 1): alpha[:, k] in [0, C_i], w_k = sum_i alpha_{i,k} y^k_i x_i,
    D_k = sum_i alpha_{i,k} - 1/2 ||w_k||^2. One pass over a block takes a
    coordinate step on every class's alpha_{i,k} for each row it visits, so
    the K problems share every data pass and every round.

    One round t (task keys ``{key_prefix}-local-r{t}``, ``-partial-r{t}``,
    ``-allreduce-r{t}``):

    1. the client scatters to every block the models of the m classes still
       running, restricted to the block's touched columns ((n_touched_k, m));
    2. each block computes its per-class hinge losses at W_t, then runs
       ``local_passes`` passes of dual coordinate ascent on the local
       subproblems (curvature sigma' ||x_i||^2) and keeps the proposal;
    3. one all-reduce sums the changes of W (touched columns x m) and 3m
       scalars (per-class loss, sum of alpha and its change);
    4. per class, the client takes the exact line-search step gamma_k in
       [0, 1] (gamma_k = 1 without ``line_search``) and certifies
       P_k(W_t) against D_k(alpha_{t+1}).

    Stopping rule, per class: class k is done (frozen: its model W_t[:, k]
    is kept and no longer sent or updated) at the first round with
    (P_k - D_k) / |P_k| <= tol; the run stops when every class is done.
    History records hold the sums over classes (``primal``, ``dual``,
    ``gap``, ``rel_gap``) and ``class_rel_gaps`` (K,), ``max_class_rel_gap``
    (the stopping quantity) and ``n_active``.

    Parameters
    ----------
    blocks : dasksvm.parallel.BlockSet
        Labels encoded as class indices 0..n_classes-1 (float).
    n_classes : int >= 2
        With 2 classes both problems are solved (w_1 = -w_0 at the optimum).
    C, tol, max_iter, local_passes, sigma, line_search, schedule, random_state,
    verbose, key_prefix, split_every
        As in :func:`dasksvm.solvers.cs.solve_cs`.

    Returns
    -------
    SolverResult
        ``coef`` (n_classes, n_columns); ``primal``, ``dual``, ``gap`` are
        sums over classes, ``rel_gap`` the largest per-class relative gap;
        ``state["alpha"]`` holds futures of the blocks' duals (n_rows_k, K).
    """
    return _OVRSpec(), _OVRModel(blocks.n_columns, int(n_classes), line_search, tol)
