"""Numba kernels of the Weston-Watkins (WW) multiclass SVM.

Objective (formulations.md, section 2a), with per-row caps ``C_i = C * weight_i``::

    P(W) = 1/2 sum_c ||w_c||^2 + sum_i C_i sum_{c != y_i} max(0, 1 - (w_{y_i} - w_c).x_i)
    D(alpha) = sum_{i, c != y_i} alpha_{i,c} - 1/2 sum_c ||w_c||^2,   0 <= alpha_{i,c} <= C_i

Coordinate step on ``alpha_{i,c}``: ``g = 1 - (w_{y_i} - w_c).x_i``,
``alpha' = clip(alpha + g / (2 ||x_i||^2), 0, C_i)``, ``d = alpha' - alpha``,
``w_{y_i} += d x_i``, ``w_c -= d x_i``.

The kernels see only plain arrays: rows as a CSR triple ``(indptr, indices,
data)``; weight vectors as one dense C-ordered float64 matrix ``W`` whose
columns are the column space of ``indices`` (all ``d`` features, or only the
columns a bundle touches, renumbered by the caller); dual variables of one
*segment* (the rows of one bundle against the classes of one bundle) as a CSR
triple of their non-zeros, ``(s_indptr, s_indices, s_data)``, with row ``i``
holding ``alpha_{i, c}`` at column ``c`` (the position of the target class in
the target bundle).

Memory of one call of :func:`ww_cd_pass`: ``W`` (``(n_own + n_tgt) * m * 8``
bytes, updated in place), a scratch vector of ``n_tgt`` floats, and the new
segment (at most ``n_rows * n_tgt`` non-zeros, 20 bytes each while being
built). Time: ``O(n_tgt * nnz)`` per pass (one sparse dot per variable, two
sparse axpys per variable that moves).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ww_cd_pass", "ww_hinge_sums", "ww_own_scores", "ww_segment_sum"]


@njit(nogil=True, cache=True)
def _dot(indptr, indices, data, i, W, r):
    s = 0.0
    for k in range(indptr[i], indptr[i + 1]):
        s += data[k] * W[r, indices[k]]
    return s


@njit(nogil=True, cache=True)
def _axpy(indptr, indices, data, i, W, r, a):
    for k in range(indptr[i], indptr[i + 1]):
        W[r, indices[k]] += a * data[k]


@njit(nogil=True, cache=True)
def ww_cd_pass(indptr, indices, data, sqnorm, label, cap, W, tgt_off, n_tgt, intra,
               s_indptr, s_indices, s_data, seed, passes):
    """Dual coordinate ascent over one segment of WW dual variables.

    The variables are ``alpha_{i,c}`` for every row ``i`` and every target
    class ``c`` in ``0..n_tgt-1`` (skipping ``c == label[i]`` when ``intra``).
    Row ``i``'s own class weight vector is ``W[label[i]]``; target ``c``'s is
    ``W[tgt_off + c]``. Rows are visited in a fresh random order each pass,
    and for each row all its targets in turn.

    Parameters
    ----------
    indptr, indices, data : CSR triple, ``n`` rows
    sqnorm : float64 (n,)
        ``||x_i||^2``. A row with ``sqnorm == 0`` has constant gradient 1:
        its variables go straight to ``cap[i]`` and ``W`` does not change.
    label : int64 (n,)
        Row of ``W`` holding the row's own class.
    cap : float64 (n,)
        Upper bounds ``C_i``.
    W : float64 (n_w, m), C-ordered
        Weight vectors, updated **in place**.
    tgt_off, n_tgt : int
        Target classes are rows ``tgt_off .. tgt_off + n_tgt - 1`` of ``W``.
    intra : bool
        Targets are the own bundle (``tgt_off == 0``): skip ``c == label[i]``.
    s_indptr, s_indices, s_data : CSR triple, ``n`` rows by ``n_tgt`` columns
        Current non-zero dual variables of the segment.
    seed : int
        Seed of the row permutations.
    passes : int
        Number of passes over all variables.

    Returns
    -------
    indptr (int64, n + 1), indices (int32), data (float64) :
        The new segment (non-zeros only, sorted by row then column).
    total : float
        Sum of the new segment's variables.
    n_moved : int
        Number of coordinate steps that changed a variable.
    """
    n = sqnorm.shape[0]
    np.random.seed(seed)
    scratch = np.zeros(n_tgt)
    cur_indptr = s_indptr.astype(np.int64)
    cur_indices = s_indices.astype(np.int32)
    cur_data = s_data.astype(np.float64)
    n_moved = 0
    for _ in range(passes):
        perm = np.random.permutation(n)
        size = max(16, cur_data.shape[0] + n_tgt)
        buf_row = np.empty(size, np.int64)
        buf_col = np.empty(size, np.int32)
        buf_val = np.empty(size, np.float64)
        nnz = 0
        for t in range(n):
            i = perm[t]
            for k in range(cur_indptr[i], cur_indptr[i + 1]):
                scratch[cur_indices[k]] = cur_data[k]
            y = label[i]
            xx = sqnorm[i]
            ci = cap[i]
            if xx > 0.0:
                inv = 0.5 / xx
                sy = _dot(indptr, indices, data, i, W, y)
                for c in range(n_tgt):
                    if intra and c == y:
                        continue
                    a = scratch[c]
                    sc = _dot(indptr, indices, data, i, W, tgt_off + c)
                    an = a + (1.0 - sy + sc) * inv
                    if an < 0.0:
                        an = 0.0
                    elif an > ci:
                        an = ci
                    d = an - a
                    if d != 0.0:
                        _axpy(indptr, indices, data, i, W, y, d)
                        _axpy(indptr, indices, data, i, W, tgt_off + c, -d)
                        sy += d * xx
                        scratch[c] = an
                        n_moved += 1
            else:
                for c in range(n_tgt):
                    if intra and c == y:
                        continue
                    if scratch[c] != ci:
                        n_moved += 1
                    scratch[c] = ci
            if nnz + n_tgt > size:
                size = max(2 * size, nnz + n_tgt)
                nr = np.empty(size, np.int64)
                nc = np.empty(size, np.int32)
                nv = np.empty(size, np.float64)
                nr[:nnz] = buf_row[:nnz]
                nc[:nnz] = buf_col[:nnz]
                nv[:nnz] = buf_val[:nnz]
                buf_row, buf_col, buf_val = nr, nc, nv
            for c in range(n_tgt):
                v = scratch[c]
                if v != 0.0:
                    buf_row[nnz] = i
                    buf_col[nnz] = c
                    buf_val[nnz] = v
                    nnz += 1
                    scratch[c] = 0.0
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
def ww_own_scores(indptr, indices, data, label, W):
    """``s_i = w_{y_i} . x_i`` with ``w_{y_i} = W[label[i]]``; float64 (n,)."""
    n = label.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = _dot(indptr, indices, data, i, W, label[i])
    return out


@njit(nogil=True, cache=True)
def ww_hinge_sums(indptr, indices, data, own, label, W, intra):
    """Per-row WW hinge sums against the classes held in ``W``.

    ``h_i = sum_c max(0, 1 - own[i] + W[c] . x_i)`` over the rows ``c`` of
    ``W``, skipping ``c == label[i]`` when ``intra`` (``W`` holds the row's
    own bundle). ``own[i]`` is ``w_{y_i} . x_i`` (:func:`ww_own_scores`).

    Returns float64 (n,). Time ``O(nnz * n_classes_in_W)``, no extra memory.
    """
    n = own.shape[0]
    nc = W.shape[0]
    out = np.zeros(n)
    for i in range(n):
        h = 0.0
        base = 1.0 - own[i]
        for c in range(nc):
            if intra and c == label[i]:
                continue
            v = base + _dot(indptr, indices, data, i, W, c)
            if v > 0.0:
                h += v
        out[i] = h
    return out


@njit(nogil=True, cache=True)
def ww_segment_sum(s_data):
    """Sum of a segment's dual variables."""
    total = 0.0
    for k in range(s_data.shape[0]):
        total += s_data[k]
    return total
