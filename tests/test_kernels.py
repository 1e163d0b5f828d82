"""Kernel plumbing: the cache hint and the dense block scan (the solvers' kernels are
tested against their references in the solvers' test files)."""

import numpy as np
import pytest
from numba import njit

from dasksvm.kernels.blocks import dense_scan
from dasksvm.kernels.prefetch import prefetch, prefetch_csr_row

from ._reference import run_without_jit


@njit
def _hinted_sums(a, bounds, indptr, indices):
    # every range hinted, then summed: the hint must change no value
    out = np.empty(len(bounds))
    for t in range(len(bounds)):
        lo, hi = bounds[t]
        prefetch(a, lo, hi)
        prefetch_csr_row(indptr, indices, a, t % (len(indptr) - 1))
        out[t] = a[lo:hi].sum()
    return out


DTYPES = [np.float64, np.float32, np.int32]


@pytest.mark.parametrize("dtype", DTYPES)
def test_prefetch_changes_no_value(dtype):
    """Ranges of every kind (empty, one element, a whole array, starting late in a line,
    a strided view) are hinted without a fault and read back unchanged."""
    _check_prefetch(dtype)


def _check_prefetch(dtype):
    a = np.arange(1000).astype(dtype)
    bounds = np.array([(0, 0), (999, 1000), (0, 1000), (15, 17), (7, 700), (500, 500)])
    indptr = np.array([0, 3, 3, 10])
    indices = np.arange(10, dtype=np.int32)
    for arr in (a, a[::7]):
        b = np.minimum(bounds, len(arr))
        expect = [arr[lo:hi].sum() for lo, hi in b]
        np.testing.assert_array_equal(_hinted_sums(arr, b, indptr, indices), expect)


@pytest.mark.parametrize("dtype", DTYPES[:2])
def test_dense_scan_counts_columns_norms_rows_and_finds_the_first_bad_row(dtype):
    _check_scan(dtype)


def _check_scan(dtype):
    rng = np.random.RandomState(0)
    X = np.where(rng.rand(300, 13) < 0.3, rng.randn(300, 13), 0.0).astype(dtype)
    X[:, 4] = 0.0
    bad, counts, sq_norms = dense_scan(X)
    assert bad == -1
    np.testing.assert_array_equal(counts, np.count_nonzero(X, axis=0))
    np.testing.assert_allclose(sq_norms, (X.astype(np.float64) ** 2).sum(axis=1), rtol=1e-14)
    for value in (np.nan, np.inf, -np.inf):
        Y = X.copy()
        Y[250, 3], Y[123, 12] = value, value
        assert dense_scan(Y)[0] == 123
    assert dense_scan(np.zeros((0, 3), dtype))[0] == -1


def _all_checks():
    for dtype in DTYPES:
        _check_prefetch(dtype)
    for dtype in DTYPES[:2]:
        _check_scan(dtype)


def test_kernels_here_run_without_jit():
    """The checks above with numba's JIT off (the hint is then a no-op)."""
    run_without_jit("test_kernels", "_all_checks")
