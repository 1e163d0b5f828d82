"""The binary linear SVM estimator."""

from __future__ import annotations

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
    solver : {"cocoa", "sgd", "newton"}
        ``"cocoa"``: CoCoA+ (local dual coordinate ascent per block, one
        all-reduce per round; see :class:`dasksvm.solvers.cocoa.CoCoA`).
        ``"sgd"``: the primal all-reduce subgradient method
        (:class:`dasksvm.solvers.sgd.SGD`). ``"newton"``: trust-region
        Newton, squared hinge only (:class:`dasksvm.solvers.newton.Newton`,
        at its default ``cg_tol`` and preconditioner). A parameter of another
        solver than the chosen one must keep its default (else a ValueError).
    fit_intercept : bool
    intercept_scaling : float > 0
    tol : float > 0
        Stop when the relative duality gap (P - D) / |P| <= tol.
    max_iter : int >= 1
        Rounds (cocoa) or steps (sgd); a ConvergenceWarning is issued when
        they end before ``tol``.
    local_passes : float > 0
        cocoa: coordinate passes over its rows per block per round.
    aggregation : {"add", "average"}
        cocoa: CoCoA+ adding (gamma = 1, sigma' = K) or CoCoA averaging
        (gamma = 1/K, sigma' = 1).
    learning_rate : {"pegasos", "invscaling", "constant"}
        sgd step rule (see :class:`dasksvm.solvers.sgd.SGD`).
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
    callback : callable, optional
        ``callback(record)`` after every round with its history record
        (round, primal, dual, gap, rel_gap, time, n_tasks, bytes, ...);
        returning ``False`` stops the fit cleanly with the model certified at
        that round (``stopped_`` is then True, no ConvergenceWarning). The
        same records go to ``Client.log_event("dasksvm-progress", ...)``.
    checkpoint : path, optional
        Write the model, the blocks' dual variables, the history and the
        seed position to this file every ``checkpoint_every`` rounds and at
        the end (npz + JSON with SHA-256s, atomic, never pickle); see
        ``fit(..., resume=True)``.
    checkpoint_every : int >= 1

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
    stopped_ : bool
        Whether ``callback`` stopped the fit.
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
        local_passes=1.0,
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
        callback=None,
        checkpoint=None,
        checkpoint_every=10,
    ):
        set_init_params(self, locals())

    def fit(self, X, y, sample_weight=None, resume=False):
        """Fit on X (n_samples, n_features) and y (n_samples,), two distinct labels.

        Parameters
        ----------
        sample_weight : array of shape (n_samples,), optional
            Multiplies C per example.
        resume : bool
            Continue from the file ``checkpoint`` when it exists (same data,
            C, loss, solver, intercept, class and sample weights, else a
            ValueError saying what differs); ``tol``, ``max_iter``,
            ``verbose`` and ``callback`` may change. Without the file the fit
            starts from zero.
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
        return self._fit_solver(X, y_pm, weight, classes, 1, resume=resume)

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
