"""Group the rows of a :class:`~dasksvm.parallel.blocks.BlockSet` by label into bundles.

Solvers that distribute over *classes* rather than rows (Weston-Watkins)
need the rows of a group of classes together. :func:`shuffle_by_class` does
this once per fit, with tasks only:

1. every block counts its rows per class (``K`` integers per block reach the
   client; these counts are the only thing about the data the client sees);
2. the client assigns the classes to ``B`` bundles, balancing row counts
   (:func:`assign_bundles`, greedy largest first);
3. every block splits itself into ``B`` parts on its own worker (one task per
   block, then one small ``getitem`` task per part);
4. one task per *piece* concatenates parts into a :class:`Bundle`:

   - layout ``"spread"``: a piece per (bundle, worker), made of the parts of
     the blocks on that worker: no example leaves its worker;
   - layout ``"owner"``: one piece per bundle, on a worker chosen to balance
     rows (:func:`place_bundles`): the examples of a bundle cross the network
     once, worker to worker.

The examples never pass through the client. Nothing here knows any SVM
formula: a label is just an integer in ``0..K-1`` that says which bundle a
row goes to.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .client import worker_addresses
from .keys import new_token

__all__ = [
    "LAYOUTS",
    "Bundle",
    "BundlePiece",
    "BundleSet",
    "assign_bundles",
    "place_bundles",
    "shuffle_by_class",
]


class Bundle:
    """The rows of one bundle of classes, as they live on the bundle's worker.

    Attributes
    ----------
    X : scipy.sparse.csr_matrix, shape (n_rows, n_columns)
        The rows (float64 values, int32 column indices, global columns).
    cols : ndarray of int64, shape (n_cols_touched,)
        Sorted columns with a non-zero in the bundle.
    local_indices : ndarray of int32, shape (X.nnz,)
        ``X.indices`` renumbered into positions of ``cols`` (so
        ``cols[local_indices] == X.indices``): lets a task work on the
        ``n_cols_touched`` columns the bundle can touch instead of all.
    sqnorm : ndarray of float64, shape (n_rows,)
        Squared Euclidean norm of every row.
    label : ndarray of int64, shape (n_rows,)
        The row's class as a position in :attr:`classes` (0..n_classes_in_bundle-1).
    weight : ndarray of float64, shape (n_rows,)
        Per-row weights carried over from the blocks.
    rows : ndarray of int64, shape (n_rows,)
        Global row number (position in the BlockSet, blocks in order).
    classes : ndarray of int64
        Global labels of the bundle's classes, sorted.
    index : int
        Position of the bundle in the BundleSet.
    """

    __slots__ = (
        "X",
        "classes",
        "cols",
        "index",
        "label",
        "local_indices",
        "rows",
        "sqnorm",
        "weight",
    )

    def __init__(self, X, label, weight, rows, classes, index):
        self.X = X
        self.label = label
        self.weight = weight
        self.rows = rows
        self.classes = classes
        self.index = index
        self.cols = np.unique(X.indices).astype(np.int64)
        self.local_indices = np.searchsorted(self.cols, X.indices).astype(np.int32)
        self.sqnorm = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def nbytes(self):
        """Bytes of the rows (CSR arrays, labels, weights, row numbers)."""
        return int(self.X.data.nbytes + self.X.indices.nbytes + self.X.indptr.nbytes
                   + self.label.nbytes + self.weight.nbytes + self.rows.nbytes)


def assign_bundles(class_counts, n_bundles):
    """Split classes ``0..K-1`` into ``n_bundles`` groups with balanced row counts.

    Greedy, largest class first: each class goes to the bundle with the
    fewest rows so far (ties: fewest classes, then lowest index). Every bundle
    gets at least one class when ``n_bundles <= K``.

    Parameters
    ----------
    class_counts : array-like of int, shape (K,)
        Rows per class (zero allowed).
    n_bundles : int, 1 <= n_bundles <= K

    Returns
    -------
    list of ndarray of int64
        The sorted classes of each bundle.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    K = counts.shape[0]
    n_bundles = int(n_bundles)
    if not 1 <= n_bundles <= max(K, 1):
        raise ValueError(f"n_bundles must be in [1, {K}] for {K} classes, got {n_bundles}")
    order = np.argsort(-counts, kind="stable")
    rows = np.zeros(n_bundles, dtype=np.int64)
    members = [[] for _ in range(n_bundles)]
    for c in order:
        b = min(range(n_bundles), key=lambda j: (rows[j], len(members[j]), j))
        members[b].append(int(c))
        rows[b] += counts[c]
    return [np.array(sorted(m), dtype=np.int64) for m in members]


