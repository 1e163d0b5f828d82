"""Benchmark: dasksvm's numba SMO (one block, one core) against LIBSVM (scikit-learn ``SVC``).

Both solve LIBSVM's C-SVC dual (formulations.md, section 3) on the same rows
with the same C, kernel (rbf), gamma, tol (1e-3, the maximal violating pair's
gap) and kernel cache size, in this process, one after the other (the order
alternates between repeats so that both see the same load):

* ``dasksvm``: :func:`dasksvm.solvers.smo.solve_smo` (CSR rows for the
  sparse sets, dense rows for the dense ones, as ``SVC`` gets them);
* ``libsvm``: ``sklearn.svm.SVC(...).fit``.

"Time to the same dual value": each solver's fit time to tol; both dual
values D(alpha) = e^T alpha - 1/2 alpha^T Q alpha are recomputed here in
float64 from the returned alphas, and their relative difference is reported
(the table flags a difference above 1e-4). ratio = dasksvm time / LIBSVM time
(the issue's target: <= 1.5). Also: support vectors, iterations, bias, the
agreement of the two models' predictions (on the held-out file where there is
one, else on up to 20,000 training rows) and the time of those predictions
(dasksvm: the numba kernel of :func:`dasksvm.solvers.smo.decision_function`;
LIBSVM: ``SVC.decision_function``).

The JIT cost is reported apart: the first call in a fresh interpreter with an
empty numba cache (compilation of the dense and the CSR specialisations), and
the first call in this process (loading the cached machine code).

Datasets (``$DASKSVM_DATA`` or ../shared/data): a9a (C = 1, gamma = 0.05,
sparse), magic04 (standardized, gamma = 0.1 = scikit-learn's "scale" there,
dense), higgs7k train (gamma "scale", dense), mushrooms train (gamma
"scale", sparse), skin_nonskin (features / 255, C = 1, gamma = 10, dense),
all in file order.

Usage::

    python benchmarks/bench_smo.py [--datasets a9a magic04 higgs7k mushrooms skin_nonskin]
        [--max-rows N] [--cache-size 1000] [--repeat 1] [--tol 1e-3] [--predict-rows N]

``--max-rows`` caps every training set at its first N rows (the sizes run are
in the results). ``--predict-rows N`` times the predictions on the evaluation
rows repeated in order to N rows (the issue's shape: 70,000 dense rows against
about 7,000 support vectors is ``--datasets magic04 --predict-rows 70000``).
Results: ``benchmarks/results/NAME.json`` and ``NAME.md`` (``--name``, default
``smo``).
"""

from __future__ import annotations

import argparse
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

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

# name -> (train file, held-out file or None, C, gamma, dense, preprocessing)
DATASETS = {
    "a9a": ("a9a.xz", "a9a.t.xz", 1.0, 0.05, False, None),
    "magic04": ("magic04.xz", None, 1.0, 0.1, True, "standardize"),
    "higgs7k": ("higgs7k.train.xz", "higgs7k.test.xz", 1.0, "scale", True, None),
    "mushrooms": ("mushrooms_agaricus.train.xz", "mushrooms_agaricus.test.xz", 1.0, "scale",
                  False, None),
    "skin_nonskin": ("skin_nonskin.xz", None, 1.0, 10.0, True, "div255"),
}
N_EVAL = 20_000

