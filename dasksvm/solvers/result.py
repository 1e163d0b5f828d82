"""What every solver returns, and the per-round history record."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["History", "SolverResult", "relative_gap"]


def relative_gap(primal, dual):
    """(P - D) / |P|, the stopping quantity of every certified solver."""
    return (primal - dual) / max(abs(primal), np.finfo(float).tiny)


@dataclass
class SolverResult:
    """The outcome of one solver run.

    Attributes
    ----------
    coef : ndarray or sparse matrix
        Weights over the block columns (intercept column included when fitted):
        shape (n_columns,) for binary problems, (n_classes, n_columns) for
        multiclass ones.
    primal, dual, gap, rel_gap : float
        Certificate of ``coef``: P(coef), a dual value D <= P*, P - D and
        (P - D) / |P|. For solvers without a dual point ``dual`` and ``gap``
        are NaN.
    n_iter : int
        Rounds (or epochs) run.
    converged : bool
        Whether ``rel_gap <= tol`` stopped the run.
    history : list of dict
        One record per round (see :class:`History`).
    state : dict
        Whatever rebuilds the solver (e.g. futures of the blocks' dual
        variables); optional.
    """

    coef: object
    primal: float
    dual: float
    gap: float
    rel_gap: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)
    state: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, coef, rec, *, n_iter, converged, history, state=None, rel_gap=None):
        """The result certified by ``rec``, the :class:`History` record of its last round.

        ``rel_gap`` overrides the record's (P - D) / |P| where the solver stops on
        another quantity (one-vs-rest: the largest per-class gap).
        """
        return cls(
            coef=coef,
            primal=rec["primal"],
            dual=rec["dual"],
            gap=rec["gap"],
            rel_gap=rec["rel_gap"] if rel_gap is None else float(rel_gap),
            n_iter=n_iter,
            converged=converged,
            history=history,
            state={} if state is None else state,
        )


class History:
    """Collects one record per round: round, primal, dual, gap, rel_gap, time, n_tasks, bytes.

    ``time`` is seconds since the solver started; extra keys may be added per solver.
    """

    def __init__(self, verbose=0, name="solver"):
        self.records = []
        self.t0 = time.perf_counter()
        self.verbose = verbose
        self.name = name

    def add(self, round, primal, dual, *, n_tasks, nbytes, **extra):
        gap = primal - dual
        rec = {
            "round": int(round),
            "primal": float(primal),
            "dual": float(dual),
            "gap": float(gap),
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


def warn_not_converged(name, max_iter, rel_gap, tol):
    """Emit the ConvergenceWarning every solver gives when max_iter stops it short."""
    warnings.warn(
        f"{name} did not converge: max_iter={max_iter} rounds ended with relative "
        f"duality gap {rel_gap:.3e} > tol={tol:g}; increase max_iter",
        ConvergenceWarning,
        stacklevel=3,
    )
