"""Row blocks of (X, y) that live on the workers, and per-block tasks.

The solvers work on a :class:`BlockSet`: the rows of X and y cut into K
blocks (the dask chunks of the input, or ``n_blocks`` slices of in-memory
input), each turned once into a :class:`Block` (a CSR matrix with float64
values and int32 indices, or for dense input the dense rows, made CSR only
for a solver that asks; its labels and per-row weights) held as a future on
one worker. Blocks are spread round-robin over the workers and every later
task on a block is asked to run where the block is, so per-block solver state
(dual variables) is created and kept on that worker too. Nothing here knows
any SVM formula.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import scipy.sparse as sp

from ..kernels.blocks import dense_scan
from ..kernels.sdca import row_sq_norms
from .client import worker_addresses
from .keys import new_token

__all__ = ["Block", "BlockSet", "to_csr"]


def to_csr(x, dtype=np.float64):
    """``x`` (ndarray, scipy sparse or pydata sparse) as a canonical CSR matrix.

    Canonical: float ``dtype`` values, int32 indices when they fit, sorted
    column indices, no duplicate entries.
    """
    if hasattr(x, "to_scipy_sparse"):  # pydata sparse
        x = x.to_scipy_sparse()
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=dtype)
    else:
        x = np.asarray(x, dtype=dtype)
        if x.ndim != 2:
            raise ValueError(f"X blocks must be 2-d, got a block with shape {x.shape}")
        x = sp.csr_matrix(x)
    if not x.has_canonical_format:
        x.sum_duplicates()
        x.sort_indices()
    if x.indices.dtype != np.int32 and (x.shape[1] < 2**31 - 1 and x.nnz < 2**31 - 1):
        x.indices = x.indices.astype(np.int32)
        x.indptr = x.indptr.astype(np.int32)
    return x


def _identity(x):
    return x


def scatter_to(client, data, worker):
    """``client.scatter(data, workers=[worker])``, also inside a dask task (a fit that
    dask-ml runs), where ``Client.scatter`` keeps the data on the calling worker: there it
    is scattered locally and copied to ``worker`` by a task. Returns the future."""
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return client.scatter(data, workers=[worker], hash=False)
    local = client.scatter(data, hash=False)
    return client.submit(_identity, local, workers=[worker], allow_other_workers=False,
                         pure=False)


class Block:
    """One row block as it lives on a worker.

    Attributes
    ----------
    X : scipy.sparse.csr_matrix, shape (n_rows, n_columns)
        The rows; when an intercept is fitted the last column holds
        ``intercept_scaling`` in every row. For a dense block it is made from
        :attr:`dense` on first use, which then drops :attr:`dense` (memory as
        with CSR input); solvers with dense kernels (CoCoA+) never ask, but the
        engine's data fingerprint (checkpoints, warm starts) does, so such a
        fit runs CoCoA+'s CSR kernels.
    dense : ndarray of shape (n_rows, n_columns) or None
        The rows of a block built from dense input, C-contiguous, float64 or
        float32 (the input's float type): 8 or 4 bytes a value where CSR takes
        12. None for sparse input (or once :attr:`X` was asked for).
    y : ndarray of shape (n_rows,)
        Labels as encoded by the caller (float64).
    weight : ndarray of shape (n_rows,)
        Per-row weights (sample_weight times class weight), 1.0 by default.
    index : int
        Position of the block in the BlockSet.
    cols : ndarray of int64
        Sorted columns with a non-zero in this block (what a sparse update of
        the model can touch).
    col_counts : ndarray of int64
        The block's non-zeros in each of ``cols``.
    """

    __slots__ = ("_X", "_local_indices", "_nnz", "_sq_norms", "col_counts", "cols", "dense",
                 "index", "weight", "y")

    def __init__(self, X, y, weight, index, dense=None):
        self._X = X
        self.dense = dense
        self.y = y
        self.weight = weight
        self.index = index
        self._nnz = self._sq_norms = None
        if dense is not None:
            bad, counts, self._sq_norms = dense_scan(dense)
            if bad >= 0:
                raise ValueError(f"X contains NaN or infinity (block {index}, row {bad} of "
                                 "the block)")
            self.cols, self._nnz = np.flatnonzero(counts), int(counts.sum())
        else:
            # O(nnz): a sort of the indices (np.unique) took seconds at 10^7 non-zeros
            counts = np.bincount(X.indices, minlength=X.shape[1])
            self.cols = np.flatnonzero(counts)
        self.col_counts = counts[self.cols].astype(np.int64)
        self._local_indices = None

    @property
    def X(self):
        if self._X is None:  # a solver without dense kernels: CSR instead of the rows
            self._X, self.dense = to_csr(self.dense), None
        return self._X

    @property
    def n_rows(self):
        return (self.dense if self.dense is not None else self._X).shape[0]

    @property
    def n_columns(self):
        return (self.dense if self.dense is not None else self._X).shape[1]

    @property
    def nnz(self):
        return self._nnz if self._nnz is not None else int(self._X.nnz)

    def sq_norms(self):
        """Each row's squared norm ||x_i||^2 (float64, n_rows; the intercept column
        included): from the pass that built a dense block, made once on first use for
        a CSR one."""
        if self._sq_norms is None:
            self._sq_norms = row_sq_norms(self.X.indptr, self.X.data)
        return self._sq_norms

    def csr(self):
        """The CSR triple (indptr, indices, data) the numba kernels read."""
        return self.X.indptr, self.X.indices, self.X.data

    def local_csr(self):
        """The CSR triple with column indices into :attr:`cols` (int32): the block on its
        own columns, so kernels read and write vectors of ``len(cols)``, never of the
        model's full length (made once per block, on first use)."""
        if getattr(self, "_local_indices", None) is None:
            position = np.zeros(self.n_columns, dtype=np.int32)  # column -> its place in cols
            position[self.cols] = np.arange(len(self.cols), dtype=np.int32)
            self._local_indices = position[self.X.indices]
        return self.X.indptr, self._local_indices, self.X.data

    def spread(self, local, size=None):
        """A change of the model from a ``len(cols)`` (or ``(len(cols), K)``) block-local
        array: a :class:`~dasksvm.parallel.reduce.SparseVector` of the touched
        coordinates when they are under a quarter of ``size`` (the model's length,
        default ``n_columns``), else dense."""
        from .reduce import SparseVector

        size = self.n_columns if size is None else size
        if len(self.cols) < size // 4:
            return SparseVector(self.cols, local, size)
        out = np.zeros((size,) + local.shape[1:])
        out[self.cols] = local
        return out


