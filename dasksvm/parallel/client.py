"""Finding or starting the dask.distributed client every solver runs on."""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["PINNED", "close_embedded_cluster", "fit_client", "get_client", "local_cluster",
           "pin_tasks", "prompt_sends", "worker_addresses"]

_EMBEDDED = {}
_LOCK = threading.Lock()

#: seconds between a client's batches of messages to the scheduler while a fit runs
#: (distributed's client waits 10 ms; see :func:`prompt_sends`)
FIT_SEND_INTERVAL = 0.001
_HELD = {}  # id(batched stream) -> [stream, its own interval, fits running]

#: The task annotation (``dask.annotate(**{PINNED: True})``) that keeps distributed's work
#: stealing off a task (:func:`pin_tasks`).
PINNED = "dasksvm_pinned"


def get_client(client=None, address=None, *, security=None, scheduler_file=None, timeout=None):
    """Return the client a solver should use.

    Parameters
    ----------
    client : distributed.Client, optional
        Returned as is when given.
    address : str, optional
        Scheduler address (``tcp://host:port``, ``tls://host:port``) to connect to.
    security : distributed.Security, optional
        TLS settings for the connection to ``address`` or ``scheduler_file``
        (and for the embedded cluster, when one is started).
    scheduler_file : str, optional
        A scheduler's JSON file (``dask scheduler --scheduler-file``) to
        connect to, instead of ``address``.
    timeout : float, optional
        Seconds to wait for the connection to ``address`` or
        ``scheduler_file`` (distributed's default when None).

    Returns
    -------
    distributed.Client
        In order of preference: ``client``; a new client connected to
        ``address`` or ``scheduler_file`` when one is given; the current
        default client (the one made most recently in this process, as
        ``dask.distributed`` sees it, if it is connected); else a client of an
        embedded cluster of :func:`local_cluster` (one worker process whose
        threads are the machine's cores; started once per process and reused by
        later calls), whose dashboard serves the ``/dasksvm`` page of
        :mod:`dasksvm.dashboard`.
    """
    from distributed import Client, default_client

    if client is not None:
        return client
    if address is not None and scheduler_file is not None:
        raise ValueError("give a scheduler address or a scheduler file, not both")
    if address is not None or scheduler_file is not None:
        extra = {} if timeout is None else {"timeout": timeout}
        return Client(address, scheduler_file=scheduler_file, security=security, **extra)
    try:
        current = default_client()
        # distributed makes a Client the default before it connects: a refused one stays
        if current.status == "running":
            return current
    except ValueError:
        pass
    with _LOCK:
        cached = _EMBEDDED.get("client")
        if cached is not None and cached.status == "running":
            return cached
        cluster = local_cluster(**({} if security is None else {"security": security}))
        client = Client(cluster)
        from ..dashboard import install

        install(client)  # the /dasksvm page on the cluster's dashboard
        _EMBEDDED["cluster"] = cluster
        _EMBEDDED["client"] = client
        return client


def local_cluster(n_workers=1, threads_per_worker=None, **kwargs):
    """A ``LocalCluster`` on 127.0.0.1 in the shape that is fastest on one machine:
    by default one worker process whose threads are all the cores.

    The threads of one worker share its model: CoCoA+ treats a worker's blocks
    as one part updating one w, the Weston-Watkins pair chains of a round run
    side by side on the same weight blocks, the SMO and Newton kernels release
    the GIL. Several processes instead pay a round's messages between them and
    (WW) move the weight blocks at every link. Measured on 2 cores
    (docs/choosing.md, "Cluster shape"): a WW epoch took 8.3 s on 1 process x 2
    threads, 13.6 s on 1 x 1 and 16.6 s on 2 x 1; the round overhead is 11.5 ms
    on one process against 16.8 ms on two.

    Parameters
    ----------
    n_workers : int >= 1
        Worker processes.
    threads_per_worker : int >= 1, optional
        Default: the cores divided among the processes (at least 1).
    **kwargs
        Passed to ``distributed.LocalCluster`` (``security``, ``silence_logs``,
        ``dashboard_address`` (default 127.0.0.1 on a free port), ...).
    """
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    if threads_per_worker is None:
        threads_per_worker = max(1, cores // n_workers)
    kwargs.setdefault("dashboard_address", "127.0.0.1:0")
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                        processes=True, host="127.0.0.1", **kwargs)


