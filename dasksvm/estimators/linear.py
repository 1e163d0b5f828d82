"""The binary linear SVM estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..solvers.cocoa import AGGREGATIONS, solve_cocoa
from ..solvers.sgd import LEARNING_RATES, solve_sgd
from ..utils.validation import check_labels, check_scalar_params, check_X_y
from ._base import (
    class_counts,
    class_weight_per_class,
    encode_labels,
    is_dask,
    linear_decision,
    make_blocks,
    resolve_client,
    row_weights,
)

__all__ = ["LinearSVC"]

SOLVERS = {"cocoa": solve_cocoa, "sgd": solve_sgd}
LOSSES = ("hinge", "squared_hinge")


class LinearSVC(ClassifierMixin, BaseEstimator):
    """Binary linear SVM on Dask, certified by the duality gap.

    Minimizes, over w (and the intercept, handled as LIBLINEAR does: a
    constant column ``intercept_scaling`` appended to X, its weight
    regularized like the others),

        P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i),   y_i in {-1, +1},

    with loss(m) = max(0, 1 - m) (``"hinge"``) or its square
    (``"squared_hinge"``) and C_i = C * class_weight[y_i] * sample_weight_i:
    the problem of scikit-learn's ``LinearSVC(dual=True)`` (LIBLINEAR).

    Parameters
    ----------
    C : float > 0
    loss : {"squared_hinge", "hinge"}
    solver : {"cocoa", "sgd"}
        ``"cocoa"``: CoCoA+ (local dual coordinate ascent per block, one
        all-reduce per round; see :func:`dasksvm.solvers.cocoa.solve_cocoa`).
        ``"sgd"``: the primal all-reduce subgradient method
        (:func:`dasksvm.solvers.sgd.solve_sgd`).
    fit_intercept : bool
    intercept_scaling : float > 0
    tol : float >= 0
        Stop when the relative duality gap (P - D) / |P| <= tol.
    max_iter : int >= 1
        Rounds (cocoa) or steps (sgd); a ConvergenceWarning is issued when
        they end before ``tol``.
    local_iters : float > 0
        cocoa: coordinate passes over its rows per block per round.
    aggregation : {"add", "average"}
        cocoa: CoCoA+ adding (gamma = 1, sigma' = K) or CoCoA averaging
        (gamma = 1/K, sigma' = 1).
    learning_rate : {"pegasos", "invscaling", "constant"}
        sgd step rule (see :func:`dasksvm.solvers.sgd.solve_sgd`).
    eta0 : float > 0
        sgd: base step size.
    averaging : bool
        sgd: return the weighted average of the iterates.
    batch_fraction : float in (0, 1]
        sgd: expected fraction of rows used per step.
    shuffle : bool
        Deal the rows over the blocks at random once before fitting (the
        blocks keep their number and sizes). Files sorted by label otherwise
        give blocks holding one class each, on which CoCoA+ stalls; the
        optimum does not depend on it.
    class_weight : None, "balanced" or dict
    random_state : int, RandomState or None
    client : distributed.Client, optional
        Defaults to :func:`dasksvm.get_client` (current client, else an
        embedded LocalCluster).
    verbose : int

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the positive class.
    n_iter_ : int
    history_ : list of dict
        One record per round: round, primal, dual, gap, rel_gap, time (s),
        n_tasks, bytes.
    converged_ : bool
    primal_, dual_, rel_gap_ : float
        The certificate of the returned model.
    n_features_in_ : int

    Notes
    -----
    Input: numpy arrays, scipy sparse matrices or dask arrays (dense or CSR
    blocks, chunked along rows only); all give the same model. In-memory
    input is cut into one block per worker thread.
    """

    def __init__(
        self,
        C=1.0,
        *,
        loss="squared_hinge",
        solver="cocoa",
        fit_intercept=True,
        intercept_scaling=1.0,
        tol=1e-3,
        max_iter=1000,
        local_iters=1.0,
        aggregation="add",
        learning_rate="pegasos",
        eta0=1.0,
        averaging=True,
        batch_fraction=1.0,
        shuffle=True,
        class_weight=None,
        random_state=None,
        client=None,
        verbose=0,
    ):
        self.C = C
        self.loss = loss
        self.solver = solver
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.max_iter = max_iter
        self.local_iters = local_iters
        self.aggregation = aggregation
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.averaging = averaging
        self.batch_fraction = batch_fraction
        self.shuffle = shuffle
        self.class_weight = class_weight
        self.random_state = random_state
        self.client = client
        self.verbose = verbose

    _scalar_constraints = {
        "C": ("real", 0.0, None, True),
        "intercept_scaling": ("real", 0.0, None, True),
        "tol": ("real", 0.0, None, False),
        "max_iter": ("int", 1, None, False),
        "local_iters": ("real", 0.0, None, True),
        "eta0": ("real", 0.0, None, True),
        "batch_fraction": ("real", 0.0, 1.0, True),
        "verbose": ("int", 0, None, False),
    }
    _choices = {
        "loss": LOSSES,
        "solver": tuple(SOLVERS),
        "aggregation": tuple(AGGREGATIONS),
        "learning_rate": tuple(LEARNING_RATES),
    }

    def _check_params(self):
        check_scalar_params(self, self._scalar_constraints)
        for name, options in self._choices.items():
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {list(options)}, got {getattr(self, name)!r}")

    def _solver_kwargs(self):
        common = dict(
            C=float(self.C),
            loss=self.loss,
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            random_state=self.random_state,
            verbose=self.verbose,
        )
        if self.solver == "cocoa":
            return dict(common, local_iters=float(self.local_iters), aggregation=self.aggregation)
        return dict(
            common,
            learning_rate=self.learning_rate,
            eta0=float(self.eta0),
            averaging=bool(self.averaging),
            batch_fraction=float(self.batch_fraction),
        )

    def fit(self, X, y, sample_weight=None):
        """Fit on X (n_samples, n_features) and y (n_samples,), two distinct labels.

        Parameters
        ----------
        sample_weight : array of shape (n_samples,), optional
            Multiplies C per example.
        """
        self._check_params()
        X, y, sample_weight = check_X_y(X, y, sample_weight)
        classes = check_labels(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}); LinearSVC needs two classes"
                if len(classes) else "y has no labels"
            )
        if len(classes) > 2:
            raise ValueError(
                f"y has {len(classes)} classes; LinearSVC is binary. "
                "Use dasksvm.MulticlassSVC for more than two classes"
            )
        counts = class_counts(y, classes)
        cw = class_weight_per_class(self.class_weight, classes, counts)
        y_pm = encode_labels(y, classes, [-1.0, 1.0])
        weight = row_weights(y, classes, cw, sample_weight)
        client = resolve_client(self.client)
        blocks = make_blocks(
            client,
            X,
            y_pm,
            weight,
            fit_intercept=self.fit_intercept,
            intercept_scaling=self.intercept_scaling,
            shuffle=bool(self.shuffle),
            random_state=self.random_state,
            name="linearsvc-data",
        )
        try:
            result = SOLVERS[self.solver](blocks, **self._solver_kwargs())
        finally:
            blocks.release()
        coef = np.asarray(result.coef, dtype=np.float64)
        n_features = X.shape[1]
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.coef_ = coef[:n_features].reshape(1, -1)
        if self.fit_intercept:
            self.intercept_ = np.array([self.intercept_scaling * coef[n_features]])
        else:
            self.intercept_ = np.zeros(1)
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.converged_ = result.converged
        self.primal_ = result.primal
        self.dual_ = result.dual
        self.rel_gap_ = result.rel_gap
        return self

    def decision_function(self, X):
        """w.x + b for each row: shape (n_samples,); lazy for dask X."""
        self._check_fitted()
        out = linear_decision(X, self.coef_, self.intercept_, self.n_features_in_)
        return out[:, 0]

    def predict(self, X):
        """Labels from ``classes_``: shape (n_samples,); lazy for dask X."""
        scores = self.decision_function(X)
        if is_dask(scores):
            classes = self.classes_
            return scores.map_blocks(
                lambda s: classes[(s > 0).astype(int)], dtype=classes.dtype
            )
        return self.classes_[(scores > 0).astype(int)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (computed for dask input)."""
        pred = self.predict(X)
        if is_dask(pred) or is_dask(y):
            import dask

            pred, y = dask.compute(pred, y)
        from sklearn.metrics import accuracy_score

        return accuracy_score(np.asarray(y), np.asarray(pred), sample_weight=sample_weight)

    def _check_fitted(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "coef_")
