"""Synthetic classification data generated lazily, block by block, on the workers.

:func:`make_classification` returns dask arrays whose graph holds one small
task per row block and nothing else: no data passes through the client, so a
set of 10^8 rows costs nothing to define. Each task builds its rows from the
seed alone.

Determinism. Rows are generated in fixed *tiles* of consecutive rows (the
tile length depends only on ``n_features`` and the mode, never on the
chunks), each tile from its own random stream ``SeedSequence(seed,
spawn_key=(stream, tile))``; a block generates the tiles it overlaps and keeps
its rows. So the data depends only on (shape, parameters, random_state): not
on the chunking, the scheduler, the worker or the order the blocks run in.
One block and many blocks give the same matrix.

Labels. The true class of row ``i`` is fixed by a keyed pseudo-random
permutation ``pi`` of ``0 .. n_samples-1`` (a Feistel network with cycle
walking): class ``k`` owns the positions ``bounds[k] <= pi(i) < bounds[k+1]``.
Class sizes are therefore exact (balanced, or Zipf for ``"powerlaw"``), every
class is present, and rows of all classes are mixed evenly across blocks.
Label noise is applied afterwards, row by row.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["make_classification"]

# random streams: SeedSequence(seed, spawn_key=(stream, index))
_CLASS_STREAM, _FEATURE_STREAM, _NOISE_STREAM, _KEY_STREAM = 0, 1, 2, 3
_SPARSE_TILE = 2048          # rows per tile in sparse mode
_DENSE_TILE_VALUES = 1 << 19  # values per tile in dense mode (at most 4096 rows)
_MAX_ROUNDS = 8              # rounds of extra draws for rows short of distinct columns
_TOPIC_SHARE = (0.05, 0.45)  # own-topic share of a row's draws ~ class_sep * U(0.05, 0.45)
_CONFUSER_SHARE = 0.2        # share of a random class's topic ~ U(0, 0.2)
_INT32_MAX = np.iinfo(np.int32).max

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class _Spec:
    """Everything a block task needs (small and hashable: it travels in every task)."""

    n_samples: int
    n_features: int
    n_classes: int
    nnz_per_row: float | None
    class_sizes: str | tuple
    label_noise: float
    class_sep: float
    seed: int
    dtype: str

    @property
    def sparse(self):
        return self.nnz_per_row is not None

    @property
    def tile_rows(self):
        if self.sparse:
            return _SPARSE_TILE
        return int(min(4096, max(1, _DENSE_TILE_VALUES // self.n_features)))


# --- small deterministic building blocks ------------------------------------------------


def _rng(seed, stream, index):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _mix(z):
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=64)
def _perm_keys(seed):
    """Round keys of the two permutations: rows -> class positions, ranks -> columns."""
    state = np.random.SeedSequence(seed, spawn_key=(_KEY_STREAM, 0)).generate_state(8, np.uint64)
    return tuple(state[:4]), tuple(state[4:])


def _permute(x, n, keys):
    """A keyed pseudo-random bijection of ``0 .. n-1``, applied elementwise to ``x``.

    A balanced Feistel network on the smallest even number of bits covering
    ``n``, with cycle walking to stay inside ``0 .. n-1``.
    """
    bits = max(2, int(n - 1).bit_length())
    bits += bits & 1
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)

    def feistel(v):
        left, right = v >> half, v & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ k) & mask)
        return (left << half) | right

    y = feistel(np.asarray(x, dtype=np.uint64))
    out = np.flatnonzero(y >= n)
    while out.size:
        z = feistel(y[out])
        y[out] = z
        out = out[z >= n]
    return y.astype(np.int64)


def _zipf_ranks(u, size):
    """Map uniforms ``u`` in [0, 1) to ranks 0..size-1 with P(r) ~ 1 / (r + 1.5)."""
    r = np.exp(u * np.log(size + 1.0)).astype(np.int64) - 1
    return np.minimum(r, size - 1)


def _largest_remainder(total, weights):
    """Integer split of ``total`` proportional to ``weights``."""
    q = total * weights / weights.sum()
    base = np.floor(q).astype(np.int64)
    rest = total - int(base.sum())
    if rest:
        base[np.argsort(base - q, kind="stable")[:rest]] += 1
    return base


@functools.lru_cache(maxsize=64)
def _class_bounds(n, k, class_sizes):
    """Cumulative class sizes (length k+1); every class gets at least one row."""
    if class_sizes == "balanced":
        sizes = np.full(k, n // k, dtype=np.int64)
        sizes[: n % k] += 1
    else:
        if class_sizes == "powerlaw":
            weights = 1.0 / np.arange(1, k + 1)
        else:
            weights = np.asarray(class_sizes, dtype=np.float64)
        sizes = 1 + _largest_remainder(n - k, weights)
    return np.concatenate([[0], np.cumsum(sizes)])


def _topic_size(d):
    return int(min(d, max(5, round(np.sqrt(d)))))


def _class_param(spec, k):
    """The parameters of class ``k``, from its own stream.

    Sparse mode: rank ids of its topic columns (most characteristic first).
    Dense mode: its mean, a random direction at distance ``2 * class_sep``.
    """
    rng = _rng(spec.seed, _CLASS_STREAM, k)
    d = spec.n_features
    if spec.sparse:
        return rng.choice(d, size=_topic_size(d), replace=False)
    g = rng.standard_normal(d)
    norm = np.linalg.norm(g)
    if norm == 0:
        g[0], norm = 1.0, 1.0
    return (2.0 * spec.class_sep / norm * g).astype(spec.dtype)


def _per_class(spec, classes, cache):
    """Stack the parameters of the distinct ``classes`` (computed once per block in
    ``cache``); return the stack and each row's index into it."""
    uniq, inv = np.unique(classes, return_inverse=True)
    rows = []
    for k in uniq.tolist():
        if k not in cache:
            cache[k] = _class_param(spec, k)
        rows.append(cache[k])
    return np.stack(rows), inv


