"""The one solver registry and the one parameter-constraint table.

Every solver is an entry of :data:`SOLVERS`: its family (``"binary"`` or
``"multiclass"``), its own parameters (:class:`Param`: default and rule) and
a ``build`` function that makes its round-engine machine. :func:`solve` checks
the arguments against the same table the estimators read their parameter
checks from (:func:`estimator_constraints`), builds the machine, runs it on
:class:`~dasksvm.parallel.engine.Engine` and returns a
:class:`~dasksvm.solvers.result.SolverResult`. No parameter is accepted and
ignored: a solver's parameter given to another solver is an error.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..parallel.engine import Engine, Machine
from ..parallel.seeds import Seeds
from .result import SolverResult

__all__ = [
    "COMMON",
    "SOLVERS",
    "Param",
    "SolverEntry",
    "check_param",
    "estimator_constraints",
    "register",
    "solve",
]


@dataclass(frozen=True)
class Param:
    """A parameter: its default and its rule.

    ``rule`` is one of ``("real", low, high, low_open)``, ``("int", low, high,
    low_open)`` (a bound of None is open), ``("choice", values)``,
    ``("bool",)``, ``("callable",)`` (None or a callable), ``("path",)`` (None
    or a path), ``("seed",)`` (None, an int >= 0, a RandomState or a
    Generator), ``("word", word, rule)`` (the string ``word`` or ``rule``;
    ``("auto", rule)`` is ``("word", "auto", rule)``), or ``("none", rule)``
    (None or ``rule``).
    """

    default: object
    rule: tuple


def check_param(name, value, rule):
    """Raise a ValueError naming ``name`` unless ``value`` satisfies ``rule`` (see Param)."""
    kind = rule[0]
    if kind == "auto":
        rule, kind = ("word", "auto", rule[1]), "word"
    if kind in ("word", "none"):
        word = rule[1] if kind == "word" else None
        if (kind == "word" and isinstance(value, str) and value == word) or (
            kind == "none" and value is None
        ):
            return
        try:
            return check_param(name, value, rule[-1])
        except ValueError as e:
            alt = f'"{word}"' if kind == "word" else "None"
            raise ValueError(f"{e}; or {alt}") from None
    if kind in ("real", "int"):
        _, low, high, low_open = rule
        if kind == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                  and np.isfinite(value))
        if not ok:
            raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be <= {high}, got {value!r}")
    elif kind == "choice":
        if not (isinstance(value, str) and value in rule[1]):
            raise ValueError(f"{name} must be one of {list(rule[1])}, got {value!r}")
    elif kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    elif kind == "callable":
        if value is not None and not callable(value):
            raise ValueError(f"{name} must be None or a callable, got {value!r}")
    elif kind == "path":
        import os

        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name} must be None or a file path, got {value!r}")
    elif kind == "seed":
        ok = value is None or isinstance(value, (np.random.RandomState, np.random.Generator)) \
            or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0)
        if not ok:
            raise ValueError(f"{name} must be None, an int >= 0, a RandomState or a Generator, "
                             f"got {value!r}")
    else:  # pragma: no cover - a table error
        raise AssertionError(f"unknown rule {rule!r} for {name}")


#: parameters every solver takes (the engine's and the problem's)
COMMON = {
    "C": Param(1.0, ("real", 0.0, None, True)),
    "tol": Param(1e-3, ("real", 0.0, None, False)),
    "max_iter": Param(1000, ("int", 1, None, False)),
    "random_state": Param(None, ("seed",)),
    "verbose": Param(0, ("int", 0, None, False)),
    "callback": Param(None, ("callable",)),
    "checkpoint": Param(None, ("path",)),
    "checkpoint_every": Param(10, ("int", 1, None, False)),
    "warm_start": Param(False, ("bool",)),
}


@dataclass(frozen=True)
class SolverEntry:
    """A registered solver.

    ``build(blocks, n_classes, seeds, C=..., **params) -> (machine, schedule)``;
    ``n_classes`` is None for binary solvers. ``run``, when given, replaces the
    engine's loop for machines that drive their own rounds (it receives the
    engine and returns its :class:`~dasksvm.parallel.engine.RunResult`).
    """

    family: str
    params: dict
    build: object
    doc: str = ""
    warm_start: bool = True


SOLVERS: dict[str, SolverEntry] = {}


def register(name, family, params, doc="", warm_start=True):
    """Decorator: register ``build`` as the solver ``name`` (``warm_start``: whether its
    machine has a warm start, :meth:`~dasksvm.parallel.engine.Machine.warm`)."""

    def decorate(build):
        SOLVERS[name] = SolverEntry(family, dict(params), build, doc, warm_start)
        return build

    return decorate


def estimator_constraints(family, names):
    """``{parameter: Param}`` for an estimator's parameters ``names``: the common table
    and the parameters of the family's solvers (one table for estimator and solver)."""
    table = dict(COMMON)
    for entry in SOLVERS.values():
        if entry.family == family:
            table.update(entry.params)
    return {n: table[n] for n in names if n in table}


