"""Checkpoints, resuming, a killed client and a killed worker, for the binary solvers."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import dask.array as da
import numpy as np
import pytest

from dasksvm import ConvergenceWarning, LinearSVC
from dasksvm.parallel.checkpoint import read_checkpoint

from ._reference import load_xz

C = 0.01
TOL = 1e-5


@pytest.fixture(scope="module")
def mushrooms(data_dir):
    X, y = load_xz(data_dir / "mushrooms_agaricus.train.xz")
    return X, y


def _same_optimum(a, b):
    """Two fits of one problem agree: certified fits (cocoa) by |P_a - P_b| <= gap_a + gap_b;
    the subgradient method, which keeps no state on the workers and does not reach a small
    gap on these data, by taking the very same steps (same primal to rounding)."""
    if a.solver == "sgd":
        assert a.n_iter_ == b.n_iter_
        assert a.primal_ == pytest.approx(b.primal_, rel=1e-10)
        return
    assert a.converged_ and b.converged_
    assert abs(a.primal_ - b.primal_) <= (a.primal_ - a.dual_) + (b.primal_ - b.dual_) + 1e-12


#: solver -> fit parameters: cocoa to a certified 1e-5; sgd for a fixed 40 steps
SOLVER_KW = {
    "cocoa": {"solver": "cocoa", "tol": TOL, "max_iter": 3000},
    "sgd": {"solver": "sgd", "tol": 1e-9, "max_iter": 40},
}


def _fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # sgd's fixed step count
        return est.fit(*args, **kwargs)


@pytest.mark.parametrize("solver", ["cocoa", "sgd"])
def test_checkpoint_resume_reaches_the_same_objective(thread_client, mushrooms, tmp_path,
                                                      solver):
    X, y = mushrooms
    kw = {"C": C, "random_state": 0, "client": thread_client, **SOLVER_KW[solver]}
    whole = _fit(LinearSVC(**kw), X, y)
    path = tmp_path / "fit.ckpt"
    with pytest.warns(ConvergenceWarning):
        part = LinearSVC(**{**kw, "max_iter": 6}, checkpoint=path, checkpoint_every=4).fit(X, y)
    arrays, meta = read_checkpoint(path)
    assert meta["round"] == 6 and len(meta["history"]) == 7
    assert arrays["model__w"].shape == (X.shape[1] + 1,)
    more = _fit(LinearSVC(checkpoint=path, **kw), X, y, resume=True)
    _same_optimum(more, whole)
    # the history continues the checkpoint's: rounds 0-5 from the file, then round 6 (the
    # evaluation round of the stopped fit) again, now as an update round, at the same model
    assert [r["round"] for r in more.history_] == list(range(more.n_iter_ + 1))
    assert more.history_[:6] == part.history_[:6]
    assert more.history_[6]["primal"] == part.history_[6]["primal"]
    if solver == "cocoa":  # same seeds from the same position: the same iterates
        assert more.n_iter_ == whole.n_iter_
        assert more.primal_ == pytest.approx(whole.primal_, rel=1e-12)


def test_resume_refuses_another_problem(thread_client, mushrooms, tmp_path):
    X, y = mushrooms
    path = tmp_path / "fit.ckpt"
    kw = {"random_state": 0, "client": thread_client, "checkpoint": path}
    with pytest.warns(ConvergenceWarning):
        LinearSVC(C=C, solver="cocoa", tol=1e-9, max_iter=3, **kw).fit(X, y)
    with pytest.raises(ValueError, match=r"another problem: C=0.01 there, 0.02 here"):
        LinearSVC(C=2 * C, solver="cocoa", **kw).fit(X, y, resume=True)
    with pytest.raises(ValueError, match="loss='squared_hinge' there, 'hinge' here"):
        LinearSVC(C=C, solver="cocoa", loss="hinge", **kw).fit(X, y, resume=True)
    with pytest.raises(ValueError, match="solver='cocoa' there, 'sgd' here"):
        LinearSVC(C=C, solver="sgd", **kw).fit(X, y, resume=True)
    with pytest.raises(ValueError, match="other data"):
        LinearSVC(C=C, **kw).fit(X[:-10], y[:-10], resume=True)
    with pytest.raises(ValueError, match="other data"):
        LinearSVC(C=C, fit_intercept=False, **kw).fit(X, y, resume=True)
    with pytest.raises(ValueError, match="other data"):
        LinearSVC(C=C, **kw).fit(X, y, sample_weight=np.full(len(y), 2.0), resume=True)
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        LinearSVC(C=C, **kw).fit(X, y, resume=True)
    # no file yet: resume starts from zero
    fresh = LinearSVC(C=C, tol=TOL, max_iter=3000, random_state=0, client=thread_client,
                      checkpoint=tmp_path / "new.ckpt").fit(X, y, resume=True)
    assert fresh.converged_ and fresh.history_[0]["round"] == 0


_KILLED_CLIENT = textwrap.dedent("""
    import sys, time
    from distributed import Client, LocalCluster
    from dasksvm import LinearSVC
    from tests._reference import load_xz

    if __name__ == "__main__":
        X, y = load_xz(sys.argv[1])
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                               dashboard_address=None)
        client = Client(cluster)
        LinearSVC(C=float(sys.argv[3]), tol=1e-12, max_iter=100000, random_state=0,
                  checkpoint=sys.argv[2], checkpoint_every=2, client=client,
                  callback=lambda rec: time.sleep(0.05)).fit(X, y)
