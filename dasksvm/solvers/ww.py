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

import functools
import operator
import time

import numpy as np
import scipy.sparse as sp

from ..kernels.ww import ww_cd_pass, ww_hinge_screen, ww_hinge_sums, ww_own_scores
from ..parallel.client import worker_addresses
from ..parallel.reduce import new_token
from ..parallel.schedule import one_factorization
from ..parallel.shuffle import LAYOUTS, shuffle_by_class
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


class _DenseBlock:
    """A dense weight block, ``a`` of shape ``(d, n_classes_in_block)``, C-ordered.

    In memory it stays dense (what the kernels want); on the wire (pickled
    when it moves between worker processes) it travels as its non-zeros
    when that is less than half the bytes: weight vectors of sparse data
    touch few columns, and moving them is the only communication of a round.
    """

    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    def __reduce__(self):
        flat = self.a.reshape(-1)
        nz = np.flatnonzero(flat)
        idx_type = np.int32 if flat.size < 2**31 else np.int64
        if nz.size * (8 + np.dtype(idx_type).itemsize) < flat.nbytes // 2:
            return (_dense_from_nonzeros, (self.a.shape, nz.astype(idx_type), flat[nz]))
        return (_DenseBlock, (self.a,))

    def wire_nbytes(self):
        """Bytes this block takes when it moves (see ``__reduce__``)."""
        nnz = int(np.count_nonzero(self.a))
        idx = 4 if self.a.size < 2**31 else 8
        return min(int(self.a.nbytes), nnz * (8 + idx))


def _dense_from_nonzeros(shape, idx, vals):
    a = np.zeros(shape)
    a.reshape(-1)[idx] = vals
    return _DenseBlock(a)


def _w_nbytes(W):
    if sp.issparse(W):
        return int(W.data.nbytes + W.indices.nbytes + W.indptr.nbytes)
    return W.wire_nbytes()


def _w_zeros(n_classes, n_columns, sparse):
    if sparse:
        return sp.csr_matrix((n_classes, n_columns), dtype=np.float64)
    return _DenseBlock(np.zeros((n_columns, n_classes)))


def _w_rows(W):
    """``d`` of a block: its number of feature coordinates."""
    return W.shape[1] if sp.issparse(W) else W.a.shape[0]


def _w_load(W, cols, out):
    """Write the block's weight vectors, restricted to ``cols`` (sparse layout), into ``out``.

    ``out`` has shape ``(m, n_classes_in_block)``: the columns of ``out`` are the classes.
    """
    if sp.issparse(W):
        out[:] = W[:, cols].toarray().T
    else:
        out[:] = W.a


def _w_store(W, cols, new):
    """The block ``W`` with its values on ``cols`` replaced by ``new`` (``(m, n_classes)``)."""
    if not sp.issparse(W):
        return _DenseBlock(np.ascontiguousarray(new))
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
    return W.a


def _w_sqnorm(W):
    v = W.data if sp.issparse(W) else W.a.reshape(-1)
    return float(np.dot(v, v))


def _w_coef_rows(W):
    """The block as ``(n_classes_in_block, d)`` rows of ``coef`` (dense or CSR)."""
    return W if sp.issparse(W) else W.a.T


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
    return W.shape[0] if sparse else W.a.shape[1]


def _stack_pieces(pieces, sparse):
    """CSR triple, columns, squared norms and weights of the pieces' rows, stacked."""
    if len(pieces) == 1:
        pc = pieces[0]
        indices = pc.local_indices if sparse else pc.X.indices
        return (pc.X.indptr, indices, pc.X.data, pc.cols if sparse else None, pc.sqnorm,
                pc.weight)
    X = sp.vstack([pc.X for pc in pieces], format="csr")
    if sparse:
        cols = functools.reduce(np.union1d, [pc.cols for pc in pieces])
        indices = np.searchsorted(cols, X.indices).astype(np.int32)
    else:
        cols, indices = None, X.indices
    return (X.indptr, indices, X.data, cols, np.concatenate([pc.sqnorm for pc in pieces]),
            np.concatenate([pc.weight for pc in pieces]))


