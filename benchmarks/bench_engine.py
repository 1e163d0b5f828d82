"""The round engine: overhead per round, solver times before / after, killed workers.

One command, three parts (``--parts``), all on real ``LocalCluster``s of worker
processes, written to ``results/engine.{json,md}``:

1. **overhead**: the median round of CoCoA+ with 8 blocks and d = 50,000 whose
   compute is negligible (8 rows per block), on 2 worker processes and on 1,
   from the engine's history (``round_time``, and ``engine_time``: the
   client's own share, everything but waiting for the workers); and the same
   configuration run by the code of ``--baseline`` (a git revision, default
   the commit before the engine; run from a temporary ``git worktree`` in a
   subprocess), from the differences of its history's ``time``.
2. **before-after**: wall time, rounds and the certified gap of CoCoA+ on a9a
   (2 workers, 2 blocks, squared hinge, C = 0.1, tol 1e-5) and of
   Weston-Watkins on dna (2 workers, C = 0.1, tol 1e-3), by this code and by
   the baseline, in one run. JIT compile time is paid in a warm-up fit first.
3. **kill**: for each of cocoa, sgd (mushrooms), cs, ovr, llw, ww (dna), 3
   blocks, one undisturbed fit and ``--kills`` fits on 3 worker processes
   during which a thread kills one
   worker (``os._exit``) after a random delay in (0, 0.8 x the undisturbed
   fit's time); reports successes, recoveries and the spread of the final
   objectives against the undisturbed one (with the certified gaps).

Run from the repository root: ``python benchmarks/bench_engine.py``. The
numbers are one machine's, noisy on a shared machine: compare within a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DATA_DIR,
    RESULTS_DIR,
    env_info,
    fmt,
    loadavg,
    md_table,
    write_json,
    write_text,
)

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_DIR
BASELINE = "b1b7473"
KILL_SOLVERS = ("cocoa", "sgd", "cs", "ovr", "llw", "ww")


def _cluster(n_workers):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None, silence_logs=50)
    return cluster, Client(cluster)


def _load(name):
    import lzma

    import scipy.sparse as sp
    from sklearn.datasets import load_svmlight_file

    with lzma.open(DATA / name) as f:
        X, y = load_svmlight_file(f)
    X = sp.csr_matrix(X)
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X, y


def _solver(name):
    """``solve_<name>`` of whichever dasksvm is on the path (new registry or old modules)."""
    try:
        import dasksvm.solvers as s

        return getattr(s, f"solve_{name}")
    except (ImportError, AttributeError):
        import importlib

        return getattr(importlib.import_module(f"dasksvm.solvers.{name}"), f"solve_{name}")


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# --------------------------------------------------------------------------------------
# measurements (also run by the baseline's interpreter: only APIs both versions have)
# --------------------------------------------------------------------------------------


def measure_overhead(n_workers, rounds):
    import scipy.sparse as sp

    from dasksvm.parallel import BlockSet

    d, n = 50_000, 64
    rng = np.random.RandomState(0)
    # a column shared by every row, and random labels: the blocks interact and the
    # dual gap does not reach 0 within the measured rounds
    X = sp.hstack([np.ones((n, 1)), sp.random(n, d - 1, density=10 / d, random_state=rng)],
                  format="csr")
    y = np.where(rng.rand(n) > 0.5, 1.0, -1.0)
    cluster, client = _cluster(n_workers)
    try:
        blocks = BlockSet.from_arrays(client, X, y, n_blocks=8)
        solve = _solver("cocoa")
        _quiet(solve, blocks, C=10.0, tol=0.0, max_iter=5)  # JIT and connections warm
        res = _quiet(solve, blocks, C=10.0, tol=0.0, max_iter=rounds)
        hist = res.history
        times = np.diff([r["time"] for r in hist])
        out = {"n_workers": n_workers, "n_blocks": 8, "d": d, "rounds": len(hist),
               "median_round_s": float(np.median(times)),
               "n_tasks_per_round": hist[1]["n_tasks"], "bytes_per_round": hist[1]["bytes"]}
        if "engine_time" in hist[0]:
            out["median_engine_s"] = float(np.median([r["engine_time"] for r in hist[1:]]))
            out["median_round_time_s"] = float(np.median([r["round_time"] for r in hist[1:]]))
        return out
    finally:
        client.close()
        cluster.close()


def _timed_fit(data, solve, blocks, *args, **kw):
    """A JIT warm-up fit of 2 rounds, then the timed fit to ``tol`` (2000 rounds at most)."""
    _quiet(solve, blocks, *args, max_iter=2, random_state=0, **kw)
    t0 = time.perf_counter()
    res = _quiet(solve, blocks, *args, max_iter=2000, random_state=0, **kw)
    wall = time.perf_counter() - t0
    return {"data": data, "wall_s": wall, "rounds": res.n_iter, "rel_gap": res.rel_gap,
            "primal": res.primal, "converged": res.converged}


def measure_cocoa(tol):
    from dasksvm.parallel import BlockSet

    X, y = _load("a9a.xz")
    y = np.where(y > 0, 1.0, -1.0)
    perm = np.random.RandomState(0).permutation(X.shape[0])
    X, y = X[perm], y[perm]
    cluster, client = _cluster(2)
    try:
        blocks = BlockSet.from_arrays(client, X, y, n_blocks=2, intercept_scaling=1.0)
        return _timed_fit("a9a", _solver("cocoa"), blocks, C=0.1, tol=tol)
    finally:
        client.close()
        cluster.close()


def measure_ww(tol):
    from dasksvm.parallel import BlockSet

    X, y = _load("dna.scale.xz")
    classes, y = np.unique(y, return_inverse=True)
    cluster, client = _cluster(2)
    try:
        blocks = BlockSet.from_arrays(client, X, y.astype(float), n_blocks=2,
                                      intercept_scaling=1.0)
        return _timed_fit("dna", _solver("ww"), blocks, len(classes), C=0.1, tol=tol)
    finally:
        client.close()
        cluster.close()


# --------------------------------------------------------------------------------------
# the baseline, in its own interpreter
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def baseline_tree(rev):
    with tempfile.TemporaryDirectory(prefix="dasksvm-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)


def run_in(tree, what, *args):
    """Run ``measure_<what>(*args)`` with ``tree``'s dasksvm; its JSON result."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, __file__, "_measure", what, *map(str, args)],
                          env=env, cwd=str(tree), capture_output=True, text=True, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# kills at random moments
