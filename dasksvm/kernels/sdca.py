"""Binary linear SVM kernels: dual coordinate ascent (CoCoA+ local solver) and
subgradient partials, over one CSR block ``(indptr, indices, data)``, and the
CoCoA+ pair on a dense block ``X`` (``dense_*``: the same arithmetic, rows read
contiguously, no index arrays).

Notation follows formulations.md section 1: per-row bound ``c[i]`` (C times
the row's weight), labels ``y[i]`` in {-1, +1}, ``l2`` selects the squared
hinge. All kernels are serial, ``nogil`` and cached.
"""

import numpy as np
from numba import njit

from .prefetch import AHEAD, prefetch, prefetch_csr_row

__all__ = [
    "clip_step",
    "cocoa_local",
    "dense_cocoa_local",
    "dense_primal_dual_partials",
    "direction_partials",
    "gather_rows",
    "primal_dual_partials",
    "row_combination",
    "row_sq_norms",
    "subgradient_partials",
    "visiting_order",
]


#: the certificates' dot products may add their terms in any order (LLVM then vectorizes
#: them: 4.0 -> 1.4 ms for 98,022 dense float32 rows of 101 values; a CSR pass over 10^7
#: non-zeros 32 -> 26 ms); NaN and infinity keep their meaning
SUM_ANY_ORDER = {"reassoc", "contract", "nsz"}


@njit(nogil=True, cache=True)
def row_sq_norms(indptr, data):
    n = indptr.shape[0] - 1
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * data[p]
        out[i] = s
    return out


@njit(nogil=True, cache=True, fastmath=SUM_ANY_ORDER)
def _dot_row(indptr, indices, data, i, w):
    # row i of a CSR matrix dotted with w, its terms added in any order (as _dense_dot)
    s = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        s += data[p] * w[indices[p]]
    return s


@njit(nogil=True, cache=True)
def primal_dual_partials(indptr, indices, data, y, c, alpha, w, l2, lo, hi, active, with_u):
    """This block's share of P(w) and of two dual values, without ||.||^2 terms, and
    the rows the next local pass visits (shrinking).

    Parameters
    ----------
    lo, hi : float
        Shrinking thresholds (LIBLINEAR's rule, Hsieh et al. 2008, section 3.2):
        a row whose alpha_i is at 0 with gradient G_i > hi, or (hinge) at c_i
        with G_i < lo, is left out of the next pass; G_i = y_i w.x_i - 1
        (+ alpha_i / (2 c_i) for the squared hinge). -inf, inf keep every row.
    active : ndarray of int64 (n_rows,)
        Written: the kept rows in its first ``n_active`` entries.
    with_u : bool
        Sum ``u`` (below); False leaves it zero and skips its scatter over every
        violating row's non-zeros (about half of the pass: 58 -> 26 ms
        over 10^7 non-zeros).

    Returns
    -------
    loss : float
        sum_i c_i max(0, 1 - y_i w.x_i) (squared when ``l2``).
    dual : float
        sum_i alpha_i (- alpha_i^2 / (4 c_i) when ``l2``): D(alpha) + ||w(alpha)||^2 / 2.
    u : ndarray (n_columns,)
        sum_i beta_i y_i x_i for the dual point beta read off w by the
        loss's derivative: beta_i = c_i [m_i > 0] (hinge) or 2 c_i max(0, m_i)
        (squared hinge), m_i = 1 - y_i w.x_i. beta -> alpha* as w -> w* for
        the squared hinge, so D(beta) certifies a good w even when alpha lags.
    b_sum, b_sq : float
        sum_i beta_i and sum_i beta_i^2 / (4 c_i).
    n_active : int
    pg_lo, pg_hi : float
        The smallest and largest projected gradient over the rows: the
        thresholds for the next round (an empty side gives -inf / inf).
    """
    n = indptr.shape[0] - 1
    u = np.zeros(w.shape[0])
    acc = np.zeros(6)  # the running sums _LOSS ... _PG_HI
    n_active = 0
    for i in range(n):
        m = 1.0 - y[i] * _dot_row(indptr, indices, data, i, w)
        n_active, by = _account(i, m, y[i], alpha[i], c[i], l2, lo, hi, active, n_active, acc)
        if with_u and by != 0.0:
            for p in range(indptr[i], indptr[i + 1]):
                u[indices[p]] += by * data[p]
    return _finish(acc, u, n_active)


