"""One-vs-rest multiclass SVM: K binary hinge SVMs solved together by row-parallel
CoCoA+, certified per class (formulations.md section 2d)."""

from __future__ import annotations

import numpy as np

from ..kernels.multiclass import ovr_local, ovr_loss
from ._common import saved_array
from .registry import register
from .rowparallel import PARAMS, RowParallel, n_parts, round_plan, step_certificate

__all__ = ["OVR", "build_ovr"]


class OVR(RowParallel):
    """Certified one-vs-rest linear SVM: K binary problems in one row-parallel CoCoA+.

    For every class k minimizes, independently,

        P_k(w_k) = 1/2 ||w_k||^2 + sum_i C_i max(0, 1 - y^k_i w_k . x_i),
        y^k_i = +1 if y_i = k else -1,

    (C_i = C times the row's weight) through its dual (formulations.md
    section 1): alpha[:, k] in [0, C_i], w_k = sum_i alpha_{i,k} y^k_i x_i,
    D_k = sum_i alpha_{i,k} - 1/2 ||w_k||^2. One pass over a block takes a
    coordinate step on every running class's alpha_{i,k} for each row it
    visits, so the K problems share every data pass and every round.

    Shapes: the client holds W (n_columns, K), the certified models
    (n_classes, n_columns) and per-class certificates (K,); every block keeps
    its alpha (n_rows_k, K) on its worker.

    One round t (one task per worker, key ``ovr-local-r{t}-w{j}``):

    - down, per worker: the models of the m classes still running on the
      union of its blocks' touched columns ((n_touched, m) float64, with
      those columns' indices), the m class indices and sigma';
    - each block computes its per-class hinge losses at W_t, then runs its
      local passes of dual coordinate ascent (curvature sigma' ||x_i||^2)
      and keeps the proposal on its worker;
    - up, per worker: one partial, the sum over its blocks of the change of
      W (SparseRows: touched columns x m) and 3m scalars (per-class loss,
      sum of alpha and its change);
    - per class, the client takes the exact line-search step gamma_k in
      [0, 1] (gamma_k = 1 without ``line_search``) and certifies P_k(W_t)
      against D_k(alpha_t + gamma_k d_alpha); the vector gamma (K,) reaches
      the blocks as the round's acceptance.

    Stopping rule, per class: class k is done (frozen: its certified model
    W_t[:, k] is kept and no longer sent or updated) at the first round with
    (P_k - D_k) / |P_k| <= tol; the run stops when every class is done (the
    stopping quantity is the largest per-class relative gap). History
    records hold the sums over classes (``primal``, ``dual``, ``gap``,
    ``rel_gap``) and ``class_rel_gaps`` (K,), ``max_class_rel_gap`` and
    ``n_active`` (classes running in the next round).

    The result's ``coef`` has shape (n_classes, n_columns); ``primal``,
    ``dual``, ``gap`` are sums over classes, ``rel_gap`` the largest
    per-class relative gap; ``state["alpha"]`` holds futures of the blocks'
    accepted duals (n_rows_k, K).

    Parameters
    ----------
    cols : list of ndarray
        The touched columns of every block (:meth:`BlockSet.columns`).
    n_columns, n_classes : int
        With 2 classes both problems are solved (w_1 = -w_0 at the optimum).
    C : float > 0
    tol : float
        A class whose relative gap is <= tol is frozen.
    passes : int >= 1
        Coordinate passes over the block's rows in one ``local`` call.
    sigma : float > 0
        The starting sigma'.
    adaptive : bool
        Adapt sigma' after every round (from the median raw step over the
        running classes; :func:`~dasksvm.solvers.rowparallel.adapt_sigma`).
    line_search : bool
    """

    name = "One-vs-rest"
    prefix = "ovr"

    def __init__(self, cols, n_columns, n_classes, *, tol, **kw):
        super().__init__(cols, n_columns, n_classes, **kw)
        K = self.n_classes
        self.tol = float(tol)
        self.W = np.zeros((self.n_columns, K))
        self.coef_ = np.zeros((K, self.n_columns))
        self.active = np.arange(K, dtype=np.int64)
        self.primal = np.full(K, np.nan)
        self.dual = np.full(K, np.nan)
        self.rel = np.full(K, np.inf)
        self._pending = None

    # --- on the workers: the block's mathematics ---------------------------------------
    def _width(self, active):
        return len(active)

    def _n_scalars(self, active):
        return len(active)

    def _loss(self, st, W, active):
        return ovr_loss(st.indptr, st.indices, st.data, st.y, st.c, W, active)

    def _lin(self, st, alpha, active):
        return alpha[:, active].sum(axis=0)

    def _kernel(self, st, alpha, rv, shared, passes, seed, active):
        dW = np.zeros((len(st.cols), len(active)))
        return ovr_local(st.indptr, st.indices, shared, st.data, st.y, st.c, st.sqn, alpha,
                         rv.view, dW, active, rv.sigma, passes, seed)

    def _shift(self, view, pos, vals):
        view[pos] += vals

    def _model_rows(self, st):
        sign = np.where(st.y[:, None] == np.arange(self.n_classes)[None, :], 1.0, -1.0)
        return np.asarray(st.local_X().T @ (st.alpha * sign))  # all K classes' W

    # --- on the client -----------------------------------------------------------------
    def _active(self):
        return self.active

    def _slice(self, cols, active):
        return self.W[np.ix_(cols, active)]

    def step(self, total, round, update):
        act = self.active
        m = len(act)
        dW, sc = total
        loss, lin, dlin = sc[:m], sc[m : 2 * m], sc[2 * m :]
        Wa = self.W[:, act]
        wsq = np.einsum("ij,ij->j", Wa, Wa)
        wd = np.einsum("ij,ij->j", Wa[dW.indices], dW.values)
        dd = np.einsum("ij,ij->j", dW.values, dW.values)
        g, primal, dual, rel, raw = step_certificate(
            wsq, wd, dd, loss, lin, dlin, enabled=self.line_search, updated=update
        )
        self.primal[act] = primal
        self.dual[act] = dual
        self.rel[act] = rel
        self.coef_[act] = Wa.T
        raw = float(np.nanmedian(raw)) if np.isfinite(raw).any() else np.nan
        self._pending = (dW, g, raw)
        stop = float(np.max(self.rel))
        return {
            "primal": float(np.sum(self.primal)),
            "dual": float(np.sum(self.dual)),
            "stop": stop,
            "extra": {
                "class_rel_gaps": self.rel.tolist(),
                "max_class_rel_gap": stop,
                "n_active": int(np.sum(rel > self.tol)),
                "sigma": self.sigma,
                "raw_step": raw,
            },
        }

    def advance(self):
        dW, g, raw = self._pending
        self._pending = None
        act = self.active
        self.W[np.ix_(dW.indices, act)] += g * dW.values
        gamma = np.ones(self.n_classes)
        gamma[act] = g
        self.active = act[self.rel[act] > self.tol]
        self._adapt(raw)
        return gamma

    def restore(self, total):
        self.W = (np.zeros((self.n_columns, self.n_classes)) if total is None
                  else np.array(total.toarray(), dtype=np.float64))

    def model_arrays(self):
        mask = np.zeros(self.n_classes)
        mask[self.active] = 1.0
        return {"W": self.W, "coef": self.coef_, "active": mask, "primal": self.primal,
                "dual": self.dual, "rel": self.rel, **self._sigma_arrays()}

    def load_model_arrays(self, arrays):
        K = self.n_classes
        self.W = saved_array(arrays, "W", self.W.shape).copy()
        self.coef_ = saved_array(arrays, "coef", self.coef_.shape).copy()
        self.active = np.flatnonzero(saved_array(arrays, "active", (K,)) > 0).astype(np.int64)
        for name in ("primal", "dual", "rel"):
            setattr(self, name, saved_array(arrays, name, (K,)).copy())
        self._load_sigma(arrays)

    def coef(self):
        return self.coef_.copy()


@register("ovr", "multiclass", PARAMS)
def build_ovr(blocks, n_classes, seeds, *, C, tol, local_passes, sigma, line_search, schedule):
    """One-vs-rest (:class:`OVR`) on the row blocks. Its own parameters
    ``local_passes``, ``sigma``, ``line_search`` and ``schedule`` are those of
    :func:`dasksvm.solvers.llw.build_llw` (Lee-Lin-Wahba)."""
    passes, sigma, adaptive, plan = round_plan(blocks, n_classes, local_passes=local_passes,
                                               sigma=sigma, schedule=schedule)
    machine = OVR(blocks.columns(), blocks.n_columns, n_classes, C=C, tol=tol, passes=passes,
                  sigma=sigma, adaptive=adaptive, line_search=line_search, n_parts=n_parts(blocks))
    return machine, plan