def _dense_rows(x, intercept_scaling):
    """A dense chunk as C-contiguous float64 (float32 kept), the intercept column appended
    in the same copy."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"X blocks must be 2-d, got a block with shape {x.shape}")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    if intercept_scaling is None:
        return np.ascontiguousarray(x, dtype=dtype)
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=dtype)
    out[:, :-1] = x
    out[:, -1] = intercept_scaling
    return out


def _is_sparse(x):
    return sp.issparse(x) or hasattr(x, "to_scipy_sparse")


def make_block(x, y, weight, index, intercept_scaling=None):
    """Validate one chunk and build its :class:`Block` (runs on a worker): CSR float64
    for sparse chunks, dense (:attr:`Block.dense`) for dense ones."""
    if _is_sparse(x):
        X, dense = to_csr(x), None
    else:  # checked for NaN and infinity by Block, in the pass that counts its non-zeros
        X, dense = None, _dense_rows(x, intercept_scaling)
    n = (X if dense is None else dense).shape[0]
    y = np.asarray(y)
    if n != y.shape[0]:
        raise ValueError(
            f"block {index}: X has {n} rows but y has {y.shape[0]}; "
            "X and y must have the same row chunks"
        )
    if n == 0:
        raise ValueError(
            f"block {index} has zero rows; drop empty chunks, e.g. "
            "X = X.rechunk({0: 'auto', 1: -1}) and y = y.rechunk(X.chunks[0])"
        )
    if X is not None:
        _check_finite(X, index)
    if weight is None:
        weight = np.ones(n)
    else:
        weight = np.asarray(weight, dtype=np.float64)
        if weight.shape != (n,):
            raise ValueError(f"block {index}: sample_weight has shape {weight.shape}")
    if intercept_scaling is not None and X is not None:
        col = sp.csr_matrix(np.full((n, 1), float(intercept_scaling)))
        X = to_csr(sp.hstack([X, col], format="csr"))
    return Block(X, np.asarray(y, dtype=np.float64), weight, index, dense)


def _check_finite(X, index):
    if X.nnz and not np.isfinite(X.data).all():
        bad = np.flatnonzero(~np.isfinite(X.data))[0]
        row = int(np.searchsorted(X.indptr, bad, side="right") - 1)
        raise ValueError(f"X contains NaN or infinity (block {index}, row {row} of the block)")


def _destinations(n, n_out, seed, index):
    """The destination of each of a chunk's ``n`` rows in :func:`split_rows_evenly`."""
    return np.random.RandomState(seed).permutation((np.arange(n) + index) % n_out)