def place_bundles(bundle_rows, workers):
    """Assign bundles to workers, balancing rows (greedy, largest first).

    Ties go to the worker with fewer bundles, then to the earlier worker, so
    equal bundles are spread round-robin.

    Returns
    -------
    list of str
        The worker of every bundle.
    """
    workers = list(workers)
    if not workers:
        raise RuntimeError("the dask cluster has no workers")
    load = {w: 0 for w in workers}
    count = {w: 0 for w in workers}
    out = [None] * len(bundle_rows)
    for b in np.argsort(-np.asarray(bundle_rows, dtype=np.int64), kind="stable"):
        w = min(workers, key=lambda v: (load[v], count[v], workers.index(v)))
        out[int(b)] = w
        load[w] += int(bundle_rows[b])
        count[w] += 1
    return out


def _class_counts(block, n_classes):
    """Rows per label in one block (runs on the block's worker); checks the labels."""
    y = block.y
    if y.size:
        lab = y.astype(np.int64)
        if not np.array_equal(lab, y) or lab.min() < 0 or lab.max() >= n_classes:
            bad = y[(lab != y) | (lab < 0) | (lab >= n_classes)][0]
            raise ValueError(
                f"block {block.index}: label {float(bad)!r} is not an integer in [0, {n_classes}); "
                "encode the labels as 0..n_classes-1 first"
            )
    else:
        lab = np.zeros(0, dtype=np.int64)
    return np.bincount(lab, minlength=n_classes)


def _split_block(block, row_offset, class_to_bundle, n_bundles):
    """Cut one block into ``n_bundles`` pieces (runs on the block's worker).

    Returns a tuple of ``n_bundles`` pieces ``(X, y, weight, rows)`` followed
    by the list of the pieces' sizes in bytes.
    """
    lab = block.y.astype(np.int64)
    dest = class_to_bundle[lab]
    pieces = []
    sizes = []
    for b in range(n_bundles):
        idx = np.flatnonzero(dest == b)
        X = block.X[idx]
        piece = (X, lab[idx], block.weight[idx], (row_offset + idx).astype(np.int64))
        pieces.append(piece)
        sizes.append(int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
                         + 3 * 8 * idx.size))
    return (*pieces, sizes)


def _make_bundle(index, classes, n_columns, *pieces):
    """Concatenate a bundle's pieces into a :class:`Bundle` (runs on the bundle's worker)."""
    pieces = [p for p in pieces if p[0].shape[0]]
    if pieces:
        X = sp.vstack([p[0] for p in pieces], format="csr")
        y = np.concatenate([p[1] for p in pieces])
        w = np.concatenate([p[2] for p in pieces])
        rows = np.concatenate([p[3] for p in pieces])
    else:
        X = sp.csr_matrix((0, n_columns), dtype=np.float64)
        y = np.zeros(0, dtype=np.int64)
        w = np.zeros(0)
        rows = np.zeros(0, dtype=np.int64)
    X = sp.csr_matrix(X, dtype=np.float64)
    X.indices = X.indices.astype(np.int32, copy=False)
    X.indptr = X.indptr.astype(np.int32 if X.nnz < 2**31 - 1 else np.int64, copy=False)
    label = np.searchsorted(classes, y).astype(np.int64)
    return Bundle(X, label, w, rows, classes, index)