def _ww_link(pieces, alphas, wsets, Ws, own_pos, ranges, C, part_seeds, part, n_parts, seed,
             passes, exact_rows, sparse):
    """One link of a pair chain (runs on the worker that holds ``pieces``).

    The rows of the pieces (one or two bundles' rows on this worker), all
    their variables ``alpha_{i,c}`` with ``c`` among the classes of the
    weight blocks ``Ws`` (the pair's, in pair order: cross-bundle and
    intra-bundle pairs alike), in one random order over the rows. Piece
    ``j``'s own classes are block ``own_pos[j]``; ``ranges`` are the blocks'
    columns in the dual matrices. With ``n_parts > 1`` only the ``part``-th
    of ``n_parts`` random parts of each piece's rows is visited (parts fixed
    by ``part_seeds``). ``wsets`` are the pieces' working sets (CSR patterns
    ``(rows, K)``, see :func:`_ww_certify`) or ``None`` (visit every
    variable). Only ``Ws`` may have come from another worker.

    Returns ``(tuple of new Ws, (alpha, moved) for each piece...)``.
    """
    nws = [_n_cls(W, sparse) for W in Ws]
    woff = np.concatenate([[0], np.cumsum(nws)]).astype(np.int64)
    indptr, indices, data, cols, sqnorm, weight = _stack_pieces(pieces, sparse)
    m = len(cols) if sparse else _w_rows(Ws[0])
    Wt = np.empty((m, int(woff[-1])))
    for j, W in enumerate(Ws):
        _w_load(W, cols, Wt[:, woff[j]:woff[j + 1]])
    sizes = [pc.n_rows for pc in pieces]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(starts[-1])
    own = np.concatenate([pc.label + woff[q] for pc, q in zip(pieces, own_pos, strict=True)])
    if n_parts > 1:
        rows = np.concatenate([
            starts[j] + np.array_split(np.random.default_rng(part_seeds[j]).permutation(nj),
                                       n_parts)[part]
            for j, nj in enumerate(sizes)
        ])
    else:
        rows = np.arange(n)
    takes = [_alpha_take(M, ranges) for M, _ in alphas]
    s_indptr = np.concatenate([[0]] + [t[0][1:] + sum(len(u[1]) for u in takes[:j])
                                       for j, t in enumerate(takes)]).astype(np.int64)
    use_ws = wsets is not None and all(ws is not None for ws in wsets)
    if use_ws:
        wt = [_alpha_take(P, ranges) for P in wsets]
        w_indptr = np.concatenate([[0]] + [t[0][1:] + sum(len(u[1]) for u in wt[:j])
                                           for j, t in enumerate(wt)]).astype(np.int64)
        w_indices = np.concatenate([t[1] for t in wt])
    else:
        w_indptr, w_indices = np.zeros(n + 1, np.int64), np.zeros(0, np.int32)
    r_indptr, r_indices, r_data, _, moved = ww_cd_pass(
        indptr, indices, data, sqnorm, own.astype(np.int64), _full(n, 0),
        _full(n, int(woff[-1])), own.astype(np.int64), C * weight, Wt, s_indptr,
        np.concatenate([t[1] for t in takes]), np.concatenate([t[2] for t in takes]),
        rows.astype(np.int64), seed, passes, exact_rows, use_ws, w_indptr, w_indices,
    )
    out_alpha = []
    for j, (M, moved_before) in enumerate(alphas):
        lo, hi = r_indptr[starts[j]], r_indptr[starts[j + 1]]
        new = _alpha_put(M, ranges, r_indptr[starts[j]:starts[j + 1] + 1] - lo,
                         r_indices[lo:hi], r_data[lo:hi])
        out_alpha.append((new, moved_before + (moved if j == 0 else 0)))
    new_ws = tuple(_w_store(W, cols, Wt[:, woff[j]:woff[j + 1]]) for j, W in enumerate(Ws))
    return (new_ws, *out_alpha)


