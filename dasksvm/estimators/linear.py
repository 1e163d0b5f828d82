"""The binary linear SVM estimator."""

from __future__ import annotations

from typing import ClassVar

from ..solvers.cocoa import AGGREGATIONS, solve_cocoa
from ..solvers.sgd import LEARNING_RATES, solve_sgd
from ._base import (
    LinearSVMBase,
    class_counts,
    class_weight_per_class,
    encode_labels,
    is_dask,
    row_weights,
    set_init_params,
)

__all__ = ["LinearSVC"]

SOLVERS = {"cocoa": solve_cocoa, "sgd": solve_sgd}
LOSSES = ("hinge", "squared_hinge")


class LinearSVC(LinearSVMBase):
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
        set_init_params(self, locals())

    _scalar_constraints: ClassVar[dict] = {
        "C": ("real", 0.0, None, True),
        "intercept_scaling": ("real", 0.0, None, True),
        "tol": ("real", 0.0, None, False),
        "max_iter": ("int", 1, None, False),
        "local_iters": ("real", 0.0, None, True),
        "eta0": ("real", 0.0, None, True),
        "batch_fraction": ("real", 0.0, 1.0, True),
        "verbose": ("int", 0, None, False),
    }
    _choices: ClassVar[dict] = {
        "loss": LOSSES,
        "solver": tuple(SOLVERS),
        "aggregation": tuple(AGGREGATIONS),
        "learning_rate": tuple(LEARNING_RATES),
    }

    def _solver_kwargs(self, seed):
        common = {
            "C": float(self.C),
            "loss": self.loss,
            "tol": float(self.tol),
            "max_iter": int(self.max_iter),
            "random_state": seed,
            "verbose": self.verbose,
        }
        if self.solver == "cocoa":
            return {**common, "local_iters": float(self.local_iters),
                    "aggregation": self.aggregation}
        return {
            **common,
            "learning_rate": self.learning_rate,
            "eta0": float(self.eta0),
            "averaging": bool(self.averaging),
            "batch_fraction": float(self.batch_fraction),
        }

    def fit(self, X, y, sample_weight=None):
        """Fit on X (n_samples, n_features) and y (n_samples,), two distinct labels.

        Parameters
        ----------
        sample_weight : array of shape (n_samples,), optional
            Multiplies C per example.
        """
        X, y, sample_weight, classes = self._check_fit_input(X, y, sample_weight)
        if len(classes) > 2:
            raise ValueError(
                f"Only binary classification is supported. y has {len(classes)} classes; "
                "LinearSVC is binary: use dasksvm.MulticlassSVC for more than two classes"
            )
        counts = class_counts(y, classes)
        cw = class_weight_per_class(self.class_weight, classes, counts)
        y_pm = encode_labels(y, classes, [-1.0, 1.0])
        weight = row_weights(y, classes, cw, sample_weight)
        seed = self._seed()
        kwargs = self._solver_kwargs(seed)
        result = self._solve(
            X, y_pm, weight, lambda blocks: SOLVERS[self.solver](blocks, **kwargs),
            name="linearsvc-data", random_state=seed,
        )
        return self._set_fitted(result, classes, 1, X.shape[1])

    def decision_function(self, X):
        """w.x + b for each row: shape (n_samples,); lazy for dask X."""
        return self._decision(X)[:, 0]

    def predict(self, X):
        """Labels from ``classes_``: shape (n_samples,); lazy for dask X."""
        scores = self.decision_function(X)
        if is_dask(scores):
            classes = self.classes_
            return scores.map_blocks(
                lambda s: classes[(s > 0).astype(int)], dtype=classes.dtype
            )
        return self.classes_[(scores > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
