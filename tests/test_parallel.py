"""The parallel layer: blocks on workers, partials and their sum, the tree reduction."""

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from dask.utils import key_split

from dasksvm.parallel import (
    BlockSet,
    Least,
    SparseRows,
    SparseVector,
    add_partials,
    get_client,
    to_dense,
    tree_reduce,
    wire_nbytes,
)


def _vec(seed, d=50, sparse=False):
    rng = np.random.RandomState(seed)
    v = rng.randn(d)
    if sparse:
        idx = np.sort(rng.choice(d, 5, replace=False))
        return SparseVector(idx, v[idx], d)
    return v


def test_add_partials_sparse_and_dense():
    a, b = _vec(0, sparse=True), _vec(1, sparse=True)
    s = add_partials(a, b)
    np.testing.assert_allclose(to_dense(s), a.toarray() + b.toarray())
    d = _vec(2)
    np.testing.assert_allclose(to_dense(add_partials(a, d)), a.toarray() + d)
    np.testing.assert_allclose(to_dense(add_partials(d, a)), a.toarray() + d)
    nested = add_partials((a, 1.0, {"x": 2.0}), (b, 2.0, {"x": 3.0}))
    assert nested[1] == 3.0 and nested[2] == {"x": 5.0}
    assert wire_nbytes((a, 1.0)) == a.nbytes + 8 + 8  # the sparse size travels too


def test_least_combines_by_the_minimum():
    """A Least (a step bound) sums to the smallest, inside nested partials too, and
    refuses to combine with a plain number (a silent sum would be a wrong bound)."""
    nested = add_partials((1.0, Least(3.0)), (2.0, Least(np.inf)))
    assert nested[0] == 3.0 and isinstance(nested[1], Least) and nested[1].values == 3.0
    both = add_partials(Least([0.5, 2.0]), Least([1.0, 0.25]))
    np.testing.assert_array_equal(both.values, [0.5, 0.25])
    assert wire_nbytes(both) == 16
    with pytest.raises(TypeError, match="Least"):
        add_partials(Least(1.0), 2.0)


def test_sparse_sum_becomes_dense_when_full():
    d = 8
    a = SparseVector(np.array([0, 1]), np.array([1.0, 2.0]), d)
    b = SparseVector(np.array([2, 3]), np.array([3.0, 4.0]), d)
    s = add_partials(a, b)
    assert isinstance(s, np.ndarray)
    np.testing.assert_allclose(s, [1, 2, 3, 4, 0, 0, 0, 0])


def test_add_partials_sparse_rows():
    """SparseRows (touched rows x K) stay sparse rows through the sum, inside
    tuples too (they are NamedTuples: not mistaken for a tuple of partials)."""
    a = SparseRows(np.array([0, 3]), np.arange(6.0).reshape(2, 3), 5)
    b = SparseRows(np.array([3, 4]), np.ones((2, 3)), 5)
    s = add_partials(a, b)
    assert isinstance(s, SparseRows)
    np.testing.assert_array_equal(s.indices, [0, 3, 4])
    np.testing.assert_allclose(s.toarray(), a.toarray() + b.toarray())
    nested = add_partials((a, np.ones(2)), (b, np.ones(2)))
    assert isinstance(nested[0], SparseRows)
    np.testing.assert_allclose(nested[1], [2.0, 2.0])
    assert wire_nbytes((a, np.ones(2))) == a.nbytes + 8 + 16
    dense = np.ones((5, 3))
    np.testing.assert_allclose(add_partials(dense, a), dense + a.toarray())
    with pytest.raises(TypeError, match="SparseVector and a SparseRows"):
        add_partials(SparseVector(np.array([1]), np.array([1.0]), 5), a)


def _merge_sorted(parts):
    return sorted(x for p in parts for x in p)