def _ww_certify(piece, alpha, W_own, sparse, own_index, targets, col0, margin, stats, *Ws):
    """One piece's share of the certificate (runs on the piece's worker).

    ``hinge`` = ``sum_i weight_i sum_c max(0, 1 - (w_{y_i} - w_c).x_i)`` over
    the piece's rows and the classes of the blocks ``Ws`` (``targets[j]`` is
    the bundle of ``Ws[j]``, whose classes are the dual matrix's columns
    from ``col0[j]``; the row's own class is skipped). With ``stats`` also
    the sum, non-zeros and cumulative moves of the piece's duals.

    Returns ``(stats dict, parts)``: with ``margin`` (not ``None``) the
    working set of the piece's rows against these classes, one CSR
    ``(indptr, indices)`` pattern over the dual matrix's columns per block
    (:func:`~dasksvm.kernels.ww.ww_hinge_screen`), else ``None``.
    """
    out = {"hinge": 0.0}
    if stats:
        M, moved = alpha
        out.update(alpha_sum=float(M.sum()), alpha_nnz=int(M.nnz), moved=int(moved))
    if piece.n_rows == 0:
        return out, ([] if margin is not None else None)
    indptr, indices, data = _rows_view(piece, sparse)
    cols = piece.cols if sparse else None
    own = ww_own_scores(indptr, indices, data, piece.label, _w_dense_t(W_own, cols))
    total = np.zeros(piece.n_rows)
    parts = []
    for q, c0, Wq in zip(targets, col0, Ws, strict=True):
        Wd = _w_dense_t(Wq, cols)
        if margin is None:
            total += ww_hinge_sums(indptr, indices, data, own, piece.label, Wd, q == own_index)
        else:
            h, p_indptr, p_indices = ww_hinge_screen(indptr, indices, data, own, piece.label,
                                                      Wd, q == own_index, c0, margin)
            total += h
            parts.append((p_indptr, p_indices))
    out["hinge"] = float(np.dot(piece.weight, total))
    if margin is None:
        return out, None
    out["ws_nnz"] = int(sum(len(p[1]) for p in parts))
    return out, parts


def _ws_merge(n_rows, n_classes, *certs):
    """A piece's working set, CSR pattern ``(n_rows, n_classes)``, from its certificate tasks."""
    parts = [p for c in certs for p in c[1]]
    counts = sum((np.diff(p[0]) for p in parts), np.zeros(n_rows, np.int64))
    rows = np.concatenate([np.arange(n_rows).repeat(np.diff(p[0])) for p in parts]
                          + [np.zeros(0, np.int64)])
    order = np.argsort(rows, kind="stable")
    indices = np.concatenate([p[1] for p in parts] + [np.zeros(0, np.int32)])[order]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.int8), indices, indptr),
                         shape=(n_rows, n_classes))


