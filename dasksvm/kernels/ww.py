"""Numba kernels of the Weston-Watkins (WW) multiclass SVM.

Objective (formulations.md, section 2a), with per-row caps ``C_i = C * weight_i``::

    P(W) = 1/2 sum_c ||w_c||^2 + sum_i C_i sum_{c != y_i} max(0, 1 - (w_{y_i} - w_c).x_i)
    D(alpha) = sum_{i, c != y_i} alpha_{i,c} - 1/2 sum_c ||w_c||^2,   0 <= alpha_{i,c} <= C_i

Coordinate step on ``alpha_{i,c}``: ``g = 1 - (w_{y_i} - w_c).x_i``,
``alpha' = clip(alpha + g / (2 ||x_i||^2), 0, C_i)``, ``d = alpha' - alpha``,
``w_{y_i} += d x_i``, ``w_c -= d x_i``.

The kernels see only plain arrays: rows as a CSR triple ``(indptr, indices,
data)``; weight vectors as the **columns** of one dense C-ordered float64
matrix ``Wt`` of shape ``(m, n_w)`` (``Wt[j, c]`` is coordinate ``j`` of
``w_c``), whose rows are the column space of ``indices`` (all ``d``
features, or only the columns a bundle touches, renumbered by the caller).
With classes along the fast axis, the scores of one row against all target
classes are one contiguous sweep over the rows ``Wt[j]`` at the row's
non-zeros ``j``. Dual variables of one *segment* (the rows of one bundle
against the classes of one bundle) are a CSR triple of their non-zeros,
``(s_indptr, s_indices, s_data)``, row ``i`` holding ``alpha_{i,c}`` at
column ``c`` (the position of the target class in the target bundle).

Memory of one call of :func:`ww_cd_pass`: ``Wt`` (``m * n_w * 8`` bytes,
updated in place), four scratch vectors of ``n_tgt`` entries, and the new
segment (at most ``n_rows * n_tgt`` non-zeros; 20 bytes each while it is
built, 12 bytes after). Time per pass: ``O(nnz * n_visited)`` for the scores
(``n_visited`` = ``n_tgt``, or the size of the row's working set) plus
``O(nnz * (1 + moved))`` per row for the write-back, where ``moved`` is the
number of the row's variables that changed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ww_cd_pass", "ww_hinge_screen", "ww_hinge_sums", "ww_own_scores"]


@njit(nogil=True, cache=True)
def _scores(indptr, indices, data, i, Wt, off, n, out):
    """``out[c] = x_i . Wt[:, off + c]`` for ``c < n`` (rows of ``Wt`` read contiguously)."""
    for c in range(n):
        out[c] = 0.0
    for k in range(indptr[i], indptr[i + 1]):
        v = data[k]
        j = indices[k]
        for c in range(n):
            out[c] += v * Wt[j, off + c]


@njit(nogil=True, cache=True)
def _row_f(S, tvec, alpha, ci, nt, sk):
    # f(S) = sum_c clip(t_c - S, -alpha_c, ci - alpha_c) - S  (strictly decreasing in S)
    tot = -S
    for c in range(nt):
        if c == sk or tvec[c] == -np.inf:
            continue
        v = tvec[c] - S
        lo = -alpha[c]
        hi = ci - alpha[c]
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        tot += v
    return tot


@njit(nogil=True, cache=True)
def _row_exact(alpha, score, sy, xx, ci, nt, sk, tvec, bp, delta, moved):
    """Exact maximization of the dual over one row's variables ``alpha_{i,c}`` (c < nt).

    With ``t_c = g_c / ||x_i||^2`` the row's gradients scaled, the maximizer
    is ``delta_c = clip(t_c - S, -alpha_c, C_i - alpha_c)`` where ``S`` is
    the root of ``S = sum_c delta_c(S)`` (the shared change of ``w_{y_i}``),
    found exactly among the sorted breakpoints. Updates ``alpha`` and
    writes the changes to ``delta`` / ``moved``; returns
    ``(n_moved, sum of changes)``.
    """
    # S >= -sum_c alpha_c, so a variable at zero with t_c <= -sum alpha stays at zero:
    # only the others ("candidates", flagged by a finite breakpoint) enter the search.
    total = 0.0
    for c in range(nt):
        if c != sk:
            total += alpha[c]
    m = 0
    for c in range(nt):
        if c == sk:
            continue
        t = (1.0 - sy + score[c]) / xx
        if alpha[c] == 0.0 and t <= -total:
            tvec[c] = -np.inf
            continue
        tvec[c] = t
        bp[m] = t - (ci - alpha[c])
        bp[m + 1] = t + alpha[c]
        m += 2
    if m == 0:
        return 0, 0.0
    b = bp[:m]
    b.sort()
    f0 = _row_f(b[0], tvec, alpha, ci, nt, sk)
    f1 = _row_f(b[m - 1], tvec, alpha, ci, nt, sk)
    if f0 <= 0.0:
        S = 0.0  # below every breakpoint: all candidates at their upper bound
        for c in range(nt):
            if c != sk and tvec[c] != -np.inf:
                S += ci - alpha[c]
    elif f1 >= 0.0:
        S = 0.0  # above every breakpoint: all variables at zero
        for c in range(nt):
            if c != sk:
                S -= alpha[c]
    else:
        lo_k = 0
        hi_k = m - 1
        flo = f0
        fhi = f1
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            fm = _row_f(b[mid], tvec, alpha, ci, nt, sk)
            if fm > 0.0:
                lo_k = mid
                flo = fm
            else:
                hi_k = mid
                fhi = fm
        # f is linear between consecutive breakpoints
        S = b[lo_k] + flo * (b[hi_k] - b[lo_k]) / (flo - fhi)
    n_mv = 0
    dy = 0.0
    for c in range(nt):
        if c == sk or tvec[c] == -np.inf:
            continue
        a = alpha[c]
        an = a + tvec[c] - S
        if an < 0.0:
            an = 0.0
        elif an > ci:
            an = ci
        d = an - a
        if d != 0.0:
            alpha[c] = an
            dy += d
            delta[n_mv] = d
            moved[n_mv] = c
            n_mv += 1
    return n_mv, dy


@njit(nogil=True, cache=True)
def _grow(buf_row, buf_col, buf_val, nnz, size):
    nr = np.empty(size, np.int64)
    nc = np.empty(size, np.int32)
    nv = np.empty(size, np.float64)
    nr[:nnz] = buf_row[:nnz]
    nc[:nnz] = buf_col[:nnz]
    nv[:nnz] = buf_val[:nnz]
    return nr, nc, nv


@njit(nogil=True, cache=True)
def ww_cd_pass(indptr, indices, data, sqnorm, own, tgt_off, n_tgt, skip, cap, Wt,
               s_indptr, s_indices, s_data, rows, seed, passes, exact_rows,
               use_ws, w_indptr, w_indices):
    """Dual coordinate ascent over a set of WW dual variables.

    Row ``i``'s variables are ``alpha_{i,c}`` for the targets ``c`` in
    ``0..n_tgt[i]-1`` other than ``skip[i]``. The weight vectors are the
    **columns** of ``Wt``: ``w_{y_i}`` is column ``own[i]``, target ``c`` is
    column ``tgt_off[i] + c``. The per-row arrays let one call serve a half
    pair task (rows of bundle ``A`` against the classes of ``B``: ``own =
    label``, ``tgt_off = n_A``, ``n_tgt = n_B``, ``skip = -1``), an
    intra-bundle task (``tgt_off = 0``, ``n_tgt = n_A``, ``skip = label``)
    and a joint pair task over the rows of both bundles stacked.

    The rows in ``rows`` are visited in a fresh random order each pass, and
    for each row all its targets in turn, each with the exact coordinate
    step of the module docstring; the other rows' variables are carried
    over unchanged. Within a row the steps are sequential but the
    arithmetic is batched: a step on ``alpha_{i,c}`` changes only ``w_{y_i}``
    and ``w_c``, so the scores ``w_c . x_i`` of all targets are read once at
    the start of the row (a contiguous sweep of ``Wt``'s rows at the row's
    non-zeros), ``w_{y_i} . x_i`` is carried along (it grows by
    ``d ||x_i||^2`` per step), and the changes are written back to ``Wt``
    once at the end of the row: the same iterates as updating ``W`` after
    every step.

    Parameters
    ----------
    indptr, indices, data : CSR triple, ``n`` rows
    sqnorm : float64 (n,)
        ``||x_i||^2``. A row with ``sqnorm == 0`` has constant gradient 1:
        its variables go straight to ``cap[i]`` and ``Wt`` does not change.
    own, tgt_off, n_tgt, skip : int64 (n,)
        Per-row own column, first target column, number of targets and the
        target to skip (``-1``: none).
    cap : float64 (n,)
        Upper bounds ``C_i``.
    Wt : float64 (m, n_w), C-ordered
        Weight vectors as columns, updated **in place**.
    s_indptr, s_indices, s_data : CSR triple, ``n`` rows
        Current non-zero dual variables, row ``i`` at columns ``0..n_tgt[i]-1``.
    rows : int64 array
        The rows to visit (distinct, any order).
    seed : int
        Seed of the row permutations.
    passes : int
        Number of passes over the visited rows' variables.
    exact_rows : bool
        Maximize the dual exactly over all of a row's variables at once
        (:func:`_row_exact`: they are coupled through ``w_{y_i}``, with
        curvature ``||x_i||^2 (I + 11^T)``, so single steps converge slowly
        when a row has many targets) instead of one coordinate step per
        variable in turn.
    use_ws : bool
        Visit only a **working set** of each row's targets: the targets
        listed in row ``i`` of ``(w_indptr, w_indices)`` (columns
        ``0..n_tgt[i]-1``, as for the dual variables) together with the
        targets whose ``alpha_{i,c}`` is non-zero. The others stay at zero
        for this call, so every step is still an exact ascent step of the
        full dual and ``Wt`` still equals ``W(alpha)``; only their scores
        are not computed. Without it every target is visited.
    w_indptr, w_indices : CSR pattern, ``n`` rows
        The working set (ignored unless ``use_ws``).

    Returns
    -------
    indptr (int64, n + 1), indices (int32), data (float64) :
        The new dual variables (non-zeros only, sorted by row then column).
    total : float
        Sum of all the new variables.
    n_moved : int
        Number of coordinate steps that changed a variable.
    """
    n = sqnorm.shape[0]
    np.random.seed(seed)
    width = 1
    for i in range(n):
        width = max(width, n_tgt[i])
    alpha = np.zeros(width)
    score = np.zeros(width)
    a_act = np.zeros(width)
    act = np.empty(width, np.int64)
    mark = np.zeros(width, np.bool_)
    delta = np.zeros(width)
    moved = np.empty(width, np.int64)
    tvec = np.zeros(width)
    bp = np.zeros(2 * width)
    cur_indptr = s_indptr.astype(np.int64)
    cur_indices = s_indices.astype(np.int32)
    cur_data = s_data.astype(np.float64)
    n_moved = 0
    n_vis = rows.shape[0]
    visited = np.zeros(n, np.bool_)
    for t in range(n_vis):
        visited[rows[t]] = True
    perm = rows.astype(np.int64)
    for _ in range(passes):
        np.random.shuffle(perm)
        size = max(16, cur_data.shape[0] + width)
        buf_row = np.empty(size, np.int64)
        buf_col = np.empty(size, np.int32)
        buf_val = np.empty(size, np.float64)
        nnz = 0
        for t in range(n_vis):
            i = perm[t]
            for k in range(cur_indptr[i], cur_indptr[i + 1]):
                alpha[cur_indices[k]] = cur_data[k]
            y = own[i]
            off = tgt_off[i]
            nt = n_tgt[i]
            sk = skip[i]
            xx = sqnorm[i]
            ci = cap[i]
            if xx > 0.0:
                # the targets visited in this row, ascending: all but sk, or the working set
                na = 0
                if use_ws:
                    for k in range(w_indptr[i], w_indptr[i + 1]):
                        mark[w_indices[k]] = True
                    for k in range(cur_indptr[i], cur_indptr[i + 1]):
                        mark[cur_indices[k]] = True
                    for c in range(nt):
                        if mark[c]:
                            mark[c] = False
                            if c != sk:
                                act[na] = c
                                na += 1
                else:
                    for c in range(nt):
                        if c != sk:
                            act[na] = c
                            na += 1
                inv = 0.5 / xx
                for a in range(na):
                    score[a] = 0.0
                    a_act[a] = alpha[act[a]]
                sy = 0.0
                for k in range(indptr[i], indptr[i + 1]):
                    v = data[k]
                    j = indices[k]
                    sy += v * Wt[j, y]
                    for a in range(na):
                        score[a] += v * Wt[j, off + act[a]]
                if exact_rows:
                    n_mv, dy = _row_exact(a_act, score, sy, xx, ci, na, -1, tvec, bp, delta,
                                          moved)
                    na_loop = 0
                else:
                    n_mv = 0
                    dy = 0.0
                    na_loop = na
                for a in range(na_loop):
                    an = a_act[a] + (1.0 - sy + score[a]) * inv
                    if an < 0.0:
                        an = 0.0
                    elif an > ci:
                        an = ci
                    d = an - a_act[a]
                    if d != 0.0:
                        sy += d * xx
                        dy += d
                        a_act[a] = an
                        delta[n_mv] = d
                        moved[n_mv] = a
                        n_mv += 1
                for u in range(n_mv):
                    alpha[act[moved[u]]] = a_act[moved[u]]
                    moved[u] = act[moved[u]]
                if n_mv:
                    n_moved += n_mv
                    for k in range(indptr[i], indptr[i + 1]):
                        v = data[k]
                        j = indices[k]
                        Wt[j, y] += dy * v
                        for u in range(n_mv):
                            Wt[j, off + moved[u]] -= delta[u] * v
            else:
                for c in range(nt):
                    if c == sk:
                        continue
                    if alpha[c] != ci:
                        n_moved += 1
                    alpha[c] = ci
            if nnz + nt > size:
                size = max(2 * size, nnz + nt)
                buf_row, buf_col, buf_val = _grow(buf_row, buf_col, buf_val, nnz, size)
            for c in range(nt):
                v = alpha[c]
                if v != 0.0:
                    buf_row[nnz] = i
                    buf_col[nnz] = c
                    buf_val[nnz] = v
                    nnz += 1
                    alpha[c] = 0.0
        if n_vis < n:  # carry the rows not visited over unchanged
            extra = 0
            for i in range(n):
                if not visited[i]:
                    extra += cur_indptr[i + 1] - cur_indptr[i]
            if nnz + extra > size:
                size = nnz + extra
                buf_row, buf_col, buf_val = _grow(buf_row, buf_col, buf_val, nnz, size)
            for i in range(n):
                if not visited[i]:
                    for k in range(cur_indptr[i], cur_indptr[i + 1]):
                        buf_row[nnz] = i
                        buf_col[nnz] = cur_indices[k]
                        buf_val[nnz] = cur_data[k]
                        nnz += 1
        # counting sort of the visited-order triples into CSR (rows ascending)
        new_indptr = np.zeros(n + 1, np.int64)
        for k in range(nnz):
            new_indptr[buf_row[k] + 1] += 1
        for r in range(n):
            new_indptr[r + 1] += new_indptr[r]
        pos = new_indptr[:-1].copy()
        new_indices = np.empty(nnz, np.int32)
        new_data = np.empty(nnz, np.float64)
        for k in range(nnz):
            r = buf_row[k]
            j = pos[r]
            new_indices[j] = buf_col[k]
            new_data[j] = buf_val[k]
            pos[r] = j + 1
        cur_indptr, cur_indices, cur_data = new_indptr, new_indices, new_data
    total = 0.0
    for k in range(cur_data.shape[0]):
        total += cur_data[k]
    return cur_indptr, cur_indices, cur_data, total, n_moved


@njit(nogil=True, cache=True)
def ww_own_scores(indptr, indices, data, label, Wt):
    """``s_i = w_{y_i} . x_i`` with ``w_{y_i}`` the column ``label[i]`` of ``Wt``; float64 (n,)."""
    n = label.shape[0]
    out = np.zeros(n)
    for i in range(n):
        y = label[i]
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * Wt[indices[k], y]
        out[i] = s
    return out


@njit(nogil=True, cache=True)
def ww_hinge_sums(indptr, indices, data, own, label, Wt, intra):
    """Per-row WW hinge sums against the classes held in the columns of ``Wt``.

    ``h_i = sum_c max(0, 1 - own[i] + w_c . x_i)`` over the columns ``c`` of
    ``Wt``, skipping ``c == label[i]`` when ``intra`` (``Wt`` holds the row's
    own bundle). ``own[i]`` is ``w_{y_i} . x_i`` (:func:`ww_own_scores`).

    Returns float64 (n,). Time ``O(nnz * n_classes_in_Wt)``; memory one
    vector of ``n_classes_in_Wt`` floats. (:func:`ww_hinge_screen` with an
    empty working set.)
    """
    return ww_hinge_screen(indptr, indices, data, own, label, Wt, intra, 0, -np.inf)[0]


@njit(nogil=True, cache=True)
def ww_hinge_screen(indptr, indices, data, own, label, Wt, intra, col0, margin):
    """:func:`ww_hinge_sums` plus each row's **working set** against these classes.

    Class ``c`` (column ``c`` of ``Wt``) enters row ``i``'s working set when
    its hinge argument ``1 - own[i] + w_c . x_i > -margin``, i.e. the row
    misses class ``c`` by less than ``1 + margin``: those are the variables
    whose gradient is positive or nearly so. (A variable outside the set
    keeps its value while the set is in use; it enters the set of the next
    certificate as soon as it violates, so the certificate, which always
    sees every variable, decides convergence.)

    Returns ``(h, ws_indptr, ws_indices)``: the hinge sums, float64 (n,), and
    the working set as a CSR pattern whose column indices are ``col0 + c``
    (int32).
    """
    n = own.shape[0]
    nc = Wt.shape[1]
    score = np.zeros(nc)
    out = np.zeros(n)
    ws_indptr = np.zeros(n + 1, np.int64)
    size = max(16, 4 * n)
    ws_indices = np.empty(size, np.int32)
    nnz = 0
    for i in range(n):
        _scores(indptr, indices, data, i, Wt, 0, nc, score)
        h = 0.0
        base = 1.0 - own[i]
        if nnz + nc > size:
            size = max(2 * size, nnz + nc)
            grown = np.empty(size, np.int32)
            grown[:nnz] = ws_indices[:nnz]
            ws_indices = grown
        for c in range(nc):
            if intra and c == label[i]:
                continue
            v = base + score[c]
            if v > 0.0:
                h += v
            if v > -margin:
                ws_indices[nnz] = col0 + c
                nnz += 1
        out[i] = h
        ws_indptr[i + 1] = nnz
    return out, ws_indptr, ws_indices[:nnz].copy()
