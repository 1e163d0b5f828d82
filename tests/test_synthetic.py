"""make_classification: lazy per-block generation, determinism, structure, learnability."""

import time

import dask
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from sklearn.svm import LinearSVC

from dasksvm.datasets import make_classification
from dasksvm.datasets.synthetic import _class_bounds, _permute


def _sparse_equal(a, b):
    return (
        a.shape == b.shape
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.data, b.data)
    )


def _holdout_score(X, y, C=1.0):
    X, y = X.compute(), y.compute()
    half = X.shape[0] // 2
    clf = LinearSVC(C=C, max_iter=5000).fit(X[:half], y[:half])
    return clf.score(X[half:], y[half:])


# --- the dask side --------------------------------------------------------------------


def test_sparse_shapes_chunks_and_meta():
    X, y = make_classification(1000, 500, nnz_per_row=10, chunks=300, random_state=0)
    assert X.shape == (1000, 500) and y.shape == (1000,)
    assert X.chunks == ((300, 300, 300, 100), (500,))
    assert y.chunks == ((300, 300, 300, 100),)
    assert isinstance(X._meta, sp.csr_matrix) and X.dtype == np.float64
    assert y.dtype == np.int64
    blocks = [X.blocks[i].compute() for i in range(X.numblocks[0])]
    for b, n in zip(blocks, X.chunks[0], strict=True):
        assert isinstance(b, sp.csr_matrix) and b.shape == (n, 500)
        assert b.indices.dtype == np.int32 and b.indptr.dtype == np.int32
        assert b.has_canonical_format
        for i in range(b.shape[0]):   # sorted, no duplicates
            row = b.indices[b.indptr[i]:b.indptr[i + 1]]
            assert np.all(np.diff(row) > 0)


def test_dense_shapes_chunks_and_dtype():
    X, _y = make_classification(1000, 7, chunks=(400, -1), random_state=0, dtype=np.float32)
    assert X.chunks == ((400, 400, 200), (7,))
    assert isinstance(X._meta, np.ndarray) and X.dtype == np.float32
    x = X.compute()
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (1000, 7)


def test_huge_set_is_cheap_to_define_and_generated_per_block():
    t0 = time.perf_counter()
    X, y = make_classification(10**7, 10**6, nnz_per_row=50, chunks=10_000, random_state=1)
    assert time.perf_counter() - t0 < 1.0
    assert X.numblocks == (1000, 1)
    # one task per block per array, no other layers or dependencies
    assert len(X.__dask_graph__()) == 1000 and len(y.__dask_graph__()) == 1000
    block = X.blocks[500].compute()
    assert block.shape == (10_000, 10**6) and 45 < block.nnz / 10_000 < 55
    labels = y.blocks[500].compute()
    assert labels.shape == (10_000,) and set(np.unique(labels)) == {-1, 1}


def test_auto_chunks_follow_the_dask_chunk_size():
    with dask.config.set({"array.chunk-size": "1MiB"}):
        X, _ = make_classification(100_000, 1000, nnz_per_row=10, random_state=0)
        rows = X.chunks[0][0]
        assert 1 << 20 >= rows * 10 * 12 > (1 << 20) * 0.9
        Xd, _ = make_classification(10_000, 100, random_state=0)
        assert Xd.chunks[0][0] == (1 << 20) // 800


# --- determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("nnz", [None, 20])
def test_same_data_whatever_the_chunking(nnz):
    kw = {"n_features": 300, "nnz_per_row": nnz, "n_classes": 3, "label_noise": 0.1,
          "random_state": 7}
    X1, y1 = make_classification(5003, chunks=5003, **kw)
    X2, y2 = make_classification(5003, chunks=(1000, 1, 2047, 1955), **kw)
    X3, y3 = make_classification(5003, chunks=333, **kw)
    a, b, c = X1.compute(), X2.compute(), X3.compute()
    if nnz is None:
        assert np.array_equal(a, b) and np.array_equal(a, c)
    else:
        assert _sparse_equal(a, b) and _sparse_equal(a, c)
    assert np.array_equal(y1.compute(), y2.compute())
    assert np.array_equal(y1.compute(), y3.compute())


