"""dask-ml and scikit-learn meta-estimators around every estimator, on dask arrays.

What is checked:

* Pipelines on a dask array of CSR blocks (a9a, columns rescaled so that the
  scaler has work to do): scikit-learn's ``MaxAbsScaler`` cannot take such an
  array (it calls ``numpy.asarray`` on it, which makes a 0-d object array:
  "Expected 2D array, got scalar array instead"), dasksvm's blockwise
  :class:`~dasksvm.estimators.features.MaxAbsScaler` can, and
  ``MaxAbsScaler -> LinearSVC`` and ``MaxAbsScaler -> RandomFourierFeatures ->
  LinearSVC`` reach the objective of the same pipeline fitted on the scipy
  matrix (scikit-learn's scaler) and of LIBLINEAR, to the stated tolerance;
  dask-ml's scalers (dense blocks only) in front of LinearSVC likewise;
* dask-ml's ``GridSearchCV`` over C for LinearSVC, every MulticlassSVC
  machine, CascadeSVC and a feature-map Pipeline, on dask arrays, on a
  LocalCluster of 2 worker processes: every fit runs inside a worker (the
  callback raises anywhere else), none starts a cluster there, and the best C
  and the mean test scores are those of scikit-learn's ``GridSearchCV`` on the
  numpy data;
* ``predict``, ``decision_function``, ``score`` (and ``transform``) of every
  estimator are lazy on dask input: dask arrays come back, no block of X is
  computed before ``.compute()``, and the computed values are the numpy ones.
"""

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler as SkMaxAbsScaler
from sklearn.preprocessing import MinMaxScaler as SkMinMaxScaler
from sklearn.preprocessing import StandardScaler as SkStandardScaler
from sklearn.svm import LinearSVC as LibLinear

from dasksvm import (
    CascadeSVC,
    LinearSVC,
    MulticlassSVC,
    Nystroem,
    OrthogonalRandomFeatures,
    RandomFourierFeatures,
)
from dasksvm.estimators.features import MaxAbsScaler

from ._reference import binary_primal, load_xz

# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def a9a(data_dir):
    """The first 2,000 rows of a9a (0/1 features, 123 columns), CSR, labels -1/+1."""
    X, y = load_xz(data_dir / "a9a.xz", n_features=123)
    return X[:2000], y[:2000]


@pytest.fixture(scope="module")
def dna(data_dir):
    """The first 200 rows of dna.scale (0/1 features, 180 columns, 3 classes), CSR."""
    X, y = load_xz(data_dir / "dna.scale.xz")
    return X[:200], y[:200]


def _csr_blocks(X, y, rows):
    """X as a dask array of CSR blocks of ``rows`` rows, y with the same chunks."""
    return (da.from_array(X, chunks=(rows, -1), asarray=False),
            da.from_array(np.asarray(y), chunks=rows))


def _within(seconds, func):
    """``func()`` in a thread, failing the test when it has not returned in ``seconds``
    (a fit inside a worker that deadlocks its thread would otherwise hang the run)."""
    out = {}

    def run():
        try:
            out["value"] = func()
        except Exception as e:  # noqa: BLE001 - re-raised below
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"did not finish in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


# --------------------------------------------------------------------------- Pipelines

#: certified to this relative duality gap: two fits of one problem have primal
#: values within TOL of each other (relative), and of LIBLINEAR's optimum.
TOL = 1e-3
C_PIPE = 0.05


@pytest.fixture(scope="module")
def rescaled_a9a(a9a):
    """a9a with column j multiplied by s_j in [0.5, 20] (fixed seed): MaxAbsScaler
    gives back the 0/1 matrix (up to rounding), so every fit below has the
    optimum of LIBLINEAR on a9a itself."""
    X, y = a9a
    s = np.random.default_rng(0).uniform(0.5, 20.0, size=X.shape[1])
    return (X @ sp.diags(s)).tocsr(), y


@pytest.fixture(scope="module")
def liblinear_a9a(a9a):
    """LIBLINEAR's primal value of the squared-hinge problem on a9a with C_PIPE."""
    X, y = a9a
    ref = LibLinear(C=C_PIPE, tol=1e-10, max_iter=100_000, dual=True).fit(X, y)
    return binary_primal(X, y, ref.coef_.ravel(), ref.intercept_[0], C_PIPE, "squared_hinge")


