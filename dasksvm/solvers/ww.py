"""Weston-Watkins multiclass SVM on the round engine, over pairs of class bundles.

formulations.md section 2a; the parallel schedule of Alber, Zimmert, Dogan and
Kloft (PLOS ONE 2017). The machine is :class:`WestonWatkins` (a
:class:`~dasksvm.parallel.engine.Custom` schedule: it lays out each round's
tasks itself); :func:`build_ww` registers it as ``"ww"``, run by
``dasksvm.solvers.solve_ww(blocks, n_classes, ...)`` or ``solve("ww", ...)``.

Weight blocks. The weight vectors of bundle ``p``'s classes travel as one
object, either a dense C-ordered array of shape ``(d, n_classes_in_p)``
(classes along the fast axis, the layout the kernels want) or, in the sparse
layout, a CSR matrix of shape ``(n_classes_in_p, d)`` of which a task
densifies only the columns its rows touch. Within a round they move from task
to task inside :class:`_Hand` futures; between rounds each block waits in the
store of one worker.

Worker state. What a fit keeps on a worker lives in that worker's engine store
(``store``, a dict per fit): per piece, key ``(generation, bundle, index)``, a
:class:`_Piece` (the piece's rows, its duals, its working set); per bundle the
weight block between rounds, key ``("W", bundle, tag)``; the worker's tallies
(variables moved, bytes received). Duals and working sets never leave their
worker, except to the client for a checkpoint or ``return_dual``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from dask.sizeof import sizeof

from ..kernels.ww import ww_cd_pass, ww_hinge_screen, ww_hinge_sums, ww_own_scores
from ..parallel.engine import Custom, Machine, StateLost, map_threads, wire_nbytes
from ..parallel.schedule import one_factorization
from ..parallel.shuffle import LAYOUTS, shuffle_by_class
from ._common import passes_per_round
from .registry import Param, register

__all__ = ["WestonWatkins", "build_ww"]

#: A round of a small problem (one bundle, ``local_passes="auto"``) does about this many
#: multiply-adds, counted as non-zeros of X times classes per pass (measured 0.07 s a
#: round on optdigits, 0.43 s on shuttle, one core; a round's tasks cost ~15 ms of dask
#: overhead)...
_AUTO_WORK = 10**8
#: ...in at most this many passes.
_AUTO_MAX_PASSES = 100
#: ``pair_sweeps="auto"`` alternates this often when the pair's weights are small...
_AUTO_SWEEPS = 2
#: ...that is, when the two dense weight blocks together take at most this many bytes.
_AUTO_SWEEPS_BYTES = 16 * 2**20
#: Free buffers the pool of dense weight arrays keeps for reuse (per worker process).
_POOL_BUFFERS = 4


# ---------------------------------------------------------------------------------------
# weight blocks
# ---------------------------------------------------------------------------------------


class _Pool:
    """Buffers of float64 a worker process reuses for dense weight arrays.

    A link's slab and the weight blocks it returns are large (``d x n_classes`` floats:
    200 MB at 10^5 columns and 250 classes) and live for one link or a few; a fresh
    array's pages cost their first touch, which on these machines is 2-3 s for 200 MB
    once freed memory has gone back to the host (a plain copy into a touched array:
    0.04 s). :meth:`take` returns a C-ordered array of the asked shape laid over the
    smallest free buffer that holds it (else over a new one); a block made that way
    gives it back when it dies, if nothing else refers to the array or its buffer (no
    view of it survives). The pool keeps at most ``_POOL_BUFFERS`` free buffers (the
    smallest goes when one more comes back): a link takes about three arrays and frees
    about three, so a few are enough, and the memory held stays within a few slabs.
    ``_ww_free`` (the end of a fit) empties it and starts a new ``generation``: an array
    taken before is not kept when it comes back (blocks of the fit that die later,
    with their futures, free their memory). Only the dense layout uses it.
    """

    def __init__(self):
        self._free, self._lock, self.generation = [], threading.Lock(), 0

    def take(self, shape):
        """An array of ``shape`` (its values are garbage) over a pool buffer."""
        shape = tuple(int(n) for n in shape)
        n = int(np.prod(shape))
        with self._lock:
            fits = [i for i, buf in enumerate(self._free) if buf.size >= n]
            buf = self._free.pop(min(fits, key=lambda i: self._free[i].size)) if fits \
                else None
        if buf is None:
            buf = np.empty(max(n, 1))
        return buf[:n].reshape(shape)

    def give(self, a, generation):
        """Keep the buffer under ``a`` (taken in ``generation``) when only the caller's
        one name and this call refer to ``a``, and only ``a`` to its buffer
        (``sys.getrefcount`` counts those and its own argument: 3 each)."""
        if sys.getrefcount(a) > 3 or not isinstance(a.base, np.ndarray):
            return
        buf = a.base
        if sys.getrefcount(buf) > 3 or buf.base is not None:  # a, buf, the argument
            return
        with self._lock:
            if generation != self.generation:
                return
            self._free.append(buf)
            if len(self._free) > _POOL_BUFFERS:
                del self._free[min(range(len(self._free)), key=lambda i: self._free[i].size)]

    def clear(self):
        with self._lock:
            self._free.clear()
            self.generation += 1


_POOL = _Pool()


class _DenseBlock:
    """A dense weight block, ``a`` of shape ``(d, n_classes_in_block)``, C-ordered.

    In memory it stays dense (what the kernels want); on the wire (pickled
    when it moves between worker processes) it travels as its non-zeros
    when that is less than half the bytes: weight vectors of sparse data
    touch few columns, and moving them is the only communication of a round.
    A block whose array came from the :class:`_Pool` (``pooled``: the pool's generation
    then, else None) gives it back when it dies.

    ``version`` (an int the client gives every block a link makes, or None) names the
    values; it travels with the block. ``base``, on the worker that made the block,
    is ``(version, array)`` of the block the link read, from which :func:`_ww_diff`
    computes the changes (it never travels).
    """

    __slots__ = ("a", "base", "pooled", "version")

    def __init__(self, a, pooled=None, version=None):
        self.a, self.pooled, self.version, self.base = a, pooled, version, None

    def __del__(self):
        if self.pooled is not None:
            _POOL.give(self.a, self.pooled)
            if self.base is not None:  # the base's array, if its own block died already
                arr, self.base = self.base[1], None
                _POOL.give(arr, self.pooled)

    def _sparse_wire(self):
        """``(nonzero positions, their index dtype)`` when the block travels as its
        non-zeros, else None (see ``__reduce__``)."""
        flat = self.a.reshape(-1)
        nz = np.flatnonzero(flat)
        idx_type = np.int32 if flat.size < 2**31 else np.int64
        if nz.size * (8 + np.dtype(idx_type).itemsize) < flat.nbytes // 2:
            return nz.astype(idx_type), idx_type
        return None

    def __reduce__(self):
        wire = self._sparse_wire()
        if wire is not None:
            return (_dense_from_nonzeros, (self.a.shape, wire[0], self.a.reshape(-1)[wire[0]],
                                           self.version))
        return (_DenseBlock, (self.a, None, self.version))

    def wire_nbytes(self):
        """Bytes of the buffers this block sends when it moves (see ``__reduce__``)."""
        wire = self._sparse_wire()
        if wire is None:
            return int(self.a.nbytes)
        return int(wire[0].size * (8 + np.dtype(wire[1]).itemsize))


def _dense_from_nonzeros(shape, idx, vals, version=None):
    gen = _POOL.generation
    a = _POOL.take(shape)
    a.fill(0.0)
    a.reshape(-1)[idx] = vals
    return _DenseBlock(a, pooled=gen, version=version)


class _Delta:
    """The changes of dense weight block ``q`` from version ``base`` to ``version``:
    flat positions ``idx`` (int32, or int64 for blocks of 2^31 entries or more) whose bits
    differ and their new values ``vals``
    (:func:`_ww_diff`, on ``worker``; ``tag`` unique in the fit). A worker that holds
    ``base`` (its cache, ``("V", q)`` in the store) rebuilds ``version`` bit for bit."""

    __slots__ = ("base", "idx", "q", "shape", "tag", "vals", "version", "worker")

    def __init__(self, q, base, version, shape, idx, vals, worker, tag):
        self.q, self.base, self.version, self.shape = int(q), base, version, tuple(shape)
        self.idx, self.vals, self.worker, self.tag = idx, vals, worker, tuple(tag)

    def wire_nbytes(self):
        return int(self.idx.nbytes + self.vals.nbytes)


def _apply_delta(store, d):
    """Version ``d.version`` of block ``d.q``, from this worker's cached ``d.base``."""
    old = store.get(("V", d.q))
    if old is None or old.version != d.base:
        raise StateLost(f"weight block {d.q}: a change from version {d.base} came to a "
                        f"worker that holds {None if old is None else old.version}")
    gen = _POOL.generation
    a = _POOL.take(d.shape)
    a[:] = old.a
    a.reshape(-1)[d.idx] = d.vals
    return _DenseBlock(a, pooled=gen, version=d.version)


def _w_nbytes(W):
    """Bytes ``W`` sends when it moves between workers."""
    return wire_nbytes(W)


