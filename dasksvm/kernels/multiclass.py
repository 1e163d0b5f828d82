"""Multiclass linear SVM kernels (LLW, Crammer-Singer, one-vs-rest) over one CSR block.

Every kernel works on one row block given as a CSR triple ``(indptr,
indices, data)`` whose column indices are *local*: they index the rows of a
block-local model ``W`` of shape (n_local_columns, K) (the model restricted
to the columns the block touches, one row per column, one column per class,
so that the K weights of one feature are contiguous). Labels ``y`` are class
indices 0..K-1 (int), ``c[i]`` is the row's bound C_i = C * weight_i and
``sqn[i] = ||x_i||^2``.

The ``*_loss`` kernels return the block's share of the primal loss at ``W``;
the ``*_local`` kernels run dual coordinate ascent on the block's CoCoA+ local
subproblem (formulations.md, sections 1b and 2b-2d): the gradient is taken
at the local view ``W + sigma * dW`` (``W - sigma * dU`` for LLW) and the
curvature of a coordinate is ``sigma * ||x_i||^2``. They update the dual
variables ``alpha`` (n_rows, K) in place and return the block's change of the
model in local columns. With one block and sigma = 1 they are plain
sequential dual coordinate descent (LIBLINEAR's).

All kernels are serial, ``nogil`` and cached; they never see a scipy, dask or
scikit-learn object.
"""

import numpy as np
from numba import njit

from .prefetch import AHEAD, prefetch, prefetch_csr_row
from .sdca import clip_step, row_sq_norms

__all__ = [
    "cs_local",
    "cs_loss",
    "cs_subproblem",
    "llw_local",
    "llw_loss",
    "ovr_local",
    "ovr_loss",
    "row_sq_norms",
]


@njit(nogil=True, cache=True)
def _scores(indptr, indices, data, i, W, out):
    """out[k] = W[:, k] . x_i for all k (W is (n_columns, K))."""
    K = W.shape[1]
    for k in range(K):
        out[k] = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        x = data[p]
        for k in range(K):
            out[k] += x * W[j, k]


@njit(nogil=True, cache=True)
def _joint_loss(indptr, indices, data, y, c, W, crammer_singer):
    """sum_i C_i loss_i(W^T x_i) over the block, for the machines with one
    loss per example: LLW's sum_{k != y_i} max(0, 1 + s_k), or
    (``crammer_singer``) CS's max_k ([k != y_i] + s_k - s_{y_i})."""
    n = indptr.shape[0] - 1
    K = W.shape[1]
    s = np.empty(K)
    loss = 0.0
    for i in range(n):
        ci = c[i]
        if ci <= 0.0:
            continue
        _scores(indptr, indices, data, i, W, s)
        yi = y[i]
        t = 0.0
        for k in range(K):
            if k == yi:
                continue
            if crammer_singer:
                t = max(t, 1.0 + s[k] - s[yi])
            elif s[k] > -1.0:
                t += 1.0 + s[k]
        loss += ci * t
    return loss


@njit(nogil=True, cache=True)
def _add_row_step(indptr, indices, shared, data, i, d, dW, view, sigma):
    """Row i's step d (one entry per model column, 0 = unchanged) into the
    block's change dW += d x_i^T (``indices``: the block's columns) and the
    view view += sigma d x_i^T (``shared``: the rows of the view, which the
    blocks of one worker may share)."""
    K = d.shape[0]
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        v = shared[p]
        x = data[p]
        for k in range(K):
            if d[k] != 0.0:
                dW[j, k] += d[k] * x
                view[v, k] += sigma * d[k] * x


# ----------------------------------------------------------------- LLW (2b)


@njit(nogil=True, cache=True)
def llw_loss(indptr, indices, data, y, c, W):
    """sum_i C_i sum_{k != y_i} max(0, 1 + w_k . x_i) over the block."""
    return _joint_loss(indptr, indices, data, y, c, W, False)


