"""The binary linear SVM estimator."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..parallel.client import fit_client, worker_addresses
from ._base import (
    LinearSVMBase,
    class_weight_per_class,
    encode_labels,
    is_dask,
    row_weights,
    set_init_params,
)

__all__ = ["NEWTON_ROWS_PER_COLUMN", "NEWTON_SCALE", "LinearSVC", "auto_solver"]

#: ``solver="auto"`` runs Newton for the squared hinge from this many rows per column on
#: (sparse X, several workers, or badly scaled rows)
NEWTON_ROWS_PER_COLUMN = 10
#: ...and on one worker when ``C * max ||x_i||^2`` exceeds this (dual coordinate ascent
#: crawls on such rows)
NEWTON_SCALE = 1e4


def auto_solver(loss, n_rows, n_columns, *, n_workers, dense=False, scale=None):
    """The solver ``LinearSVC(solver="auto")`` runs on an ``n_rows x n_columns`` X
    over ``n_workers`` dask workers; ``scale`` is ``C * max_i ||x_i||^2`` (None when
    not needed: several workers).

    ``"newton"`` when the loss is the squared hinge, X is sparse,
    ``n_rows >= NEWTON_ROWS_PER_COLUMN * n_columns`` and either the blocks lie on
    several workers or ``scale`` is above ``NEWTON_SCALE``; else
    ``"cocoa"``; ``"sgd"`` is never chosen (its certificate closes
    slowly). Several workers: LIBLINEAR's advice (the primal for many rows and few
    columns, the dual otherwise) with the threshold measured here. CoCoA+'s workers
    share nothing during a round (Jacobi), Newton's rounds do not grow with the
    workers: on 2 processes (``benchmarks/results/linear.md``, tol 1e-4, C = 1)
    Newton fitted a9a (d = 123) and w8a (d = 300) in 1.4-1.6 s where CoCoA+ took
    7.6-13.6 s (547 rounds, and 1,000 without reaching tol). One worker, whose
    threads share one w and run many passes a round (``local_passes="auto"``):
    CoCoA+, which fitted a9a and w8a at the defaults (tol 1e-3, C in {0.1, 1}) in
    0.20-0.55 s where Newton took 0.61-1.10 s (``benchmarks/results/auto.md``, one
    process of two threads), and mr_tfidf (7,108 x 7,727) and news20 (comp.* against
    the rest, 11,314 x 47,525) in 0.13-0.42 s against 0.14-0.62 s. The hinge has no
    Newton method (not twice differentiable): CoCoA+. Dense X (``dense=True``), such
    as random features, goes to CoCoA+, which has dense kernels while Newton reads
    CSR: on skin_nonskin's 196,045 rows of 100 random Fourier features, at tol 0.5,
    Newton took 23.7-31.9 s (199 rounds) where CoCoA+ took 2.1-3.5 s (3 rounds), in
    exploratory fits on a loaded machine. Badly scaled rows on one worker: at the
    defaults CoCoA+ converged on w8a (``C * max ||x||^2`` = 114, 14 rounds) and
    higgs7k (330, 12 rounds) but not on raw magic04 (5.1e5: 1,000 rounds, gap 0.43,
    50 s), which Newton fits in 73 rounds, 0.67 s (``bench_defaults.py``, 1 process
    x 2 threads). On one worker the fit computes ``scale`` first (for dask input one
    small task per row chunk).
    """
    if loss != "squared_hinge" or dense or n_rows < NEWTON_ROWS_PER_COLUMN * n_columns:
        return "cocoa"
    if n_workers > 1 or (scale is not None and scale > NEWTON_SCALE):
        return "newton"
    return "cocoa"


def _max_sq_norm(b):
    """``[max_i ||x_i||^2]`` of one block of rows (scipy sparse or numpy)."""
    if sp.issparse(b):
        sq = np.asarray(sp.csr_matrix(b).power(2).sum(axis=1)).ravel()
    else:
        a = np.asarray(b, dtype=np.float64)
        sq = np.einsum("ij,ij->i", a, a)
    return np.array([float(sq.max()) if sq.size else 0.0])


def _scale(X, C, client):
    """``C * max_i ||x_i||^2`` of X (for a dask array one small task per row chunk)."""
    if not hasattr(X, "dask"):
        return float(C) * float(_max_sq_norm(X)[0])
    X = X.rechunk({1: -1})
    per_chunk = X.map_blocks(_max_sq_norm, dtype=np.float64, drop_axis=1,
                             chunks=((1,) * X.numblocks[0],))
    return float(C) * float(client.compute(per_chunk.max()).result())


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
    solver : {"auto", "cocoa", "sgd", "newton"}
        ``"cocoa"``: CoCoA+ (local dual coordinate ascent per block, one
        all-reduce per round; see :class:`dasksvm.solvers.cocoa.CoCoA`).
        ``"sgd"``: the primal all-reduce subgradient method
        (:class:`dasksvm.solvers.sgd.SGD`). ``"newton"``: trust-region
        Newton, squared hinge only (:class:`dasksvm.solvers.newton.Newton`,
        at its default ``cg_tol`` and preconditioner). ``"auto"`` (default):
        :func:`auto_solver` picks, from the loss, the shape of X and the
        cluster, ``"newton"`` for the squared hinge on sparse data with at
        least ``NEWTON_ROWS_PER_COLUMN`` = 10 rows per column on several
        workers, else ``"cocoa"``;
        ``solver_`` says which ran. A parameter of another solver than the
        one that runs must keep its default (else a ValueError; with
        ``"auto"``, every solver's own parameters keep their defaults).
    fit_intercept : bool
    intercept_scaling : float > 0
    tol : float > 0
        Stop when the relative duality gap (P - D) / |P| <= tol.
    max_iter : int >= 1
        Rounds (cocoa, newton) or steps (sgd); a ConvergenceWarning is issued when
        they end before ``tol``.
    local_passes : "auto" or float > 0
        cocoa: coordinate passes per block per round over its rows (those
        shrinking keeps; at least all its rows in steps with one worker, a
        quarter of them with several; with shrinking and one worker, the passes
        over all of its kept rows stop early once they settle).
        ``"auto"`` (the default): with one worker, whose threads share one w,
        about 4 x 10^6 non-zeros of steps per block a round (4 x 10^6 // the
        largest block's non-zeros, 1 to 32 passes: a round's dask overhead is
        ~10-15 ms, and more passes a round mean fewer rounds there); with
        several workers 1 pass (their blocks combine as CoCoA+ parts, where
        more local passes took as many rounds or more).
    aggregation : {"add", "average", "exact", "momentum"}
        cocoa, how the K workers' changes combine: CoCoA+ adding followed by
        the exact step along the last step taken (``"momentum"``, the
        default: on 2 and 4 worker processes it took 2-3x fewer rounds than
        adding, ``benchmarks/results/rounds_between.md``), CoCoA+ adding
        (gamma = 1, sigma' = K), CoCoA averaging (gamma = 1/K, sigma' = 1),
        or the exact step (local passes at sigma' = 1, then the step along
        the summed change that maximizes the dual; formulations.md 1c). One
        worker: all the same.
    shrinking : bool
        cocoa: leave out of a round's local passes the rows whose dual variable
        sits at a bound that the gradient at the round's w pushes it against
        by more than the largest violation of the last round (LIBLINEAR's rule,
        decided afresh every round from the certificate's margins). The
        certificate always sees every row, so the answer does not depend on it.
    share : {"worker", "host"}
        cocoa, what shares one view of w while the steps run: the blocks of one
        worker (its threads, the default), or those of every worker process of a
        host, through one file of ``/dev/shm`` that each maps (checked when the fit
        starts; where it cannot be, the workers stay apart). The processes of a host
        then step as one worker's threads do and count as one part of
        ``aggregation``; nothing else changes, since every block still sends its
        own exact change. After a lost worker the fit goes on with the workers
        apart.
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
    warm_start : bool
        Start a fit from the previous fit's final model and dual variables when
        only ``C``, ``tol``, ``max_iter``, ``verbose`` or ``callback`` changed
        (same data, blocking, intercept, class and sample weights, loss and solver):
        the duals are scaled by C / C_old, which keeps them feasible, and the
        model is recomputed from them, so the certificate is exact; ``"newton"`` starts
        from the previous w (TRON restarts there); ``"sgd"`` has no warm start
        (``warm_start=True`` with it is a ValueError). Otherwise
        the fit starts cold with a UserWarning naming what differs. The rows are
        dealt over the blocks with the previous fit's seed unless
        ``random_state`` is an int. The state is kept in memory only (not a
        parameter, not in model files). See :func:`dasksvm.C_path`.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the positive class.
    solver_ : str
        The solver that ran (``solver``, or what ``"auto"`` chose).
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

    _auto: ClassVar[dict] = {"auto": ("cocoa", "newton")}

    def __init__(
        self,
        C=1.0,
        *,
        loss="squared_hinge",
        solver="auto",
        fit_intercept=True,
        intercept_scaling=1.0,
        tol=1e-3,
        max_iter=1000,
        local_passes="auto",
        aggregation="momentum",
        shrinking=True,
        share="worker",
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
        warm_start=False,
    ):
        set_init_params(self, locals())

    def _pick_solver(self, X):
        name = self.solver
        if name == "auto":
            dense = not sp.issparse(getattr(X, "_meta", X))  # a dask array's block type
            with fit_client(self.client) as client:
                n_workers = len(worker_addresses(client))
                # the rows' scale decides only between the two on one worker
                tall = X.shape[0] >= NEWTON_ROWS_PER_COLUMN * X.shape[1]
                scale = _scale(X, self.C, client) if (
                    n_workers == 1 and self.loss == "squared_hinge" and not dense and tall
                ) else None
            name = auto_solver(self.loss, X.shape[0], X.shape[1], n_workers=n_workers,
                               dense=dense, scale=scale)
        self.solver_ = name
        return name

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
        cw = class_weight_per_class(self.class_weight, classes, y)
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
