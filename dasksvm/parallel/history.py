"""The per-round record every solver keeps, the stopping quantity and the warning."""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["History", "relative_gap", "warn_not_converged"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relative_gap(primal, dual):
    """(P - D) / |P|, the stopping quantity of every certified solver."""
    return (primal - dual) / max(abs(primal), np.finfo(float).tiny)


class History:
    """One record per round: round, primal, dual, gap, rel_gap, time, n_tasks, bytes.

    ``time`` is seconds since the fit started (a resumed fit continues the
    clock of its checkpoint); the engine adds ``bytes_down`` / ``bytes_up``
    (what it sent to the workers and received from them), ``round_time``,
    ``engine_time`` (the client's own share of the round: everything but
    waiting for the workers) and ``recoveries``; solvers add their own keys.
    """

    def __init__(self, verbose=0, name="solver", records=None):
        self.records = list(records or [])
        offset = self.records[-1]["time"] if self.records else 0.0
        self.t0 = time.perf_counter() - offset
        self.verbose = verbose
        self.name = name

    def add(self, round, primal, dual, *, n_tasks, nbytes, **extra):
        rec = {
            "round": int(round),
            "primal": float(primal),
            "dual": float(dual),
            "gap": float(primal - dual),
            "rel_gap": float(relative_gap(primal, dual)),
            "time": time.perf_counter() - self.t0,
            "n_tasks": int(n_tasks),
            "bytes": int(nbytes),
        }
        rec.update(extra)
        self.records.append(rec)
        if self.verbose:
            print(
                f"[{self.name}] round {rec['round']:4d}  primal {rec['primal']:.8g}  "
                f"dual {rec['dual']:.8g}  rel_gap {rec['rel_gap']:.3e}  "
                f"time {rec['time']:.2f}s  bytes {rec['bytes']}",
                flush=True,
            )
        return rec


def _caller_stacklevel():
    """The stack level of the first frame outside the dasksvm package (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


#: the ConvergenceWarning suggests scaling the features when C * max_i ||x_i||^2 exceeds this
SCALE_HINT = 100.0


def warn_not_converged(name, max_iter, rel_gap, tol, C=None, max_sq_norm=None):
    """The ConvergenceWarning every solver gives when max_iter stops it short,
    attributed to the first line outside dasksvm (the user's ``fit``). With ``C`` and
    the rows' largest squared norm (intercept column included), it also suggests
    scaling the features when ``C * max_sq_norm > SCALE_HINT``: coordinate ascent
    steps of size ~ 1 / (C ||x_i||^2) on raw pixel or sensor values (optdigits,
    shuttle) need tens of thousands of passes."""
    hint = ""
    if C is not None and max_sq_norm is not None and C * max_sq_norm > SCALE_HINT:
        hint = (f"; the rows' squared norms reach {max_sq_norm:.3g} (C * max ||x||^2 = "
                f"{C * max_sq_norm:.3g} > {SCALE_HINT:g}): the solvers converge slowly on "
                "unscaled features, scale the columns (e.g. sklearn.preprocessing."
                "MaxAbsScaler or StandardScaler) or lower C")
    warnings.warn(
        f"{name} did not converge: max_iter={max_iter} rounds ended with relative "
        f"duality gap {rel_gap:.3e} > tol={tol:g}; increase max_iter{hint}",
        ConvergenceWarning,
        stacklevel=_caller_stacklevel(),
    )
