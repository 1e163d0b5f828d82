"""The local SMO solver against LIBSVM (scikit-learn ``SVC``) on real data subsets.

"The same answer" (formulations.md, section 5): with the same C, kernel and
tol, the dual value within 1e-4 relative (both recomputed in float64 from the
alphas), the same support set up to points at the tolerance (alpha within
tol of zero, margin within tol of 1), and predictions agreeing on >= 99.9%.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.svm import SVC

from dasksvm import ConvergenceWarning
from dasksvm.kernels.smo import smo_solve
from dasksvm.solvers.smo import (
    as_rows,
    decision_function,
    dual_objective,
    feasible_start,
    solve_smo,
)

from ._reference import load_xz, run_without_jit
from .conftest import DATA_DIR

N_TRAIN = 3000
N_TEST = 2000
TOL = 1e-3

# name -> (file, C, gamma, dense, standardize): a few thousand rows each
DATASETS = {
    "a9a": ("a9a.xz", 1.0, 0.05, False, False),
    "magic04": ("magic04.xz", 1.0, 0.2, True, True),
    "higgs7k": ("higgs7k.train.xz", 1.0, 0.05, True, False),
    "mushrooms": ("mushrooms_agaricus.train.xz", 1.0, 0.05, False, False),
}
_DATA = {}
_REF = {}


def _load(name, data_dir=DATA_DIR):
    """(X train, y train, X held out, y held out, C, gamma) of a shuffled subset."""
    if name not in _DATA:
        fname, C, gamma, dense, standardize = DATASETS[name]
        X, y = load_xz(data_dir / fname)
        rng = np.random.RandomState(0)
        order = rng.permutation(X.shape[0])[: N_TRAIN + N_TEST]
        X, y = X[order], y[order]
        if dense:
            X = X.toarray()
            if standardize:
                X = (X - X[:N_TRAIN].mean(0)) / X[:N_TRAIN].std(0)
        _DATA[name] = (X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:], C, gamma)
    return _DATA[name]


def _pm(y):
    return np.where(y == np.unique(y)[1], 1.0, -1.0)


def _libsvm(X, y, C, kernel="rbf", gamma=1.0, degree=3, coef0=0.0, tol=TOL, **kw):
    """LIBSVM's solution as (alpha over all rows, b, dual value, model)."""
    m = SVC(C=C, kernel=kernel, gamma=gamma, degree=degree, coef0=coef0, tol=tol, **kw)
    m.fit(X, y)
    dc = m.dual_coef_
    dc = np.asarray(dc.todense() if sp.issparse(dc) else dc)[0]
    alpha = np.zeros(X.shape[0])
    alpha[m.support_] = np.abs(dc)
    ypm = _pm(y)
    # scikit-learn's binary decision is positive for classes_[1] (our +1)
    dual = dual_objective(X, ypm, alpha, kernel=kernel, gamma=gamma, degree=degree, coef0=coef0)
    return alpha, float(m.intercept_[0]), dual, m


def _ref(name):
    if name not in _REF:
        X, y, _, _, C, gamma = _load(name)
        _REF[name] = _libsvm(X, y, C, gamma=gamma)
    return _REF[name]


def _decision(X, Xtr, y, alpha, b, **kern):
    sv = alpha > 0
    return decision_function(X, Xtr[sv], (alpha * _pm(y))[sv], b, **kern)


def _assert_same_support(X, y, a_ours, a_ref, b, tol=TOL, **kern):
    """Support sets equal except for points at the tolerance (margin within 2 tol of 1)."""
    diff = np.flatnonzero((a_ours > 0) != (a_ref > 0))
    if diff.size:
        m = _pm(y)[diff] * _decision(X[diff], X, y, a_ours, b, **kern)
        assert np.all(np.abs(m - 1.0) <= 2 * tol), m