def _w_memory(W):
    """Bytes ``W`` takes in memory."""
    if sp.issparse(W):
        return int(W.data.nbytes + W.indices.nbytes + W.indptr.nbytes)
    return int(W.a.nbytes)


def _w_zeros(n_classes, n_columns, sparse, version=None):
    if sparse:
        return _csr32(sp.csr_matrix((n_classes, n_columns), dtype=np.float64))
    return _DenseBlock(np.zeros((n_columns, n_classes)), version=version)


def _csr32(M):
    """``M`` as CSR with sorted int32 indices (when they fit)."""
    M = sp.csr_matrix(M)
    M.sort_indices()
    if M.nnz < 2**31 - 1 and M.shape[1] < 2**31 - 1:
        M.indices = M.indices.astype(np.int32)
        M.indptr = M.indptr.astype(np.int32)
    return M


def _w_from_rows(R, sparse):
    """A weight block from its ``(n_classes_in_block, d)`` rows (dense or sparse)."""
    if sparse:
        return _csr32(R)
    R = R.toarray() if sp.issparse(R) else np.asarray(R, dtype=np.float64)
    return _DenseBlock(np.ascontiguousarray(R.T))


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
        gen = _POOL.generation
        a = _POOL.take(new.shape)
        a[:] = new
        return _DenseBlock(a, pooled=gen)
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
    return _csr32(sp.csr_matrix((vals, (rows, cc)), shape=(n, d)))


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


def _n_cls(W, sparse):
    return W.shape[0] if sparse else W.a.shape[1]


class _Hand:
    """Weight blocks handed from a task to the next: ``blocks`` (a tuple, the pair's
    blocks in pair order), made on ``worker``; ``tag`` is unique within the fit, so a
    worker that reads the same hand in two tasks counts its bytes once."""

    __slots__ = ("blocks", "tag", "worker")

    def __init__(self, blocks, worker, tag):
        self.blocks, self.worker, self.tag = tuple(blocks), worker, tuple(tag)

    def __reduce__(self):
        return (_Hand, (self.blocks, self.worker, self.tag))

    def wire_nbytes(self):
        return sum(_w_nbytes(W) for W in self.blocks)


@sizeof.register(_Hand)
def _sizeof_hand(h):  # dask's memory accounting (and its transfer log): the blocks' memory
    return sum(_w_memory(W) for W in h.blocks) + 64


@sizeof.register(_DenseBlock)
def _sizeof_dense(b):
    return int(b.a.nbytes) + 64


@sizeof.register(_Delta)
def _sizeof_delta(d):
    return d.wire_nbytes() + 64


# ---------------------------------------------------------------------------------------
# dual variables of a piece: one CSR matrix (n_rows_in_piece, K), classes in bundle order
# ---------------------------------------------------------------------------------------


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


def _w_of_alpha(bundle, alpha, col0):
    """``W(alpha)`` of one piece's rows as a ``(K, d)`` CSR matrix, classes in bundle
    order: ``w_c = sum_{y_i = c} (sum_c' alpha_{i,c'}) x_i - sum_{y_i != c} alpha_{i,c} x_i``
    (``col0``: the column of the piece's bundle's first class)."""
    M = sp.csr_matrix(alpha)
    n = bundle.n_rows
    own = sp.csr_matrix((np.asarray(M.sum(axis=1)).ravel(),
                         (np.arange(n), col0 + bundle.label)), shape=M.shape)
    return sp.csr_matrix((own - M).T @ bundle.X)


def _carry_alpha(bundle, olds, n_classes):
    """The duals of ``bundle``'s rows that the old pieces ``olds`` (same bundle, same
    worker) held, zero for the others; and how many rows were carried over."""
    rows, cols, vals, carried = [], [], [], 0
    for st in olds:
        old_rows = st.bundle.rows
        if bundle.n_rows == 0 or len(old_rows) == 0:
            continue
        pos = np.minimum(np.searchsorted(bundle.rows, old_rows), bundle.n_rows - 1)
        ok = bundle.rows[pos] == old_rows
        carried += int(ok.sum())
        coo = sp.coo_matrix(st.alpha)
        m = ok[coo.row]
        rows.append(pos[coo.row[m]])
        cols.append(coo.col[m])
        vals.append(coo.data[m])
    if not rows:
        return sp.csr_matrix((bundle.n_rows, n_classes)), 0
    M = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(bundle.n_rows, n_classes))
    M.sort_indices()
    return M, carried


# ---------------------------------------------------------------------------------------
# worker side: the states in the store, and what tasks read and write there
# ---------------------------------------------------------------------------------------


class _Piece:
    """One piece's state in its worker's store.

    ``bundle`` (the rows), ``alpha`` (CSR ``(rows, K)``, bundle-ordered columns),
    ``ws`` (the working set from the last certificate, a CSR pattern, or None), and
    the bookkeeping that makes a stale or repeated task fail instead of touching the
    iterate: ``run`` (the client's id of the round attempt that last touched it),
    ``count`` (links applied in that run), ``start`` (the duals at the run's start, for
    a rollback after a failed attempt).
    """

    __slots__ = ("alpha", "bundle", "count", "run", "start", "ws")

    def __init__(self, bundle, alpha, run=-1, ws=None):
        self.bundle, self.alpha, self.start, self.ws = bundle, alpha, alpha, ws
        self.run, self.count = run, 0


def _worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _here(planned):
    """This worker's address; StateLost when the task runs elsewhere than ``planned``
    (loose placement after a lost worker: the state it needs is not here)."""
    w = _worker()
    if w is None:
        return planned
    if planned is not None and w.address != planned:
        raise StateLost(f"a task planned on {planned} ran on {w.address}, which holds no "
                        "state for it")
    return w.address


def _lock(store):
    return store.setdefault("_lock", threading.Lock())


def _tally(store, **counts):
    """Add to this worker's tallies (popped by its next certificate)."""
    with _lock(store):
        t = store.setdefault("_tally", {})
        for k, v in counts.items():
            t[k] = t.get(k, 0) + int(v)


def _pid(pid):
    return tuple(int(x) for x in pid)


def _held(store, pid, run, count):
    """The state of piece ``pid``, checked to be at link ``count`` of run ``run``.

    The first link of a run keeps the duals it starts from (``start``, for a
    rollback). A task of an older run, or one that finds another count (a task
    dask recomputed from its lineage after a lost worker), raises StateLost: it must
    not apply its steps twice, or the weights would stop being W(alpha).
    """
    pid = _pid(pid)
    st = store.get(pid)
    if st is None:
        raise StateLost(f"this worker holds no state for piece {pid}")
    if st.run != run:
        if run < st.run or count != 0:
            raise StateLost(f"piece {pid}: stale task of run {run} (state at run {st.run})")
        st.run, st.count, st.start = run, 0, st.alpha
    if st.count != count:
        raise StateLost(f"piece {pid}: task expects link {count} of run {run}, the state is "
                        f"at link {st.count}")
    return st


def _resolve(store, sources, me):
    """The weight blocks named by ``sources`` and the bytes of those that came from
    another worker.

    A source is ``(x, i)`` or ``(x, i, q)``: ``x`` a :class:`_Hand` (its block ``i``),
    a :class:`_Delta` (applied to this worker's cached block ``q``), ``("V", q,
    version)`` (the cached block itself, which must be that version) or ``("W", q,
    tag)`` (a block this store kept between rounds). With ``q``, a block that has a
    version becomes this worker's cached block ``q`` (``("V", q)`` in the store). A
    hand or change made on another worker crossed the network: its ``wire_nbytes`` is
    counted, once per worker (dask moves a key to a worker once, however many of its
    tasks read it).
    """
    out, crossed = [], {}
    for src in sources:
        x, i = src[0], src[1]
        if isinstance(x, (_Hand, _Delta)):
            W = x.blocks[i] if isinstance(x, _Hand) else _apply_delta(store, x)
            if x.worker != me:
                crossed[x.tag] = x
        elif x[0] == "V":
            W = store.get(("V", int(x[1])))
            if W is None or W.version != x[2]:
                raise StateLost(f"this worker holds no version {x[2]} of weight block {x[1]}")
        else:
            key = ("W", int(x[1]), int(x[2]))
            if key not in store:
                raise StateLost(f"this worker holds no weight block {key[1]} (tag {key[2]})")
            W = store[key]
        if len(src) > 2 and getattr(W, "version", None) is not None:
            store[("V", int(src[2]))] = W
        out.append(W)
    nbytes = 0
    if crossed:
        with _lock(store):
            seen = store.setdefault("_seen", set())
            for tag, h in crossed.items():
                if tag not in seen:
                    seen.add(tag)
                    nbytes += h.wire_nbytes()
    return out, nbytes


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


def _visit_rows(sizes, n_parts, part, part_seeds):
    """Rows (stacked positions) of part ``part`` of ``n_parts`` random parts per piece."""
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if n_parts <= 1:
        return np.arange(starts[-1], dtype=np.int64)
    return np.concatenate([
        starts[j] + np.array_split(np.random.default_rng(part_seeds[j]).permutation(nj),
                                   n_parts)[part]
        for j, nj in enumerate(sizes)
    ]).astype(np.int64)


