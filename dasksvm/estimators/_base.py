"""What the estimators share: input handling, blocks, lazy prediction."""

from __future__ import annotations

import copy
import inspect
import numbers
import warnings
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin

from ..parallel import BlockSet, to_csr
from ..parallel.client import fit_client
from ..parallel.history import _caller_stacklevel
from ..solvers import SOLVERS
from ..solvers.registry import COMMON, Param, check_param, solve
from ..utils.validation import check_labels, check_X, check_X_y

__all__ = [
    "EXPECTED_FAILED_CHECKS",
    "LinearSVMBase",
    "SharedClientMixin",
    "accuracy",
    "class_weight_per_class",
    "expected_failed_checks",
    "is_dask",
    "linear_decision",
    "make_blocks",
    "set_init_params",
]

_SAMPLE_WEIGHT_REASON = (
    "{how}: a row of weight k and k copies of the row give the same optimum, but the two "
    "fits stop at different iterates that agree to about tol, not to the check's "
    "rtol=1e-7 (scikit-learn declares the same for its {peer})"
)

_SAMPLE_WEIGHT_CHECKS = (
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
)

#: scikit-learn's estimator checks each estimator is expected to fail, with the reason:
#: the one list, read by :func:`expected_failed_checks`, keyed by class name (and, for
#: LinearSVC, the solver). It holds only checks that scikit-learn declares for its own
#: peer of the estimator (LinearSVC, SVC, RBFSampler, Nystroem in
#: ``sklearn.utils._test_common.instance_generator``). ``LinearSVC(solver="sgd")`` has
#: none: its full-batch steps add the same subgradient for a row of weight k as for k
#: copies of it, so the two fits are the same iterates (mini-batches,
#: ``batch_fraction < 1``, are not covered by the tests); nor has ``solver="newton"``,
#: which passes the checks (its fits agree to rtol=1e-7). ``solver="auto"`` may run
#: CoCoA+ (on the checks' data with fewer than 10 rows per column), so it has CoCoA+'s.
EXPECTED_FAILED_CHECKS = {
    "LinearSVC(solver='cocoa')": dict.fromkeys(
        _SAMPLE_WEIGHT_CHECKS,
        _SAMPLE_WEIGHT_REASON.format(
            how="fits stop at a relative duality gap of tol", peer="LinearSVC (LIBLINEAR)"),
    ),
    "LinearSVC(solver='auto')": dict.fromkeys(
        _SAMPLE_WEIGHT_CHECKS,
        _SAMPLE_WEIGHT_REASON.format(
            how="fits stop at a relative duality gap of tol (when it runs CoCoA+)",
            peer="LinearSVC (LIBLINEAR)"),
    ),
    "MulticlassSVC": dict.fromkeys(
        _SAMPLE_WEIGHT_CHECKS,
        _SAMPLE_WEIGHT_REASON.format(
            how="fits stop at a relative duality gap of tol", peer="LinearSVC (LIBLINEAR)"),
    ),
    "CascadeSVC": dict.fromkeys(
        _SAMPLE_WEIGHT_CHECKS,
        _SAMPLE_WEIGHT_REASON.format(
            how="SMO stops when the maximal violating pair's gap is below tol",
            peer="SVC (LIBSVM)"),
    ),
}


def _expected_failures_key(estimator):
    name = type(estimator).__name__
    if name == "LinearSVC":
        return f"{name}(solver={estimator.get_params()['solver']!r})"
    return name


def expected_failed_checks(estimator):
    """The scikit-learn checks ``estimator`` is expected to fail: ``{check name: reason}``.

    For ``expected_failed_checks`` of
    :func:`sklearn.utils.estimator_checks.parametrize_with_checks` and
    :func:`~sklearn.utils.estimator_checks.check_estimator`; read from
    :data:`EXPECTED_FAILED_CHECKS`.

    Parameters
    ----------
    estimator : estimator instance

    Returns
    -------
    dict of str to str
    """
    return dict(EXPECTED_FAILED_CHECKS.get(_expected_failures_key(estimator), {}))


