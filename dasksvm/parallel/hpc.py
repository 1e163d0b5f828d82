"""Dask workers as SLURM batch jobs, through dask-jobqueue.

:func:`slurm_cluster` turns a one-line option string (what ``dasksvm train
--slurm "OPTIONS"`` takes) into a started :class:`dask_jobqueue.SLURMCluster`
whose workers have connected, so that a fit can start at once::

    from distributed import Client
    from dasksvm.parallel.hpc import slurm_cluster

    cluster = slurm_cluster("cores=1 memory=2GB walltime=01:00:00", jobs=4)
    client = Client(cluster)

No SVM mathematics here: this is plumbing, like the rest of
:mod:`dasksvm.parallel`. dask-jobqueue is imported only when a cluster is
made (``pip install dask-jobqueue``, or the ``hpc`` extra).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["SLURM_OPTIONS", "parse_slurm_options", "slurm_cluster"]

#: seconds :func:`slurm_cluster` waits for the workers by default
DEFAULT_TIMEOUT = 120.0

_WALLTIME = re.compile(r"^(\d+-\d{1,2}(:\d{1,2}){0,2}|\d+(:\d{1,2}){0,2})$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _positive_int(value):
    n = int(value)
    if n < 1:
        raise ValueError
    return n


def _positive_float(value):
    x = float(value)
    if not x > 0:
        raise ValueError
    return x


def _bytes(value):
    from dask.utils import parse_bytes

    if parse_bytes(value) <= 0:
        raise ValueError
    return value


def _walltime(value):
    if not _WALLTIME.match(value):
        raise ValueError
    return value


def _word(value):
    if not value or any(c.isspace() for c in value):
        raise ValueError
    return value


def _text(value):
    if not value:
        raise ValueError
    return value


def _bool(value):
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError


#: the keys of the option string: key -> (parser, what it must be, SLURMCluster keyword);
#: keywords starting with "scheduler." go into ``scheduler_options``; list keywords collect
#: one item per occurrence of the key
SLURM_OPTIONS = {
    "cores": (_positive_int, "a positive integer", "cores"),
    "processes": (_positive_int, "a positive integer", "processes"),
    "memory": (_bytes, "an amount of memory such as 2GB", "memory"),
    "queue": (_word, "a partition name", "queue"),
    "account": (_word, "an account name", "account"),
    "walltime": (_walltime, "a SLURM time such as 00:30:00 or 1-12:00:00", "walltime"),
    "job_cpu": (_positive_int, "a positive integer", "job_cpu"),
    "job_mem": (_word, "a SLURM memory such as 4G", "job_mem"),
    "job_name": (_word, "a job name", "job_name"),
    "job_extra": (_text, "an sbatch option such as --exclusive", "job_extra_directives"),
    "prologue": (_text, "a shell command", "job_script_prologue"),
    "interface": (_word, "a network interface name such as ib0", "interface"),
    "host": (_word, "a host name or address", "scheduler.host"),
    "dashboard": (_word, "an address such as :8787", "scheduler.dashboard_address"),
    "death_timeout": (_positive_float, "a number of seconds", "death_timeout"),
    "local_directory": (_text, "a directory", "local_directory"),
    "log_directory": (_text, "a directory", "log_directory"),
    "python": (_text, "a Python executable", "python"),
    "nanny": (_bool, "true or false", "nanny"),
    "timeout": (_positive_float, "a number of seconds", None),
}
_LISTS = {"job_extra", "prologue"}


def parse_slurm_options(options):
    """The keyword arguments of ``SLURMCluster`` that an option string names.

    Parameters
    ----------
    options : str
        ``key=value`` pairs separated by spaces, quoted as in a shell where a
        value holds spaces (``prologue="module load python"``); ``-`` and
        ``_`` are the same in keys. The keys are those of
        :data:`SLURM_OPTIONS`: ``cores``, ``processes``, ``memory``,
        ``queue``, ``account``, ``walltime``, ``job_cpu``, ``job_mem``,
        ``job_name``, ``job_extra`` (one sbatch option per occurrence),
        ``prologue`` (one shell line per occurrence), ``interface``,
        ``host`` (the scheduler's), ``dashboard`` (its address),
        ``death_timeout``, ``local_directory``, ``log_directory``,
        ``python``, ``nanny`` and ``timeout`` (seconds to wait for the
        workers; not a SLURMCluster keyword).

    Returns
    -------
    dict
        SLURMCluster keywords (with ``scheduler_options`` for ``host`` and
        ``dashboard``) and, under ``"timeout"``, the wait when given.

    Raises
    ------
    ValueError
        A token that is not ``key=value``, an unknown key, a key given twice,
        or a value of the wrong kind; the message names it.
    """
    if not isinstance(options, str):
        raise TypeError(f"SLURM options must be a string of key=value pairs, not {options!r}")
    try:
        tokens = shlex.split(options)
    except ValueError as exc:
        raise ValueError(f"SLURM options {options!r}: {exc}") from None
    out, scheduler, seen = {}, {}, set()
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"SLURM option {token!r} is not key=value")
        if key not in SLURM_OPTIONS:
            known = ", ".join(sorted(SLURM_OPTIONS))
            raise ValueError(f"unknown SLURM option {key!r} (known: {known})")
        parse, kind, target = SLURM_OPTIONS[key]
        if key in seen and key not in _LISTS:
            raise ValueError(f"SLURM option {key!r} is given twice")
        seen.add(key)
        try:
            parsed = parse(value)
        except ValueError:
            raise ValueError(f"SLURM option {key}={value!r}: must be {kind}") from None
        if target is None:
            out[key] = parsed
        elif target.startswith("scheduler."):
            scheduler[target.split(".", 1)[1]] = parsed
        elif key in _LISTS:
            out.setdefault(target, []).append(parsed)
        else:
            out[target] = parsed
    if scheduler:
        out["scheduler_options"] = scheduler
    return out


def _run(cmd):
    """(returncode, stdout, stderr) of a short command; (127, "", reason) if it is missing."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return p.returncode, p.stdout, p.stderr


def _all_nodes_here():
    """True when every node SLURM lists is this machine (a one-node SLURM), so that the
    scheduler and the workers can talk over the loopback interface."""
    rc, out, _ = _run(["sinfo", "-h", "-N", "-o", "%N"])
    nodes = {n for n in out.split() if n}
    if rc != 0 or not nodes:
        return False
    here = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn(),
            "localhost"}
    return nodes <= here


