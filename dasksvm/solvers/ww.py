"""Weston-Watkins multiclass SVM, distributed over pairs of class bundles.

formulations.md section 2a; the parallel schedule of Alber, Zimmert, Dogan and
Kloft (PLOS ONE 2017). See :func:`solve_ww`.

Weight blocks. The weight vectors of bundle ``p``'s classes travel as one
object, either a dense C-ordered array of shape ``(d, n_classes_in_p)``
(classes along the fast axis, the layout the kernels want) or, in the sparse
layout, a CSR matrix of shape ``(n_classes_in_p, d)`` of which a task
densifies only the columns its rows touch.
"""

from __future__ import annotations

import operator
import time

import numpy as np
import scipy.sparse as sp

from ..kernels.ww import ww_cd_pass, ww_hinge_sums, ww_own_scores
from ..parallel.reduce import new_token
from ..parallel.schedule import one_factorization
from ..parallel.shuffle import shuffle_by_class
from .result import History, SolverResult, relative_gap, warn_not_converged

__all__ = ["solve_ww"]

#: Largest dense weight slab (bytes) one primal-evaluation task builds at once.
_TASK_BYTES = 256 * 2**20
#: ``pair_sweeps="auto"`` alternates this often when the pair's weights are small...
_AUTO_SWEEPS = 2
#: ...that is, when the two dense weight blocks together take at most this many bytes.
_AUTO_SWEEPS_BYTES = 16 * 2**20


# ---------------------------------------------------------------------------------------
# weight blocks
# ---------------------------------------------------------------------------------------


def _w_nbytes(W):
    if sp.issparse(W):
        return int(W.data.nbytes + W.indices.nbytes + W.indptr.nbytes)
    return int(W.nbytes)


def _w_zeros(n_classes, n_columns, sparse):
    if sparse:
        return sp.csr_matrix((n_classes, n_columns), dtype=np.float64)
    return np.zeros((n_columns, n_classes))


def _w_load(W, cols, out):
    """Write the block's weight vectors, restricted to ``cols`` (sparse layout), into ``out``.

    ``out`` has shape ``(m, n_classes_in_block)``: the columns of ``out`` are the classes.
    """
    if sp.issparse(W):
        out[:] = W[:, cols].toarray().T
    else:
        out[:] = W


def _w_store(W, cols, new):
    """The block ``W`` with its values on ``cols`` replaced by ``new`` (``(m, n_classes)``)."""
    if not sp.issparse(W):
        return np.ascontiguousarray(new)
    if len(cols) == 0:
        return W
    n, d = W.shape
    keep = np.ones(d, dtype=bool)
    keep[cols] = False
    old = W.tocoo()
    m = keep[old.col]
    c, r = np.nonzero(new)  # new is (m, n): row index = local column, column = class
    rows = np.concatenate([old.row[m], r]).astype(np.int64)
    cc = np.concatenate([old.col[m], cols[c]]).astype(np.int64)
    vals = np.concatenate([old.data[m], new[c, r]])
    out = sp.csr_matrix((vals, (rows, cc)), shape=(n, d))
    out.sort_indices()
    if out.nnz < 2**31 - 1:
        out.indices = out.indices.astype(np.int32)
        out.indptr = out.indptr.astype(np.int32)
    return out


def _w_dense_t(W, cols):
    """``(m, n_classes)`` dense C-ordered weights of a block (``cols`` in the sparse layout)."""
    if sp.issparse(W):
        return np.ascontiguousarray(W[:, cols].toarray().T)
    return np.ascontiguousarray(W)


def _w_sqnorm(W):
    v = W.data if sp.issparse(W) else W.ravel()
    return float(np.dot(v, v))


# ---------------------------------------------------------------------------------------
# dual variables of a bundle: one CSR matrix (n_rows_in_bundle, K), classes in bundle order
# ---------------------------------------------------------------------------------------


def _alpha_zeros(bundle, n_classes):
    return sp.csr_matrix((bundle.n_rows, n_classes), dtype=np.float64), 0