class BundlePiece(NamedTuple):
    """One piece of a bundle: rows of the bundle's classes that live on one worker."""

    future: object  # Future of Bundle
    worker: str
    n_rows: int
    nnz: int
    n_cols: int


class BundleSet:
    """``B`` bundles of classes, each held as pieces (futures of :class:`Bundle`).

    Layouts (see :func:`shuffle_by_class`): ``"owner"``, one piece per bundle
    on the bundle's own worker; ``"spread"``, one piece per worker holding
    rows of the bundle, the rows that were on that worker already.

    Attributes
    ----------
    layout : {"owner", "spread"}
    pieces : list of list of BundlePiece
        The pieces of each bundle (a bundle without rows has none).
    home : list of str
        A worker per bundle: the owner (``"owner"``), else the worker of the
        bundle's largest piece; where per-bundle state not tied to rows starts.
    classes : list of ndarray of int64
        Sorted global labels of each bundle.
    n_rows : list of int
        Rows of each bundle.
    class_counts : ndarray of int64, shape (n_classes,)
    class_to_bundle, class_to_local : ndarray of int64, shape (n_classes,)
        Bundle of every class, and its position in that bundle's ``classes``.
    n_columns : int
    nbytes_moved : int
        Bytes of examples that crossed between workers in the shuffle (0 for
        ``"spread"``).
    token : str
        Suffix of the shuffle's task keys.
    """

    def __init__(self, client, layout, pieces, home, classes, n_rows, class_counts, n_columns,
                 nbytes_moved, token):
        self.client = client
        self.layout = layout
        self.pieces = pieces
        self.home = home
        self.classes = classes
        self.n_rows = n_rows
        self.class_counts = class_counts
        self.n_columns = n_columns
        self.nbytes_moved = nbytes_moved
        self.token = token
        K = len(class_counts)
        self.class_to_bundle = np.empty(K, dtype=np.int64)
        self.class_to_local = np.empty(K, dtype=np.int64)
        for b, cl in enumerate(classes):
            self.class_to_bundle[cl] = b
            self.class_to_local[cl] = np.arange(len(cl))

    def __len__(self):
        return len(self.classes)

    @property
    def n_classes(self):
        return len(self.class_counts)

    @property
    def futures(self):
        """All pieces' futures, bundle by bundle."""
        return [pc.future for ps in self.pieces for pc in ps]

    def release(self):
        """Drop the bundles from the cluster's memory."""
        for ps in self.pieces:
            for pc in ps:
                pc.future.release()
        self.pieces = [[] for _ in self.pieces]


LAYOUTS = ("spread", "owner")