def test_same_data_on_every_scheduler():
    X, y = make_classification(3000, 200, nnz_per_row=15, chunks=500, random_state=3)
    ref = X.compute(scheduler="sync")
    assert _sparse_equal(ref, X.compute(scheduler="threads"))
    assert _sparse_equal(ref, X.compute(scheduler="threads"))
    assert np.array_equal(y.compute(scheduler="sync"), y.compute(scheduler="threads"))


def test_same_data_on_a_cluster(process_client):
    client = process_client
    X, y = make_classification(3000, 200, nnz_per_row=15, chunks=500, random_state=3)
    Xc, yc = client.compute([X, y], sync=True)
    assert _sparse_equal(X.compute(scheduler="sync"), Xc)
    assert np.array_equal(y.compute(scheduler="sync"), yc)


def test_random_state_forms():
    a = make_classification(500, 20, random_state=1)[0].compute()
    assert np.array_equal(a, make_classification(500, 20, random_state=1)[0].compute())
    assert not np.array_equal(a, make_classification(500, 20, random_state=2)[0].compute())
    g1 = make_classification(500, 20, random_state=np.random.default_rng(5))[0].compute()
    g2 = make_classification(500, 20, random_state=np.random.default_rng(5))[0].compute()
    assert np.array_equal(g1, g2)
    r = make_classification(500, 20, random_state=np.random.RandomState(5))[0]
    assert r.compute().shape == (500, 20)
    X, _ = make_classification(500, 20)          # fresh seed, but fixed in the graph
    X2, _ = make_classification(500, 20)
    assert np.array_equal(X.compute(), X.compute())
    assert not np.array_equal(X.compute(), X2.compute())


def test_permutation_is_a_bijection():
    keys = tuple(np.uint64(k) for k in (1, 22, 333, 4444))
    for n in (1, 2, 3, 17, 1000, 4097):
        p = _permute(np.arange(n, dtype=np.uint64), n, keys)
        assert np.array_equal(np.sort(p), np.arange(n))


# --- rows -----------------------------------------------------------------------------


