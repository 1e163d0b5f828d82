"""The ``dasksvm`` command: train -> predict -> evaluate against the Python API, the
options' checks (exit 2 before any cluster), failures (exit 1, one line), progress lines,
datasets, bench, TLS, and one real run of the console script."""

import argparse
import gzip
import lzma
import re
import socket
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

import dasksvm
from dasksvm import cli
from dasksvm.cli import main
from dasksvm.datasets import load_svmlight
from dasksvm.exceptions import ConvergenceWarning


def _head(src, n, skip=0):
    with lzma.open(src, "rt") as f:
        lines = f.readlines()
    return "".join(lines[skip:skip + n])


@pytest.fixture(scope="module")
def files(data_dir, tmp_path_factory):
    """Small subsets of the real data: a9a (binary; two training files, one gzipped, named
    by a glob; an xz test file) and dna (3 classes)."""
    d = tmp_path_factory.mktemp("cli-data")
    (d / "a9a-part1.svm").write_text(_head(data_dir / "a9a.xz", 800))
    with gzip.open(d / "a9a-part2.svm.gz", "wt") as f:
        f.write(_head(data_dir / "a9a.xz", 700, skip=800))
    with lzma.open(d / "a9a-test.svm.xz", "wt") as f:
        f.write(_head(data_dir / "a9a.t.xz", 600))
    (d / "dna.svm").write_text(_head(data_dir / "dna.scale.xz", 600))
    (d / "dna-test.svm").write_text(_head(data_dir / "dna.scale.t.xz", 400))
    (d / "bad.svm").write_text("+1 1:0.5 3:1\n-1 4:1 2:0.5\n")
    return {
        "dir": d,
        "a9a": str(d / "a9a-part*"),
        "a9a_files": [str(d / "a9a-part1.svm"), str(d / "a9a-part2.svm.gz")],
        "a9a_test": str(d / "a9a-test.svm.xz"),
        "dna": str(d / "dna.svm"),
        "dna_test": str(d / "dna-test.svm"),
        "bad": str(d / "bad.svm"),
    }


@pytest.fixture(scope="module")
def addr(process_client):
    return process_client.scheduler.address


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def summary(out):
    [line] = [ln for ln in out.splitlines() if "model saved to" in ln or "not saved" in ln]
    return line


def progress_rounds(out, unit="round"):
    return [int(m.group(1)) for m in re.finditer(rf"^{unit}\s+(\d+)\s+\S+ ", out, re.MULTILINE)]


def accuracy(est, X, y):
    pred, truth = dask.compute(est.predict(X), y)
    return float(np.mean(np.asarray(pred) == np.asarray(truth)))


def certified_close(p1, p2, tol):
    """Both fits certify P - P* <= tol |P|, so their objectives differ by at most that."""
    return abs(p1 - p2) <= tol * max(abs(p1), abs(p2))


# --------------------------------------------------------------------------- round trips


