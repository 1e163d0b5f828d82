"""SMO for C-SVC with bias (LIBSVM's dual), and kernel evaluation against support vectors.

The problem (formulations.md, section 3), in LIBSVM's minimisation form::

    min_a  f(a) = 1/2 a^T Q a - e^T a    s.t.  0 <= a_i <= c_i,  y^T a = 0,
    Q_ij = y_i y_j K(x_i, x_j),  y_i in {-1, +1}.

Gradient ``G = Q a - e``. With ``I_up = {t: y_t = +1, a_t < c_t} u {t: y_t = -1,
a_t > 0}`` and ``I_low = {t: y_t = +1, a_t > 0} u {t: y_t = -1, a_t < c_t}``,
``m(a) = max_{I_up} -y_t G_t`` and ``M(a) = min_{I_low} -y_t G_t``; a is optimal
iff m(a) <= M(a), and the solver stops when m(a) - M(a) <= tol (the maximal
violating pair's gap, LIBSVM's rule).

One iteration picks a pair (i, j) by the second-order rule of Fan, Chen and
Lin (JMLR 2005, WSS2): i maximises -y_i G_i over I_up; j minimises
``-(b_ij)^2 / a_ij`` over the t in I_low with ``b_it = -y_i G_i + y_t G_t > 0``,
where ``a_it = K_ii + K_tt - 2 K_it`` (``tau = 1e-12`` when not positive).
It then moves along ``u = y_i e_i - y_j e_j`` (which keeps y^T a fixed) by the
exact minimiser ``t* = b_ij / a_ij`` clipped to the box, and updates G with
two rows of Q.

Implementation (all of it serial, ``nogil`` and cached; plain arrays in,
small tuples out):

* Variables live in a permuted order (``perm[k]`` is the original row at
  position k) so that the active (unshrunk) ones are positions
  ``[0, active_size)``; shrinking swaps positions, as LIBSVM does.
* Kernel rows ``Q[k, 0:len]`` are cached as float32 arrays of varying length
  under a memory bound (``cache_floats`` float32 values, at least two full
  rows) with least-recently-used eviction; a swap of positions i < j swaps
  the two entries of every cached row that holds both and drops a cached row
  that holds only the first.
* Shrinking (every min(n, 1000) iterations): a bounded variable whose
  gradient says it cannot take part in a violating pair leaves the active
  set. When the gap first falls under 10 tol the whole gradient is rebuilt
  and every variable is active again; at the end the gradient of the shrunk
  variables is rebuilt from ``G_bar = sum_{a_j = c_j} c_j Q_:j`` and the
  free variables, and the stopping rule is checked again on all of them.
* The bias is LIBSVM's: ``rho`` is the mean of ``y_i G_i`` over the free
  variables (the midpoint of the feasible interval when none is free); the
  decision function is ``sum_j a_j y_j K(x_j, x) - rho``.

Rows come either dense (``Xd``, C-contiguous float64) or CSR
(``indptr, indices, data``, int64 / float64, no duplicate entries); ``sqn``
holds the squared row norms. Kernel ids follow LIBSVM: 0 linear
``x.z``, 1 poly ``(gamma x.z + coef0)^degree``, 2 rbf ``exp(-gamma
||x - z||^2)``, 3 sigmoid ``tanh(gamma x.z + coef0)`` (scikit-learn's
definitions).
"""

import numpy as np
from numba import njit

from .sdca import row_sq_norms

__all__ = [
    "KERNELS",
    "decision_block",
    "kernel_block",
    "smo_solve",
    "sq_norms",
]

KERNELS = {"linear": 0, "poly": 1, "rbf": 2, "sigmoid": 3}

LINEAR = 0
POLY = 1
RBF = 2
SIGMOID = 3

LOWER = 0
UPPER = 1
FREE = 2

TAU = 1e-12


# ----------------------------------------------------------------------------- kernel values


@njit(nogil=True, cache=True)
def sq_norms(dense, Xd, indptr, data):
    """Squared L2 norm of every row (dense rows when ``dense``, else the CSR ones)."""
    if dense:
        n = Xd.shape[0]
        out = np.empty(n)
        for i in range(n):
            s = 0.0
            for f in range(Xd.shape[1]):
                s += Xd[i, f] * Xd[i, f]
            out[i] = s
        return out
    return row_sq_norms(indptr, data)