# --- rows of one tile -----------------------------------------------------------------


def _tile_range(spec, t):
    r = spec.tile_rows
    return t * r, min((t + 1) * r, spec.n_samples)


def _tile_classes(spec, t):
    """True classes 0..K-1 of the rows of tile ``t``."""
    start, stop = _tile_range(spec, t)
    bounds = _class_bounds(spec.n_samples, spec.n_classes, spec.class_sizes)
    pos = _permute(np.arange(start, stop, dtype=np.uint64), spec.n_samples,
                   _perm_keys(spec.seed)[0])
    return np.searchsorted(bounds, pos, side="right") - 1


def _tile_labels(spec, t):
    """Observed labels 0..K-1 of the rows of tile ``t`` (true classes plus label noise)."""
    true = _tile_classes(spec, t)
    if spec.label_noise == 0:
        return true
    rng = _rng(spec.seed, _NOISE_STREAM, t)
    flip = rng.random(true.size) < spec.label_noise
    shift = rng.integers(1, spec.n_classes, size=true.size)
    return np.where(flip, (true + shift) % spec.n_classes, true)


def _tile_dense(spec, t, classes, cache):
    rng = _rng(spec.seed, _FEATURE_STREAM, t)
    dtype = np.dtype(spec.dtype)
    x = rng.standard_normal((classes.size, spec.n_features), dtype=dtype)
    means, inv = _per_class(spec, classes, cache)
    x += means[inv]
    return x