def test_binary_train_predict_evaluate_match_the_python_api(files, addr, process_client,
                                                            tmp_path, capsys):
    model = tmp_path / "a9a.model"
    rc, out, err = run(capsys, "train", files["a9a"], "--test", files["a9a_test"], "-C", "0.1",
                       "--tol", "1e-2", "--scheduler", addr, "--out", model,
                       "--progress-every", "5")
    assert rc == 0, err
    assert err == ""
    assert "1500 rows x " in out and "2 classes" in out
    est = dasksvm.load_model(model)
    assert type(est) is dasksvm.LinearSVC and est.client is None and est.callback is None
    assert est.get_params()["C"] == 0.1 and est.converged_
    # non-TTY progress: the first round, every 5th, and the last, one line each
    rounds = [r["round"] for r in est.history_]
    shown = progress_rounds(out)
    assert shown == sorted({rounds[0], *[r for r in rounds if r % 5 == 0], rounds[-1]})
    line = summary(out)
    assert line.startswith(f"converged in {est.n_iter_} rounds: rel_gap ")
    assert f"model saved to {model}" in line

    X, y = load_svmlight(files["a9a_files"], n_features=est.n_features_in_)
    Xt, yt = load_svmlight(files["a9a_test"], n_features=est.n_features_in_)
    ref = dasksvm.LinearSVC(C=0.1, tol=1e-2, random_state=0, client=process_client).fit(X, y)
    assert certified_close(est.primal_, ref.primal_, 1e-2)
    acc = float(re.search(r"test accuracy (\S+)", line).group(1))
    assert acc == round(accuracy(est, Xt, yt), 4)
    assert abs(acc - accuracy(ref, Xt, yt)) <= 0.01

    labels = tmp_path / "labels.txt"
    rc, out, err = run(capsys, "predict", model, files["a9a_test"], "--out", labels)
    assert rc == 0 and err == ""
    want = est.predict(Xt).compute()
    assert labels.read_text().split("\n")[:-1] == [str(int(v)) for v in want]
    assert set(labels.read_text().split()) <= {"-1", "1"}

    rc, out, err = run(capsys, "predict", model, files["a9a_test"], "--out", labels,
                       "--decision")
    assert rc == 0
    head, *rows = labels.read_text().splitlines()
    assert head == "# label decision (> 0: 1, else -1)"
    dec = np.array([float(r.split()[1]) for r in rows])
    np.testing.assert_allclose(dec, est.decision_function(Xt).compute(), rtol=1e-9, atol=1e-12)
    assert [r.split()[0] for r in rows] == [str(int(v)) for v in want]

    rc, out, err = run(capsys, "evaluate", model, files["a9a_test"])
    assert rc == 0 and err == ""
    assert out.startswith(f"accuracy {acc:.4f} ")
    cm = confusion_matrix(yt.compute(), want, labels=[-1.0, 1.0])
    table = out.split("columns: predicted class)\n")[1].splitlines()
    assert [ln.split() for ln in table] == [["-1", "1"], ["-1", *map(str, cm[0])],
                                            ["1", *map(str, cm[1])]]


def test_multiclass_auto_is_ovr_and_evaluate_reports_every_class(files, addr, process_client,
                                                                tmp_path, capsys):
    model = tmp_path / "dna.model"
    rc, out, err = run(capsys, "train", files["dna"], "--test", files["dna_test"], "-C", "0.03",
                       "--tol", "0.02", "--scheduler", addr, "--out", model,
                       "--progress", "none")
    assert rc == 0, err
    assert progress_rounds(out) == []  # --progress none
    est = dasksvm.load_model(model)
    assert type(est) is dasksvm.MulticlassSVC and est.multi_class == "ovr"
    assert "model: MulticlassSVC('ovr', C=0.03, tol=0.02, random_state=0)" in out
    assert summary(out).startswith(f"converged in {est.n_iter_} rounds: max_class_rel_gap ")

    X, y = load_svmlight(files["dna"], n_features=est.n_features_in_)
    Xt, yt = load_svmlight(files["dna_test"], n_features=est.n_features_in_)
    ref = dasksvm.MulticlassSVC("ovr", C=0.03, tol=0.02, random_state=0,
                                client=process_client).fit(X, y)
    assert certified_close(est.primal_, ref.primal_, 0.02)
    assert abs(accuracy(est, Xt, yt) - accuracy(ref, Xt, yt)) <= 0.02

    rc, out, err = run(capsys, "evaluate", model, files["dna_test"])
    assert rc == 0
    pred, truth = est.predict(Xt).compute(), yt.compute()
    p, r, f1, s = precision_recall_fscore_support(truth, pred, labels=[1.0, 2.0, 3.0],
                                                  zero_division=0)
    for k, name in enumerate(("1", "2", "3")):
        [row] = [ln.split() for ln in out.splitlines() if ln.split()[:1] == [name]
                 and len(ln.split()) == 5]
        np.testing.assert_allclose([float(v) for v in row[1:]], [p[k], r[k], f1[k], s[k]],
                                   atol=5e-5)
    cm = confusion_matrix(truth, pred, labels=[1.0, 2.0, 3.0])
    table = out.split("columns: predicted class)\n")[1].splitlines()[1:]
    assert [[int(v) for v in ln.split()[1:]] for ln in table] == cm.tolist()