def _rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", list(DATASETS))
def test_matches_libsvm(name, data_dir):
    X, y, Xt, _yt, C, gamma = _load(name, data_dir)
    a_ref, b_ref, d_ref, model = _ref(name)
    alpha, b, dual, n_iter, status = solve_smo(X, y, C, kernel="rbf", gamma=gamma, tol=TOL)
    assert status == "converged" and n_iter > 0
    ypm = _pm(y)
    assert np.all(alpha >= 0) and np.all(alpha <= C)
    assert abs(alpha @ ypm) < 1e-8 * C * X.shape[0]
    d_ours = dual_objective(X, ypm, alpha, gamma=gamma)
    assert _rel(dual, d_ours) < 1e-5  # the reported dual is the float64 one to rounding
    assert _rel(d_ours, d_ref) < 1e-4
    assert abs(b - b_ref) < 10 * TOL
    _assert_same_support(X, y, alpha, a_ref, b, gamma=gamma)
    for A in (X, Xt):
        f = _decision(A, X, y, alpha, b, gamma=gamma)
        agree = np.mean((f > 0) == (model.decision_function(A) > 0))
        assert agree >= 0.999, agree


@pytest.mark.parametrize("name", ["a9a", "magic04"])
def test_warm_start_from_perturbed_solution(name, data_dir):
    X, y, _, _, C, gamma = _load(name, data_dir)
    _, _, d_ref, _ = _ref(name)
    alpha, *_ = solve_smo(X, y, C, gamma=gamma)
    rng = np.random.RandomState(1)
    noisy = alpha * rng.uniform(0.5, 1.6, alpha.shape[0])  # leaves the box and y^T a = 0
    noisy[rng.rand(alpha.shape[0]) < 0.1] += 0.3 * C
    a2, _, _dual2, _it2, status = solve_smo(X, y, C, gamma=gamma, alpha0=noisy)
    assert status == "converged"
    assert _rel(dual_objective(X, _pm(y), a2, gamma=gamma), d_ref) < 1e-4
    # from the solution itself: (almost) no work
    _, _, dual3, it3, _ = solve_smo(X, y, C, gamma=gamma, alpha0=alpha)
    assert it3 <= 10
    assert _rel(dual3, d_ref) < 1e-4


@pytest.mark.parametrize("name", ["a9a", "magic04"])
def test_warm_start_with_given_gradient(name, data_dir):
    """grad0 / gbar0 (exact, from pairwise kernels at a feasible start) reach the same dual
    as the computed gradient; a wrong one is used as given; bad input raises."""
    X, y, _, _, C, gamma = _load(name, data_dir)
    _, _, d_ref, _ = _ref(name)
    yy = _pm(y)
    alpha, *_ = solve_smo(X, y, C, gamma=gamma)
    rng = np.random.RandomState(2)
    a0 = feasible_start(alpha * rng.uniform(0.3, 1.0, alpha.shape[0]), yy, np.full(len(y), C))
    Q = yy[:, None] * yy[None, :] * pairwise_kernels(X, metric="rbf", gamma=gamma)
    grad0, gbar0 = Q @ a0 - 1.0, Q @ np.where(a0 >= C, C, 0.0)
    ref = solve_smo(X, y, C, gamma=gamma, alpha0=a0)
    got = solve_smo(X, y, C, gamma=gamma, alpha0=a0, grad0=grad0, gbar0=gbar0)
    assert got.status == "converged"
    assert _rel(dual_objective(X, yy, got.alpha, gamma=gamma), d_ref) < 1e-4
    assert abs(got.n_iter - ref.n_iter) <= max(10, 0.05 * ref.n_iter)
    assert abs(got.b - ref.b) < 10 * TOL
    # the solver trusts the gradient: zero gradient at zero alphas is "optimal" at once
    zero = solve_smo(X, y, C, gamma=gamma, alpha0=np.zeros(len(y)),
                     grad0=np.zeros(len(y)), gbar0=np.zeros(len(y)))
    assert zero.n_iter == 0 and zero.dual == 0.0
    with pytest.raises(ValueError, match="both or neither"):
        solve_smo(X, y, C, gamma=gamma, alpha0=a0, grad0=grad0)
    with pytest.raises(ValueError, match="need the alpha0"):
        solve_smo(X, y, C, gamma=gamma, grad0=grad0, gbar0=gbar0)
    with pytest.raises(ValueError, match="feasible alpha0"):
        solve_smo(X, y, C, gamma=gamma, alpha0=a0 + 0.5 * C, grad0=grad0, gbar0=gbar0)
    with pytest.raises(ValueError, match="shape"):
        solve_smo(X, y, C, gamma=gamma, alpha0=a0, grad0=grad0[:-1], gbar0=gbar0)


