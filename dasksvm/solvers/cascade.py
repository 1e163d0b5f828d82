"""The Cascade SVM (Graf et al., NIPS 2004) on the round engine, certified exact.

formulations.md section 3. Every binary problem (the one of a binary fit, or
one pair of classes of a one-vs-one fit, class ``i`` of pair ``(i, j)`` being
+1 as in LIBSVM) is LIBSVM's C-SVC dual on all training rows of its classes

    max_a  e^T a - 1/2 a^T Q a,   0 <= a_i <= C_i,  y^T a = 0,
    Q_ij = y_i y_j K(x_i, x_j),  C_i = C * class_weight[y_i] * sample_weight_i.

One engine round is one *pass* of the cascade for every pair not yet done:

1. ``cascade-leaf`` (one task per block, on the block's worker): the SMO of
   :mod:`dasksvm.solvers.smo` on the block's rows of the pair's classes plus
   the *feedback set* (the root's survivors of the previous pass),
   warm-started from the root's alphas; it passes up its support vectors
   (alpha > 0) and the rows of its block the last global check found
   violating. A leaf whose rows hold one class only has no SVM to train: it
   passes all its rows up.
2. ``cascade-merge`` (levels 1, 2, ...: groups of ``fan_in`` nodes, on the
   worker of the group's first node; the children's rows travel worker to
   worker): the SMO on the union of the children's survivors, warm-started
   from their alphas (the mean where both report a row, then projected onto
   the feasible set); the last one is the *root*. Violators stay marked up to
   the root, so the root's problem holds them all.
3. ``cascade-summary``: the root's support set (row ids and alphas), bias,
   dual value and support vectors per level reach the client.
4. ``cascade-check`` (one task per worker, over all its blocks) evaluates
   ``g(x) = sum_j a_j y_j K(x_j, x)`` against the root model for every
   training row and computes LIBSVM's stopping quantity on the *whole* data,
   in float64: with ``v_t = -y_t G_t = y_t - g(x_t)``,

       m(a) = max_{t in I_up} v_t,   M(a) = min_{t in I_low} v_t,

   where the global alpha is the root's on its support vectors and zero
   elsewhere. The pair is done when m(a) - M(a) <= tol: the root model is
   then LIBSVM's optimum on all rows to ``tol``, not an approximation.
   Otherwise the rows with ``v_t > M_root + tol`` (in I_up) or
   ``v_t < m_root - tol`` (in I_low) are violators: they join the next pass
   (marked in their leaf and up to the root), and then, being among the
   root's survivors, the feedback set of every leaf of the pass after. If
   none is found (the float32 kernel rows of the SMO against the float64
   check), the SMO tolerance of the nodes is halved for the next passes.

The root's survivors are fed back to every leaf and the pass repeats. By
default (``check="every"``) the check runs after every pass. With
``check="stable"`` it runs as in Graf et al. only once the root's support
set is unchanged and its dual value changed by less than 1e-6 relative (or
at once when the root's problem held every row, and after the last pass): on
skin_nonskin in file order (sorted by label; with two blocks one block holds
a single class) that rule took more than ten passes where checking every pass
took three (docs/cascade.md).

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

    __slots__ = ("M", "b", "dual", "gap", "levels", "m", "moved", "n_iter", "n_rows", "rows",
                 "single", "sv")

    def __init__(self, rows, b, dual, m, M, gap, n_iter, levels, sv, moved, single,
                 n_rows=0):
        self.n_rows = n_rows
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


def _node_solve(rows, spec):
    """Solve one node and build its _Node (survivors: alpha > 0 or marked violators)."""
    if rows.n == 0 or np.unique(rows.y).shape[0] < 2:
        rows.alpha = np.zeros(rows.n)
        return rows, np.nan, 0.0, np.nan, np.nan, 0.0, 0, True
    a0 = _smo.feasible_start(rows.alpha, rows.y, rows.c)
    R = _as_solver_rows(rows.X)
    alpha, grad, rho, obj, n_iter, gap, _st = _smo._solve_rows(
        R, rows.y, rows.c, a0, spec["kernel"], spec["gamma"], spec["degree"], spec["coef0"],
        spec["node_tol"], spec["cache_size"], True, None)
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


def _decision_values(A, S, coef, b, spec):
    """g(x) + b for the CSR rows A against the CSR support vectors S (dense if dense)."""
    n_cols = max(A.shape[1], S.shape[1])
    dense = (A.shape[0] and A.nnz >= _DENSE_AT * A.shape[0] * A.shape[1]
             and A.shape[0] * A.shape[1] <= 1 << 28)
    RA = _smo.as_rows(A.toarray()) if dense else _smo.as_rows(A)
    RS = _smo.as_rows(S.toarray()) if dense else _smo.as_rows(S)
    chunk = int(max(64, min(4096, _CHECK_CHUNK_ENTRIES // max(S.shape[0], 1))))
    coef2 = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).reshape(-1, 1))
    out = _k.decision_block(*RA.args(), *RS.args(), coef2, np.array([float(b)]),
                            _k.KERNELS[spec["kernel"]], spec["gamma"], spec["coef0"],
                            int(spec["degree"]), n_cols, chunk)
    return out[:, 0]


def _cascade_check(store, blocks, spec, qs, roots):
    """The global KKT check of this worker's blocks against every checked pair's root."""
    out = {}
    for q, root in zip(qs, roots, strict=True):
        pair, thr_up, thr_low = spec["pairs"][q]
        R = root.rows
        sv = R.alpha > 0
        S, coef = R.X[sv], (R.alpha * R.y)[sv]
        sv_ids = R.ids[sv]
        sv_alpha = R.alpha[sv]
        order = np.argsort(sv_ids)
        sv_ids, sv_alpha = sv_ids[order], sv_alpha[order]
        acc = {"up": -np.inf, "low": np.inf, "hinge": 0.0, "aqa": 0.0, "asum": 0.0,
               "violators": 0, "rows": 0}
        for block in blocks:
            base = _pair_rows(store, block, q, pair, spec["offsets"][block.index], spec["C"])
            if base.n == 0:
                store[("violators", q, block.index)] = np.zeros(0, bool)
                continue
            f = _decision_values(base.X, S, coef, root.b, spec) if S.shape[0] else \
                np.full(base.n, root.b)
            g = f - root.b
            a = np.zeros(base.n)
            if sv_ids.shape[0]:
                pos = np.searchsorted(sv_ids, base.ids)
                hit = (pos < sv_ids.shape[0]) & (sv_ids[np.minimum(pos, sv_ids.shape[0] - 1)]
                                                  == base.ids)
                a[hit] = sv_alpha[pos[hit]]
            y, c = base.y, base.c
            v = y - g
            up = ((y > 0) & (a < c)) | ((y < 0) & (a > 0))
            low = ((y > 0) & (a > 0)) | ((y < 0) & (a < c))
            if up.any():
                acc["up"] = max(acc["up"], float(v[up].max()))
            if low.any():
                acc["low"] = min(acc["low"], float(v[low].min()))
            viol = (up & (v > thr_up)) | (low & (v < thr_low))
            store[("violators", q, block.index)] = viol
            acc["violators"] += int(viol.sum())
            acc["hinge"] += float(c @ np.maximum(0.0, 1.0 - y * f))
            acc["aqa"] += float((a * y) @ g)
            acc["asum"] += float(a.sum())
            acc["rows"] += base.n
        out[q] = acc
    return out


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
                 cache_size, check="every"):
        self.check = check
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
        self.prev = [None] * P  # the summary of the pass before
        self.checked = [None] * P  # last check result at the current root
        self.done = [False] * P
        self.failed_checks = [0] * P
        self.thresholds = [None] * P  # violators' thresholds of the last failed check
        self.passes = [0] * P
        self.stable = [False] * P
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

    def run_round(self, engine, round, update, attempt):
        t0 = time.perf_counter()
        active = [q for q in range(len(self.pairs)) if not self.done[q]]
        down = up = 0
        moved = 0
        if update and active:
            tops = {}
            for q in active:
                fut, w = self._tree(engine, q, round, attempt)
                tops[q] = (fut, w)
            sums = {q: engine.submit("summary", _cascade_summary, fut, worker=w, round=round,
                                     where=self._where(q), attempt=attempt)
                    for q, (fut, w) in tops.items()}
            got = engine.gather(list(sums.values()))
            for q, s in zip(sums, got, strict=True):
                up += wire_nbytes(s)
                moved += int(s.pop("moved", 0))
                self.prev[q] = self.info[q]
                self.info[q] = s
                self.roots[q] = tops[q][0]
                self.checked[q] = None
                self.passes[q] += 1
        to_check = []
        for q in active:
            s, p = self.info[q], self.prev[q]
            if s is None:
                continue
            covers = s["n_rows"] >= self._pair_size(q)
            same = (p is not None and np.array_equal(s["ids"], p["ids"])
                    and abs(s["dual"] - p["dual"]) <= 1e-6 * max(abs(s["dual"]), 1e-300))
            self.stable[q] = bool(covers or same)
            if not update or covers or same or self.check == "every":
                to_check.append(q)
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
                "coef0": self.coef0, "offsets": self.offsets,
                "n_columns": int(self.blocks.n_columns), "pairs": {}}
        for q in qs:
            s = self.info[q]
            spec["pairs"][q] = (self.pairs[q], s["M"] + self.tol, s["m"] - self.tol)
        groups = {}
        for k, w in enumerate(self.blocks.workers):
            groups.setdefault(w, []).append(k)
        futs = []
        down = 0
        for i, (w, ks) in enumerate(sorted(groups.items())):
            down += wire_nbytes(spec)
            futs.append(engine.submit("check", _cascade_check,
                                      [self.blocks.futures[k] for k in ks], spec, list(qs),
                                      [self.roots[q] for q in qs], worker=w, round=round,
                                      where=[f"w{i}"], attempt=attempt))
        parts = engine.gather(futs)
        up = sum(wire_nbytes(p) for p in parts)
        results = {}
        for q in qs:
            acc = {"up": -np.inf, "low": np.inf, "hinge": 0.0, "aqa": 0.0, "asum": 0.0,
                   "violators": 0, "rows": 0}
            for p in parts:
                r = p[q]
                acc["up"] = max(acc["up"], r["up"])
                acc["low"] = min(acc["low"], r["low"])
                for key in ("hinge", "aqa", "asum", "violators", "rows"):
                    acc[key] += r[key]
            gap = acc["up"] - acc["low"]
            acc["gap"] = float(gap) if np.isfinite(gap) else 0.0
            acc["primal"] = 0.5 * acc["aqa"] + acc["hinge"]
            acc["dual"] = acc["asum"] - 0.5 * acc["aqa"]
            results[q] = acc
            self.checked[q] = acc
            if acc["gap"] <= self.tol:
                self.done[q] = True
                self.thresholds[q] = None
            else:
                self.thresholds[q] = (spec["pairs"][q][1], spec["pairs"][q][2])
                if acc["violators"] == 0:
                    self.failed_checks[q] += 1
        return results, down, up

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
            "stable": [bool(v) for v in self.stable] if P > 1 else bool(self.stable[0]),
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
    "kernel": Param("rbf", ("choice", tuple(_k.KERNELS))),
    "gamma": Param(1.0, ("real", 0.0, None, True)),
    "degree": Param(3, ("int", 0, None, False)),
    "coef0": Param(0.0, ("real", None, None, False)),
    "fan_in": Param(2, ("int", 2, None, False)),
    "cache_size": Param(200.0, ("real", 0.0, None, True)),
    "check": Param("every", ("choice", ("every", "stable"))),
})
def build_cascade(blocks, n_classes, seeds, *, C, tol, kernel, gamma, degree, coef0, fan_in,
                  cache_size, check):
    """The Cascade SVM (:class:`Cascade`); ``n_classes`` None means 2 (binary, labels 0/1).

    Parameters (besides the common ones; ``max_iter`` counts passes)
    ------------------------------------------------------------------
    kernel : {"rbf", "linear", "poly", "sigmoid"}
    gamma : float > 0
    degree : int >= 0
    coef0 : float
    fan_in : int >= 2
    cache_size : float > 0, MB per node's SMO
    check : {"every", "stable"}
        When the global check runs: after every pass (default; its violators
        join the next pass), or, as in Graf et al., only once the root's support
        set and dual value stopped changing (and after the last pass).

    The result's ``coef`` is a list, one entry per pair (:func:`pairs_of`), of
    ``{"ids", "X", "coef", "alpha", "b"}``; ``state`` holds ``pairs``, ``passes``
    and ``done`` per pair.
    """
    K = 2 if n_classes is None else int(n_classes)
    machine = Cascade(blocks, K, C=C, tol=tol, kernel=kernel, gamma=gamma, degree=degree,
                      coef0=coef0, fan_in=fan_in, cache_size=cache_size, check=check)
    counts = blocks.gather_map(_pair_counts, machine.pairs, C, key="cascade-count")
    machine._sizes = [int(sum(c[q] for c in counts)) for q in range(len(machine.pairs))]
    return machine, Custom()