def test_features_pipeline_and_cascade_models(files, addr, process_client, tmp_path, capsys):
    model = tmp_path / "nys.model"
    rc, out, err = run(capsys, "train", files["a9a"], "--features", "nystroem:40",
                       "--gamma", "auto", "--tol", "0.05", "--scheduler", addr, "--out", model,
                       "--progress", "none")
    assert rc == 0, err
    pipe = dasksvm.load_model(model)
    ny, svm = pipe.named_steps["features"], pipe.named_steps["svm"]
    assert type(ny) is dasksvm.Nystroem and type(svm) is dasksvm.LinearSVC
    assert ny.n_components == 40 and ny.gamma == 1.0 / ny.n_features_in_ and svm.tol == 0.05
    labels = tmp_path / "labels.txt"
    assert run(capsys, "predict", model, files["a9a_test"], "--out", labels)[0] == 0
    Xt, _ = load_svmlight(files["a9a_test"], n_features=ny.n_features_in_)
    assert labels.read_text().split() == [str(int(v)) for v in pipe.predict(Xt).compute()]

    # the Cascade SVM has no callback: its lines come from the engine's events and history
    model = tmp_path / "cascade.model"
    rc, out, err = run(capsys, "train", files["dna"], "--model", "cascade", "--gamma", "0.01",
                       "--scheduler", addr, "--out", model, "--progress-every", "1")
    assert rc == 0, err
    est = dasksvm.load_model(model)
    assert type(est) is dasksvm.CascadeSVC and est.gamma == 0.01
    assert progress_rounds(out, "pass") == [r["round"] for r in est.history_]
    assert summary(out).startswith(f"converged in {est.n_iter_} passes: kkt_gap ")
    X, y = load_svmlight(files["dna"], n_features=est.n_features_in_)
    ref = dasksvm.CascadeSVC(gamma=0.01, client=process_client).fit(X, y)
    assert abs(est.dual_ - ref.dual_) <= 1e-3 * abs(ref.dual_)


def test_max_iter_stop_is_said_in_the_summary_not_as_a_warning(files, addr, tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, err = run(capsys, "train", files["a9a"], "--max-iter", "2", "--scheduler",
                           addr, "--out", tmp_path / "m", "--progress-every", "1")
    assert rc == 0 and err == ""
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert progress_rounds(out) == [0, 1, 2]
    assert summary(out).startswith("NOT converged: --max-iter 2 stopped it after 2 rounds at "
                                   "rel_gap ")
    assert "(raise --max-iter)" in summary(out)


def test_tls_scheduler(files, tmp_path, capsys):
    from distributed import LocalCluster, Security

    sec = Security.temporary()
    pem = {}
    for name, text in (("ca", sec.tls_ca_file), ("cert", sec.tls_client_cert),
                       ("key", sec.tls_client_key)):
        pem[name] = tmp_path / f"{name}.pem"
        pem[name].write_text(text)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tls://",
                      host="127.0.0.1", security=sec, dashboard_address="127.0.0.1:0",
                      silence_logs=40) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        rc, out, err = run(capsys, "train", files["a9a"], "--tol", "0.05", "--scheduler",
                           address, "--tls-ca-file", pem["ca"], "--tls-cert", pem["cert"],
                           "--tls-key", pem["key"], "--out", tmp_path / "m")
        assert rc == 0, err
        assert "cluster: 1 workers, 2 threads" in out
        rc, out, err = run(capsys, "train", files["a9a"], "--scheduler", address, "--out",
                           tmp_path / "m")
        assert rc == 2 and "a tls:// scheduler needs --tls-ca-file" in err