@pytest.mark.parametrize("name", ["a9a", "higgs7k"])
def test_small_cache_and_no_shrinking_same_answer(name, data_dir):
    X, y, _, _, C, gamma = _load(name, data_dir)
    _, _, d_ref, _ = _ref(name)
    a0, b0, _, _, _ = solve_smo(X, y, C, gamma=gamma)
    # 0.05 MB holds about 4 rows of 3000 float32: far smaller than the problem
    for kw in ({"cache_size": 0.05}, {"shrinking": False},
               {"cache_size": 0.05, "shrinking": False}):
        a, b, _dual, _, status = solve_smo(X, y, C, gamma=gamma, **kw)
        assert status == "converged"
        assert _rel(dual_objective(X, _pm(y), a, gamma=gamma), d_ref) < 1e-4, kw
        assert abs(b - b0) < 5 * TOL, kw
        assert np.count_nonzero((a > 0) != (a0 > 0)) <= 0.01 * np.count_nonzero(a0), kw


def test_small_cache_is_exactly_the_same_path(data_dir):
    """The cache changes where kernel values come from, never their values."""
    X, y, _, _, C, gamma = _load("mushrooms", data_dir)
    big = solve_smo(X, y, C, gamma=gamma, cache_size=100)
    small = solve_smo(X, y, C, gamma=gamma, cache_size=0.05)
    assert big.n_iter == small.n_iter
    np.testing.assert_array_equal(big.alpha, small.alpha)


@pytest.mark.parametrize("name", ["a9a", "higgs7k"])
def test_csr_and_dense_rows_same_answer(name, data_dir):
    X, y, Xt, _, C, gamma = _load(name, data_dir)
    Xs = sp.csr_matrix(X)
    Xd = X.toarray() if sp.issparse(X) else X
    r_s = solve_smo(Xs, y, C, gamma=gamma)
    r_d = solve_smo(Xd, y, C, gamma=gamma)
    assert _rel(r_s.dual, r_d.dual) < 1e-6
    assert abs(r_s.b - r_d.b) < TOL
    assert np.count_nonzero((r_s.alpha > 0) != (r_d.alpha > 0)) <= 3
    At = Xt.toarray() if sp.issparse(Xt) else Xt
    f_s = _decision(sp.csr_matrix(At), Xs, y, r_s.alpha, r_s.b, gamma=gamma)
    f_d = _decision(At, Xd, y, r_d.alpha, r_d.b, gamma=gamma)
    assert np.mean((f_s > 0) == (f_d > 0)) >= 0.999


@pytest.mark.parametrize("kernel,gamma,degree,coef0", [
    ("linear", 1.0, 3, 0.0),
    ("poly", 0.05, 3, 1.0),
    ("poly", 0.1, 2, 0.0),
    ("sigmoid", 0.01, 3, -0.5),
])
def test_other_kernels_match_libsvm(kernel, gamma, degree, coef0, data_dir):
    X, y, Xt, _, _, _ = _load("a9a", data_dir)
    X, y = X[:1500], y[:1500]
    C = 0.5
    kern = {"kernel": kernel, "gamma": gamma, "degree": degree, "coef0": coef0}
    _a_ref, _b_ref, d_ref, model = _libsvm(X, y, C, **kern)
    alpha, b, _dual, _, status = solve_smo(X, y, C, **kern)
    assert status == "converged"
    assert _rel(dual_objective(X, _pm(y), alpha, **kern), d_ref) < 1e-4
    f = _decision(Xt, X, y, alpha, b, **kern)
    assert np.mean((f > 0) == (model.decision_function(Xt) > 0)) >= 0.999