@njit(nogil=True, cache=True)
def _kval(kid, dot, dist2, gamma, coef0, degree):
    """K from the dot product (and, for rbf, the squared distance)."""
    if kid == RBF:
        return np.exp(-gamma * dist2)
    if kid == LINEAR:
        return dot
    if kid == POLY:
        return (gamma * dot + coef0) ** degree
    return np.tanh(gamma * dot + coef0)


@njit(nogil=True, cache=True)
def _self_kernel(kid, sq, gamma, coef0, degree):
    """K(x, x) from ||x||^2."""
    return _kval(kid, sq, 0.0, gamma, coef0, degree)


@njit(nogil=True, cache=True)
def _fill_row(out, oi, yi, start, end, perm, yp, dense, Xd, indptr, indices, data, sqn,
              kid, gamma, coef0, degree, work):
    """out[k] = yi * yp[k] * K(x_oi, x_perm[k]) for k in [start, end) (``work``: zeros)."""
    if dense:
        d = Xd.shape[1]
        if kid == RBF:
            for k in range(start, end):
                oj = perm[k]
                s = 0.0
                for f in range(d):
                    t = Xd[oi, f] - Xd[oj, f]
                    s += t * t
                out[k] = yi * yp[k] * np.exp(-gamma * s)
        else:
            for k in range(start, end):
                oj = perm[k]
                s = 0.0
                for f in range(d):
                    s += Xd[oi, f] * Xd[oj, f]
                out[k] = yi * yp[k] * _kval(kid, s, 0.0, gamma, coef0, degree)
        return
    for p in range(indptr[oi], indptr[oi + 1]):
        work[indices[p]] = data[p]
    sqi = sqn[oi]
    if kid == RBF:
        for k in range(start, end):
            oj = perm[k]
            s = 0.0
            for p in range(indptr[oj], indptr[oj + 1]):
                s += data[p] * work[indices[p]]
            d2 = sqi + sqn[oj] - 2.0 * s
            d2 = max(d2, 0.0)
            out[k] = yi * yp[k] * np.exp(-gamma * d2)
    else:
        for k in range(start, end):
            oj = perm[k]
            s = 0.0
            for p in range(indptr[oj], indptr[oj + 1]):
                s += data[p] * work[indices[p]]
            out[k] = yi * yp[k] * _kval(kid, s, 0.0, gamma, coef0, degree)
    for p in range(indptr[oi], indptr[oi + 1]):
        work[indices[p]] = 0.0


# ----------------------------------------------------------------------------- LRU row cache


@njit(nogil=True, cache=True)
def _lru_remove(prv, nxt, i):
    nxt[prv[i]] = nxt[i]
    prv[nxt[i]] = prv[i]


@njit(nogil=True, cache=True)
def _lru_append(prv, nxt, head, i):
    # most recently used just before the sentinel ``head``; eviction takes nxt[head]
    last = prv[head]
    nxt[last] = i
    prv[i] = last
    nxt[i] = head
    prv[head] = i


@njit(nogil=True, cache=True)
def _get_q(i, length, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd, indptr,
           indices, data, sqn, kid, gamma, coef0, degree, work):
    """Q[i, 0:length] (position order), from the cache or computed (and cached)."""
    head = row_len.shape[0]
    old = row_len[i]
    if old > 0:
        _lru_remove(prv, nxt, i)
    if old < length:
        need = length - old
        spare = empty
        while mem[0] + need > mem[1] and nxt[head] != head:
            h = nxt[head]
            _lru_remove(prv, nxt, h)
            mem[0] -= row_len[h]
            row_len[h] = 0
            if rows[h].shape[0] == length:
                spare = rows[h]  # reuse an evicted row of the same length
            rows[h] = empty
        if spare.shape[0] == length:
            new = spare
        else:
            new = np.empty(length, dtype=np.float32)
        if old > 0:
            new[:old] = rows[i][:old]
        _fill_row(new, perm[i], yp[i], old, length, perm, yp, dense, Xd, indptr, indices,
                  data, sqn, kid, gamma, coef0, degree, work)
        rows[i] = new
        row_len[i] = length
        mem[0] += need
    _lru_append(prv, nxt, head, i)
    return rows[i]