def _csr_concat(parts):
    """Row-stacked CSR arrays ``(indptr, indices[, data])`` of several such tuples."""
    indptr = np.concatenate([[0]] + [t[0][1:] + sum(len(u[1]) for u in parts[:j])
                                     for j, t in enumerate(parts)]).astype(np.int64)
    return (indptr, *[np.concatenate([t[k] for t in parts]) for k in range(1, len(parts[0]))])


def _link_steps(sts, Ws, spec):
    """The coordinate steps of one link on the states ``sts`` (one or two pieces) against
    the pair's blocks ``Ws``: ``(new blocks, new duals per piece, variables moved)``."""
    sparse = spec["sparse"]
    pieces = [st.bundle for st in sts]
    nws = [_n_cls(W, sparse) for W in Ws]
    woff = np.concatenate([[0], np.cumsum(nws)]).astype(np.int64)
    indptr, indices, data, cols, sqnorm, weight = _stack_pieces(pieces, sparse)
    shape = (len(cols) if sparse else _w_rows(Ws[0]), int(woff[-1]))
    gen = _POOL.generation
    Wt = np.empty(shape) if sparse else _POOL.take(shape)
    for j, W in enumerate(Ws):
        _w_load(W, cols, Wt[:, woff[j]:woff[j + 1]])
    sizes = [pc.n_rows for pc in pieces]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(starts[-1])
    own = np.concatenate([pc.label + woff[q]
                          for pc, q in zip(pieces, spec["own_pos"], strict=True)]).astype(np.int64)
    rows = _visit_rows(sizes, spec["n_parts"], spec["part"], spec["part_seeds"])
    ranges = spec["ranges"]
    s_indptr, s_indices, s_data = _csr_concat([_alpha_take(st.alpha, ranges) for st in sts])
    use_ws = all(st.ws is not None for st in sts)
    if use_ws:
        w_indptr, w_indices = _csr_concat([_alpha_take(st.ws, ranges)[:2] for st in sts])
    else:
        w_indptr, w_indices = np.zeros(n + 1, np.int64), np.zeros(0, np.int32)
    r_indptr, r_indices, r_data, _, moved = ww_cd_pass(
        indptr, indices, data, sqnorm, own, np.zeros(n, np.int64),
        np.full(n, int(woff[-1]), np.int64), own, spec["C"] * weight, Wt, s_indptr,
        s_indices, s_data, rows, spec["seed"], spec["passes"], spec["exact_rows"], use_ws,
        w_indptr, w_indices,
    )
    new_alpha = []
    for j, st in enumerate(sts):
        lo, hi = r_indptr[starts[j]], r_indptr[starts[j + 1]]
        new_alpha.append(_alpha_put(st.alpha, ranges, r_indptr[starts[j]:starts[j + 1] + 1] - lo,
                                    r_indices[lo:hi], r_data[lo:hi]))
    new_ws = [_w_store(W, cols, Wt[:, woff[j]:woff[j + 1]]) for j, W in enumerate(Ws)]
    if not sparse:
        _POOL.give(Wt, gen)
    return new_ws, new_alpha, int(moved)


def _certify_piece(st, p, Ws, spec):
    """One piece's share of the certificate against all weight blocks ``Ws`` (bundle
    order): its weighted hinge sum, the sum and non-zeros of its duals, and (with a
    margin) its working set for the next round, kept in ``st.ws``."""
    piece, M, margin = st.bundle, st.alpha, spec["margin"]
    out = {"hinge": 0.0, "alpha_sum": float(M.sum()), "alpha_nnz": int(M.nnz), "ws_nnz": 0}
    if piece.n_rows == 0:
        st.ws = None if margin is None else sp.csr_matrix(M.shape, dtype=np.int8)
        return out
    sparse = spec["sparse"]
    X = piece.X
    view = (X.indptr, piece.local_indices if sparse else X.indices, X.data)
    cols = piece.cols if sparse else None
    own_w = _w_dense_t(Ws[p], cols)
    own = ww_own_scores(*view, piece.label, own_w)
    total = np.zeros(piece.n_rows)
    parts = []
    for q, Wq in enumerate(Ws):
        Wd = own_w if q == p else _w_dense_t(Wq, cols)
        if margin is None:
            total += ww_hinge_sums(*view, own, piece.label, Wd, q == p)
        else:
            h, p_indptr, p_indices = ww_hinge_screen(*view, own, piece.label, Wd, q == p,
                                                      spec["col0"][q], margin)
            total += h
            parts.append((p_indptr, p_indices))
    out["hinge"] = float(np.dot(piece.weight, total))
    if margin is not None:
        st.ws = _ws_merge(piece.n_rows, M.shape[1], parts)
        out["ws_nnz"] = int(st.ws.nnz)
    return out


def _ws_merge(n_rows, n_classes, parts):
    """A piece's working set, CSR pattern ``(n_rows, n_classes)``, from per-block parts."""
    counts = sum((np.diff(p[0]) for p in parts), np.zeros(n_rows, np.int64))
    rows = np.concatenate([np.arange(n_rows).repeat(np.diff(p[0])) for p in parts]
                          + [np.zeros(0, np.int64)])
    order = np.argsort(rows, kind="stable")
    indices = np.concatenate([p[1] for p in parts] + [np.zeros(0, np.int32)])[order]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.int8), indices, indptr),
                         shape=(n_rows, n_classes))


# ---------------------------------------------------------------------------------------
# tasks: ``func(store, spec, ...)``, submitted through Engine.submit
# ---------------------------------------------------------------------------------------


def _ww_init(store, spec, bundles):
    """Put the worker's new pieces (zero duals) and its zero weight blocks in the store;
    return each piece's global rows (``spec["rows"]``) or its row count."""
    _here(spec["worker"])
    out = {}
    for pid, b in zip(spec["pieces"], bundles, strict=True):
        store[_pid(pid)] = _Piece(b, sp.csr_matrix((b.n_rows, spec["n_classes"])))
        out[_pid(pid)] = b.rows if spec["rows"] else b.n_rows
    for q, n, v in spec["zeros"]:
        store[("W", q, spec["tag"])] = W = _w_zeros(n, spec["n_columns"], spec["sparse"], v)
        if v is not None:
            store[("V", q)] = W
    return out


def _ww_load(store, spec):
    """Hand on a weight block that waited in this store between rounds."""
    me = _here(spec["worker"])
    (W,), _ = _resolve(store, [(("W", spec["q"], spec["tag"]), 0)], me)
    return _Hand((W,), me, spec["out"])


def _ww_link(store, spec, sources):
    """One link of a pair chain, on the worker that holds the link's pieces.

    Reads the pieces' duals and working sets from the store and the pair's weight
    blocks from ``sources`` (the previous link's hand, a hand from another chain, or
    this store); runs ``local_passes`` passes of the WW steps over (part ``part`` of)
    the pieces' rows; writes the new duals back to the store and returns the pair's
    new blocks as one :class:`_Hand`. Only that hand leaves the worker.
    """
    me = _here(spec["worker"])
    sts = [_held(store, pid, spec["run"], k) for pid, k in spec["pieces"]]
    Ws, nbytes = _resolve(store, sources, me)
    new_ws, new_alpha, moved = _link_steps(sts, Ws, spec)
    for st, a in zip(sts, new_alpha, strict=True):
        st.alpha = a
        st.count += 1
    if spec["versions"] is not None:  # several workers: name the new blocks, cache them
        for q, v, keep, old, W in zip(spec["bundles"], spec["versions"], spec["bases"], Ws,
                                      new_ws, strict=True):
            W.version = v
            if keep and old.version is not None:  # another worker holds old: a diff may come
                W.base = (old.version, old.a)
            store[("V", q)] = W
    _tally(store, recv=nbytes, moved=moved)
    return _Hand(new_ws, me, spec["tag"])


def _ww_diff(store, spec, hand):
    """Block ``spec["i"]`` of a hand made here, for a worker that holds the block its
    link read (version ``spec["base"]``): a :class:`_Delta` (the positions whose bits
    differ, and their values) when that is fewer bytes than the block itself, else the
    block alone in a :class:`_Hand` (not its pair: the reader needs only this one)."""
    me = _here(spec["worker"])
    W = hand.blocks[spec["i"]]
    if W.base is None or W.base[0] != spec["base"]:
        raise StateLost(f"weight block {spec['q']}: no base version {spec['base']} here")
    new, old = W.a.reshape(-1), W.base[1].reshape(-1)
    idx = np.flatnonzero(new.view(np.int64) != old.view(np.int64))
    idx = idx.astype(np.int32) if new.size < 2**31 else idx
    if idx.size * (8 + idx.itemsize) >= W.wire_nbytes():
        return _Hand((W,), me, spec["tag"])
    return _Delta(spec["q"], spec["base"], W.version, W.a.shape, idx, new[idx], me,
                  spec["tag"])


