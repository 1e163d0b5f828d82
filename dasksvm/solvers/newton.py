"""Distributed trust-region Newton (TRON) for the squared-hinge linear SVM (formulations.md
section 1d)."""

from __future__ import annotations

import copy

import numpy as np

from ..kernels.newton import hessian_vector, loss_gradient
from ..parallel import to_dense
from ..parallel.engine import AllBlocks, Machine
from ._common import LOSSES, dual_bound, saved_array
from .registry import Param, register

__all__ = ["Newton", "build_newton"]

# what a round computes on the workers (the first entry of the message)
_EVAL, _HV = 0, 1
# the client's phase: evaluate f at w (start, recovery), a CG step, evaluate the trial w + s
_PHASES = ("eval", "cg", "trial")

# TRON's constants (Lin and More 1999; LIBLINEAR's tron.cpp): acceptance and radius update
_ETA0, _ETA1, _ETA2 = 1e-4, 0.25, 0.75
_SIGMA1, _SIGMA2, _SIGMA3 = 0.25, 0.5, 4.0
# weight of the Hessian's diagonal in the mixed preconditioner (1 - a) + a diag(H)
_ALPHA_PCG = 0.01


class _Block:
    """A block's per-row bounds C_i and the active set of the current iterate w:
    ``rows`` (m_i > 0) with their Hessian weights ``coef`` = 2 C_i (None until the
    first evaluation), and ``pending`` (the weights of the point evaluated last round,
    adopted if the client moves w there)."""

    __slots__ = ("c", "coef", "n", "pending", "rows")

    def __init__(self, c, dcoef):
        self.c, self.n, self.pending = c, len(c), None
        self.rows = self.coef = None
        if dcoef is not None:
            self.adopt(dcoef)

    def adopt(self, dcoef):
        self.rows = np.flatnonzero(dcoef)
        self.coef = dcoef[self.rows]


class _Tron:
    """The client's TRON state between rounds (every array replaced, never changed in place,
    so a copy is a snapshot)."""

    def __init__(self, n):
        self.phase = "eval"
        self.w = np.zeros(n)
        self.g = np.zeros(n)  # gradient at w
        self.M = np.ones(n)  # the preconditioner at w
        self.s = np.zeros(n)  # the CG iterate (the step)
        self.r = np.zeros(n)  # the CG residual -g - H s
        self.d = np.zeros(n)  # the CG direction
        self.f = np.nan  # f(w)
        self.zTr = 0.0  # r' M^-1 r
        self.cgtol = 0.0
        self.cg_iter = 0  # CG steps of this Newton iteration
        self.delta = np.nan  # trust-region radius (M-norm); nan before the first gradient
        self.delta_adjusted = False
        self.reach_boundary = False
        self.newton_iter = 0  # accepted steps
        self.cg_total = 0  # Hessian-vector products so far
        self.best_dual = -np.inf  # the largest dual value seen (all are lower bounds of P*)

    _SCALARS = ("f", "zTr", "cgtol", "cg_iter", "delta", "delta_adjusted", "reach_boundary",
                "newton_iter", "cg_total", "best_dual")
    _ARRAYS = ("w", "g", "M", "s", "r", "d")

    def arrays(self):
        out = {a: getattr(self, a) for a in self._ARRAYS}
        out["scalars"] = np.array([_PHASES.index(self.phase)]
                                  + [float(getattr(self, k)) for k in self._SCALARS])
        return out

    def load(self, arrays):
        n = self.w.shape
        for a in self._ARRAYS:
            setattr(self, a, saved_array(arrays, a, n).copy())
        sc = saved_array(arrays, "scalars", (1 + len(self._SCALARS),))
        if not 0 <= sc[0] < len(_PHASES):
            raise ValueError(f"checkpoint scalars hold no newton phase ({sc[0]!r})")
        self.phase = _PHASES[int(sc[0])]
        for k, v in zip(self._SCALARS, sc[1:], strict=True):
            cast = type(getattr(self, k))
            setattr(self, k, bool(v) if cast is bool else int(v) if cast is int else float(v))