def _tile_sparse(spec, t, classes, cache):
    """CSR triple (indptr int64, indices int32, data) of the rows of tile ``t``.

    Each row draws column *ranks* from a mixture: its class's topic (share
    ``theta``), the topic of a uniformly random class (share ``theta2``) and the
    Zipf background over all columns. Draws continue until the row has its
    target number ``L`` of distinct ranks; the first ``L`` distinct ones are
    kept, repeated draws give the term frequency. Ranks become columns through
    a fixed permutation, values are ``(1 + ln tf) * (1 + ln(1 + rank))``,
    rows are scaled to unit L2 norm.
    """
    rng = _rng(spec.seed, _FEATURE_STREAM, t)
    m, d, k = classes.size, spec.n_features, spec.n_classes
    size_topic = _topic_size(d)

    target = np.clip(rng.poisson(spec.nnz_per_row, size=m), 1, d)
    lo, hi = _TOPIC_SHARE
    theta = np.minimum(0.9, spec.class_sep * rng.uniform(lo, hi, size=m))
    theta2 = theta + _CONFUSER_SHARE * rng.random(m)
    other = rng.integers(0, k, size=m)     # a random class: no information on the label
    topics, inv = _per_class(spec, np.concatenate([classes, other]), cache)
    own_topic, other_topic = inv[:m], inv[m:]

    keys = np.empty(0, dtype=np.int64)
    have = np.zeros(m, dtype=np.int64)
    for it in range(_MAX_ROUNDS):
        need = target - have
        active = np.flatnonzero(need > 0)
        if active.size == 0:
            break
        factor = 1.3 if it == 0 else 2.0
        n_draw = np.ceil(need[active] * factor).astype(np.int64) + 2
        row = np.repeat(active, n_draw)
        u = rng.random(row.size)
        v = rng.random(row.size)
        rank = _zipf_ranks(v, d)
        in_own = u < theta[row]
        in_other = ~in_own & (u < theta2[row])
        pos = _zipf_ranks(v, size_topic)
        rank[in_own] = topics[own_topic[row[in_own]], pos[in_own]]
        rank[in_other] = topics[other_topic[row[in_other]], pos[in_other]]
        keys = np.concatenate([keys, row * d + rank])   # draw order = position in keys
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        urow = sorted_keys[starts] // d
        have = np.bincount(urow, minlength=m)

    uniq = sorted_keys[starts]
    first = order[starts]                              # draw position of first occurrence
    tf = np.diff(np.r_[starts, sorted_keys.size])
    # keep the target[i] earliest-drawn distinct ranks of each row
    by_time = np.lexsort((first, urow))
    row_start = np.searchsorted(urow, np.arange(m))
    rank_in_row = np.arange(by_time.size) - row_start[urow[by_time]]
    keep = by_time[rank_in_row < target[urow[by_time]]]

    row, rank, tf = urow[keep], uniq[keep] % d, tf[keep]
    col = _permute(rank.astype(np.uint64), d, _perm_keys(spec.seed)[1])
    order = np.argsort(row * d + col)
    row, rank, tf, col = row[order], rank[order], tf[order], col[order]
    val = (1.0 + np.log(tf)) * (1.0 + np.log1p(rank))
    val /= np.sqrt(np.bincount(row, weights=val * val, minlength=m))[row]
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=m), out=indptr[1:])
    return indptr, col.astype(np.int32), val.astype(spec.dtype)


# --- block tasks ----------------------------------------------------------------------


def _tiles(spec, start, stop):
    """Tiles overlapping rows [start, stop): (tile, first row kept, stop row kept) local."""
    r = spec.tile_rows
    for t in range(start // r, (stop - 1) // r + 1):
        t0, t1 = _tile_range(spec, t)
        yield t, max(start, t0) - t0, min(stop, t1) - t0


def _x_block(spec, start, stop):
    """Rows [start, stop) of X: a csr_matrix (sparse mode) or an ndarray."""
    parts, cache = [], {}
    for t, a, b in _tiles(spec, start, stop):
        true = _tile_classes(spec, t)
        if spec.sparse:
            indptr, indices, data = _tile_sparse(spec, t, true, cache)
            lo, hi = indptr[a], indptr[b]
            parts.append((indptr[a:b + 1] - lo, indices[lo:hi], data[lo:hi]))
        else:
            parts.append(_tile_dense(spec, t, true, cache)[a:b])
    if not spec.sparse:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    counts = np.concatenate([np.diff(p[0]) for p in parts])
    nnz = int(counts.sum())
    indptr = np.zeros(stop - start + 1, dtype=np.int32 if nnz <= _INT32_MAX else np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate([p[1] for p in parts])
    data = np.concatenate([p[2] for p in parts])
    x = sp.csr_matrix((data, indices, indptr), shape=(stop - start, spec.n_features), copy=False)
    x.has_sorted_indices = True
    return x


def _y_block(spec, start, stop):
    """Labels of rows [start, stop): -1/+1 for two classes, else 0..K-1 (int64)."""
    parts = [_tile_labels(spec, t)[a:b] for t, a, b in _tiles(spec, start, stop)]
    y = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return 2 * y - 1 if spec.n_classes == 2 else y


# --- public function ------------------------------------------------------------------


def _seed_from(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int64).max))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int64).max, dtype=np.int64))
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy Generator or RandomState; "
        f"got {type(random_state).__name__}"
    )


