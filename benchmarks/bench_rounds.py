"""Benchmark: rounds and time of CoCoA+ on text-like data of 2 x 10^7 non-zeros, by cluster
shape, against LIBLINEAR (the fewer-rounds issue's first target).

Data: ``dasksvm.datasets.make_classification(400_000, 200_000, nnz_per_row=50)`` (``--n``,
``--d``, ``--nnz``), held in memory as CSR and cut into one row block per worker thread,
persisted before any clock starts. The problem is LIBLINEAR's primal with a regularized
intercept (formulations.md section 1)

    P(w, b) = 1/2 (||w||^2 + b^2) + C sum_i loss(y_i (w.x_i + b)),

for loss in {hinge, squared hinge} and C in ``--Cs``.

Methods:

* ``liblinear``: ``sklearn.svm.LinearSVC(dual=True)`` at its default tol, and for the
  squared hinge also ``dual=False`` (LIBLINEAR's primal Newton, what scikit-learn's
  ``dual="auto"`` picks when rows outnumber columns). The faster of the two is the peer:
  its final primal P_LL is the target and its fit time the unit.
* ``cocoa WxT``: ``dasksvm.solvers.solve("cocoa", ...)`` on a real ``LocalCluster`` of W
  worker processes of T threads (``--shapes``; 1x2 is the documented one-machine shape),
  one block per thread, shrinking on; ``--ablation`` adds the 1x2 shape with shrinking off.
  Shapes of several workers run once per ``--aggregations`` entry (how the workers'
  changes combine: CoCoA+ ``add``, the ``exact`` step of formulations.md 1c,
  ``momentum``; default: the library's default), and once with the worker processes
  of the host sharing one view (``share="host"``, ``--shares``; they are then one part).
  A fit stops once its primal is within 1e-4 of P_LL and its certified relative gap is
  <= 1e-4 (or at ``--max-iter`` rounds).

Measured: time (solver clock, from the history) and rounds to P <= P_LL (1 + 1e-4) and to
a certified gap <= 1e-4, their ratio to the peer's fit time, seconds per round, the rows
the local passes visited in the last round (shrinking). Cluster start and the numba JIT
of a first tiny fit on each cluster are reported apart.

Results: ``benchmarks/results/rounds.json`` and ``rounds.md``.

Usage::

    python benchmarks/bench_rounds.py [--shapes 1x1 1x2 2x1 4x1] [--Cs 0.1 1]
        [--losses squared_hinge hinge] [--aggregations add exact momentum]
        [--shares worker host] [--ablation]
        [--n 400000 --d 200000 --nnz 50]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS_DIR, Timer, env_info, fmt, loadavg, md_table, write_json, write_text

REACH = 1e-4  # "reached": P <= P_LL (1 + REACH), and the certified gap to stop at


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]}]", *a, flush=True)


def primal(X, y, w, b, C, loss):
    m = np.maximum(1.0 - y * (np.asarray(X @ w).ravel() + b), 0.0)
    return 0.5 * (float(w @ w) + b * b) + C * float(m @ m if loss == "squared_hinge"
                                                    else m.sum())


def make_data(args):
    import dask

    from dasksvm.datasets import make_classification

    with Timer() as t:
        Xd, yd = make_classification(args.n, args.d, nnz_per_row=args.nnz,
                                     chunks=-(-args.n // 4), random_state=args.seed)
        X, y = dask.compute(Xd, yd, scheduler="threads")
    X = sp.csr_matrix(X, dtype=np.float64)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    y = np.where(np.asarray(y) > 0, 1.0, -1.0)
    log(f"data {X.shape[0]} x {X.shape[1]}, nnz {X.nnz}, made in {t.elapsed:.1f}s")
    return X, y, {"n": X.shape[0], "d": X.shape[1], "nnz": int(X.nnz),
                  "source": f"make_classification({args.n}, {args.d}, nnz_per_row={args.nnz}, "
                            f"random_state={args.seed})", "make_s": t.elapsed}


def run_liblinear(X, y, C, loss):
    from sklearn.svm import LinearSVC

    out = []
    for dual in ((True, False) if loss == "squared_hinge" else (True,)):
        clf = LinearSVC(C=C, loss=loss, dual=dual, max_iter=100_000)
        with warnings.catch_warnings(), Timer() as t:
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        p = primal(X, y, clf.coef_.ravel(), float(clf.intercept_[0]), C, loss)
        out.append({"method": f"liblinear dual={dual}", "fit_s": t.elapsed, "primal": p,
                    "n_iter": int(np.max(clf.n_iter_))})
        log(f"C={C} {loss} {out[-1]['method']}: {t.elapsed:.2f}s P={p:.6f}")
    return out


def _tiny_fit(client, n_blocks):
    from dasksvm.parallel import BlockSet
    from dasksvm.solvers import solve

    rng = np.random.RandomState(0)
    Xs = sp.random(400, 50, density=0.1, format="csr", random_state=rng)
    ys = np.where(rng.rand(400) > 0.5, 1.0, -1.0)
    blocks = BlockSet.from_arrays(client, Xs, ys, n_blocks=n_blocks, name="tiny")
    times = []
    for _ in range(2):
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for loss in ("hinge", "squared_hinge"):
                solve("cocoa", blocks, C=1.0, tol=0.0, max_iter=3, loss=loss)
        times.append(t.elapsed)
    blocks.release()
    return times[0] - times[1]


def run_cocoa(blocks, case, p_ref, t_ref, args, shrinking, aggregation, share):
    from dasksvm.solvers import solve

    C, loss = case
    target = p_ref * (1.0 + REACH)

    def stop(rec):  # reached and certified: nothing more to measure
        return not (rec["primal"] <= target and rec["rel_gap"] <= REACH)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = solve("cocoa", blocks, C=C, loss=loss, tol=REACH, max_iter=args.max_iter,
                    shrinking=shrinking, aggregation=aggregation, share=share, random_state=0,
                    callback=stop)
    h = res.history
    hit = next((r for r in h if r["primal"] <= target), None)
    cert = next((r for r in h if r["rel_gap"] <= REACH), None)
    n_rounds = len(h) - 1
    return {"time_to_target_s": hit and hit["time"], "rounds_to_target": hit and hit["round"],
            "time_to_gap_s": cert and cert["time"], "rounds_to_gap": cert and cert["round"],
            "ratio": hit and hit["time"] / t_ref, "rounds": n_rounds,
            "s_per_round": h[-1]["time"] / max(1, n_rounds), "final_rel_gap": h[-1]["rel_gap"],
            "final_rel_objective": h[-1]["primal"] / p_ref - 1.0,
            "active_rows_last": h[-1].get("active_rows")}


def run_shape(shape, X, y, cases, refs, args, results, shrinking=True):
    """Every case on a fresh cluster of ``shape``, once per aggregation when it has
    several workers."""
    from distributed import Client, LocalCluster

    from dasksvm.parallel import BlockSet

    nw, nt = (int(v) for v in shape.split("x"))
    with Timer() as ts:
        cluster = LocalCluster(n_workers=nw, threads_per_worker=nt, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        jit = _tiny_fit(client, nw * nt)
        with Timer() as tb:
            blocks = BlockSet.from_arrays(client, X, y, n_blocks=nw * nt, intercept_scaling=1.0,
                                          name="rounds-data")
        log(f"cocoa {shape}: cluster {ts.elapsed:.1f}s, JIT {jit:.1f}s, "
            f"blocks {tb.elapsed:.1f}s")
        # several workers: each aggregation with the workers apart, and (one part) the
        # host's processes sharing one view
        ways = [(a, "worker") for a in args.aggregations] if nw > 1 else [
            (args.aggregations[0], "worker")]
        if nw > 1 and "host" in args.shares:
            ways = [w for w in ways if "worker" in args.shares] + [
                (args.aggregations[0], "host")]
        for (aggregation, share), case in ((w, c) for w in ways for c in cases):
            how = "shared host" if share == "host" else aggregation
            label = (f"cocoa {shape}" + (f" {how}" if nw > 1 else "")
                     + ("" if shrinking else " no shrinking"))
            ref = refs[case]
            r = run_cocoa(blocks, case, ref["primal"], ref["fit_s"], args, shrinking,
                          aggregation, share)
            r.update({"method": label, "C": case[0], "loss": case[1], "shape": shape,
                      "shrinking": shrinking, "aggregation": aggregation, "share": share,
                      "cluster_start_s": ts.elapsed, "jit_s": jit, "loadavg": loadavg()})
            results.append(r)
            log(f"{label} C={case[0]} {case[1]}: target at {fmt(r['time_to_target_s'])}s "
                f"(round {r['rounds_to_target']}, {fmt(r['ratio'])}x LIBLINEAR), gap 1e-4 at "
                f"{fmt(r['time_to_gap_s'])}s, {r['rounds']} rounds, "
                f"{r['s_per_round']:.3f} s/round, active {r['active_rows_last']}")
        blocks.release()
    finally:
        client.close()
        cluster.close()


def markdown(payload):
    env, res = payload["env"], payload["results"]
    lines = [
        "# CoCoA+ rounds and time by cluster shape, against LIBLINEAR",
        "",
        f"Run {payload['started']} on {env.get('cpu_count')} cores (shared machine; load "
        f"average at start {payload['load_start']}, at end {payload['load_end']}). Command: "
        f"`{payload['command']}`. Total wall time {payload['wall_s']:.0f} s.",
        "",
        f"Data: {payload['data']['source']}: {payload['data']['n']:,} x "
        f"{payload['data']['d']:,}, {payload['data']['nnz']:,} non-zeros, CSR in memory, one "
        "row block per worker thread. Target: P <= P_LL (1 + 1e-4), P_LL the final primal "
        "of the faster LIBLINEAR; ratio = dasksvm's time to the target (solver clock, data "
        "persisted) / that LIBLINEAR's whole fit. Cluster start and JIT apart.",
        "",
        "## LIBLINEAR",
        "",
        md_table(["C", "loss", "method", "fit (s)", "iterations", "primal", "peer"],
                 [[r["C"], r["loss"], r["method"], fmt(r["fit_s"]), r["n_iter"],
                   f"{r['primal']:.6f}", fmt(r["peer"])] for r in payload["liblinear"]],
                 "llllrrl"),
        "",
        "## dasksvm CoCoA+",
        "",
        md_table(["C", "loss", "method", "to target (s)", "ratio", "rounds to target",
                  "to gap 1e-4 (s)", "rounds to gap", "s/round", "rows visited (last round)",
                  "cluster start (s)", "JIT (s)"],
                 [[r["C"], r["loss"], r["method"], fmt(r["time_to_target_s"]),
                   fmt(r["ratio"]), fmt(r["rounds_to_target"]), fmt(r["time_to_gap_s"]),
                   fmt(r["rounds_to_gap"]), fmt(r["s_per_round"]), fmt(r["active_rows_last"]),
                   fmt(r["cluster_start_s"]), fmt(r["jit_s"])] for r in res],
                 "lllrrrrrrrrr"),
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--d", type=int, default=200_000)
    ap.add_argument("--nnz", type=float, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--Cs", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--losses", nargs="+", default=["squared_hinge", "hinge"],
                    choices=["squared_hinge", "hinge"])
    ap.add_argument("--shapes", nargs="+", default=["1x1", "1x2", "2x1", "4x1"])
    from dasksvm.solvers import cocoa  # noqa: F401  (registers "cocoa")
    from dasksvm.solvers.cocoa import AGGREGATIONS
    from dasksvm.solvers.registry import SOLVERS

    ap.add_argument("--aggregations", nargs="+", choices=list(AGGREGATIONS),
                    default=[SOLVERS["cocoa"].params["aggregation"].default])
    ap.add_argument("--shares", nargs="+", choices=["worker", "host"],
                    default=["worker", "host"],
                    help="several workers: apart (each aggregation), and/or sharing one "
                         "view per host (share='host')")
    ap.add_argument("--ablation", action="store_true",
                    help="also the 1x2 shape with shrinking off")
    ap.add_argument("--max-iter", type=int, default=400)
    ap.add_argument("--out", default=str(RESULTS_DIR / "rounds"))
    args = ap.parse_args(argv)
    started, load_start, t0 = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), loadavg(), \
        time.perf_counter()
    X, y, data = make_data(args)
    cases = [(C, loss) for C in args.Cs for loss in args.losses]
    liblinear, refs = [], {}
    for case in cases:
        runs = run_liblinear(X, y, *case)
        peer = min(runs, key=lambda r: r["fit_s"])
        for r in runs:
            liblinear.append({**r, "C": case[0], "loss": case[1], "peer": r is peer})
        refs[case] = peer
    results = []
    for shape in args.shapes:
        run_shape(shape, X, y, cases, refs, args, results)
    if args.ablation:
        run_shape("1x2", X, y, cases, refs, args, results, shrinking=False)
    payload = {"started": started, "load_start": load_start, "load_end": loadavg(),
               "wall_s": time.perf_counter() - t0, "env": env_info(),
               "command": "python benchmarks/bench_rounds.py " + " ".join(argv or sys.argv[1:]),
               "data": data, "liblinear": liblinear, "results": results}
    write_json(args.out + ".json", payload)
    write_text(args.out + ".md", markdown(payload))
    log(f"wrote {args.out}.json and .md")


if __name__ == "__main__":
    main()