def test_per_row_bounds_are_class_weights(data_dir):
    X, y, Xt, _, C, gamma = _load("magic04", data_dir)
    classes = np.unique(y)
    weights = {classes[0]: 3.0, classes[1]: 0.5}
    _a_ref, b_ref, d_ref, model = _libsvm(X, y, C, gamma=gamma, class_weight=weights)
    c = C * np.array([weights[v] for v in y])
    alpha, b, _dual, _, _ = solve_smo(X, y, c, gamma=gamma)
    assert np.all(alpha <= c + 1e-12)
    assert _rel(dual_objective(X, _pm(y), alpha, gamma=gamma), d_ref) < 1e-4
    assert abs(b - b_ref) < 10 * TOL
    f = _decision(Xt, X, y, alpha, b, gamma=gamma)
    assert np.mean((f > 0) == (model.decision_function(Xt) > 0)) >= 0.999


def test_feasible_start_restores_box_and_equality():
    rng = np.random.RandomState(0)
    y = np.where(rng.rand(200) < 0.3, 1.0, -1.0)
    c = rng.uniform(0.5, 2.0, 200)
    a = rng.uniform(-1.0, 3.0, 200)
    f = feasible_start(a, y, c)
    assert np.all(f >= 0) and np.all(f <= c)
    assert abs(f @ y) < 1e-12 * c.sum()
    # already feasible: unchanged
    g = feasible_start(f, y, c)
    np.testing.assert_allclose(g, f, rtol=1e-14, atol=0)


def test_decision_kernel_matches_pairwise_kernels():
    rng = np.random.RandomState(0)
    A = rng.randn(37, 6)
    A[3] = 0.0
    S = rng.randn(11, 6)
    coef = rng.randn(11, 3)
    b = rng.randn(3)
    for kernel, kw in [("rbf", {"gamma": 0.3}), ("linear", {}),
                       ("poly", {"gamma": 0.2, "degree": 3, "coef0": 1.0}),
                       ("sigmoid", {"gamma": 0.1, "coef0": 0.5})]:
        ref = pairwise_kernels(A, S, metric=kernel, **kw) @ coef + b
        full = {"gamma": 1.0, "degree": 3, "coef0": 0.0, **kw}
        for a_in in (A, sp.csr_matrix(A)):
            for s_in in (S, sp.csr_matrix(S)):
                out = decision_function(a_in, s_in, coef, b, kernel=kernel, chunk=5, **full)
                np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_max_iter_warns_and_reports():
    X, y = _small_problem()
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        r = solve_smo(X, y, 1.0, gamma=0.5, max_iter=3)
    assert r.status == "max_iter" and r.n_iter == 3
    assert np.all(r.alpha >= 0) and abs(r.alpha @ _pm(y)) < 1e-12


# ----------------------------------------------------------------------------- bad input


def test_bad_parameters_raise():
    X, y = _small_problem()
    for g in (0.0, -1.0):
        with pytest.raises(ValueError, match="gamma must be positive"):
            solve_smo(X, y, 1.0, gamma=g)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        solve_smo(X, np.ones(X.shape[0]), 1.0, gamma=0.5)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        solve_smo(X, np.arange(X.shape[0]) % 3, 1.0, gamma=0.5)
    with pytest.raises(ValueError, match="C must be positive"):
        solve_smo(X, y, 0.0, gamma=0.5)
    with pytest.raises(ValueError, match="kernel must be one of"):
        solve_smo(X, y, 1.0, kernel="laplacian")
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        solve_smo(Xn, y, 1.0, gamma=0.5)
    with pytest.raises(ValueError, match="alpha0 must have shape"):
        solve_smo(X, y, 1.0, gamma=0.5, alpha0=np.zeros(3))
    # the linear kernel ignores gamma, as scikit-learn
    assert solve_smo(X, y, 1.0, kernel="linear", gamma=0.0).status == "converged"