def _svc():
    return LinearSVC(C=C_PIPE, tol=TOL, random_state=0)


def test_sklearn_maxabsscaler_cannot_take_csr_blocks(rescaled_a9a):
    """Why the Pipeline failed: scikit-learn's transformers validate with
    ``numpy.asarray``, and a dask array of CSR blocks computes to one scipy
    matrix that numpy wraps as a 0-d object array."""
    X, y = rescaled_a9a
    Xd, _ = _csr_blocks(X[:200], y[:200], 100)
    assert np.asarray(Xd).shape == ()
    with pytest.raises(ValueError, match="Expected 2D array, got scalar array"):
        SkMaxAbsScaler().fit(Xd)


def test_maxabs_pipeline_on_csr_blocks_matches_numpy(rescaled_a9a, liblinear_a9a, thread_client):
    X, y = rescaled_a9a
    Xd, yd = _csr_blocks(X, y, 1000)
    with thread_client.as_current():
        pipe = make_pipeline(MaxAbsScaler(), _svc()).fit(Xd, yd)
        ref = make_pipeline(SkMaxAbsScaler(), _svc()).fit(X, y)
    np.testing.assert_allclose(pipe[0].scale_, ref[0].scale_, rtol=1e-15)
    Z = pipe[0].transform(Xd)
    assert Z.chunks == Xd.chunks and sp.issparse(Z.blocks[1].compute())
    for m in (pipe[-1], ref[-1]):
        assert m.converged_ and m.rel_gap_ <= TOL
    assert pipe[-1].primal_ == pytest.approx(ref[-1].primal_, rel=TOL)
    assert pipe[-1].primal_ == pytest.approx(liblinear_a9a, rel=TOL)
    pred = pipe.predict(Xd)
    assert isinstance(pred, da.Array)
    assert np.mean(pred.compute() == ref.predict(X)) > 0.99


def test_maxabs_rff_pipeline_on_csr_blocks_matches_numpy(rescaled_a9a, thread_client):
    """MaxAbsScaler -> RandomFourierFeatures -> LinearSVC: the random features of the
    same seed are the same on both sides, so both fits solve one problem."""
    X, y = rescaled_a9a
    Xd, yd = _csr_blocks(X, y, 1000)

    def rff():
        return RandomFourierFeatures(gamma=0.05, n_components=200, random_state=0)

    with thread_client.as_current():
        pipe = make_pipeline(MaxAbsScaler(), rff(), _svc()).fit(Xd, yd)
        ref = make_pipeline(SkMaxAbsScaler(), rff(), _svc()).fit(X, y)
    np.testing.assert_allclose(pipe[:2].transform(Xd).compute(), ref[:2].transform(X),
                               rtol=1e-12, atol=1e-12)
    for m in (pipe[-1], ref[-1]):
        assert m.converged_ and m.rel_gap_ <= TOL
    assert pipe[-1].primal_ == pytest.approx(ref[-1].primal_, rel=TOL)
    assert np.mean(pipe.predict(Xd).compute() == ref.predict(X)) > 0.98


@pytest.mark.parametrize("scalers", [
    pytest.param(("StandardScaler", SkStandardScaler), id="StandardScaler"),
    pytest.param(("MinMaxScaler", SkMinMaxScaler), id="MinMaxScaler"),
])
def test_dask_ml_scaler_pipeline_on_dense_blocks_matches_numpy(scalers, a9a, thread_client):
    """dask-ml's scalers take dense blocks only (on CSR blocks their fit fails inside
    dask); in front of LinearSVC they give the objective of scikit-learn's."""
    import dask_ml.preprocessing

    name, sk_scaler = scalers
    X, y = a9a[0][:1000].toarray(), a9a[1][:1000]
    Xd, yd = da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=500)
    C = 0.005
    with thread_client.as_current():
        pipe = make_pipeline(getattr(dask_ml.preprocessing, name)(),
                             LinearSVC(C=C, tol=TOL, random_state=0)).fit(Xd, yd)
        ref = make_pipeline(sk_scaler(), LinearSVC(C=C, tol=TOL, random_state=0)).fit(X, y)
    assert isinstance(pipe[0].transform(Xd), da.Array)
    for m in (pipe[-1], ref[-1]):
        assert m.converged_ and m.rel_gap_ <= TOL
    assert pipe[-1].primal_ == pytest.approx(ref[-1].primal_, rel=TOL)