@njit(nogil=True, cache=True)
def dense_primal_dual_partials(X, y, c, alpha, w, l2, lo, hi, active, with_u):
    """:func:`primal_dual_partials` of a dense block ``X`` (n_rows, n_columns), float64 or
    float32, C-contiguous; ``w`` and the returned ``u`` have n_columns entries."""
    n, d = X.shape
    u = np.zeros(d)
    acc = np.zeros(6)  # the running sums _LOSS ... _PG_HI
    n_active = 0
    for i in range(n):
        x = X[i]
        m = 1.0 - y[i] * _dense_dot(x, w)
        n_active, by = _account(i, m, y[i], alpha[i], c[i], l2, lo, hi, active, n_active, acc)
        if with_u and by != 0.0:
            for k in range(d):
                u[k] += by * x[k]
    return _finish(acc, u, n_active)


# the certificate's running sums: loss, dual, b_sum, b_sq, smallest and largest projected
# gradient
_LOSS, _DUAL, _B_SUM, _B_SQ, _PG_LO, _PG_HI = range(6)


@njit(nogil=True, cache=True, inline="always")
def _account(i, m, yi, a, ci, l2, lo, hi, active, n_active, acc):
    # row i's shares at the margin m into ``acc``, kept in ``active`` or not (shrinking);
    # returns (n_active, beta_i y_i: the row's weight in u)
    acc[_DUAL] += _dual_term(a, ci, l2)
    keep, pg = _shrink_test(m, a, ci, l2, lo, hi)
    if keep:
        active[n_active] = i
        n_active += 1
    acc[_PG_LO] = min(acc[_PG_LO], pg)
    acc[_PG_HI] = max(acc[_PG_HI], pg)
    li, b, bq = _margin_terms(m, ci, l2)
    acc[_LOSS] += li
    acc[_B_SUM] += b
    acc[_B_SQ] += bq
    return n_active, b * yi


@njit(nogil=True, cache=True, inline="always")
def _finish(acc, u, n_active):
    # LIBLINEAR: a side with no violation shrinks nothing on the other next time
    lo = acc[_PG_LO] if acc[_PG_LO] < 0.0 else -np.inf
    hi = acc[_PG_HI] if acc[_PG_HI] > 0.0 else np.inf
    return acc[_LOSS], acc[_DUAL], u, acc[_B_SUM], acc[_B_SQ], n_active, lo, hi


@njit(nogil=True, cache=True, inline="always")
def _shrink_test(m, a, ci, l2, lo, hi):
    # (keep row i in the next pass, its projected gradient) at the margin m
    if ci <= 0.0:
        return False, 0.0
    g = -m
    if l2:
        g += a / (2.0 * ci)
    if a == 0.0:
        return g <= hi, min(g, 0.0)
    if not l2 and a >= ci:
        return g >= lo, max(g, 0.0)
    return True, g


@njit(nogil=True, cache=True, inline="always")
def _dual_term(a, ci, l2):
    # alpha_i - l2 alpha_i^2 / (4 c_i): row i's share of D(alpha) + ||w(alpha)||^2 / 2
    if l2 and a != 0.0:
        return a - a * a / (4.0 * ci)
    return a


@njit(nogil=True, cache=True, inline="always")
def _margin_terms(m, ci, l2):
    # (loss share, beta_i, beta_i^2 / (4 c_i)) at the margin m = 1 - y_i w.x_i
    if m <= 0.0 or ci <= 0.0:
        return 0.0, 0.0, 0.0
    if l2:
        b = 2.0 * ci * m
        return ci * m * m, b, b * b / (4.0 * ci)
    return ci * m, ci, 0.0




@njit(nogil=True, cache=True, fastmath=SUM_ANY_ORDER)
def _dense_dot(x, w):
    # x.w (not inlined by numba, which would drop the flags; LLVM inlines it with them)
    s = 0.0
    for k in range(x.shape[0]):
        s += x[k] * w[k]
    return s