def _in_worker_task():
    try:
        from distributed import get_worker

        get_worker()
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def fit_client(client=None, address=None):
    """The client for one fit, as a context manager.

    Outside dask it is :func:`get_client`. Inside a task running on a dask
    worker (a fit that dask-ml's ``GridSearchCV`` or a user's ``delayed``
    runs) it is that worker's own client, through
    ``distributed.worker_client``: the task leaves the worker's thread pool
    while it waits for the fit's tasks and rejoins it afterwards, so a fit
    inside a task never starts a cluster and never deadlocks a
    single-threaded worker.
    """
    if client is None and address is None and _in_worker_task():
        from distributed import worker_client

        with worker_client() as c:
            yield c
        return
    yield get_client(client, address)


def worker_addresses(client):
    """The addresses of the client's workers, sorted, fetched from the scheduler.

    ``client.scheduler_info(n_workers=-1)["workers"]`` is not safe for this:
    it returns the client's cached identity, which the client's periodic
    refresh (every couple of seconds, totals only) may have replaced by one
    without workers between the fetch and the return.
    """
    return sorted(client.nthreads())


def close_embedded_cluster():
    """Close the embedded LocalCluster started by :func:`get_client`, if any."""
    with _LOCK:
        client = _EMBEDDED.pop("client", None)
        cluster = _EMBEDDED.pop("cluster", None)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def prompt_sends(client):
    """While in the block, ``client`` sends its messages to the scheduler in batches
    :data:`FIT_SEND_INTERVAL` apart, instead of distributed's 10 ms.

    A round releases the previous round's futures and then submits its tasks, and a
    client batch leaves at most once per interval: with 10 ms, a round that takes a
    little over 10 ms waits for the next batch, and a round of 2 processes here took
    24-26 ms instead of 17 (``benchmarks/bench_engine.py --parts overhead``). The
    stream's own interval comes back when the last fit on the client ends.
    """
    stream = getattr(client, "scheduler_comm", None)
    if not isinstance(getattr(stream, "interval", None), float):
        yield
        return
    with _LOCK:
        held = _HELD.setdefault(id(stream), [stream, stream.interval, 0])
        held[2] += 1
        stream.interval = min(held[1], FIT_SEND_INTERVAL)
    try:
        yield
    finally:
        with _LOCK:
            held[2] -= 1
            if held[2] == 0:
                stream.interval = held[1]
                del _HELD[id(stream)]


def _skip_pinned_in_stealing(dask_scheduler):
    """On the scheduler: work stealing passes over tasks annotated :data:`PINNED`.

    The stealing extension offers a task to idle workers when it starts processing
    (``put_key_in_stealable``); this wraps that method of the scheduler's extension
    once. Returns whether the scheduler has work stealing.
    """
    steal = dask_scheduler.extensions.get("stealing")
    if steal is None:
        return False
    if not getattr(steal, "_dasksvm_pinned", False):
        offer = steal.put_key_in_stealable

        def offer_unless_pinned(ts):
            if not (ts.annotations or {}).get(PINNED):
                offer(ts)

        steal.put_key_in_stealable = offer_unless_pinned
        steal._dasksvm_pinned = True
    return True


def pin_tasks(client):
    """Make tasks annotated :data:`PINNED` run where they were placed.

    The round engine places each task on the worker that holds its state, loosely
    (``allow_other_workers=True``), so that a task planned on a worker that left runs
    elsewhere, finds no state and says so (``StateLost``, a recovery) instead of waiting
    for that worker forever. Loose placement also lets distributed's work stealing move
    a task that waits behind another to an idle worker, which holds no state for it: a
    needless recovery, and a fit that gave up after 9 of them (Weston-Watkins on 2
    processes, where one worker's links queued while the other's ran). distributed has
    no per-task switch for stealing, so this asks the scheduler to pass over
    :data:`PINNED` tasks (:func:`_skip_pinned_in_stealing`, idempotent). Returns False
    when the scheduler could not be asked (it cannot import dasksvm, say): tasks may
    then still be stolen, and each theft costs a recovery, not a wrong answer.
    """
    try:
        return bool(client.run_on_scheduler(_skip_pinned_in_stealing))
    except Exception:  # noqa: BLE001 - the scheduler's environment is not ours to fix
        return False
