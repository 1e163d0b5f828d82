"""Benchmark: dasksvm's trust-region Newton solver against LIBLINEAR's primal TRON.

The problem is the scikit-learn / LIBLINEAR primal squared-hinge SVM with a regularized
intercept (formulations.md section 1d)

    P(w, b) = 1/2 (||w||^2 + b^2) + C sum_i max(0, 1 - y_i (w.x_i + b))^2,

intercept_scaling = 1. The methods:

* ``liblinear``: ``sklearn.svm.LinearSVC(loss="squared_hinge", dual=False)`` (LIBLINEAR's
  trust-region Newton, one thread) at its default tol 1e-4; its final primal P_LL is the
  target.
* ``newton-1w`` / ``newton-2w``: ``dasksvm.solvers.solve("newton", ...)`` on a real
  ``LocalCluster`` of 1 / 2 single-threaded worker processes, ``--blocks-per-worker`` row
  blocks per worker, built and persisted before the clock starts; ``tol`` (relative
  duality gap) ``--tol``.

Measured: time to reach P_LL (1 + 1e-6) (dasksvm: the ``time`` of the first history record
whose primal is that low, counted from the start of the solver; LIBLINEAR: its whole fit),
time to a certified relative gap of 1e-6, the whole solve, rounds, Newton iterations, CG
steps, bytes per round, and the final (P - P_LL) / P_LL, every primal recomputed here from
the returned coefficients. The numba JIT cost of a first tiny fit on each fresh cluster is
reported apart (a tiny fit run twice: the difference). The final dual value D of the
dasksvm fit bounds P* from below, so (P_LL - D) / P_LL bounds how far LIBLINEAR's own answer
is from the optimum.

Datasets: a9a (``/work/shared/data/a9a.xz``) and a generated sparse set
(``dasksvm.datasets.make_classification(200_000, 100_000, nnz_per_row=50)``; ``--scale``
shrinks n and d).

Results: ``benchmarks/results/newton.json`` and ``newton.md``.

Usage::

    python benchmarks/bench_newton.py [--datasets a9a sparse] [--C 1.0] [--workers 1 2]
        [--scale 1.0] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (
    DATA_DIR,
    RESULTS_DIR,
    SLACK,
    PeakRSS,
    Timer,
    env_info,
    fmt,
    loadavg,
    md_table,
    write_json,
    write_text,
)

GAP = 1e-6  # the certified relative gap also reported
SPARSE = {"n": 200_000, "d": 100_000, "nnz_per_row": 50}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]}]", *a, flush=True)


def primal(X, y_pm, w, b, C):
    """1/2 (||w||^2 + b^2) + C sum max(0, 1 - y (Xw + b))^2."""
    m = 1.0 - y_pm * (np.asarray(X @ w).ravel() + b)
    np.maximum(m, 0.0, out=m)
    return 0.5 * (float(w @ w) + b * b) + C * float(m @ m)


def first(history, test):
    """(time, round) of the first record passing ``test``, else (None, None)."""
    for rec in history:
        if test(rec):
            return rec["time"], rec["round"]
    return None, None


# --------------------------------------------------------------------------- data


def load(name, args):
    """An in-memory dataset: CSR X (int32 indices), y in {-1, +1}, its description."""
    import dask

    with Timer() as t:
        if name == "a9a":
            from dasksvm.datasets import load_svmlight

            X, y = dask.compute(*load_svmlight(DATA_DIR / "a9a.xz", n_features=123),
                                scheduler="threads")
            source = "a9a.xz (LIBSVM), 123 features"
        elif name == "sparse":
            from dasksvm.datasets import make_classification

            n = max(1000, round(SPARSE["n"] * args.scale))
            d = max(100, round(SPARSE["d"] * args.scale))
            Xd, yd = make_classification(n, d, nnz_per_row=SPARSE["nnz_per_row"],
                                         chunks=-(-n // 4), random_state=args.seed)
            X, y = dask.compute(Xd, yd, scheduler="threads")
            source = (f"make_classification({n}, {d}, nnz_per_row={SPARSE['nnz_per_row']}, "
                      f"random_state={args.seed}) (full size {SPARSE['n']} x {SPARSE['d']}, "
                      f"scale {args.scale})")
        else:
            raise SystemExit(f"unknown dataset {name!r}")
    X = sp.csr_matrix(X, dtype=np.float64)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    y = np.asarray(y)
    classes = np.unique(y)
    y_pm = np.where(y == classes[1], 1.0, -1.0)
    log(f"{name}: {X.shape[0]} x {X.shape[1]}, nnz {X.nnz}, prepared in {t.elapsed:.1f}s")
    return {"name": name, "X": X, "y": y_pm, "n": X.shape[0], "d": X.shape[1],
            "nnz": int(X.nnz), "source": source, "prepare_s": t.elapsed}


# --------------------------------------------------------------------------- methods


def run_liblinear(ds, args):
    from sklearn.svm import LinearSVC

    clf = LinearSVC(C=args.C, loss="squared_hinge", dual=False, max_iter=1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with PeakRSS({"main": os.getpid()}) as mem, Timer() as t:
            clf.fit(ds["X"], ds["y"])
    converged = not any("converge" in str(c.message).lower() for c in caught)
    p = primal(ds["X"], ds["y"], clf.coef_.ravel(), float(clf.intercept_[0]), args.C)
    return {"dataset": ds["name"], "method": "liblinear", "primal": p, "rel_objective": 0.0,
            "fit_s": t.elapsed, "time_to_target_s": t.elapsed,
            "newton_iter": int(np.max(clf.n_iter_)), "converged": converged,
            "loadavg": loadavg(), **mem.summary()}


def _tiny_blocks(client, K, seed):
    from dasksvm.parallel import BlockSet

    rng = np.random.RandomState(seed)
    X = sp.random(400, 50, density=0.1, format="csr", random_state=rng)
    y = np.where(rng.rand(400) > 0.5, 1.0, -1.0)
    return BlockSet.from_arrays(client, X, y, n_blocks=K, intercept_scaling=1.0, name="tiny")


def warm_jit(client, K, seed):
    """A tiny newton fit twice on a fresh cluster: the first pays numba's cache load (or
    compile) in the workers, the second does not."""
    from dasksvm.solvers import solve

    blocks = _tiny_blocks(client, K, seed)
    times = []
    for _ in range(2):
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solve("newton", blocks, C=1.0, tol=0.0, max_iter=5)
        times.append(t.elapsed)
    blocks.release()
    return {"first_tiny_fit_s": times[0], "second_tiny_fit_s": times[1],
            "jit_s": times[0] - times[1]}


def run_newton(client, worker_pids, ds, args, p_ref, label, K):
    from dasksvm.parallel import BlockSet, to_dense
    from dasksvm.solvers import solve

    with Timer() as tb:
        blocks = BlockSet.from_arrays(client, ds["X"], ds["y"], n_blocks=K,
                                      intercept_scaling=1.0, name=f"{ds['name']}-data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakRSS(worker_pids) as mem, Timer() as t:
                res = solve("newton", blocks, C=args.C, tol=args.tol, max_iter=args.max_iter)
    finally:
        blocks.release()
    hist = res.history
    bound = p_ref * (1.0 + SLACK)
    t_hit, r_hit = first(hist, lambda r: r["primal"] <= bound)
    t_gap, r_gap = first(hist, lambda r: r["rel_gap"] <= GAP)
    coef = to_dense(res.coef)
    p = primal(ds["X"], ds["y"], coef[:-1], float(coef[-1]), args.C)
    solve_s = hist[-1]["time"]
    rounds = len(hist) - 1
    f_rounds = [r for r in hist if r["round_kind"] == "f"]
    hv_rounds = [r for r in hist if r["round_kind"] == "hv"]
    at = hist[r_hit] if r_hit is not None else None
    return {
        "dataset": ds["name"], "method": label, "n_workers": len(worker_pids), "n_blocks": K,
        "primal": p, "rel_objective": (p - p_ref) / p_ref, "reported_primal": res.primal,
        "dual": res.dual, "rel_gap": res.rel_gap, "converged": res.converged,
        "fit_s": t.elapsed, "solver_s": solve_s, "block_build_s": tb.elapsed,
        "time_to_target_s": t_hit, "round_at_target": r_hit,
        "newton_iter_at_target": None if at is None else at["newton_iter"],
        "time_to_gap_s": t_gap, "round_at_gap": r_gap,
        "rounds": rounds, "newton_iter": res.state["newton_iter"],
        "cg_iter": res.state["cg_iter"], "s_per_round": solve_s / max(rounds, 1),
        "bytes_per_f_round": float(np.median([r["bytes"] for r in f_rounds])),
        "bytes_per_hv_round": (float(np.median([r["bytes"] for r in hv_rounds]))
                               if hv_rounds else None),
        "engine_ms_per_round": 1e3 * float(np.median([r["engine_time"] for r in hist])),
        "loadavg": loadavg(), **mem.summary(),
        "history": [{"round": r["round"], "kind": r["round_kind"], "time": round(r["time"], 4),
                     "primal": r["primal"], "rel_gap": r["rel_gap"], "bytes": r["bytes"]}
                    for r in hist],
    }


def run_dask_phase(datasets, refs, args, results):
    from distributed import Client, LocalCluster

    env = {}
    for nw in args.workers:
        K = nw * args.blocks_per_worker
        label = f"newton-{nw}w"
        with Timer() as tc:
            cluster = LocalCluster(n_workers=nw, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        worker_pids = dict(client.run(os.getpid))
        log(f"cluster {nw} worker(s) up in {tc.elapsed:.1f}s")
        jit = warm_jit(client, K, args.seed)
        log(f"  JIT: first tiny fit {jit['first_tiny_fit_s']:.2f}s, "
            f"second {jit['second_tiny_fit_s']:.2f}s")
        env[f"{nw}w"] = {"cluster_start_s": tc.elapsed, "n_blocks": K, **jit}
        for ds in datasets:
            rec = run_newton(client, worker_pids, ds, args, refs[ds["name"]], label, K)
            results.append(rec)
            log(f"  {label} {ds['name']}: t_target {fmt(rec['time_to_target_s'])}s "
                f"(round {rec['round_at_target']}), t_gap {fmt(rec['time_to_gap_s'])}s, "
                f"solve {rec['solver_s']:.2f}s, rounds {rec['rounds']}, newton "
                f"{rec['newton_iter']}, cg {rec['cg_iter']}, rel_obj {rec['rel_objective']:.2e}")
        client.close()
        cluster.close()
        gc.collect()
    return env


# --------------------------------------------------------------------------- report


def markdown(payload):
    env, cfg, res = payload["environment"], payload["config"], payload["results"]
    lines = ["# Trust-region Newton benchmark: dasksvm newton vs LIBLINEAR (primal TRON)\n"]
    lines.append(
        f"Run {env['date']} on {env['cpu_count']} cores / {env['memory_gib']} GiB, a machine "
        f"shared with other work: load average at start {env['loadavg_start']}, at end "
        f"{payload['loadavg_end']} (every row also records the load average when it ended). "
        f"Command: `{' '.join(cfg['command'])}`. Total wall time {payload['total_s']:.0f} s.\n")
    lines.append(
        f"Squared hinge, C = {cfg['C']}, intercept regularized (scaling 1). LIBLINEAR = "
        "`sklearn.svm.LinearSVC(dual=False)` at its default tol 1e-4, one thread; its final "
        f"primal is P_LL. dasksvm: `solve(\"newton\", ...)`, tol = {cfg['tol']} (relative "
        f"duality gap), {cfg['blocks_per_worker']} block(s) per single-threaded worker "
        "process; its times are the solver's clock (blocks already persisted), counted from "
        f"the start of the fit. 'to P_LL' = first record with P <= P_LL (1 + {SLACK:g}); "
        f"'to gap' = first record with a certified relative gap <= {GAP:g}.\n")
    lines.append("## Data\n")
    rows = [[d["name"], d["source"], f"{d['n']:,}", f"{d['d']:,}", f"{d['nnz']:,}"]
            for d in payload["datasets"]]
    lines.append(md_table(["dataset", "source", "n", "d", "nnz"], rows, "llrrr"))
    lines.append("\n## Results\n")
    hdr = ["dataset", "method", "time to P_LL (s)", f"to gap {GAP:g} (s)", "solve / fit (s)",
           "rounds to P_LL / all", "Newton iters", "CG steps", "s/round", "bytes/round f, Hv",
           "rel obj final", "load avg after"]
    rows = []
    for r in res:
        dask_run = r["method"] != "liblinear"
        rows.append([
            r["dataset"], r["method"], fmt(r.get("time_to_target_s"), ".3g", "not reached"),
            fmt(r.get("time_to_gap_s"), ".3g", "not reached") if dask_run else "-",
            fmt(r.get("solver_s", r["fit_s"]), ".3g"),
            f"{fmt(r.get('round_at_target'), 'd')} / {r['rounds']}" if dask_run else "-",
            (f"{fmt(r.get('newton_iter_at_target'), 'd')} / {r['newton_iter']}" if dask_run
             else fmt(r["newton_iter"], "d")),
            fmt(r.get("cg_iter"), "d"), fmt(r.get("s_per_round"), ".3f"),
            (f"{fmt(r['bytes_per_f_round'], '.3g')}, {fmt(r['bytes_per_hv_round'], '.3g')}"
             if dask_run else "-"),
            fmt(r.get("rel_objective"), ".2e"), fmt(r["loadavg"][0], ".2f"),
        ])
    lines.append(md_table(hdr, rows, "llrrrrrrrrrr"))
    lines.append("\nNewton iters for dasksvm: at P_LL / at the end (accepted steps); LIBLINEAR: "
                 "its iterations. bytes/round: what one evaluation round (f) and one CG round "
                 "(Hv) moved, both ways, all workers.\n")
    certs = [r for r in res if r["method"] != "liblinear"]
    if certs:
        lines.append("\n## How far LIBLINEAR's answer is from the optimum\n")
        rows = []
        for ds in payload["datasets"]:
            mine = [r for r in certs if r["dataset"] == ds["name"]]
            if not mine:
                continue
            best = max(mine, key=lambda r: r["dual"])
            p_ll = payload["references"][ds["name"]]
            rows.append([ds["name"], f"{p_ll:.10g}", f"{best['dual']:.10g}",
                         fmt((p_ll - best["dual"]) / p_ll, ".2e")])
        lines.append(md_table(["dataset", "P_LL", "dasksvm's dual D (<= P*)",
                               "(P_LL - D) / P_LL"], rows, "lrrr"))
    lines.append("\n## Fixed costs\n")
    rows = [[k, fmt(v["cluster_start_s"], ".2f"), fmt(v["first_tiny_fit_s"], ".2f"),
             fmt(v["second_tiny_fit_s"], ".2f"), fmt(v["jit_s"], ".2f")]
            for k, v in env.get("dask", {}).items()]
    if rows:
        lines.append(md_table(["cluster", "LocalCluster start (s)", "tiny fit, first (s)",
                               "same, second (s)", "JIT (s) = difference"], rows, "lrrrr"))
    block_rows = [[r["dataset"], r["method"], fmt(r["block_build_s"], ".2f"),
                   fmt(r.get("peak_mib"), ".0f")] for r in certs]
    if block_rows:
        lines.append("\n")
        lines.append(md_table(["dataset", "method", "blocks built + persisted (s, untimed)",
                               "peak worker RSS (MiB)"], block_rows, "llrr"))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["a9a", "sparse"])
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--blocks-per-worker", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="scale 0.05, for a smoke test")
    p.add_argument("--tag", default="newton", help="results file name stem")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, 0.05)
    t_start = time.perf_counter()
    env = env_info()
    datasets = [load(name, args) for name in args.datasets]
    results, refs = [], {}
    for ds in datasets:
        rec = run_liblinear(ds, args)
        refs[ds["name"]] = rec["primal"]
        results.append(rec)
        log(f"liblinear {ds['name']}: fit {rec['fit_s']:.2f}s, {rec['newton_iter']} iterations, "
            f"P_LL {rec['primal']:.10g}")
    env["dask"] = run_dask_phase(datasets, refs, args, results)
    payload = {
        "environment": env,
        "config": {"C": args.C, "tol": args.tol, "max_iter": args.max_iter,
                   "blocks_per_worker": args.blocks_per_worker, "workers": args.workers,
                   "scale": args.scale, "seed": args.seed, "slack": SLACK, "gap": GAP,
                   "command": ["python", "benchmarks/bench_newton.py", *sys.argv[1:]]},
        "datasets": [{k: v for k, v in d.items() if k not in ("X", "y")} for d in datasets],
        "references": refs,
        "results": results,
        "loadavg_end": loadavg(),
        "total_s": time.perf_counter() - t_start,
    }
    write_json(args.results_dir / f"{args.tag}.json", payload)
    write_text(args.results_dir / f"{args.tag}.md", markdown(payload))
    log(f"wrote {args.results_dir / (args.tag + '.json')} and .md")


if __name__ == "__main__":
    main()