def _ww_certify(store, spec, sources):
    """This worker's share of the certificate: every piece here against all blocks.

    Returns the sums of the pieces' hinge terms, duals and working sets; ``sum_c
    ||w_c||^2`` of the bundles this worker keeps (``owned``, stored for the next round
    under ``tag``; blocks under tags not in ``keep`` are dropped); and the worker's
    tallies: variables its links moved and bytes of weight blocks it received.
    """
    me = _here(spec["worker"])
    pids = [_pid(pid) for pid, _ in spec["pieces"]]
    sts = [_held(store, pid, spec["run"], k) for pid, k in spec["pieces"]]
    Ws, nbytes = _resolve(store, sources, me)
    parts = map_threads(lambda j: _certify_piece(sts[j], pids[j][1], Ws, spec),
                         range(len(sts)))
    out = {k: sum(pt[k] for pt in parts) for k in ("hinge", "alpha_sum", "alpha_nnz", "ws_nnz")}
    out["sqnorm"] = 0.0
    for q in spec["owned"]:
        out["sqnorm"] += _w_sqnorm(Ws[q])
        store[("W", q, spec["tag"])] = Ws[q]
    keep = set(spec["keep"])
    for key in [k for k in list(store) if isinstance(k, tuple) and k[:1] == ("W",)]:
        if key[2] not in keep:
            store.pop(key, None)
    with _lock(store):
        tally = store.pop("_tally", {})
        seen = store.get("_seen", set())
        seen.difference_update({tag for tag in list(seen) if tag[0] < spec["run"]})
    out.update(moved=int(tally.get("moved", 0)), recv=int(tally.get("recv", 0)) + nbytes,
               worker=me)
    return out


def _ww_rebuild(store, spec, bundles):
    """After a failed round: this worker's pieces for the next attempt, and their W.

    Old pieces here (``spec["old"]``) drop the failed run's steps (back to the duals
    the run started from). Each new piece (``spec["new"]``: ``(pid, old pids)``) takes
    its rows from ``bundles`` (a new shuffle) or, with None there, stays the old piece
    of the same id; its duals are the old pieces' duals of the same rows, zero for rows
    no state here held. Returns the sum of the new pieces' ``W(alpha)`` (``(K, d)``,
    bundle order, dense or CSR) and what was kept.
    """
    _here(spec["worker"])
    olds = {}
    for pid in map(_pid, spec["old"]):
        st = store.get(pid)
        if st is not None:
            if st.run == spec["failed"]:
                st.alpha = st.start
            olds[pid] = st
    total, missing, kept, rows = None, [], 0, 0
    new_ids = set()
    for (pid, srcs), bundle in zip(spec["new"], bundles, strict=True):
        pid = _pid(pid)
        if bundle is None:
            if pid not in olds:
                missing.append(pid)
                continue
            st = olds[pid]
            new = _Piece(st.bundle, st.alpha, spec["run"], st.ws)
            kept += st.bundle.n_rows
        else:
            alpha, carried = _carry_alpha(bundle, [olds[_pid(o)] for o in srcs
                                                   if _pid(o) in olds], spec["n_classes"])
            new = _Piece(bundle, alpha, spec["run"])
            kept += carried
        rows += new.bundle.n_rows
        store[pid] = new
        new_ids.add(pid)
        g = _w_of_alpha(new.bundle, new.alpha, spec["col0"][pid[1]])
        total = g if total is None else total + g
    for pid in olds:
        if pid not in new_ids:
            store.pop(pid, None)
    if total is not None and not spec["sparse"]:
        total = total.toarray()
    return total, {"missing": missing, "kept": kept, "rows": rows}


def _ww_restore(store, spec, parts):
    """Sum the workers' ``W(alpha)`` shares and keep every bundle's block here under
    ``tag``; return what the rebuild tasks kept and missed."""
    _here(spec["worker"])
    shares = [g for g, _ in parts if g is not None]
    info = {"missing": [m for _, i in parts for m in i["missing"]],
            "kept": sum(i["kept"] for _, i in parts), "rows": sum(i["rows"] for _, i in parts)}
    if info["missing"]:
        return info
    K, d = spec["n_classes"], spec["n_columns"]
    G = functools.reduce(lambda a, b: a + b, shares) if shares else np.zeros((K, d))
    G = sp.csr_matrix(G) if spec["sparse"] else np.asarray(G)
    for q, (lo, hi) in enumerate(spec["ranges"]):
        store[("W", q, spec["tag"])] = _w_from_rows(G[lo:hi], spec["sparse"])
    return info


def _ww_duals(store, spec):
    """Per piece here: ``(global rows, (indptr, indices, data) of its duals, (indptr,
    indices) of its working set or None)``."""
    _here(spec["worker"])
    out = []
    for pid in map(_pid, spec["pieces"]):
        st = store.get(pid)
        if st is None:
            raise StateLost(f"this worker holds no state for piece {pid}")
        M = sp.csr_matrix(st.alpha)
        ws = None if st.ws is None else (st.ws.indptr, st.ws.indices)
        out.append((st.bundle.rows, (M.indptr, M.indices, M.data), ws))
    return out


def _ww_weights(store, spec):
    """The weight blocks ``spec["bundles"]`` this store keeps under ``spec["tag"]``."""
    me = _here(spec["worker"])
    return _resolve(store, [(("W", q, spec["tag"]), 0) for q in spec["bundles"]], me)[0]


def _ww_resume(store, spec):
    """Set the duals (and working sets) of the pieces here and keep the given weight
    blocks (a checkpoint)."""
    _here(spec["worker"])
    K = spec["n_classes"]
    for pid, (indptr, indices, data), ws in spec["pieces"]:
        st = store.get(_pid(pid))
        if st is None:
            raise StateLost(f"this worker holds no state for piece {_pid(pid)}")
        shape = (st.bundle.n_rows, K)
        st.alpha = st.start = sp.csr_matrix((data, indices, indptr), shape=shape)
        st.ws = None if ws is None else sp.csr_matrix(
            (np.ones(len(ws[1]), np.int8), ws[1], ws[0]), shape=shape)
    for q, W in spec["weights"]:
        store[("W", q, spec["tag"])] = W
    return len(spec["pieces"])


def _ww_free(store, spec):
    """Drop everything this fit keeps on this worker (its rows, duals, weight blocks)."""
    n = len(store)
    store.clear()
    _POOL.clear()
    return n


# ---------------------------------------------------------------------------------------
# the machine (client side)
# ---------------------------------------------------------------------------------------


class _PieceInfo(NamedTuple):
    """What the client knows of a piece: its store key, worker, rows, source blocks."""

    id: tuple
    worker: str
    n_rows: int
    blocks: frozenset