def is_dask(a):
    import dask.array as da

    return isinstance(a, da.Array)


def make_blocks(
    client, X, y_encoded, weight, *, fit_intercept, intercept_scaling, name,
    shuffle=False, random_state=None,
):
    """Persist X with encoded labels and per-row weights as a BlockSet."""
    return BlockSet.from_arrays(
        client,
        X,
        y_encoded,
        weight,
        intercept_scaling=intercept_scaling if fit_intercept else None,
        shuffle=shuffle,
        random_state=random_state,
        name=name,
    )


def _decision_block(x, coef, intercept):
    if sp.issparse(x) or hasattr(x, "to_scipy_sparse"):
        out = to_csr(x) @ coef.T
    else:
        out = np.asarray(x, dtype=np.float64) @ coef.T
    out = np.asarray(out) + intercept
    return out


def linear_decision(X, coef, intercept, n_features, owner="the model"):
    """X @ coef.T + intercept: numpy for in-memory X, a lazy dask array for dask X.

    ``coef`` has shape (n_outputs, n_features); the result has shape
    (n_samples, n_outputs). ``owner`` names the estimator in the error for
    a wrong number of features.
    """
    X = check_X(X)
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but {owner} is expecting {n_features} "
            "features as input"
        )
    if is_dask(X):
        return X.map_blocks(
            _decision_block,
            coef,
            intercept,
            chunks=(X.chunks[0], (coef.shape[0],)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
        )
    return _decision_block(X, coef, intercept)


def _lazy_accuracy(pred, y, sample_weight):
    import dask.array as da

    def aligned(a, name):
        if a is None:
            return None
        if not is_dask(a):
            a = np.asarray(a)
            if a.ndim == 2 and a.shape[1] == 1:
                a = a.ravel()
        if a.ndim != 1 or a.shape[0] != pred.shape[0]:
            raise ValueError(f"{name} has shape {a.shape}, expected ({pred.shape[0]},)")
        if is_dask(a):
            return a.rechunk(pred.chunks) if a.chunks != pred.chunks else a
        return da.from_array(a, chunks=pred.chunks)

    if not is_dask(pred):
        pred = da.from_array(
            pred, chunks=y.chunks if is_dask(y) and y.ndim == 1 else sample_weight.chunks
        )
    hit = pred == aligned(y, "y")
    w = aligned(sample_weight, "sample_weight")
    if w is None:
        return hit.mean()
    w = w.astype(np.float64)
    return (hit * w).sum() / w.sum()


def accuracy(pred, y, sample_weight=None):
    """Mean accuracy of ``pred`` against ``y``, optionally weighted.

    Parameters
    ----------
    pred : ndarray or dask array of shape (n_samples,)
    y : array-like or dask array of shape (n_samples,)
    sample_weight : array-like or dask array of shape (n_samples,), optional

    Returns
    -------
    float or dask array
        A float when all the inputs are in memory; else a 0-d dask array, not
        computed (``float(score)`` or ``score.compute()`` computes it), with
        ``y`` and ``sample_weight`` rechunked to the rows of ``pred``.
    """
    if is_dask(pred) or is_dask(y) or is_dask(sample_weight):
        return _lazy_accuracy(pred, y, sample_weight)
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(y), np.asarray(pred), sample_weight=sample_weight))


def class_weight_per_class(class_weight, classes, y):
    """Weight of each class: None -> 1, "balanced" -> n / (K * count), or a dict (the
    classes of y are counted, one pass over y, only for "balanced")."""
    K = len(classes)
    if class_weight is None:
        return np.ones(K)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f'class_weight must be None, "balanced" or a dict, got {class_weight!r}')
        counts = class_counts(y, classes)
        return counts.sum() / (K * np.maximum(counts, 1))
    if isinstance(class_weight, dict):
        unknown = set(class_weight) - set(classes.tolist())
        if unknown:
            raise ValueError(f"class_weight has labels not in y: {sorted(unknown, key=str)}")
        return np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])
    raise ValueError(f'class_weight must be None, "balanced" or a dict, got {class_weight!r}')


