"""dasksvm on a real one-node SLURM, through dask-jobqueue.

``scripts/slurm/start.sh`` installs (``slurm-wlm``, ``munge``, from the
package registry) and starts a single-node SLURM on this machine; the fits
then run on dask workers that are real batch jobs, and must reach the
objective of the same fit on a LocalCluster of two processes.

The node has as many CPUs as the machine (two here) and every worker job
takes one, so the tests that submit jobs of their own (the command line, a
job that fails) run after the class whose cluster holds them.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask
import pytest
from dask.utils import key_split
from distributed import Client, get_task_stream

import dasksvm
from dasksvm.parallel.hpc import parse_slurm_options, slurm_cluster

from ._reference import load_xz

REPO = Path(__file__).resolve().parents[1]
START = REPO / "scripts" / "slurm" / "start.sh"
STOP = REPO / "scripts" / "slurm" / "stop.sh"
ENDED = ("COMPLETED", "CANCELLED", "FAILED", "COMPLETING")

# CoCoA+ on 5,000 rows of a9a: ~35 rounds to tol; Weston-Watkins on 600 rows of dna (3
# classes): ~10 epochs. Both certified by their relative duality gap <= tol, so two fits of
# one problem agree in P to within tol * P (P* <= P <= P* + tol * P for each).
COCOA = {"C": 0.01, "tol": 1e-4, "solver": "cocoa"}
WW = {"C": 0.003, "tol": 1e-3}


def _cannot(reason):
    """Skip where this machine cannot run SLURM; in CI (root, with the registry) it must."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM tests, but: {reason}")
    pytest.skip(reason)