""")


def test_client_killed_with_sigkill_then_resumed(thread_client, mushrooms, data_dir, tmp_path):
    path = tmp_path / "fit.ckpt"
    script = tmp_path / "fit_script.py"
    script.write_text(_KILLED_CLIENT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen([sys.executable, str(script),
                             str(data_dir / "mushrooms_agaricus.train.xz"), str(path), str(C)],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    if read_checkpoint(path)[1]["round"] >= 6:
                        break
                except ValueError:
                    pass  # being replaced right now
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail("no checkpoint after 180 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    _, meta = read_checkpoint(path)  # the file survived the kill intact
    X, y = mushrooms
    kw = {"C": C, "tol": TOL, "max_iter": 3000, "random_state": 0, "client": thread_client}
    resumed = LinearSVC(checkpoint=path, **kw).fit(X, y, resume=True)
    assert resumed.history_[0]["round"] == 0 and len(resumed.history_) > meta["round"]
    _same_optimum(resumed, LinearSVC(**kw).fit(X, y))


def _exit_worker(client, addr):
    with contextlib.suppress(Exception):  # the worker dies before it can answer
        client.run(os._exit, 1, workers=[addr])


def _kill_one_worker_at(round_no, client, victims):
    """A callback that kills one worker process (os._exit) when ``round_no`` is reached."""

    def callback(rec):
        if rec["round"] == round_no and not victims:
            addr = max(client.nthreads())
            victims.append(addr)
            threading.Thread(target=_exit_worker, args=(client, addr), daemon=True).start()
            time.sleep(0.5)

    return callback


@pytest.mark.parametrize("as_dask", [True, False])
@pytest.mark.parametrize("solver", ["cocoa", "sgd"])
def test_a_dead_worker_costs_nothing(three_workers, mushrooms, solver, as_dask):
    X, y = mushrooms
    if as_dask:  # blocks come back from their lineage
        X, y = da.from_array(X, chunks=(2200, -1), asarray=False), da.from_array(y, chunks=2200)
    kw = {"C": C, "random_state": 0, "client": three_workers, **SOLVER_KW[solver]}
    ref = _fit(LinearSVC(**kw), X, y)
    victims = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distributed's own warnings about the lost worker
        hit = LinearSVC(callback=_kill_one_worker_at(3, three_workers, victims), **kw).fit(X, y)
    assert victims and hit.history_[-1]["recoveries"] >= 1
    _same_optimum(hit, ref)


def test_a_dead_worker_of_a_shared_host(three_workers, mushrooms):
    """share="host" on 3 worker processes: a worker lost at round 3 ends the sharing (its
    blocks move), the fit goes on with the workers apart and reaches the same optimum."""
    X, y = mushrooms
    kw = {"C": C, "random_state": 0, "client": three_workers, "share": "host",
          **SOLVER_KW["cocoa"]}
    ref = _fit(LinearSVC(**kw), X, y)
    victims = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hit = LinearSVC(callback=_kill_one_worker_at(3, three_workers, victims), **kw).fit(X, y)
    assert victims and hit.history_[-1]["recoveries"] >= 1
    _same_optimum(hit, ref)