def encode_labels(y, classes, values):
    """Map labels to ``values[index of label in classes]`` (lazy for dask y)."""
    def enc(yb):
        idx = np.searchsorted(classes, yb)
        return np.asarray(values, dtype=np.float64)[idx]

    if is_dask(y):
        return y.map_blocks(enc, dtype=np.float64)
    return enc(np.asarray(y))


def class_counts(y, classes):
    """Number of examples of each class."""
    def cnt(yb):
        return np.bincount(np.searchsorted(classes, yb), minlength=len(classes))[None, :]

    if is_dask(y):
        return np.asarray(
            y.map_blocks(cnt, chunks=((1,) * y.numblocks[0], (len(classes),)),
                         new_axis=1, dtype=np.int64).sum(axis=0).compute()
        )
    return cnt(np.asarray(y))[0]


def row_weights(y, classes, class_w, sample_weight):
    """Per-row weight = class weight of the row's label times its sample weight."""
    w = encode_labels(y, classes, class_w)
    if sample_weight is not None:
        w = w * sample_weight
    return w


def seed_of(random_state):
    """``random_state`` as an int seed (or None); a RandomState draws one."""
    rs = random_state
    if rs is None or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
        return rs
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a RandomState, got {rs!r}")


def _same(a, b):
    try:
        return bool(a == b) if not (a is None or b is None) else a is b
    except (TypeError, ValueError):
        return False


def set_init_params(est, params):
    """Store the arguments of ``est.__init__`` under their own names.

    Call as ``set_init_params(self, locals())`` in ``__init__``: every
    parameter becomes an attribute unchanged, nothing else is set and
    nothing is checked (scikit-learn's convention; the checks run in fit).
    """
    for name in inspect.signature(type(est).__init__).parameters:
        if name != "self":
            setattr(est, name, params[name])


class SharedClientMixin:
    """:func:`sklearn.base.clone` copies every parameter except ``client``.

    A client is a handle on a running cluster, to be shared (and it cannot be
    deep-copied): the clone, e.g. each fit of a ``GridSearchCV``, uses the same one.
    """

    def __sklearn_clone__(self):
        if self.client is None:
            return super().__sklearn_clone__()
        stripped = copy.copy(self)
        stripped.client = None
        return BaseEstimator.__sklearn_clone__(stripped).set_params(client=self.client)