def test_tree_reduce_custom_combine(client):
    futs = client.scatter([[k, 100 - k] for k in range(10)], hash=False)
    root = tree_reduce(client, futs, _merge_sorted, split_every=3, prefix="cascade",
                       step="level", round=2)
    assert root.result() == sorted([k for k in range(10)] + [100 - k for k in range(10)])
    assert root.key.startswith("cascade-level-r2-l2-n0-")  # 10 -> 4 -> 2 -> 1
    assert key_split(root.key) == "cascade-level"
    with pytest.raises(ValueError, match="split_every"):
        tree_reduce(client, futs, _merge_sorted, split_every=1)
    one = tree_reduce(client, futs[:1], _merge_sorted)
    assert one.result() == [0, 100]


def _block_rows(block):
    return block.index, block.n_rows, block.X.shape[1], float(block.y.sum())


def _where(block):
    from distributed import get_worker

    return get_worker().address


def test_blockset_from_dask_and_numpy(client):
    rng = np.random.RandomState(0)
    X = sp.random(40, 6, density=0.3, format="csr", random_state=rng)
    y = np.sign(rng.randn(40))
    Xd = da.from_array(X, chunks=(10, 6), asarray=False)
    yd = da.from_array(y, chunks=10)
    for bs in [
        BlockSet.from_arrays(client, Xd, yd, intercept_scaling=2.0, name="t"),
        BlockSet.from_arrays(client, X, y, n_blocks=4, intercept_scaling=2.0, name="t"),
    ]:
        assert len(bs) == 4 and bs.n_samples == 40 and bs.n_columns == 7
        info = client.gather(bs.map(_block_rows, key="test-rows-r0"))
        assert [i[0] for i in info] == [0, 1, 2, 3]
        assert sum(i[1] for i in info) == 40
        assert all(i[2] == 7 for i in info)
        # blocks are spread over both workers, and tasks run where the block is
        assert len(set(bs.workers)) == 2
        ran_on = client.gather(bs.map(_where, key="test-where-r0"))
        assert ran_on == bs.workers
        bs.release()


