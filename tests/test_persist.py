"""Model files: every estimator class predicts bit for bit after save / load, on numpy and
dask input; crafted files (tampered, foreign, truncated, newer, off the allow-list, pickled
objects, malformed metadata) are refused with a ValueError and run no code."""

import hashlib
import io
import json
import lzma
import os
import zipfile

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler

import dasksvm
from dasksvm import load_model, save_model
from dasksvm.parallel.checkpoint import write_checkpoint
from dasksvm.persist import FORMAT_VERSION, MODEL_KIND

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data(data_dir):
    """Small real sets: a9a (binary, CSR) and dna (3 classes, CSR and dense)."""
    def head(name, n, d):
        with lzma.open(data_dir / name) as f:
            text = b"".join(f.readline() for _ in range(n))
        X, y = load_svmlight_file(io.BytesIO(text), n_features=d)
        X = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)),
                          shape=X.shape)  # int32 indices, as scikit-learn's estimators want
        return X, y

    Xa, ya = head("a9a.xz", 300, 123)
    Xd, yd = head("dna.scale.xz", 240, 180)
    return {"a9a": (Xa, ya), "dna": (Xd, yd), "dna_dense": (Xd.toarray(), yd)}


def _fit(kind, data, client):
    """(fitted estimator, X to predict / transform) for every kind a model file holds."""
    fast = {"tol": 0.05, "max_iter": 20, "client": client, "random_state": 0}
    Xa, ya = data["a9a"]
    Xd, yd = data["dna"]
    Xdd, _ = data["dna_dense"]
    if kind == "linear":
        return dasksvm.LinearSVC(C=0.1, loss="hinge", **fast).fit(Xa, ya), Xa
    if kind == "linear-dask-fit":
        dX = da.from_array(Xa, chunks=(100, Xa.shape[1]), asarray=False)
        est = dasksvm.LinearSVC(C=0.1, class_weight="balanced", **fast)
        return est.fit(dX, da.from_array(ya, chunks=100)), Xa
    if kind.startswith("multiclass-"):
        weights = {1.0: 2.0, 3.0: 0.5}
        return dasksvm.MulticlassSVC(kind.split("-")[1], C=0.1, class_weight=weights,
                                     **{**fast, "max_iter": 3}).fit(Xd, yd), Xd
    if kind == "cascade-dense":
        return dasksvm.CascadeSVC(C=1.0, gamma=0.01, client=client).fit(Xdd, yd), Xdd
    if kind == "cascade-sparse":
        return dasksvm.CascadeSVC(kernel="poly", degree=2, gamma=0.05, client=client,
                                  decision_function_shape="ovo").fit(Xa[:200], ya[:200]), Xa
    if kind == "rff":
        return dasksvm.RandomFourierFeatures(gamma=0.05, n_components=30,
                                             random_state=1).fit(Xa), Xa
    if kind == "orf-float32":
        return dasksvm.OrthogonalRandomFeatures(n_components=50, random_state=2,
                                                dtype=np.float32).fit(Xdd), Xdd
    if kind == "nystroem-sparse":
        return dasksvm.Nystroem(n_components=25, random_state=3).fit(Xd), Xd
    if kind == "nystroem-dense-poly":
        return dasksvm.Nystroem(kernel="poly", degree=2, n_components=25,
                                random_state=3).fit(Xdd), Xdd
    if kind == "pipeline-standard-rff-linear":
        pipe = Pipeline([("scale", StandardScaler()),
                         ("rff", dasksvm.RandomFourierFeatures(gamma=0.005, n_components=40,
                                                               random_state=0)),
                         ("svm", dasksvm.MulticlassSVC("ovr", **fast))])
        return pipe.fit(Xdd, yd), Xdd
    if kind == "pipeline-maxabs-nystroem-cs":
        pipe = Pipeline([("scale", MaxAbsScaler()),
                         ("ny", dasksvm.Nystroem(n_components=30, random_state=0)),
                         ("svm", dasksvm.MulticlassSVC("cs", **fast))])
        return pipe.fit(Xd, yd), Xd
    if kind == "dasksvm-maxabs":
        return dasksvm.MaxAbsScaler().fit(Xdd), Xdd
    if kind == "pipeline-dasksvm-maxabs-linear":
        pipe = Pipeline([("scale", dasksvm.MaxAbsScaler()),
                         ("svm", dasksvm.LinearSVC(C=0.1, **fast))])
        return pipe.fit(Xa, ya), Xa
    raise AssertionError(kind)