def split_rows_evenly(x, y, weight, n_out, seed, index):
    """Deal the rows of one chunk over ``n_out`` destinations at random.

    Row r goes to destination ``perm[r]`` of a random permutation of
    ``(arange(n) + index) % n_out``, so every destination gets n / n_out rows
    (up to one) from every chunk. Returns a list of ``n_out`` pieces
    ``(x, y, weight)``.
    """
    x = to_csr(x) if _is_sparse(x) else np.asarray(x)
    y = np.asarray(y)
    dest = _destinations(x.shape[0], n_out, seed, index)
    pieces = []
    for j in range(n_out):
        rows = np.flatnonzero(dest == j)
        pieces.append((x[rows], y[rows], None if weight is None else np.asarray(weight)[rows]))
    return pieces


def make_block_from_pieces(pieces, index, intercept_scaling=None):
    """Stack the pieces one destination received into its :class:`Block`."""
    xs = [p[0] for p in pieces]
    X = (sp.vstack(xs, format="csr") if any(sp.issparse(x) for x in xs)
         else np.concatenate(xs))
    y = np.concatenate([p[1] for p in pieces])
    w = None if pieces[0][2] is None else np.concatenate([p[2] for p in pieces])
    return make_block(X, y, w, index, intercept_scaling)


def _make_rows(X, y, weight, rows, index, intercept_scaling):
    """Block ``index`` of in-memory input: ``rows`` of X, y and weight."""
    return make_block(
        X[rows], np.asarray(y)[rows], None if weight is None else np.asarray(weight)[rows],
        index, intercept_scaling,
    )


def _block_info(block):
    """(rows, non-zeros, columns touched, the worker holding the block, the largest squared
    row norm): run where the block is (the scheduler places a task with its data), so no
    who_has round trip."""
    from distributed import get_worker

    top = float(block.sq_norms().max()) if block.n_rows else 0.0
    return block.n_rows, block.nnz, len(block.cols), get_worker().address, top


def _split_rows(n, n_blocks):
    n_blocks = max(1, min(int(n_blocks), n))
    bounds = np.linspace(0, n, n_blocks + 1).astype(int)
    return list(itertools.pairwise(bounds))