def test_progress_bar_position_is_the_log_gap_toward_tol(capsys):
    bar = cli.Progress("bar", tol=1e-3, n_rows=1000, unit="round", label="rel_gap")
    seen = []
    for k, gap in enumerate((1e-1, 1e-2, 3e-3, 1e-3)):
        bar({"round": k, "rel_gap": gap, "primal": 1.0, "dual": 1.0 - gap, "time": 0.5 * (k + 1)})
        seen.append(bar._bar.n / 1000)
    bar.finish()
    # log(gap0 / gap) / log(gap0 / tol) with gap0 = 1e-1
    np.testing.assert_allclose(seen, [0.0, 0.5, np.log(1e-1 / 3e-3) / np.log(1e2), 1.0],
                               atol=1e-3)
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("round 3 100%|") and "| rel_gap 1.00e-03 (tol 0.001), 2,000 rows/s [" \
        in last
    # a stopping quantity without a finite value (cascade's first passes) sits at 0
    assert cli.Progress("none", tol=1e-3, n_rows=1).position(float("inf")) == 0.0


# --------------------------------------------------------------------------- wrong commands


def _refuse_cluster(args):
    raise AssertionError("a cluster was started")


@pytest.fixture
def no_cluster(monkeypatch):
    monkeypatch.setattr(cli, "_open_cluster", _refuse_cluster)


