"""The regularization path: one fitted model per C, each fit warm-started from the last."""

from __future__ import annotations

import copy
import numbers

import numpy as np
from sklearn.base import clone

__all__ = ["C_path"]


def C_path(estimator, X, y, Cs, *, sample_weight=None):
    """Fit ``estimator`` at every C of ``Cs``, each fit warm-started from the previous one.

    A working clone of ``estimator`` with ``warm_start=True`` is fitted at the values
    of ``Cs`` in increasing order; every fit after the first starts from the previous
    fit's final dual state scaled by C / C_old (``"newton"``: its final w), which is
    feasible for the new C, and the model is rebuilt from those duals, so every model is
    certified by its own duality gap exactly as a cold fit is (the relative gap
    (P - D) / |P| <= ``tol`` of the estimator at its C). Larger C needs more rounds
    from zero; from the optimum at a slightly smaller C it needs fewer (LIBLINEAR's
    ``-C`` search does the same). The path's models are the minimizers of the same
    objectives as cold fits, to ``tol``: see the estimator for the objective and what a
    round communicates.

    Parameters
    ----------
    estimator : LinearSVC or MulticlassSVC
        Unfitted or fitted; not modified. Its parameters (but C and ``warm_start``) are
        those of every fit; ``solver="sgd"`` has no warm start (a ValueError).
    X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
    y : array-like or dask array of shape (n_samples,)
    Cs : sequence of float
        The values of C, each > 0, distinct (any order).
    sample_weight : array-like or dask array of shape (n_samples,), optional

    Returns
    -------
    list of estimators
        One fitted copy of ``estimator`` per value of ``Cs``, in the order of ``Cs``,
        with its ``C`` set and its own ``warm_start`` (the warm state is not kept:
        each model holds only its fitted attributes, ``n_iter_`` the rounds of its own
        warm fit).

    Raises
    ------
    ValueError
        ``Cs`` empty, not a 1-d sequence of finite numbers > 0, or with repeated values;
        the estimator has no ``C`` or ``warm_start`` parameter, or its solver has no
        warm start.

    Examples
    --------
    >>> import dasksvm                                                # doctest: +SKIP
    >>> models = dasksvm.C_path(dasksvm.LinearSVC(), X, y, 2.0 ** np.arange(-5, 3))
    ...                                                               # doctest: +SKIP
    >>> [m.score(X_test, y_test) for m in models]                     # doctest: +SKIP
    """
    params = estimator.get_params(deep=False)
    for p in ("C", "warm_start"):
        if p not in params:
            raise ValueError(f"C_path needs an estimator with a {p!r} parameter; "
                             f"{type(estimator).__name__} has none")
    Cs = _check_Cs(Cs)
    work = clone(estimator).set_params(warm_start=True)
    fitted = {}
    for C in sorted(Cs):
        work.set_params(C=C)
        if sample_weight is None:
            work.fit(X, y)
        else:
            work.fit(X, y, sample_weight=sample_weight)
        model = copy.copy(work)
        model.__dict__.pop("_warm_state", None)
        model.set_params(warm_start=params["warm_start"])
        fitted[C] = model
    return [fitted[C] for C in Cs]


def _check_Cs(Cs):
    """``Cs`` as a list of floats, or a ValueError saying what is wrong."""
    if isinstance(Cs, (str, bytes)) or not hasattr(Cs, "__len__"):
        raise ValueError(f"Cs must be a sequence of numbers > 0, got {Cs!r}")
    if np.ndim(Cs) != 1 or len(Cs) == 0:
        raise ValueError(f"Cs must be a non-empty 1-d sequence of numbers > 0, got {Cs!r}")
    values = []
    for C in list(Cs):
        if (isinstance(C, (bool, np.bool_)) or not isinstance(C, numbers.Real)
                or not np.isfinite(C) or C <= 0):
            raise ValueError(f"Cs must hold finite numbers > 0, got {C!r}")
        values.append(float(C))
    if len(set(values)) != len(values):
        raise ValueError(f"Cs holds repeated values: {values}")
    return values