# ----------------------------------------------------------------------------- solver pieces


@njit(nogil=True, cache=True)
def _status(a, c):
    if a >= c:
        return UPPER
    if a <= 0.0:
        return LOWER
    return FREE


@njit(nogil=True, cache=True)
def _swap(i, j, perm, yp, cp, a, st, G, Gbar, QD, rows, row_len, prv, nxt, mem, empty):
    """Exchange positions i and j of every per-variable array and of the cache."""
    if i == j:
        return
    perm[i], perm[j] = perm[j], perm[i]
    yp[i], yp[j] = yp[j], yp[i]
    cp[i], cp[j] = cp[j], cp[i]
    a[i], a[j] = a[j], a[i]
    st[i], st[j] = st[j], st[i]
    G[i], G[j] = G[j], G[i]
    Gbar[i], Gbar[j] = Gbar[j], Gbar[i]
    QD[i], QD[j] = QD[j], QD[i]
    head = row_len.shape[0]
    if row_len[i] > 0:
        _lru_remove(prv, nxt, i)
    if row_len[j] > 0:
        _lru_remove(prv, nxt, j)
    ri = rows[i]
    rows[i] = rows[j]
    rows[j] = ri
    row_len[i], row_len[j] = row_len[j], row_len[i]
    if row_len[i] > 0:
        _lru_append(prv, nxt, head, i)
    if row_len[j] > 0:
        _lru_append(prv, nxt, head, j)
    lo = min(i, j)
    hi = max(i, j)
    h = nxt[head]
    while h != head:
        hn = nxt[h]
        L = row_len[h]
        if L > lo:
            if L > hi:
                r = rows[h]
                t = r[lo]
                r[lo] = r[hi]
                r[hi] = t
            else:
                # the row holds column lo but not the value that moves there
                _lru_remove(prv, nxt, h)
                mem[0] -= L
                row_len[h] = 0
                rows[h] = empty
        h = hn


@njit(nogil=True, cache=True)
def _be_shrunk(k, yp, st, G, gmax1, gmax2):
    """Whether bounded variable k cannot join a violating pair (m = gmax1, M = -gmax2)."""
    if st[k] == UPPER:
        if yp[k] > 0.0:
            return -G[k] > gmax1
        return -G[k] > gmax2
    if st[k] == LOWER:
        if yp[k] > 0.0:
            return G[k] > gmax2
        return G[k] > gmax1
    return False


@njit(nogil=True, cache=True)
def _extremes(n_act, yp, st, G):
    """(m(a), -M(a)) over the first n_act positions: max_{I_up} -yG and max_{I_low} yG."""
    gmax1 = -np.inf
    gmax2 = -np.inf
    for k in range(n_act):
        if yp[k] > 0.0:
            if st[k] != UPPER and -G[k] > gmax1:
                gmax1 = -G[k]
            if st[k] != LOWER and G[k] > gmax2:
                gmax2 = G[k]
        else:
            if st[k] != UPPER and -G[k] > gmax2:
                gmax2 = -G[k]
            if st[k] != LOWER and G[k] > gmax1:
                gmax1 = G[k]
    return gmax1, gmax2


# ----------------------------------------------------------------------------- the solver