def _alpha_take(M, ranges):
    """Columns ``lo:hi`` of every range, side by side, as a CSR triple."""
    idx = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
    sub = M[:, idx].tocsr()
    return sub.indptr.astype(np.int64), sub.indices.astype(np.int32), sub.data


def _alpha_put(M, ranges, indptr, indices, data):
    """``M`` with the columns of ``ranges`` replaced by the CSR triple (local columns)."""
    idx = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
    keep = np.ones(M.shape[1], dtype=bool)
    keep[idx] = False
    old = M.tocoo()
    m = keep[old.col]
    rows = np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(indptr))
    out = sp.csr_matrix(
        (np.concatenate([old.data[m], data]),
         (np.concatenate([old.row[m].astype(np.int64), rows]),
          np.concatenate([old.col[m].astype(np.int64), idx[indices]]))),
        shape=M.shape,
    )
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------------------
# tasks (run on the workers)
# ---------------------------------------------------------------------------------------


def _rows_view(bundle, sparse):
    X = bundle.X
    return X.indptr, (bundle.local_indices if sparse else X.indices), X.data


def _full(n, v):
    return np.full(n, v, dtype=np.int64)


def _n_cls(W, sparse):
    return W.shape[0] if sparse else W.shape[1]


def _ww_link(bundle, alpha, Wpair, own_first, ranges, C, part_seed, link, n_links, seed,
             passes, sparse):
    """One link of a cross-worker pair chain (runs on the bundle's worker).

    Bundle ``p`` is the pair's first bundle when ``own_first``. Visits the
    ``link``-th of ``n_links`` random parts of the bundle's rows (parts fixed
    by ``part_seed``) and, for each, all its variables against the classes of
    both bundles of the pair (intra-bundle pairs included). ``Wpair`` holds
    the pair's two weight blocks, in pair order; only they may have come
    from another worker.

    Returns ``((W_a, W_b), (alpha, moved))``.
    """
    M, moved_before = alpha
    W_a, W_b = Wpair
    na, nb = _n_cls(W_a, sparse), _n_cls(W_b, sparse)
    n = bundle.n_rows
    cols = bundle.cols if sparse else None
    m = len(cols) if sparse else W_a.shape[0]
    Wt = np.empty((m, na + nb))
    _w_load(W_a, cols, Wt[:, :na])
    _w_load(W_b, cols, Wt[:, na:])
    if n_links > 1:
        rows = np.array_split(np.random.default_rng(part_seed).permutation(n), n_links)[link]
    else:
        rows = np.arange(n)
    own = bundle.label + (0 if own_first else na)
    s_indptr, s_indices, s_data = _alpha_take(M, ranges)
    indptr, indices, data = _rows_view(bundle, sparse)
    r_indptr, r_indices, r_data, _, moved = ww_cd_pass(
        indptr, indices, data, bundle.sqnorm, own, _full(n, 0), _full(n, na + nb), own,
        C * bundle.weight, Wt, s_indptr, s_indices, s_data, rows.astype(np.int64), seed,
        passes,
    )
    new_a = _w_store(W_a, cols, Wt[:, :na])
    new_b = _w_store(W_b, cols, Wt[:, na:])
    return (new_a, new_b), (_alpha_put(M, ranges, r_indptr, r_indices, r_data),
                            moved_before + moved)