_JIT_CODE = """
import time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
from dasksvm.solvers.smo import solve_smo, decision_function
t1 = time.perf_counter()
rng = np.random.RandomState(0)
X = rng.randn(40, 3); y = np.where(X[:, 0] > 0, 1.0, -1.0)
r = solve_smo(X, y, 1.0, gamma=0.5)
t2 = time.perf_counter()
r = solve_smo(sp.csr_matrix(X), y, 1.0, gamma=0.5)
t3 = time.perf_counter()
decision_function(X, X, r.alpha * y, r.b, gamma=0.5)
decision_function(sp.csr_matrix(X), sp.csr_matrix(X), r.alpha * y, r.b, gamma=0.5)
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def jit_cost():
    """Cold compile (fresh interpreter, empty numba cache) and warm first call, in seconds."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold_compile", "cached_load"):
            proc = subprocess.run([sys.executable, "-c", _JIT_CODE], cwd=REPO, env=env,
                                  capture_output=True, text=True, check=True)
            imp, dense, csr, pred = (float(v) for v in proc.stdout.split())
            out[label] = {"import_s": imp, "solve_dense_first_s": dense,
                          "solve_csr_first_s": csr, "predict_first_s": pred}
    return out


def load(name, max_rows):
    from sklearn.datasets import load_svmlight_file

    fname, hold, C, gamma, dense, prep = DATASETS[name]

    def read(f, n_features=None):
        with lzma.open(DATA_DIR / f) as fh:
            X, y = load_svmlight_file(fh, n_features=n_features)
        X = sp.csr_matrix(X, dtype=np.float64)
        X.indices = X.indices.astype(np.int32)
        X.indptr = X.indptr.astype(np.int32)
        return X, y

    X, y = read(fname)
    n_full = X.shape[0]
    Xh = yh = None
    if hold is not None:
        Xh, yh = read(hold)
        d = max(X.shape[1], Xh.shape[1])
        X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], d))
        Xh = sp.csr_matrix((Xh.data, Xh.indices, Xh.indptr), shape=(Xh.shape[0], d))
    if max_rows is not None and X.shape[0] > max_rows:
        X, y = X[:max_rows], y[:max_rows]
    if dense:
        X = X.toarray()
        Xh = None if Xh is None else Xh.toarray()
        if prep == "standardize":
            mu, sd = X.mean(0), X.std(0)
            X = (X - mu) / sd
            Xh = None if Xh is None else (Xh - mu) / sd
        elif prep == "div255":
            X = X / 255.0
            Xh = None if Xh is None else Xh / 255.0
    if Xh is None:
        step = max(1, X.shape[0] // N_EVAL)
        Xh, yh, held = X[::step][:N_EVAL], y[::step][:N_EVAL], "training rows"
    else:
        held = "held-out file"
    return X, y, Xh, yh, C, gamma, n_full, held


def tile_rows(X, n):
    """The rows of X repeated in order until there are n."""
    reps = -(-n // X.shape[0])
    if sp.issparse(X):
        return sp.vstack([X] * reps, format="csr")[:n]
    return np.ascontiguousarray(np.tile(X, (reps, 1))[:n])


def run_one(name, args):
    from sklearn.svm import SVC

    from dasksvm.solvers.smo import decision_function, dual_objective, resolve_gamma, solve_smo

    X, y, Xh, yh, C, gamma, n_full, held = load(name, args.max_rows)
    gamma = resolve_gamma(gamma, X)
    ypm = np.where(y == np.unique(y)[1], 1.0, -1.0)
    print(f"[{name}] n={X.shape[0]} d={X.shape[1]} C={C} gamma={gamma:.4g}", flush=True)
    runs = {"dasksvm": [], "libsvm": []}
    res = {}
    for rep in range(args.repeat):
        order = ("dasksvm", "libsvm") if rep % 2 == 0 else ("libsvm", "dasksvm")
        for method in order:
            la = loadavg()
            cpu0 = time.process_time()
            if method == "dasksvm":
                with Timer() as t:
                    r = solve_smo(X, y, C, kernel="rbf", gamma=gamma, tol=args.tol,
                                  cache_size=args.cache_size)
                res["dasksvm"] = r
            else:
                with Timer() as t:
                    m = SVC(C=C, kernel="rbf", gamma=gamma, tol=args.tol,
                            cache_size=args.cache_size).fit(X, y)
                res["libsvm"] = m
            cpu = time.process_time() - cpu0
            runs[method].append({"time_s": t.elapsed, "cpu_s": cpu, "loadavg": la})
            print(f"  {method}: {t.elapsed:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    r = res["dasksvm"]
    m = res["libsvm"]
    dc = m.dual_coef_
    dc = np.asarray(dc.todense() if sp.issparse(dc) else dc)[0]
    a_ref = np.zeros(X.shape[0])
    a_ref[m.support_] = np.abs(dc)
    d_ours = dual_objective(X, ypm, r.alpha, gamma=gamma)
    d_ref = dual_objective(X, ypm, a_ref, gamma=gamma)
    sv = r.alpha > 0
    if args.predict_rows:  # the evaluation rows repeated up to that many (same cost a row)
        held += f": {Xh.shape[0]:,} of them repeated"
        Xh, yh = tile_rows(Xh, args.predict_rows), np.resize(yh, args.predict_rows)
    with Timer() as tp:
        f = decision_function(Xh, X[sv], (r.alpha * ypm)[sv], r.b, gamma=gamma)
    with Timer() as tq:
        g = m.decision_function(Xh)
    t_ours = min(x["time_s"] for x in runs["dasksvm"])
    t_ref = min(x["time_s"] for x in runs["libsvm"])
    c_ours = min(x["cpu_s"] for x in runs["dasksvm"])
    c_ref = min(x["cpu_s"] for x in runs["libsvm"])
    return {
        "dataset": name, "n": int(X.shape[0]), "n_full": int(n_full), "d": int(X.shape[1]),
        "storage": "dense" if not sp.issparse(X) else "sparse CSR", "C": C, "gamma": gamma,
        "time_dasksvm_s": t_ours, "time_libsvm_s": t_ref, "ratio": t_ours / t_ref,
        "cpu_dasksvm_s": c_ours, "cpu_libsvm_s": c_ref, "cpu_ratio": c_ours / c_ref,
        "runs": runs,
        "dual_dasksvm": d_ours, "dual_libsvm": d_ref,
        "dual_rel_diff": (d_ours - d_ref) / abs(d_ref),
        "dual_reported_dasksvm": r.dual,
        "sv_dasksvm": int(sv.sum()), "sv_libsvm": int(m.support_.shape[0]),
        "sv_symmetric_difference": int(np.count_nonzero(sv != (a_ref > 0))),
        "iter_dasksvm": r.n_iter, "iter_libsvm": int(np.ravel(m.n_iter_)[0]),
        "b_dasksvm": r.b, "b_libsvm": float(m.intercept_[0]),
        "status": r.status,
        "eval_rows": int(Xh.shape[0]), "eval_on": held,
        "agreement": float(np.mean((f > 0) == (g > 0))),
        "accuracy_dasksvm": float(np.mean(np.where(f > 0, 1.0, -1.0)
                                          == np.where(yh == np.unique(y)[1], 1.0, -1.0))),
        "predict_dasksvm_s": tp.elapsed, "predict_libsvm_s": tq.elapsed,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--cache-size", type=float, default=1000.0, help="MB, both solvers")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--predict-rows", type=int, default=None,
                   help="time the predictions on the evaluation rows repeated to N rows")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--name", default="smo", help="results/NAME.{json,md}")
    args = p.parse_args(argv)

    start = time.perf_counter()
    info = env_info()
    print("JIT cost ...", flush=True)
    jit = jit_cost()
    from dasksvm.solvers.smo import solve_smo

    with Timer() as tw:  # first call in this process: the cached machine code
        rng = np.random.RandomState(0)
        Xw = rng.randn(40, 3)
        solve_smo(Xw, np.where(Xw[:, 0] > 0, 1, -1), 1.0, gamma=0.5)
        solve_smo(sp.csr_matrix(Xw), np.where(Xw[:, 0] > 0, 1, -1), 1.0, gamma=0.5)
    jit["this_process_first_calls_s"] = tw.elapsed
    rows = [run_one(name, args) for name in args.datasets]
    info["loadavg_end"] = loadavg()
    info["wall_s"] = time.perf_counter() - start
    record = {"env": info, "params": vars(args) | {"out": str(args.out)}, "jit": jit,
              "results": rows}
    write_json(args.out / f"{args.name}.json", record)

    table = md_table(
        ["dataset", "n", "d", "storage", "gamma", "dasksvm s", "LIBSVM s", "ratio",
         "CPU s dasksvm / LIBSVM", "CPU ratio",
         "dual rel diff", "SV dasksvm", "SV LIBSVM", "iter dasksvm", "iter LIBSVM",
         "agreement", "predict s dasksvm / LIBSVM"],
        [[r["dataset"], f"{r['n']:,}" + ("" if r["n"] == r["n_full"] else f" of {r['n_full']:,}"),
          r["d"], r["storage"], fmt(r["gamma"], ".4g"), fmt(r["time_dasksvm_s"], ".2f"),
          fmt(r["time_libsvm_s"], ".2f"), fmt(r["ratio"], ".2f"),
          f"{r['cpu_dasksvm_s']:.2f} / {r['cpu_libsvm_s']:.2f}", fmt(r["cpu_ratio"], ".2f"),
          fmt(r["dual_rel_diff"], ".1e") + (" (!)" if abs(r["dual_rel_diff"]) > 1e-4 else ""),
          f"{r['sv_dasksvm']:,}", f"{r['sv_libsvm']:,}", f"{r['iter_dasksvm']:,}",
          f"{r['iter_libsvm']:,}", f"{r['agreement']:.5f} ({r['eval_rows']:,} {r['eval_on']})",
          f"{r['predict_dasksvm_s']:.2f} / {r['predict_libsvm_s']:.2f}"] for r in rows],
        align="llrlrrrrrrrrrrrlr")
    cold = jit["cold_compile"]
    warm = jit["cached_load"]
    text = (
        "# SMO benchmark: dasksvm's numba SMO vs LIBSVM (scikit-learn SVC), one block, one core\n\n"
        f"Run {info['date']} on {info['cpu_count']} cores / {info['memory_gib']} GiB (shared "
        f"machine; load average at start {info['loadavg_start']}, at end {info['loadavg_end']}). "
        f"Command: `python {' '.join(['benchmarks/bench_smo.py', *sys.argv[1:]])}`. "
        f"Total wall time {info['wall_s']:.0f} s.\n\n"
        f"Both solvers: rbf kernel, tol = {args.tol} (maximal violating pair's gap), "
        f"kernel cache {args.cache_size:g} MB, shrinking on, the same rows in file order; "
        f"times are the fit wall time to tol and the process CPU time of the fit (each the best "
        f"of {args.repeat}, the order of the two alternating between repeats; on a loaded "
        "machine CPU time is the steadier of the two). dual rel diff = (D_dasksvm - D_LIBSVM) / D_LIBSVM with "
        "both D recomputed in float64 from the alphas; ratio = dasksvm / LIBSVM "
        "(target <= 1.5). agreement = fraction of equal predicted labels.\n\n"
        + table +
        "\nJIT (not in the times above): fresh interpreter with an empty numba cache: "
        f"import {cold['import_s']:.2f} s, first dense solve {cold['solve_dense_first_s']:.1f} s, "
        f"first CSR solve {cold['solve_csr_first_s']:.1f} s (one specialisation serves dense "
        f"and CSR rows), first predictions "
        f"{cold['predict_first_s']:.1f} s (compilation); with the cache filled: "
        f"{warm['solve_dense_first_s']:.2f} s / {warm['solve_csr_first_s']:.2f} s / "
        f"{warm['predict_first_s']:.2f} s; first calls in this process "
        f"{jit['this_process_first_calls_s']:.2f} s.\n"
    )
    write_text(args.out / f"{args.name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