def test_blockset_rejects_bad_blocks(thread_client):
    X = np.ones((6, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        BlockSet.from_arrays(thread_client, X, np.ones(6), n_blocks=2)
    Xd = da.from_array(np.ones((6, 2)), chunks=((3, 0, 3), 2))
    yd = da.from_array(np.ones(6), chunks=((3, 0, 3),))
    with pytest.raises(ValueError, match="zero rows"):
        BlockSet.from_arrays(thread_client, Xd, yd)


def test_get_client_prefers_given_and_default(thread_client):
    assert get_client(thread_client) is thread_client
    with thread_client.as_current():
        assert get_client() is thread_client


def test_local_cluster_is_one_process_whose_threads_are_the_cores():
    import os

    from dasksvm.parallel import local_cluster

    with local_cluster(silence_logs=50) as cluster:
        assert [w.nthreads for w in cluster.workers.values()] == [os.cpu_count()]
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    with local_cluster(2, silence_logs=50) as cluster:
        assert [w.nthreads for w in cluster.workers.values()] == [max(1, os.cpu_count() // 2)] * 2


@pytest.mark.parametrize("as_dask", [False, True])
def test_blockset_shuffle_keeps_every_row_once(client, as_dask):
    n = 103
    X = sp.csr_matrix(np.arange(n, dtype=float)[:, None] + 1.0)
    y = np.arange(n, dtype=float)  # sorted "labels": the row id
    w = 2.0 * y
    if as_dask:
        X, y, w = (
            da.from_array(X, chunks=(26, 1), asarray=False),
            da.from_array(y, chunks=26),
            da.from_array(w, chunks=26),
        )
    bs = BlockSet.from_arrays(client, X, y, w, n_blocks=4, shuffle=True, random_state=1,
                              name="shuf")
    got = client.gather(bs.futures)
    ids = np.concatenate([b.y for b in got])
    assert sorted(ids) == list(range(n))
    for b in got:  # X, y and weight travel together
        np.testing.assert_array_equal(b.X.toarray().ravel(), b.y + 1.0)
        np.testing.assert_array_equal(b.weight, 2.0 * b.y)
    sizes = [b.n_rows for b in got]
    assert len(sizes) == 4 and max(sizes) - min(sizes) <= 4
    # every block holds rows from all over the sorted input
    assert all(b.y.min() < 30 and b.y.max() > 70 for b in got)
    bs.release()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_input_keeps_dense_blocks(client, dtype):
    """Dense chunks become dense blocks (the input's float type, the intercept column
    appended); ``Block.X`` makes the CSR for solvers without dense kernels, on demand."""
    rng = np.random.RandomState(0)
    X = rng.randn(40, 5).astype(dtype)
    X[:, 2] = 0.0  # a column no row touches
    y = np.where(rng.rand(40) > 0.5, 1.0, -1.0)
    bs = BlockSet.from_arrays(client, da.from_array(X, chunks=(20, -1)),
                              da.from_array(y, chunks=20), intercept_scaling=2.0, name="dn")
    assert bs.n_columns == 6 and list(bs.n_rows) == [20, 20]
    got = client.gather(bs.futures)
    for k, b in enumerate(got):
        assert b.dense is not None and b.dense.dtype == dtype and b.dense.flags.c_contiguous
        np.testing.assert_array_equal(b.dense[:, :5], X[20 * k:20 * (k + 1)])
        np.testing.assert_array_equal(b.dense[:, 5], 2.0)
        np.testing.assert_array_equal(b.cols, [0, 1, 3, 4, 5])
        assert b.nnz == 20 * 5 and (b.n_rows, b.n_columns) == (20, 6)
        csr = b.X  # made on first use; the dense rows are dropped
        assert sp.isspmatrix_csr(csr) and csr.dtype == np.float64 and b.dense is None
        np.testing.assert_array_equal(csr.toarray()[:, :5], X[20 * k:20 * (k + 1)])
        assert (b.n_rows, b.n_columns, b.nnz) == (20, 6, 100)
    bs.release()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity.*row 3"):
        BlockSet.from_arrays(client, bad, y, n_blocks=1, name="dn-bad")


def _wait_for(name):
    from distributed import Event

    Event(name).wait()
    return name


def _stealable_keys(dask_scheduler):
    steal = dask_scheduler.extensions["stealing"]
    return sorted(str(ts.key) for ts in steal.key_stealable)


def test_pinned_tasks_are_never_offered_to_work_stealing(thread_client):
    """The engine places tasks loosely on the worker holding their state; work stealing
    may move a loose task that waits behind another to an idle worker, which holds no
    state for it. ``pin_tasks`` makes the scheduler pass over tasks annotated PINNED:
    with worker A busy, an unpinned task queued on A is offered to stealing, a pinned
    one is not (the scheduler's own bookkeeping, no timing)."""
    import time

    import dask
    from distributed import Event

    from dasksvm.parallel.client import PINNED, pin_tasks

    client = thread_client
    a = min(client.nthreads())
    assert pin_tasks(client) and pin_tasks(client)  # idempotent
    go = Event("pin-test-go", client=client)
    kw = {"workers": [a], "allow_other_workers": True, "pure": False}
    busy = client.submit(_wait_for, "pin-test-go", key="pin-test-busy", **kw)
    free = client.submit(_wait_for, "pin-test-go", key="pin-test-free", **kw)
    with dask.annotate(**{PINNED: True}):
        pinned = client.submit(_wait_for, "pin-test-go", key="pin-test-pinned", **kw)
    try:
        for _ in range(200):
            keys = client.run_on_scheduler(_stealable_keys)
            if "pin-test-free" in keys:
                break
            time.sleep(0.02)
        assert "pin-test-free" in keys and "pin-test-pinned" not in keys
    finally:
        go.set()
    assert client.gather([busy, free, pinned]) == ["pin-test-go"] * 3
