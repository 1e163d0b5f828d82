"""The multiclass linear SVM estimator: Weston-Watkins, Lee-Lin-Wahba, Crammer-Singer, OVR."""

from __future__ import annotations

import numpy as np

from ._base import (
    LinearSVMBase,
    class_weight_per_class,
    encode_labels,
    is_dask,
    row_weights,
    set_init_params,
)

__all__ = ["MulticlassSVC"]


class MulticlassSVC(LinearSVMBase):
    """Multiclass linear SVM on Dask, certified by the duality gap.

    One weight vector w_k per class, trained by one of four machines
    (formulations.md section 2), with C_i = C * class_weight[y_i] *
    sample_weight_i and, when ``fit_intercept``, LIBLINEAR's intercept: a
    constant column ``intercept_scaling`` appended to X whose weights are
    regularized like the others.

    ``"ww"`` (Weston-Watkins)::

        min 1/2 sum_k ||w_k||^2 + sum_i C_i sum_{k != y_i} max(0, 1 - (w_{y_i} - w_k).x_i)

    ``"llw"`` (Lee-Lin-Wahba)::

        min 1/2 sum_k ||w_k||^2 + sum_i C_i sum_{k != y_i} max(0, 1 + w_k.x_i)
        s.t. sum_k w_k = 0

    ``"cs"`` (Crammer-Singer, scikit-learn's ``multi_class="crammer_singer"``)::

        min 1/2 sum_k ||w_k||^2 + sum_i C_i max_k ([k != y_i] + (w_k - w_{y_i}).x_i)

    ``"ovr"`` (one-vs-rest, scikit-learn's default ``LinearSVC`` with
    ``loss="hinge"``): for every k independently::

        min 1/2 ||w_k||^2 + sum_i C_i max(0, 1 - y^k_i w_k.x_i),  y^k_i = +-1 for y_i = k / != k

    Stopping rule: the solver's relative duality gap (P - D) / |P| <= tol
    (for ``"ovr"`` every class's own gap). What a round communicates:
    ``"ww"`` moves the weight vectors of pairs of class bundles between
    workers (examples are grouped by class once, at the start of fit);
    ``"llw"``, ``"cs"`` and ``"ovr"`` are row-parallel CoCoA+: each round
    sends every row block the K x d model restricted to its touched columns
    and all-reduces the blocks' sparse changes of it (see the solvers in
    :mod:`dasksvm.solvers`). Dual variables never leave their workers.

    Parameters
    ----------
    multi_class : {"ww", "llw", "cs", "ovr"}
    C : float > 0
    fit_intercept : bool
    intercept_scaling : float > 0
    tol : float > 0
        Relative duality gap at which the solver stops.
    max_iter : int >= 1
        Rounds at most (``"ww"``: epochs of the pair schedule); a
        ConvergenceWarning is issued when they end before ``tol``.
    n_bundles : int, optional
        ``"ww"`` only: number of class bundles (1 <= n_bundles <=
        n_classes; default 1 for small problems, which then run many passes
        a round, else ``min(2 * threads of the cluster, n_classes)``; see
        :func:`dasksvm.solvers.ww.build_ww`).
        Passing it with another machine is an error (no parameter is
        accepted and ignored). WW runs fastest on one
        machine as one worker process with several threads (``docs/ww.md``).
    shuffle : bool
        Deal the rows over the blocks at random once before fitting (the
        blocks keep their number and sizes; see
        :meth:`dasksvm.parallel.BlockSet.from_arrays`). Files sorted by label
        otherwise give row blocks holding one or a few classes each, on which
        the row-parallel machines (llw, cs, ovr) stall; the optimum does not
        depend on it. ``"ww"`` regroups the rows by class anyway, so there it
        only costs one pass over the data.
    class_weight : None, "balanced" or dict
        Multiplies C per class ("balanced": n_samples / (n_classes *
        count_k)). With ``"ovr"`` the weight of an example's own class is
        used in every binary problem (LIBLINEAR weights only the positive
        class).
    random_state : int, RandomState or None
        Seeds the coordinate orders.
    client : distributed.Client, optional
        Defaults to :func:`dasksvm.parallel.get_client`.
    verbose : int
    callback : callable, optional
        ``callback(record)`` after every round (``"ww"``: epoch) with its
        history record; returning ``False`` stops the fit cleanly with the
        model certified at that round. The records also go to
        ``Client.log_event("dasksvm-progress", ...)``.
    checkpoint : path, optional
        Write the model, the dual variables, the history and the seed
        position to this file every ``checkpoint_every`` rounds and at the
        end (npz + JSON with SHA-256s, atomic, never pickle); see
        ``fit(..., resume=True)``.
    checkpoint_every : int >= 1
    warm_start : bool
        Start a fit from the previous fit's final model and dual variables when
        only ``C``, ``tol``, ``max_iter``, ``verbose`` or ``callback`` changed
        (same data, blocking, intercept, class and sample weights, machine):
        the duals are scaled by C / C_old, which keeps them feasible, and the
        model is recomputed from them, so the certificate is exact. Otherwise
        the fit starts cold with a UserWarning naming what differs. The rows are
        dealt over the blocks with the previous fit's seed unless
        ``random_state`` is an int. The state is kept in memory only (not a
        parameter, not in model files). See :func:`dasksvm.C_path`.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
        ``intercept_scaling`` times the weights of the intercept column
        (zeros without ``fit_intercept``).
    classes_ : ndarray of shape (n_classes,)
        Sorted distinct labels (any type numpy can sort, e.g. strings).
    n_iter_ : int
    history_ : list of dict
        One record per round: round, primal, dual, gap, rel_gap, time (s),
        n_tasks, bytes (plus machine-specific keys, e.g. ``class_rel_gaps``
        for ``"ovr"``).
    converged_ : bool
    primal_, dual_, rel_gap_ : float
        The certificate of the returned model.
    n_features_in_ : int

    Notes
    -----
    Input: numpy arrays, scipy sparse matrices or dask arrays (dense or CSR
    blocks, chunked along rows only). ``predict`` and ``decision_function``
    are lazy (``map_blocks``) on dask input. With two classes
    ``decision_function`` returns the 1-d difference of the two classes'
    scores (positive for ``classes_[1]``), as scikit-learn classifiers do;
    ``coef_`` keeps both rows.
    """

    def __init__(
        self,
        multi_class="ww",
        C=1.0,
        *,
        fit_intercept=True,
        intercept_scaling=1.0,
        tol=1e-3,
        max_iter=1000,
        n_bundles=None,
        shuffle=True,
        class_weight=None,
        random_state=None,
        client=None,
        verbose=0,
        callback=None,
        checkpoint=None,
        checkpoint_every=10,
        warm_start=False,
    ):
        set_init_params(self, locals())

    _family = "multiclass"
    _solver_param = "multi_class"

    def fit(self, X, y, sample_weight=None, resume=False):
        """Fit on X (n_samples, n_features) and y (n_samples,) with at least two labels.

        Parameters
        ----------
        X : array-like, scipy sparse or dask array of shape (n_samples, n_features)
        y : array-like or dask array of shape (n_samples,)
            Any labels numpy can sort (numbers, strings).
        sample_weight : array of shape (n_samples,), optional
            Multiplies C per example.
        resume : bool
            Continue from the file ``checkpoint`` when it exists (same data,
            C, machine, intercept, class and sample weights, else a
            ValueError saying what differs); without the file the fit starts
            from zero.

        Returns
        -------
        self
        """
        X, y, sample_weight, classes = self._check_fit_input(X, y, sample_weight)
        n_classes = len(classes)
        if self.n_bundles is not None and self.n_bundles > n_classes:
            raise ValueError(
                f"n_bundles={self.n_bundles} is larger than the number of classes "
                f"({n_classes}); use at most n_classes bundles"
            )
        cw = class_weight_per_class(self.class_weight, classes, y)
        y_idx = encode_labels(y, classes, np.arange(n_classes, dtype=np.float64))
        weight = None
        if self.class_weight is not None or sample_weight is not None:
            weight = row_weights(y, classes, cw, sample_weight)
        return self._fit_solver(X, y_idx, weight, classes, n_classes, resume=resume,
                                n_classes=n_classes)

    def decision_function(self, X):
        """Class scores X @ coef_.T + intercept_.

        Returns
        -------
        ndarray or dask array
            Shape (n_samples, n_classes); with two classes shape (n_samples,)
            holding score_1 - score_0. Lazy for dask X.
        """
        scores = self._decision(X)
        if len(self.classes_) == 2:
            if is_dask(scores):
                return scores.map_blocks(_binary_margin, drop_axis=1, dtype=np.float64)
            return _binary_margin(scores)
        return scores

    def predict(self, X):
        """The label of the largest score, shape (n_samples,); lazy for dask X."""
        scores = self._decision(X)
        classes = self.classes_
        if is_dask(scores):
            return scores.map_blocks(
                _argmax_labels, classes, drop_axis=1, dtype=classes.dtype,
                meta=np.empty((0,), dtype=classes.dtype),
            )
        return _argmax_labels(scores, classes)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


def _binary_margin(scores):
    return scores[:, 1] - scores[:, 0]


def _argmax_labels(scores, classes):
    return classes[np.argmax(scores, axis=1)]
