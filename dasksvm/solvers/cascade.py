"""The Cascade SVM (Graf et al., NIPS 2004) on the round engine, certified exact.

formulations.md section 3. Every binary problem (the one of a binary fit, or
one pair of classes of a one-vs-one fit, class ``i`` of pair ``(i, j)`` being
+1 as in LIBSVM) is LIBSVM's C-SVC dual on all training rows of its classes

    max_a  e^T a - 1/2 a^T Q a,   0 <= a_i <= C_i,  y^T a = 0,
    Q_ij = y_i y_j K(x_i, x_j),  C_i = C * class_weight[y_i] * sample_weight_i.

One engine round is one *pass* for every pair not yet done. The first pass
(and the first after a lost worker) runs the cascade's tree:

1. ``cascade-leaf`` (one task per block, on the block's worker): the SMO of
   :mod:`dasksvm.solvers.smo` on the block's rows of the pair's classes
   (plus, after a recovery, the feedback set: the root's survivors,
   warm-started from the root's alphas); it passes up its support vectors
   (alpha > 0) and the rows the last check marked as violators. A leaf whose
   rows hold one class only has no SVM to train: it passes all its rows up.
2. ``cascade-merge`` (levels 1, 2, ...: groups of ``fan_in`` nodes, on the
   worker of the group's first node; the children's rows travel worker to
   worker): the SMO on the union of the children's survivors, warm-started
   from their alphas (the mean where both report a row, then projected onto
   the feasible set); the last one is the *root*.

Every pass ends with

3. ``cascade-summary``: the root's support set (row ids and alphas), bias,
   dual value and support vectors per level reach the client;
4. ``cascade-check`` (one task per worker, over all its blocks): it evaluates
   ``g(x) = sum_j a_j y_j K(x_j, x)`` and ``h(x) = sum_{a_j = C_j} C_j y_j
   K(x_j, x)`` against the root model for every training row, in float64,
   and LIBSVM's stopping quantity on the *whole* data: with
   ``v_t = -y_t G_t = y_t - g(x_t)``,

       m(a) = max_{t in I_up} v_t,   M(a) = min_{t in I_low} v_t,

   where the global alpha is the root's on its support vectors and zero
   elsewhere. The pair is done when m(a) - M(a) <= tol: the root model is
   then LIBSVM's optimum on all rows to ``tol``, not an approximation.
   Otherwise the rows with ``v_t > M_root + tol`` (in I_up) or
   ``v_t < m_root - tol`` (in I_low) are violators; with them the check
   keeps on its worker, for the next pass, the root's support vectors, the
   violators and each block's ``_FEED_EXTREMES`` rows of largest v in I_up
   and smallest v in I_low (so the whole data's maximal violating pair is
   among them), each with its exact gradient ``G = y g - 1`` and
   ``G_bar = y h``. If no violator is found (the float32 kernel rows of the
   SMO against the float64 check), the SMO tolerance of the nodes is halved
   for the next passes.

Every later pass is a *root pass* (``cascade-root``, on the first block's
worker): the SMO on the rows the check kept, started from the root's alphas
and the check's float64 gradient (no kernel row before its first
iteration). The root's problem holds the maximal violating pair, so every
root pass after a failed check increases the dual. The node passes on, with
its survivors, the rows whose alpha changed and the change of the two
coefficient columns of g and h, and the next check updates the g and h it
keeps per block by ``K(x, changed rows) @ change`` instead of recomputing
them against every support vector. (Re-running the whole tree with the
root's survivors fed back to every leaf, as Graf et al., cost 13 to 15 s
per pass on skin_nonskin with 2 workers where a root pass and its check
took 0.5 to 1.3 s; docs/cascade.md.)

The check also gives the primal value of the root model,
``P = 1/2 a^T Q a + sum_i C_i max(0, 1 - y_i f(x_i))`` (the bias b of
``f = g + b`` is LIBSVM's, from the free variables), and the exact dual
``D = e^T a - 1/2 a^T Q a``; the history records them (NaN primal for passes
without a check).

The engine's stopping quantity is the largest m(a) - M(a) over the pairs
(infinity until every pair has been checked), against ``tol``; ``max_iter``
caps the passes and a last round only checks. All pairs' trees are submitted
together and run as concurrent graphs.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..kernels import smo as _k
from ..parallel.engine import Custom, Machine
from ..parallel.reduce import wire_nbytes
from . import smo as _smo
from .registry import Param, register

__all__ = ["Cascade", "build_cascade", "pairs_of"]

#: dense SMO rows when a node's rows are at least this dense
_DENSE_AT = 0.5
#: the check uses dense rows (BLAS products) up to this many columns
_DENSE_COLUMNS = 1024
#: rows of each side's extremes (per block) fed to a root pass with the violators
_FEED_EXTREMES = 32
#: the check evaluates a block's distinct rows once when at most this share is distinct
_UNIQUE_AT = 0.9
#: entries of one chunk of kernel values in the check (float64)
_CHECK_CHUNK_ENTRIES = 1 << 22


def pairs_of(n_classes):
    """The binary problems: ``[(1, 0)]`` for two classes (class 1 is +1, scikit-learn's
    binary convention), else the one-vs-one pairs ``(i, j)``, i < j, class i +1 (LIBSVM)."""
    if n_classes == 2:
        return [(1, 0)]
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


class _Rows:
    """Rows of one node's problem: global row ids, CSR features, labels +-1, bounds,
    alphas and the violator marks."""

    __slots__ = ("X", "alpha", "c", "forced", "ids", "y")

    def __init__(self, ids, X, y, c, alpha, forced):
        self.ids, self.X, self.y, self.c, self.alpha, self.forced = ids, X, y, c, alpha, forced

    @property
    def n(self):
        return self.ids.shape[0]

    def take(self, mask):
        return self.take_idx(np.flatnonzero(mask))

    def take_idx(self, idx):
        return _Rows(self.ids[idx], self.X[idx], self.y[idx], self.c[idx], self.alpha[idx],
                     self.forced[idx])

    @property
    def nbytes(self):
        X = self.X
        return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + 5 * 8 * self.n)

    @classmethod
    def empty(cls, n_columns):
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), sp.csr_matrix((0, n_columns)), z, z, z,
                   np.zeros(0, bool))

    @classmethod
    def concat(cls, parts, n_columns):
        parts = [p for p in parts if p.n]
        if not parts:
            return cls.empty(n_columns)
        if len(parts) == 1:  # a new holder: nodes set their alphas on what they solve
            p = parts[0]
            return cls(p.ids, p.X, p.y, p.c, p.alpha, p.forced)
        return cls(np.concatenate([p.ids for p in parts]),
                   sp.vstack([p.X for p in parts], format="csr"),
                   np.concatenate([p.y for p in parts]), np.concatenate([p.c for p in parts]),
                   np.concatenate([p.alpha for p in parts]),
                   np.concatenate([p.forced for p in parts]))


class _Node:
    """What a tree node passes up: its survivors (``rows``), its model and statistics.

    ``levels[l]`` lists the support-vector counts of the nodes of level l below
    (and at) this node, left to right.
    """

    __slots__ = ("M", "b", "delta", "dual", "gap", "levels", "m", "moved", "n_iter", "n_rows",
                 "rows", "single", "sv")

    def __init__(self, rows, b, dual, m, M, gap, n_iter, levels, sv, moved, single,
                 n_rows=0, delta=None):
        self.n_rows, self.delta = n_rows, delta
        self.rows, self.b, self.dual, self.m, self.M, self.gap = rows, b, dual, m, M, gap
        self.n_iter, self.levels, self.sv, self.moved, self.single = (n_iter, levels, sv,
                                                                      moved, single)


def _as_solver_rows(X):
    """Dense rows for the SMO when X is dense enough, else its CSR."""
    n, d = X.shape
    if n and d and X.nnz >= _DENSE_AT * n * d and n * d <= 1 << 28:
        return _smo.as_rows(X.toarray())
    return _smo.as_rows(X)


def _extremes(rows, grad):
    yg = -rows.y * grad
    up = ((rows.y > 0) & (rows.alpha < rows.c)) | ((rows.y < 0) & (rows.alpha > 0))
    low = ((rows.y > 0) & (rows.alpha > 0)) | ((rows.y < 0) & (rows.alpha < rows.c))
    m = float(yg[up].max()) if up.any() else -np.inf
    M = float(yg[low].min()) if low.any() else np.inf
    return m, M


def _node_solve(rows, spec, grad=None, gbar=None):
    """Solve one node from its rows' alphas; ``grad, gbar`` (G = Q a - e and G_bar at
    those alphas, from the global check) spare the SMO its warm-start kernel rows."""
    if rows.n == 0 or np.unique(rows.y).shape[0] < 2:
        rows.alpha = np.zeros(rows.n)
        return rows, np.nan, 0.0, np.nan, np.nan, 0.0, 0, True
    a0 = _smo.feasible_start(rows.alpha, rows.y, rows.c) if grad is None else rows.alpha
    R = _as_solver_rows(rows.X)
    alpha, grad, rho, obj, n_iter, gap, _st = _smo._solve_rows(
        R, rows.y, rows.c, a0, spec["kernel"], spec["gamma"], spec["degree"], spec["coef0"],
        spec["node_tol"], spec["cache_size"], True, None, grad, gbar)
    rows.alpha = alpha
    m, M = _extremes(rows, grad)
    return rows, -float(rho), -float(obj), m, M, float(gap), int(n_iter), False


def _finish_node(rows, solved, levels, moved):
    """The node's _Node; ``levels`` are its children's per-level counts (its own added)."""
    rows, b, dual, m, M, gap, n_iter, single = solved
    keep = (rows.alpha > 0) | rows.forced | single
    sv = int(np.count_nonzero(rows.alpha > 0))
    out = rows.take(keep)
    return _Node(out, b, dual, m, M, gap, n_iter, [*levels, [sv]], sv, moved, single, rows.n)


# ---------------------------------------------------------------------------------------
# worker side (run as ``func(store, *args)`` through Engine.submit)
# ---------------------------------------------------------------------------------------


def _pair_rows(store, block, q, pair, offset, C):
    """Block rows of pair q's classes with c_i > 0 (cached in the worker's store)."""
    key = ("rows", q, block.index)
    got = store.get(key)
    if got is None:
        pos, neg = pair
        y = block.y
        c = C * block.weight
        sel = np.flatnonzero(((y == pos) | (y == neg)) & (c > 0))
        ypm = np.where(y[sel] == pos, 1.0, -1.0)
        got = _Rows((offset + sel).astype(np.int64), block.X[sel], ypm, c[sel],
                    np.zeros(sel.shape[0]), np.zeros(sel.shape[0], bool))
        store[key] = got
    return got


def _cascade_leaf(store, block, q, pair, spec, feedback):
    """Leaf of pair q on one block: its rows plus the feedback set, warm-started."""
    base = _pair_rows(store, block, q, pair, spec["offset"], spec["C"])
    n_cols = block.X.shape[1]
    forced = np.zeros(base.n, bool)
    marks = store.get(("violators", q, block.index))
    if spec.get("use_violators") and marks is not None and marks.shape[0] == base.n:
        forced = marks
    alpha = np.zeros(base.n)
    parts = []
    moved = 0
    if feedback is not None and feedback.rows.n:
        F = feedback.rows
        moved = F.nbytes
        lo, hi = spec["offset"], spec["offset"] + block.n_rows
        inside = (F.ids >= lo) & (F.ids < hi)
        if inside.any():
            pos = np.searchsorted(base.ids, F.ids[inside])
            ok = (pos < base.n) & (base.ids[np.minimum(pos, base.n - 1)] == F.ids[inside])
            alpha[pos[ok]] = F.alpha[inside][ok]
        outside = F.take(~inside)
        outside.forced = np.zeros(outside.n, bool)
        parts.append(outside)
    rows = _Rows.concat([_Rows(base.ids, base.X, base.y, base.c, alpha, forced), *parts],
                        n_cols)
    return _finish_node(rows, _node_solve(rows, spec), [], moved)


def _cascade_merge(store, spec, *children):
    """Merge node: the union of the children's survivors, warm-started from their alphas."""
    n_cols = spec["n_columns"]
    rows = _Rows.concat([ch.rows for ch in children], n_cols)
    moved = sum(ch.rows.nbytes for ch in children[1:])
    if rows.n:
        ids, first, inv, counts = np.unique(rows.ids, return_index=True, return_inverse=True,
                                            return_counts=True)
        if ids.shape[0] < rows.n:
            # a row both children report (a fed-back one): the mean of their alphas
            a = np.bincount(inv, weights=rows.alpha) / counts
            f = np.bincount(inv, weights=rows.forced.astype(float)) > 0
            rows = rows.take_idx(first)
            rows.alpha, rows.forced = a, f
    levels = []
    depth = max(len(ch.levels) for ch in children)
    for lv in range(depth):
        levels.append([s for ch in children if lv < len(ch.levels) for s in ch.levels[lv]])
    moved += sum(ch.moved for ch in children)
    return _finish_node(rows, _node_solve(rows, spec), levels, moved)


