"""Shared fixtures: real clusters (threads and processes) and the data mirror."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DASKSVM_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"dataset mirror {DATA_DIR} not found; set DASKSVM_DATA")
    return DATA_DIR


def _make_client(processes):
    from distributed import Client, LocalCluster

    kwargs = {"host": "127.0.0.1"} if processes else {}
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=processes,
        dashboard_address="127.0.0.1:0",
        silence_logs=40,
        **kwargs,
    )
    client = Client(cluster, set_as_default=False)
    return cluster, client


@pytest.fixture(scope="module")
def process_client():
    """A real LocalCluster with 2 worker processes (1 thread each), per test module."""
    cluster, client = _make_client(True)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def thread_client():
    """The threaded scheduler: a LocalCluster of 2 single-thread workers in this process."""
    cluster, client = _make_client(False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(params=["threads", "processes"])
def client(request):
    """Run a test on both the threaded and the process-based cluster."""
    name = "thread_client" if request.param == "threads" else "process_client"
    return request.getfixturevalue(name)


@pytest.fixture
def three_workers():
    """A fresh LocalCluster of 3 worker processes per test, for the worker-kill tests (the
    nanny restarts a killed worker, but no test waits for it)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=50)
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()