def test_sparse_rows_look_like_tfidf():
    n, d = 20_000, 50_000
    X, _ = make_classification(n, d, nnz_per_row=30, chunks=5000, random_state=11)
    A = X.compute()
    per_row = np.diff(A.indptr)
    assert abs(per_row.mean() - 30) < 0.5 and per_row.min() >= 1
    assert (A.data > 0).all()
    np.testing.assert_allclose(spla.norm(A, axis=1), 1.0, rtol=1e-12)
    # Zipf-like popularity: a few columns everywhere, a long tail
    counts = np.sort(np.bincount(A.indices, minlength=d))[::-1]
    assert counts[0] > 0.3 * n
    assert counts[: d // 100].sum() > 0.3 * A.nnz       # top 1% of columns
    assert (counts > 0).sum() > 0.5 * d                 # the tail is used
    # the popular columns are spread over the column ids, not the first ones
    top = np.argsort(np.bincount(A.indices, minlength=d))[::-1][:20]
    assert top.max() > d // 10


def test_few_columns_and_full_rows():
    # targets are Poisson(5) clipped to 1..5 (mean 4.1); rows reach them although
    # the rarest of 5 Zipf columns has probability 0.1 per draw
    X, _ = make_classification(2000, 5, nnz_per_row=5, random_state=0)
    per_row = np.diff(X.compute().indptr)
    assert 4.0 < per_row.mean() < 4.2 and per_row.max() == 5
    X, y = make_classification(3, 1, n_classes=3, nnz_per_row=1, random_state=0)
    assert X.compute().toarray().tolist() == [[1.0], [1.0], [1.0]]
    assert sorted(y.compute()) == [0, 1, 2]


# --- labels ---------------------------------------------------------------------------


def test_binary_labels_balanced():
    _, y = make_classification(10_001, 10, chunks=999, random_state=0)
    yv = y.compute()
    assert set(np.unique(yv)) == {-1, 1}
    assert sorted(np.bincount((yv + 1) // 2)) == [5000, 5001]
    # classes are mixed across blocks, not sorted
    first = yv[:999]
    assert 400 < (first == 1).sum() < 600


def test_multiclass_labels_balanced():
    _, y = make_classification(1003, 10, n_classes=10, random_state=0)
    counts = np.bincount(y.compute())
    assert counts.size == 10 and counts.min() == 100 and counts.max() == 101


def test_powerlaw_with_1000_classes():
    n, k = 60_000, 1000
    X, y = make_classification(n, 5000, n_classes=k, nnz_per_row=20,
                               class_sizes="powerlaw", chunks=15_000, random_state=4)
    counts = np.bincount(y.compute(), minlength=k)
    assert counts.size == k and counts.sum() == n and counts.min() >= 1
    assert np.all(np.diff(counts) <= 0)               # class 0 largest, then Zipf
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.05)
    np.testing.assert_array_equal(counts, np.diff(_class_bounds(n, k, "powerlaw")))
    assert X.blocks[1].compute().shape == (15_000, 5000)


def test_powerlaw_binary_and_custom_weights():
    _, y = make_classification(3000, 5, class_sizes="powerlaw", random_state=0)
    assert np.count_nonzero(y.compute() == -1) == 2000
    _, y = make_classification(1000, 5, n_classes=3, class_sizes=[1, 1, 2], random_state=0)
    assert np.bincount(y.compute()).tolist() == [250, 250, 500]


@pytest.mark.parametrize("k", [2, 5])
def test_label_noise_rate(k):
    kw = {"n_features": 20, "n_classes": k, "chunks": 7000, "random_state": 9}
    X0, y0 = make_classification(40_000, **kw)
    X1, y1 = make_classification(40_000, label_noise=0.2, **kw)
    flipped = y0.compute() != y1.compute()
    assert flipped.mean() == pytest.approx(0.2, abs=0.01)
    assert np.array_equal(X0.compute(), X1.compute())   # features follow the true class


# --- learnability ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 10])
def test_sparse_problem_is_learnable_not_separable(k):
    X, y = make_classification(4000, 10_000, n_classes=k, nnz_per_row=50, random_state=0)
    score = _holdout_score(X, y)
    assert {2: 0.8, 10: 0.6}[k] < score < 0.98          # chance: 1 / k


def test_dense_problem_is_learnable():
    X, y = make_classification(4000, 20, random_state=0)
    assert 0.85 < _holdout_score(X, y) < 0.99


def test_class_sep_zero_is_noise():
    X, y = make_classification(4000, 2000, nnz_per_row=20, class_sep=0.0, random_state=0)
    assert _holdout_score(X, y, C=0.1) < 0.6


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_classes": 1}, "n_classes must be at least 2"),
        ({"n_samples": 5, "n_classes": 6}, "smaller than n_classes"),
        ({"n_features": 0}, "n_features must be at least 1"),
        ({"nnz_per_row": 11}, r"nnz_per_row must be a number in \(0, n_features=10\]"),
        ({"nnz_per_row": 0}, "nnz_per_row"),
        ({"class_sizes": "zipf"}, "class_sizes must be"),
        ({"class_sizes": [1, 0]}, "positive numbers"),
        ({"label_noise": 1.0}, r"label_noise must be in \[0, 1\)"),
        ({"class_sep": -1}, "class_sep"),
        ({"dtype": np.int32}, "floating dtype"),
        ({"chunks": ((50, 50), 5)}, "splits the columns"),
        ({"chunks": (30, 30)}, "sum to n_samples=100"),
        ({"chunks": 0}, "positive number of rows"),
        ({"random_state": -1}, "non-negative"),
    ],
)
def test_errors(kwargs, match):
    args = {"n_samples": 100, "n_features": 10}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_classification(**args)


def test_type_errors():
    with pytest.raises(TypeError, match="n_samples must be an int"):
        make_classification(10.0, 5)
    with pytest.raises(TypeError, match="random_state"):
        make_classification(10, 5, random_state="seed")