KINDS = ["linear", "linear-dask-fit", "multiclass-ww", "multiclass-llw", "multiclass-cs",
         "multiclass-ovr", "cascade-dense", "cascade-sparse", "rff", "orf-float32",
         "nystroem-sparse", "nystroem-dense-poly", "pipeline-standard-rff-linear",
         "pipeline-maxabs-nystroem-cs", "dasksvm-maxabs", "pipeline-dasksvm-maxabs-linear"]


def _computed(est, X):
    """Everything the estimator computes from X, as numpy arrays."""
    out = {}
    for method in ("predict", "decision_function", "transform"):
        if hasattr(est, method):
            v = getattr(est, method)(X)
            out[method] = np.asarray(v.compute() if hasattr(v, "compute") else v)
    return out


def _final(est):
    return est.steps[-1][1] if isinstance(est, Pipeline) else est


@pytest.mark.parametrize("kind", KINDS)
def test_a_loaded_model_computes_exactly_what_the_saved_one_did(kind, data, thread_client,
                                                                tmp_path):
    est, X = _fit(kind, data, thread_client)
    path = tmp_path / "model.dsvm"
    save_model(est, path)
    got = load_model(path)
    assert type(got) is type(est)
    # scikit-learn pipelines read no dask arrays: they are checked on in-memory input only
    dask_ready = not isinstance(est, Pipeline)
    inputs = [X] + [da.from_array(X, chunks=(70, X.shape[1]), asarray=False)] * dask_ready
    for Xin in inputs:
        want, have = _computed(est, Xin), _computed(got, Xin)
        assert want and want.keys() == have.keys()
        for method, w in want.items():
            assert have[method].dtype == w.dtype, method
            np.testing.assert_array_equal(have[method], w, err_msg=method)
    # the parameters come back, client and callback dropped
    drop = ("client", "callback", "steps")
    want = {k: v for k, v in est.get_params(deep=False).items() if k not in drop}
    have = {k: v for k, v in got.get_params(deep=False).items() if k not in drop}
    assert have == want
    if isinstance(est, Pipeline):
        assert [n for n, _ in got.steps] == [n for n, _ in est.steps]
        for (_, a), (_, b) in zip(est.steps, got.steps, strict=True):
            assert type(a) is type(b) and b.get_params(deep=False).keys() == \
                a.get_params(deep=False).keys()
    final, orig = _final(got), _final(est)
    if hasattr(orig, "history_"):
        assert final.client is None
        assert json.dumps(final.history_, sort_keys=True) == json.dumps(
            orig.history_, sort_keys=True, default=lambda v: np.asarray(v).tolist())


def test_a_pipeline_of_dasksvm_maxabsscaler_and_linearsvc_round_trips_on_dask_input(
        data, thread_client, tmp_path):
    """dasksvm's MaxAbsScaler is on the allow-list under its own name (not scikit-learn's
    class of the same name); the pipeline fitted and predicting on dask CSR blocks."""
    X, y = data["a9a"]
    dX = da.from_array(X, chunks=(100, X.shape[1]), asarray=False)
    dy = da.from_array(y, chunks=100)
    pipe = Pipeline([("scale", dasksvm.MaxAbsScaler()),
                     ("svm", dasksvm.LinearSVC(C=0.1, tol=0.05, max_iter=20, random_state=0,
                                               client=thread_client))]).fit(dX, dy)
    save_model(pipe, tmp_path / "pipe.dsvm")
    steps = _read(tmp_path / "pipe.dsvm")["meta"]["estimator"]["steps"]
    assert [s[1]["class"] for s in steps] == ["dasksvm.MaxAbsScaler", "LinearSVC"]
    got = load_model(tmp_path / "pipe.dsvm")
    assert type(got.steps[0][1]) is dasksvm.MaxAbsScaler
    np.testing.assert_array_equal(got.steps[0][1].scale_, pipe.steps[0][1].scale_)
    for Xin in (X, dX):
        want, have = pipe.decision_function(Xin), got.decision_function(Xin)
        if hasattr(want, "compute"):
            want, have = want.compute(), have.compute()
        np.testing.assert_array_equal(have, want)
    # scikit-learn's MaxAbsScaler keeps its own name, and the two are not confused
    body = _read(tmp_path / "pipe.dsvm")
    body["meta"]["estimator"]["steps"][0][1]["class"] = "MaxAbsScaler"
    _rewrite(tmp_path / "pipe.dsvm", tmp_path / "sk.dsvm", body=_reseal(body))
    assert type(load_model(tmp_path / "sk.dsvm").steps[0][1]) is MaxAbsScaler