def _ww_joint(bundle_a, bundle_b, alpha_a, alpha_b, W_a, W_b, ranges, C, seed, passes,
              sparse):
    """A pair whose two bundles share a worker: all the variables of both bundles' rows
    against the pair's classes, in one random order over the rows of both.

    Returns ``(W_a, W_b, (alpha_a, moved), (alpha_b, moved))``.
    """
    (Ma, mva), (Mb, mvb) = alpha_a, alpha_b
    na, nb = _n_cls(W_a, sparse), _n_cls(W_b, sparse)
    n1, n2 = bundle_a.n_rows, bundle_b.n_rows
    X = sp.vstack([bundle_a.X, bundle_b.X], format="csr")
    if sparse:
        cols = np.union1d(bundle_a.cols, bundle_b.cols)
        indices = np.searchsorted(cols, X.indices).astype(np.int32)
        m = len(cols)
    else:
        cols = None
        indices = X.indices
        m = W_a.shape[0]
    Wt = np.empty((m, na + nb))
    _w_load(W_a, cols, Wt[:, :na])
    _w_load(W_b, cols, Wt[:, na:])
    n = n1 + n2
    own = np.concatenate([bundle_a.label, na + bundle_b.label]).astype(np.int64)
    ia, xa, da = _alpha_take(Ma, ranges)
    ib, xb, db = _alpha_take(Mb, ranges)
    r_indptr, r_indices, r_data, _, moved = ww_cd_pass(
        X.indptr, indices, X.data, np.concatenate([bundle_a.sqnorm, bundle_b.sqnorm]), own,
        _full(n, 0), _full(n, na + nb), own,
        C * np.concatenate([bundle_a.weight, bundle_b.weight]), Wt,
        np.concatenate([ia, ib[1:] + ia[-1]]), np.concatenate([xa, xb]),
        np.concatenate([da, db]), np.arange(n, dtype=np.int64), seed, passes,
    )
    cut = r_indptr[n1]
    new_ma = _alpha_put(Ma, ranges, r_indptr[: n1 + 1], r_indices[:cut], r_data[:cut])
    new_mb = _alpha_put(Mb, ranges, r_indptr[n1:] - cut, r_indices[cut:], r_data[cut:])
    # attribute the moves to bundle a (only the total over bundles is reported)
    return (_w_store(W_a, cols, Wt[:, :na]), _w_store(W_b, cols, Wt[:, na:]),
            (new_ma, mva + moved), (new_mb, mvb))


def _ww_solo(bundle, alpha, W, ranges, C, seed, passes, sparse):
    """All the variables of one bundle when it is the only one (``n_bundles=1``).

    Returns ``(W, (alpha, moved))``.
    """
    M, moved_before = alpha
    na = _n_cls(W, sparse)
    n = bundle.n_rows
    cols = bundle.cols if sparse else None
    Wt = _w_dense_t(W, cols)
    if not sparse:
        Wt = Wt.copy()  # inputs are never mutated
    s_indptr, s_indices, s_data = _alpha_take(M, ranges)
    indptr, indices, data = _rows_view(bundle, sparse)
    r_indptr, r_indices, r_data, _, moved = ww_cd_pass(
        indptr, indices, data, bundle.sqnorm, bundle.label, _full(n, 0), _full(n, na),
        bundle.label, C * bundle.weight, Wt, s_indptr, s_indices, s_data,
        np.arange(n, dtype=np.int64), seed, passes,
    )
    return _w_store(W, cols, Wt), (_alpha_put(M, ranges, r_indptr, r_indices, r_data),
                                   moved_before + moved)


def _ww_certify(bundle, alpha, W_own, sparse, own_index, targets, stats, *Ws):
    """One bundle's share of the certificate (runs on the bundle's worker).

    ``hinge`` = ``sum_i weight_i sum_c max(0, 1 - (w_{y_i} - w_c).x_i)`` over
    the classes of the blocks ``Ws`` (``targets[j]`` is the bundle of
    ``Ws[j]``; the row's own class is skipped). With ``stats`` also the
    bundle's ``sum_c ||w_c||^2``, the size of its weight block, and the sum,
    non-zeros and cumulative moves of its dual variables.
    """
    out = {"hinge": 0.0}
    if stats:
        M, moved = alpha
        out.update(sq=_w_sqnorm(W_own), nbytes=_w_nbytes(W_own), alpha_sum=float(M.sum()),
                   alpha_nnz=int(M.nnz), moved=int(moved))
    if bundle.n_rows == 0:
        return out
    indptr, indices, data = _rows_view(bundle, sparse)
    cols = bundle.cols if sparse else None
    own = ww_own_scores(indptr, indices, data, bundle.label, _w_dense_t(W_own, cols))
    total = np.zeros(bundle.n_rows)
    for q, Wq in zip(targets, Ws, strict=True):
        total += ww_hinge_sums(indptr, indices, data, own, bundle.label, _w_dense_t(Wq, cols),
                               q == own_index)
    out["hinge"] = float(np.dot(bundle.weight, total))
    return out


