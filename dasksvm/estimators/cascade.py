"""The exact kernel SVM on Dask: :class:`CascadeSVC` (the Cascade SVM, certified)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin

from ..parallel import BlockSet, to_csr
from ..parallel.client import fit_client
from ..solvers import cascade as _cascade
from ..solvers.registry import (
    COMMON,
    SOLVERS,
    Param,
    check_param,
    estimator_constraints,
    solve,
)
from ..solvers.smo import decision_function as _kernel_decision
from ..utils.validation import check_labels, check_X, check_X_y
from ._base import (
    SharedClientMixin,
    accuracy,
    class_weight_per_class,
    encode_labels,
    is_dask,
    row_weights,
    seed_of,
    set_init_params,
)

__all__ = ["CascadeSVC"]

#: CascadeSVC's parameter rules: the solver's from its registry entry (the one table the
#: solver checks too), gamma's words and the two that only the estimator has
_SOLVER_PARAMS = ("C", "tol", "kernel", "degree", "coef0", "fan_in", "cache_size",
                  "verbose")
_RULES = {
    **estimator_constraints("kernel", _SOLVER_PARAMS),
    "gamma": Param("scale", ("word", "scale",
                             ("auto", SOLVERS["cascade"].params["gamma"].rule))),
    "max_passes": Param(10, COMMON["max_iter"].rule),  # the solver's max_iter
    "decision_function_shape": Param("ovr", ("choice", ("ovr", "ovo"))),
    "shuffle": Param(True, ("bool",)),
}


def _moments(block, n_columns):
    X = block.X
    return float(X.data.sum()), float(X.data @ X.data), X.shape[0] * n_columns


def _block_decision(x, model):
    """``K(x, SV) @ coef + intercept`` of one block (numpy, scipy or pydata sparse rows)."""
    if hasattr(x, "to_scipy_sparse") or sp.issparse(x):
        x = to_csr(x)
    else:
        x = np.asarray(x, dtype=np.float64)
    S, coef, intercept, kern = model
    chunk = int(max(64, min(4096, (1 << 22) // max(coef.shape[0], 1))))
    return _kernel_decision(x, S, coef, intercept, chunk=chunk, **kern)


def _drop_empty_chunks(X, y, sample_weight):
    """Dask input without its empty row chunks (a block needs a row); others unchanged."""
    if not is_dask(X) or all(c > 0 for c in X.chunks[0]):
        return X, y, sample_weight
    keep = [k for k, c in enumerate(X.chunks[0]) if c > 0]
    if not keep:
        raise ValueError("X has no rows")
    import dask.array as da

    def pick(a):
        if a is None or not is_dask(a):
            return a
        return da.concatenate([a.blocks[k] for k in keep], axis=0)

    return pick(X), pick(y), pick(sample_weight)


def _check_weighted_classes(y, sample_weight, classes):
    """Every class needs a row of positive weight (LIBSVM drops rows of weight 0)."""
    if is_dask(y) or is_dask(sample_weight):
        import dask
        import dask.array as da

        y, sample_weight = dask.compute(da.asarray(y), da.asarray(sample_weight))
    kept = np.unique(np.asarray(y)[np.asarray(sample_weight) > 0])
    if kept.shape[0] < 2:
        raise ValueError("all rows of positive sample_weight belong to one class "
                         f"({kept.tolist()}); CascadeSVC needs at least two classes")
    missing = sorted(set(classes.tolist()) - set(kept.tolist()), key=str)
    if missing:
        raise ValueError(f"class(es) {missing} have no row of positive sample_weight; drop "
                         "them from y or give them weight")


def _votes(dec, n_classes):
    """Votes of the one-vs-one classifiers (pair (i, j) votes i when positive)."""
    votes = np.zeros((dec.shape[0], n_classes))
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            pos = dec[:, p] > 0
            votes[:, i] += pos
            votes[:, j] += ~pos
            p += 1
    return votes


def _ovr_shape(dec, n_classes):
    """scikit-learn's one-vs-rest form of one-vs-one decisions: the votes plus the
    summed confidences squashed into (-1/3, 1/3)."""
    votes = _votes(dec, n_classes)
    conf = np.zeros_like(votes)
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            conf[:, i] += dec[:, p]
            conf[:, j] -= dec[:, p]
            p += 1
    return votes + conf / (3.0 * (np.abs(conf) + 1.0))


class CascadeSVC(SharedClientMixin, ClassifierMixin, BaseEstimator):
    """Kernel SVM (LIBSVM's C-SVC) on Dask by the Cascade SVM, exact to ``tol``.

    Solves, for each binary problem (one for two classes; one per pair of
    classes, one-vs-one, for more), LIBSVM's dual

        max_a  e^T a - 1/2 a^T Q a,   0 <= a_i <= C_i,  y^T a = 0,
        Q_ij = y_i y_j K(x_i, x_j),   C_i = C * class_weight[y_i] * sample_weight_i,

    with the decision function ``f(x) = sum_i a_i y_i K(x_i, x) + b``
    (formulations.md section 3): the model of scikit-learn's ``SVC``.

    The solver (:mod:`dasksvm.solvers.cascade`): in the first pass every row
    block trains an SVM (:func:`dasksvm.solvers.smo.solve_smo`, numba SMO with
    second-order working-set selection) on its rows; survivors (support
    vectors) merge up a tree with ``fan_in`` children per node, every node
    warm-started from its children's alphas. After every pass one task per
    worker checks LIBSVM's optimality condition m(a) - M(a) <= tol (the
    maximal violating pair) over *every* training row against the root model,
    in float64. While it fails, the next pass solves the root again on its
    support vectors, the violators and each block's most violating rows,
    warm-started from the alphas and the exact gradient the check computed;
    the check after it updates its decision values by the alphas that
    changed. The fitted model is therefore LIBSVM's optimum on the whole data
    to ``tol``. A pass communicates support vectors and violating rows (rows,
    alphas, gradients); the data stays on its workers.

    Parameters
    ----------
    C : float > 0
    kernel : {"rbf", "linear", "poly", "sigmoid"}
        ``exp(-gamma ||x - z||^2)``, ``x.z``, ``(gamma x.z + coef0)^degree``,
        ``tanh(gamma x.z + coef0)`` (scikit-learn's).
    gamma : "scale", "auto" or float > 0
        "scale": 1 / (n_features * X.var()), "auto": 1 / n_features.
    degree : int >= 0
    coef0 : float
    tol : float > 0
        The maximal violating pair's gap at which every binary problem stops
        (LIBSVM's ``eps``).
    fan_in : int >= 2
        Children per merge node of the cascade's tree.
    max_passes : int >= 1
        Passes at most; a ConvergenceWarning follows when the check still fails.
    cache_size : float > 0
        Kernel-row cache of each node's SMO, in MB.
    class_weight : None, "balanced" or dict
    decision_function_shape : {"ovr", "ovo"}
        As scikit-learn's ``SVC`` (the classifiers are one-vs-one either way).
    shuffle : bool
        Deal the rows over the blocks at random (once) before the first pass.
        The model does not depend on it (it is the optimum on all rows), the
        time does: files sorted by label (skin_nonskin) give leaves of one
        class, which pass all their rows up the tree (skin_nonskin in file
        order, 2 workers: 4.64 s and 13 passes kept in order, 2.65 s and 3
        passes dealt, ``benchmarks/results/cascade_file_order.md``).
        ``support_`` indexes the input's rows either way.
    random_state : None, int or RandomState
        Seed of the shuffle.
    client : distributed.Client, optional
        Defaults to :func:`dasksvm.get_client`.
    verbose : int

    Attributes
    ----------
    support_ : ndarray of shape (n_SV,)
        Indices of the support vectors in the training rows, grouped by class.
    support_vectors_ : ndarray or CSR matrix of shape (n_SV, n_features)
        Dense for dense input, CSR for sparse input.
    n_support_ : ndarray of shape (n_classes,), int32
    dual_coef_ : ndarray of shape (n_classes - 1, n_SV)
        ``alpha_i y_i`` in scikit-learn's layout (for two classes, positive
        towards ``classes_[1]``).
    intercept_ : ndarray of shape (n_classes * (n_classes - 1) / 2,)
    classes_ : ndarray of shape (n_classes,)
    history_ : list of dict
        One record per pass: ``round``, ``primal``, ``dual`` (sums over the
        pairs; primal NaN for a pass without a global check), ``gap``,
        ``time``, ``pass_time``, ``sv_per_level`` (support vectors of each
        node, leaves first; one list per pair for multiclass), ``n_sv``,
        ``checked`` (pairs checked), ``kkt_violators``, ``kkt_gap`` (largest
        m(a) - M(a)), ``pairs_done``, ``pass_kind`` (``"tree"``, ``"root"`` or
        None for a pair already done; one per pair for multiclass),
        ``smo_iter_root``, ``bytes_tree``, ``n_tasks``, ``bytes``.
    n_iter_ : int
        Passes run.
    converged_ : bool
    fit_status_ : int
        0 when every pair passed the global check, 1 otherwise.
    n_features_in_ : int
    """

    def __init__(self, C=1.0, *, kernel="rbf", gamma="scale", degree=3, coef0=0.0, tol=1e-3,
                 fan_in=2, max_passes=10, cache_size=200, class_weight=None,
                 decision_function_shape="ovr", shuffle=True, random_state=None, client=None,
                 verbose=0):
        set_init_params(self, locals())

    # --- fitting ---------------------------------------------------------------------
    def _check_params(self):
        for name, p in _RULES.items():
            check_param(name, getattr(self, name), p.rule)

    def _resolve_gamma(self, blocks, n_features):
        if self.kernel == "linear":
            return 1.0
        if self.gamma == "auto":
            return 1.0 / n_features
        if self.gamma == "scale":
            parts = blocks.client.gather(blocks.map(_moments, n_features,
                                                    key="cascade-moments"))
            s = sum(p[0] for p in parts)
            sq = sum(p[1] for p in parts)
            n = sum(p[2] for p in parts)
            var = sq / n - (s / n) ** 2
            return 1.0 / (n_features * var) if var > 0 else 1.0
        return float(self.gamma)

    def fit(self, X, y, sample_weight=None):
        """Fit on X (n_samples, n_features) and y (n_samples,); numpy, scipy or dask.

        Parameters
        ----------
        sample_weight : array of shape (n_samples,), optional
            Multiplies C per row (rows of weight 0 take no part).
        """
        self._check_params()
        X, y, sample_weight = check_X_y(X, y, sample_weight)
        X, y, sample_weight = _drop_empty_chunks(X, y, sample_weight)
        classes = check_labels(y)
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({classes[0]!r}); CascadeSVC needs more "
                             "than one class" if len(classes) else "y has no labels")
        K = len(classes)
        if sample_weight is not None:
            _check_weighted_classes(y, sample_weight, classes)
        cw = class_weight_per_class(self.class_weight, classes, y)
        y_idx = encode_labels(y, classes, np.arange(K, dtype=np.float64))
        weight = row_weights(y, classes, cw, sample_weight)
        n_features = X.shape[1]
        dense = not (sp.issparse(X) or (is_dask(X) and (sp.issparse(X._meta)
                                                         or hasattr(X._meta, "to_scipy_sparse"))))
        with fit_client(self.client) as client:
            blocks = BlockSet.from_arrays(client, X, y_idx, weight, shuffle=bool(self.shuffle),
                                          random_state=seed_of(self.random_state),
                                          name="cascade-data")
            input_rows = blocks.input_rows()
            try:
                gamma = self._resolve_gamma(blocks, n_features)
                result = solve("cascade", blocks, K, C=float(self.C), tol=float(self.tol),
                               max_iter=int(self.max_passes), verbose=int(self.verbose),
                               kernel=self.kernel, gamma=gamma, degree=int(self.degree),
                               coef0=float(self.coef0), fan_in=int(self.fan_in),
                               cache_size=float(self.cache_size))
            finally:
                blocks.release()
        self._gamma = gamma
        self.classes_ = classes
        self.n_features_in_ = n_features
        self._set_model(result.coef, K, n_features, dense, input_rows)
        self.history_ = result.history
        self.n_iter_ = int(max(result.state.get("passes", [result.n_iter])))
        self.converged_ = result.converged
        self.fit_status_ = 0 if result.converged else 1
        self.dual_ = result.dual
        self.primal_ = result.primal
        return self

    def _set_model(self, models, K, n_features, dense, input_rows):
        """scikit-learn's attributes from the pairs' root models (their row ids count
        the blocks' rows in block order; ``input_rows`` maps them to the input's)."""
        pairs = _cascade.pairs_of(K)
        n_pairs = len(pairs)
        # the support: every row that is a support vector of a pair of its class (a row
        # has one class, so each of its entries gives the same one)
        rid = input_rows[np.concatenate([np.asarray(m["ids"], dtype=np.int64)
                                         for m in models])]
        coef = np.concatenate([np.asarray(m["coef"], dtype=np.float64) for m in models])
        pair = np.repeat(np.arange(n_pairs), [len(m["ids"]) for m in models])
        first_cls = np.array([i for i, _ in pairs], dtype=np.int64)
        second_cls = np.array([j for _, j in pairs], dtype=np.int64)
        cls = np.where(coef > 0, first_cls[pair], second_cls[pair])
        uniq, first = np.unique(rid, return_index=True)
        order = np.lexsort((uniq, cls[first]))  # grouped by class, then by row
        ids = uniq[order]
        sv_cls = cls[first][order]
        rank = np.empty(uniq.shape[0], dtype=np.int64)
        rank[order] = np.arange(uniq.shape[0])
        k = rank[np.searchsorted(uniq, rid)]
        n_sv = ids.shape[0]
        pair_coef = np.zeros((n_sv, n_pairs))
        pair_coef[k, pair] = coef
        intercept = np.array([float(m["b"]) for m in models])
        dual = np.zeros((max(K - 1, 1), n_sv))
        if K == 2:
            dual[0, k] = coef
        else:  # class i of pair (i, j): row j - 1; class j: row i
            row = np.where(coef > 0, second_cls[pair] - 1, first_cls[pair])
            dual[row, k] = coef
        if n_sv:
            rows = sp.vstack([sp.csr_matrix(m["X"]) for m in models], format="csr")
            S = rows[first[order]]
        else:
            S = sp.csr_matrix((0, n_features))
        S = sp.csr_matrix((S.data, S.indices, S.indptr), shape=(n_sv, n_features))
        self.support_ = ids.astype(np.int32)
        self.support_vectors_ = S.toarray() if dense else S
        self.n_support_ = np.bincount(sv_cls, minlength=K).astype(np.int32)
        self.dual_coef_ = dual
        self.intercept_ = intercept
        self._pair_coef = pair_coef
        self._sv = S.toarray() if dense else S

    # --- prediction ------------------------------------------------------------------
    def _check_fitted(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "support_vectors_")

    def _ovo(self, X):
        """The one-vs-one decision values (n_samples, n_pairs); lazy for dask X."""
        self._check_fitted()
        X = check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but CascadeSVC is expecting "
                             f"{self.n_features_in_} features as input")
        kern = {"kernel": self.kernel, "gamma": self._gamma, "degree": int(self.degree),
                "coef0": float(self.coef0)}
        model = (self._sv, self._pair_coef, self.intercept_, kern)
        if is_dask(X):
            import dask

            m = dask.delayed(model, pure=True, traverse=False)
            return X.map_blocks(_block_decision, m, chunks=(X.chunks[0], (len(self.intercept_),)),
                                dtype=np.float64, meta=np.empty((0, 0)))
        return _block_decision(X, model)

    def decision_function(self, X):
        """Decision values; lazy for dask X.

        Two classes: shape (n_samples,), positive towards ``classes_[1]``. More:
        (n_samples, n_classes * (n_classes - 1) / 2) for ``"ovo"`` (pair (i, j)
        positive towards class i), (n_samples, n_classes) for ``"ovr"``
        (scikit-learn's transform of the one-vs-one votes and confidences).
        """
        dec = self._ovo(X)
        K = len(self.classes_)
        if K == 2:
            return dec[:, 0]
        if self.decision_function_shape == "ovo":
            return dec
        if is_dask(dec):
            return dec.map_blocks(_ovr_shape, K, chunks=(dec.chunks[0], (K,)), dtype=np.float64)
        return _ovr_shape(dec, K)

    def predict(self, X):
        """Labels (one-vs-one votes, ties to the first class, as LIBSVM); lazy for dask X."""
        dec = self._ovo(X)
        classes = self.classes_
        K = len(classes)

        def labels(d):
            if K == 2:
                return classes[(d[:, 0] > 0).astype(int)]
            return classes[np.argmax(_votes(d, K), axis=1)]

        if is_dask(dec):
            return dec.map_blocks(labels, drop_axis=1, dtype=classes.dtype)
        return labels(dec)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against y, optionally weighted.

        Returns
        -------
        float or dask array
            A float for in-memory input; a lazy 0-d dask array when X, y or
            ``sample_weight`` is a dask array (``float(score)`` or
            ``score.compute()`` computes it).
        """
        return accuracy(self.predict(X), y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