def _ww_norm(W):
    """``(sum_c ||w_c||^2, bytes)`` of a weight block."""
    return _w_sqnorm(W), _w_nbytes(W)


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
                "min(2 * n_threads, n_classes))"
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
    layout="auto",
    pair_sweeps="auto",
    exact_rows=True,
    ws_margin=0.0,
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
    Every step is an exact dual ascent step that touches only the weight
    vectors of the classes it involves: the single-variable step of
    formulations.md, or (``exact_rows``, default) the exact maximization over
    all of one row's variables in the task.

    **Bundles and pieces.** The classes are split once into ``B =
    n_bundles`` bundles with balanced row counts, and the rows are grouped by
    bundle (:func:`~dasksvm.parallel.shuffle.shuffle_by_class`, tasks only,
    examples never through the client). With ``layout="spread"`` (default
    for ``B > 1``) every worker groups the rows it already holds: a bundle
    is a *piece* per worker and no example ever moves. With
    ``layout="owner"`` (default for ``B = 1``) each bundle is gathered whole
    on one worker (the examples move once, in the shuffle). A piece's dual
    variables (a CSR matrix ``(rows, K)`` of the non-zero ``alpha``) stay on
    the piece's worker; the weight block ``W_p`` (the ``w_c`` of bundle
    ``p``'s classes) is the only thing that ever moves after the shuffle.

    **One epoch** = the rounds of :func:`~dasksvm.parallel.schedule.one_factorization`
    ``(B)`` (``B - 1`` rounds, ``B`` with a bye when ``B`` is odd; one
    "round" with the single bundle when ``B = 1``). A round holds disjoint
    bundle pairs ``{a, b}``, run in parallel; pair ``{a, b}`` updates every
    ``alpha_{i,c}`` with ``y_i`` and ``c`` both in ``a`` or ``b``: the class
    pairs across the two bundles and, as they touch only ``W_a`` or
    ``W_b``, the pairs inside each bundle too (so intra-bundle variables are
    visited in each of a bundle's ``B - 1`` rounds, which converged faster
    than a separate intra-bundle round).

    A pair is a **chain** of tasks ("links"), one per worker that holds rows
    of ``a`` or ``b``, repeated ``S = pair_sweeps`` times; each link runs,
    on its worker, ``inner_passes`` passes over (the ``s``-th of ``S``
    random parts of) its rows of both bundles, in one random order, and
    hands the updated ``(W_a, W_b)`` to the next link. The chains of a
    round start on different workers, so they run side by side. Two facts
    shaped this: rows of ``a`` and rows of ``b`` pull ``w_a - w_b`` in
    opposite directions, so a link that sees the rows of only one bundle
    (``"owner"`` layout, bundles on different workers) zigzags against the
    next unless ``S`` is large; and the more links per epoch (``S`` and the
    number of workers), the closer the chain comes to single-machine
    coordinate descent. Every update is applied to the one current copy of
    the weight blocks it touches, so ``W`` always equals ``W(alpha)``, and
    the iterates depend on ``random_state``, ``B``, the layout,
    ``inner_passes``, ``pair_sweeps`` and where the rows are, never on timing.

    **What a round communicates.** ``(W_a, W_b)`` moves from link to link
    when consecutive links are on different workers (``S * n_workers_of_pair
    - 1`` times per pair, plus once when the blocks arrive from elsewhere).
    No example (after the shuffle) and no dual variable ever moves. Task
    keys: ``f"{key_prefix}-r{round}-b{a}-b{b}-h{link}-{token}"`` (``a < b``;
    ``b0-b0`` when ``B = 1``; ``round`` counts from 0 over the fit), each
    followed by ``getitem`` tasks on the same worker (``...-w``, the weight
    pair, ``-alpha{j}``) and per chain ``f"{key_prefix}-r{round}-b{a}-b{b}-w0"``
    / ``-w1``; ``f"{key_prefix}-certify-e{epoch}-p{p}-{piece}-g{g}-{token}"``
    and ``f"{key_prefix}-norm-e{epoch}-p{p}-{token}"`` for the certificate;
    ``f"{key_prefix}-shuffle-..."`` for the shuffle.

    **Stopping rule.** After every epoch, per piece, a task on the piece's
    worker returns its rows' weighted hinge sums against all classes (the
    weight blocks travel to it, at most 256 MiB of densified weights per
    task) and the sum of its duals; per bundle a task returns ``sum_c
    ||w_c||^2``; with ``ws_margin`` the same task also returns the piece's
    working set for the next epoch, which stays on the piece's worker
    (``f"{key_prefix}-ws-e{epoch}-p{p}-{piece}-{token}"``). Then
    ``P = 1/2 sum ||w||^2 + C * hinge`` and ``D = sum alpha
    - 1/2 sum ||w||^2``; the run stops when ``(P - D) / |P| <= tol``, which
    certifies ``P(coef) - P* <= P - D``. After ``max_iter`` epochs without
    that, a ``ConvergenceWarning`` is emitted.

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
        Default ``min(2 * n_threads, n_classes)`` (``n_threads``: all worker
        threads of the cluster); a round runs ``floor(B / 2)`` pair chains
        side by side. The kernels release the GIL, so the chains of a round
        also run side by side on the threads of one worker, where moving a
        weight block between them costs nothing.
    inner_passes : int >= 1
        Coordinate passes per link over its rows' variables. More than one
        helps when a chain is a single link (``B = 1`` with ``"owner"``);
        in longer chains the links are coupled and extra passes do little.
    layout : {"auto", "spread", "owner"}
        See above; ``"auto"`` is ``"owner"`` for ``B = 1``, else ``"spread"``.
    pair_sweeps : int >= 1 or "auto"
        ``S`` above. ``"auto"``: 2 when the two largest weight blocks take at
        most 16 MiB dense, else 1 (every link hands the blocks on).
    exact_rows : bool
        When a link visits a row, maximize the dual exactly over all the
        row's variables in the task at once (coupled through ``w_{y_i}``:
        closed form up to a sort, :mod:`dasksvm.kernels.ww`) instead of one
        coordinate step per variable. Same certificate, far fewer epochs with
        many classes (``sector``, 45 classes: 12 passes instead of 496 to a
        gap of 1e-4).
    ws_margin : float >= 0 or None
        **Working sets** (LIBLINEAR-style shrinking, decided by the
        certificate). The certificate of each epoch computes every score
        ``w_c . x_i`` anyway; it also keeps, per row, the classes ``c`` with
        ``1 - (w_{y_i} - w_c).x_i > -ws_margin`` (the variables whose
        gradient is positive, or within ``ws_margin`` of it), and in the
        next epoch a link visits only those and the row's non-zero
        variables. Every step is still an exact ascent step of the full
        dual, and the next certificate sees all variables again (a variable
        that starts to violate enters the next working set), so the stopping
        rule is unchanged. The first epoch visits everything. ``None``: no
        working sets (every link visits every variable). Default 0: on
        generated data with 500 classes (30k x 30k, 50 non-zeros per row,
        1 worker) the working sets hold ~1% of the variables and the time to
        a gap of 1e-3 fell from 56 s to 25 s (15 epochs instead of 14).
    random_state : int, numpy Generator / RandomState or None
        Seeds the row orders and parts; a fixed value makes the fit
        reproducible.
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
        between workers, sparse blocks counted at their size at the end of
        the previous epoch; plus ``epoch_time``, ``n_moved`` = variables
        changed, ``nnz_alpha``); ``state`` with ``classes`` (the classes of
        each bundle), ``layout``, ``pieces`` (``(worker, rows)`` of each
        bundle's pieces), ``n_bundles``, ``pair_sweeps``, ``shuffle_bytes``
        (example bytes the shuffle moved), ``sparse_coef`` and, with
        ``return_dual``, ``alpha``.

    Notes
    -----
    Memory per worker: its pieces' rows; their dual variables (non-zeros
    only: 12 bytes each plus 8 per row); the weight blocks in flight. A
    dense-layout link holds a ``d x (n_classes_in_a + n_classes_in_b)``
    float64 slab plus its inputs and outputs; a certificate task up to 256
    MiB of densified weights at a time. Tasks are pinned to their worker
    (``allow_other_workers=False``) so that rows never move: a fit does not
    survive the loss of a worker.

    Dual coordinate ascent needs many passes for a small gap on
    ill-conditioned data: on ``dna`` (3 classes, C = 0.1) about 280 passes
    reach a relative gap of 1e-4 on one machine, and the distributed
    schedule takes more epochs than that (the blocks of a round are solved
    against frozen others). Small problems are latency-bound: an epoch is
    about ``(B - 1) * S * n_workers`` sequential task hops plus the
    certificate.
    """
    _check_params(C, tol, max_iter, inner_passes, n_bundles, n_classes, pair_sweeps)
    if ws_margin is not None and (not isinstance(ws_margin, (int, float, np.number))
                                  or not ws_margin >= 0 or not np.isfinite(ws_margin)):
        raise ValueError(f"ws_margin must be None or a finite number >= 0, got {ws_margin!r}")
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    K = int(n_classes)
    C = float(C)
    client = blocks.client
    d = int(blocks.n_columns)
    n_threads = sum(client.nthreads().values())
    B = int(n_bundles) if n_bundles is not None else max(1, min(2 * n_threads, K))
    sparse = bool(sparse_coef) if sparse_coef is not None else K * d * 8 > max_dense_bytes
    if layout == "auto":
        layout = "owner" if B == 1 else "spread"
    next_seed = _seed_source(random_state)
    history = History(verbose=verbose, name="solve_ww")
    token = new_token()
    kp = key_prefix
    passes = int(inner_passes)
    exact = bool(exact_rows)

    bundles = shuffle_by_class(blocks, K, B, layout=layout, key_prefix=f"{kp}-shuffle")
    workers = worker_addresses(client)
    ncls = [len(c) for c in bundles.classes]
    offs = np.concatenate([[0], np.cumsum(ncls)]).astype(np.int64)
    rng_of = [(int(offs[p]), int(offs[p + 1])) for p in range(B)]
    if pair_sweeps == "auto":
        biggest = sorted(ncls)[-2:]
        small = sum(biggest) * d * 8 <= _AUTO_SWEEPS_BYTES
        sweeps = _AUTO_SWEEPS if small else 1
    else:
        sweeps = int(pair_sweeps)

    def submit(func, *args, key, where):
        return client.submit(func, *args, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    def pick(fut, i, key, where):
        return client.submit(operator.getitem, fut, i, key=f"{key}-{token}", workers=[where],
                             allow_other_workers=False, pure=False)

    # state: weight blocks (future, worker, bytes); dual variables, one per piece, on its worker
    home = bundles.home
    W = [submit(_w_zeros, ncls[p], d, sparse, key=f"{kp}-init-w-p{p}", where=home[p])
         for p in range(B)]
    wloc = list(home)
    wsize = [(ncls[p] + 1) * 4 if sparse else 0 for p in range(B)]  # all zeros: nothing to send
    pieces = bundles.pieces
    alpha = [[submit(_alpha_zeros, pc.future, K, key=f"{kp}-init-alpha-p{p}-{j}",
                     where=pc.worker) for j, pc in enumerate(pieces[p])] for p in range(B)]
    wset = [[None] * len(pieces[p]) for p in range(B)]  # working sets: all variables at first
    margin = None if ws_margin is None else float(ws_margin)
    moved_before = 0
    schedule = [rnd for rnd in one_factorization(B) if rnd] if B > 1 else [[(0,)]]
    transfers = []  # bytes of the weight blocks that crossed between workers this epoch

    rnd_no = 0
    converged = False
    primal = dual = np.nan
    epoch = 0
    for epoch in range(1, max_iter + 1):
        t_epoch = time.perf_counter()
        n_tasks = 0
        transfers.clear()
        for rnd in schedule:
            for i_pair, pair in enumerate(rnd):
                group = list(pair)  # the bundles of this task chain: (a, b), or (0,) if B == 1
                base = f"{kp}-r{rnd_no}-" + "-".join(f"b{p}" for p in (group * 2)[:2])
                ranges = [rng_of[p] for p in group]
                held = {pc.worker for p in group for pc in pieces[p]}
                if not held:
                    continue  # no rows of these classes anywhere: no variables
                # stagger the chains of a round over the workers, so that they run in parallel
                start = i_pair % len(workers)
                order = [w for w in workers[start:] + workers[:start] if w in held]
                part_seeds = {(p, j): next_seed() for p in group for j in range(len(pieces[p]))}
                ws = [W[p] for p in group]
                link = 0
                for part in range(sweeps):
                    for w in order:
                        here = [(p, j) for p in group for j, pc in enumerate(pieces[p])
                                if pc.worker == w]
                        link += 1
                        key = f"{base}-h{link}"
                        for p in group:
                            if wloc[p] != w:
                                transfers.append(wsize[p])
                                wloc[p] = w
                        fut = submit(
                            _ww_link, [pieces[p][j].future for p, j in here],
                            [alpha[p][j] for p, j in here], [wset[p][j] for p, j in here], ws,
                            [group.index(p) for p, _ in here], ranges, C,
                            [part_seeds[pj] for pj in here], part, sweeps, next_seed(), passes,
                            exact, sparse, key=key, where=w,
                        )
                        ws = pick(fut, 0, f"{key}-w", w)
                        for u, (p, j) in enumerate(here, start=1):
                            alpha[p][j] = pick(fut, u, f"{key}-alpha{u - 1}", w)
                        n_tasks += 2 + len(here)
                for u, p in enumerate(group):
                    W[p] = pick(ws, u, f"{base}-w{u}", wloc[p])
                    n_tasks += 1
            rnd_no += 1

        # certificate: per piece, its rows' hinge sums against every class (weights travel
        # to the rows, at most _TASK_BYTES of densified weights per task) and its duals;
        # per bundle, sum_c ||w_c||^2 where the block is
        norm_f = [submit(_ww_norm, W[p], key=f"{kp}-norm-e{epoch}-p{p}", where=wloc[p])
                  for p in range(B)]
        cert_f = []
        ws_f = []
        shipped = set()
        for p in range(B):
            for j, pc in enumerate(pieces[p]):
                piece_f = []
                groups, cur, cur_bytes = [], [], 0
                for q in range(B):
                    nb = ncls[q] * (max(1, pc.n_cols) if sparse else d) * 8
                    if cur and cur_bytes + nb > _TASK_BYTES:
                        groups.append(cur)
                        cur, cur_bytes = [], 0
                    cur.append(q)
                    cur_bytes += nb
                groups.append(cur)
                for g, grp in enumerate(groups):
                    for q in {*grp, p}:
                        if wloc[q] != pc.worker and (q, pc.worker) not in shipped:
                            shipped.add((q, pc.worker))
                            transfers.append(wsize[q])
                    key = f"{kp}-certify-e{epoch}-p{p}-{j}-g{g}"
                    fut = submit(
                        _ww_certify, pc.future, alpha[p][j], W[p], sparse, p, grp,
                        [rng_of[q][0] for q in grp], margin, g == 0, *[W[q] for q in grp],
                        key=key, where=pc.worker,
                    )
                    piece_f.append(fut)
                    cert_f.append(pick(fut, 0, f"{key}-stats", pc.worker))
                if margin is not None:
                    ws_f.append((p, j, submit(_ws_merge, pc.n_rows, K, *piece_f,
                                              key=f"{kp}-ws-e{epoch}-p{p}-{j}",
                                              where=pc.worker)))
                n_tasks += len(piece_f)
        n_tasks += len(norm_f) + len(cert_f) + len(ws_f)
        for p, j, fut in ws_f:
            wset[p][j] = fut
        norms, certs = client.gather([norm_f, cert_f])
        del norm_f, cert_f, ws_f
        sq = float(sum(v for v, _ in norms))
        stats = [c for c in certs if "alpha_sum" in c]
        moved_total = sum(st["moved"] for st in stats)
        primal = 0.5 * sq + C * sum(c["hinge"] for c in certs)
        dual = sum(st["alpha_sum"] for st in stats) - 0.5 * sq
        history.add(epoch, primal, dual, n_tasks=n_tasks, nbytes=int(sum(transfers)),
                    epoch_time=time.perf_counter() - t_epoch,
                    n_moved=int(moved_total - moved_before),
                    nnz_alpha=int(sum(st["alpha_nnz"] for st in stats)),
                    ws_nnz=int(sum(c.get("ws_nnz", 0) for c in certs)))
        moved_before = moved_total
        for p in range(B):
            wsize[p] = int(norms[p][1])
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
        coef[order] = np.concatenate([_w_coef_rows(w) for w in w_blocks], axis=0)
    state = {
        "classes": [c.copy() for c in bundles.classes],
        "layout": layout,
        "pieces": [[(pc.worker, pc.n_rows) for pc in ps] for ps in pieces],
        "n_bundles": B,
        "pair_sweeps": sweeps,
        "shuffle_bytes": bundles.nbytes_moved,
        "sparse_coef": sparse,
    }
    if return_dual:
        state["alpha"] = _gather_alpha(client, bundles, alpha, blocks.n_samples, K, token)
    del W, alpha, wset
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
    order = np.concatenate(bundles.classes)
    out = np.zeros((n_samples, K))
    for p, ps in enumerate(bundles.pieces):
        for j, pc in enumerate(ps):
            rows = client.submit(_bundle_rows, pc.future, key=f"ww-alpha-rows-p{p}-{j}-{token}",
                                 workers=[pc.worker], pure=False).result()
            M, _ = alpha[p][j].result()
            out[np.ix_(rows, order)] = M.toarray()
    return out