# --------------------------------------------------------------------------------------


def _kill_problem(name):
    """(X, y, fit kwargs, n_classes or None) of the kill benchmark for solver ``name``."""
    if name in ("cocoa", "sgd"):
        X, y = _load("mushrooms_agaricus.train.xz")
        y = np.where(y > 0, 1.0, -1.0)
        kw = {"C": 0.01, "tol": 1e-4, "max_iter": 3000} if name == "cocoa" else \
            {"C": 0.01, "tol": 1e-9, "max_iter": 60}
        return X, y, kw, None
    X, y = _load("dna.scale.xz")
    classes, y = np.unique(y, return_inverse=True)
    return X, y.astype(float), {"C": 0.1, "tol": 1e-3, "max_iter": 3000}, len(classes)


def measure_kills(n_kills, seed, solvers=KILL_SOLVERS):
    from dasksvm.parallel import BlockSet
    from dasksvm.solvers import solve

    rng = np.random.default_rng(seed)
    out = []
    cluster, client = _cluster(3)
    try:
        for name in solvers:
            X, y, kw, K = _kill_problem(name)
            blocks = BlockSet.from_arrays(client, X, y, n_blocks=3, intercept_scaling=1.0)
            _quiet(solve, name, blocks, K, **{**kw, "max_iter": 2})  # JIT warm-up
            t0 = time.perf_counter()
            ref = _quiet(solve, name, blocks, K, random_state=0, **kw)
            t_ref = time.perf_counter() - t0
            runs = []
            for _ in range(n_kills):
                client.wait_for_workers(3, timeout=120)
                delay = float(rng.uniform(0.0, 0.8 * t_ref))
                victim = str(rng.choice(sorted(client.nthreads())))
                timer = threading.Timer(delay, _exit_worker, args=(client, victim))
                timer.start()
                rec = {"delay_s": delay}
                try:
                    t1 = time.perf_counter()
                    res = _quiet(solve, name, blocks, K, random_state=0, **kw)
                    rec.update(ok=True, wall_s=time.perf_counter() - t1, primal=res.primal,
                               gap=res.gap, converged=res.converged,
                               recoveries=res.state.get("recoveries", 0),
                               rel_diff=abs(res.primal - ref.primal) / abs(ref.primal),
                               within_gaps=bool(abs(res.primal - ref.primal)
                                                <= res.gap + ref.gap + 1e-12 * abs(ref.primal)))
                except Exception as e:  # noqa: BLE001 - a failure is a result here
                    rec.update(ok=False, error=repr(e)[:300])
                timer.cancel()
                runs.append(rec)
                blocks.refresh()
            out.append({"solver": name, "ref_wall_s": t_ref, "ref_primal": ref.primal,
                        "ref_gap": ref.gap, "runs": runs})
            blocks.release()
    finally:
        client.close()
        cluster.close()
    return out