def test_the_warm_start_state_is_not_saved(data, thread_client, tmp_path):
    X, y = data["a9a"]
    est = dasksvm.LinearSVC(C=0.1, tol=0.05, max_iter=20, random_state=0, warm_start=True,
                            client=thread_client).fit(X, y)
    assert hasattr(est, "_warm_state")
    save_model(est, tmp_path / "m")
    body = _read(tmp_path / "m")
    assert "_warm_state" not in body["meta"]["estimator"]["attributes"]
    got = load_model(tmp_path / "m")
    assert got.warm_start is True and not hasattr(got, "_warm_state")
    np.testing.assert_array_equal(got.coef_, est.coef_)
    # a file that brings one is refused
    body["meta"]["estimator"]["attributes"]["_warm_state"] = {"seed": 0}
    _rewrite(tmp_path / "m", tmp_path / "bad", body=_reseal(body))
    with pytest.raises(ValueError, match="'_warm_state' is not a name a fitted attribute"):
        load_model(tmp_path / "bad")


def test_string_labels_and_a_random_state_object(data, thread_client, tmp_path):
    X, y = data["a9a"]
    labels = np.where(y > 0, "rich", "poor").astype(object)
    est = dasksvm.LinearSVC(C=0.1, tol=0.05, client=thread_client,
                            random_state=np.random.RandomState(0)).fit(X, labels)
    save_model(est, tmp_path / "m")
    got = load_model(tmp_path / "m")
    assert got.classes_.dtype == object and got.classes_.tolist() == ["poor", "rich"]
    np.testing.assert_array_equal(got.predict(X), est.predict(X))
    assert got.random_state is None  # not JSON: stored as None, and said so
    assert _read(tmp_path / "m")["meta"]["estimator"]["dropped"] == ["random_state"]
    est.set_params(checkpoint=tmp_path / "fit.ckpt")  # a path object is kept as its text
    save_model(est, tmp_path / "m")
    assert load_model(tmp_path / "m").checkpoint == str(tmp_path / "fit.ckpt")


def test_what_cannot_be_saved_is_refused(data, thread_client, tmp_path):
    from sklearn.svm import LinearSVC as SkLinearSVC

    X, y = data["a9a"]
    m = tmp_path / "m"
    with pytest.raises(ValueError, match="sklearn.svm._classes.LinearSVC is not an estimator "
                                         "a model file may hold"):
        save_model(SkLinearSVC().fit(X, y), m)
    with pytest.raises(ValueError, match="MaxAbsScaler is not an estimator a model file"):
        save_model(MaxAbsScaler().fit(X), m)  # a scaler only as a pipeline step
    with pytest.raises(ValueError, match="step 'svm'.*SVC is not an estimator a pipeline step"):
        from sklearn.svm import SVC

        save_model(Pipeline([("scale", MaxAbsScaler()), ("svm", SVC())]).fit(X, y), m)
    with pytest.raises(ValueError, match="LinearSVC is not fitted; fit it first"):
        save_model(dasksvm.LinearSVC(), m)
    est = dasksvm.LinearSVC(C=0.1, tol=0.05, max_iter=20, client=thread_client).fit(X, y)
    est.classes_ = np.array([object(), object()], dtype=object)
    with pytest.raises(ValueError, match="LinearSVC.classes_: an object array that is not all "
                                         "strings"):
        save_model(est, m)
    est.classes_ = np.array([-1.0, 1.0])
    est.set_params(checkpoint=lambda: None)
    with pytest.raises(ValueError, match="LinearSVC parameter checkpoint: a function is not"):
        save_model(est, m)
    assert not m.exists()


# --------------------------------------------------------------------------- crafted files


def _read(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("meta.json"))