# --------------------------------------------------------------------------- GridSearchCV


def _in_a_worker(record):
    """Fit callback: fails the fit unless it runs inside a task on a dask worker."""
    from distributed import get_worker

    get_worker()  # ValueError outside a worker


def _fit_linear(X, y):
    m = LinearSVC(C=0.1, tol=1e-2, random_state=0).fit(X, y)
    return m.coef_, [h["n_tasks"] for h in m.history_]


def test_a_fit_inside_a_worker_is_the_fit_from_the_client(a9a, process_client):
    """A fit run as a task (as dask-ml runs them) on in-memory data places its blocks
    on every worker, as a fit from the client does: the same rounds (one task per
    worker) and the same model. (``Client.scatter`` called inside a task keeps the
    data on the calling worker whatever ``workers=`` says.)"""
    X, y = a9a[0][:150], a9a[1][:150]
    with process_client.as_current():
        outside = LinearSVC(C=0.1, tol=1e-2, random_state=0).fit(X, y)
    coef, n_tasks = _within(
        120, lambda: process_client.submit(_fit_linear, X, y, pure=False).result())
    assert n_tasks == [h["n_tasks"] for h in outside.history_]
    np.testing.assert_allclose(coef, outside.coef_, rtol=0, atol=1e-12)


def _grid_cases():
    kw = {"tol": 1e-2, "random_state": 0}
    cases = [
        ("LinearSVC", LinearSVC(**kw), "C", [1e-3, 1e-2, 0.1], "a9a"),
        # WW's epochs cost most: its grid stops at 1e-2
        ("MulticlassSVC-ww", MulticlassSVC("ww", **kw), "C", [1e-3, 3e-3, 1e-2], "dna"),
        *[(f"MulticlassSVC-{m}", MulticlassSVC(m, **kw), "C", [1e-3, 1e-2, 0.1], "dna")
          for m in ("llw", "cs", "ovr")],
        ("CascadeSVC", CascadeSVC(tol=1e-3, random_state=0), "C", [1e-2, 1.0, 100.0], "a9a"),
        ("RFF-LinearSVC",
         make_pipeline(RandomFourierFeatures(gamma=0.05, n_components=100, random_state=0),
                       LinearSVC(**kw)),
         "linearsvc__C", [1e-3, 0.1, 1.0], "a9a"),
    ]
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


@pytest.mark.parametrize(("estimator", "param", "values", "data"), _grid_cases())
def test_dask_ml_grid_search_matches_sklearn(estimator, param, values, data, process_client,
                                             request):
    from dask_ml.model_selection import GridSearchCV

    X, y = request.getfixturevalue(data)
    n = 300 if data == "a9a" else X.shape[0]
    X, y = X[:n], y[:n]
    Xd, yd = _csr_blocks(X, y, n // 2)
    cv = StratifiedKFold(2)
    grid = {param: values}

    def with_callback(est):
        if param == "C" and "callback" in est.get_params():
            return est.set_params(callback=_in_a_worker)
        if param != "C":
            return est.set_params(linearsvc__callback=_in_a_worker)
        return est

    search = GridSearchCV(with_callback(clone(estimator)), grid, cv=cv, iid=False,
                          scheduler=process_client)

    def fit():
        with process_client.as_current():
            return search.fit(Xd, yd)

    _within(300, fit)
    with process_client.as_current():
        ref = SkGridSearchCV(estimator, grid, cv=cv, refit=False).fit(X, y)
    assert search.best_params_ == ref.best_params_
    # the same models on the same folds (up to rounding in the all-reduce): a
    # score may differ by one test row of one fold
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               ref.cv_results_["mean_test_score"], atol=1.0 / n + 1e-12)
    assert search.best_score_ > np.max(search.cv_results_["mean_test_score"]) - 1e-12
    best = search.best_estimator_
    assert best.get_params()[param] == ref.best_params_[param]
    assert np.all(np.isin(np.asarray(best.predict(X)), np.unique(y)))
    # every fit (and the refit) used its worker's client: no cluster was started there
    from dasksvm.parallel import client as client_module

    started = process_client.run(lambda: bool(client_module._EMBEDDED))
    assert not any(started.values()), started


# --------------------------------------------------------------------------- laziness

#: every computed block of the counted dask arrays appends here (the threaded
#: scheduler and the threaded cluster run the tasks in this process)
_COMPUTED = []


