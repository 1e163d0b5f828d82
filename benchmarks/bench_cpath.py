"""Benchmark: a regularization path over 8 values of C, warm-started vs cold, vs LIBLINEAR.

The problem at every C is the scikit-learn / LIBLINEAR primal squared-hinge SVM with a
regularized intercept (formulations.md section 1)

    P(w, b) = 1/2 (||w||^2 + b^2) + C sum_i max(0, 1 - y_i (w.x_i + b))^2,

intercept_scaling = 1, at the values of LIBLINEAR's ``-C`` search grid 2^k (``--log2-C``,
default k = -9 .. -2, 8 values). The methods, at each C:

* ``path-<solver>``: ``dasksvm.C_path(LinearSVC(solver=<solver>), X, y, Cs)``: the fits in
  increasing C, each warm-started from the previous one (the duals scaled by C / C_old,
  or Newton's previous w); the time of each fit is read off its history (the last
  record's ``time``, from the solver's start) and the whole path is timed too (blocks
  built per fit, as a user's fit does);
* ``cold-<solver>``: ``LinearSVC(solver=<solver>, C=C).fit(X, y)``, one cold fit per C;
* ``liblinear``: ``sklearn.svm.LinearSVC(C=C)`` at scikit-learn's defaults (squared hinge,
  ``dual="auto"``: the primal TRON for n > d, tol 1e-4, one thread), one cold fit per C.

dasksvm runs at the LinearSVC defaults (tol 1e-3 on the relative duality gap, max_iter
1000, random_state 0 so that every fit deals the rows over the same blocks) on a real
``LocalCluster`` of ``--workers`` single-threaded worker processes, started before the
clock (its start is reported apart). The numba JIT (cache load or compile in the
workers) is paid by a first tiny fit and reported apart (a tiny fit twice: the
difference). Every primal is recomputed here from the returned coefficients; the tables
give each method's (P - P_LL) / P_LL at each C (dasksvm is certified to a relative gap of
1e-3, so a positive difference up to 1e-3 is within its tolerance).

Datasets: a9a and w8a (``$DASKSVM_DATA``), rows shuffled once (the files are sorted by
label).

Results: ``benchmarks/results/cpath.json`` and ``cpath.md``.

Usage::

    flock /tmp/dasksvm-bench.lock python benchmarks/bench_cpath.py [--datasets a9a w8a]
        [--log2-C -9 -8 ... -2] [--solvers cocoa newton] [--workers 2]
"""

from __future__ import annotations

import argparse
import lzma
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    DATA_DIR,
    RESULTS_DIR,
    Timer,
    env_info,
    fmt,
    loadavg,
    md_table,
    write_json,
    write_text,
)

FILES = {"a9a": "a9a.xz", "w8a": "w8a.xz"}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]}]", *a, flush=True)


def load(name, data_dir):
    from sklearn.datasets import load_svmlight_file

    with lzma.open(Path(data_dir) / FILES[name]) as f:
        X, y = load_svmlight_file(f)
    X = sp.csr_matrix(X, dtype=np.float64)
    perm = np.random.RandomState(0).permutation(X.shape[0])
    return {"name": name, "X": X[perm], "y": y[perm]}


def primal(X, y, coef, intercept, C):
    ypm = np.where(y == np.max(y), 1.0, -1.0)
    m = np.maximum(0.0, 1.0 - ypm * (X @ coef + intercept))
    return 0.5 * (coef @ coef + intercept * intercept) + C * float(m @ m)


def run_liblinear(ds, Cs):
    from sklearn.svm import LinearSVC

    out = []
    for C in Cs:
        clf = LinearSVC(C=C)
        with warnings.catch_warnings(record=True) as caught, Timer() as t:
            warnings.simplefilter("always")
            clf.fit(ds["X"], ds["y"])
        out.append({"C": C, "fit_s": t.elapsed, "n_iter": int(np.max(clf.n_iter_)),
                    "converged": not any("converge" in str(c.message).lower()
                                         for c in caught),
                    "primal": primal(ds["X"], ds["y"], clf.coef_.ravel(),
                                     float(clf.intercept_[0]), C)})
    return out


def _record(ds, model, C, fit_s):
    return {"C": C, "fit_s": fit_s, "solve_s": float(model.history_[-1]["time"]),
            "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
            "rel_gap": float(model.rel_gap_),
            "primal": primal(ds["X"], ds["y"], model.coef_.ravel(),
                             float(model.intercept_[0]), C)}


def run_dasksvm(ds, Cs, solver, client):
    import dasksvm

    est = dasksvm.LinearSVC(solver=solver, random_state=0, client=client)
    with warnings.catch_warnings(record=True), Timer() as t:
        warnings.simplefilter("always")
        models = dasksvm.C_path(est, ds["X"], ds["y"], Cs)
    path = [_record(ds, m, C, None) for m, C in zip(models, Cs, strict=True)]
    cold = []
    for C in Cs:
        with warnings.catch_warnings(record=True), Timer() as tc:
            warnings.simplefilter("always")
            m = dasksvm.LinearSVC(solver=solver, C=C, random_state=0, client=client)
            m.fit(ds["X"], ds["y"])
        cold.append(_record(ds, m, C, tc.elapsed))
    return {"path": path, "path_total_s": t.elapsed, "cold": cold,
            "cold_total_s": sum(r["fit_s"] for r in cold)}


def warm_jit(client):
    """A tiny fit of each solver twice on the fresh cluster: the first pays numba's cache
    load (or compile) in the workers, the second does not."""
    import dasksvm

    rng = np.random.RandomState(0)
    X = sp.random(400, 50, density=0.1, format="csr", random_state=rng)
    y = np.where(rng.rand(400) > 0.5, 1.0, -1.0)
    times = []
    for _ in range(2):
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for solver in ("cocoa", "newton"):
                dasksvm.LinearSVC(solver=solver, max_iter=5, client=client).fit(X, y)
        times.append(t.elapsed)
    return {"first_tiny_fit_s": times[0], "second_tiny_fit_s": times[1],
            "jit_s": times[0] - times[1]}