def _rewrite(src, dst, *, body=None, members=None):
    """Copy the zip ``src`` to ``dst`` with meta.json replaced by ``body`` and the members
    in ``members`` (name -> bytes) replaced or added."""
    members = dict(members or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            raw = zin.read(name)
            if name == "meta.json" and body is not None:
                raw = json.dumps(body).encode()
            zout.writestr(name, members.pop(name, raw))
        for name, raw in members.items():
            zout.writestr(name, raw)


def _reseal(body):
    """Recompute the estimator record's SHA-256, as a forger would."""
    tree = body["meta"]["estimator"]
    body["meta"]["estimator_sha256"] = hashlib.sha256(
        json.dumps(tree, sort_keys=True).encode()).hexdigest()
    return body


@pytest.fixture(scope="module")
def saved(data, thread_client, tmp_path_factory):
    X, y = data["a9a"]
    est = dasksvm.LinearSVC(C=0.1, tol=0.05, client=thread_client, random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("persist") / "good.dsvm"
    save_model(est, path)
    return path


class _Exploit:
    """Unpickles as a call to os.system (what a pickle-reading loader would run)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_file_layout(saved):
    body = _read(saved)
    assert body["format"] == "dasksvm-checkpoint-1"
    meta = body["meta"]
    assert meta["kind"] == MODEL_KIND == "dasksvm-model"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["dasksvm_version"] == dasksvm.__version__
    tree = meta["estimator"]
    assert tree["class"] == "LinearSVC" and "client" not in tree["params"]
    assert tree["params"]["C"] == 0.1
    assert set(tree["attributes"]["coef_"]) == {"$array"}
    assert isinstance(tree["attributes"]["history_"], list)  # plain JSON
    with zipfile.ZipFile(saved) as zf:
        assert all(n == "meta.json" or n.endswith(".npy") for n in zf.namelist())


def test_a_tampered_array_or_record_fails_its_checksum(saved, tmp_path):
    body = _read(saved)
    name = min(body["sha256"]) + ".npy"
    with zipfile.ZipFile(saved) as zf:
        raw = bytearray(zf.read(name))
    raw[-1] ^= 0x01
    bad = tmp_path / "bad.dsvm"
    _rewrite(saved, bad, members={name: bytes(raw)})
    with pytest.raises(ValueError, match=f"cannot load model '{bad}'.*does not match its "
                                         "SHA-256"):
        load_model(bad)
    body["meta"]["estimator"]["params"]["C"] = 1000.0
    _rewrite(saved, bad, body=body)
    with pytest.raises(ValueError, match="estimator record does not match its SHA-256"):
        load_model(bad)


def test_foreign_truncated_missing_and_checkpoint_files(saved, tmp_path):
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="has no meta.json"):
        load_model(foreign)
    raw = saved.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30):
        (tmp_path / "cut.dsvm").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated or corrupted"):
            load_model(tmp_path / "cut.dsvm")
    (tmp_path / "text.dsvm").write_text("+1 1:0.5\n")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_model(tmp_path / "text.dsvm")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.dsvm")
    write_checkpoint(tmp_path / "fit.ckpt", {"w": np.zeros(3)}, {"round": 3, "solver": "cocoa"})
    with pytest.raises(ValueError, match="is not a dasksvm model file"):
        load_model(tmp_path / "fit.ckpt")


def test_a_class_off_the_allow_list_runs_nothing(saved, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    bad = tmp_path / "bad.dsvm"
    for name in ("os.system", "system", "posix.system", "builtins.eval", "SVC",
                 "sklearn.svm.SVC", "StandardScaler", None, ["LinearSVC"]):
        body = _read(saved)
        body["meta"]["estimator"]["class"] = name
        body["meta"]["estimator"]["params"] = {"command": f"touch {tmp_path / 'pwned'}"}
        _rewrite(saved, bad, body=_reseal(body))
        with pytest.raises(ValueError, match=r"names class .*, which is not an estimator "
                                             r"dasksvm loads \(allowed: LinearSVC, "):
            load_model(bad)
    assert calls == [] and not (tmp_path / "pwned").exists()


def test_an_object_array_is_not_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.save(buf, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    raw = buf.getvalue()
    body = _read(saved)
    name = min(body["sha256"])
    body["sha256"][name] = hashlib.sha256(raw).hexdigest()  # consistent: a forged file
    bad = tmp_path / "bad.dsvm"
    _rewrite(saved, bad, body=body, members={f"{name}.npy": raw})
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_model(bad)
    assert not marker.exists()


def test_a_newer_or_invalid_format_version_is_refused(saved, tmp_path):
    bad = tmp_path / "new.dsvm"
    body = _read(saved)
    body["meta"]["format_version"] = FORMAT_VERSION + 1
    body["meta"]["dasksvm_version"] = "9.0"
    _rewrite(saved, bad, body=body)
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}, newer than "
                                         r"this dasksvm \(.*\) reads \(up to 1\); it was "
                                         "written by dasksvm '9.0': upgrade dasksvm"):
        load_model(bad)
    for version in ("1", 0, None, True):
        body["meta"]["format_version"] = version
        _rewrite(saved, bad, body=body)
        with pytest.raises(ValueError, match="invalid format version"):
            load_model(bad)
    body = _read(saved)
    body["meta"]["kind"] = "something-else"
    _rewrite(saved, bad, body=body)
    with pytest.raises(ValueError, match="is not a dasksvm model file"):
        load_model(bad)


def _set_attr(name, value):
    def change(tree):
        tree["attributes"][name] = value
    return change


def _set_param(name, value):
    def change(tree):
        tree["params"][name] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set_param("command", "x"), r"holds no parameter\(s\) \['command'\]"),
    (_set_param("client", "tcp://evil:1"), r"holds no parameter\(s\) \['client'\]"),
    (_set_param("callback", "os.system"), r"holds no parameter\(s\) \['callback'\]"),
    (_set_attr("__class__", "x"), "'__class__' is not a name a fitted attribute"),
    (_set_attr("predict", "x"), "'predict' is not a name a fitted attribute"),
    (_set_attr("C", 5.0), "'C' is not a name a fitted attribute"),
    (_set_attr("a b", 1), "'a b' is not a name a fitted attribute"),
    (_set_attr("coef_", {"$array": "a99"}), "refers to array 'a99', which the file does not"),
    (_set_attr("coef_", {"$pickle": "gASV"}), "unknown or malformed value tag '\\$pickle'"),
    (_set_attr("coef_", {"$dtype": "O"}), "unknown or malformed value tag '\\$dtype'"),
    (_set_attr("coef_", {"$csr": {"format": "csr_matrix", "shape": [1, 2],
                                  "data": {"$array": "a0"}, "indices": {"$array": "a0"},
                                  "indptr": {"$array": "a0"}}}), "not a valid CSR matrix"),
    (_set_attr("coef_", {"$csr": {"format": "bsr_matrix", "shape": [1, 2]}}),
     "malformed sparse matrix"),
    (_set_attr("coef_", {"$dict": [[1]]}), "malformed dict entry"),
    (lambda tree: tree.update(steps=[["svm", dict(tree)]]),
     r"unexpected record key\(s\) \['steps'\]"),
    (lambda tree: tree.update(params=[1]), "has no parameter record"),
    (lambda tree: tree.update(attributes={}), "has no fitted attributes"),
])
def test_malformed_records_are_refused(saved, tmp_path, change, message):
    body = _read(saved)
    change(body["meta"]["estimator"])
    bad = tmp_path / "bad.dsvm"
    _rewrite(saved, bad, body=_reseal(body))
    with pytest.raises(ValueError, match=message):
        load_model(bad)


def test_malformed_pipelines_are_refused(data, thread_client, tmp_path):
    X, y = data["a9a"]
    pipe = Pipeline([("scale", MaxAbsScaler()),
                     ("svm", dasksvm.LinearSVC(C=0.1, tol=0.05, max_iter=20, client=thread_client))]).fit(X, y)
    path = tmp_path / "pipe.dsvm"
    save_model(pipe, path)
    np.testing.assert_array_equal(load_model(path).predict(X), pipe.predict(X))
    bad = tmp_path / "bad.dsvm"
    for change, message in [
        (lambda t: t.update(steps=[]), "the pipeline's steps are malformed"),
        (lambda t: t.update(steps=[["s", 1]]), "not an estimator record"),
        (lambda t: t["steps"].append(["inner", json.loads(json.dumps(t))]),
         "a Pipeline inside a Pipeline|names class 'Pipeline'"),
        (lambda t: t["params"].update(steps=[]), r"holds no parameter\(s\) \['steps'\]"),
    ]:
        body = _read(path)
        change(body["meta"]["estimator"])
        _rewrite(path, bad, body=_reseal(body))
        with pytest.raises(ValueError, match=message):
            load_model(bad)


def test_a_meta_json_of_the_wrong_shape_is_a_value_error(saved, tmp_path):
    bad = tmp_path / "bad.dsvm"
    for body in ({"format": "dasksvm-checkpoint-1", "sha256": 5, "meta": {}},
                 {"format": "dasksvm-checkpoint-1", "sha256": [], "meta": {}},
                 {"format": "dasksvm-checkpoint-1", "sha256": {}}, [1, 2], "text"):
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("meta.json", json.dumps(body))
        with pytest.raises(ValueError):
            load_model(bad)


def test_sparse_attributes_round_trip_as_csr(data, tmp_path):
    X, _ = data["dna"]
    ny = dasksvm.Nystroem(n_components=10, random_state=0).fit(sp.csr_array(X))
    save_model(ny, tmp_path / "m")
    got = load_model(tmp_path / "m")
    assert type(got.components_) is type(ny.components_)
    assert (got.components_ != ny.components_).nnz == 0
