"""warm_start and C_path: a warm fit at C2 from a fit at C1 reaches the cold fit's objective
(both certified to tol) in no more rounds; any other change starts cold with a warning."""

import io
import lzma
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_svmlight_file

import dasksvm
from dasksvm import C_path, LinearSVC, MulticlassSVC

from ._reference import binary_primal

TOL = 1e-3
C1, C2 = 0.02, 0.04  # a step of LIBLINEAR's -C grid (C doubles)
BINARY = [("cocoa", {}), ("cocoa", {"loss": "hinge"}), ("newton", {})]
MULTICLASS = ["ww", "llw", "cs", "ovr"]
#: machines whose warm fit does not take fewer rounds than the cold one at this setting
#: (measured on these 200 rows at C 0.02 -> 0.04: cs 135 vs 90 rounds, ovr 131 vs 129):
#: the scaled duals give a better dual value and a smaller first gap, but the primal
#: W(alpha) = 2 W*(C1) starts far and its tail to tol takes as long. For them the test
#: asserts the objective and the smaller first gap only.
NOT_FEWER_ROUNDS = {"cs", "ovr"}


def _head(path, n, d):
    with lzma.open(path) as f:
        text = b"".join(f.readline() for _ in range(n))
    X, y = load_svmlight_file(io.BytesIO(text), n_features=d)
    return sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)),
                         shape=X.shape), y


@pytest.fixture(scope="module")
def data(data_dir):
    """Small real sets: 600 rows of a9a (binary), 200 of dna (3 classes), CSR."""
    return {"a9a": _head(data_dir / "a9a.xz", 600, 123),
            "dna": _head(data_dir / "dna.scale.xz", 200, 180)}


def _linear(client, solver, **kw):
    return LinearSVC(solver=solver, tol=TOL, random_state=0, client=client, **kw)


def _multi(client, mc, **kw):
    return MulticlassSVC(mc, **{"tol": TOL, **kw}, random_state=0, client=client)


def _no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


def _check_warm_vs_cold(warm, cold, fewer_rounds=True, tol=TOL):
    assert warm.C == cold.C and warm.converged_ and cold.converged_
    assert warm.rel_gap_ <= tol and cold.rel_gap_ <= tol
    # both primals are within tol * P of the optimum
    assert warm.primal_ == pytest.approx(cold.primal_, rel=tol)
    # the warm start is nearer: a smaller gap and a larger dual value at its first record
    assert warm.history_[0]["rel_gap"] < cold.history_[0]["rel_gap"]
    assert warm.history_[0]["dual"] > cold.history_[0]["dual"]
    if fewer_rounds:
        assert warm.n_iter_ <= cold.n_iter_


@pytest.mark.parametrize("solver, kw", BINARY, ids=["cocoa", "cocoa-hinge", "newton"])
def test_binary_warm_fit_reaches_the_cold_objective_in_fewer_rounds(
        solver, kw, data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, solver, C=C1, warm_start=True, **kw).fit(X, y)
    first = est.n_iter_
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warm start gives no warning
        est.set_params(C=C2).fit(X, y)
    cold = _linear(process_client, solver, C=C2, **kw).fit(X, y)
    _check_warm_vs_cold(est, cold)
    assert first > 0
    # the certificate is exact: the reported primal is that of the returned model
    loss = kw.get("loss", "squared_hinge")
    ypm = np.where(y == est.classes_[1], 1.0, -1.0)
    P = binary_primal(X, ypm, est.coef_.ravel(), est.intercept_[0], C2, loss)
    assert P == pytest.approx(est.primal_, rel=1e-9)


@pytest.mark.parametrize("mc", MULTICLASS)
def test_multiclass_warm_fit_reaches_the_cold_objective_in_fewer_rounds(
        mc, data, process_client):
    X, y = data["dna"]
    tol = 1e-2 if mc == "ww" else TOL  # the slowest machine per round here
    # ww: two bundles, one pass an epoch (the default, one bundle with 100 passes a round
    # on these 200 rows, certifies 2e-6 at its first record, warm or cold)
    kw = {"n_bundles": 2} if mc == "ww" else {}
    est = _multi(process_client, mc, C=C1, tol=tol, warm_start=True, **kw).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.set_params(C=C2).fit(X, y)
    cold = _multi(process_client, mc, C=C2, tol=tol, **kw).fit(X, y)
    _check_warm_vs_cold(est, cold, fewer_rounds=mc not in NOT_FEWER_ROUNDS, tol=tol)
    np.testing.assert_array_equal(est.classes_, cold.classes_)


