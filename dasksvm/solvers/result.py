"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SolverResult"]


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
        (P - D) / |P| (one-vs-rest: the largest per-class relative gap).
    n_iter : int
        Rounds (or epochs) run.
    converged : bool
        Whether ``rel_gap <= tol`` stopped the run.
    stopped : bool
        Whether the callback stopped it (certified at that round).
    history : list of dict
        One record per round (see :class:`~dasksvm.parallel.history.History`).
    state : dict
        ``alpha``: futures of the blocks' dual variables (one per block, on
        its worker), where the solver has them; ``recoveries``: workers lost
        and recovered from during the fit; solver-specific extras.
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
    stopped: bool = False

    @classmethod
    def from_run(cls, run, **state):
        """The result of an :class:`~dasksvm.parallel.engine.Engine` run."""
        rec = run.record
        extra = {"recoveries": run.recoveries, **run.state, **state}
        if run.exports:
            extra["alpha"] = run.exports
        return cls(
            coef=run.coef,
            primal=rec["primal"],
            dual=rec["dual"],
            gap=rec["gap"],
            rel_gap=float(rec.get("stop", rec["rel_gap"])),
            n_iter=run.n_iter,
            converged=run.converged,
            history=run.history,
            state=extra,
            stopped=run.stopped,
        )