def test_duplicate_points_match_libsvm(data_dir):
    X, y, _, _, C, gamma = _load("mushrooms", data_dir)
    X, y = X[:800], y[:800]
    # every row twice, and 50 rows a third time with the opposite label
    Xd = sp.vstack([X, X, X[:50]], format="csr")
    yd = np.concatenate([y, y, np.where(y[:50] == y.max(), y.min(), y.max())])
    for Xin in (Xd, Xd.toarray()):
        _, b_ref, d_ref, _model = _libsvm(Xin, yd, C, gamma=gamma)
        alpha, b, _dual, _, status = solve_smo(Xin, yd, C, gamma=gamma)
        assert status == "converged"
        assert _rel(dual_objective(Xd, _pm(yd), alpha, gamma=gamma), d_ref) < 1e-4
        assert abs(b - b_ref) < 10 * TOL


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly"])
def test_all_zero_rows_match_libsvm(kernel, data_dir):
    X, y, _, _, _, _ = _load("a9a", data_dir)
    X = sp.csr_matrix(X[:1000], copy=True)
    rows = np.arange(0, 1000, 7)
    X = sp.lil_matrix(X)
    X[rows] = 0.0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    assert np.all(np.diff(X.indptr)[rows] == 0)
    kern = {"kernel": kernel, "gamma": 0.05, "degree": 2, "coef0": 1.0}
    for Xin in (X, X.toarray()):
        _, b_ref, d_ref, _ = _libsvm(Xin, y[:1000], 1.0, **kern)
        alpha, b, _, _, status = solve_smo(Xin, y[:1000], 1.0, **kern)
        assert status == "converged"
        assert _rel(dual_objective(X, _pm(y[:1000]), alpha, **kern), d_ref) < 1e-4
        assert abs(b - b_ref) < 10 * TOL


# ----------------------------------------------------------------------------- no JIT


def _small_problem(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    y = np.where(X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.randn(n) > 0.4, 1.0, -1.0)
    return X, y


def test_small_case_matches_libsvm():
    """A small problem, dense and CSR, with a two-row cache and shrinking (no fixtures:
    also run with numba's JIT off below)."""
    X, y = _small_problem()
    _, b_ref, d_ref, _ = _libsvm(X, y, 2.0, gamma=0.5)
    for Xin in (X, sp.csr_matrix(X)):
        for kw in ({}, {"cache_size": 1e-4}, {"shrinking": False}):
            alpha, b, _dual, _, status = solve_smo(Xin, y, 2.0, gamma=0.5, **kw)
            assert status == "converged"
            assert _rel(dual_objective(X, y, alpha, gamma=0.5), d_ref) < 1e-4
            assert abs(b - b_ref) < 10 * TOL
    # the raw kernel on plain arrays: gradient G = Q a - e is returned current
    rows = as_rows(X)
    a, g, _rho, _obj, _it, gap, st = smo_solve(*rows.args(), y, np.full(80, 2.0), np.zeros(80), 2,
                                           0.5, 0.0, 3, TOL, 10**6, True, 10**6, 4,
                                           np.zeros(0), np.zeros(0))
    K = pairwise_kernels(X, metric="rbf", gamma=0.5)
    np.testing.assert_allclose(g, (y[:, None] * y[None, :] * K) @ a - 1.0, atol=1e-5)
    assert st == 0 and gap <= TOL


def test_runs_without_jit():
    run_without_jit("test_smo", "test_small_case_matches_libsvm",
                    "test_feasible_start_restores_box_and_equality",
                    "test_decision_kernel_matches_pairwise_kernels")


def test_no_warning_on_convergence():
    X, y = _small_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_smo(X, y, 1.0, gamma=0.5)