def rel(p, ref):
    return (p - ref) / abs(ref)


def markdown(payload):
    env = payload["env"]
    lines = [
        "# Regularization path: warm starts vs cold fits vs LIBLINEAR\n\n",
        f"Command: `{' '.join(env['argv'])}` ({env['date']}, {env['cpu_count']} CPUs, "
        f"shared with other work: load average at start {env['loadavg_start']}, at end "
        f"{payload['loadavg_end']}). dasksvm: `LinearSVC` defaults (squared hinge, tol 1e-3 "
        f"relative duality gap), {payload['workers']} worker processes x 1 thread; "
        "LIBLINEAR: `sklearn.svm.LinearSVC(C)` defaults (primal TRON, tol 1e-4). "
        f"C = 2^k, k = {payload['log2_C']}, the path in increasing C. The totals and "
        "`cold fit (s)` include building the blocks of each fit; `warm solve (s)` and "
        "`solve (s)` are the solver's own time (its last history record). Rounds: "
        "`n_iter_`. JIT and cluster start are apart (last table).\n",
    ]
    for name, d in payload["datasets"].items():
        ll = d["liblinear"]
        lines.append(f"\n## {name} ({d['n']} x {d['d']})\n\n")
        heads = ["method", "total (s)"]
        totals = [["liblinear (cold)", fmt(sum(r["fit_s"] for r in ll), ".2f")]]
        for s, r in d["dasksvm"].items():
            totals.append([f"dasksvm {s} C_path (warm)", fmt(r["path_total_s"], ".2f")])
            totals.append([f"dasksvm {s} cold fits", fmt(r["cold_total_s"], ".2f")])
        lines.append(md_table(heads, totals, "lr"))
        rows = []
        for i, L in enumerate(ll):
            row = [fmt(L["C"], ".4g"), fmt(L["fit_s"], ".2f"), L["n_iter"]]
            for _s, r in d["dasksvm"].items():
                w, c = r["path"][i], r["cold"][i]
                row += [fmt(w["solve_s"], ".2f"), w["n_iter"], fmt(rel(w["primal"], L["primal"]),
                                                                   ".1e"),
                        fmt(c["fit_s"], ".2f"), fmt(c["solve_s"], ".2f"), c["n_iter"],
                        fmt(rel(c["primal"], L["primal"]), ".1e")]
            rows.append(row)
        heads = ["C", "LL fit (s)", "LL iter"]
        for s in d["dasksvm"]:
            heads += [f"{s} warm solve (s)", "rounds", "(P-P_LL)/P_LL",
                      f"{s} cold fit (s)", "solve (s)", "rounds", "(P-P_LL)/P_LL"]
        lines.append("\n" + md_table(heads, rows, "r" * len(heads)))
    rows = [[fmt(payload["cluster_start_s"], ".2f"), fmt(payload["jit"]["first_tiny_fit_s"], ".2f"),
             fmt(payload["jit"]["second_tiny_fit_s"], ".2f"), fmt(payload["jit"]["jit_s"], ".2f")]]
    lines.append("\n## Cluster start and JIT (not in the times above)\n\n")
    lines.append(md_table(["LocalCluster start (s)", "tiny fits, first (s)", "same, second (s)",
                           "JIT (s) = difference"], rows, "rrrr"))
    return "".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["a9a", "w8a"], choices=sorted(FILES))
    ap.add_argument("--log2-C", nargs="+", type=int, default=list(range(-9, -1)))
    ap.add_argument("--solvers", nargs="+", default=["cocoa", "newton"],
                    choices=["cocoa", "newton"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "cpath")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite OUT.md from OUT.json (no fits)")
    args = ap.parse_args()
    if args.render:
        import json

        payload = json.loads(args.out.with_suffix(".json").read_text())
        write_text(args.out.with_suffix(".md"), markdown(payload))
        return
    Cs = [float(2.0 ** k) for k in args.log2_C]
    env = env_info()
    from distributed import Client, LocalCluster

    with Timer() as tc:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               silence_logs=40)
        client = Client(cluster)
    log(f"cluster start {tc.elapsed:.2f}s")
    jit = warm_jit(client)
    log(f"JIT {jit}")
    payload = {"env": env, "workers": args.workers, "log2_C": args.log2_C, "Cs": Cs,
               "cluster_start_s": tc.elapsed, "jit": jit, "datasets": {}}
    try:
        for name in args.datasets:
            ds = load(name, args.data_dir)
            d = {"n": ds["X"].shape[0], "d": ds["X"].shape[1]}
            d["liblinear"] = run_liblinear(ds, Cs)
            log(f"{name} liblinear total {sum(r['fit_s'] for r in d['liblinear']):.2f}s")
            d["dasksvm"] = {}
            for s in args.solvers:
                r = run_dasksvm(ds, Cs, s, client)
                d["dasksvm"][s] = r
                log(f"{name} {s}: path {r['path_total_s']:.2f}s "
                    f"rounds {[x['n_iter'] for x in r['path']]}; cold {r['cold_total_s']:.2f}s "
                    f"rounds {[x['n_iter'] for x in r['cold']]}")
            payload["datasets"][name] = d
    finally:
        client.close()
        cluster.close()
    payload["loadavg_end"] = loadavg()
    write_json(args.out.with_suffix(".json"), payload)
    write_text(args.out.with_suffix(".md"), markdown(payload))
    log(f"wrote {args.out}.json/.md")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