class BlockSet:
    """K row blocks persisted on the workers of ``client``.

    Build one with :meth:`from_arrays`; run per-block tasks with :meth:`map`.

    Attributes
    ----------
    futures : list of Future of Block
    workers : list of str
        Address of the worker each block was placed on.
    n_rows : list of int
    nnz : list of int
    n_columns : int
        Columns of the blocks (features, plus one with an intercept).
    max_sq_norm : float
        The largest squared row norm ``max_i ||x_i||^2`` over all blocks (intercept
        column included).
    token : str
        Suffix of every task key made for this set.
    """

    def __init__(self, client, futures, workers, n_rows, nnz, n_cols_touched, n_columns, name,
                 sources=None, layout=None, *, max_sq_norm):
        self.client = client
        self.max_sq_norm = float(max_sq_norm)
        # sources[k]: a zero-argument function that rebuilds block k on the client (in-memory
        # input, scattered without lineage), or None where dask keeps the block's lineage
        self.sources = list(sources) if sources is not None else [None] * len(futures)
        self.futures = futures
        self.workers = workers
        self.n_rows = n_rows
        self.nnz = nnz
        self.n_cols_touched = n_cols_touched
        self.n_columns = n_columns
        self.name = name
        self.token = new_token()
        self._used = set()
        # how the input's rows were dealt, see input_rows(): None (kept in order),
        # ("permuted", rows) or ("dealt", chunk sizes, seed)
        self.layout = layout

    def _call_token(self, key):
        """The key suffix for one map call: the set's token, or a fresh one when
        ``key`` was used before on this set (a second solve on the same blocks),
        so two calls never share task keys."""
        if key in self._used:
            return f"{self.token}-{new_token()}"
        self._used.add(key)
        return self.token

    def __len__(self):
        return len(self.futures)

    def input_rows(self):
        """For each row of the blocks, in block order (block 0's rows, then block 1's,
        ...), its index in the input (int64, n_samples): the identity unless
        :meth:`from_arrays` dealt the rows (``shuffle=True``). Made from the seed and
        the chunk sizes, without the data."""
        if self.layout is None:
            return np.arange(self.n_samples, dtype=np.int64)
        kind, *value = self.layout
        if kind == "permuted":
            return np.asarray(value[0], dtype=np.int64)
        chunks, seed = value
        K = len(chunks)
        starts = np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
        dests = [_destinations(n, K, seed + k, k) for k, n in enumerate(chunks)]
        return np.concatenate([starts[k] + np.flatnonzero(dests[k] == j)
                               for j in range(K) for k in range(K)]).astype(np.int64)

    @property
    def n_samples(self):
        return int(sum(self.n_rows))

    @classmethod
    def from_arrays(
        cls,
        client,
        X,
        y,
        weight=None,
        *,
        n_blocks=None,
        intercept_scaling=None,
        shuffle=False,
        random_state=None,
        name="data",
    ):
        """Persist (X, y, weight) as blocks on the workers.

        Parameters
        ----------
        client : distributed.Client
        X : dask array (rows chunked, one column chunk) or ndarray / scipy sparse
        y, weight : dask arrays with X's row chunks, or ndarrays (weight optional)
        n_blocks : int, optional
            Number of blocks for in-memory input (default: one per worker
            thread). Dask input keeps its chunks.
        intercept_scaling : float, optional
            Append a column of this constant to every row.
        shuffle : bool
            Deal the rows over the blocks at random (once): files sorted by
            label otherwise give blocks that hold one class each, which slows
            CoCoA+-type solvers down badly. In-memory input is permuted on
            the client; dask input is shuffled by tasks (each chunk splits
            itself into K pieces, ``{name}-split-b{k}``, and block j stacks
            the j-th piece of every chunk, ``{name}-block-b{j}``: K^2 small
            pieces, once). The block count and sizes are kept (up to one row).
        random_state : int or None
            Seed of the shuffle.
        name : str
            Prefix of the block-building task keys (``f"{name}-block-b{k}"``).
        """
        import dask
        import dask.array as da

        workers = worker_addresses(client)
        if not workers:
            raise RuntimeError("the dask cluster has no workers")
        token = new_token()
        futures, sources = [], []
        seed = int(np.random.RandomState(random_state).randint(0, 2**31 - 1))
        layout = None
        if isinstance(X, da.Array) and shuffle and X.numblocks[0] > 1:
            layout = ("dealt", tuple(int(c) for c in X.chunks[0]), seed)
            xs = X.to_delayed().ravel()
            ys = y.to_delayed().ravel()
            ws = weight.to_delayed().ravel() if weight is not None else [None] * len(xs)
            K = len(xs)
            splits = []
            for k, (xk, yk, wk) in enumerate(zip(xs, ys, ws, strict=True)):
                d = dask.delayed(split_rows_evenly, pure=True)(
                    xk, yk, wk, K, seed + k, k, dask_key_name=f"{name}-split-b{k}-{token}"
                )
                splits.append(
                    client.compute(d, workers=[workers[k % len(workers)]], allow_other_workers=True)
                )
            import operator

            for j in range(K):
                pieces = [
                    client.submit(operator.getitem, s, j, key=f"{name}-piece-b{k}-b{j}-{token}")
                    for k, s in enumerate(splits)
                ]
                futures.append(
                    client.submit(
                        make_block_from_pieces,
                        pieces,
                        j,
                        intercept_scaling,
                        key=f"{name}-block-b{j}-{token}",
                        workers=[workers[j % len(workers)]],
                        allow_other_workers=True,
                    )
                )
            del splits
            n_cols = X.shape[1]
        elif isinstance(X, da.Array):
            xs = X.to_delayed().ravel()
            ys = y.to_delayed().ravel()
            ws = weight.to_delayed().ravel() if weight is not None else [None] * len(xs)
            for k, (xk, yk, wk) in enumerate(zip(xs, ys, ws, strict=True)):
                target = workers[k % len(workers)]
                d = dask.delayed(make_block, pure=True)(
                    xk, yk, wk, k, intercept_scaling, dask_key_name=f"{name}-block-b{k}-{token}"
                )
                futures.append(client.compute(d, workers=[target], allow_other_workers=True))
            n_cols = X.shape[1]
        else:
            if n_blocks is None:
                n_blocks = sum(client.nthreads().values())
            rows = np.arange(X.shape[0])
            if shuffle:
                rows = np.random.RandomState(seed).permutation(X.shape[0])
                layout = ("permuted", rows)
            for k, (a, b) in enumerate(_split_rows(X.shape[0], n_blocks)):
                target = workers[k % len(workers)]
                r = rows[a:b] if shuffle else slice(a, b)
                source = functools.partial(_make_rows, X, y, weight, r, k, intercept_scaling)
                sources.append(source)
                futures.append(scatter_to(client, source(), target))
            n_cols = X.shape[1]
        infos = client.gather(
            [
                client.submit(_block_info, f, key=f"{name}-info-b{k}-{token}", pure=False)
                for k, f in enumerate(futures)
            ]
        )
        placed = [i[3] for i in infos]  # where each block's info ran: a holder of it
        n_columns = n_cols + (1 if intercept_scaling is not None else 0)
        return cls(
            client,
            futures,
            placed,
            [i[0] for i in infos],
            [i[1] for i in infos],
            [i[2] for i in infos],
            n_columns,
            name,
            sources or None,
            layout,
            max_sq_norm=max((i[4] for i in infos), default=0.0),
        )

    def refresh(self, timeout=120):
        """After a worker was lost: bring every block back and re-read where each one is.

        Blocks with lineage (dask input) are recomputed by the scheduler; blocks
        scattered from in-memory input are rebuilt from the client's copy and
        scattered to a live worker. Returns the indices of the rebuilt blocks.
        """
        from distributed import wait

        workers = worker_addresses(self.client)
        if not workers:
            raise RuntimeError("the dask cluster has no workers left")
        alive = [f for f in self.futures if f.status not in ("cancelled", "lost", "error")]
        who = self.client.who_has(alive) if alive else {}
        rebuilt = []
        for k, f in enumerate(self.futures):
            if self.sources[k] is not None and not who.get(f.key):
                self.futures[k] = scatter_to(self.client, self.sources[k](),
                                             workers[k % len(workers)])
                rebuilt.append(k)
            elif f.status in ("cancelled", "lost", "error"):
                raise RuntimeError(f"block {k} was lost with its worker and has no lineage to "
                                   "be rebuilt from")
        with self.client.as_current():
            wait(self.futures, timeout=timeout)
        who = self.client.who_has(self.futures)
        for k, f in enumerate(self.futures):
            holders = sorted(who.get(f.key, ()))
            if not holders:
                raise RuntimeError(f"block {k} could not be brought back after a worker was lost")
            if self.workers[k] not in holders:
                self.workers[k] = holders[0]
        return rebuilt

    def map(self, func, *args, key, per_block=(), **kwargs):
        """Submit ``func(block_k, *per_block_k, *args, **kwargs)`` for every block.

        Each task is placed on the worker holding block k and gets the key
        ``f"{key}-b{k}-{token}"``, so ``key`` should carry the round
        (``"cocoa-local-r12"``).

        Parameters
        ----------
        per_block : sequence of lists
            Arguments that differ per block (e.g. the futures of the blocks'
            dual variables); each list has one entry per block.
        """
        out = []
        token = self._call_token(key)
        for k, fut in enumerate(self.futures):
            extra = [p[k] for p in per_block]
            out.append(
                self.client.submit(
                    func,
                    fut,
                    *extra,
                    *args,
                    key=f"{key}-b{k}-{token}",
                    workers=[self.workers[k]],
                    allow_other_workers=True,
                    pure=False,
                    **kwargs,
                )
            )
        return out

    def release(self):
        """Drop the blocks from the cluster's memory."""
        for f in self.futures:
            f.release()
        self.futures = []

    def gather_map(self, func, *args, key):
        """``[func(block_k, *args) for every block]`` computed where the blocks are and
        gathered to the client (small setup results; keys as :meth:`map`)."""
        return self.client.gather(self.map(func, *args, key=key))

    def columns(self):
        """The touched columns of every block (``Block.cols``, sorted int64), on the
        client: one small task per block, keyed ``f"{name}-cols-b{k}-{token}"``."""
        import operator

        cols = self.gather_map(operator.attrgetter("cols"), key=f"{self.name}-cols")
        return [np.asarray(c, dtype=np.int64) for c in cols]