def _row_chunks(chunks, n_samples, n_features, bytes_per_row):
    from dask.array.core import normalize_chunks

    if isinstance(chunks, tuple) and len(chunks) == 2 and (
        isinstance(chunks[0], (tuple, list)) or chunks[1] in (-1, None)
    ):
        rows, cols = chunks
        if cols not in (-1, None, n_features, (n_features,)):
            raise ValueError(
                f"chunks={chunks!r} splits the columns; blocks hold whole rows: "
                f"use chunks=({rows!r}, -1) or give the row chunking only"
            )
        chunks = rows
    if chunks is None or chunks == "auto":
        import dask
        from dask.utils import parse_bytes

        limit = parse_bytes(dask.config.get("array.chunk-size"))
        chunks = int(max(1, limit // max(1, bytes_per_row)))
    if isinstance(chunks, numbers.Integral) and not isinstance(chunks, bool):
        if chunks <= 0:
            raise ValueError(f"chunks must be a positive number of rows, got {chunks}")
        return normalize_chunks((int(chunks),), (n_samples,))[0]
    try:
        sizes = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        raise TypeError(
            "chunks must be None, 'auto', an int (rows per block), a sequence of row block "
            f"sizes, or (rows, -1); got {chunks!r}"
        ) from None
    if sum(sizes) != n_samples or any(c <= 0 for c in sizes):
        raise ValueError(
            f"row chunks {sizes} must be positive and sum to n_samples={n_samples}"
        )
    return sizes


def make_classification(
    n_samples,
    n_features,
    *,
    n_classes=2,
    nnz_per_row=None,
    class_sizes="balanced",
    label_noise=0.0,
    class_sep=1.0,
    chunks=None,
    random_state=None,
    dtype=np.float64,
):
    """A random classification problem as row-chunked dask arrays, built on the workers.

    The graph holds one generating task per row block for ``X`` and one for
    ``y``; each task rebuilds its rows from the seed, so defining even 10^8
    rows is instant and no data leaves the client. The result depends only on
    the arguments (not on ``chunks`` or on the scheduler): one block and many
    blocks give the same rows.

    **Sparse mode** (``nnz_per_row`` given) imitates TF-IDF text. Column
    popularity follows a Zipf law (a few very frequent columns, a long tail,
    scattered over the column ids by a fixed permutation). Every class has a
    topic: a random set of about ``sqrt(n_features)`` columns (at least 5),
    themselves Zipf-weighted. A row draws its columns from its class's topic
    (share ``class_sep * U(0.05, 0.45)``, capped at 0.9), from the topic of a
    uniformly random class (share ``U(0, 0.2)``; it says nothing about the
    label) and from the background, until it
    has ``L ~ Poisson(nnz_per_row)`` distinct columns (clipped to
    ``1 .. n_features``). Values are ``(1 + ln tf) * (1 + ln(1 + r))`` with
    ``tf`` the number of draws of the column and ``r`` its popularity rank;
    rows have unit L2 norm. Rows with a small topic share are ambiguous and
    topics share columns, so the classes overlap: learnable, not separable
    (a linear SVM trained on 4,000 rows of 10^4 columns, 50 per row, scores
    about 0.9 with 2 classes and 0.84 with 10 on held-out rows; lower
    ``class_sep`` for harder problems).

    **Dense mode** (``nnz_per_row=None``): ``x = mu_y + N(0, I)``, the class
    means ``mu_k`` lying in random directions at distance ``2 * class_sep``
    from the origin (two classes are then about ``2.8 * class_sep`` apart).

    Parameters
    ----------
    n_samples : int
        Number of rows, at least ``n_classes``.
    n_features : int
        Number of columns (below 2**31 in sparse mode).
    n_classes : int, default=2
        Number of classes, at least 2.
    nnz_per_row : float or None, default=None
        Mean number of stored non-zeros per row (sparse mode, blocks are
        ``scipy.sparse.csr_matrix`` with int32 sorted indices). ``None``
        gives dense ``numpy.ndarray`` blocks.
    class_sizes : {"balanced", "powerlaw"} or sequence of float, default="balanced"
        ``"balanced"``: sizes differ by at most one. ``"powerlaw"``: class
        ``k`` gets a share proportional to ``1 / (k + 1)`` (Zipf; class 0 is
        the largest). A sequence of ``n_classes`` positive weights gives
        proportional sizes. Sizes are exact and every class has at least one
        row.
    label_noise : float in [0, 1), default=0.0
        Probability that a row's label is replaced by a different class drawn
        uniformly (for two classes: flipped). Features follow the true class.
    class_sep : float, default=1.0
        Strength of the class signal (topic share in sparse mode, distance of
        the means in dense mode); 0 gives labels independent of ``X``.
    chunks : int, sequence of int, "auto" or None, default=None
        Row blocking: rows per block, or the block sizes (summing to
        ``n_samples``); ``(rows, -1)`` is accepted too. Columns are never
        split. ``None`` / ``"auto"`` sizes blocks to about
        ``dask.config.get("array.chunk-size")`` bytes.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed. ``None`` draws a fresh seed (the returned arrays still give the
        same values every time they are computed).
    dtype : float dtype, default=numpy.float64
        Dtype of the values of ``X``.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
        Row-chunked, one column chunk; ``X._meta`` is a ``csr_matrix`` in
        sparse mode, an ``ndarray`` otherwise.
    y : dask.array.Array of shape (n_samples,), int64
        Labels -1/+1 when ``n_classes == 2`` (class 0 -> -1), else
        ``0 .. n_classes-1``; chunked like the rows of ``X``.

    Examples
    --------
    >>> from dasksvm.datasets import make_classification
    >>> X, y = make_classification(10_000, 1_000, nnz_per_row=20, chunks=2_500,
    ...                            random_state=0)
    >>> X.numblocks, y.chunks
    ((4, 1), ((2500, 2500, 2500, 2500),))
    """
    for name, value in (("n_samples", n_samples), ("n_features", n_features),
                        ("n_classes", n_classes)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r}")
    n_samples, n_features, n_classes = int(n_samples), int(n_features), int(n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if n_samples < n_classes:
        raise ValueError(
            f"n_samples={n_samples} is smaller than n_classes={n_classes}; every class "
            "needs at least one row"
        )
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if nnz_per_row is not None:
        if not isinstance(nnz_per_row, numbers.Real) or not 0 < nnz_per_row <= n_features:
            raise ValueError(
                f"nnz_per_row must be a number in (0, n_features={n_features}] or None, "
                f"got {nnz_per_row!r}"
            )
        if n_features > _INT32_MAX:
            raise ValueError(f"n_features={n_features} does not fit int32 column indices")
        nnz_per_row = float(nnz_per_row)
    if isinstance(class_sizes, str):
        if class_sizes not in ("balanced", "powerlaw"):
            raise ValueError(
                f"class_sizes must be 'balanced', 'powerlaw' or a sequence of weights, "
                f"got {class_sizes!r}"
            )
    else:
        weights = np.asarray(class_sizes, dtype=np.float64)
        if weights.shape != (n_classes,) or not np.all(np.isfinite(weights)) or (
            weights <= 0
        ).any():
            raise ValueError(
                f"class_sizes as weights must be {n_classes} positive numbers, got "
                f"{class_sizes!r}"
            )
        class_sizes = tuple(float(w) for w in weights)
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise!r}")
    if not (np.isfinite(class_sep) and class_sep >= 0):
        raise ValueError(f"class_sep must be a finite number >= 0, got {class_sep!r}")

    spec = _Spec(
        n_samples=n_samples,
        n_features=n_features,
        n_classes=n_classes,
        nnz_per_row=nnz_per_row,
        class_sizes=class_sizes,
        label_noise=float(label_noise),
        class_sep=float(class_sep),
        seed=_seed_from(random_state),
        dtype=dtype.str,
    )
    if spec.sparse:
        bytes_per_row = nnz_per_row * (dtype.itemsize + 4) + 4
    else:
        bytes_per_row = n_features * dtype.itemsize
    rows = _row_chunks(chunks, n_samples, n_features, bytes_per_row)
    return _build(spec, rows)


def _build(spec, rows):
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    token = tokenize(spec, rows)
    x_name, y_name = f"make-classification-X-{token}", f"make-classification-y-{token}"
    bounds = np.concatenate([[0], np.cumsum(rows)]).tolist()
    x_tasks, y_tasks = {}, {}
    for i in range(len(rows)):
        x_tasks[(x_name, i, 0)] = (_x_block, spec, bounds[i], bounds[i + 1])
        y_tasks[(y_name, i)] = (_y_block, spec, bounds[i], bounds[i + 1])
    dtype = np.dtype(spec.dtype)
    if spec.sparse:
        meta = sp.csr_matrix((0, 0), dtype=dtype)
    else:
        meta = np.empty((0, 0), dtype=dtype)
    X = da.Array(
        HighLevelGraph.from_collections(x_name, x_tasks, dependencies=()),
        x_name, chunks=(rows, (spec.n_features,)), dtype=dtype, meta=meta,
    )
    y = da.Array(
        HighLevelGraph.from_collections(y_name, y_tasks, dependencies=()),
        y_name, chunks=(rows,), dtype=np.int64, meta=np.empty((0,), dtype=np.int64),
    )
    return X, y