@njit(nogil=True, cache=True)
def llw_local(indptr, indices, shared, data, y, c, sqn, alpha, view, mv, dU, sigma, track_v,
              n_passes, seed):
    """Dual coordinate ascent on one block's LLW local subproblem.

    The LLW dual is D(alpha, v) = sum alpha - 1/2 sum_k ||u_k + v||^2 with
    u_k = sum_{i: y_i != k} alpha_{i,k} x_i; the shared model is
    W = -(U + v), and the round's v is optimal for its U, v = -(1/K) sum u_k.
    The block changes U by dU = sum_i d_{i,k} e_k x_i^T and maximizes

        sum d - <-W, dU> - sigma / 2 ||P dU||^2,   0 <= alpha + d <= C_i,

    with d_{i,y_i} = 0, visiting its rows in ``n_passes`` random permutations
    and, for each row, every class k != y_i.

    ``track_v`` chooses P: True keeps v optimal for the block's own changes
    (P = centering over classes, v eliminated: the local model of
    max_v D(alpha, v); coordinate curvature sigma (1 - 1/K) ||x_i||^2, and a
    step on class k also moves the other classes' scores through v);
    False holds v fixed during the passes (P = I, the classes decouple,
    curvature sigma ||x_i||^2) and leaves the v step to the client.

    Parameters
    ----------
    indices, shared : the rows' columns as the block's own (for ``dU``) and as
        rows of ``view`` / ``mv``
    alpha : ndarray (n_rows, K)
        Updated in place; alpha[i, y_i] stays 0.
    view : ndarray (n_view_columns, K)
        The round's model W - sigma dU, moved in place by this block (and by
        the other blocks sharing it).
    mv : ndarray (n_view_columns,)
        sigma * mean_k dU_k (v's local move) on the view's columns, moved in
        place when ``track_v``.
    dU : ndarray (n_local_columns, K), zeros
        Written: the block's change of U; W changes by -(dU - mean_k dU)
        after the client's v step.
    """
    n = indptr.shape[0] - 1
    K = view.shape[1]
    s = np.empty(K)
    d = np.empty(K)
    shrink = (1.0 - 1.0 / K) if track_v else 1.0
    np.random.seed(seed)
    for _ in range(n_passes):
        order = np.random.permutation(n)
        for t in range(n):
            if t + AHEAD < n:  # the row a few steps on, while this one is worked on
                j = order[t + AHEAD]
                prefetch_csr_row(indptr, indices, data, j)
                prefetch(alpha[j], 0, alpha.shape[1])
            i = order[t]
            ci = c[i]
            if ci <= 0.0:
                continue
            yi = y[i]
            for k in range(K):
                s[k] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = shared[p]
                x = data[p]
                base = mv[j] if track_v else 0.0
                for k in range(K):
                    s[k] += x * (view[j, k] + base)
            xx = sigma * sqn[i]
            q = xx * shrink
            moved = False
            dsum = 0.0
            for k in range(K):
                d[k] = 0.0
                if k == yi:
                    continue
                a = alpha[i, k]
                a_new = clip_step(a, 1.0 + s[k], q, ci)
                if a_new != a:
                    dk = a_new - a
                    d[k] = dk
                    dsum += dk
                    alpha[i, k] = a_new
                    moved = True
                    if track_v:
                        # exact scores after this step: every class gains
                        # sigma dk ||x||^2 / K through v, class k loses sigma dk ||x||^2
                        inc = xx * dk / K
                        for m in range(K):
                            s[m] += inc
                        s[k] -= xx * dk
            if moved:
                _add_row_step(indptr, indices, shared, data, i, d, dU, view, -sigma)
                if track_v:
                    dm = dsum / K
                    for p in range(indptr[i], indptr[i + 1]):
                        mv[shared[p]] += sigma * dm * data[p]
    return dU


# ------------------------------------------------------------------ CS (2c)


@njit(nogil=True, cache=True)
def cs_loss(indptr, indices, data, y, c, W):
    """sum_i C_i max_k ([k != y_i] + (w_k - w_{y_i}) . x_i) over the block."""
    return _joint_loss(indptr, indices, data, y, c, W, True)


@njit(nogil=True, cache=True)
def cs_subproblem(A, B, yi, cy, out, work):
    """Solve min_a sum_k (A/2 a_k^2 + B_k a_k)  s.t.  a_k <= cy [k = yi], sum_k a_k = 0.

    The Crammer-Singer per-example QP (Keerthi et al., KDD 2008). The KKT
    conditions give a_k = min(C_k, (beta - B_k) / A) for one scalar beta,
    where, with D_k = B_k + A C_k, beta solves sum_k max(0, D_k - beta) = A cy:
    sort D descending and grow the set of active entries until the next one
    falls below beta (O(K log K)). For A = 0 (an all-zero row) the problem is
    linear: a_{yi} = t, all of -t on the other class with the largest B_k,
    and t = cy when that lowers the objective, else 0.

    ``out`` (K,) receives the solution; ``work`` (K,) is scratch.
    """
    K = B.shape[0]
    if A <= 0.0:
        best = -1
        for k in range(K):
            if k != yi and (best < 0 or B[k] > B[best]):
                best = k
        for k in range(K):
            out[k] = 0.0
        if best >= 0 and B[yi] - B[best] < 0.0:
            out[yi] = cy
            out[best] = -cy
        return
    for k in range(K):
        work[k] = B[k]
    work[yi] += A * cy
    work.sort()  # ascending; read from the end for descending order
    beta = work[K - 1] - A * cy
    r = 1
    while r < K and beta < r * work[K - 1 - r]:
        beta += work[K - 1 - r]
        r += 1
    beta /= r
    for k in range(K):
        v = (beta - B[k]) / A
        bound = cy if k == yi else 0.0
        out[k] = min(bound, v)