def _cascade_summary(store, node):
    """What the client keeps of a root: its support set, model and per-level counts."""
    sv = node.rows.alpha > 0
    return {"ids": node.rows.ids[sv], "alpha": node.rows.alpha[sv], "b": node.b,
            "dual": node.dual, "m": node.m, "M": node.M, "gap": node.gap,
            "n_iter": node.n_iter, "levels": node.levels, "n_rows": node.n_rows,
            "single": node.single, "moved": node.moved}


def _cascade_root(store, spec, q, *parts):
    """The root alone on the last check's rows of pair q (the previous root's support
    vectors and the violators), warm-started from the check's float64 gradient.

    Besides its survivors the node carries ``delta``: the rows whose alpha changed and
    the change of the check's two coefficient columns, so the next check can update
    the decision values it keeps instead of recomputing them."""
    got = [p["rows"][q] for p in parts if q in p["rows"]]
    rows = _Rows.concat([g[0] for g in got], spec["n_columns"])
    grad = np.concatenate([g[1] for g in got]) if got else np.zeros(0)
    gbar = np.concatenate([g[2] for g in got]) if got else np.zeros(0)
    old = rows.alpha.copy()
    solved = _node_solve(rows, spec, grad, gbar)
    new = rows.alpha
    d = np.column_stack([(new - old) * rows.y,
                         ((new >= rows.c).astype(float) - (old >= rows.c)) * rows.c * rows.y])
    changed = np.flatnonzero(np.any(d != 0.0, axis=1))
    delta = {"base": spec["base"], "X": rows.X[changed], "coef": d[changed]}
    node = _finish_node(rows, solved, [], 0)
    node.delta = delta
    return node