def _exit_worker(client, addr):
    with contextlib.suppress(Exception):
        client.run(os._exit, 1, workers=[addr])


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------


def render(res):
    lines = ["# Round engine benchmark", "",
             f"Command: `{res['command']}`; load average at start {res['loadavg']}.", ""]
    if "overhead" in res:
        lines += ["## Overhead per round (CoCoA+, 8 blocks, d = 50,000, negligible compute)",
                  ""]
        rows = []
        for who in ("engine", "baseline"):
            for r in res["overhead"].get(who, []):
                rows.append([who, r.get("n_workers"), fmt(1e3 * r.get("median_round_s", np.nan)),
                             fmt(1e3 * r["median_engine_s"]) if "median_engine_s" in r else "-",
                             r.get("n_tasks_per_round", "-"), r.get("bytes_per_round", "-"),
                             r.get("error", "")])
        lines.append(md_table(["code", "workers", "median round (ms)", "engine's own (ms)",
                           "tasks / round", "bytes / round", "error"], rows))
        lines.append("")
    if "before_after" in res:
        lines += ["## Before / after, same data, one run", ""]
        rows = []
        for who in ("engine", "baseline"):
            for r in res["before_after"].get(who, []):
                rows.append([who, r.get("data"), fmt(r.get("wall_s")), r.get("rounds"),
                             fmt(r.get("rel_gap")), fmt(r.get("primal"), ".10g"),
                             r.get("error", "")])
        lines.append(md_table(["code", "data", "wall (s)", "rounds", "rel gap", "primal",
                               "error"], rows))
        lines.append("")
    if "kills" in res:
        lines += ["## A worker killed at a random moment", ""]
        rows = []
        for s in res["kills"]:
            ok = [r for r in s["runs"] if r["ok"]]
            rows.append([s["solver"], f"{len(ok)}/{len(s['runs'])}",
                         sum(r.get("recoveries", 0) > 0 for r in ok),
                         sum(r.get("within_gaps", False) for r in ok),
                         fmt(max((r["rel_diff"] for r in ok), default=np.nan)),
                         fmt(s["ref_wall_s"]),
                         fmt(float(np.median([r["wall_s"] for r in ok])) if ok else np.nan)])
        lines.append(md_table(["solver", "completed", "recovered", "same optimum (within gaps)",
                               "max \\|P - P_ref\\| / P_ref", "undisturbed (s)",
                               "median killed (s)"], rows))
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["overhead", "before-after", "kill"],
                   choices=["overhead", "before-after", "kill"])
    p.add_argument("--rounds", type=int, default=200, help="overhead rounds, default 200")
    p.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    p.add_argument("--kills", type=int, default=10, help="killed fits per solver, default 10")
    p.add_argument("--solvers", nargs="+", default=list(KILL_SOLVERS), choices=KILL_SOLVERS,
                   help="solvers of the kill part (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS_DIR / "engine"))
    args = p.parse_args(argv)
    res = {"command": " ".join(["python", "benchmarks/bench_engine.py", *(argv or sys.argv[1:])]),
           "loadavg": loadavg(), "env": env_info(), "baseline": args.baseline}
    with baseline_tree(args.baseline) as tree:
        if "overhead" in args.parts:
            res["overhead"] = {
                "engine": [measure_overhead(n, args.rounds) for n in (2, 1)],
                "baseline": [run_in(tree, "overhead", n, args.rounds) for n in (2, 1)],
            }
        if "before-after" in args.parts:
            res["before_after"] = {
                "engine": [measure_cocoa(1e-5), measure_ww(1e-3)],
                "baseline": [run_in(tree, "cocoa", 1e-5), run_in(tree, "ww", 1e-3)],
            }
    if "kill" in args.parts:
        res["kills"] = measure_kills(args.kills, args.seed, args.solvers)
    write_json(Path(args.out + ".json"), res)
    text = render(res)
    write_text(Path(args.out + ".md"), text)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_measure":
        what, rest = sys.argv[2], sys.argv[3:]
        func = {"overhead": lambda n, r: measure_overhead(int(n), int(r)),
                "cocoa": lambda tol: measure_cocoa(float(tol)),
                "ww": lambda tol: measure_ww(float(tol))}[what]
        print(json.dumps(func(*rest), default=float))
    else:
        main()
