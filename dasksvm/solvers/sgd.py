"""The primal all-reduce subgradient method (formulations.md section 1a)."""

from __future__ import annotations

import numpy as np

from ..kernels.sdca import subgradient_partials
from ..parallel import to_dense
from ..parallel.engine import AllBlocks, Machine
from ._common import LOSSES, BestIterate, dual_bound, saved_array
from .registry import Param, register

__all__ = ["LEARNING_RATES", "SGD", "build_sgd"]

# step t = 1, 2, ... -> step size, for the objective P (1-strongly convex)
LEARNING_RATES = {
    # Pegasos' 1 / (lambda t) with lambda = 1 / (C n), written for P = C n F
    "pegasos": lambda t, eta0: eta0 / t,
    "invscaling": lambda t, eta0: eta0 / np.sqrt(t),
    "constant": lambda t, eta0: eta0,
}


class SGD(Machine):
    """Primal all-reduce subgradient method for the binary linear SVM.

    Minimizes P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i). Round t (step
    t + 1; one task per worker, key ``sgd-local-r{t}-w{j}``): the client
    sends w_t and the averaged iterate; every block computes the
    un-normalized sum u_k = sum_i alpha_i(w_t) y_i x_i over its margin
    violators (alpha_i = C_i, or 2 C_i (1 - y_i w.x_i) for the squared
    hinge), so that the subgradient of P is w - sum_k u_k; each worker sends
    the sum over its blocks; then

        w_{t+1} = Proj(w_t - eta_t (w_t - sum_k u_k)),

    Proj onto the ball ||w|| <= sqrt(2 P(0)) that holds the optimum. The sum
    is exact, so K blocks give the same iterates as one block, up to
    rounding.

    Step rules (``learning_rate``): "pegasos" eta_t = eta0 / t, which is
    Pegasos' 1 / (lambda t) with lambda = 1 / (C n) for P = C n F;
    "invscaling" eta0 / sqrt(t); "constant" eta0. With ``averaging`` the
    returned model is the weighted average sum_s s w_s / sum_s s (the
    O(1/t) scheme for strongly convex subgradient methods). With
    ``batch_fraction < 1`` each row enters a step with that probability (a
    hash of the round's seed, the step and the global row, so the sample
    does not depend on the blocking) and is scaled by its inverse:
    mini-batch Pegasos.

    Certificate: every round evaluates P at the round's model (w, or its
    average; ``history_``'s ``primal_iterate``) and a dual lower bound: the best
    multiple of the dual point alpha(w) read off the loss's derivative. The
    gap is taken from the evaluated model of lowest P so far (the primal is not
    monotone; :class:`~._common.BestIterate`), which is the model returned. That bound closes for the squared hinge as w
    converges; for the hinge the rounding of alpha to {0, C} leaves a gap,
    so "sgd" with the hinge rarely reaches a small ``tol``. The full-batch
    subgradient method needs many more rounds than CoCoA+; accuracy settles
    long before the objective does, so judge it by its primal and gap.
    It keeps no state on the workers.

    No warm start (``warm_start=True`` is a ValueError): the step rules restart at
    t = 1, where Pegasos' first step eta_1 = 1 replaces w by the subgradient step and
    forgets the previous model, so a warm start would save nothing.
    """

    name = "the subgradient method"
    prefix = "sgd"
    worker_fields = ("C", "l2", "batch_fraction", "row_offsets")

    def __init__(self, n_columns, row_offsets, seeds, *, C, loss, learning_rate, eta0,
                 averaging, batch_fraction):
        self.C, self.loss, self.l2 = float(C), loss, loss == "squared_hinge"
        self.learning_rate, self.eta0 = learning_rate, float(eta0)
        self.averaging, self.batch_fraction = bool(averaging), float(batch_fraction)
        self.row_offsets = list(row_offsets)
        self.seeds = seeds
        self.w = np.zeros(n_columns)
        self.w_avg = self.w.copy()
        self.weight_sum = 0.0
        self.t = 1  # the next step
        self.radius = None
        self._best = BestIterate("w")  # the evaluated iterate of lowest primal so far
        self._u = None

    def problem(self):
        return {"solver": "sgd", "C": self.C, "loss": self.loss}

    def _averaged(self):
        return self.averaging and self.t > 1

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        return ()

    def local(self, block, state, message, seed, update, carry=None):
        # the kernels work on the block's own columns; changes are spread back to d
        w, w_avg, t, round_seed = message
        indptr, indices, data = block.local_csr()
        cols, d = block.cols, len(w)
        w_loc = w[cols]
        c = self.C * block.weight
        row0 = self.row_offsets[block.index]
        full = self.batch_fraction >= 1.0
        u, u_s, loss, a_sum, a_sq = subgradient_partials(
            indptr, indices, data, block.y, c, w_loc, self.l2, self.batch_fraction, round_seed,
            t, row0,
        )
        step = u if full else u_s
        if w_avg is not None:  # certify the averaged iterate
            u, _, loss, a_sum, a_sq = subgradient_partials(
                indptr, indices, data, block.y, c, w_avg[cols], self.l2, 1.0, round_seed, t,
                row0,
            )
        elif not full:  # certify w on all rows
            u, _, loss, a_sum, a_sq = subgradient_partials(
                indptr, indices, data, block.y, c, w_loc, self.l2, 1.0, round_seed, t, row0
            )
        return block.spread(step, d), block.spread(u, d), loss, a_sum, a_sq

    # --- on the client -----------------------------------------------------------------
    def message(self, blocks=None):
        w_avg = self.w_avg if self._averaged() else None
        return self.w, w_avg, self.t, self.seeds.seed(self.t)

    def step(self, total, round, update):
        u_step, u_eval, loss_sum, a_sum, a_sq = total
        w_eval = self.w_avg if self._averaged() else self.w
        primal = 0.5 * float(w_eval @ w_eval) + loss_sum
        if self.radius is None:  # at w = 0 every row violates: P(0) = sum_i C_i
            self.radius = np.sqrt(2.0 * primal)
        best = self._best.offer(primal, w_eval)
        self._u = to_dense(u_step)
        eta = LEARNING_RATES[self.learning_rate](self.t, self.eta0)
        return {"primal": best, "dual": dual_bound(to_dense(u_eval), a_sum, a_sq, self.l2),
                "extra": {"step_size": float(eta), "primal_iterate": primal}}

    def advance(self):
        t = self.t
        w = self.w - LEARNING_RATES[self.learning_rate](t, self.eta0) * (self.w - self._u)
        norm = np.sqrt(w @ w)
        if norm > self.radius:
            w *= self.radius / norm
        self.weight_sum += t
        self.w_avg = self.w_avg + (t / self.weight_sum) * (w - self.w_avg) if self.averaging \
            else w
        self.w = w
        self.t = t + 1
        return True

    def model_arrays(self):
        return {"w": self.w, "w_avg": self.w_avg,
                "scalars": np.array([self.weight_sum, self.t,
                                     np.nan if self.radius is None else self.radius]),
                **self._best.arrays(self.C)}

    def load_model_arrays(self, arrays):
        self.w = saved_array(arrays, "w", self.w.shape).copy()
        self.w_avg = saved_array(arrays, "w_avg", self.w.shape).copy()
        weight_sum, t, radius = saved_array(arrays, "scalars", (3,))
        self.weight_sum, self.t = float(weight_sum), int(t)
        self.radius = None if np.isnan(radius) else float(radius)
        self._best.load(arrays, self.C, self.w.shape)

    def coef(self):
        """The evaluated iterate (w, or its average) of lowest primal so far."""
        return self._best.get(self.w_avg if self._averaged() else self.w)


@register("sgd", "binary", {
    "loss": Param("squared_hinge", ("choice", LOSSES)),
    "learning_rate": Param("pegasos", ("choice", tuple(LEARNING_RATES))),
    "eta0": Param(1.0, ("real", 0.0, None, True)),
    "averaging": Param(True, ("bool",)),
    "batch_fraction": Param(1.0, ("real", 0.0, 1.0, True)),
}, warm_start=False)
def build_sgd(blocks, n_classes, seeds, *, C, tol, loss, learning_rate, eta0, averaging,
              batch_fraction):
    """The subgradient method (:class:`SGD`) on every block at once."""
    offsets = np.concatenate([[0], np.cumsum(blocks.n_rows)[:-1]]).astype(np.int64).tolist()
    machine = SGD(blocks.n_columns, offsets, seeds, C=C, loss=loss, learning_rate=learning_rate,
                  eta0=eta0, averaging=averaging, batch_fraction=batch_fraction)
    return machine, AllBlocks()
