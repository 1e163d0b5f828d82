"""Weston-Watkins multiclass SVM, distributed over pairs of class bundles.

formulations.md section 2a; the parallel schedule of Alber, Zimmert, Dogan and
Kloft (PLOS ONE 2017). See :func:`solve_ww`.
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

#: Largest dense weight block (bytes) one primal-evaluation task densifies at once.
_TASK_BYTES = 256 * 2**20


# ---------------------------------------------------------------------------------------
# weight blocks: dense (n_classes_in_bundle, d) ndarray, or CSR of the same shape
# ---------------------------------------------------------------------------------------


def _w_nbytes(W):
    if sp.issparse(W):
        return int(W.data.nbytes + W.indices.nbytes + W.indptr.nbytes)
    return int(W.nbytes)


def _w_zeros(n_classes, n_columns, sparse):
    if sparse:
        return sp.csr_matrix((n_classes, n_columns), dtype=np.float64)
    return np.zeros((n_classes, n_columns))


def _w_cols(W, cols):
    """Dense ``W[:, cols]`` (float64, C-ordered)."""
    return np.ascontiguousarray(W[:, cols].toarray(), dtype=np.float64)


def _w_write_cols(W, cols, block):
    """CSR ``W`` with the columns ``cols`` replaced by the dense ``block`` (zeros dropped)."""
    if len(cols) == 0:
        return W
    n, d = W.shape
    keep = np.ones(d, dtype=bool)
    keep[cols] = False
    old = W.tocoo()
    m = keep[old.col]
    r, c = np.nonzero(block)
    rows = np.concatenate([old.row[m], r]).astype(np.int64)
    cc = np.concatenate([old.col[m], cols[c]]).astype(np.int64)
    vals = np.concatenate([old.data[m], block[r, c]])
    out = sp.csr_matrix((vals, (rows, cc)), shape=(n, d))
    out.sort_indices()
    if out.nnz < 2**31 - 1:
        out.indices = out.indices.astype(np.int32)
        out.indptr = out.indptr.astype(np.int32)
    return out


def _w_sqnorm(W):
    v = W.data if sp.issparse(W) else W.ravel()
    return float(np.dot(v, v))


# ---------------------------------------------------------------------------------------
# tasks (run on the workers)
# ---------------------------------------------------------------------------------------


def _empty_segment(bundle):
    return (np.zeros(bundle.n_rows + 1, np.int64), np.zeros(0, np.int32), np.zeros(0))


def _rows_view(bundle, sparse):
    X = bundle.X
    return X.indptr, (bundle.local_indices if sparse else X.indices), X.data


def _ww_half(bundle, seg, W_own, W_tgt, C, seed, passes, sparse):
    """One half of a pair task: the rows of ``bundle`` against the partner's classes.

    Updates ``alpha_{i,c}`` for ``i`` in the bundle and ``c`` among the rows of
    ``W_tgt``, together with ``W_own`` and ``W_tgt``. Runs on the bundle's
    worker; only ``W_own`` and ``W_tgt`` may have come from elsewhere.

    Returns ``(W_own, W_tgt, segment, info)``.
    """
    na, nb = W_own.shape[0], W_tgt.shape[0]
    if sparse:
        cols = bundle.cols
        W = np.empty((na + nb, len(cols)))
        W[:na] = _w_cols(W_own, cols)
        W[na:] = _w_cols(W_tgt, cols)
    else:
        W = np.concatenate([W_own, W_tgt], axis=0)  # a copy: inputs are never mutated
    indptr, indices, data = _rows_view(bundle, sparse)
    s_indptr, s_indices, s_data, total, moved = ww_cd_pass(
        indptr, indices, data, bundle.sqnorm, bundle.label, C * bundle.weight, W,
        na, nb, False, seg[0], seg[1], seg[2], seed, passes,
    )
    if sparse:
        new_own = _w_write_cols(W_own, cols, W[:na])
        new_tgt = _w_write_cols(W_tgt, cols, W[na:])
    else:
        new_own, new_tgt = W[:na], W[na:]
    info = {"sum": total, "moved": moved, "nnz": int(s_data.shape[0]),
            "nb_own": _w_nbytes(new_own), "nb_tgt": _w_nbytes(new_tgt)}
    return new_own, new_tgt, (s_indptr, s_indices, s_data), info


def _ww_intra(bundle, seg, W_own, C, seed, passes, sparse):
    """The pairs of classes inside one bundle. Returns ``(W_own, segment, info)``."""
    na = W_own.shape[0]
    if sparse:
        cols = bundle.cols
        W = _w_cols(W_own, cols)
    else:
        W = np.array(W_own, copy=True)
    indptr, indices, data = _rows_view(bundle, sparse)
    s_indptr, s_indices, s_data, total, moved = ww_cd_pass(
        indptr, indices, data, bundle.sqnorm, bundle.label, C * bundle.weight, W,
        0, na, True, seg[0], seg[1], seg[2], seed, passes,
    )
    new_own = _w_write_cols(W_own, cols, W) if sparse else W
    info = {"sum": total, "moved": moved, "nnz": int(s_data.shape[0]),
            "nb_own": _w_nbytes(new_own)}
    return new_own, (s_indptr, s_indices, s_data), info


def _ww_hinge(bundle, W_own, sparse, own_index, targets, *Ws):
    """Weighted WW hinge sum of the bundle's rows against the classes of ``Ws``.

    ``targets[j]`` is the bundle index of ``Ws[j]``; the bundle's own class is
    skipped where ``targets[j] == own_index``. Returns ``sum_i weight_i * h_i``.
    """
    indptr, indices, data = _rows_view(bundle, sparse)
    if bundle.n_rows == 0:
        return 0.0
    Wo = _w_cols(W_own, bundle.cols) if sparse else W_own
    own = ww_own_scores(indptr, indices, data, bundle.label, Wo)
    total = np.zeros(bundle.n_rows)
    for q, Wq in zip(targets, Ws, strict=True):
        Wl = _w_cols(Wq, bundle.cols) if sparse else np.ascontiguousarray(Wq)
        total += ww_hinge_sums(indptr, indices, data, own, bundle.label, Wl, q == own_index)
    return float(np.dot(bundle.weight, total))


def _ww_sqnorm(W):
    return _w_sqnorm(W)


def _bundle_rows(bundle):
    return bundle.rows, bundle.n_rows


# ---------------------------------------------------------------------------------------
# the solver
# ---------------------------------------------------------------------------------------


def _seed_source(random_state):
    if isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(0, 2**31 - 1))
    rng = np.random.default_rng(random_state)
    return lambda: int(rng.integers(0, 2**31 - 1))


def _check_params(C, tol, max_iter, inner_passes, n_bundles, n_classes):
    if not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a positive finite number, got {C!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if int(inner_passes) != inner_passes or inner_passes < 1:
        raise ValueError(f"inner_passes must be an integer >= 1, got {inner_passes!r}")
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if n_bundles is not None:
        if int(n_bundles) != n_bundles or n_bundles < 1:
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
    ``w_c = sum_{y_i = c} (sum_{c'} alpha_{i,c'}) x_i - sum_{y_i != c} alpha_{i,c} x_i``.

    **Layout.** The rows are grouped once by class into ``B = n_bundles``
    bundles of whole classes (:func:`~dasksvm.parallel.shuffle.shuffle_by_class`:
    classes balanced by row count, bundles balanced over workers; examples
    cross the network once, never through the client). Bundle ``p`` keeps on
    its worker its rows and the dual variables of its rows, stored as ``B``
    *segments* of non-zeros (segment ``(p, q)``: ``alpha_{i,c}``, ``y_i`` in
    ``p``, ``c`` in ``q``). The weight vectors of the bundle's classes,
    ``W_p`` (``(n_classes_in_p, d)``), are the only thing that moves.

    **One epoch** = the rounds of :func:`~dasksvm.parallel.schedule.one_factorization`
    ``(B)`` (``B - 1`` rounds, or ``B`` with a bye when ``B`` is odd) and one
    intra-bundle round. A round runs, in parallel for each of its disjoint
    bundle pairs ``{a, b}``, the pair's two *half tasks* in sequence: on the
    first bundle's worker, ``inner_passes`` coordinate passes over segment
    ``(p, q)`` (random row order; touches ``W_p`` and ``W_q`` only), then on
    the second bundle's worker the same over segment ``(q, p)`` with the
    updated ``W_p, W_q``. The intra-bundle round runs segment ``(p, p)`` on
    every bundle at once. So every ``alpha`` update is applied to the one
    current copy of the two weight blocks it touches: ``W`` always equals
    ``W(alpha)``, exactly, and the algorithm is serial dual coordinate ascent
    in a particular order (the result does not depend on the cluster, only
    on ``random_state``, ``B`` and ``inner_passes``).

    **What a round communicates.** Per pair: ``W_p`` and ``W_q`` to the first
    worker (when not already there) and then both to the second one; per
    half task a small info dict to the client at the end of the epoch. No
    example and no dual variable moves. Task keys are
    ``f"{key_prefix}-r{round}-b{a}-b{b}-h{1|2}-{token}"`` for the halves of
    pair ``(a, b)`` (``a < b``; ``round`` counts from 0 over the whole fit),
    ``f"{key_prefix}-r{round}-b{p}-b{p}-{token}"`` for the intra-bundle
    tasks, each followed by small ``getitem`` tasks (``...-w0``, ``-w1``,
    ``-seg``, ``-info``) on the same worker.

    **Stopping rule.** After every epoch the duality gap is computed: ``D``
    from the segment sums and ``sum_c ||w_c||^2`` (one task per bundle), ``P``
    from the hinge sums of every bundle's rows against all classes (tasks on
    the rows' worker; the weight blocks travel there, at most
    ``_TASK_BYTES`` = 256 MiB of them per task). The run stops when
    ``(P - D) / |P| <= tol``; ``P(coef) - P* <= P - D`` is then certified.
    After ``max_iter`` epochs without that, a ``ConvergenceWarning`` is emitted.

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
        ``B``, 1 <= B <= n_classes (a larger value raises ``ValueError``).
        Default ``min(2 * n_workers, n_classes)``. ``B`` sets the parallelism:
        a round has ``floor(B / 2)`` independent pair chains.
    inner_passes : int >= 1
        Coordinate passes over a segment per half task.
    random_state : int, numpy Generator / RandomState or None
        Seeds the row orders; a fixed value makes the whole fit reproducible.
    verbose : int
        Print one line per epoch when > 0.
    key_prefix : str
    sparse_coef : bool, optional
        Keep every ``W_p`` as a CSR matrix instead of a dense array. Default:
        sparse when ``n_classes * n_columns * 8 > max_dense_bytes``. In the
        sparse layout a task densifies only the columns its rows touch
        (``(n_classes_in_p + n_classes_in_q) * n_cols_touched_p * 8`` bytes),
        no ``K x d`` dense matrix is ever built, and ``coef`` is returned as
        CSR.
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
        the last epoch; ``n_iter`` epochs; ``history`` with one record per
        epoch (``round`` = epoch, ``n_tasks`` = tasks submitted in the epoch,
        gap evaluation included, ``bytes`` = weight-block bytes that crossed
        between workers, plus ``epoch_time``, ``n_moved`` coordinate steps that
        changed a variable, ``nnz_alpha``); ``state`` with ``classes`` (the
        classes of every bundle), ``workers``, ``shuffle_bytes`` and
        optionally ``alpha``.

    Notes
    -----
    Memory per worker: its bundles' rows; their dual segments (non-zeros
    only, 12 bytes each plus 8 per row per segment); the weight blocks in
    flight. In the dense layout a half task holds
    ``(n_classes_in_p + n_classes_in_q) * d * 8`` bytes, a primal task up to
    all of ``W`` in ``_TASK_BYTES`` pieces. Tasks are pinned to their
    bundle's worker (``allow_other_workers=False``) so rows never move: a
    fit does not survive the loss of a worker.
    """
    _check_params(C, tol, max_iter, inner_passes, n_bundles, n_classes)
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

    bundles = shuffle_by_class(blocks, K, B, key_prefix=f"{kp}-shuffle")
    wk = bundles.workers
    ncls = [len(c) for c in bundles.classes]

    def submit(func, *args, key, where):
        return client.submit(func, *args, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    def pick(fut, i, key, where):
        return client.submit(operator.getitem, fut, i, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    # state: weight blocks, their location and size, the dual segments and their sums
    W = [submit(_w_zeros, ncls[p], d, sparse, key=f"{kp}-init-w-p{p}", where=wk[p])
         for p in range(B)]
    wloc = list(wk)
    wsize = [(ncls[p] + 1) * 4 if sparse else ncls[p] * d * 8 for p in range(B)]
    empty = [submit(_empty_segment, bundles.futures[p], key=f"{kp}-init-seg-p{p}", where=wk[p])
             for p in range(B)]
    seg = [[empty[p] for _ in range(B)] for p in range(B)]
    seg_sum = np.zeros((B, B))
    seg_nnz = np.zeros((B, B), dtype=np.int64)
    del empty
    schedule = [rnd for rnd in one_factorization(B) if rnd]
    transfers = []

    def fetch(p, where):
        # a weight block that lives elsewhere crosses to ``where``
        if wloc[p] != where:
            transfers.append(wsize[p])

    rnd_no = 0
    converged = False
    primal = dual = np.nan
    epoch = 0
    for epoch in range(1, max_iter + 1):
        t_epoch = time.perf_counter()
        n_tasks = 0
        infos = []  # (future, kind, p, q) kind in {"half", "intra"}
        transfers.clear()  # sizes: int or (index into infos, field)

        for rnd in schedule:
            load = {}
            for a, b in rnd:
                # start on the bundle whose worker has started fewer pairs this round
                p, q = (a, b) if load.get(wk[a], 0) <= load.get(wk[b], 0) else (b, a)
                load[wk[p]] = load.get(wk[p], 0) + 1
                base = f"{kp}-r{rnd_no}-b{a}-b{b}"
                for h, (own, tgt) in enumerate(((p, q), (q, p)), start=1):
                    where = wk[own]
                    fetch(own, where)
                    fetch(tgt, where)
                    fut = submit(_ww_half, bundles.futures[own], seg[own][tgt], W[own], W[tgt],
                                 C, next_seed(), int(inner_passes), sparse,
                                 key=f"{base}-h{h}", where=where)
                    W[own] = pick(fut, 0, f"{base}-h{h}-w0", where)
                    W[tgt] = pick(fut, 1, f"{base}-h{h}-w1", where)
                    seg[own][tgt] = pick(fut, 2, f"{base}-h{h}-seg", where)
                    infos.append((pick(fut, 3, f"{base}-h{h}-info", where), "half", own, tgt))
                    i = len(infos) - 1
                    wloc[own] = wloc[tgt] = where
                    wsize[own] = (i, "nb_own")
                    wsize[tgt] = (i, "nb_tgt")
                    n_tasks += 5
            rnd_no += 1
        for p in range(B):
            base = f"{kp}-r{rnd_no}-b{p}-b{p}"
            fetch(p, wk[p])
            fut = submit(_ww_intra, bundles.futures[p], seg[p][p], W[p], C, next_seed(),
                         int(inner_passes), sparse, key=base, where=wk[p])
            W[p] = pick(fut, 0, f"{base}-w0", wk[p])
            seg[p][p] = pick(fut, 1, f"{base}-seg", wk[p])
            infos.append((pick(fut, 2, f"{base}-info", wk[p]), "intra", p, p))
            wloc[p] = wk[p]
            wsize[p] = (len(infos) - 1, "nb_own")
            n_tasks += 4
        rnd_no += 1

        # certificate: sum_c ||w_c||^2 per bundle, hinge sums per bundle of rows
        norm_f = [submit(_ww_sqnorm, W[p], key=f"{kp}-norm-e{epoch}-p{p}", where=wloc[p])
                  for p in range(B)]
        n_tasks += B
        hinge_f = []
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
                for q in set(grp) | {p}:
                    if wloc[q] != wk[p] and (q, wk[p]) not in shipped:
                        shipped.add((q, wk[p]))
                        transfers.append(wsize[q])
                hinge_f.append(submit(_ww_hinge, bundles.futures[p], W[p], sparse, p, grp,
                                      *[W[q] for q in grp],
                                      key=f"{kp}-primal-e{epoch}-p{p}-g{g}", where=wk[p]))
                n_tasks += 1
        info_vals, norms, hinges = client.gather(
            [[f for f, *_ in infos], norm_f, hinge_f])
        del norm_f, hinge_f
        nbytes = 0
        for s in transfers:
            nbytes += s if isinstance(s, int) else int(info_vals[s[0]][s[1]])
        n_moved = 0
        for val, (_, _kind, p, q) in zip(info_vals, infos, strict=True):
            seg_sum[p, q] = val["sum"]
            seg_nnz[p, q] = val["nnz"]
            n_moved += val["moved"]
        # turn sizes known only through infos into numbers for the next epoch
        for p in range(B):
            if not isinstance(wsize[p], int):
                i, field = wsize[p]
                wsize[p] = int(info_vals[i][field])
        infos.clear()
        sq = float(np.sum(norms))
        primal = 0.5 * sq + C * float(np.sum(hinges))
        dual = float(seg_sum.sum()) - 0.5 * sq
        history.add(epoch, primal, dual, n_tasks=n_tasks, nbytes=nbytes,
                    epoch_time=time.perf_counter() - t_epoch, n_moved=int(n_moved),
                    nnz_alpha=int(seg_nnz.sum()))
        if relative_gap(primal, dual) <= tol:
            converged = True
            break

    rel = relative_gap(primal, dual)
    if not converged:
        warn_not_converged("solve_ww", max_iter, rel, tol)

    # assemble coef on the client from the weight blocks (weights only, never rows)
    blocks_w = client.gather(W)
    order = np.concatenate(bundles.classes)
    if sparse:
        stacked = sp.vstack(blocks_w, format="csr")
        inv = np.empty(K, dtype=np.int64)
        inv[order] = np.arange(K)
        coef = stacked[inv]
    else:
        coef = np.empty((K, d))
        coef[order] = np.concatenate(blocks_w, axis=0)
    state = {
        "classes": [c.copy() for c in bundles.classes],
        "workers": list(wk),
        "n_bundles": B,
        "shuffle_bytes": bundles.nbytes_moved,
        "sparse_coef": sparse,
    }
    if return_dual:
        state["alpha"] = _gather_alpha(client, bundles, seg, blocks.n_samples, K)
    del W, seg
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


def _gather_alpha(client, bundles, seg, n_samples, K):
    """Dense ``(n_samples, K)`` dual variables (tests / small problems)."""
    B = len(bundles)
    rows = client.gather([client.submit(_bundle_rows, f, pure=False) for f in bundles.futures])
    segs = client.gather([[seg[p][q] for q in range(B)] for p in range(B)])
    alpha = np.zeros((n_samples, K))
    for p in range(B):
        r = rows[p][0]
        for q in range(B):
            indptr, indices, data = segs[p][q]
            counts = np.diff(indptr)
            rr = np.repeat(r, counts)
            alpha[rr, bundles.classes[q][indices]] = data
    return alpha