def _defaults(kwargs, config_name):
    """The values of what neither the options nor dask's ``jobqueue`` configuration set:
    one core, one worker process per job (its threads = cores), 2 GB per core, and the
    loopback interface when the whole SLURM is this machine. Cores, processes and memory
    are always returned, from the configuration where it has them, so that the caller
    knows how many workers a job runs."""
    import dask

    def config(name):
        return dask.config.get(f"jobqueue.{config_name}.{name}", None)

    out = {}
    for key, fallback in (("cores", 1), ("processes", 1)):
        if key not in kwargs:
            out[key] = config(key) or fallback
    if "memory" not in kwargs:
        cores = kwargs.get("cores", out.get("cores"))
        out["memory"] = config("memory") or f"{2 * int(cores)}GB"
    scheduler = kwargs.get("scheduler_options") or {}
    chosen = ("interface" in kwargs or "host" in scheduler or "interface" in scheduler
              or config("interface") is not None)
    if not chosen and _all_nodes_here():
        out["interface"] = "lo"
    return out


def _job_ids(cluster):
    return [j.job_id for j in cluster.workers.values() if getattr(j, "job_id", None)]


def _squeue_states(job_ids):
    """``{job id: "STATE (reason)"}`` for the jobs, from squeue (ended ones included while
    SLURM still remembers them)."""
    if not job_ids:
        return {}
    rc, out, err = _run(["squeue", "-h", "--states=all", "-j", ",".join(job_ids),
                         "-o", "%i|%T|%r|%N"])
    if rc != 0:
        return {j: f"unknown (squeue: {err.strip() or rc})" for j in job_ids}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        job, state, reason, nodes = parts
        if reason and reason != "None":
            states[job] = f"{state} ({reason})"
        else:
            states[job] = f"{state} on {nodes}" if nodes else state
    return {j: states.get(j, "no longer in squeue") for j in job_ids}


def _describe_jobs(cluster, n_jobs):
    ids = _job_ids(cluster)
    states = _squeue_states(ids)
    parts = [f"job {j} {s}" for j, s in states.items()]
    missing = n_jobs - len(ids)
    if missing > 0:
        parts.append(f"{missing} job(s) not submitted (sbatch failed; see the log above)")
    return "; ".join(parts) or "no job submitted"


_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
          "PREEMPTED", "BOOT_FAIL", "DEADLINE", "no longer in squeue")


