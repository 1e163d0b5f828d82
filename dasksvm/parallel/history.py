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


def warn_not_converged(name, max_iter, rel_gap, tol):
    """The ConvergenceWarning every solver gives when max_iter stops it short,
    attributed to the first line outside dasksvm (the user's ``fit``)."""
    warnings.warn(
        f"{name} did not converge: max_iter={max_iter} rounds ended with relative "
        f"duality gap {rel_gap:.3e} > tol={tol:g}; increase max_iter",
        ConvergenceWarning,
        stacklevel=_caller_stacklevel(),
    )