def users_of(family, param):
    """The solvers of ``family`` that take ``param``."""
    return [n for n, e in SOLVERS.items() if e.family == family and param in e.params]


def solve(name, blocks, n_classes=None, *, resume=False, warm=None, **kwargs):
    """Run solver ``name`` on ``blocks``; see the solver's entry for its parameters.

    Parameters
    ----------
    name : str
        A key of :data:`SOLVERS`.
    blocks : dasksvm.parallel.BlockSet
    n_classes : int, optional
        Multiclass solvers only.
    resume : bool
        Continue from ``checkpoint`` (see :class:`~dasksvm.parallel.engine.Engine`).
    warm : WarmState, optional
        ``state["warm"]`` of an earlier result on the same blocks (``warm_start=True``
        only): start from it when only C differs, else cold with a warning (see
        :class:`~dasksvm.parallel.engine.Engine`).
    **kwargs
        The common parameters (:data:`COMMON`) and the solver's own; anything
        else is a TypeError, a bad value a ValueError.

    Returns
    -------
    SolverResult
        With ``warm_start=True``, ``state["warm"]`` holds the final state for the next
        fit's ``warm``.
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; one of {sorted(SOLVERS)}")
    entry = SOLVERS[name]
    table = {**COMMON, **entry.params}
    unknown = sorted(set(kwargs) - set(table))
    if unknown:
        others = {u: [n for n, e in SOLVERS.items() if u in e.params] for u in unknown}
        raise TypeError(f"solver {name!r} takes no parameter(s) {unknown}"
                        + "".join(f"; {u} is for {v}" for u, v in others.items() if v))
    args = {n: kwargs.get(n, p.default) for n, p in table.items()}
    for n, p in table.items():
        check_param(n, args[n], p.rule)
    if warm is not None and not args["warm_start"]:
        raise ValueError("warm is given but warm_start=False: pass warm_start=True to start "
                         "from an earlier fit's state")
    if args["warm_start"] and not entry.warm_start:
        raise ValueError(f"warm_start=True is not available with solver {name!r}: it has no "
                         "warm start")
    if entry.family == "multiclass":
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        n_classes = int(n_classes)
    seeds = Seeds(args["random_state"])
    own = {n: args[n] for n in entry.params if n not in COMMON}  # an entry may tighten one
    machine, schedule = entry.build(blocks, n_classes, seeds, C=float(args["C"]),
                                    tol=float(args["tol"]), **own)
    if args["warm_start"] and type(machine).warm is Machine.warm:
        raise ValueError(f"warm_start=True is not available with solver {name!r}: "
                         f"{machine.name} has no warm start")
    engine = Engine(
        blocks, machine, tol=args["tol"], max_iter=args["max_iter"], seeds=seeds,
        verbose=args["verbose"], callback=args["callback"], checkpoint=args["checkpoint"],
        checkpoint_every=args["checkpoint_every"], resume=resume, schedule=schedule,
        warm=warm, keep_warm=args["warm_start"],
    )
    return SolverResult.from_run(engine.run())
