"""Small pieces the solvers share."""

import numpy as np

from ..parallel import sq_norm

#: the binary losses: hinge max(0, 1 - m) and its square
LOSSES = ("hinge", "squared_hinge")


def passes_per_round(work, budget, cap):
    """Coordinate passes per round for a ``local_passes="auto"``: ``budget // work``
    clipped to ``[1, cap]``, where ``work`` counts the multiply-adds of one pass
    (non-zeros times classes) and ``budget`` those a round should do, so that its
    compute is not dwarfed by its scheduling. Deterministic: the iterates never
    depend on timing."""
    return int(min(cap, max(1, budget // max(int(work), 1))))


def saved_array(arrays, name, shape):
    """``arrays[name]`` from a checkpoint, checked to be a float array of ``shape``."""
    if name not in arrays:
        raise ValueError(f"checkpoint has no array {name!r}: written by another solver")
    a = np.asarray(arrays[name])
    if a.shape != tuple(shape) or a.dtype.kind != "f":
        raise ValueError(f"checkpoint array {name!r} has shape {a.shape} and dtype {a.dtype}, "
                         f"expected float {tuple(shape)}")
    return a


def dual_bound(u, a_sum, a_sq, l2):
    """Best dual value along the ray s * beta, s >= 0 (s <= 1 for the hinge).

    For a dual-feasible direction beta with u = w(beta) = sum_i beta_i y_i x_i
    (dense or a SparseVector),
    a_sum = sum_i beta_i and a_sq = sum_i beta_i^2 / (4 c_i),

        D(s beta) = s a_sum - s^2 (||u||^2 / 2 + l2 * a_sq),

    maximized in closed form. Any dual-feasible point bounds P* from below.
    """
    quad = 0.5 * sq_norm(u) + (a_sq if l2 else 0.0)
    if quad <= 0.0:
        return 0.0
    s = a_sum / (2.0 * quad)
    s = max(0.0, s if l2 else min(1.0, s))
    return s * a_sum - s * s * quad


def scaled_duals(arrays, ratio, name="alpha"):
    """The per-block duals ``block{k}__{name}`` of a warm state times ``ratio`` (the only
    arrays kept: the engine rebuilds the shared model from them).

    ``ratio`` = C_new / C_old maps a dual point of the old C to one of the new: the
    boxes 0 <= alpha_i <= C_i (hinge, LLW, one-vs-rest) and alpha_{i,k} <= C_i [k = y_i]
    with sum_k alpha_{i,k} = 0 (Crammer-Singer) scale with C, alpha_i >= 0 (squared
    hinge) is a cone; bounded variables stay at their bound. Raises a ValueError when
    the warm state holds no such arrays.
    """
    out = {n: np.asarray(a) * ratio for n, a in arrays.items()
           if n.startswith("block") and n.endswith(f"__{name}")}
    if not out:
        raise ValueError(f"the warm state holds no per-block {name!r}: written by another solver")
    return out


class BestIterate:
    """The model of lowest primal value seen so far, and that value.

    A dual method's primal P(w(alpha_t)) is not monotone in t (its dual is), and a
    subgradient method's is not either, so a certificate P(w_s) - D_t with w_s the
    best iterate so far is a valid bound at least as tight as the last iterate's; the
    fit returns w_s. Checkpoints keep it as ``best_<name>`` with ``best_primal`` =
    [P(w_s), C], loaded only at the same C (a warm start at another C starts its own
    record).
    """

    def __init__(self, name):
        self.name, self.value, self.model = name, None, None

    def offer(self, primal, model):
        """Keep ``model`` (copied) when ``primal`` is the lowest yet; the lowest value."""
        if self.model is None or primal < self.value:
            self.value, self.model = float(primal), np.array(model, copy=True)
        return self.value

    def get(self, current):
        """The best model, or ``current`` before any was offered."""
        return current if self.model is None else self.model

    def arrays(self, C):
        if self.model is None:
            return {}
        return {f"best_{self.name}": self.model, "best_primal": np.array([self.value, C])}

    def load(self, arrays, C, shape):
        self.value = self.model = None
        if "best_primal" in arrays:
            value, at = saved_array(arrays, "best_primal", (2,))
            if at == C:
                self.value = float(value)
                self.model = saved_array(arrays, f"best_{self.name}", shape).copy()