@njit(nogil=True, cache=True)
def smo_solve(dense, Xd, indptr, indices, data, sqn, y, c, alpha0, kid, gamma, coef0, degree,
              tol, cache_floats, shrinking, max_iter, n_features, grad0, gbar0):
    """Solve the C-SVC dual from the feasible start ``alpha0``.

    Parameters
    ----------
    dense : bool
        Rows are ``Xd`` (n, d) when true, else the CSR triple ``indptr, indices, data``.
    sqn : (n,) float64
        Squared row norms.
    y : (n,) float64 in {-1, +1};  c : (n,) float64 > 0, the per-row bounds.
    alpha0 : (n,) float64, feasible (0 <= a <= c, y^T a = 0).
    kid, gamma, coef0, degree : kernel (see the module docstring).
    tol : float, stop when m(a) - M(a) <= tol.
    cache_floats : int, memory bound of the kernel-row cache in float32 values.
    shrinking : bool;  max_iter : int;  n_features : int (CSR work vector).
    grad0, gbar0 : (n,) float64, or empty
        The gradient ``Q alpha0 - e`` and ``G_bar = sum_{alpha0_j = c_j} c_j Q_:j`` at
        the start, when the caller knows them (then no kernel row is computed before
        the first iteration); empty arrays: computed here, one row per non-zero alpha.

    Returns
    -------
    alpha : (n,) float64, in the input order.
    grad : (n,) float64, G = Q alpha - e (every entry current).
    rho : float, the decision function is sum_j alpha_j y_j K(x_j, x) - rho.
    obj : float, f(alpha) = 1/2 alpha^T Q alpha - e^T alpha.
    n_iter : int;  gap : float, m(a) - M(a) at the end.
    status : int, 0 converged, 1 stopped by max_iter.
    """
    n = y.shape[0]
    perm = np.arange(n)
    yp = y.copy()
    cp = c.copy()
    a = alpha0.copy()
    QD = np.empty(n)
    st = np.empty(n, dtype=np.int8)
    for k in range(n):
        QD[k] = _self_kernel(kid, sqn[k], gamma, coef0, degree)
        st[k] = _status(a[k], cp[k])

    empty = np.empty(0, dtype=np.float32)
    rows = [empty for _ in range(n)]
    row_len = np.zeros(n, dtype=np.int64)
    prv = np.empty(n + 1, dtype=np.int64)
    nxt = np.empty(n + 1, dtype=np.int64)
    prv[n] = n
    nxt[n] = n
    mem = np.zeros(2, dtype=np.int64)
    mem[1] = max(cache_floats, 2 * n)
    work = np.zeros(1 if dense else max(n_features, 1))

    # gradient and G_bar from the start point (given, or one kernel row per non-zero alpha)
    given = grad0.shape[0] == n and gbar0.shape[0] == n
    G = grad0.copy() if given else np.full(n, -1.0)
    Gbar = gbar0.copy() if given else np.zeros(n)
    if not given:
        for k in range(n):
            if st[k] != LOWER:
                Qk = _get_q(k, n, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd,
                            indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
                ak = a[k]
                for t in range(n):
                    G[t] += ak * Qk[t]
                if st[k] == UPPER:
                    ck = cp[k]
                    for t in range(n):
                        Gbar[t] += ck * Qk[t]

    active = n
    unshrunk = False
    counter = min(n, 1000) + 1
    n_iter = 0
    status = 1
    while n_iter < max_iter:
        counter -= 1
        if counter == 0:
            counter = min(n, 1000)
            if shrinking:
                gmax1, gmax2 = _extremes(active, yp, st, G)
                if not unshrunk and gmax1 + gmax2 <= 10.0 * tol:
                    unshrunk = True
                    _reconstruct(active, n, a, st, G, Gbar, rows, row_len, prv, nxt, mem, empty,
                                 perm, yp, dense, Xd, indptr, indices, data, sqn, kid, gamma,
                                 coef0, degree, work)
                    active = n
                k = 0
                while k < active:
                    if _be_shrunk(k, yp, st, G, gmax1, gmax2):
                        active -= 1
                        while active > k:
                            if not _be_shrunk(active, yp, st, G, gmax1, gmax2):
                                _swap(k, active, perm, yp, cp, a, st, G, Gbar, QD, rows,
                                      row_len, prv, nxt, mem, empty)
                                break
                            active -= 1
                    k += 1

        i, j = _select(active, yp, st, G, QD, tol, rows, row_len, prv, nxt, mem, empty, perm,
                       dense, Xd, indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
        if j < 0:
            _reconstruct(active, n, a, st, G, Gbar, rows, row_len, prv, nxt, mem, empty, perm,
                         yp, dense, Xd, indptr, indices, data, sqn, kid, gamma, coef0, degree,
                         work)
            active = n
            i, j = _select(active, yp, st, G, QD, tol, rows, row_len, prv, nxt, mem, empty,
                           perm, dense, Xd, indptr, indices, data, sqn, kid, gamma, coef0,
                           degree, work)
            if j < 0:
                status = 0
                break
            counter = 1  # shrink at the next iteration
        n_iter += 1

        Qi = _get_q(i, active, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd,
                    indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
        Qj = _get_q(j, active, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd,
                    indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
        yi = yp[i]
        yj = yp[j]
        ai = a[i]
        aj = a[j]
        ci = cp[i]
        cj = cp[j]
        quad = QD[i] + QD[j] - 2.0 * yi * yj * Qi[j]
        if quad <= 0.0:
            quad = TAU
        # move a_i += yi t, a_j -= yj t; the exact minimiser, clipped to the box
        t = (-yi * G[i] + yj * G[j]) / quad
        if yi > 0.0:
            lo_i = -ai
            hi_i = ci - ai
        else:
            lo_i = ai - ci
            hi_i = ai
        if yj > 0.0:
            lo_j = aj - cj
            hi_j = aj
        else:
            lo_j = -aj
            hi_j = cj - aj
        hi = min(hi_i, hi_j)
        lo = max(lo_i, lo_j)
        t = min(t, hi)
        t = max(t, lo)
        new_i = ai + yi * t
        new_j = aj - yj * t
        # land exactly on the bound that clipped the step
        if t == hi_i:
            new_i = ci if yi > 0.0 else 0.0
        elif t == lo_i:
            new_i = 0.0 if yi > 0.0 else ci
        if t == hi_j:
            new_j = 0.0 if yj > 0.0 else cj
        elif t == lo_j:
            new_j = cj if yj > 0.0 else 0.0
        if new_i < 0.0:
            new_i = 0.0
        elif new_i > ci:
            new_i = ci
        if new_j < 0.0:
            new_j = 0.0
        elif new_j > cj:
            new_j = cj
        a[i] = new_i
        a[j] = new_j
        dai = new_i - ai
        daj = new_j - aj
        for k in range(active):
            G[k] += Qi[k] * dai + Qj[k] * daj

        ui = st[i] == UPPER
        uj = st[j] == UPPER
        st[i] = _status(new_i, ci)
        st[j] = _status(new_j, cj)
        if ui != (st[i] == UPPER):
            Qf = _get_q(i, n, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd, indptr,
                        indices, data, sqn, kid, gamma, coef0, degree, work)
            s = -ci if ui else ci
            for k in range(n):
                Gbar[k] += s * Qf[k]
        if uj != (st[j] == UPPER):
            Qf = _get_q(j, n, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd, indptr,
                        indices, data, sqn, kid, gamma, coef0, degree, work)
            s = -cj if uj else cj
            for k in range(n):
                Gbar[k] += s * Qf[k]

    if active < n:
        _reconstruct(active, n, a, st, G, Gbar, rows, row_len, prv, nxt, mem, empty, perm, yp,
                     dense, Xd, indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
        active = n
    gmax1, gmax2 = _extremes(n, yp, st, G)

    # bias (LIBSVM's rho) and objective
    ub = np.inf
    lb = -np.inf
    n_free = 0
    s_free = 0.0
    obj = 0.0
    for k in range(n):
        yg = yp[k] * G[k]
        obj += a[k] * (G[k] - 1.0)
        if st[k] == UPPER:
            if yp[k] < 0.0:
                ub = min(ub, yg)
            else:
                lb = max(lb, yg)
        elif st[k] == LOWER:
            if yp[k] > 0.0:
                ub = min(ub, yg)
            else:
                lb = max(lb, yg)
        else:
            n_free += 1
            s_free += yg
    if n_free > 0:
        rho = s_free / n_free
    else:
        rho = 0.5 * (ub + lb)

    alpha = np.empty(n)
    grad = np.empty(n)
    for k in range(n):
        alpha[perm[k]] = a[k]
        grad[perm[k]] = G[k]
    return alpha, grad, rho, 0.5 * obj, n_iter, gmax1 + gmax2, status


@njit(nogil=True, cache=True)
def _select(active, yp, st, G, QD, tol, rows, row_len, prv, nxt, mem, empty, perm, dense, Xd,
            indptr, indices, data, sqn, kid, gamma, coef0, degree, work):
    """WSS2 over the first ``active`` positions: (i, j), or (-1, -1) when m - M < tol."""
    gmax = -np.inf
    imax = -1
    for t in range(active):
        if yp[t] > 0.0:
            if st[t] != UPPER and -G[t] >= gmax:
                gmax = -G[t]
                imax = t
        else:
            if st[t] != LOWER and G[t] >= gmax:
                gmax = G[t]
                imax = t
    if imax < 0:
        return -1, -1
    i = imax
    Qi = _get_q(i, active, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd, indptr,
                indices, data, sqn, kid, gamma, coef0, degree, work)
    yi = yp[i]
    qdi = QD[i]
    gmax2 = -np.inf
    jmin = -1
    best = np.inf
    for t in range(active):
        if yp[t] > 0.0:
            if st[t] != LOWER:
                gd = gmax + G[t]
                gmax2 = max(G[t], gmax2)
                if gd > 0.0:
                    q = qdi + QD[t] - 2.0 * yi * Qi[t]
                    if q <= 0.0:
                        q = TAU
                    od = -(gd * gd) / q
                    if od <= best:
                        best = od
                        jmin = t
        else:
            if st[t] != UPPER:
                gd = gmax - G[t]
                gmax2 = max(-G[t], gmax2)
                if gd > 0.0:
                    q = qdi + QD[t] + 2.0 * yi * Qi[t]
                    if q <= 0.0:
                        q = TAU
                    od = -(gd * gd) / q
                    if od <= best:
                        best = od
                        jmin = t
    if gmax + gmax2 < tol or jmin < 0:
        return -1, -1
    return i, jmin


@njit(nogil=True, cache=True)
def _reconstruct(active, n, a, st, G, Gbar, rows, row_len, prv, nxt, mem, empty, perm, yp,
                 dense, Xd, indptr, indices, data, sqn, kid, gamma, coef0, degree, work):
    """Rebuild G on the shrunk positions [active, n) from G_bar and the free variables."""
    if active >= n:
        return
    for k in range(active, n):
        G[k] = Gbar[k] - 1.0
    n_free = 0
    for k in range(active):
        if st[k] == FREE:
            n_free += 1
    if n_free * n > 2 * active * (n - active):
        for k in range(active, n):
            Qk = _get_q(k, active, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd,
                        indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
            s = 0.0
            for t in range(active):
                if st[t] == FREE:
                    s += a[t] * Qk[t]
            G[k] += s
    else:
        for t in range(active):
            if st[t] == FREE:
                Qt = _get_q(t, n, rows, row_len, prv, nxt, mem, empty, perm, yp, dense, Xd,
                            indptr, indices, data, sqn, kid, gamma, coef0, degree, work)
                at = a[t]
                for k in range(active, n):
                    G[k] += at * Qt[k]


# ----------------------------------------------------------------------------- prediction


@njit(nogil=True, cache=True)
def kernel_block(dense_a, Xa, a_indptr, a_indices, a_data, a_sqn, dense_s, Xs, s_indptr,
                 s_indices, s_data, s_sqn, kid, gamma, coef0, degree, n_features):
    """K(a_i, s_j) for the rows a of one block against the rows s (support vectors).

    Returns a (n_a, n_s) float64 array. Dense against dense uses one matrix
    product; sparse rows are scattered into a dense work vector.
    """
    n_a = Xa.shape[0] if dense_a else a_indptr.shape[0] - 1
    n_s = Xs.shape[0] if dense_s else s_indptr.shape[0] - 1
    if dense_a and dense_s:
        dots = Xa @ Xs.T
    else:
        dots = np.zeros((n_a, n_s))
        work = np.zeros(max(n_features, 1))
        if not dense_s:
            # scatter each a row, gather over the sparse s rows
            for i in range(n_a):
                if dense_a:
                    for f in range(Xa.shape[1]):
                        work[f] = Xa[i, f]
                else:
                    for p in range(a_indptr[i], a_indptr[i + 1]):
                        work[a_indices[p]] = a_data[p]
                for j in range(n_s):
                    s = 0.0
                    for p in range(s_indptr[j], s_indptr[j + 1]):
                        s += s_data[p] * work[s_indices[p]]
                    dots[i, j] = s
                if dense_a:
                    for f in range(Xa.shape[1]):
                        work[f] = 0.0
                else:
                    for p in range(a_indptr[i], a_indptr[i + 1]):
                        work[a_indices[p]] = 0.0
        else:
            # sparse a rows against dense s rows
            for i in range(n_a):
                for j in range(n_s):
                    s = 0.0
                    for p in range(a_indptr[i], a_indptr[i + 1]):
                        s += a_data[p] * Xs[j, a_indices[p]]
                    dots[i, j] = s
    out = dots
    for i in range(n_a):
        for j in range(n_s):
            d = dots[i, j]
            if kid == RBF:
                d2 = a_sqn[i] + s_sqn[j] - 2.0 * d
                d2 = max(d2, 0.0)
                out[i, j] = np.exp(-gamma * d2)
            else:
                out[i, j] = _kval(kid, d, 0.0, gamma, coef0, degree)
    return out


#: dense rows of at most this many features: ``decision_block`` fuses kernel and sum
FUSED_MAX_FEATURES = 16


@njit(nogil=True, cache=True)
def _fused_dense_sums(Xa, Xs, coef, intercept, kid, gamma, coef0, degree):
    """``K(A, S) @ coef + intercept`` for dense rows of few features, one pair at a time.

    No kernel block is stored: for a handful of features the matrix product of
    :func:`kernel_block` (a BLAS call with an inner dimension of 3, say) and the
    block's memory traffic cost more than the kernel values themselves. rbf takes
    ``||a - s||^2`` directly (no cancellation in ``|a|^2 + |s|^2 - 2 a.s``).
    """
    n_a, d = Xa.shape
    n_s = Xs.shape[0]
    n_out = coef.shape[1]
    out = np.empty((n_a, n_out))
    acc = np.zeros(n_out)
    for i in range(n_a):
        for k in range(n_out):
            acc[k] = intercept[k]
        for j in range(n_s):
            if kid == RBF:
                d2 = 0.0
                for f in range(d):
                    t = Xa[i, f] - Xs[j, f]
                    d2 += t * t
                kv = np.exp(-gamma * d2)
            else:
                dot = 0.0
                for f in range(d):
                    dot += Xa[i, f] * Xs[j, f]
                kv = _kval(kid, dot, 0.0, gamma, coef0, degree)
            for k in range(n_out):
                acc[k] += kv * coef[j, k]
        for k in range(n_out):
            out[i, k] = acc[k]
    return out


@njit(nogil=True, cache=True)
def decision_block(dense_a, Xa, a_indptr, a_indices, a_data, a_sqn, dense_s, Xs, s_indptr,
                   s_indices, s_data, s_sqn, coef, intercept, kid, gamma, coef0, degree,
                   n_features, chunk):
    """``K(A, S) @ coef + intercept`` for one block A, ``chunk`` rows of K at a time
    (dense rows of at most ``FUSED_MAX_FEATURES`` features: :func:`_fused_dense_sums`).

    ``coef`` is (n_s, n_out) (one column per binary classifier), ``intercept`` (n_out,).
    Returns (n_a, n_out) float64.
    """
    if dense_a and dense_s and Xa.shape[1] <= FUSED_MAX_FEATURES:
        return _fused_dense_sums(Xa, Xs, coef, intercept, kid, gamma, coef0, degree)
    n_a = Xa.shape[0] if dense_a else a_indptr.shape[0] - 1
    n_out = coef.shape[1]
    out = np.empty((n_a, n_out))
    start = 0
    while start < n_a:
        stop = min(n_a, start + chunk)
        if dense_a:
            K = kernel_block(True, Xa[start:stop], a_indptr, a_indices, a_data,
                             a_sqn[start:stop], dense_s, Xs, s_indptr, s_indices, s_data, s_sqn,
                             kid, gamma, coef0, degree, n_features)
        else:
            p0 = a_indptr[start]
            ip = a_indptr[start:stop + 1] - p0
            K = kernel_block(False, Xa, ip, a_indices[p0:a_indptr[stop]],
                             a_data[p0:a_indptr[stop]], a_sqn[start:stop], dense_s, Xs,
                             s_indptr, s_indices, s_data, s_sqn, kid, gamma, coef0, degree,
                             n_features)
        part = K @ coef
        for i in range(stop - start):
            for k in range(n_out):
                out[start + i, k] = part[i, k] + intercept[k]
        start = stop
    return out