def _counted(block):
    _COMPUTED.append(block.shape[0])
    return block


def _counting(X, rows):
    """X as a dask array (CSR or dense blocks of ``rows`` rows) whose blocks record
    that they were computed."""
    base = da.from_array(X, chunks=(rows, -1), asarray=False)
    return base.map_blocks(_counted, dtype=X.dtype, meta=base._meta)


def _lazy_cases():
    kw = {"C": 0.01, "tol": 1e-2, "random_state": 0}
    return [
        pytest.param(LinearSVC(**kw), "a9a", id="LinearSVC-cocoa"),
        pytest.param(LinearSVC(solver="sgd", max_iter=50, **kw), "a9a", id="LinearSVC-sgd"),
        pytest.param(LinearSVC(solver="newton", **kw), "a9a", id="LinearSVC-newton"),
        *[pytest.param(MulticlassSVC(m, **kw), "dna", id=f"MulticlassSVC-{m}")
          for m in ("ww", "llw", "cs", "ovr")],
        pytest.param(MulticlassSVC("ovr", **kw), "a9a", id="MulticlassSVC-ovr-binary"),
        pytest.param(CascadeSVC(), "a9a", id="CascadeSVC-binary"),
        pytest.param(CascadeSVC(), "dna", id="CascadeSVC-ovr"),
        pytest.param(CascadeSVC(decision_function_shape="ovo"), "dna", id="CascadeSVC-ovo"),
        pytest.param(make_pipeline(MaxAbsScaler(), Nystroem(n_components=30, random_state=0),
                                   LinearSVC(**kw)), "a9a", id="Pipeline"),
    ]


@pytest.mark.filterwarnings("ignore::dasksvm.ConvergenceWarning")
@pytest.mark.parametrize(("estimator", "data"), _lazy_cases())
def test_predict_decision_function_score_are_lazy(estimator, data, thread_client, request):
    X, y = request.getfixturevalue(data)
    X, y = X[:200], y[:200]
    with thread_client.as_current():
        estimator.fit(X, y)
    Xd = _counting(X, 50)
    yd = da.from_array(y, chunks=50)
    w = np.linspace(0.5, 2.0, X.shape[0])
    _COMPUTED.clear()
    pred, dec = estimator.predict(Xd), estimator.decision_function(Xd)
    scores = [estimator.score(Xd, yd), estimator.score(Xd, y), estimator.score(Xd, yd, w),
              estimator.score(X, yd)]
    assert _COMPUTED == [], "a block of X was computed before .compute()"
    assert isinstance(pred, da.Array) and pred.chunks[0] == Xd.chunks[0]
    assert isinstance(dec, da.Array) and dec.chunks[0] == Xd.chunks[0]
    assert all(isinstance(s, da.Array) and s.shape == () for s in scores)
    got_pred, got_dec, *got_scores = dask.compute(pred, dec, *scores, scheduler="threads")
    assert _COMPUTED, "the counted blocks were not computed"
    np.testing.assert_array_equal(got_pred, estimator.predict(X))
    np.testing.assert_allclose(got_dec, estimator.decision_function(X), rtol=1e-12, atol=1e-12)
    plain, weighted = estimator.score(X, y), estimator.score(X, y, sample_weight=w)
    assert isinstance(plain, float)
    np.testing.assert_allclose(got_scores, [plain, plain, weighted, plain], rtol=1e-12)


@pytest.mark.parametrize("transformer", [
    RandomFourierFeatures(n_components=20, random_state=0),
    OrthogonalRandomFeatures(n_components=20, random_state=0),
    Nystroem(n_components=20, random_state=0),
    MaxAbsScaler(),
], ids=lambda t: type(t).__name__)
def test_transform_is_lazy(transformer, a9a):
    X = a9a[0][:200]
    transformer.fit(X)
    Xd = _counting(X, 50)
    _COMPUTED.clear()
    Z = transformer.transform(Xd)
    assert _COMPUTED == [] and isinstance(Z, da.Array) and Z.chunks[0] == Xd.chunks[0]
    got = Z.compute(scheduler="threads")
    assert len(_COMPUTED) == Xd.numblocks[0]
    want = transformer.transform(X)
    if sp.issparse(want):
        assert sp.issparse(got)
        got, want = got.toarray(), want.toarray()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
