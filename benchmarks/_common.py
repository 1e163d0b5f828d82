"""Helpers shared by the benchmark scripts: timing, peak memory, environment, output.

Nothing here imports dask or the package under test, so a script can use these
helpers before (and independently of) starting a cluster.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "REPO",
    "RESULTS_DIR",
    "PeakRSS",
    "Timer",
    "env_info",
    "fmt",
    "loadavg",
    "md_table",
    "write_json",
    "write_text",
]

#: the repository root, put on sys.path (after the benchmarks' folder) so that the scripts
#: import the package of this checkout without installing it
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: the real datasets: $DASKSVM_DATA, else ../shared/data beside the repository
DATA_DIR = Path(os.environ.get("DASKSVM_DATA",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))
#: "reached the peer's objective P" means P_ours <= P (1 + SLACK)
SLACK = 1e-6
MiB = 1024.0 * 1024.0


def loadavg():
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


class Timer:
    """``with Timer() as t: ...`` then ``t.elapsed`` (seconds, perf_counter)."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.elapsed = None
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.start
        return False


class PeakRSS:
    """Sample the resident set size of some processes from a background thread.

    Sampling from this process (with psutil) costs the measured processes
    nothing: no message reaches a dask worker or a JVM.

    Parameters
    ----------
    pids : dict name -> pid
        Processes to watch.
    children : bool
        Add the RSS of every descendant of each process (a JVM started by a
        launcher script, say).
    interval : float
        Seconds between samples.

    Attributes (after the ``with`` block)
    -------------------------------------
    before : dict name -> bytes, RSS at entry
    peak : dict name -> bytes, largest sample (entry and exit included)
    """

    def __init__(self, pids, *, children=False, interval=0.05):
        import psutil

        self._psutil = psutil
        self.pids = dict(pids)
        self.children = children
        self.interval = interval
        self.before = {}
        self.peak = {}
        self._stop = threading.Event()
        self._thread = None

    def _rss(self, pid):
        ps = self._psutil
        try:
            proc = ps.Process(pid)
            total = proc.memory_info().rss
            if self.children:
                for ch in proc.children(recursive=True):
                    try:
                        total += ch.memory_info().rss
                    except (ps.NoSuchProcess, ps.AccessDenied):
                        pass
            return total
        except (ps.NoSuchProcess, ps.AccessDenied):
            return 0

    def _sample(self):
        for name, pid in self.pids.items():
            r = self._rss(pid)
            if r > self.peak.get(name, 0):
                self.peak[name] = r

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self.before = {name: self._rss(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.before)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False

    def summary(self):
        """{'peak_mib': max over processes, 'peak_mib_each': {...}, 'delta_mib': max increase}."""
        if not self.peak:
            return {"peak_mib": None, "peak_mib_each": {}, "delta_mib": None}
        each = {k: round(v / MiB, 1) for k, v in self.peak.items()}
        delta = max((self.peak[k] - self.before.get(k, 0)) / MiB for k in self.peak)
        return {
            "peak_mib": max(each.values()),
            "peak_mib_each": each,
            "delta_mib": round(delta, 1),
        }


def env_info(extra_modules=()):
    """Machine, Python and library versions, load average: for the results header."""
    import importlib

    mods = {}
    for name in ("numpy", "scipy", "sklearn", "dask", "distributed", "numba", *extra_modules):
        try:
            mods[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - a missing optional peer is just reported
            mods[name] = None
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        mem_gib = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "loadavg_start": loadavg(),
        "versions": mods,
        "argv": sys.argv,
    }


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.bool_):
            return bool(o)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _clean(o):
    """NaN / infinity -> None, recursively (JSON has neither)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = json.loads(json.dumps(obj, default=_json_default))
    path.write_text(json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n")
    return path


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fmt(x, spec=".3g", none="-"):
    """Format a number for a table; None / NaN -> ``none``."""
    if x is None:
        return none
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float) and not math.isfinite(x):
        return none
    if isinstance(x, (int, float)):
        return format(x, spec)
    return str(x)


def md_table(headers, rows, align=None):
    """A GitHub markdown table; ``align`` is a string of 'l'/'r' per column."""
    align = align or ("l" * len(headers))
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines) + "\n"