class LinearSVMBase(SharedClientMixin, ClassifierMixin, BaseEstimator):
    """What :class:`~dasksvm.LinearSVC` and :class:`~dasksvm.MulticlassSVC` share.

    Parameter checks (``_scalar_constraints``, ``_choices``), input checks,
    fitting a solver on a :class:`~dasksvm.parallel.BlockSet` built from
    the input, the fitted attributes, ``score``. Subclasses set every
    ``__init__`` argument with :func:`set_init_params` and take from
    their parameters ``C``, ``fit_intercept``, ``intercept_scaling``,
    ``shuffle``, ``random_state`` and ``client``.
    """

    #: the solver family (``SOLVERS[...].family``) and the parameter that picks the solver
    _family: ClassVar[str] = "binary"
    _solver_param: ClassVar[str] = "solver"
    #: values of the solver parameter that leave the choice to :meth:`_pick_solver`,
    #: each with the solvers it may choose (it takes the parameters they all take)
    _auto: ClassVar[dict] = {}
    #: rules of the estimator's own parameters (the solvers' come from the registry)
    _own_params: ClassVar[dict] = {
        "intercept_scaling": Param(1.0, ("real", 0.0, None, True)),
        "fit_intercept": Param(True, ("bool",)),
        "shuffle": Param(True, ("bool",)),
    }

    def _solvers(self):
        return {n: e for n, e in SOLVERS.items() if e.family == self._family}

    def _check_params(self):
        """Every parameter against the one table (:mod:`dasksvm.solvers.registry`); a
        parameter of another solver than the chosen one must keep its default (with an
        automatic choice, only what every solver it may choose takes may be set)."""
        solvers = self._solvers()
        name = getattr(self, self._solver_param)
        check_param(self._solver_param, name, ("choice", tuple(solvers) + tuple(self._auto)))
        if name in self._auto:
            allowed = set.intersection(*(set(solvers[n].params) for n in self._auto[name]))
        else:
            allowed = set(solvers[name].params)
        table = {**COMMON, **self._own_params}
        for entry in solvers.values():
            table.update(entry.params)
        for p, spec in table.items():
            if p in self.get_params(deep=False):
                check_param(p, getattr(self, p), spec.rule)
        for entry in solvers.values():
            for p, spec in entry.params.items():
                if (p in allowed or p not in self.get_params(deep=False)
                        or _same(getattr(self, p), spec.default)):
                    continue
                users = [n for n, e in solvers.items() if p in e.params]
                why = (f" (it may choose any of {list(self._auto[name])}: name the solver to "
                       "set its own parameters)" if name in self._auto else "")
                raise ValueError(
                    f"{p} is only used with {self._solver_param} in {users}; got "
                    f"{p}={getattr(self, p)!r} with {self._solver_param}={name!r}{why}"
                )

    def _pick_solver(self, X):
        """The solver a fit of X runs: the solver parameter (subclasses with an
        automatic choice resolve it here)."""
        return getattr(self, self._solver_param)

    def _solver_kwargs(self, seed, name):
        """The arguments of :func:`~dasksvm.solvers.registry.solve` for solver ``name``
        from the parameters."""
        entry = self._solvers()[name]
        mine = self.get_params(deep=False)
        kw = {p: mine[p] for p in (*COMMON, *entry.params) if p in mine}
        kw["random_state"] = seed
        return kw

    def _seed(self):
        return seed_of(self.random_state)

    def _fit_solver(self, X, y_encoded, weight, classes, n_outputs, *, resume, n_classes=None):
        """Blocks from the input, the chosen solver on them, the fitted attributes; with
        ``warm_start`` the fit starts from the previous fit's final state and keeps its
        own (``_warm_state``: the seed and the solver's state, not a parameter)."""
        previous = getattr(self, "_warm_state", None) if self.warm_start else None
        name = self._pick_solver(X)
        self._check_warm_start(name)
        problem = self._warm_problem(name)
        changed = [] if previous is None else [
            k for k in sorted(set(problem) | set(previous["problem"]))
            if not _same(problem.get(k), previous["problem"].get(k))]
        if changed:
            diff = ", ".join(f"{k}={problem.get(k)!r} now, {previous['problem'].get(k)!r} "
                             "before" for k in changed)
            warnings.warn(f"warm_start: the previous fit had other parameters ({diff}); this "
                          "fit starts cold", UserWarning, stacklevel=_caller_stacklevel())
            previous = None
        seed = self._warm_seed(previous)
        kwargs = self._solver_kwargs(seed, name)
        warm = None if previous is None else previous["state"]
        result = self._solve(
            X, y_encoded, weight,
            lambda blocks: solve(name, blocks, n_classes, resume=resume, warm=warm, **kwargs),
            name=f"{name}-data", random_state=seed,
        )
        self.__dict__.pop("_warm_state", None)
        if self.warm_start:
            self._warm_state = {"seed": seed, "problem": problem,
                                "state": result.state.pop("warm")}
        return self._set_fitted(result, classes, n_outputs, X.shape[1])

    #: parameters a warm start may change (``warm_start``); a change of any other makes
    #: the next fit start cold, with a UserWarning naming it
    _warm_free: ClassVar[tuple] = ("C", "tol", "max_iter", "verbose", "callback", "client",
                                   "warm_start", "checkpoint", "checkpoint_every")

    def _warm_problem(self, name):
        """What must not change between a fit and the next warm one: the solver run and
        the other parameters but those of :attr:`_warm_free` (``random_state`` only when
        it is an int: else the previous fit's seed is reused, see :meth:`_warm_seed`)."""
        out = {p: v for p, v in self.get_params(deep=False).items()
               if p not in self._warm_free and not (
                   p == "random_state" and not isinstance(v, numbers.Integral))}
        out[self._solver_param] = name
        return out

    def _check_warm_start(self, name):
        """A ValueError when ``warm_start=True`` and solver ``name`` has no warm start."""
        if self.warm_start and not self._solvers()[name].warm_start:
            ok = sorted(n for n, e in self._solvers().items() if e.warm_start)
            raise ValueError(
                f"warm_start=True is not available with {self._solver_param}={name!r}, "
                f"which has no warm start: use warm_start=False or one of {ok}")

    def _warm_seed(self, previous):
        """The fit's seed: :meth:`_seed`, except with ``warm_start``: a ``random_state``
        that is not an int (None, a RandomState) takes the previous fit's seed, and None
        gets a fresh int on the first fit, so that the next fit deals the rows over the
        blocks the same way (a warm start needs the same blocks)."""
        if previous is not None and not isinstance(self.random_state, numbers.Integral):
            return previous["seed"]
        seed = self._seed()
        if seed is None and self.warm_start:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        return seed

    def _check_fit_input(self, X, y, sample_weight):
        """The checked parameters and ``(X, y, sample_weight, classes)``, two classes or more."""
        self._check_params()
        X, y, sample_weight = check_X_y(X, y, sample_weight)
        classes = check_labels(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}); {type(self).__name__} needs "
                "more than one class"
                if len(classes)
                else "y has no labels"
            )
        return X, y, sample_weight, classes

    def _solve(self, X, y_encoded, weight, solve, *, name, random_state):
        """``solve(blocks)`` on X with encoded labels and row weights as blocks
        (named ``name``), released afterwards; on the client of
        :func:`~dasksvm.parallel.client.fit_client` (a worker's own client when
        the fit runs inside a dask task)."""
        with fit_client(self.client) as client:
            blocks = make_blocks(
                client,
                X,
                y_encoded,
                weight,
                fit_intercept=self.fit_intercept,
                intercept_scaling=self.intercept_scaling,
                shuffle=bool(self.shuffle),
                random_state=random_state,
                name=name,
            )
            try:
                return solve(blocks)
            finally:
                blocks.release()

    def _set_fitted(self, result, classes, n_outputs, n_features):
        """The fitted attributes from a :class:`~dasksvm.solvers.result.SolverResult`
        whose coef has ``n_outputs`` rows over the block columns."""
        coef = result.coef
        if hasattr(coef, "toarray"):
            coef = coef.toarray()
        coef = np.asarray(coef, dtype=np.float64).reshape(n_outputs, -1)
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.coef_ = np.ascontiguousarray(coef[:, :n_features])
        if self.fit_intercept:
            self.intercept_ = self.intercept_scaling * coef[:, n_features].copy()
        else:
            self.intercept_ = np.zeros(n_outputs)
        self.n_iter_ = result.n_iter
        self.stopped_ = result.stopped
        self.history_ = result.history
        self.converged_ = result.converged
        self.primal_ = result.primal
        self.dual_ = result.dual
        self.rel_gap_ = result.rel_gap
        return self

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against y, optionally weighted.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
        y : array-like or dask array of shape (n_samples,)
        sample_weight : array-like or dask array of shape (n_samples,), optional

        Returns
        -------
        float or dask array
            A float for in-memory input; a lazy 0-d dask array when X, y or
            ``sample_weight`` is a dask array (nothing is computed here:
            ``float(score)`` or ``score.compute()`` does it).
        """
        return accuracy(self.predict(X), y, sample_weight)

    def _decision(self, X):
        """X @ coef_.T + intercept_, (n_samples, n_outputs); lazy for dask X."""
        self._check_fitted()
        return linear_decision(
            X, self.coef_, self.intercept_, self.n_features_in_, owner=type(self).__name__
        )

    def _check_fitted(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "coef_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