def _check_job_script(cluster, kwargs):
    """``sbatch --test-only`` on the cluster's job script: SLURM's own verdict on the
    partition, account and resources, before anything is submitted."""
    fd, path = tempfile.mkstemp(suffix=".sh", prefix="dasksvm-slurm-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cluster.job_script())
        rc, out, err = _run(["sbatch", "--test-only", path])
    finally:
        os.unlink(path)
    if rc != 0:
        lines = [ln.strip() for ln in (err or out).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {rc}"
        reason = reason.removeprefix("sbatch: error: ")
        asked = " ".join(f"{k}={kwargs[k]}" for k in ("queue", "account", "cores", "memory",
                                                       "walltime", "job_cpu", "job_mem")
                         if kwargs.get(k) is not None)
        raise ValueError(f"SLURM refuses the worker job ({asked}): {reason}")


def _output_files(kwargs):
    """Where a job's output goes, for the error messages."""
    import dask

    where = kwargs.get("log_directory") or dask.config.get(
        f"jobqueue.{kwargs.get('config_name', 'slurm')}.log-directory", None)
    if where:
        return f"{where}/<job name>-<job id>.err"
    return f"slurm-<job id>.out in {os.getcwd()}"


def slurm_cluster(options: str = "", *, jobs: int = 2, timeout: float | None = None,
                  **kwargs):
    """A started ``dask_jobqueue.SLURMCluster`` of ``jobs`` batch jobs, their workers connected.

    Parameters
    ----------
    options : str
        ``key=value`` pairs mapped onto SLURMCluster's keywords, e.g.
        ``"cores=1 memory=2GB queue=debug walltime=00:30:00 processes=1"``;
        see :func:`parse_slurm_options` for the keys. This is the string of
        ``dasksvm train --slurm "OPTIONS"``.
    jobs : int >= 1
        Batch jobs to submit (``cluster.scale(jobs=jobs)``); each runs
        ``processes`` dask workers.
    timeout : float, optional
        Seconds to wait for every worker to connect (default 120, or the
        ``timeout`` option).
    **kwargs
        Any other SLURMCluster keyword (``job_extra_directives=[...]``,
        ``scheduler_options={...}``, ``security=...``), passed as is; a key
        also set by ``options`` is an error.

    Defaults, where neither ``options``, ``kwargs`` nor dask's
    ``jobqueue.slurm`` configuration set them: ``cores=1``,
    ``processes=1`` (one worker process per job, running ``cores``
    threads: dasksvm's kernels release the GIL), ``memory`` 2 GB per core,
    and, when every node SLURM lists is this machine, ``interface="lo"`` for
    the scheduler and the workers (127.0.0.1); elsewhere dask picks the
    host's address (pass ``interface=ib0`` or ``host=...`` for another).

    Returns
    -------
    dask_jobqueue.SLURMCluster
        Scaled to ``jobs`` jobs with all ``jobs * processes`` workers
        running; connect with ``distributed.Client(cluster)``, end with
        ``cluster.close()`` (which cancels the jobs).

    Raises
    ------
    ValueError
        A bad option key or value (named), ``jobs`` below 1, or a job that
        SLURM refuses (``sbatch --test-only``'s reason: unknown partition,
        more memory or cores than a node has...).
    ImportError
        dask-jobqueue is not installed.
    RuntimeError
        SLURM's ``sbatch`` is not on PATH.
    TimeoutError
        The workers did not all connect in time, or their jobs ended first;
        the message gives each job's squeue state.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    parsed = parse_slurm_options(options)
    wait = parsed.pop("timeout", None)
    both = sorted(set(parsed) & set(kwargs))
    if both:
        raise ValueError(f"{', '.join(both)} given both in the options and as a keyword")
    kwargs = {**parsed, **kwargs}
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        wait = float(timeout)
    wait = DEFAULT_TIMEOUT if wait is None else wait
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ImportError(
            "SLURM clusters need dask-jobqueue: pip install dask-jobqueue") from None
    if shutil.which("sbatch") is None:
        raise RuntimeError("SLURM's sbatch is not on PATH: run this where jobs can be submitted "
                           "(a login node), or start a one-node SLURM with "
                           "scripts/slurm/start.sh")
    config_name = kwargs.get("config_name", "slurm")
    kwargs = {**_defaults(kwargs, config_name), **kwargs}
    if kwargs["processes"] > kwargs["cores"]:
        raise ValueError(f"SLURM option processes={kwargs['processes']} exceeds "
                         f"cores={kwargs['cores']} (each process needs a core)")

    cluster = SLURMCluster(**kwargs)
    try:
        _check_job_script(cluster, kwargs)
        cluster.scale(jobs=jobs)
        n_workers = jobs * kwargs["processes"]
        _wait_for_workers(cluster, jobs, n_workers, wait, _output_files(kwargs))
    except BaseException:
        cluster.close()
        raise
    return cluster


def _n_running(cluster):
    from distributed.core import Status

    info = cluster.scheduler_info.get("workers", {})
    return sum(1 for w in info.values() if w.get("status") == Status.running.name)


def _wait_for_workers(cluster, n_jobs, n_workers, timeout, output):
    """Wait until ``n_workers`` workers run; fail early when every job has ended."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            cluster.wait_for_workers(n_workers, timeout=max(0.1, min(2.0, left)))
            return
        except TimeoutError:
            pass
        ids = _job_ids(cluster)
        if len(ids) == n_jobs:
            states = _squeue_states(ids)
            if all(s.startswith(_ENDED) for s in states.values()):
                raise TimeoutError(
                    f"the SLURM jobs ended before their dask workers connected "
                    f"({_n_running(cluster)} of {n_workers} connected); squeue: "
                    f"{_describe_jobs(cluster, n_jobs)}; see {output}")
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{_n_running(cluster)} of {n_workers} dask workers connected within "
                f"{timeout:g}s; squeue: {_describe_jobs(cluster, n_jobs)}")