def _squeue(*args):
    out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=True)
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def slurm():
    """A running one-node SLURM (started by scripts/slurm/start.sh; stopped afterwards when
    it was not running before)."""
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        _cannot("dask-jobqueue is not installed (pip install dask-jobqueue)")
    if os.geteuid() != 0:
        _cannot("scripts/slurm/start.sh needs root to install slurm-wlm / munge and start "
                "the SLURM daemons")
    was_up = all(subprocess.run(["pgrep", "-x", daemon], capture_output=True,
                                check=False).returncode == 0
                 for daemon in ("munged", "slurmctld", "slurmd"))
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode == 77:  # the script's "cannot run on this machine"
        _cannot(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"start.sh failed:\n{proc.stdout}\n{proc.stderr}"
    yield
    if not was_up:
        subprocess.run(["bash", str(STOP)], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def a9a(data_dir):
    X, y = load_xz(data_dir / "a9a.xz", n_features=123)
    return X[:5000], y[:5000]


@pytest.fixture(scope="module")
def dna(data_dir):
    X, y = load_xz(data_dir / "dna.scale.xz")
    return X[:600], y[:600]


# ---------------------------------------------------------------------------------------
# the option string (no SLURM needed)
# ---------------------------------------------------------------------------------------


def test_options_map_onto_slurmcluster_keywords():
    kw = parse_slurm_options(
        "cores=4 memory=8GB queue=debug walltime=00:30:00 processes=2 account=proj "
        "job-extra=--exclusive job_extra='--gres=gpu:1' prologue='module load python' "
        "host=10.1.2.3 dashboard=:8788 nanny=false timeout=300")
    assert kw == {
        "cores": 4, "memory": "8GB", "queue": "debug", "walltime": "00:30:00",
        "processes": 2, "account": "proj", "nanny": False,
        "job_extra_directives": ["--exclusive", "--gres=gpu:1"],
        "job_script_prologue": ["module load python"],
        "scheduler_options": {"host": "10.1.2.3", "dashboard_address": ":8788"},
        "timeout": 300.0,
    }
    assert parse_slurm_options("") == {}


@pytest.mark.parametrize("options,match", [
    ("colors=4", r"unknown SLURM option 'colors' \(known: account, cores,"),
    ("cores=0", r"SLURM option cores='0': must be a positive integer"),
    ("cores=two", r"SLURM option cores='two': must be a positive integer"),
    ("memory=lots", r"SLURM option memory='lots': must be an amount of memory"),
    ("walltime=1h", r"SLURM option walltime='1h': must be a SLURM time"),
    ("nanny=maybe", r"SLURM option nanny='maybe': must be true or false"),
    ("queue=", r"SLURM option queue='': must be a partition name"),
    ("cores", r"SLURM option 'cores' is not key=value"),
    ("cores=1 cores=2", r"SLURM option 'cores' is given twice"),
    ("queue='debug", r"No closing quotation"),
])
def test_a_bad_option_is_a_valueerror_naming_it(options, match):
    with pytest.raises(ValueError, match=match):
        slurm_cluster(options)


def test_bad_arguments_fail_before_anything_is_submitted():
    with pytest.raises(ValueError, match="jobs must be a positive integer, not 0"):
        slurm_cluster("cores=1", jobs=0)
    with pytest.raises(ValueError, match="cores given both in the options and as a keyword"):
        slurm_cluster("cores=1", cores=2)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        slurm_cluster("", timeout=-1)


def test_without_dask_jobqueue_a_one_line_importerror(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails
    with pytest.raises(ImportError, match=r"^SLURM clusters need dask-jobqueue: "
                                          r"pip install dask-jobqueue$"):
        slurm_cluster("cores=1")


def test_without_sbatch_a_runtimeerror(monkeypatch):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed")
    monkeypatch.setattr("dasksvm.parallel.hpc.shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="SLURM's sbatch is not on PATH"):
        slurm_cluster("cores=1")


# ---------------------------------------------------------------------------------------
# fits on SLURM jobs
# ---------------------------------------------------------------------------------------


class TestOnSLURMJobs:
    """Two worker jobs for the whole class, kept at two by ``adapt`` (torn down before the
    tests below submit jobs of their own)."""

    @pytest.fixture(scope="class")
    def cluster(self, slurm, tmp_path_factory):
        logs = tmp_path_factory.mktemp("slurm-logs")
        cluster = slurm_cluster(f"cores=1 memory=1GB dashboard=127.0.0.1:0 "
                                f"log_directory={logs}", jobs=2)
        cluster.adapt(minimum_jobs=2, maximum_jobs=2)  # replaces a job that ends
        client = Client(cluster, set_as_default=False)
        yield cluster, client
        client.close()
        cluster.close()

    def test_the_workers_are_slurm_jobs(self, cluster):
        cluster, client = cluster
        job_ids = {job.job_id for job in cluster.workers.values()}
        assert len(job_ids) == 2
        running = {j for j, state, name in _squeue("-o", "%i|%T|%j") if state == "RUNNING"}
        assert job_ids <= running
        # each worker process runs inside its own batch job, on the loopback interface
        in_job = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert set(in_job.values()) == job_ids
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in in_job)
        names = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {str(name) for name in cluster.workers}
        assert client.nthreads() == dict.fromkeys(in_job, 1)
        script = cluster.job_script()  # the defaults: one core, one process, the loopback
        assert "#SBATCH --cpus-per-task=1" in script and "--nthreads 1" in script
        assert "--nworkers" not in script and "--interface lo" in script

    def test_cocoa_on_slurm_matches_a_localcluster(self, cluster, process_client, a9a):
        cluster, client = cluster
        X, y = a9a
        with get_task_stream(client=client) as ts:
            on_slurm = dasksvm.LinearSVC(**COCOA, random_state=0, client=client).fit(X, y)
        local = dasksvm.LinearSVC(**COCOA, random_state=0, client=process_client).fit(X, y)
        for m in (on_slurm, local):
            assert m.converged_ and m.rel_gap_ <= COCOA["tol"]
        assert on_slurm.primal_ == pytest.approx(local.primal_, rel=2 * COCOA["tol"])
        # the rounds ran on both SLURM workers, one task per worker per round
        in_job = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        rounds = [t for t in ts.data if key_split(t["key"]) == "cocoa-local"]
        assert {t["worker"] for t in rounds} == set(in_job)
        assert len(rounds) == 2 * len(on_slurm.history_)

    def test_weston_watkins_on_slurm_matches_a_localcluster(self, cluster, process_client,
                                                            dna):
        cluster, client = cluster
        X, y = dna
        on_slurm = dasksvm.MulticlassSVC(multi_class="ww", **WW, random_state=0,
                                         client=client).fit(X, y)
        local = dasksvm.MulticlassSVC(multi_class="ww", **WW, random_state=0,
                                      client=process_client).fit(X, y)
        for m in (on_slurm, local):
            assert m.converged_ and m.rel_gap_ <= WW["tol"]
        assert on_slurm.primal_ == pytest.approx(local.primal_, rel=2 * WW["tol"])
        assert on_slurm.score(X, y) == pytest.approx(local.score(X, y), abs=0.01)

    def test_a_cancelled_worker_job_costs_the_fit_nothing(self, cluster, process_client, a9a):
        """``scancel`` one of the two worker jobs during a fit: the round engine rebuilds the
        lost block and its dual state and the fit ends at the certified objective of the fit
        on the LocalCluster; ``adapt(minimum_jobs=2)`` then submits a job in its place."""
        cluster, client = cluster
        X, y = a9a
        ref = dasksvm.LinearSVC(**COCOA, random_state=0, client=process_client).fit(X, y)
        cancelled = []

        def cancel_one(rec):
            if rec["round"] == 5 and not cancelled:
                cancelled.append(min(j.job_id for j in cluster.workers.values()))
                subprocess.run(["scancel", cancelled[0]], check=True)

        with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):
            hit = dasksvm.LinearSVC(**COCOA, random_state=0, client=client,
                                    callback=cancel_one).fit(X, y)
            assert cancelled and hit.history_[-1]["recoveries"] >= 1
            assert hit.converged_ and hit.rel_gap_ <= COCOA["tol"]
            assert hit.primal_ == pytest.approx(ref.primal_, rel=2 * COCOA["tol"])
            assert dict(_squeue("--states=all", "-o", "%i|%T"))[cancelled[0]].startswith(ENDED)
            # the adaptive cluster replaces the cancelled job
            deadline = time.monotonic() + 120
            while True:
                jobs = set(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values())
                if len(jobs) == 2 and cancelled[0] not in jobs:
                    break
                assert time.monotonic() < deadline, f"no replacement job: workers in {jobs}"
                time.sleep(0.5)


# ---------------------------------------------------------------------------------------
# jobs of their own: SLURM's refusals, failing jobs, the command line
# ---------------------------------------------------------------------------------------


def test_a_job_slurm_refuses_is_a_valueerror_with_its_reason(slurm):
    before = {j for (j,) in _squeue("--states=all", "-o", "%i")}
    with pytest.raises(ValueError, match=r"SLURM refuses the worker job \(queue=nowhere "
                                         r"cores=1 memory=2GB\): .*Invalid partition"):
        slurm_cluster("queue=nowhere dashboard=127.0.0.1:0", jobs=1)
    with pytest.raises(ValueError, match=r"SLURM refuses the worker job .*memory=100TB.*"
                                         r"node configuration is not available"):
        slurm_cluster("memory=100TB dashboard=127.0.0.1:0", jobs=1)
    assert {j for (j,) in _squeue("--states=all", "-o", "%i")} == before  # none submitted


def test_jobs_that_end_early_fail_with_their_squeue_state(slurm, tmp_path):
    false = shutil.which("false")
    with pytest.raises(TimeoutError, match=r"the SLURM jobs ended before their dask workers "
                                           r"connected \(0 of 1 connected\); squeue: job \d+ "
                                           r"FAILED"):
        slurm_cluster(f"python={false} log_directory={tmp_path} dashboard=127.0.0.1:0", jobs=1,
                      timeout=60)


def test_command_line_trains_on_slurm_jobs(slurm, data_dir, tmp_path):
    """``dasksvm train FILE --slurm "..." --out MODEL``: the fit runs on two new batch jobs
    (``--workers`` defaults to 2), which are gone when the command ends."""
    seen = {j for (j,) in _squeue("--states=all", "-o", "%i")}
    model = tmp_path / "mushrooms.model"
    proc = subprocess.run(
        [sys.executable, "-m", "dasksvm.cli", "train",
         str(data_dir / "mushrooms_agaricus.train.xz"), "-C", "0.01",
         "--slurm", "cores=1 memory=1GB", "--out", str(model)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cluster: 2 workers" in proc.stdout
    assert "converged" in proc.stdout
    assert model.is_file() and model.stat().st_size > 0
    new = [(j, state) for j, state in _squeue("--states=all", "-o", "%i|%T") if j not in seen]
    assert len(new) == 2 and all(state.startswith(ENDED) for _, state in new), new


def test_tutorial_slurm_dashboard_resume_runs(slurm, data_dir, tmp_path):
    """tutorials/05_slurm_dashboard.py: a WW fit on two SLURM jobs from a second client
    that is killed (SIGKILL) mid-fit, resumed from its checkpoint, listed on the page."""
    script = REPO / "tutorials" / "05_slurm_dashboard.py"
    env = dict(os.environ, DASKSVM_DATA=str(data_dir), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "client killed; the checkpoint holds rounds <" in proc.stdout
    assert "converged=True" in proc.stdout
