"""Small pieces the solvers share."""

import numpy as np

from ..parallel import sq_norm

#: the binary losses: hinge max(0, 1 - m) and its square
LOSSES = ("hinge", "squared_hinge")


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