@pytest.mark.parametrize("change, match", [
    ({"loss": "hinge"}, "loss='hinge' now, 'squared_hinge' before"),
    ({"fit_intercept": False}, "fit_intercept=False now, True before"),
    ({"class_weight": "balanced"}, "class_weight='balanced' now, None before"),
    ({"solver": "newton"}, "solver='newton' now, 'cocoa' before"),
])
def test_another_parameter_starts_cold_with_a_warning_naming_it(
        change, match, data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, "cocoa", C=C1, warm_start=True).fit(X, y)
    est.set_params(C=C2, **change)
    with pytest.warns(UserWarning, match=f"warm_start: .*{match}.*starts cold"):
        est.fit(X, y)
    cold = _linear(process_client, **{"solver": "cocoa", **change}, C=C2).fit(X, y)
    assert est.n_iter_ == cold.n_iter_
    assert est.primal_ == pytest.approx(cold.primal_, rel=1e-9)


def test_other_data_starts_cold_with_a_warning(data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, "cocoa", C=C1, warm_start=True).fit(X, y)
    with pytest.warns(UserWarning, match="warm_start: the previous fit was for other data"):
        est.set_params(C=C2).fit(X[:500], y[:500])
    cold = _linear(process_client, "cocoa", C=C2).fit(X[:500], y[:500])
    assert est.n_iter_ == cold.n_iter_
    assert est.primal_ == pytest.approx(cold.primal_, rel=1e-9)
    # multiclass: other rows
    Xd, yd = data["dna"]
    mc = _multi(process_client, "llw", C=C1, warm_start=True).fit(Xd, yd)
    with pytest.warns(UserWarning, match="warm_start: the previous fit was for other data"):
        mc.set_params(C=C2).fit(Xd[:150], yd[:150])


def test_warm_start_false_and_sgd(data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, "cocoa", C=C1).fit(X, y)
    assert not hasattr(est, "_warm_state")
    est.set_params(C=C2).fit(X, y)  # no warm start: the same as a cold fit
    cold = _linear(process_client, "cocoa", C=C2).fit(X, y)
    assert est.n_iter_ == cold.n_iter_ and est.primal_ == cold.primal_
    with pytest.raises(ValueError, match="warm_start=True is not available with "
                                         "solver='sgd'"):
        _linear(process_client, "sgd", warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="warm_start must be True or False"):
        _linear(process_client, "cocoa", warm_start="yes").fit(X, y)


def test_clone_and_get_params(data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, "cocoa", C=C1, warm_start=True).fit(X, y)
    assert est.get_params()["warm_start"] is True
    twin = clone(est)
    assert twin.get_params()["warm_start"] is True and not hasattr(twin, "_warm_state")
    assert MulticlassSVC().get_params()["warm_start"] is False


@pytest.mark.parametrize("make, key", [
    (lambda c: _linear(c, "cocoa"), "a9a"),
    (lambda c: _multi(c, "llw"), "dna"),
])
def test_C_path_models_equal_cold_fits(make, key, data, process_client):
    X, y = data[key]
    Cs = [0.08, 0.01, 0.03]
    est = make(process_client)
    models = C_path(est, X, y, Cs)
    assert [m.C for m in models] == Cs
    assert not hasattr(est, "coef_") and est.warm_start is False  # not modified
    rounds = {}
    for m, C in zip(models, Cs, strict=True):
        assert m.warm_start is False and not hasattr(m, "_warm_state")
        cold = clone(est).set_params(C=C).fit(X, y)
        assert m.rel_gap_ <= TOL and m.primal_ == pytest.approx(cold.primal_, rel=TOL)
        rounds[C] = (m.n_iter_, cold.n_iter_)
    # the smallest C is the path's cold start; the others start warm
    assert rounds[0.01][0] == rounds[0.01][1]
    assert all(w <= c for w, c in rounds.values())
    # the models are independent of each other
    assert models[0].coef_ is not models[1].coef_


def test_C_path_bad_input(data, process_client):
    X, y = data["a9a"]
    est = _linear(process_client, "cocoa")
    for Cs, match in [([], "non-empty"), ([0.1, -1.0], "finite numbers > 0"),
                      ([0.1, 0.1], "repeated"), ("0.1", "sequence"),
                      ([[0.1, 0.2]], "1-d")]:
        with pytest.raises(ValueError, match=match):
            C_path(est, X, y, Cs)
    with pytest.raises(ValueError, match="'C' parameter"):
        C_path(dasksvm.MaxAbsScaler(), X, y, [0.1])
    with pytest.raises(ValueError, match="solver='sgd'"):
        C_path(_linear(process_client, "sgd"), X, y, [0.1, 1.0])