def _bundle_rows(bundle):
    return bundle.rows


# ---------------------------------------------------------------------------------------
# the solver
# ---------------------------------------------------------------------------------------


def _seed_source(random_state):
    if isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(0, 2**31 - 1))
    rng = np.random.default_rng(random_state)
    return lambda: int(rng.integers(0, 2**31 - 1))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_params(C, tol, max_iter, inner_passes, n_bundles, n_classes, pair_sweeps):
    if not isinstance(C, (int, float, np.number)) or not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a positive finite number, got {C!r}")
    if not isinstance(tol, (int, float, np.number)) or not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    for name, v in (("max_iter", max_iter), ("inner_passes", inner_passes)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not _is_int(n_classes) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if pair_sweeps != "auto" and (not _is_int(pair_sweeps) or pair_sweeps < 1):
        raise ValueError(f"pair_sweeps must be 'auto' or an integer >= 1, got {pair_sweeps!r}")
    if n_bundles is not None:
        if not _is_int(n_bundles) or n_bundles < 1:
            raise ValueError(f"n_bundles must be an integer >= 1, got {n_bundles!r}")
        if n_bundles > n_classes:
            raise ValueError(
                f"n_bundles={n_bundles} is larger than n_classes={n_classes}: every bundle "
                f"needs at least one class; pass n_bundles <= {n_classes} (or None for "
                "min(2 * n_workers, n_classes))"
            )


def solve_ww(
    blocks,
    n_classes,
    *,
    C=1.0,
    tol=1e-3,
    max_iter=1000,
    n_bundles=None,
    inner_passes=1,
    pair_sweeps="auto",
    random_state=None,
    verbose=0,
    key_prefix="ww",
    sparse_coef=None,
    max_dense_bytes=2**30,
    return_dual=False,
):
    """Weston-Watkins multiclass linear SVM by dual coordinate ascent over class pairs.

    Solves (formulations.md, section 2a), with ``C_i = C * weight_i``::

        min_W  P(W) = 1/2 sum_c ||w_c||^2
                      + sum_i C_i sum_{c != y_i} max(0, 1 - (w_{y_i} - w_c).x_i)

    through its dual over ``alpha_{i,c}`` in ``[0, C_i]`` (``c != y_i``),
    ``D(alpha) = sum alpha - 1/2 sum_c ||w_c(alpha)||^2``, with
    ``w_c = sum_{y_i = c} (sum_{c'} alpha_{i,c'}) x_i - sum_{y_i != c} alpha_{i,c} x_i``,
    by exact coordinate steps on single ``alpha_{i,c}`` (each touches
    ``w_{y_i}`` and ``w_c`` only).

    **Layout.** The rows are grouped once by class into ``B = n_bundles``
    bundles of whole classes (:func:`~dasksvm.parallel.shuffle.shuffle_by_class`:
    classes balanced by row count, bundles balanced over workers; examples
    cross the network once, never through the client). Bundle ``p`` keeps on
    its worker its rows and their dual variables (a CSR matrix
    ``(n_rows_p, K)`` of the non-zero ``alpha``). The weight block ``W_p``
    (the ``w_c`` of ``p``'s classes) is the only thing that moves between
    workers.

    **One epoch** = the rounds of :func:`~dasksvm.parallel.schedule.one_factorization`
    ``(B)`` (``B - 1`` rounds, or ``B`` with a bye when ``B`` is odd). A
    round holds disjoint bundle pairs ``{a, b}``, which run in parallel. The
    task(s) of pair ``{a, b}`` update every variable ``alpha_{i,c}`` with
    ``y_i`` in ``a`` or ``b`` and ``c`` in ``a`` or ``b``: the class pairs
    across the two bundles and, as they touch ``W_a`` or ``W_b`` only, the
    pairs inside each bundle too (so a bundle's intra-bundle variables are
    visited in each of its ``B - 1`` rounds, which converged faster in our
    runs than a separate intra-bundle round; with ``B = 1`` an epoch is one
    task over all variables). Every cross pair is visited once per epoch,
    each time ``inner_passes`` times:

    - when ``a`` and ``b`` live on the same worker, one *joint* task runs the
      passes over the rows of both bundles in one random order;
    - otherwise the pair is a *chain* of ``2 * S`` tasks (``S`` =
      ``pair_sweeps``): the rows of each bundle are cut into ``S`` random
      parts and the chain alternates between the two workers, each link
      running the passes over one part of its own rows and handing the
      updated ``(W_a, W_b)`` to the next link. Rows stay; weights travel.
      Alternating often matters: ``a``'s rows and ``b``'s rows pull
      ``w_a - w_b`` in opposite directions, and solving one side against the
      other frozen converges slowly (block Gauss-Seidel).

    Every update is applied to the one current copy of the weight blocks it
    touches, so ``W`` always equals ``W(alpha)`` and the algorithm is serial
    dual coordinate ascent in a particular order: the iterates depend on
    ``random_state``, ``B``, ``inner_passes``, ``pair_sweeps`` and on which
    bundles share a worker, never on timing.

    **What a round communicates.** A chained pair moves ``(W_a, W_b)``
    between its two workers once per link after the first (``2S - 1``
    times), plus once if they arrive from another worker; a joint pair moves
    them only if they arrive from elsewhere. No example and no dual
    variable ever moves. Task keys: ``f"{key_prefix}-r{round}-b{a}-b{b}-h{link}-{token}"``
    (``link = 1..2S``) for chains, ``f"{key_prefix}-r{round}-b{a}-b{b}-j-{token}"``
    for joint pair tasks (``a < b``), ``f"{key_prefix}-r{round}-b0-b0-{token}"``
    when ``B = 1`` (``round`` counts from 0 over the fit), each followed by
    small ``getitem`` tasks (``...-w``, ``-w0``, ``-w1``, ``-alpha``) on the
    same worker; ``f"{key_prefix}-certify-e{epoch}-p{p}-g{g}-{token}"`` for
    the certificate and ``f"{key_prefix}-shuffle-..."`` for the shuffle.

    **Stopping rule.** After every epoch one task per bundle (more when the
    weights are large), on the bundle's worker, returns its rows' hinge sums
    against all classes, its ``sum_c ||w_c||^2`` and its ``sum alpha``; the
    weight blocks travel to it (at most 256 MiB of densified weights per
    task). The run stops when ``(P - D) / |P| <= tol``, which certifies
    ``P(coef) - P* <= P - D``. After ``max_iter`` epochs without that, a
    ``ConvergenceWarning`` is emitted.

    Parameters
    ----------
    blocks : BlockSet
        The rows; ``y`` must hold the class index ``0..n_classes-1`` (as
        float). Append the intercept column when building the blocks if one
        is wanted (it is then regularized like any weight).
    n_classes : int >= 2
        ``K``. Classes without rows are allowed (their ``w_c`` is still fitted).
    C : float > 0
    tol : float > 0
        Relative duality gap to stop at.
    max_iter : int >= 1
        Maximum number of epochs.
    n_bundles : int, optional
        ``B``, ``1 <= B <= n_classes`` (a larger value raises ``ValueError``).
        Default ``min(2 * n_workers, n_classes)``; a round runs
        ``floor(B / 2)`` pairs in parallel.
    inner_passes : int >= 1
        Coordinate passes over its variables per task. With ``B = 1`` each
        pass is a full pass of single-machine dual coordinate descent; with
        ``B > 1`` extra passes help little (the rounds' blocks are coupled).
    pair_sweeps : int >= 1 or "auto"
        ``S`` above. ``"auto"``: 2 when the two largest weight blocks take at
        most 16 MiB dense, else 1 (each alternation moves the blocks).
    random_state : int, numpy Generator / RandomState or None
        Seeds the row orders; a fixed value makes the fit reproducible.
    verbose : int
        Print one line per epoch when > 0.
    key_prefix : str
    sparse_coef : bool, optional
        Keep every weight block as a CSR matrix instead of a dense array.
        Default: sparse when ``n_classes * n_columns * 8 > max_dense_bytes``.
        In the sparse layout a task densifies only the columns its rows touch
        (``(n_classes_in_a + n_classes_in_b) * n_cols_touched * 8`` bytes), no
        ``K x d`` dense matrix is ever built, and ``coef`` is CSR.
    max_dense_bytes : int
        Threshold of the automatic ``sparse_coef`` choice (default 1 GiB).
    return_dual : bool
        Also gather the dual variables into ``state["alpha"]``, a dense
        ``(n_samples, n_classes)`` array (``alpha[i, y_i] = 0``); for tests and
        small problems only.

    Returns
    -------
    SolverResult
        ``coef`` of shape ``(n_classes, blocks.n_columns)`` (ndarray, or CSR
        with ``sparse_coef``); ``primal``, ``dual``, ``gap``, ``rel_gap`` of
        the last epoch; ``n_iter`` epochs; ``history``, one record per epoch
        (``round`` = epoch; ``n_tasks`` = tasks submitted in the epoch,
        certificate included; ``bytes`` = weight-block bytes that crossed
        between workers, sizes of sparse blocks as of the previous epoch's
        end; plus ``epoch_time``, ``n_moved`` = coordinate steps that changed
        a variable, ``nnz_alpha``); ``state`` with ``classes`` (the classes of
        each bundle), ``workers``, ``n_bundles``, ``pair_sweeps``,
        ``shuffle_bytes`` (example bytes the shuffle moved), ``sparse_coef``
        and, with ``return_dual``, ``alpha``.

    Notes
    -----
    Memory per worker: its bundles' rows; their dual variables (non-zeros
    only: 12 bytes each plus 8 per row); the weight blocks in flight. A
    dense-layout pair task holds a ``d x (n_classes_in_a + n_classes_in_b)``
    float64 slab plus its two inputs; a certificate task up to 256 MiB of
    densified weights at a time. Tasks are pinned to their bundle's worker
    (``allow_other_workers=False``) so that rows never move: a fit does not
    survive the loss of a worker.

    Dual coordinate ascent needs many passes for a small gap on
    ill-conditioned data: on ``dna`` (C = 0.1) about 280 passes reach a
    relative gap of 1e-4 on one machine, and the distributed schedule takes
    somewhat more epochs than that (the blocks of a round are solved against
    frozen others). For small problems the epochs are latency-bound (about
    ``2 * (B - 1) * S`` sequential task hops each).
    """
    _check_params(C, tol, max_iter, inner_passes, n_bundles, n_classes, pair_sweeps)
    K = int(n_classes)
    C = float(C)
    client = blocks.client
    d = int(blocks.n_columns)
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    B = int(n_bundles) if n_bundles is not None else max(1, min(2 * n_workers, K))
    sparse = bool(sparse_coef) if sparse_coef is not None else K * d * 8 > max_dense_bytes
    next_seed = _seed_source(random_state)
    history = History(verbose=verbose, name="solve_ww")
    token = new_token()
    kp = key_prefix
    passes = int(inner_passes)

    bundles = shuffle_by_class(blocks, K, B, key_prefix=f"{kp}-shuffle")
    wk = bundles.workers
    ncls = [len(c) for c in bundles.classes]
    offs = np.concatenate([[0], np.cumsum(ncls)]).astype(np.int64)
    rng_of = [(int(offs[p]), int(offs[p + 1])) for p in range(B)]
    if pair_sweeps == "auto":
        biggest = sorted(ncls)[-2:]
        sweeps = _AUTO_SWEEPS if sum(biggest) * d * 8 <= _AUTO_SWEEPS_BYTES else 1
    else:
        sweeps = int(pair_sweeps)

    def submit(func, *args, key, where):
        return client.submit(func, *args, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    def pick(fut, i, key, where):
        return client.submit(operator.getitem, fut, i, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    # state: weight blocks (future, worker, bytes) and dual variables (future, on wk[p])
    W = [submit(_w_zeros, ncls[p], d, sparse, key=f"{kp}-init-w-p{p}", where=wk[p])
         for p in range(B)]
    wloc = list(wk)
    wsize = [(ncls[p] + 1) * 4 if sparse else ncls[p] * d * 8 for p in range(B)]
    alpha = [submit(_alpha_zeros, bundles.futures[p], K, key=f"{kp}-init-alpha-p{p}",
                    where=wk[p]) for p in range(B)]
    moved_before = 0
    schedule = [rnd for rnd in one_factorization(B) if rnd]
    transfers = []  # bytes of the weight blocks that crossed between workers this epoch

    def move(p, where):
        if wloc[p] != where:
            transfers.append(wsize[p])
            wloc[p] = where

    rnd_no = 0
    converged = False
    primal = dual = np.nan
    epoch = 0
    for epoch in range(1, max_iter + 1):
        t_epoch = time.perf_counter()
        n_tasks = 0
        transfers.clear()
        if B == 1:
            base = f"{kp}-r{rnd_no}-b0-b0"
            fut = submit(_ww_solo, bundles.futures[0], alpha[0], W[0], [rng_of[0]], C,
                         next_seed(), passes, sparse, key=base, where=wk[0])
            W[0] = pick(fut, 0, f"{base}-w0", wk[0])
            alpha[0] = pick(fut, 1, f"{base}-alpha", wk[0])
            n_tasks += 3
            rnd_no += 1
        for rnd in schedule:
            load = {}
            for a, b in rnd:
                base = f"{kp}-r{rnd_no}-b{a}-b{b}"
                ranges = [rng_of[a], rng_of[b]]
                if wk[a] == wk[b]:
                    where = wk[a]
                    move(a, where)
                    move(b, where)
                    fut = submit(_ww_joint, bundles.futures[a], bundles.futures[b], alpha[a],
                                 alpha[b], W[a], W[b], ranges, C, next_seed(), passes, sparse,
                                 key=f"{base}-j", where=where)
                    W[a] = pick(fut, 0, f"{base}-j-w0", where)
                    W[b] = pick(fut, 1, f"{base}-j-w1", where)
                    alpha[a] = pick(fut, 2, f"{base}-j-alpha0", where)
                    alpha[b] = pick(fut, 3, f"{base}-j-alpha1", where)
                    n_tasks += 5
                    continue
                # chain: start on the bundle whose worker has started fewer chains this round
                first, second = (a, b) if load.get(wk[a], 0) <= load.get(wk[b], 0) else (b, a)
                load[wk[first]] = load.get(wk[first], 0) + 1
                part_seed = {first: next_seed(), second: next_seed()}
                pair = [W[a], W[b]]
                link = 0
                for sweep in range(sweeps):
                    for p in (first, second):
                        link += 1
                        where = wk[p]
                        move(a, where)
                        move(b, where)
                        key = f"{base}-h{link}"
                        fut = submit(_ww_link, bundles.futures[p], alpha[p], pair, p == a,
                                     ranges, C, part_seed[p], sweep, sweeps, next_seed(),
                                     passes, sparse, key=key, where=where)
                        pair = pick(fut, 0, f"{key}-w", where)
                        alpha[p] = pick(fut, 1, f"{key}-alpha", where)
                        n_tasks += 3
                W[a] = pick(pair, 0, f"{base}-w0", wloc[a])
                W[b] = pick(pair, 1, f"{base}-w1", wloc[b])
                n_tasks += 2
            rnd_no += 1

        # certificate: one task per bundle (more when the weights are large), on its worker
        cert_f = []
        shipped = set()
        for p in range(B):
            groups, cur, cur_bytes = [], [], 0
            for q in range(B):
                nb = ncls[q] * (max(1, bundles.n_cols[p]) if sparse else d) * 8
                if cur and cur_bytes + nb > _TASK_BYTES:
                    groups.append(cur)
                    cur, cur_bytes = [], 0
                cur.append(q)
                cur_bytes += nb
            groups.append(cur)
            for g, grp in enumerate(groups):
                for q in {*grp, p}:
                    if wloc[q] != wk[p] and (q, wk[p]) not in shipped:
                        shipped.add((q, wk[p]))
                        transfers.append(wsize[q])
                cert_f.append(submit(_ww_certify, bundles.futures[p], alpha[p], W[p], sparse,
                                     p, grp, g == 0, *[W[q] for q in grp],
                                     key=f"{kp}-certify-e{epoch}-p{p}-g{g}", where=wk[p]))
                n_tasks += 1
        certs = client.gather(cert_f)
        del cert_f
        stats = [c for c in certs if "sq" in c]
        for p, st in enumerate(stats):
            wsize[p] = st["nbytes"]
        sq = sum(st["sq"] for st in stats)
        moved_total = sum(st["moved"] for st in stats)
        primal = 0.5 * sq + C * sum(c["hinge"] for c in certs)
        dual = sum(st["alpha_sum"] for st in stats) - 0.5 * sq
        history.add(epoch, primal, dual, n_tasks=n_tasks, nbytes=int(sum(transfers)),
                    epoch_time=time.perf_counter() - t_epoch,
                    n_moved=int(moved_total - moved_before),
                    nnz_alpha=int(sum(st["alpha_nnz"] for st in stats)))
        moved_before = moved_total
        if relative_gap(primal, dual) <= tol:
            converged = True
            break

    rel = relative_gap(primal, dual)
    if not converged:
        warn_not_converged("solve_ww", max_iter, rel, tol)

    # assemble coef on the client from the weight blocks (weights only, never rows)
    w_blocks = client.gather(W)
    order = np.concatenate(bundles.classes)
    if sparse:
        stacked = sp.vstack(w_blocks, format="csr")
        inv = np.empty(K, dtype=np.int64)
        inv[order] = np.arange(K)
        coef = stacked[inv]
    else:
        coef = np.empty((K, d))
        coef[order] = np.concatenate([w.T for w in w_blocks], axis=0)
    state = {
        "classes": [c.copy() for c in bundles.classes],
        "workers": list(wk),
        "n_bundles": B,
        "pair_sweeps": sweeps,
        "shuffle_bytes": bundles.nbytes_moved,
        "sparse_coef": sparse,
    }
    if return_dual:
        state["alpha"] = _gather_alpha(client, bundles, alpha, blocks.n_samples, K, token)
    del W, alpha
    bundles.release()
    return SolverResult(
        coef=coef,
        primal=float(primal),
        dual=float(dual),
        gap=float(primal - dual),
        rel_gap=float(rel),
        n_iter=epoch,
        converged=converged,
        history=history.records,
        state=state,
    )


def _gather_alpha(client, bundles, alpha, n_samples, K, token):
    """Dense ``(n_samples, K)`` dual variables (tests / small problems)."""
    rows = client.gather([
        client.submit(_bundle_rows, f, key=f"ww-alpha-rows-p{p}-{token}", pure=False)
        for p, f in enumerate(bundles.futures)
    ])
    mats = client.gather(alpha)
    order = np.concatenate(bundles.classes)
    out = np.zeros((n_samples, K))
    for r, (M, _) in zip(rows, mats, strict=True):
        out[np.ix_(r, order)] = M.toarray()
    return out