def shuffle_by_class(blocks, n_classes, n_bundles, *, layout="spread", key_prefix="shuffle",
                     placement=None):
    """Regroup the rows of ``blocks`` into ``n_bundles`` bundles of whole classes.

    Parameters
    ----------
    blocks : BlockSet
        Blocks whose ``y`` holds integer labels ``0..n_classes-1`` (as float).
    n_classes : int
    n_bundles : int, 1 <= n_bundles <= n_classes
    layout : {"spread", "owner"}
        ``"spread"``: every worker groups *its own* rows by bundle, one piece
        per (bundle, worker); no example leaves its worker. ``"owner"``: each
        bundle is gathered whole on one worker (bundles placed to balance
        rows, :func:`place_bundles`); the examples of a bundle cross the
        network once, worker to worker.
    key_prefix : str
        Task keys are ``f"{key_prefix}-count-b{k}-<token>"``,
        ``f"{key_prefix}-split-b{k}-<token>"``,
        ``f"{key_prefix}-piece-b{k}-p{p}-<token>"`` and
        ``f"{key_prefix}-bundle-p{p}-w{j}-<token>"`` (``j`` indexes the
        workers in sorted order; ``"owner"`` uses the owner's index).

    Returns
    -------
    BundleSet
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    client = blocks.client
    n_classes = int(n_classes)
    token = new_token()
    counts_f = blocks.map(_class_counts, n_classes, key=f"{key_prefix}-count")
    counts = np.sum(client.gather(counts_f), axis=0).astype(np.int64)
    del counts_f
    classes = assign_bundles(counts, n_bundles)
    B = len(classes)
    class_to_bundle = np.empty(n_classes, dtype=np.int64)
    for b, cl in enumerate(classes):
        class_to_bundle[cl] = b
    bundle_rows = [int(counts[cl].sum()) for cl in classes]
    workers = worker_addresses(client)

    offsets = np.concatenate([[0], np.cumsum(blocks.n_rows)]).astype(np.int64)
    splits = blocks.map(
        _split_block, class_to_bundle, key=f"{key_prefix}-split",
        per_block=[list(offsets[:-1])], n_bundles=B,
    )
    parts = [[None] * len(blocks) for _ in range(B)]
    size_f = []
    for k, fut in enumerate(splits):
        for p in range(B):
            parts[p][k] = client.submit(
                operator.getitem, fut, p, key=f"{key_prefix}-piece-b{k}-p{p}-{token}",
                workers=[blocks.workers[k]], allow_other_workers=False, pure=False,
            )
        size_f.append(client.submit(
            operator.getitem, fut, B, key=f"{key_prefix}-sizes-b{k}-{token}",
            workers=[blocks.workers[k]], allow_other_workers=False, pure=False,
        ))
    sizes = client.gather(size_f)
    # (bundle, worker, block indices) of every piece to build
    plan = []
    if layout == "owner":
        placed = place_bundles(bundle_rows, workers)
        if placement is not None:
            placed = [w if w in workers else placed[p] for p, w in enumerate(placement)]
        for p in range(B):
            plan.append((p, placed[p], list(range(len(blocks)))))
        moved = sum(sizes[k][p] for k in range(len(blocks)) for p in range(B)
                    if blocks.workers[k] != placed[p])
    else:
        for p in range(B):
            for w in workers:
                ks = [k for k in range(len(blocks)) if blocks.workers[k] == w]
                if any(sizes[k][p] for k in ks):
                    plan.append((p, w, ks))
        moved = 0
    futures = [
        client.submit(
            _make_bundle, p, classes[p], blocks.n_columns, *[parts[p][k] for k in ks],
            key=f"{key_prefix}-bundle-p{p}-w{workers.index(w)}-{token}", workers=[w],
            allow_other_workers=False, pure=False,
        )
        for p, w, ks in plan
    ]
    infos = client.gather([
        client.submit(_bundle_info, f, key=f"{key_prefix}-info-{i}-{token}",
                      workers=[w], allow_other_workers=False, pure=False)
        for i, (f, (_, w, _)) in enumerate(zip(futures, plan, strict=True))
    ])
    del splits, parts  # the pieces exist: the split blocks can go
    pieces = [[] for _ in range(B)]
    for f, (p, w, _), (n_rows, nnz, n_cols) in zip(futures, plan, infos, strict=True):
        if layout == "spread" and n_rows == 0:
            f.release()
            continue
        pieces[p].append(BundlePiece(f, w, n_rows, nnz, n_cols))
    home = []
    for p in range(B):
        if pieces[p]:
            home.append(max(pieces[p], key=lambda pc: pc.n_rows).worker)
        else:  # a bundle without rows: its weights start on a worker in turn
            home.append(workers[p % len(workers)])
    return BundleSet(client, layout, pieces, home, classes, bundle_rows, counts,
                     blocks.n_columns, int(moved), token)


def _bundle_info(bundle):
    return bundle.n_rows, int(bundle.X.nnz), len(bundle.cols)