class WestonWatkins(Machine):
    """Weston-Watkins multiclass linear SVM by dual coordinate ascent over class pairs.

    Solves (formulations.md, section 2a), with ``C_i = C * weight_i``::

        min_W  P(W) = 1/2 sum_c ||w_c||^2
                      + sum_i C_i sum_{c != y_i} max(0, 1 - (w_{y_i} - w_c).x_i)

    over ``W`` of shape ``(n_classes, n_columns)`` (``K x d``), through its dual
    over ``alpha`` of shape ``(n_samples, K)``, ``alpha_{i,c}`` in ``[0, C_i]``
    (``alpha_{i,y_i} = 0``): ``D(alpha) = sum alpha - 1/2 sum_c ||w_c(alpha)||^2``
    with ``w_c = sum_{y_i = c} (sum_{c'} alpha_{i,c'}) x_i - sum_{y_i != c}
    alpha_{i,c} x_i``. Every step is an exact dual ascent step that touches only
    the weight vectors of the classes it involves: the single-variable step of
    formulations.md, or (``exact_rows``) the exact maximization over all of one
    row's variables in the task.

    **Bundles and pieces.** The classes are split once into ``B`` bundles with
    balanced row counts and the rows grouped by bundle
    (:func:`~dasksvm.parallel.shuffle.shuffle_by_class`, tasks only, examples never
    through the client). ``layout="spread"``: every worker groups the rows it
    holds, a bundle is a *piece* per worker and no example moves. ``"owner"``:
    each bundle is gathered whole on one worker (the examples move once). A
    piece's rows, duals (CSR ``(rows, K)``) and working set live in its worker's
    engine store; the weight block ``W_p`` (the ``w_c`` of bundle ``p``'s
    classes) is the only thing that moves after the shuffle.

    **One round** (engine round = one epoch) runs the rounds of
    :func:`~dasksvm.parallel.schedule.one_factorization` ``(B)`` (``B - 1``, or ``B``
    with a bye when ``B`` is odd; one with the single bundle when ``B = 1``), then
    the certificate. A factorization round holds disjoint bundle pairs ``{a, b}``,
    run side by side; pair ``{a, b}`` updates every ``alpha_{i,c}`` with ``y_i``
    and ``c`` both in ``a`` or ``b`` (cross- and intra-bundle pairs). A pair is a
    **chain** of ``ww-link`` tasks, one per worker holding rows of ``a`` or ``b``,
    repeated ``S = pair_sweeps`` times; each link runs ``local_passes`` passes over
    (the ``s``-th of ``S`` random parts of) its rows of both bundles and hands
    ``(W_a, W_b)`` to the next. The chains of a round start on different workers
    (staggered), so they run side by side. Every step updates
    the one current copy of the blocks it touches: ``W`` always equals ``W(alpha)``.
    The iterates depend on the seeds, ``B``, the layout, ``local_passes``,
    ``pair_sweeps`` and where the rows are, never on timing.

    **What a round communicates.** Between workers, only weight blocks, inside
    :class:`_Hand` futures: a link's hand holds the pair's two blocks and moves
    whole to the next link when that is on another worker (``S * n_workers_of_pair
    - 1`` times per pair); where a chain starts, the first link reads each block
    from the hand the last chain of that bundle left (the whole hand, both of its
    blocks, moves if it is elsewhere), from its own store, or from a ``ww-load``
    task on the worker that kept the block since the last round; every
    certificate task receives every bundle's latest hand. A dense block travels as
    its non-zeros when that halves it. Duals, working sets and rows never move
    (outside recovery). Up to the client: one small dict of sums per certificate
    task. The history's ``bytes`` are measured: every task adds the
    :meth:`_Hand.wire_nbytes` of the hands it received from another worker (once
    per worker and hand), reported by the certificate; they are ``bytes_up``
    (with the gathered sums), and also ``bytes_w`` (weights only); ``bytes_down``
    is 0 (the client sends no arrays in a round).

    **Stopping rule.** After the chains, one ``ww-certify`` task per worker
    computes, for its pieces, the weighted hinge sums against all classes (one
    densified block at a time), the sums of the duals and (``ws_margin``) the
    working sets for the next round, and ``sum_c ||w_c||^2`` of the blocks it
    keeps. ``P = 1/2 sum ||w||^2 + C * hinge``, ``D = sum alpha - 1/2 sum
    ||w||^2``; the engine stops at the first round with ``(P - D) / |P| <= tol``,
    which certifies ``P(coef) - P* <= P - D``. After ``max_iter`` rounds the
    engine's evaluation round re-reports the last certificate (the iterate has not
    moved: no tasks) and warns.

    Recovery (a lost worker, or a task that found no state): the failed round's
    steps are dropped (pieces go back to the duals the round started from), the
    pieces of lost workers are rebuilt by a new shuffle of the refreshed blocks
    (their duals restart from zero; owners of surviving bundles stay), and the
    blocks are recomputed from all duals (``ww-rebuild``, ``ww-restore``), so the
    iterate is a feasible dual point with ``W = W(alpha)``; then the round is run
    again.

    Memory per worker: its pieces' rows; their duals (non-zeros, 12 bytes each
    plus 8 per row; twice while a round runs, for the rollback); the weight blocks
    in flight and those kept between rounds. A dense-layout link holds a ``d x
    (n_classes_in_a + n_classes_in_b)`` float64 slab; a certificate task densifies
    one block at a time.
    """

    name = "Weston-Watkins"
    prefix = "ww"
    #: the engine's per-block tasks carry the machine (their init / settle are the defaults):
    #: the problem only; blocks, futures and the engine stay on the client
    worker_fields = ("C", "K")

    def __init__(self, blocks, n_classes, seeds, *, C, n_bundles, local_passes, layout,
                 pair_sweeps, exact_rows, ws_margin, sparse_coef, return_dual,
                 ship_changes=False):
        self.blocks, self.K, self.seeds = blocks, int(n_classes), seeds
        self.ship_changes = bool(ship_changes)
        self.C, self.B, self.layout = float(C), int(n_bundles), layout
        self.passes, self.exact = int(local_passes), bool(exact_rows)
        self.sweeps_param = pair_sweeps
        self.margin = None if ws_margin is None else float(ws_margin)
        self.sparse, self.return_dual = bool(sparse_coef), bool(return_dual)
        self.d = int(blocks.n_columns)
        self._rounds = [rnd for rnd in one_factorization(self.B) if rnd] if self.B > 1 \
            else [[(0,)]]
        self._ready, self._ok, self._bundles, self._gen = False, False, None, 0
        self._run = self._serial = self._round = 0
        self._last = self._coef = self._alpha = self._error = self._loaded = None
        self._engine = None
        self._versioned = False
        self._forget_versions()
        self.shuffle_bytes = 0
        self.recovered = []  # per recovery: round, rows, rows that kept their duals

    def problem(self):
        return {"solver": "ww", "C": self.C, "n_classes": self.K}

    # --- small counters -----------------------------------------------------------------
    def _new_run(self):
        self._run += 1
        return self._run

    def _next(self):
        self._serial += 1
        return self._serial

    def _where(self, *tags):
        return [*tags, f"n{self._next()}"]

    # --- setup: shuffle, pieces into the stores -------------------------------------------
    def _adopt(self, bundles):
        """Take a new BundleSet's layout: classes, column ranges, sweeps, piece infos."""
        if self._ready and any(not np.array_equal(a, b) for a, b in
                               zip(self.classes, bundles.classes, strict=True)):
            raise RuntimeError("Weston-Watkins: the new shuffle grouped the classes "
                               "differently; the duals cannot be carried over")
        self._gen += 1
        self.classes = [np.asarray(c) for c in bundles.classes]
        ncls = [len(c) for c in self.classes]
        offs = np.concatenate([[0], np.cumsum(ncls)]).astype(np.int64)
        self.ncls, self.col0 = ncls, [int(o) for o in offs[:-1]]
        self.ranges = [(int(offs[p]), int(offs[p + 1])) for p in range(self.B)]
        if self.sweeps_param == "auto":
            small = sum(sorted(ncls)[-2:]) * self.d * 8 <= _AUTO_SWEEPS_BYTES
            self.sweeps = _AUTO_SWEEPS if small and self.passes == 1 else 1
        else:
            self.sweeps = int(self.sweeps_param)
        where = list(self.blocks.workers)
        every = frozenset(range(len(where)))
        self.pieces = [[_PieceInfo((self._gen, p, j), pc.worker, pc.n_rows,
                                   every if bundles.layout == "owner" else
                                   frozenset(k for k, w in enumerate(where) if w == pc.worker))
                        for j, pc in enumerate(ps)] for p, ps in enumerate(bundles.pieces)]
        self.shuffle_bytes += int(bundles.nbytes_moved)
        self._bundles = bundles
        return [[pc.future for pc in ps] for ps in bundles.pieces]

    def _shuffle(self, placement=None):
        if self._bundles is not None:
            self._bundles.release()
        return shuffle_by_class(self.blocks, self.K, self.B, layout=self.layout,
                                key_prefix="ww-shuffle", placement=placement)

    def _by_worker(self, engine):
        """``[(worker, [piece info])]`` in the engine's worker order."""
        order = {w: i for i, w in enumerate(engine.workers())}
        groups = {}
        for ps in self.pieces:
            for pc in ps:
                groups.setdefault(pc.worker, []).append(pc)
        return sorted(groups.items(), key=lambda g: order.get(g[0], len(order)))

    def _setup(self, engine, round, rows=False):
        """Shuffle, put every piece (zero duals) and zero weight blocks in the stores;
        the pieces' global rows with ``rows``."""
        futures = self._adopt(self._shuffle())
        groups = self._by_worker(engine)
        held = [w for w, _ in groups]
        home = [h if h in held else held[0] for h in self._bundles.home]
        tag = self._next()
        self._forget_versions()
        # versions (blocks that move as their changes): ship_changes, dense, several workers
        self._versioned = self.ship_changes and not self.sparse and len(groups) > 1
        zeros = {}
        for q in range(self.B):
            zeros[q] = self._next() if self._versioned else None
            self._version(q, zeros[q], None, [home[q]])
        futs = []
        for i, (w, pcs) in enumerate(groups):
            spec = {"worker": w, "pieces": [pc.id for pc in pcs], "n_classes": self.K,
                    "rows": rows, "zeros": [(q, self.ncls[q], zeros[q]) for q in range(self.B)
                                            if home[q] == w],
                    "tag": tag, "n_columns": self.d, "sparse": self.sparse}
            fut_of = {pc.id: futures[pc.id[1]][pc.id[2]] for pc in pcs}
            futs.append(engine.submit("init", _ww_init, spec, [fut_of[pc.id] for pc in pcs],
                                      worker=w, round=round, where=self._where(f"w{i}")))
        out = {}
        for d in engine.gather(futs):
            out.update(d)
        self._bundles.release()
        self._w_tag, self._w_at = tag, home
        self._ready = True
        return out

    # --- one round ----------------------------------------------------------------------
    def run_round(self, engine, round, update, attempt):
        """Chains (when ``update``), then the certificate; see the class docstring."""
        t0 = time.perf_counter()
        self._engine, self._round, self._ok = engine, round, False
        if not self._ready:
            self._setup(engine, round)
        if not update and self._last is not None and self._last[0] == round - 1:
            total = dict(self._last[1], moved=0, recv=0, epoch_time=0.0)
            self._last, self._ok = (round, total), True
            return total, 0, 0
        live = set(engine.workers())
        gone = sorted({pc.worker for ps in self.pieces for pc in ps} - live)
        if gone:
            raise StateLost(f"workers {gone} holding pieces left the cluster")
        run = self._new_run()
        src = {q: (("W", q, self._w_tag), 0, self._w_at[q]) for q in range(self.B)}
        counts = {}
        if update:
            self._chains(engine, round, attempt, run, src, counts)
        stats = self._certify(engine, round, attempt, run, src, counts)
        total = {k: sum(s[k] for s in stats) for k in
                 ("hinge", "alpha_sum", "alpha_nnz", "ws_nnz", "sqnorm", "moved", "recv")}
        total["epoch_time"] = time.perf_counter() - t0
        self._last, self._ok = (round, total), True
        return total, 0, int(total["recv"]) + wire_nbytes(stats)

    # --- which copy of a weight block a task reads (versions) ---------------------------
    def _forget_versions(self):
        """Know nothing of the workers' cached blocks (set-up, recovery, resume): every
        read from another worker then moves the whole hand, as without versions."""
        self._ver, self._base_of, self._held = {}, {}, {}

    def _version(self, q, version, base, workers):
        """Block ``q`` is now ``version`` (made from ``base``), cached on ``workers``."""
        self._ver[q] = version
        if version is not None:
            self._base_of[version] = base
            for w in workers:
                self._held[(w, q)] = version

    def _source(self, engine, src, q, worker, round, attempt, run):
        """The source a task on ``worker`` reads ``W_q`` from, ``(x, i, q)``.

        A block made on ``worker`` (its hand, or the store it waited in): there. Else,
        in the dense layout, when ``worker`` caches the latest version (every
        certificate task reads every block): the cache, nothing moves; when it caches
        the version the latest one was made from: a ``ww-diff`` task where the latest
        is sends only the entries that changed. Else the whole hand (through a
        ``ww-load`` task when the block waited in a store between rounds)."""
        obj, i, at = src[q]
        ver = self._ver.get(q)
        if at != worker and ver is not None:
            held = self._held.get((worker, q))
            if held == ver:
                return (("V", q, ver), 0, q)
            if held is not None and held == self._base_of.get(ver) \
                    and not isinstance(obj, tuple):
                spec = {"worker": at, "i": i, "q": q, "base": held, "tag": (run, self._next())}
                diff = engine.submit("diff", _ww_diff, spec, obj, worker=at, round=round,
                                     where=[f"p{q}", f"n{self._next()}"], attempt=attempt)
                return (diff, 0, q)
        if isinstance(obj, tuple) and at != worker:
            spec = {"worker": at, "q": q, "tag": obj[2], "out": (run, self._next())}
            obj = engine.submit("load", _ww_load, spec, worker=at, round=round,
                                where=[f"p{q}"], attempt=attempt)
            src[q] = (obj, 0, at)
        return (obj, i, q)

    @staticmethod
    def _chain_order(held, workers, i):
        """The workers of chain ``i`` of a factorization round: those in ``held``, in worker
        order rotated to start at ``i mod n_workers`` (the chains of a round start on
        different workers and run side by side; a chain keeps alternating workers from
        one round to the next, which its convergence needs more than saved transfers)."""
        k = i % len(workers)
        return [w for w in workers[k:] + workers[:k] if w in held]

    def _chains(self, engine, round, attempt, run, src, counts):
        """Submit every pair chain of the round; ``src`` ends with each bundle's last hand."""
        workers = engine.workers()
        for r, rnd in enumerate(self._rounds):
            for i, pair in enumerate(rnd):
                group = list(pair)
                on = {}
                for p in group:
                    for pc in self.pieces[p]:
                        on.setdefault(pc.worker, []).append(pc)
                if not on:
                    continue  # no rows of these classes anywhere: no variables
                order = self._chain_order(on, workers, i)
                seeds = {pc.id: self.seeds.seed(round, 2, r, pc.id[1], pc.id[2])
                         for w in order for pc in on[w]}
                a, b = (group * 2)[:2]
                h = 0
                for part in range(self.sweeps):
                    for w in order:
                        h += 1
                        self._link(engine, round, attempt, run, src, counts, on[w], group, w,
                                   {"part": part, "part_seeds": [seeds[pc.id] for pc in on[w]],
                                    "seed": self.seeds.seed(round, 1, r, i, h)},
                                   [f"s{r}", f"b{a}", f"b{b}", f"h{h}"])

    def _link(self, engine, round, attempt, run, src, counts, pcs, group, w, extra, where):
        sources = [self._source(engine, src, q, w, round, attempt, run) for q in group]
        versions = [self._next() for _ in group] if self._versioned else None
        bases = None if versions is None else [
            any(v == self._ver.get(q) for (o, p), v in self._held.items() if p == q and o != w)
            for q in group]
        spec = {"worker": w, "run": run, "pieces": [(pc.id, counts.get(pc.id, 0)) for pc in pcs],
                "own_pos": [group.index(pc.id[1]) for pc in pcs], "bundles": list(group),
                "ranges": [self.ranges[q] for q in group], "C": self.C, "n_parts": self.sweeps,
                "passes": self.passes, "exact_rows": self.exact, "sparse": self.sparse,
                "versions": versions, "bases": bases, "tag": (run, self._next()), **extra}
        fut = engine.submit("link", _ww_link, spec, sources, worker=w, round=round, where=where,
                            attempt=attempt)
        for u, q in enumerate(group):
            if versions is not None:
                self._version(q, versions[u], self._ver.get(q), [w])
            src[q] = (fut, u, w)
        for pc in pcs:
            counts[pc.id] = counts.get(pc.id, 0) + 1

    def _certify(self, engine, round, attempt, run, src, counts):
        """One certificate task per worker holding pieces; each bundle's block is kept for
        the next round by the worker where its last hand is (else the first such worker)."""
        groups = self._by_worker(engine)
        held = [w for w, _ in groups]
        owner = [src[q][2] if src[q][2] in held else held[0] for q in range(self.B)]
        tag = self._next()
        futs = []
        for i, (w, pcs) in enumerate(groups):
            sources = [self._source(engine, src, q, w, round, attempt, run)
                       for q in range(self.B)]
            spec = {"worker": w, "run": run, "pieces": [(pc.id, counts.get(pc.id, 0))
                                                        for pc in pcs],
                    "owned": [q for q in range(self.B) if owner[q] == w], "tag": tag,
                    "keep": (self._w_tag, tag), "margin": self.margin, "sparse": self.sparse,
                    "col0": self.col0}
            futs.append(engine.submit("certify", _ww_certify, spec, sources, worker=w,
                                      round=round, where=[f"w{i}"], attempt=attempt))
        stats = engine.gather(futs)
        self._w_tag, self._w_at = tag, owner
        for q in range(self.B):  # every certificate task read (and cached) every block
            self._version(q, self._ver.get(q), self._base_of.get(self._ver.get(q)), held)
        return stats

    def step(self, total, round, update):
        sq = float(total["sqnorm"])
        return {
            "primal": 0.5 * sq + self.C * float(total["hinge"]),
            "dual": float(total["alpha_sum"]) - 0.5 * sq,
            "extra": {"epoch_time": float(total["epoch_time"]), "n_moved": int(total["moved"]),
                      "nnz_alpha": int(total["alpha_nnz"]), "ws_nnz": int(total["ws_nnz"]),
                      "bytes_w": int(total["recv"])},
        }

    def advance(self):
        return True  # the certified iterate is the current one: nothing is pending

    # --- recovery -----------------------------------------------------------------------
    def recover(self, engine, attempt):
        """Drop the failed round's steps, rebuild lost pieces, recompute W from all duals."""
        self._last, self._ok = None, False
        self._forget_versions()
        if not self._ready:
            return  # the failed round was setting up: the retry sets up afresh
        failed, live = self._run, set(engine.workers())
        olds = [pc for ps in self.pieces for pc in ps]
        if all(pc.worker in live for pc in olds):  # every piece should still be there
            plan = {pc.worker: [] for pc in olds}
            for pc in olds:
                plan[pc.worker].append(((pc.id, [pc.id]), None))
            try:
                if not self._rebuild(engine, attempt, failed, olds, plan)["missing"]:
                    return
            except (StateLost, OSError):
                pass  # a worker left meanwhile: rebuild by a new shuffle
            live = set(engine.workers())
        placement = None
        if self.layout == "owner":
            placement = [ps[0].worker if ps and ps[0].worker in live else None
                         for ps in self.pieces]
        futures = self._adopt(self._shuffle(placement))
        plan = {}
        for p, ps in enumerate(self.pieces):
            for pc, fut in zip(ps, futures[p], strict=True):
                srcs = [o.id for o in olds if o.id[1] == p and o.worker == pc.worker
                        and o.blocks & pc.blocks]
                plan.setdefault(pc.worker, []).append(((pc.id, srcs), fut))
        info = self._rebuild(engine, attempt, failed, olds, plan)
        self._bundles.release()
        if info["missing"]:
            raise RuntimeError(f"Weston-Watkins: pieces {info['missing']} could not be rebuilt")

    def _rebuild(self, engine, attempt, failed, olds, plan):
        """Submit the rebuild tasks of ``plan`` (worker -> [((pid, old pids), rows future or
        None)]) and the restore of W; returns the restore's info."""
        run = self._new_run()
        order = {w: i for i, w in enumerate(engine.workers())}
        workers = sorted(set(plan) | {pc.worker for pc in olds if pc.worker in order},
                         key=lambda w: order.get(w, len(order)))
        futs = []
        for w in workers:
            items = plan.get(w, [])
            spec = {"worker": w, "failed": failed, "run": run, "n_classes": self.K,
                    "sparse": self.sparse, "col0": self.col0,
                    "old": [pc.id for pc in olds if pc.worker == w],
                    "new": [x for x, _ in items]}
            futs.append(engine.submit("rebuild", _ww_rebuild, spec, [f for _, f in items],
                                      worker=w, round=self._round, attempt=attempt,
                                      where=self._where(f"w{order.get(w, len(order))}")))
        w0 = next(w for w in workers if plan.get(w))
        tag = self._next()
        spec = {"worker": w0, "tag": tag, "n_classes": self.K, "n_columns": self.d,
                "sparse": self.sparse, "ranges": self.ranges}
        info = engine.gather(engine.submit("restore", _ww_restore, spec, futs, worker=w0,
                                           round=self._round, attempt=attempt,
                                           where=self._where()))
        if not info["missing"]:
            self._w_tag, self._w_at = tag, [w0] * self.B
            self.recovered.append({"round": self._round, "rows": info["rows"],
                                   "kept": info["kept"], "reshuffled": bool(olds) and any(
                                       f is not None for v in plan.values() for _, f in v)})
            if self._engine is not None and self._engine.verbose:
                print(f"[ww] recovered: {info['kept']} of {info['rows']} rows kept their duals",
                      flush=True)
        return info

    # --- the model, the duals, checkpoints -----------------------------------------------
    def _gather_weights(self, engine):
        """The weight blocks of the last certificate, gathered (bundle order)."""
        order = {w: i for i, w in enumerate(engine.workers())}
        futs, which = [], []
        for w in sorted(set(self._w_at), key=lambda w: order.get(w, len(order))):
            qs = [q for q in range(self.B) if self._w_at[q] == w]
            spec = {"worker": w, "bundles": qs, "tag": self._w_tag}
            futs.append(engine.submit("coef", _ww_weights, spec, worker=w,
                                      where=self._where(f"w{order.get(w, len(order))}")))
            which.append(qs)
        W = [None] * self.B
        for qs, blocks in zip(which, engine.gather(futs), strict=True):
            for q, blk in zip(qs, blocks, strict=True):
                W[q] = blk
        return W

    def _assemble(self, W):
        """``coef`` (K, d) in class order from the bundle-ordered blocks."""
        order = np.concatenate(self.classes)
        if self.sparse:
            inv = np.empty(self.K, dtype=np.int64)
            inv[order] = np.arange(self.K)
            return _csr32(sp.vstack(W, format="csr")[inv])
        coef = np.empty((self.K, self.d))
        coef[order] = np.concatenate([_w_coef_rows(w) for w in W], axis=0)
        return coef

    def _gather_duals(self, engine):
        """All duals as one CSR ``(n_samples, K)`` in class order, and the working sets
        likewise (a CSR pattern; None unless every piece has one)."""
        order = np.concatenate(self.classes)
        futs = [engine.submit("dual", _ww_duals, {"worker": w, "pieces": [pc.id for pc in pcs]},
                              worker=w, where=self._where(f"w{i}"))
                for i, (w, pcs) in enumerate(self._by_worker(engine))]
        parts = [x for part in engine.gather(futs) for x in part]
        shape = (self.blocks.n_samples, self.K)
        M = _stack_rows([(rows, a) for rows, a, _ in parts], order, shape)
        if any(ws is None for _, _, ws in parts):
            return M, None
        ones = [(rows, (ip, ix, np.ones(len(ix), np.int8))) for rows, _, (ip, ix) in parts]
        return M, _stack_rows(ones, order, shape)

    def model_arrays(self):
        coef = self._assemble(self._gather_weights(self._engine))
        if sp.issparse(coef):
            return {"coef_indptr": coef.indptr.astype(np.int64),
                    "coef_indices": coef.indices.astype(np.int64), "coef_data": coef.data}
        return {"coef": coef}

    def load_model_arrays(self, arrays):
        self._loaded = _coef_from_arrays(arrays, self.K, self.d)

    def warm(self, arrays, problem):
        """The previous fit's duals and weight blocks scaled by C / C_old (W is linear in
        alpha, so W = W(alpha) still holds); its working sets are dropped, so the first
        round visits every variable, as a cold one does."""
        r = self.C / float(problem["C"])
        if "state__alpha_data" not in arrays:
            raise ValueError("the warm state holds no Weston-Watkins duals: written by "
                             "another solver")
        out = {n: a for n, a in arrays.items() if not n.startswith("state__ws_")}
        for n in ("state__alpha_data", "model__coef", "model__coef_data"):
            if n in out:
                out[n] = np.asarray(out[n]) * r
        return out

    def save_states(self, engine):
        M, ws = self._gather_duals(engine)
        out = {"alpha_indptr": M.indptr.astype(np.int64),
               "alpha_indices": M.indices.astype(np.int64), "alpha_data": M.data}
        if ws is not None:
            out.update(ws_indptr=ws.indptr.astype(np.int64),
                       ws_indices=ws.indices.astype(np.int64))
        return out

    def load_states(self, engine, arrays):
        """Set up the pieces and give them the checkpoint's duals, working sets and blocks."""
        shape = (self.blocks.n_samples, self.K)
        M = _alpha_from_arrays(arrays, *shape)
        ws = _ws_from_arrays(arrays, shape)
        if self._loaded is None:
            raise ValueError("checkpoint has no weight blocks (coef): written by another solver")
        rows = self._setup(engine, None, rows=True)
        pos = np.empty(self.K, dtype=np.int64)
        pos[np.concatenate(self.classes)] = np.arange(self.K)
        coef = sp.csr_matrix(self._loaded)
        tag = self._next()
        futs = []
        for i, (w, pcs) in enumerate(self._by_worker(engine)):
            pieces = []
            for pc in pcs:
                a = _local_columns(M[rows[pc.id]], pos)
                p = None if ws is None else _local_columns(ws[rows[pc.id]], pos)
                pieces.append((pc.id, (a.indptr, a.indices, a.data),
                               None if p is None else (p.indptr, p.indices)))
            weights = [(q, _w_from_rows(coef[self.classes[q]], self.sparse))
                       for q in range(self.B) if self._w_at[q] == w]
            spec = {"worker": w, "pieces": pieces, "weights": weights, "tag": tag,
                    "n_classes": self.K}
            futs.append(engine.submit("resume", _ww_resume, spec, worker=w,
                                      where=self._where(f"w{i}")))
        engine.gather(futs)
        self._w_tag, self._loaded = tag, None
        self._forget_versions()  # the checkpoint's blocks have none

    def finish(self, engine):
        """Gather the certified model (and duals); release the bundles and the stores."""
        try:
            if self._ready and self._ok:
                self._coef = self._assemble(self._gather_weights(engine))
                if self.return_dual:
                    self._alpha = self._gather_duals(engine)[0].toarray()
        except Exception as exc:  # noqa: BLE001 - coef() says why; a failed run raises its own
            self._error = exc
        finally:
            if self._bundles is not None:
                self._bundles.release()
            self._free(engine)

    def _free(self, engine):
        """Empty this fit's store on every worker (a task finds it where it runs)."""
        if not self._ready:
            return
        with contextlib.suppress(Exception):
            engine.gather([engine.submit("free", _ww_free, {}, worker=w, where=self._where(f"w{i}"))
                           for i, w in enumerate(engine.workers())])

    def coef(self):
        if self._coef is None:
            raise RuntimeError(f"Weston-Watkins: the certified model could not be collected "
                               f"({self._error!r})")
        return self._coef

    def result_state(self):
        state = {
            "classes": [c.copy() for c in self.classes],
            "layout": self.layout,
            "pieces": [[(pc.worker, pc.n_rows) for pc in ps] for ps in self.pieces],
            "n_bundles": self.B,
            "local_passes": self.passes,
            "pair_sweeps": self.sweeps,
            "shuffle_bytes": int(self.shuffle_bytes),
            "sparse_coef": self.sparse,
            "recovered": [dict(x) for x in self.recovered],
        }
        if self.return_dual:
            state["alpha"] = self._alpha
        return state