USAGE_ERRORS = [
    (["train", "{dir}/missing.svm", "--out", "{m}"], "DATA: no such file"),
    (["train", "{dir}/nothing*.svm", "--out", "{m}"], "no file matches the pattern"),
    (["train", "{a9a}", "--test", "{dir}/none.t", "--out", "{m}"], "--test: no such file"),
    (["train", "{a9a}", "--model", "linear", "--kernel", "rbf", "--out", "{m}"],
     "--kernel is for --model cascade or --features nystroem:D; --model linear is linear"),
    (["train", "{a9a}", "--features", "rff:10", "--kernel", "poly", "--out", "{m}"],
     "rff approximates the rbf kernel only"),
    (["train", "{a9a}", "--model", "cascade", "--loss", "hinge", "--out", "{m}"],
     "--loss is only for --model linear, not --model cascade"),
    (["train", "{a9a}", "--solver", "sgd", "--out", "{m}"],
     "--solver is only for --model linear, not --model auto (--model auto picks ovr"),
    (["train", "{a9a}", "--model", "ww", "--local-passes", "2", "--out", "{m}"],
     "--local-passes is only for --model linear"),
    (["train", "{a9a}", "--model", "linear", "--solver", "sgd", "--local-passes", "2",
      "--out", "{m}"], "--local-passes is for --solver cocoa"),
    (["train", "{a9a}", "--model", "cascade", "--features", "rff:10", "--out", "{m}"],
     "--features is for the linear models"),
    (["train", "{a9a}", "--gamma", "0.1", "--out", "{m}"],
     "--gamma is for --model cascade or --features"),
    (["train", "{a9a}", "--features", "orf:10", "--gamma", "scale", "--out", "{m}"],
     "--gamma scale is for --model cascade"),
    (["train", "{a9a}", "--model", "cascade", "--kernel", "linear", "--gamma", "1",
      "--out", "{m}"], "the linear kernel has no gamma"),
    (["train", "{a9a}", "--model", "cascade", "--degree", "2", "--out", "{m}"],
     "--degree is for --kernel poly"),
    (["train", "{a9a}", "--model", "cascade", "--coef0", "1", "--out", "{m}"],
     "--coef0 is for --kernel poly or sigmoid"),
    (["train", "{a9a}", "--model", "cascade", "--seed", "3", "--out", "{m}"],
     "draws nothing at random"),
    (["train", "{a9a}", "--features", "rbf:10", "--out", "{m}"], "must be rff:D, orf:D"),
    (["train", "{a9a}", "--features", "rff:0", "--out", "{m}"], "must be a positive integer"),
    (["train", "{a9a}", "-C", "-1", "--out", "{m}"], "must be a positive number"),
    (["train", "{a9a}", "--gamma", "wide", "--out", "{m}"], "must be scale, auto or a positive"),
    (["train", "{a9a}", "--model", "svm", "--out", "{m}"], "invalid choice: 'svm'"),
    (["train", "{a9a}"], "the following arguments are required: --out"),
    (["train", "{a9a}", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2", "--out", "{m}"],
     "--workers starts a local cluster"),
    (["train", "{a9a}", "--scheduler", "tcp://127.0.0.1:1", "--threads", "2", "--out", "{m}"],
     "--threads is for the embedded local cluster"),
    (["train", "{a9a}", "--threads", "0", "--out", "{m}"], "must be a positive integer"),
    (["train", "{a9a}", "--scheduler", "tcp://127.0.0.1:1", "--slurm", "cores=1",
      "--out", "{m}"], "not allowed with argument --scheduler"),
    (["train", "{a9a}", "--scheduler", "tls://127.0.0.1:1", "--out", "{m}"],
     "a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key"),
    (["train", "{a9a}", "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "{a9a_1}",
      "--out", "{m}"], "--tls-cert, --tls-key missing"),
    (["train", "{a9a}", "--workers", "2", "--tls-ca-file", "{a9a_1}", "--tls-cert", "{a9a_1}",
      "--tls-key", "{a9a_1}", "--out", "{m}"], "for connecting to a running scheduler"),
    (["train", "{a9a}", "--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", "{a9a_1}",
      "--tls-cert", "{a9a_1}", "--tls-key", "{a9a_1}", "--out", "{m}"],
     "the address must start with tls://"),
    (["train", "{a9a}", "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "{dir}/no.pem",
      "--tls-cert", "{a9a_1}", "--tls-key", "{a9a_1}", "--out", "{m}"],
     "--tls-ca-file: no such file"),
    (["train", "{a9a}", "--scheduler-file", "{dir}/no.json", "--out", "{m}"],
     "--scheduler-file: no such file"),
    (["train", "{a9a}", "--connect-timeout", "1", "--out", "{m}"],
     "--connect-timeout is for --scheduler"),
    (["train", "{a9a}", "--slurm", "cores", "--out", "{m}"], "--slurm: SLURM option 'cores'"),
    (["train", "{a9a}", "--progress", "bar", "--progress-every", "3", "--out", "{m}"],
     "--progress-every prints lines"),
    (["train", "{a9a}", "--blocksize", "lots", "--out", "{m}"], "--blocksize 'lots'"),
    (["train", "{a9a}", "--out", "{dir}/no/such/folder/m"], "does not exist"),
    (["train", "{a9a}", "--out", "{dir}"], "is a folder"),
    (["demo", "--loss", "hinge", "--seed", "1", "--kernel", "rbf"], "unrecognized arguments"),
    (["predict", "{dir}/none.model", "{a9a}", "--out", "{m}"], "MODEL: no such file"),
    (["predict", "{a9a_1}", "{dir}/none.svm", "--out", "{m}"], "DATA: no such file"),
    (["evaluate", "{a9a_1}"], "the following arguments are required: DATA"),
    (["datasets", "info", "nope"], "invalid choice: 'nope'"),
    (["bench", "nope"], "unknown benchmark(s) 'nope'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS,
                         ids=[f"{k}-{(a or ['none'])[0]}" for k, (a, _) in enumerate(USAGE_ERRORS)])
def test_usage_errors_exit_2_with_one_line_before_any_cluster(argv, message, files, tmp_path,
                                                              no_cluster, capsys):
    fill = {"dir": files["dir"], "a9a": files["a9a"], "a9a_1": files["a9a_files"][0],
            "m": tmp_path / "m"}
    rc, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert rc == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "m").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failures_exit_1_with_one_line_and_no_traceback(files, addr, tmp_path, capsys,
                                                        monkeypatch):
    m = tmp_path / "m"
    dead = f"tcp://127.0.0.1:{_free_port()}"
    cases = [
        (["train", files["a9a"], "--scheduler", dead, "--connect-timeout", "1", "--out", m],
         f"dasksvm train: error: cannot connect to {dead}: "),
        (["train", files["bad"], "--scheduler", addr, "--out", m],
         (f"Invalid svmlight data in {files['bad']}, line 2: feature indices must be "
          "strictly increasing")),
        (["train", files["dna"], "--model", "linear", "--scheduler", addr, "--out", m],
         "--model linear is binary, but the training data has 3 classes"),
        (["predict", files["a9a_files"][0], files["a9a_test"], "--out", m],
         "cannot load model"),
    ]
    for argv, message in cases:
        rc, _, err = run(capsys, *argv)
        assert rc == 1, (argv, err)
        assert len(err.splitlines()) == 1 and message in err, err
        assert "Traceback" not in err
        assert not m.exists()
    # the same with -v: the traceback as well
    rc, _, err = run(capsys, "train", files["bad"], "--scheduler", addr, "--out", m, "-v")
    assert rc == 1 and "Traceback" in err and err.splitlines()[-1].startswith(
        "dasksvm train: error: Invalid svmlight data")
    # --slurm without dask-jobqueue (it is checked before anything starts)
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    monkeypatch.setattr(cli, "_open_cluster", _refuse_cluster)
    rc, _, err = run(capsys, "train", files["a9a"], "--slurm", "cores=1 memory=2GB",
                     "--out", m)
    assert rc == 1
    assert err == ("dasksvm train: error: --slurm needs dask-jobqueue, which is not "
                   "installed: pip install dask-jobqueue\n")


# --------------------------------------------------------------------------- help, datasets, bench


def _actions(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield parser.prog, action


def test_every_command_and_option_has_help(capsys):
    parser = cli.build_parser()
    missing = [(prog, a.dest) for prog, a in _actions(parser) if not (a.help or "").strip()]
    assert missing == []
    for argv in ([], ["train"], ["predict"], ["evaluate"], ["datasets"], ["datasets", "list"],
                 ["datasets", "info"], ["datasets", "fetch"], ["bench"], ["demo"]):
        rc, out, err = run(capsys, *argv, "--help")
        assert rc == 0 and out.startswith("usage: dasksvm") and err == ""
    rc, out, _ = run(capsys, "demo", "--help")
    assert re.search(r"-C C\s+regularization: the weight of the sum of losses\s+\(default 0\.1",
                     out)
    assert cli.build_parser().parse_args(["demo"]).C == 0.1 == cli.DEMO_C
    rc, out, _ = run(capsys, "train", "--help")
    assert re.search(r"auto \(default\): linear for two classes, ovr \(one-vs-\s?rest, "
                     r"LIBLINEAR's default\) for more", " ".join(out.split()))
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out == f"dasksvm {dasksvm.__version__}\n"


def test_datasets_list_info_and_fetch(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DASKSVM_DATA_URL", raising=False)
    rc, out, err = run(capsys, "datasets", "list", "--data-home", data_dir)
    assert rc == 0
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:-1]}
    assert rows["dna"][1:4] == ["multiclass", "3", "180"] and rows["dna"][-1] == "yes"
    assert rows["a9a"][-1] == "yes" and out.splitlines()[-1].startswith(f"data home: {data_dir}")
    home = tmp_path / "home"
    home.mkdir()
    for name in ("dna.scale.xz", "dna.scale.t.xz"):
        (home / name).write_bytes((data_dir / name).read_bytes())
    rc, out, err = run(capsys, "datasets", "list", "--data-home", home)
    rows = {ln.split()[0]: ln.split()[-1] for ln in out.splitlines()[1:-1]}
    assert rows["dna"] == "yes" and rows["a9a"] == "no"
    rc, out, err = run(capsys, "datasets", "info", "dna", "--data-home", data_dir)
    assert rc == 0
    assert "task multiclass, 3 classes (labels 1..3), 180 features" in out
    assert "split train: dna.scale.xz (51168 bytes, 2000 rows" in out
    assert str(data_dir / "dna.scale.t.xz") in out
    rc, out, err = run(capsys, "datasets", "fetch", "dna", "--data-home", data_dir)
    assert rc == 0 and err == ""
    assert out.splitlines() == [f"train: {data_dir / 'dna.scale.xz'} (sha256 verified)",
                                f"test: {data_dir / 'dna.scale.t.xz'} (sha256 verified)"]
    rc, out, err = run(capsys, "datasets", "fetch", "dna", "--data-home", tmp_path)
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"dataset 'dna': file 'dna.scale.xz' not found; looked for {tmp_path}" in err
    (tmp_path / "dna.scale.xz").write_bytes(b"not the data")
    (tmp_path / "dna.scale.t.xz").write_bytes(b"not the data")
    rc, out, err = run(capsys, "datasets", "fetch", "dna", "--data-home", tmp_path)
    assert rc == 1 and "checksum mismatch" in err and len(err.splitlines()) == 1


def test_bench_help_names_and_quick_settings(capsys):
    rc, out, err = run(capsys, "bench", "--help")
    assert rc == 0 and "--quick" in out and "--dry-run" in out
    scripts = sorted(p.stem[len("bench_"):] for p in cli._bench_dir().glob("bench_*.py"))
    assert set(cli.BENCH_QUICK) <= set(scripts)
    rc, out, err = run(capsys, "bench", "--quick", "--dry-run")
    assert rc == 0
    cmds = [ln for ln in out.splitlines() if ln.startswith("$ ")]
    assert len(cmds) == len(scripts)
    for name, cmd in zip(scripts, cmds, strict=True):
        assert f"benchmarks/bench_{name}.py" in cmd
        source = (cli._bench_dir() / f"bench_{name}.py").read_text()
        if name in cli.BENCH_QUICK:
            assert cmd.endswith(" ".join(cli.BENCH_QUICK[name])) and "results/quick" in cmd
            # every quick option is one the script defines (the table cannot drift unseen)
            for opt in (a for a in cli.BENCH_QUICK[name] if a.startswith("--")):
                assert f'"{opt}"' in source, (name, opt)
        elif '"--quick"' in source:
            assert cmd.endswith(f"bench_{name}.py --quick")
        else:
            assert f"note: bench_{name}.py has no quick settings: a full run" in out
    rc, out, err = run(capsys, "bench", "linear", "nope", "--dry-run")
    assert rc == 2 and "unknown benchmark(s) 'nope'; available: " in err and out == ""


# --------------------------------------------------------------------------- the console script


def test_console_script_demo_on_an_embedded_cluster(tmp_path, capsys):
    exe = Path(sysconfig.get_path("scripts")) / "dasksvm"
    assert exe.is_file(), f"the dasksvm console script is not installed at {exe} (pip install .)"
    model = tmp_path / "demo.model"
    proc = subprocess.run([str(exe), "demo", "--workers", "2", "--threads", "1", "--tol", "0.02",
                           "--progress-every", "20", "--out", str(model)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # no distributed log lines, no warnings, no bar (not a TTY)
    out = proc.stdout
    assert "cluster: 2 workers, 2 threads" in out
    assert "32561 rows x 123 features, 2 classes" in out
    assert "model: LinearSVC(C=0.1, tol=0.02, random_state=0)" in out
    rounds = progress_rounds(out)
    assert rounds[0] == 0 and all(r % 20 == 0 for r in rounds[1:-1])
    line = summary(out)
    assert line.startswith("converged in ") and f"model saved to {model}" in line
    assert float(re.search(r"test accuracy (\S+) \(16281 rows\)", line).group(1)) > 0.83
    est = dasksvm.load_model(model)
    assert est.n_iter_ == rounds[-1] and est.get_params()["C"] == 0.1