def _dense_ok(n_rows, n_cols):
    """Whether rows of this shape are cheaper as dense rows (one BLAS product per chunk)."""
    return n_cols <= _DENSE_COLUMNS and n_rows * n_cols <= 1 << 24


def _kernel_sums(A, S, coef, spec):
    """``K(A, S) @ coef``, (n_a, k) float64, for rows A (CSR or dense) and CSR rows S;
    dense rows when the columns are few, else the sparse kernel."""
    n_cols = max(A.shape[1], S.shape[1])
    coef = np.asarray(coef, dtype=np.float64)
    coef = np.ascontiguousarray(coef.reshape(S.shape[0], -1 if S.shape[0] else
                                             (coef.shape[1] if coef.ndim == 2 else 1)))
    if A.shape[0] == 0 or S.shape[0] == 0:
        return np.zeros((A.shape[0], coef.shape[1]))
    dense = _dense_ok(S.shape[0], n_cols)
    RS = _smo.as_rows(S.toarray()) if dense else _smo.as_rows(S)
    chunk = int(max(64, min(4096, _CHECK_CHUNK_ENTRIES // max(S.shape[0], 1))))
    zero = np.zeros(coef.shape[1])
    step = max(chunk, (1 << 22) // max(n_cols, 1)) if dense else A.shape[0]
    out = []
    for start in range(0, A.shape[0], step):
        part = A[start:start + step]
        RA = _smo.as_rows(part.toarray() if dense and sp.issparse(part) else part)
        out.append(_k.decision_block(*RA.args(), *RS.args(), coef, zero,
                                     _k.KERNELS[spec["kernel"]], spec["gamma"],
                                     spec["coef0"], int(spec["degree"]), n_cols, chunk))
    return np.concatenate(out)


def _root_coef(root):
    """The root's support vectors and the check's two coefficient columns:
    ``a_j y_j`` (for g) and ``c_j y_j`` where ``a_j = c_j`` (for G_bar)."""
    R = root.rows
    sv = R.alpha > 0
    a, y, c = R.alpha[sv], R.y[sv], R.c[sv]
    return R.ids[sv], a, R.X[sv], np.column_stack([a * y, (a >= c) * c * y])


def _worker_sums(store, bases, q, root, version, full, spec):
    """Pair q's ``(g, h)`` on the rows of this worker's blocks (one pair of arrays per
    block of ``bases``, ``[(block index, rows)]``), ``g = sum_j a_j y_j K(x_j, .)`` and
    ``h = sum_{a_j = c_j} c_j y_j K(x_j, .)``: updated by the root's ``delta`` when the
    worker keeps them at the delta's base version, else computed from ``full``."""
    tag = tuple(k for k, _ in bases)
    key = ("sums", q, tag)
    kept = store.get(key)
    delta = root.delta
    U, inv = _unique_rows(store, bases, q, tag)
    if delta is not None and kept is not None and kept[0] == delta["base"]:
        gh = kept[1] + _kernel_sums(U, delta["X"], delta["coef"], spec)
    else:
        gh = _kernel_sums(U, full[0], full[1], spec)
    store[key] = (version, gh)
    if inv is not None:
        gh = gh[inv]
    cuts = np.cumsum([b.n for _, b in bases])[:-1]
    return [(p[:, 0], p[:, 1]) for p in np.split(gh, cuts)]


def _unique_rows(store, bases, q, tag):
    """The distinct rows of pair q over this worker's blocks and each row's index among
    them (cached), when at most ``_UNIQUE_AT`` of the rows are distinct: equal rows
    have equal g and h, so the check evaluates the kernel once per distinct row
    (skin_nonskin's integer colours: 245,056 rows, 51,433 distinct). Else the rows
    (CSR) and None."""
    key = ("unique", q, tag)
    got = store.get(key)
    if got is None:
        X = _Rows.concat([b for _, b in bases], bases[0][1].X.shape[1]).X
        got = (X, None)
        n, d = X.shape
        if n > 1 and _dense_ok(n, d):
            U, inv = np.unique(X.toarray(), axis=0, return_inverse=True)
            if U.shape[0] <= _UNIQUE_AT * n:
                got = (U, np.asarray(inv).reshape(-1))
        store[key] = got
    return got


def _root_alphas(ids, sv_ids, sv_alpha):
    """The root's alphas on the rows ``ids`` (zero off its support set; sv_ids sorted)."""
    a = np.zeros(ids.shape[0])
    if sv_ids.shape[0]:
        pos = np.minimum(np.searchsorted(sv_ids, ids), sv_ids.shape[0] - 1)
        hit = sv_ids[pos] == ids
        a[hit] = sv_alpha[pos[hit]]
    return a


def _extreme_rows(v, up, low, k=None):
    """The ``k`` rows of largest ``v`` in I_up and of smallest ``v`` in I_low (a mask).

    Fed to a root pass with the violators: the violators are measured against the
    root's own extremes, and the rows that attain the *global* m(a) or M(a) may not be
    among them (a row of I_low off the support set, say); with each block's extremes
    the root's problem holds the maximal violating pair of the whole data, so a root
    pass after a failed check always makes progress."""
    k = _FEED_EXTREMES if k is None else k
    mask = np.zeros(v.shape[0], bool)
    for side, sign in ((up, -1.0), (low, 1.0)):
        idx = np.flatnonzero(side)
        if idx.shape[0] > k:
            idx = idx[np.argpartition(sign * v[idx], k - 1)[:k]]
        mask[idx] = True
    return mask


def _check_pair(store, blocks, spec, q, root):
    """Pair q's share of the global check on this worker's blocks: the extremes of
    ``v = y - g`` over I_up / I_low, the violators, the primal and dual sums; with
    ``spec["feed"]`` also the rows of the next root pass (support vectors and
    violators) with their gradient ``G = y g - 1`` and ``G_bar = y h``."""
    pair, thr_up, thr_low, version = spec["pairs"][q]
    sv_ids, sv_alpha, S, coef = _root_coef(root)
    order = np.argsort(sv_ids)
    sv_ids, sv_alpha = sv_ids[order], sv_alpha[order]
    acc = {"up": -np.inf, "low": np.inf, "hinge": 0.0, "aqa": 0.0, "asum": 0.0,
           "violators": 0, "rows": 0}
    feed = []
    bases = []
    for block in blocks:
        base = _pair_rows(store, block, q, pair, spec["offsets"][block.index], spec["C"])
        if base.n == 0:
            store[("violators", q, block.index)] = np.zeros(0, bool)
        else:
            bases.append((block.index, base))
    sums = _worker_sums(store, bases, q, root, version, (S, coef), spec) if bases else []
    for (k, base), (g, h) in zip(bases, sums, strict=True):
        a = _root_alphas(base.ids, sv_ids, sv_alpha)
        y, c = base.y, base.c
        v = y - g
        up = ((y > 0) & (a < c)) | ((y < 0) & (a > 0))
        low = ((y > 0) & (a > 0)) | ((y < 0) & (a < c))
        acc["up"] = max(acc["up"], float(v[up].max()) if up.any() else -np.inf)
        acc["low"] = min(acc["low"], float(v[low].min()) if low.any() else np.inf)
        viol = (up & (v > thr_up)) | (low & (v < thr_low))
        store[("violators", q, k)] = viol
        acc["violators"] += int(viol.sum())
        acc["hinge"] += float(c @ np.maximum(0.0, 1.0 - y * (g + root.b)))
        acc["aqa"] += float((a * y) @ g)
        acc["asum"] += float(a.sum())
        acc["rows"] += base.n
        if spec["feed"]:
            keep = np.flatnonzero((a > 0) | viol | _extreme_rows(v, up, low))
            rows = base.take_idx(keep)
            rows.alpha = a[keep]
            feed.append((rows, y[keep] * g[keep] - 1.0, y[keep] * h[keep]))
    rows = None
    if spec["feed"]:
        rows = (_Rows.concat([f[0] for f in feed], spec["n_columns"]),
                np.concatenate([f[1] for f in feed]) if feed else np.zeros(0),
                np.concatenate([f[2] for f in feed]) if feed else np.zeros(0))
    return acc, rows


def _cascade_check(store, blocks, spec, qs, roots):
    """The global KKT check of this worker's blocks against every checked pair's root:
    ``{"stats": {q: sums}, "rows": {q: (rows, G, G_bar)}}`` (rows only with feed)."""
    out = {"stats": {}, "rows": {}}
    for q, root in zip(qs, roots, strict=True):
        acc, rows = _check_pair(store, blocks, spec, q, root)
        out["stats"][q] = acc
        if rows is not None:
            out["rows"][q] = rows
    return out


def _cascade_stats(store, part):
    """The small part of a check's result that goes to the client."""
    return part["stats"]


def _cascade_extract(store, blocks, spec, q, ids):
    """The rows ``ids`` (global, sorted) of pair q held in this worker's blocks."""
    pair = spec["pairs"][q][0]
    parts = []
    for block in blocks:
        base = _pair_rows(store, block, q, pair, spec["offsets"][block.index], spec["C"])
        parts.append(base.take(np.isin(base.ids, ids)))
    return _Rows.concat(parts, spec["n_columns"])


def _cascade_assemble(store, spec, info, *parts):
    """A root rebuilt from its support set (checkpoints and recovery)."""
    rows = _Rows.concat(list(parts), spec["n_columns"])
    rows = rows.take_idx(np.argsort(rows.ids))
    want = np.asarray(info["ids"])
    alpha = np.asarray(info["alpha"])
    pos = np.searchsorted(want, rows.ids)
    rows.alpha = alpha[pos]
    return _Node(rows, info["b"], info["dual"], info["m"], info["M"], info["gap"], 0,
                 info["levels"], int(rows.n), 0, False, int(info["n_rows"]))


def _cascade_model(store, node):
    """The root's support vectors for the fitted model (ids, CSR rows, alpha * y, b)."""
    sv = node.rows.alpha > 0
    R = node.rows
    order = np.argsort(R.ids[sv])
    return {"ids": R.ids[sv][order], "X": R.X[sv][order], "coef": (R.alpha * R.y)[sv][order],
            "alpha": R.alpha[sv][order], "b": float(node.b)}


# ---------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------


class Cascade(Machine):
    """The Cascade SVM over the blocks, one binary problem per pair, certified exact.

    See the module docstring for a pass, the global check and the stopping rule.

    Parameters
    ----------
    blocks : BlockSet
        Labels are class indices 0..n_classes-1 (float), weights the per-row
        factors of C.
    n_classes : int >= 2
    C, tol : float
    kernel, gamma, degree, coef0 : the kernel (gamma a positive float).
    fan_in : int >= 2
        Children per merge node.
    cache_size : float
        Kernel-row cache of every node's SMO, MB.
    """

    name = "Cascade SVM"
    prefix = "cascade"
    #: the engine's per-block tasks use none of the machine (its own tasks get specs)
    worker_fields = ()

    def __init__(self, blocks, n_classes, *, C, tol, kernel, gamma, degree, coef0, fan_in,
                 cache_size):
        self.blocks = blocks
        self.n_classes = int(n_classes)
        self.pairs = pairs_of(self.n_classes)
        self.C, self.tol = float(C), float(tol)
        self.kernel, self.gamma = kernel, float(gamma)
        self.degree, self.coef0 = int(degree), float(coef0)
        self.fan_in = int(fan_in)
        self.cache_size = float(cache_size)
        self.offsets = [int(v) for v in np.concatenate([[0], np.cumsum(blocks.n_rows)[:-1]])]
        P = len(self.pairs)
        self.roots = [None] * P  # future of each pair's root _Node
        self.info = [None] * P  # its summary (client side)
        self.checked = [None] * P  # last check result at the current root
        self.done = [False] * P
        self.failed_checks = [0] * P
        self.thresholds = [None] * P  # violators' thresholds of the last failed check
        self.passes = [0] * P
        self.feed = [None] * P  # futures of the last check (per worker), for a root pass
        self.kind = [None] * P  # "tree" or "root": what the last pass ran
        self._model = None
        self._last = None
        self._sizes = None

    def problem(self):
        return {"solver": "cascade", "C": self.C, "kernel": self.kernel, "gamma": self.gamma,
                "degree": self.degree, "coef0": self.coef0, "n_classes": self.n_classes}

    def _spec(self, q, **extra):
        node_tol = self.tol * 0.5 ** min(self.failed_checks[q], 10)
        return {"C": self.C, "kernel": self.kernel, "gamma": self.gamma,
                "degree": self.degree, "coef0": self.coef0, "cache_size": self.cache_size,
                "node_tol": node_tol, "n_columns": int(self.blocks.n_columns), **extra}

    def _where(self, q, *tags):
        return ([f"q{q}"] if len(self.pairs) > 1 else []) + list(tags)

    # --- one pass ----------------------------------------------------------------------
    def _tree(self, engine, q, round, attempt):
        """Submit pair q's leaves and merges; returns the root future and bytes sent."""
        blocks = self.blocks
        down = 0
        feedback = self.roots[q]
        use_viol = self.thresholds[q] is not None
        level = []
        for k in range(len(blocks)):
            spec = self._spec(q, offset=self.offsets[k], use_violators=use_viol)
            down += wire_nbytes(spec)
            fut = engine.submit("leaf", _cascade_leaf, blocks.futures[k], q, self.pairs[q],
                                spec, feedback, worker=blocks.workers[k], round=round,
                                where=self._where(q, "l0", f"n{k}"), attempt=attempt)
            level.append((fut, blocks.workers[k]))
        lv = 0
        while len(level) > 1:
            lv += 1
            nxt = []
            for n, start in enumerate(range(0, len(level), self.fan_in)):
                group = level[start:start + self.fan_in]
                if len(group) == 1:
                    nxt.append(group[0])
                    continue
                spec = self._spec(q)
                down += wire_nbytes(spec)
                fut = engine.submit("merge", _cascade_merge, spec, *[g[0] for g in group],
                                    worker=group[0][1], round=round,
                                    where=self._where(q, f"l{lv}", f"n{n}"), attempt=attempt)
                nxt.append((fut, group[0][1]))
            level = nxt
        return level[0]

    def _root_pass(self, engine, q, round, attempt):
        """Submit pair q's root alone on the last check's rows; returns (future, worker)."""
        w = self.blocks.workers[0]
        spec = self._spec(q, base=self.passes[q])
        fut = engine.submit("root", _cascade_root, spec, q, *self.feed[q], worker=w,
                            round=round, where=self._where(q, "l0", "n0"), attempt=attempt)
        return (fut, w), wire_nbytes(spec)

    def run_round(self, engine, round, update, attempt):
        t0 = time.perf_counter()
        active = [q for q in range(len(self.pairs)) if not self.done[q]]
        self.kind = [None] * len(self.pairs)
        down = up = 0
        moved = 0
        if update and active:
            tops = {}
            for q in active:
                if self.passes[q] and self.feed[q] is not None:
                    tops[q], nb = self._root_pass(engine, q, round, attempt)
                    self.kind[q] = "root"
                    down += nb
                else:
                    tops[q] = self._tree(engine, q, round, attempt)
                    self.kind[q] = "tree"
            sums = {q: engine.submit("summary", _cascade_summary, fut, worker=w, round=round,
                                     where=self._where(q), attempt=attempt)
                    for q, (fut, w) in tops.items()}
            got = engine.gather(list(sums.values()))
            for q, s in zip(sums, got, strict=True):
                up += wire_nbytes(s)
                moved += int(s.pop("moved", 0))
                self.info[q] = s
                self.roots[q] = tops[q][0]
                self.checked[q] = None
                self.passes[q] += 1
        to_check = [q for q in active if self.info[q] is not None]
        results = {}
        if to_check:
            results, nb_down, nb_up = self._check(engine, to_check, round, attempt)
            down += nb_down
            up += nb_up
        total = {"results": results, "epoch_time": time.perf_counter() - t0, "moved": moved}
        self._last = total
        return total, down, up + moved

    def _pair_size(self, q):
        """Rows of pair q's problem (all blocks), np.inf while unknown."""
        return self._sizes[q] if self._sizes is not None else np.inf

    def _check(self, engine, qs, round, attempt):
        spec = {"C": self.C, "kernel": self.kernel, "gamma": self.gamma, "degree": self.degree,
                "coef0": self.coef0, "offsets": self.offsets, "feed": True,
                "n_columns": int(self.blocks.n_columns), "pairs": {}}
        for q in qs:
            s = self.info[q]
            spec["pairs"][q] = (self.pairs[q], s["M"] + self.tol, s["m"] - self.tol,
                                self.passes[q])
        groups = {}
        for k, w in enumerate(self.blocks.workers):
            groups.setdefault(w, []).append(k)
        futs, stats = [], []
        down = 0
        for i, (w, ks) in enumerate(sorted(groups.items())):
            down += wire_nbytes(spec)
            fut = engine.submit("check", _cascade_check, [self.blocks.futures[k] for k in ks],
                                spec, list(qs), [self.roots[q] for q in qs], worker=w,
                                round=round, where=[f"w{i}"], attempt=attempt)
            futs.append(fut)
            stats.append(engine.submit("stats", _cascade_stats, fut, worker=w, round=round,
                                       where=[f"w{i}"], attempt=attempt))
        parts = engine.gather(stats)
        up = sum(wire_nbytes(p) for p in parts)
        results = {}
        for q in qs:
            acc = self._merge_stats([p[q] for p in parts])
            results[q] = acc
            self.checked[q] = acc
            self.feed[q] = futs
            if acc["gap"] <= self.tol:
                self.done[q] = True
                self.thresholds[q] = None
                self.feed[q] = None
            else:
                self.thresholds[q] = (spec["pairs"][q][1], spec["pairs"][q][2])
                if acc["violators"] == 0:
                    self.failed_checks[q] += 1
        return results, down, up

    @staticmethod
    def _merge_stats(parts):
        """One pair's check sums over the workers, with its gap, primal and dual."""
        acc = {"up": -np.inf, "low": np.inf, "hinge": 0.0, "aqa": 0.0, "asum": 0.0,
               "violators": 0, "rows": 0}
        for r in parts:
            acc["up"] = max(acc["up"], r["up"])
            acc["low"] = min(acc["low"], r["low"])
            for key in ("hinge", "aqa", "asum", "violators", "rows"):
                acc[key] += r[key]
        gap = acc["up"] - acc["low"]
        acc["gap"] = float(gap) if np.isfinite(gap) else 0.0
        acc["primal"] = 0.5 * acc["aqa"] + acc["hinge"]
        acc["dual"] = acc["asum"] - 0.5 * acc["aqa"]
        return acc

    def step(self, total, round, update):
        P = len(self.pairs)
        duals, primals, stops = [], [], []
        for q in range(P):
            s, c = self.info[q], self.checked[q]
            if c is not None:
                duals.append(c["dual"])
                primals.append(c["primal"])
                stops.append(c["gap"])
            else:
                duals.append(s["dual"] if s is not None else 0.0)
                primals.append(np.nan)
                stops.append(np.inf)
        res = total["results"]
        levels = [self.info[q]["levels"] if self.info[q] is not None else [] for q in range(P)]
        extra = {
            "pass_time": float(total["epoch_time"]),
            "sv_per_level": levels[0] if P == 1 else levels,
            "n_sv": [int(self.info[q]["ids"].shape[0]) if self.info[q] is not None else 0
                     for q in range(P)],
            "smo_iter_root": [int(self.info[q]["n_iter"]) if self.info[q] is not None else 0
                              for q in range(P)],
            "checked": sorted(int(q) for q in res),
            "kkt_violators": int(sum(r["violators"] for r in res.values())),
            "kkt_gap": float(max(stops)) if stops else 0.0,
            "pairs_done": int(sum(self.done)),
            "pass_kind": self.kind[0] if P == 1 else list(self.kind),
            "bytes_tree": int(total["moved"]),
        }
        return {"primal": float(np.sum(primals)), "dual": float(np.sum(duals)),
                "stop": float(max(stops)), "extra": extra}

    def advance(self):
        return True

    # --- recovery and checkpoints ------------------------------------------------------
    def _rebuild_roots(self, engine, qs, attempt):
        """Roots of pairs ``qs`` rebuilt on the workers from the client's support sets."""
        spec = {"C": self.C, "offsets": self.offsets, "n_columns": int(self.blocks.n_columns),
                "pairs": {q: (self.pairs[q], None, None) for q in qs}}
        groups = {}
        for k, w in enumerate(self.blocks.workers):
            groups.setdefault(w, []).append(k)
        workers = sorted(groups)
        for q in qs:
            info = self.info[q]
            parts = [engine.submit("extract", _cascade_extract,
                                   [self.blocks.futures[k] for k in groups[w]], spec, q,
                                   info["ids"], worker=w, where=self._where(q, f"w{i}"),
                                   attempt=attempt)
                     for i, w in enumerate(workers)]
            self.roots[q] = engine.submit("assemble", _cascade_assemble, spec, info, *parts,
                                          worker=workers[0], where=self._where(q),
                                          attempt=attempt)

    def recover(self, engine, attempt):
        """Blocks are back (the engine refreshed them); the worker stores are caches: the
        roots are rebuilt from the support sets the client holds, the round repeats."""
        qs = [q for q in range(len(self.pairs)) if self.info[q] is not None]
        self.feed = [None] * len(self.pairs)  # the next pass runs the tree
        self._rebuild_roots(engine, qs, attempt)

    def model_arrays(self):
        out = {"done": np.array(self.done, dtype=np.int64),
               "failed_checks": np.array(self.failed_checks, dtype=np.int64)}
        return out

    def load_model_arrays(self, arrays):
        self._loaded = {k: np.asarray(v) for k, v in arrays.items()}

    def save_states(self, engine):
        out = {}
        for q, s in enumerate(self.info):
            if s is None:
                continue
            out[f"q{q}_ids"] = np.asarray(s["ids"], dtype=np.int64)
            out[f"q{q}_alpha"] = np.asarray(s["alpha"], dtype=np.float64)
            out[f"q{q}_scalars"] = np.array([s["b"], s["dual"], s["m"], s["M"], s["gap"],
                                             s["n_rows"]], dtype=np.float64)
        return out

    def load_states(self, engine, arrays):
        loaded = getattr(self, "_loaded", {}) or {}
        if "done" in loaded:
            self.done = [bool(v) for v in loaded["done"]]
            self.failed_checks = [int(v) for v in loaded["failed_checks"]]
        qs = []
        for q in range(len(self.pairs)):
            if f"q{q}_ids" not in arrays:
                continue
            b, dual, m, M, gap, n_rows = (float(v) for v in arrays[f"q{q}_scalars"])
            self.info[q] = {"ids": np.asarray(arrays[f"q{q}_ids"], dtype=np.int64),
                            "alpha": np.asarray(arrays[f"q{q}_alpha"], dtype=np.float64),
                            "b": b, "dual": dual, "m": m, "M": M, "gap": gap,
                            "n_iter": 0, "levels": [], "n_rows": int(n_rows), "single": False}
            qs.append(q)
        self._rebuild_roots(engine, qs, 0)

    # --- the result ---------------------------------------------------------------------
    def finish(self, engine):
        """Gather every pair's root model before the fit's futures go."""
        try:
            futs = []
            for q, r in enumerate(self.roots):
                if r is None:
                    futs.append(None)
                    continue
                futs.append(engine.submit("model", _cascade_model, r,
                                          worker=self.blocks.workers[0],
                                          where=self._where(q)))
            got = engine.gather([f for f in futs if f is not None])
            it = iter(got)
            self._model = [next(it) if f is not None else None for f in futs]
        except Exception as exc:  # noqa: BLE001 - coef() says why
            self._error = exc
        finally:
            self.roots = [None] * len(self.pairs)

    def coef(self):
        """Per pair: ``{"ids", "X" (CSR support vectors), "coef" (alpha * y), "alpha", "b"}``."""
        if self._model is None:
            raise RuntimeError(f"the cascade's model could not be gathered: "
                               f"{getattr(self, '_error', None)!r}")
        return self._model

    def result_state(self):
        return {"pairs": list(self.pairs), "passes": list(self.passes), "done": list(self.done)}


def _pair_counts(block, pairs, C):
    y = block.y
    c = C * block.weight
    return [int(np.count_nonzero(((y == a) | (y == b)) & (c > 0))) for a, b in pairs]


@register("cascade", "kernel", {
    # stricter than the common rule: the check's gap never closes at tol = 0
    "tol": Param(1e-3, ("real", 0.0, None, True)),
    "kernel": Param("rbf", ("choice", tuple(_k.KERNELS))),
    "gamma": Param(1.0, ("real", 0.0, None, True)),
    "degree": Param(3, ("int", 0, None, False)),
    "coef0": Param(0.0, ("real", None, None, False)),
    "fan_in": Param(2, ("int", 2, None, False)),
    "cache_size": Param(200.0, ("real", 0.0, None, True)),
})
def build_cascade(blocks, n_classes, seeds, *, C, tol, kernel, gamma, degree, coef0, fan_in,
                  cache_size):
    """The Cascade SVM (:class:`Cascade`); ``n_classes`` None means 2 (binary, labels 0/1).

    Parameters (besides the common ones; ``max_iter`` counts passes)
    ------------------------------------------------------------------
    tol : float > 0 (stricter than the common rule)
    kernel : {"rbf", "linear", "poly", "sigmoid"}
    gamma : float > 0
    degree : int >= 0
    coef0 : float
    fan_in : int >= 2
    cache_size : float > 0, MB per node's SMO

    The result's ``coef`` is a list, one entry per pair (:func:`pairs_of`), of
    ``{"ids", "X", "coef", "alpha", "b"}``; ``state`` holds ``pairs``, ``passes``
    and ``done`` per pair.
    """
    K = 2 if n_classes is None else int(n_classes)
    machine = Cascade(blocks, K, C=C, tol=tol, kernel=kernel, gamma=gamma, degree=degree,
                      coef0=coef0, fan_in=fan_in, cache_size=cache_size)
    counts = blocks.gather_map(_pair_counts, machine.pairs, C, key="cascade-count")
    machine._sizes = [int(sum(c[q] for c in counts)) for q in range(len(machine.pairs))]
    return machine, Custom()