def _mdot(u, M, v):
    return float(np.dot(u * M, v))


class Newton(Machine):
    """Trust-region Newton (TRON) for the primal squared-hinge SVM, as a round-engine machine.

    Minimizes f(w) = 1/2 ||w||^2 + sum_i C_i max(0, 1 - y_i w.x_i)^2 over the block columns
    (the intercept column included and regularized, as LIBLINEAR; C_i = C times the row's
    weight) by LIBLINEAR's TRON (Lin, Weng and Keerthi 2008; the preconditioned variant of
    Hsia, Chiang and Lin 2018): at w, conjugate gradients on H s = -g inside ||s||_M <= Delta
    (Steihaug: stop at ||r||_{M^-1} <= cg_tol ||g||_{M^-1} or at the boundary), the trial
    w + s accepted when f decreases by more than 1e-4 of the quadratic model's prediction,
    Delta resized by the ratio of the two (TRON's rules).

    A round is one all-reduce of one d-vector each way; the client runs the TRON state
    machine in :meth:`step`, so a Newton iteration is 1 + (CG steps) rounds:

    - an *evaluation* round sends a point x (w at the start, the trial w + s after the CG):
      every block computes its margins, its share of f(x), of the gradient, of the Hessian's
      diagonal (the preconditioner, when used) and of the dual point beta_i = 2 C_i max(0,
      1 - y_i x.x_i), and keeps the active set I(x) pending; it is adopted when the client
      moves w to x (the next round's acceptance), dropped otherwise;
    - a *CG* round sends the direction p: every block returns X_I^T D_I X_I p over its
      active rows (D_i = 2 C_i), the client adds p and takes the CG step.

    Certificate: each record is for the current iterate w (the last accepted point, whose
    f was computed in the round that evaluated it): primal f(w), dual the largest
    D(best multiple of beta(x)) over every point x evaluated so far (each is a dual-feasible
    point, so a lower bound of P*; beta(x) -> alpha* as x -> w*); CG rounds repeat it.
    The engine stops at the first record with (P - D) / |P| <= tol.

    Parameters
    ----------
    n_columns : int
    C : float > 0
    cg_tol : float in (0, 1)
        LIBLINEAR's eps_cg (0.1).
    preconditioner : bool
        The mixed diagonal preconditioner M = 0.99 + 0.01 diag(H) (LIBLINEAR >= 2.20); else
        M = 1 (plain TRON).
    """

    name = "trust-region Newton"
    prefix = "newton"
    worker_fields = ("C", "preconditioner")

    def __init__(self, n_columns, *, C, cg_tol, preconditioner):
        self.C, self.cg_tol = float(C), float(cg_tol)
        self.preconditioner = bool(preconditioner)
        self.max_cg = max(int(n_columns), 5)
        self.tron = _Tron(n_columns)
        self.certified = self.tron.w
        self._next = None
        self._accept = False

    def problem(self):
        return {"solver": "newton", "C": self.C, "loss": "squared_hinge",
                "preconditioner": self.preconditioner}

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        c = self.C * block.weight
        dcoef = None
        if saved is not None:
            dcoef = saved_array(saved, "coef", (block.n_rows,))
            if np.isnan(dcoef).any():
                dcoef = None
        return _Block(c, dcoef)

    def settle(self, st, acceptance):
        if st.pending is not None and acceptance is not None and bool(acceptance):
            st.adopt(st.pending)
        st.pending = None

    def local(self, block, st, message, seed, update, carry=None):
        kind, v = message
        indptr, indices, data = block.local_csr()  # the block's own columns
        v_loc = v[block.cols]
        n = len(v)
        if kind == _EVAL:
            loss, b_sum, u, diag, dcoef = loss_gradient(indptr, indices, data, block.y, st.c,
                                                        v_loc, self.preconditioner)
            st.pending = dcoef
            out = (block.spread(u, n), loss, b_sum)
            return (out + (block.spread(diag, n),)) if self.preconditioner else out
        if st.rows is None:
            raise RuntimeError(f"newton: block {block.index} was asked for a Hessian product "
                               "before any evaluation gave it an active set")
        return block.spread(hessian_vector(indptr, indices, data, st.rows, st.coef, v_loc), n)

    def save(self, st):
        if st.rows is None:
            return {"coef": np.full(st.n, np.nan)}
        dcoef = np.zeros(st.n)
        dcoef[st.rows] = st.coef
        return {"coef": dcoef}

    # --- on the client -----------------------------------------------------------------
    def message(self, blocks=None):
        t = self.tron
        if t.phase == "cg":
            return _HV, t.d
        return _EVAL, (t.w if t.phase == "eval" else t.w + t.s)

    def _start_cg(self, t):
        """A new Newton iteration's CG from s = 0 at the current w (its g and M)."""
        t.s = np.zeros_like(t.w)
        t.r = -t.g
        z = t.r / t.M
        t.d = z
        t.zTr = float(np.dot(z, t.r))
        t.cgtol = self.cg_tol * np.sqrt(t.zTr)
        t.cg_iter = 0
        t.reach_boundary = False
        t.phase = "cg" if t.zTr > 0.0 else "trial"

    def _cg_step(self, t, Hd):
        """One CG step with H d; leaves the phase at "trial" when the CG is done."""
        dHd = float(np.dot(t.d, Hd))
        t.cg_iter += 1
        t.cg_total += 1
        if not dHd > 0.0:  # H is positive definite: only at a zero direction
            t.phase = "trial"
            return
        alpha = t.zTr / dHd
        s = t.s + alpha * t.d
        if np.sqrt(_mdot(s, t.M, s)) > t.delta:
            # back on the boundary ||s + tau d||_M = delta
            sMd, sMs, dMd = _mdot(t.s, t.M, t.d), _mdot(t.s, t.M, t.s), _mdot(t.d, t.M, t.d)
            dsq = t.delta * t.delta
            rad = np.sqrt(sMd * sMd + dMd * (dsq - sMs))
            if rad <= 0.0:  # a zero radius (s = 0 and delta = 0): no step
                tau = 0.0
            else:
                tau = (dsq - sMs) / (sMd + rad) if sMd >= 0 else (rad - sMd) / dMd
            t.s = t.s + tau * t.d
            t.r = t.r - tau * Hd
            t.reach_boundary = True
            t.phase = "trial"
            return
        t.s = s
        t.r = t.r - alpha * Hd
        z = t.r / t.M
        zTr = float(np.dot(z, t.r))
        t.d = z + (zTr / t.zTr) * t.d
        t.zTr = zTr
        if np.sqrt(zTr) <= t.cgtol or t.cg_iter >= self.max_cg:
            t.phase = "trial"

    def _evaluated(self, x, total):
        """f, gradient, preconditioner and the dual value at the evaluated point x."""
        u, loss, b_sum, *diag = total
        u = to_dense(u)
        f = 0.5 * float(np.dot(x, x)) + loss
        M = ((1.0 - _ALPHA_PCG) + _ALPHA_PCG * (1.0 + to_dense(diag[0]))
             if self.preconditioner else np.ones_like(x))
        # the dual point beta(x): sum beta_i^2 / (4 C_i) is the loss itself
        return f, x - u, M, dual_bound(u, b_sum, loss, True)

    def _trial(self, t, fnew, gnew, Mnew):
        """TRON's acceptance and radius update for the trial w + s; True if accepted."""
        gs = float(np.dot(t.g, t.s))
        prered = -0.5 * (gs - float(np.dot(t.s, t.r)))
        actred = t.f - fnew
        sMnorm = np.sqrt(_mdot(t.s, t.M, t.s))
        if t.newton_iter == 0 and not t.delta_adjusted:
            t.delta = min(t.delta, sMnorm)
            t.delta_adjusted = True
        curv = fnew - t.f - gs
        alpha = _SIGMA3 if curv <= 0 else max(_SIGMA1, -0.5 * (gs / curv))
        if actred < _ETA0 * prered:
            t.delta = min(alpha * sMnorm, _SIGMA2 * t.delta)
        elif actred < _ETA1 * prered:
            t.delta = max(_SIGMA1 * t.delta, min(alpha * sMnorm, _SIGMA2 * t.delta))
        elif actred < _ETA2 * prered:
            t.delta = max(_SIGMA1 * t.delta, min(alpha * sMnorm, _SIGMA3 * t.delta))
        elif t.reach_boundary:
            t.delta = _SIGMA3 * t.delta
        else:
            t.delta = max(t.delta, min(alpha * sMnorm, _SIGMA3 * t.delta))
        if prered > 0 and actred > _ETA0 * prered:
            t.w, t.f, t.g, t.M = t.w + t.s, fnew, gnew, Mnew
            t.newton_iter += 1
            return True
        return False

    def step(self, total, round, update):
        t = copy.copy(self.tron)  # the next state; committed by advance()
        kind = "hv" if t.phase == "cg" else "f"
        accept = False
        if t.phase == "cg":
            self._cg_step(t, t.d + to_dense(total))
        else:
            x = t.w if t.phase == "eval" else t.w + t.s
            fx, gx, Mx, dual = self._evaluated(x, total)
            t.best_dual = max(t.best_dual, dual)
            if t.phase == "eval":
                t.f, t.g, t.M = fx, gx, Mx
                if np.isnan(t.delta):  # LIBLINEAR's first radius, ||g||_M
                    t.delta = np.sqrt(_mdot(t.g, t.M, t.g))
                accept = True
            else:
                accept = self._trial(t, fx, gx, Mx)
            self._start_cg(t)
        self._next, self._accept = t, accept
        self.certified = t.w
        return {"primal": t.f, "dual": t.best_dual,
                "extra": {"round_kind": kind, "newton_iter": t.newton_iter, "cg_iter": t.cg_total,
                          "delta": float(t.delta)}}

    def advance(self):
        self.tron, self._next = self._next, None
        return self._accept

    def restore(self, total):
        # a lost worker's active set is gone: evaluate w again (its CG starts over)
        self.tron = copy.copy(self.tron)
        self.tron.phase = "eval"
        self._next = None

    def model_arrays(self):
        return self.tron.arrays()

    def load_model_arrays(self, arrays):
        self.tron.load(arrays)
        self.certified = self.tron.w

    def warm(self, arrays, problem):
        """TRON from the previous fit's w: a fresh state there (the first round evaluates
        f, the gradient and the first radius ||g||_M at w), no active sets."""
        w = saved_array(arrays, "model__w", self.tron.w.shape)
        tron = _Tron(len(w))
        tron.w = w.copy()
        out = {f"model__{n}": a for n, a in tron.arrays().items()}
        out.update({n: np.full_like(a, np.nan) for n, a in arrays.items()
                    if n.startswith("block") and n.endswith("__coef")})
        return out

    def coef(self):
        return self.certified

    def result_state(self):
        return {"newton_iter": self.tron.newton_iter if self._next is None
                else self._next.newton_iter,
                "cg_iter": self.tron.cg_total if self._next is None else self._next.cg_total}


@register("newton", "binary", {
    "loss": Param("squared_hinge", ("choice", LOSSES)),
    "cg_tol": Param(0.1, ("real", 0.0, 1.0, True)),
    "preconditioner": Param(True, ("bool",)),
})
def build_newton(blocks, n_classes, seeds, *, C, tol, loss, cg_tol, preconditioner):
    """Trust-region Newton (:class:`Newton`) on every block at once; squared hinge only."""
    if loss != "squared_hinge":
        raise ValueError(f"newton solves squared_hinge only (loss='squared_hinge'), got "
                         f"loss={loss!r}: the hinge is not differentiable, it has no Newton "
                         "method (use solver='cocoa' for it)")
    if cg_tol >= 1.0:
        raise ValueError(f"cg_tol must be < 1, got {cg_tol!r}")
    machine = Newton(blocks.n_columns, C=C, cg_tol=cg_tol, preconditioner=preconditioner)
    return machine, AllBlocks()
