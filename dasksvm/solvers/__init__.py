"""The solvers: round-engine machines, one registry (:mod:`.registry`), and a
``solve_<name>(blocks, [n_classes,] **params)`` function per solver."""

from . import cascade, cocoa, cs, llw, newton, ovr, sgd, ww  # noqa: F401  (register the solvers)
from .registry import SOLVERS, solve

__all__ = ["SOLVERS", "solve", "solve_cocoa", "solve_cs", "solve_llw", "solve_newton", "solve_ovr",
           "solve_sgd", "solve_ww"]


def _solver_function(name):
    entry = SOLVERS[name]

    def run(blocks, *args, **kwargs):
        return solve(name, blocks, *args, **kwargs)

    run.__name__ = run.__qualname__ = f"solve_{name}"
    params = ", ".join(f"{p}={v.default!r}" for p, v in entry.params.items())
    run.__doc__ = (f"Run the {name!r} solver: ``solve({name!r}, blocks, ...)``; its own "
                   f"parameters (defaults): {params}. See :func:`.registry.solve` and "
                   f"{entry.build.__doc__}")
    return run


solve_cocoa = _solver_function("cocoa")
solve_sgd = _solver_function("sgd")
solve_llw = _solver_function("llw")
solve_newton = _solver_function("newton")
solve_cs = _solver_function("cs")
solve_ovr = _solver_function("ovr")
solve_ww = _solver_function("ww")
