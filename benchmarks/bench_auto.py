"""Benchmark: the rule of ``LinearSVC(solver="auto")``, CoCoA+ against Newton.

The problem is LIBLINEAR's dual-form squared-hinge SVM with a regularized intercept
(formulations.md section 1), ``dasksvm.LinearSVC(C, solver=...)`` at its defaults
(``tol`` 1e-3 relative duality gap, ``max_iter`` 1000) on the one-machine cluster shape of
:func:`dasksvm.local_cluster` (one worker process whose threads are the cores; one block
per thread). For each data set and C it times, in one run:

* ``liblinear``: ``sklearn.svm.LinearSVC(dual=True)`` at its default tol (one thread),
  the habit the user comes with, and its final primal P_LL;
* ``cocoa`` and ``newton``: the whole ``fit`` (the blocks are built inside it), rounds,
  whether the gap reached tol, the certified relative gap, and (P - P_LL) / P_LL;
* ``auto``: the solver ``auto_solver`` picks for the data's shape on this cluster.

The numba JIT of both solvers is paid by a small fit before the clock starts and is
reported apart, as is the cluster start.

Data: a9a (123 columns), w8a (300), mr_tfidf.train (7,727) and news20 train as a binary
problem (comp.* against the rest, 47,525 columns), all from ``$DASKSVM_DATA``.

Results: ``benchmarks/results/auto.json`` and ``auto.md``.

Usage::

    python benchmarks/bench_auto.py [--datasets a9a w8a mr_tfidf news20] [--C 0.1 1]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
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

#: file, n_features of each data set (None: read off the file)
DATASETS = {
    "a9a": ("a9a.xz", 123),
    "w8a": ("w8a.xz", 300),
    "mr_tfidf": ("mr_tfidf.train.xz", None),
    "news20": ("news20_bydate_tfidf.train.xz", None),
}
#: news20's comp.* newsgroups (labels 2-6 of news20_bydate_tfidf.classes.txt)
NEWS20_COMP = (2, 6)
SOLVERS = ("cocoa", "newton")


def load(name):
    import dask

    from dasksvm.datasets import load_svmlight

    fname, nf = DATASETS[name]
    X, y = dask.compute(*load_svmlight(DATA_DIR / fname, n_features=nf), scheduler="sync")
    if name == "news20":
        lo, hi = NEWS20_COMP
        y = np.where((y >= lo) & (y <= hi), 1, -1)
    return X.tocsr(), y


def primal(X, y, coef, intercept, C):
    """LIBLINEAR's squared-hinge primal with the intercept regularized (scaling 1)."""
    y = np.where(y == np.max(y), 1.0, -1.0)
    m = y * (X @ coef.ravel() + intercept[0])
    return 0.5 * (coef.ravel() @ coef.ravel() + intercept[0] ** 2) + C * np.sum(
        np.maximum(0.0, 1.0 - m) ** 2)


def run(args):
    from distributed import Client
    from sklearn.svm import LinearSVC as LibLinear

    from dasksvm import LinearSVC, local_cluster
    from dasksvm.estimators.linear import _scale, auto_solver

    env = env_info()
    sets = {name: load(name) for name in args.datasets}
    rows = []
    with Timer() as start:
        cluster = local_cluster(silence_logs=50)
        client = Client(cluster)
    try:
        n_workers = len(client.nthreads())
        X, y = sets[args.datasets[0]]
        every = max(1, X.shape[0] // 2000)  # rows of both classes (some files are sorted)
        with Timer() as jit:
            for s in SOLVERS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    LinearSVC(solver=s, max_iter=5, client=client).fit(X[::every], y[::every])
        for name, (X, y) in sets.items():
            for C in args.C:
                with Timer() as t:
                    ll = LibLinear(C=C, dual=True, max_iter=100_000).fit(X, y)
                p_ll = primal(X, y, ll.coef_, ll.intercept_, C)
                row = {"dataset": name, "n": X.shape[0], "d": X.shape[1], "nnz": int(X.nnz),
                       "C": C, "liblinear_s": t.elapsed, "P_ll": p_ll,
                       "auto": auto_solver("squared_hinge", X.shape[0], X.shape[1],
                                           n_workers=n_workers,
                                           scale=_scale(X, C, client))}
                for s in SOLVERS:
                    m = LinearSVC(C=C, solver=s, client=client)
                    with warnings.catch_warnings(record=True), Timer() as t:
                        warnings.simplefilter("always")
                        m.fit(X, y)
                    p = primal(X, y, m.coef_, m.intercept_, C)
                    row[s] = {"s": t.elapsed, "rounds": int(m.n_iter_),
                              "converged": bool(m.converged_), "rel_gap": float(m.rel_gap_),
                              "vs_P_ll": (p - p_ll) / p_ll, "load": loadavg()}
                rows.append(row)
                print(name, C, {s: round(row[s]["s"], 2) for s in SOLVERS}, flush=True)
    finally:
        client.close()
        cluster.close()
    out = {"env": env, "cluster_start_s": start.elapsed, "jit_s": jit.elapsed,
           "cluster": "local_cluster(): 1 process x cpu_count threads", "rows": rows,
           "loadavg_end": loadavg()}
    write_json(Path(args.out).with_suffix(".json"), out)
    write_text(Path(args.out).with_suffix(".md"), render(out))


def render(out):
    env = out["env"]
    head = ["data", "n", "d", "C", "LIBLINEAR (s)", "cocoa (s)", "cocoa rounds",
            "newton (s)", "newton rounds", "auto picks", "auto / LIBLINEAR"]
    body = []
    for r in out["rows"]:
        cells = [r["dataset"], f"{r['n']:,}", f"{r['d']:,}", fmt(r["C"]), fmt(r["liblinear_s"])]
        for s in SOLVERS:
            res = r[s]
            mark = "" if res["converged"] else f" (gap {res['rel_gap']:.2g} > tol)"
            cells += [fmt(res["s"]) + mark, str(res["rounds"])]
        cells += [r["auto"], fmt(r[r["auto"]]["s"] / r["liblinear_s"], ".2f")]
        body.append(cells)
    return (
        "# solver='auto': CoCoA+ against Newton\n\n"
        f"Command: `python {' '.join(env['argv'])}`; {env['date']}, {env['cpu_count']} "
        f"CPUs, load average at start {env['loadavg_start']}, at end "
        f"{out['loadavg_end']}. Cluster: {out['cluster']}; start "
        f"{out['cluster_start_s']:.2f} s, JIT (a small fit of each solver) "
        f"{out['jit_s']:.2f} s, both outside the times below.\n\n"
        "Squared hinge, `dasksvm.LinearSVC(C, solver=...)` at its defaults (tol 1e-3 "
        "relative duality gap, max_iter 1000), the whole fit; LIBLINEAR = "
        "`sklearn.svm.LinearSVC(dual=True)` at its default tol, one thread. 'auto picks' "
        "is `auto_solver` on the data's shape and this cluster.\n\n"
        + md_table(head, body, "lrrrrrrrrlr")
        + "\n(P - P_LL) / P_LL of every fit is in the JSON.\n"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--C", nargs="+", type=float, default=[0.1, 1.0])
    p.add_argument("--out", default=str(RESULTS_DIR / "auto"))
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