def _int_array(arrays, name, shape=None):
    if name not in arrays:
        raise ValueError(f"checkpoint has no array {name!r}: written by another solver")
    a = np.asarray(arrays[name])
    if a.dtype.kind not in "iu" or a.ndim != 1 or (shape is not None and a.shape != shape):
        raise ValueError(f"checkpoint array {name!r} has shape {a.shape} and dtype {a.dtype}")
    return a.astype(np.int64)


def _csr_from_arrays(arrays, prefix, shape):
    """A CSR matrix of ``shape`` from ``{prefix}_indptr/_indices/_data``, checked."""
    indptr = _int_array(arrays, f"{prefix}_indptr", (shape[0] + 1,))
    indices = _int_array(arrays, f"{prefix}_indices")
    data = np.asarray(arrays.get(f"{prefix}_data", np.zeros(0, np.int8)))
    ok = (data.dtype.kind == "f" and data.shape == indices.shape and indptr[0] == 0
          and indptr[-1] == len(indices) and np.all(np.diff(indptr) >= 0)
          and (indices.size == 0 or (indices.min() >= 0 and indices.max() < shape[1]))
          and np.isfinite(data).all())
    if not ok:
        raise ValueError(f"checkpoint arrays {prefix}_* do not hold a CSR matrix of shape "
                         f"{shape}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def _coef_from_arrays(arrays, K, d):
    if "coef" in arrays:
        a = np.asarray(arrays["coef"])
        if a.shape != (K, d) or a.dtype.kind != "f":
            raise ValueError(f"checkpoint array 'coef' has shape {a.shape}, expected {(K, d)}")
        return a
    if "coef_indptr" in arrays:
        return _csr_from_arrays(arrays, "coef", (K, d))
    return None


def _alpha_from_arrays(arrays, n, K):
    M = _csr_from_arrays(arrays, "alpha", (n, K))
    if M.nnz and M.data.min() < 0:
        raise ValueError("checkpoint duals are negative: not a Weston-Watkins dual point")
    return M


def _ws_from_arrays(arrays, shape):
    """The working sets of a checkpoint (a CSR pattern), or None when it has none."""
    if "ws_indptr" not in arrays:
        return None
    ix = _int_array(arrays, "ws_indices")
    return _csr_from_arrays({"ws_indptr": arrays["ws_indptr"], "ws_indices": ix,
                             "ws_data": np.ones(len(ix))}, "ws", shape)


def _stack_rows(parts, order, shape):
    """One CSR of ``shape`` from per-piece ``(global rows, CSR triple)``, columns mapped
    from bundle order to class order by ``order``."""
    rows = [np.repeat(grow, np.diff(t[0])) for grow, t in parts]
    cols = [order[t[1]] for _, t in parts]
    vals = [np.asarray(t[2], dtype=np.float64) for _, t in parts]
    M = sp.csr_matrix((np.concatenate(vals + [np.zeros(0)]),
                       (np.concatenate(rows + [np.zeros(0, np.int64)]),
                        np.concatenate(cols + [np.zeros(0, np.int64)]))), shape=shape)
    M.sort_indices()
    return M


def _local_columns(M, pos):
    """``M`` (CSR, class-ordered columns) with its columns moved to bundle order ``pos``."""
    out = sp.csr_matrix((M.data, pos[M.indices], M.indptr), shape=M.shape)
    out.sort_indices()
    return out


def _bundles_and_passes(blocks, K, n_bundles, local_passes):
    """``(B, passes)`` from ``n_bundles`` and ``local_passes`` (see :func:`build_ww`)."""
    auto = passes_per_round(sum(blocks.nnz) * K, _AUTO_WORK, _AUTO_MAX_PASSES)
    if n_bundles is not None:
        B = int(n_bundles)
    else:  # small (the budget holds 2 passes or more): one bundle
        B = 1 if auto > 1 else max(1, min(2 * sum(blocks.client.nthreads().values()), K))
    if local_passes != "auto":
        return B, int(local_passes)
    return B, auto if B == 1 else 1


@register("ww", "multiclass", {
    "n_bundles": Param(None, ("none", ("int", 1, None, False))),
    "local_passes": Param("auto", ("auto", ("int", 1, None, False))),
    "layout": Param("auto", ("choice", ("auto", *LAYOUTS))),
    "pair_sweeps": Param("auto", ("auto", ("int", 1, None, False))),
    "exact_rows": Param(True, ("bool",)),
    "ws_margin": Param(0.0, ("none", ("real", 0.0, None, False))),
    "sparse_coef": Param(None, ("none", ("bool",))),
    "max_dense_bytes": Param(2**30, ("int", 0, None, False)),
    "return_dual": Param(False, ("bool",)),
    "ship_changes": Param(False, ("bool",)),
})
def build_ww(blocks, n_classes, seeds, *, C, tol, n_bundles, local_passes, layout, pair_sweeps,
             exact_rows, ws_margin, sparse_coef, max_dense_bytes, return_dual, ship_changes):
    """Weston-Watkins (:class:`WestonWatkins`) over pairs of class bundles.

    Its own parameters (the common ones, ``C``, ``tol``, ``max_iter``,
    ``random_state``, ``verbose``, ``callback``, ``checkpoint``,
    ``checkpoint_every``, are the registry's and the engine's; one engine round
    is one epoch of the pair schedule).

    Parameters
    ----------
    n_bundles : int >= 1, optional
        ``B``, at most ``n_classes``; a factorization round runs ``floor(B / 2)``
        pair chains side by side (also on the threads of one worker: the kernels
        release the GIL). Default: 1 for a *small* problem, one whose pass over
        every variable (``nnz(X) * n_classes`` multiply-adds) fits at least twice
        in a round's budget of 10^8; else ``min(2 * n_threads, n_classes)``
        (``n_threads``: all worker threads). Pairs of bundles are coupled: with
        ``B > 1`` an epoch gains about one pass whatever ``local_passes`` is,
        while one bundle gains every pass (dna at C = 1: ``B = 3`` took 1,000
        epochs to a gap of 4.9e-3; ``B = 1`` with 50 passes a round 21 rounds,
        1.6 s, to 1e-3), so parallel pairs pay only where one pass is dearer
        than a round's scheduling.
    local_passes : int >= 1 or "auto"
        Coordinate passes per link over its rows' variables. ``"auto"``: with
        ``B = 1``, ``10^8 // (nnz(X) * n_classes)`` passes (1 to 100), else 1.
    layout : {"auto", "spread", "owner"}
        ``"auto"`` is ``"owner"`` for ``B = 1``, else ``"spread"``.
    pair_sweeps : int >= 1 or "auto"
        ``S``. ``"auto"``: 2 when a link runs one pass and the two largest weight
        blocks take at most 16 MiB dense, else 1 (several passes over each of
        ``S`` parts in turn would repeat steps on rows whose neighbours wait).
    exact_rows : bool
        When a link visits a row, maximize the dual exactly over all the row's
        variables in the task at once (closed form up to a sort,
        :mod:`dasksvm.kernels.ww`) instead of one coordinate step per variable:
        same certificate, far fewer rounds with many classes.
    ws_margin : float >= 0 or None
        Working sets (decided by the certificate, which computes every score
        anyway): per row the classes ``c`` with ``1 - (w_{y_i} - w_c).x_i >
        -ws_margin``; the next round's links visit only those and the row's
        non-zero variables. Every step is still an exact ascent step of the full
        dual and every certificate sees all variables, so the stopping rule is
        unchanged. The first round visits everything; None: no working sets.
    sparse_coef : bool, optional
        Keep every weight block as CSR (default: when ``n_classes * n_columns * 8
        > max_dense_bytes``); a task then densifies only the columns its rows
        touch, and ``coef`` is CSR.
    max_dense_bytes : int
    return_dual : bool
        Also return the duals, ``state["alpha"]``, dense ``(n_samples, n_classes)``
        (tests and small problems).
    ship_changes : bool
        Dense blocks on several workers: a worker that reads a block made elsewhere
        reads its own cached copy when that is the latest version (every certificate
        task caches every block), else receives only the entries that changed since
        a version it holds (a ``ww-diff`` task where the block was made), when that
        is fewer bytes; the iterates are the same bit for bit. It halves the bytes
        moved (200,000 x 100,000, 1,000 classes, 4 bundles, 2 processes: 0.60-0.70
        against 1.23-1.25 GB an epoch after the first) but not the time on one
        machine, where receiving costs the pages more than the bytes (14.3-14.7 s
        against 13.2-15.4 s, and a first epoch of 36.9 s against 25.0 s: /tmp probe
        at 100,000 rows), so it is off by default; it pays where the network is the
        bottleneck.

    Returns
    -------
    (WestonWatkins, Custom)
        The machine and its schedule. The fit's result has ``coef`` of shape
        ``(n_classes, blocks.n_columns)`` (ndarray, or CSR with ``sparse_coef``);
        ``history``, one record per round (epoch) with ``epoch_time``,
        ``n_moved`` (variables changed), ``nnz_alpha``, ``ws_nnz`` and
        ``bytes_w`` (weight bytes that crossed between workers, measured);
        ``state`` with ``classes`` (of each bundle), ``layout``, ``pieces``
        (``(worker, rows)`` per bundle), ``n_bundles``, ``local_passes``, ``pair_sweeps``,
        ``shuffle_bytes`` (example bytes the shuffles moved), ``sparse_coef``,
        ``recovered`` (per recovery: ``round``, ``rows``, the rows that ``kept``
        their duals, whether the pieces were ``reshuffled``) and, with
        ``return_dual``, ``alpha``.
    """
    K = int(n_classes)
    if n_bundles is not None and n_bundles > K:
        raise ValueError(f"n_bundles={n_bundles} is larger than n_classes={K}: every bundle "
                         f"needs at least one class; pass n_bundles <= {K} (or None for "
                         "the default)")
    B, passes = _bundles_and_passes(blocks, K, n_bundles, local_passes)
    sparse = bool(sparse_coef) if sparse_coef is not None \
        else K * int(blocks.n_columns) * 8 > max_dense_bytes
    if layout == "auto":
        layout = "owner" if B == 1 else "spread"
    machine = WestonWatkins(blocks, K, seeds, C=C, n_bundles=B, local_passes=passes,
                            layout=layout, pair_sweeps=pair_sweeps, exact_rows=exact_rows,
                            ws_margin=ws_margin, sparse_coef=sparse, return_dual=return_dual,
                            ship_changes=ship_changes)
    return machine, Custom()