@njit(nogil=True, cache=True)
def _permutation(n):
    # Fisher-Yates on numba's generator (seeded by np.random.seed in the caller)
    order = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = np.random.randint(0, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


@njit(nogil=True, cache=True)
def visiting_order(seed, n, n_steps):
    """The rows ``n_steps`` coordinate steps visit for ``seed``: whole random permutations
    of the ``n`` rows, the last one cut short (the order of :func:`cocoa_local` and
    :func:`dense_cocoa_local`)."""
    if n == 0 and n_steps > 0:
        raise ValueError("visiting_order: steps asked over no rows")
    np.random.seed(seed)
    out = np.empty(n_steps, dtype=np.int64)
    done = 0
    while done < n_steps:
        order = _permutation(n)
        m = min(n, n_steps - done)
        out[done : done + m] = order[:m]
        done += m
    return out


@njit(nogil=True, cache=True, inline="always")
def _prefetch_row_scalars(j, y, c, sqn, alpha):
    # row j's label, bound, squared norm and dual variable, for a step AHEAD steps on
    prefetch(y, j, j + 1)
    prefetch(c, j, j + 1)
    prefetch(sqn, j, j + 1)
    prefetch(alpha, j, j + 1)


#: rows a block steps through before it reads the other blocks' hot changes again (reading
#: them at every step would move their cache lines between the cores at every step)
REFRESH_ROWS = 32


@njit(nogil=True, cache=True, inline="always")
def _others(hot, me, out):
    # out = sum over the blocks b != me of hot[b]
    for h in range(out.shape[0]):
        t = 0.0
        for b in range(hot.shape[0]):
            if b != me:
                t += hot[b, h]
        out[h] = t


@njit(nogil=True, cache=True)
def cocoa_local(indptr, shared, data, y, c, sqn, alpha, z, hot, me, slot, sigma, l2, rows,
                n_steps, seed, spread_stop=0.0):
    """Dual coordinate ascent on one block's CoCoA+ local subproblem, in a shared view.

    Maximizes over the block's change d of alpha

        sum_i [(alpha_i + d_i) - l2 (alpha_i + d_i)^2 / (4 c_i)]
        - w.u - sigma / 2 ||u||^2,      u = acc + sum_i d_i y_i x_i,

    subject to 0 <= alpha_i + d_i <= c_i (hinge) or >= 0 (squared hinge),
    by at most ``n_steps`` coordinate steps over ``rows`` in random order (whole
    random permutations, the last one cut short). ``acc`` is the change of w
    made so far in this round by the blocks of the worker that share the view
    (at once on the worker's threads, as in PASSCoDe, or one after another):
    the worker's blocks act as one part of CoCoA+. With sigma = 1 and one
    block this is LIBLINEAR's dual coordinate descent, and with ``spread_stop`` its
    shrinking and stopping rule inside the round (:func:`_end_pass`).

    The view holds w + sigma acc in two parts. Its cold columns (``slot[j] < 0``,
    or all of them when ``slot`` is empty) are ``z`` itself, updated in place by
    every block (a lost update between threads only makes a later step see a
    slightly stale w). The others, the hot columns (the intercept, the most
    frequent features: what every row writes), read
    ``z[j] + sigma (hot[me] + sum_{b != me} hot[b])[slot[j]]``:
    the block adds only to its own row ``hot[me]`` and reads the other rows
    every :data:`REFRESH_ROWS` steps, so nothing is lost where the threads meet
    most and their cores do not fight over those cache lines. The block's exact
    change of w is :func:`row_combination` of its change of alpha.

    Parameters
    ----------
    indptr, data : the block's CSR rows
    shared : ndarray of int32
        The rows' column positions in the view (``z``).
    slot : ndarray of int32
        Each column's row in ``hot`` (-1: cold); empty: every column cold.
    alpha : ndarray (n_rows,)
        Updated in place to alpha + d.
    z : ndarray
        The view (see above), written on its cold columns.
    hot : ndarray (n_blocks, n_hot)
        The blocks' own changes of the hot columns; this block writes ``hot[me]``.
    rows : ndarray of int64
        The rows to visit (all, or those shrinking kept).
    spread_stop : float
        0: exactly ``n_steps`` steps, in the order of :func:`visiting_order`.
        In (0, 1): rows are also shrunk between passes, and the steps stop after
        a whole pass whose projected gradients spread over at most ``spread_stop``
        times the first pass's spread (see :func:`_end_pass`).

    Returns
    -------
    n_done : int
        The steps taken (a shrunk row's visit counts as one).
    """
    own = hot[me]
    others = np.zeros(hot.shape[1])
    slotted = slot.shape[0] > 0
    np.random.seed(seed)
    act, nxt, n_act, done = _pass_rows(rows, spread_stop)
    lo, hi, first = -np.inf, np.inf, 0.0
    while done < n_steps and n_act > 0:
        m = min(n_act, n_steps - done)
        order = _permutation(n_act)
        kept, pg_lo, pg_hi = 0, np.inf, -np.inf
        for k in range(m):
            if (done + k) % REFRESH_ROWS == 0 and hot.shape[0] > 1:
                _others(hot, me, others)
            if k + AHEAD < m:
                j = act[order[k + AHEAD]]
                prefetch_csr_row(indptr, shared, data, j)
                _prefetch_row_scalars(j, y, c, sqn, alpha)
            i = act[order[k]]
            s = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = shared[p]
                h = slot[j] if slotted else -1
                if h < 0:
                    s += data[p] * z[j]
                else:
                    s += data[p] * (z[j] + sigma * (own[h] + others[h]))
            if spread_stop > 0.0:
                keep, kept, pg_lo, pg_hi = _kept(i, s, y, alpha, c, l2, lo, hi, nxt, kept,
                                                 pg_lo, pg_hi)
                if not keep:
                    continue
            a_new = _coordinate_step(y[i] * s - 1.0, alpha[i], c[i], sqn[i], sigma, l2)
            delta = a_new - alpha[i]
            if delta != 0.0:
                alpha[i] = a_new
                dy = delta * y[i]
                for p in range(indptr[i], indptr[i + 1]):
                    j = shared[p]
                    h = slot[j] if slotted else -1
                    if h < 0:
                        z[j] += sigma * dy * data[p]
                    else:
                        own[h] += dy * data[p]
        done += m
        if spread_stop > 0.0 and m == n_act:  # a whole pass: its survivors are the next's
            act, nxt, n_act = nxt, act, kept
            stop, lo, hi, first = _end_pass(pg_lo, pg_hi, first, spread_stop)
            if stop:
                break
    return done


@njit(nogil=True, cache=True)
def gather_rows(indptrs, shared, datas, of, rows, indptr, pos, data):
    """Row ``rows[k]`` of block ``of[k]`` as row k of one CSR block (``indptrs``, ``shared``,
    ``datas``: tuples of the blocks' arrays), written into ``indptr`` (len(rows) + 1),
    ``pos`` and ``data`` (at least as long as the rows' non-zeros)."""
    indptr[0] = 0
    for k in range(rows.shape[0]):
        b, i = of[k], rows[k]
        start, n = indptr[k], indptrs[b][i + 1] - indptrs[b][i]
        pos[start:start + n] = shared[b][indptrs[b][i]:indptrs[b][i + 1]]
        data[start:start + n] = datas[b][indptrs[b][i]:indptrs[b][i + 1]]
        indptr[k + 1] = start + n


#: a spread of projected gradients (margin units) at which the rows are settled: what is
#: left is rounding (without it, 80 rows at their optimum took all 100 passes of a budget:
#: no pass's spread fell to a tenth of the first's)
SETTLED = 1e-12


@njit(nogil=True, cache=True, inline="always")
def _pass_rows(rows, spread_stop):
    # (the rows of the next pass, a buffer for its survivors (empty when nothing is shrunk
    # inside the round), their count, steps done)
    if spread_stop > 0.0:
        return rows.copy(), np.empty(rows.shape[0], np.int64), rows.shape[0], 0
    return rows.copy(), np.empty(0, np.int64), rows.shape[0], 0


@njit(nogil=True, cache=True, inline="always")
def _kept(i, s, y, alpha, c, l2, lo, hi, nxt, kept, pg_lo, pg_hi):
    # row i at the view's x_i.w = s: (whether it stays in the round's passes, and the pass's
    # survivors so far and projected-gradient range with it)
    keep, pg = _shrink_test(1.0 - y[i] * s, alpha[i], c[i], l2, lo, hi)
    if keep:
        nxt[kept] = i
        kept += 1
        pg_lo, pg_hi = min(pg_lo, pg), max(pg_hi, pg)
    return keep, kept, pg_lo, pg_hi


@njit(nogil=True, cache=True, inline="always")
def _end_pass(pg_lo, pg_hi, first, spread_stop):
    """After a whole pass whose kept rows' projected gradients lay in [pg_lo, pg_hi]:
    (stop, the next pass's shrinking thresholds lo and hi, the first pass's spread).
    LIBLINEAR's rules (Hsieh et al. 2008, section 3.2): a row at alpha_i = 0 whose
    gradient exceeds the last pass's largest projected gradient (or, hinge, at c_i below
    its smallest) is left out of the later passes; a side with no violation shrinks
    nothing. Its stop at a spread below eps becomes: below ``spread_stop`` times the first
    pass's spread, or below :data:`SETTLED` (the round's certificate then sees every
    row, as LIBLINEAR's last pass over all of them does)."""
    spread = pg_hi - pg_lo if pg_hi >= pg_lo else 0.0
    if first == 0.0:
        first = spread
    stop = spread <= max(spread_stop * first, SETTLED)
    lo = pg_lo if pg_lo < 0.0 else -np.inf
    hi = pg_hi if pg_hi > 0.0 else np.inf
    return stop, lo, hi, first


@njit(nogil=True, cache=True)
def row_combination(indptr, indices, data, coef, n_columns):
    """sum_i coef_i x_i over the CSR rows (rows with coef_i = 0 skipped), a vector of
    ``n_columns``: a block's exact change of w from its change of alpha (coef = d y)."""
    out = np.zeros(n_columns)
    for i in range(indptr.shape[0] - 1):
        a = coef[i]
        if a != 0.0:
            for p in range(indptr[i], indptr[i + 1]):
                out[indices[p]] += a * data[p]
    return out


@njit(nogil=True, cache=True)
def dense_row_combination(X, coef):
    """sum_i coef_i x_i over the dense rows X (n, d), float32 or float64, summed in
    float64 (rows with coef_i = 0 skipped; no float64 copy of X): a dense block's
    exact change of w from its change of alpha (coef = d y)."""
    out = np.zeros(X.shape[1])
    for i in range(X.shape[0]):
        a = coef[i]
        if a != 0.0:
            for f in range(X.shape[1]):
                out[f] += a * X[i, f]
    return out


@njit(nogil=True, cache=True)
def direction_partials(alpha, new, c, l2):
    """A block's share of the dual along its proposal d = new - alpha (formulations.md 1c).

    Returns ``(slope, curv, upper)``: slope = sum_i d_i - l2 sum_i alpha_i d_i / (2 c_i)
    (the dual's slope along d, less the w.Delta w term), curv = l2 sum_i d_i^2 / (2 c_i)
    (its curvature, less ||Delta w||^2) and upper, the largest step eta keeping
    0 <= alpha + eta d <= c (no upper bound for the squared hinge; inf when nothing binds).
    """
    slope = curv = 0.0
    upper = np.inf
    for i in range(alpha.shape[0]):
        d = new[i] - alpha[i]
        if d == 0.0:
            continue
        slope += d
        if l2:
            slope -= alpha[i] * d / (2.0 * c[i])
            curv += d * d / (2.0 * c[i])
        if d < 0.0:
            upper = min(upper, -alpha[i] / d)
        elif not l2:
            upper = min(upper, (c[i] - alpha[i]) / d)
    return slope, curv, upper


@njit(nogil=True, cache=True, inline="always")
def _coordinate_step(g, a, ci, sqn_i, sigma, l2):
    """The new alpha_i that maximizes the local subproblem along coordinate i.

    ``g = y_i x_i.(w + sigma acc) - 1`` is the gradient of the (minimized) local
    objective without its l2 term; the new value is the Newton step clipped to
    [0, c_i] (hinge) or [0, inf) (squared hinge).
    """
    q = sigma * sqn_i
    if l2:
        g += a / (2.0 * ci)
        q += 1.0 / (2.0 * ci)
        upper = np.inf
    else:
        upper = ci
    return clip_step(a, -g, q, upper)


@njit(nogil=True, cache=True, inline="always")
def clip_step(a, g, q, upper):
    """Maximize g d - q / 2 d^2 over a + d in [0, upper]; returns a + d (the coordinate step
    of every dual coordinate ascent kernel)."""
    if q > 0.0:
        a_new = a + g / q
    elif g > 0.0:
        a_new = upper
    elif g < 0.0:
        a_new = 0.0
    else:
        a_new = a
    if a_new < 0.0:
        a_new = 0.0
    elif a_new > upper:
        a_new = upper
    return a_new


@njit(nogil=True, cache=True)
def dense_cocoa_local(X, y, c, sqn, alpha, w, hot, me, sigma, l2, rows, n_steps, seed,
                      spread_stop=0.0):
    """:func:`cocoa_local` on a dense block ``X`` (n_rows, n_columns), float64 or float32,
    C-contiguous, in a view over all the columns, all of them hot: the view reads
    ``w + sigma (hot[me] + sum_{b != me} hot[b])`` (the other rows every
    :data:`REFRESH_ROWS` steps) and the block adds its change to ``hot[me]`` only, which
    is then its exact change of w (no index arrays: 8 or 4 bytes read per value where
    CSR reads 12). ``w`` (n_columns,) is read only; ``hot`` is (n_blocks, n_columns);
    ``spread_stop`` and the returned steps as there."""
    d = X.shape[1]
    own = hot[me]
    others = np.zeros(d)
    np.random.seed(seed)
    act, nxt, n_act, done = _pass_rows(rows, spread_stop)
    lo, hi, first = -np.inf, np.inf, 0.0
    while done < n_steps and n_act > 0:
        m = min(n_act, n_steps - done)
        order = _permutation(n_act)
        kept, pg_lo, pg_hi = 0, np.inf, -np.inf
        for k in range(m):
            if (done + k) % REFRESH_ROWS == 0 and hot.shape[0] > 1:
                _others(hot, me, others)
            if k + AHEAD < m:
                j = act[order[k + AHEAD]]
                prefetch(X[j], 0, d)
                _prefetch_row_scalars(j, y, c, sqn, alpha)
            i = act[order[k]]
            x = X[i]
            s = _dense_dot_hot(x, w, own, others, sigma)
            if spread_stop > 0.0:
                keep, kept, pg_lo, pg_hi = _kept(i, s, y, alpha, c, l2, lo, hi, nxt, kept,
                                                 pg_lo, pg_hi)
                if not keep:
                    continue
            a_new = _coordinate_step(y[i] * s - 1.0, alpha[i], c[i], sqn[i], sigma, l2)
            delta = a_new - alpha[i]
            if delta != 0.0:
                alpha[i] = a_new
                dy = delta * y[i]
                for f in range(d):
                    own[f] += dy * x[f]
        done += m
        if spread_stop > 0.0 and m == n_act:  # a whole pass: its survivors are the next's
            act, nxt, n_act = nxt, act, kept
            stop, lo, hi, first = _end_pass(pg_lo, pg_hi, first, spread_stop)
            if stop:
                break
    return done


@njit(nogil=True, cache=True, fastmath=SUM_ANY_ORDER)
def _dense_dot_hot(x, w, own, others, sigma):
    # x.(w + sigma (own + others)), as _dense_dot
    s = 0.0
    for k in range(x.shape[0]):
        s += x[k] * (w[k] + sigma * (own[k] + others[k]))
    return s


@njit(nogil=True, cache=True)
def _hash_uniform(seed, step, row):
    # splitmix64 of (seed, step, global row) -> uniform [0, 1); the same
    # draw for a row whatever block it is in, so any blocking samples alike
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    z ^= np.uint64(step) * np.uint64(0xBF58476D1CE4E5B9)
    z ^= np.uint64(row) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return float(z >> np.uint64(11)) / 9007199254740992.0


@njit(nogil=True, cache=True)
def subgradient_partials(indptr, indices, data, y, c, w, l2, fraction, seed, step, row0):
    """One block's share of the primal subgradient at w, and of a dual bound.

    With m_i = 1 - y_i w.x_i, the loss's derivative gives the dual point
    alpha_i(w) = c_i [m_i > 0] (hinge) or 2 c_i max(0, m_i) (squared hinge).

    Returns
    -------
    u : ndarray (n_columns,)
        sum_i alpha_i(w) y_i x_i over all rows (so C * subgradient = -u).
    u_sample : ndarray (n_columns,) or (0,)
        The same sum over the rows sampled for this step (each row kept with
        probability ``fraction``, decided by a hash of (seed, step, global
        row index), scaled by 1/fraction); empty when fraction == 1.
    loss : float
        sum_i c_i max(0, m_i) (squared for l2) over all rows.
    a_sum, a_sq : float
        sum_i alpha_i(w) and sum_i alpha_i(w)^2 / (4 c_i).
    """
    n = indptr.shape[0] - 1
    u = np.zeros(w.shape[0])
    sampled = fraction < 1.0
    u_s = np.zeros(w.shape[0] if sampled else 0)
    loss = 0.0
    a_sum = 0.0
    a_sq = 0.0
    for i in range(n):
        ci = c[i]
        m = 1.0 - y[i] * _dot_row(indptr, indices, data, i, w)
        if m <= 0.0 or ci <= 0.0:
            continue
        if l2:
            loss += ci * m * m
            a = 2.0 * ci * m
            a_sq += a * a / (4.0 * ci)
        else:
            loss += ci * m
            a = ci
        a_sum += a
        ay = a * y[i]
        for p in range(indptr[i], indptr[i + 1]):
            u[indices[p]] += ay * data[p]
        if sampled and _hash_uniform(seed, step, row0 + i) < fraction:
            ays = ay / fraction
            for p in range(indptr[i], indptr[i + 1]):
                u_s[indices[p]] += ays * data[p]
    return u, u_s, loss, a_sum, a_sq