@njit(nogil=True, cache=True)
def cs_local(indptr, indices, shared, data, y, c, sqn, alpha, view, dW, sigma, n_passes,
             seed):
    """Block coordinate descent on one block's Crammer-Singer local subproblem.

    Dual (as a minimization), w_k = sum_i alpha_{i,k} x_i:
    1/2 sum_k ||w_k||^2 + sum_i sum_{k != y_i} alpha_{i,k}, subject to
    alpha_{i,k} <= C_i [k = y_i] and sum_k alpha_{i,k} = 0. For each row in
    ``n_passes`` random permutations, the block alpha_i is set to the exact
    minimizer of the local model (gradient at W + sigma dW, curvature
    sigma ||x_i||^2), see :func:`cs_subproblem`.

    Parameters
    ----------
    indices, shared : the rows' columns as the block's own (for ``dW``) and as
        rows of ``view``
    view : ndarray (n_view_columns, K)
        The round's model plus sigma dW, moved in place by this block (and by
        the other blocks sharing it).
    dW : ndarray (n_local_columns, K), zeros
        Written and returned: the block's change of W.
    """
    n = indptr.shape[0] - 1
    K = view.shape[1]
    s = np.empty(K)
    B = np.empty(K)
    a_new = np.empty(K)
    work = np.empty(K)
    d = np.empty(K)
    np.random.seed(seed)
    for _ in range(n_passes):
        order = np.random.permutation(n)
        for t in range(n):
            if t + AHEAD < n:  # the row a few steps on, while this one is worked on
                j = order[t + AHEAD]
                prefetch_csr_row(indptr, indices, data, j)
                prefetch(alpha[j], 0, alpha.shape[1])
            i = order[t]
            ci = c[i]
            if ci <= 0.0:
                continue
            yi = y[i]
            _scores(indptr, shared, data, i, view, s)
            A = sigma * sqn[i]
            for k in range(K):
                B[k] = s[k] + (0.0 if k == yi else 1.0) - A * alpha[i, k]
            cs_subproblem(A, B, yi, ci, a_new, work)
            moved = False
            for k in range(K):
                d[k] = a_new[k] - alpha[i, k]
                if d[k] != 0.0:
                    alpha[i, k] = a_new[k]
                    moved = True
            if moved:
                _add_row_step(indptr, indices, shared, data, i, d, dW, view, sigma)
    return dW


# ----------------------------------------------------------------- OVR (2d)


@njit(nogil=True, cache=True)
def ovr_loss(indptr, indices, data, y, c, W, classes):
    """Per-class hinge losses sum_i C_i max(0, 1 - y^k_i w_k . x_i).

    ``W`` (n_local_columns, m) holds the models of the m classes listed in
    ``classes`` (int array); y^k_i = +1 if y_i = k else -1. Returns (m,).
    """
    n = indptr.shape[0] - 1
    m = W.shape[1]
    s = np.empty(m)
    out = np.zeros(m)
    for i in range(n):
        ci = c[i]
        if ci <= 0.0:
            continue
        _scores(indptr, indices, data, i, W, s)
        yi = y[i]
        for a in range(m):
            margin = s[a] if classes[a] == yi else -s[a]
            if margin < 1.0:
                out[a] += ci * (1.0 - margin)
    return out


@njit(nogil=True, cache=True)
def ovr_local(indptr, indices, shared, data, y, c, sqn, alpha, view, dW, classes, sigma,
              n_passes, seed):
    """Dual coordinate ascent on the local subproblems of m binary problems at once.

    Class k's problem is the binary hinge SVM (formulations.md section 1) of
    class k against the rest; its dual variables are alpha[:, k] in
    [0, C_i]. Each visit of row i takes one coordinate step on
    alpha[i, k] for every k in ``classes`` (the problems do not interact),
    with the gradient at the local view W + sigma dW.

    Parameters
    ----------
    indices, shared : the rows' columns as the block's own (for ``dW``) and as
        rows of ``view``
    alpha : ndarray (n_rows, K)
        All classes' duals; only the columns in ``classes`` change.
    view : ndarray (n_view_columns, m)
        Models of the m classes in ``classes`` plus sigma dW, moved in place by
        this block (and by the other blocks sharing it).
    dW : ndarray (n_local_columns, m), zeros
        Written and returned: the block's change.
    """
    n = indptr.shape[0] - 1
    m = view.shape[1]
    s = np.empty(m)
    d = np.empty(m)
    np.random.seed(seed)
    for _ in range(n_passes):
        order = np.random.permutation(n)
        for t in range(n):
            if t + AHEAD < n:  # the row a few steps on, while this one is worked on
                j = order[t + AHEAD]
                prefetch_csr_row(indptr, indices, data, j)
                prefetch(alpha[j], 0, alpha.shape[1])
            i = order[t]
            ci = c[i]
            if ci <= 0.0:
                continue
            yi = y[i]
            _scores(indptr, shared, data, i, view, s)
            q = sigma * sqn[i]
            moved = False
            for a in range(m):
                k = classes[a]
                sign = 1.0 if k == yi else -1.0
                old = alpha[i, k]
                new = clip_step(old, 1.0 - sign * s[a], q, ci)
                d[a] = 0.0
                if new != old:
                    d[a] = (new - old) * sign
                    alpha[i, k] = new
                    moved = True
            if moved:
                _add_row_step(indptr, indices, shared, data, i, d, dW, view, sigma)
    return dW
