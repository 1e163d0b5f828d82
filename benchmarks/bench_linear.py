"""Benchmark: dasksvm.LinearSVC (CoCoA+ and SGD) against LIBLINEAR, SGDClassifier and Spark.

Every method solves the same problem on the same training rows, the
scikit-learn / LIBLINEAR primal with a regularized intercept
(formulations.md section 1)

    P(w, b) = 1/2 (||w||^2 + b^2) + C sum_i loss(y_i (w.x_i + b)),

loss = hinge or squared hinge, intercept_scaling = 1. The methods:

* ``liblinear``: ``sklearn.svm.LinearSVC(dual=True)`` at its default ``tol``
  (its ``max_iter`` raised to ``--liblinear-max-iter`` so that it can reach
  that tol). Its final primal ``P_LL`` is the reference objective.
* dasksvm, ``dasksvm.LinearSVC`` on a real ``LocalCluster`` of each shape in
  ``--shapes`` (``PxT``: P worker processes of T threads; one row block per
  thread, so ``1x2`` is the one-machine shape of ``docs/choosing.md`` whose two
  threads share one model, ``2x1`` two processes that share nothing during a
  round), one method per entry of ``--solvers``: ``cocoa`` (CoCoA+ with the
  default ``aggregation="momentum"``), ``exact`` (``aggregation="exact"``, the
  exact global step; only on shapes of several processes, with one it is
  ``cocoa``), ``newton`` (the trust-region Newton method; squared hinge only)
  and ``sgd`` (the all-reduce subgradient method; on the last shape only).
  Each is named ``solver PxT`` (``cocoa 1x2``). The training set is loaded with
  ``dasksvm.datasets.load_svmlight`` (files) or ``make_classification``
  (generated sets), cut into contiguous row blocks and persisted before the
  clock starts; every fit runs at ``tol=--tol`` (a certified relative duality
  gap, 1e-4 by default) and ``max_iter=--max-iter``.
* ``sgdclassifier``: ``sklearn.linear_model.SGDClassifier`` with
  ``alpha = 1 / (C n)``; the intercept is fitted as LIBLINEAR's (a constant
  column appended to X, ``fit_intercept=False``), so it minimizes P / (C n).
* ``spark``: Spark MLlib ``LinearSVC`` (hinge only) on ``local[2]`` with
  ``standardization=False``, ``regParam = 1 / (C n)``, the same constant
  column and ``fitIntercept=False`` (Spark leaves its own intercept
  unregularized), ``maxIter = --spark-max-iter``. JVM start and data
  loading are timed separately from ``fit``.

Measured per method: time to reach ``P_LL (1 + 1e-6)`` (dasksvm: the
``time`` of the first ``history_`` record whose primal is that low, counted
from the start of the solver; scikit-learn / Spark: their whole ``fit``, when
their final primal is that low), the whole ``fit`` wall time, the final
relative objective ``(P - P_LL) / P_LL`` (every primal recomputed here from
the returned ``coef_``/``intercept_`` on the same rows), test accuracy,
rounds, bytes moved per round, peak RSS per worker / process (sampled with
psutil from this process), plus the numba JIT cost of a first tiny fit on
each cluster and the per-round overhead of CoCoA+ with 8 blocks and
d = 50,000 (``--overhead-rounds`` rounds of a problem with negligible
compute).

Results: ``benchmarks/results/linear.json`` and ``linear.md``.

Usage::

    python benchmarks/bench_linear.py [--datasets a9a w8a news20 mr_tfidf sparse dense]
        [--scale 0.03] [--quick] [--shapes 1x2 2x1] [--solvers cocoa exact newton sgd]
        [--no-spark]

news20 is the binary problem comp.* (labels 2-6 of news20_bydate_tfidf.classes.txt)
against the rest.

``--scale`` shrinks the generated sets (sparse: 2M x 1M with 100 non-zeros
per row becomes round(2M s) x round(1M s); dense: 1M x 100 becomes
round(1M s) x 100); the sizes actually run are written to the results.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
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

LOSSES = ("hinge", "squared_hinge")

REAL = {
    "a9a": {"train": "a9a.xz", "test": "a9a.t.xz", "n_features": 123},
    "w8a": {"file": "w8a.xz", "n_features": 300, "test_fraction": 0.2, "seed": 0},
    "mr_tfidf": {"train": "mr_tfidf.train.xz", "test": "mr_tfidf.test.xz", "n_features": 7727},
    "news20": {"train": "news20_bydate_tfidf.train.xz", "test": "news20_bydate_tfidf.test.xz",
               "n_features": 47525, "positive": (2, 6)},
}
GENERATED = {
    # full sizes; --scale multiplies n (and d for the sparse set)
    "sparse": {"n": 2_000_000, "d": 1_000_000, "nnz_per_row": 100, "scale_d": True},
    "dense": {"n": 1_000_000, "d": 100, "nnz_per_row": None, "scale_d": False},
}


#: the dasksvm methods: LinearSVC's keywords for each
SOLVERS = {
    "cocoa": {"solver": "cocoa"},
    "exact": {"solver": "cocoa", "aggregation": "exact"},
    "newton": {"solver": "newton"},
    "sgd": {"solver": "sgd"},
}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]}]", *a, flush=True)


# --------------------------------------------------------------------------- objective


def primal(X, y_pm, w, b, C, loss):
    """1/2 (||w||^2 + b^2) + C sum loss(y (Xw + b)): the LIBLINEAR primal, intercept_scaling=1."""
    m = 1.0 - y_pm * (np.asarray(X @ w).ravel() + b)
    np.maximum(m, 0.0, out=m)
    s = float(m @ m) if loss == "squared_hinge" else float(m.sum())
    return 0.5 * (float(w @ w) + b * b) + C * s


def accuracy(X, y_pm, w, b):
    pred = np.where(np.asarray(X @ w).ravel() + b > 0, 1.0, -1.0)
    return float(np.mean(pred == y_pm))


def to_pm(y, classes):
    """Labels -> -1/+1 with classes[1] (the larger label) positive, as LinearSVC does."""
    return np.where(np.asarray(y) == classes[1], 1.0, -1.0)


def append_ones(X):
    if sp.issparse(X):
        return sp.hstack([X, np.ones((X.shape[0], 1))], format="csr")
    return np.hstack([X, np.ones((X.shape[0], 1))])


def binary_labels(name, y):
    """y as the file has it, or +-1 for a multiclass file made binary (news20: comp.*)."""
    spec = REAL.get(name, {})
    if "positive" not in spec:
        return y
    lo, hi = spec["positive"]

    def one(b):
        return np.where((b >= lo) & (b <= hi), 1.0, -1.0)

    return y.map_blocks(one, dtype=np.float64) if hasattr(y, "map_blocks") else one(y)


def parse_shape(shape):
    """'PxT' -> (P processes, T threads per process)."""
    try:
        procs, threads = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is PxT (e.g. 1x2), got {shape!r}") from None
    if procs < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"a shape needs P, T >= 1, got {shape!r}")
    return procs, threads


def time_to_target(history, p_ref, slack=SLACK):
    """(time, round) of the first record with primal <= p_ref (1 + slack), else (None, None)."""
    bound = p_ref * (1.0 + slack)
    for rec in history:
        if rec["primal"] <= bound:
            return rec["time"], rec["round"]
    return None, None


def time_to_gap(history, gap):
    """Time of the first record with a certified relative duality gap <= gap, else None."""
    for rec in history:
        if rec["rel_gap"] <= gap:
            return rec["time"]
    return None


# --------------------------------------------------------------------------- data


def gen_sizes(name, scale):
    g = GENERATED[name]
    n = max(1000, round(g["n"] * scale))
    d = max(100, round(g["d"] * scale)) if g["scale_d"] else g["d"]
    n_test = max(500, min(n // 5, 200_000))
    return n, d, n_test


def gen_chunks(n, n_test, K):
    bounds = np.linspace(0, n, K + 1).astype(int)
    return tuple(int(x) for x in np.diff(bounds)) + (n_test,)


def gen_arrays(name, scale, K, seed):
    """make_classification for train + test rows: train = first K blocks, test = last block."""
    from dasksvm.datasets import make_classification

    g = GENERATED[name]
    n, d, n_test = gen_sizes(name, scale)
    X, y = make_classification(
        n + n_test, d, nnz_per_row=g["nnz_per_row"], chunks=gen_chunks(n, n_test, K),
        random_state=seed,
    )
    return X, y, n


def prepare(name, args, cache):
    """The in-memory copy of one dataset (for scikit-learn, Spark and evaluation).

    Returns a dict with X/y train/test (CSR or ndarray; labels as loaded),
    a description and what the dask loader needs.
    """
    import dask

    from dasksvm.datasets import load_svmlight

    info = {"name": name}
    with Timer() as t:
        if name in REAL:
            spec = REAL[name]
            nf = spec["n_features"]
            if "file" in spec:  # no test split: split with a fixed seed, write both parts
                from sklearn.datasets import dump_svmlight_file

                X, y = dask.compute(*load_svmlight(DATA_DIR / spec["file"], n_features=nf),
                                    scheduler="threads")
                rng = np.random.RandomState(spec["seed"])
                perm = rng.permutation(X.shape[0])
                n_test = round(spec["test_fraction"] * X.shape[0])
                te, tr = perm[:n_test], perm[n_test:]  # rows stay in shuffled order
                train_path = cache / f"{name}.train.seed{spec['seed']}"
                test_path = cache / f"{name}.test.seed{spec['seed']}"
                if not train_path.exists():
                    dump_svmlight_file(X[tr], y[tr], str(train_path), zero_based=False)
                    dump_svmlight_file(X[te], y[te], str(test_path), zero_based=False)
                info["source"] = (f"{spec['file']} shuffled and split "
                                  f"{1 - spec['test_fraction']:.0%}/{spec['test_fraction']:.0%} "
                                  f"with RandomState({spec['seed']}).permutation")
            else:
                train_path, test_path = DATA_DIR / spec["train"], DATA_DIR / spec["test"]
                info["source"] = f"{spec['train']} / {spec['test']}"
            Xtr, ytr = dask.compute(*load_svmlight(train_path, n_features=nf), scheduler="threads")
            Xte, yte = dask.compute(*load_svmlight(test_path, n_features=nf), scheduler="threads")
            ytr, yte = binary_labels(name, ytr), binary_labels(name, yte)
            info["train_path"] = str(train_path)
        else:
            n, d, n_test = gen_sizes(name, args.scale)
            X, y, n = gen_arrays(name, args.scale, 4, args.seed)
            Xtr, ytr = dask.compute(X[:n], y[:n], scheduler="threads")
            Xte, yte = dask.compute(X[n:], y[n:], scheduler="threads")
            g = GENERATED[name]
            info["source"] = (
                f"make_classification({n + n_test}, {d}, nnz_per_row={g['nnz_per_row']}, "
                f"random_state={args.seed}); first {n} rows train, last {n_test} test "
                f"(full size {g['n']} x {g['d']}, scale {args.scale})"
            )
    if sp.issparse(Xtr):
        Xtr, Xte = sp.csr_matrix(Xtr), sp.csr_matrix(Xte)
        for M in (Xtr, Xte):  # sklearn's liblinear wants int32 indices
            M.indices = M.indices.astype(np.int32)
            M.indptr = M.indptr.astype(np.int32)
    else:
        Xtr, Xte = np.ascontiguousarray(Xtr), np.ascontiguousarray(Xte)
    classes = np.unique(np.asarray(ytr))
    info.update(
        X=Xtr, y=np.asarray(ytr), X_test=Xte, y_test=np.asarray(yte), classes=classes,
        y_pm=to_pm(ytr, classes), y_test_pm=to_pm(yte, classes),
        n=Xtr.shape[0], d=Xtr.shape[1], n_test=Xte.shape[0],
        nnz=int(Xtr.nnz) if sp.issparse(Xtr) else int(Xtr.size),
        kind="sparse CSR" if sp.issparse(Xtr) else "dense",
        prepare_s=t.elapsed,
    )
    log(f"{name}: {info['n']} x {info['d']} ({info['kind']}, nnz {info['nnz']}), "
        f"test {info['n_test']}, prepared in {t.elapsed:.1f}s")
    return info


def dask_data(client, ds, K, args):
    """Training rows as a persisted row-chunked dask array with K blocks."""
    from distributed import wait

    if ds["name"] in REAL:
        from dasksvm.datasets import load_svmlight

        X, y = load_svmlight(ds["train_path"], n_features=ds["d"])
        y = binary_labels(ds["name"], y)
        n = X.shape[0]
        rows = tuple(int(v) for v in np.diff(np.linspace(0, n, K + 1).astype(int)))
        X, y = X.rechunk((rows, -1)), y.rechunk((rows,))
    else:
        X, y, n = gen_arrays(ds["name"], args.scale, K, args.seed)
        X, y = X.blocks[:K], y.blocks[:K]
    X, y = client.persist([X, y])
    wait([X, y])
    return X, y


# --------------------------------------------------------------------------- methods


def record(ds, method, loss, C, w, b, *, fit_s, p_ref=None, **extra):
    """One result row: objective and accuracy computed here from (w, b)."""
    p = primal(ds["X"], ds["y_pm"], w, b, C, loss)
    rec = {
        "dataset": ds["name"], "method": method, "loss": loss,
        "primal": p, "test_accuracy": accuracy(ds["X_test"], ds["y_test_pm"], w, b),
        "fit_s": fit_s, "loadavg": loadavg(),
    }
    if p_ref is not None:
        rec["rel_objective"] = (p - p_ref) / p_ref
    rec.update(extra)
    return rec


def run_liblinear(ds, loss, args):
    from sklearn.svm import LinearSVC

    clf = LinearSVC(C=args.C, loss=loss, dual=True, max_iter=args.liblinear_max_iter,
                    random_state=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with PeakRSS({"main": os.getpid()}) as mem, Timer() as t:
            clf.fit(ds["X"], ds["y"])
    converged = not any("converge" in str(c.message).lower() for c in caught)
    w, b = clf.coef_.ravel().astype(np.float64), float(clf.intercept_[0])
    rec = record(ds, "liblinear", loss, args.C, w, b, fit_s=t.elapsed,
                 rounds=int(np.max(clf.n_iter_)), converged=converged,
                 max_iter=args.liblinear_max_iter, **mem.summary())
    rec["rel_objective"] = 0.0
    rec["time_to_target_s"] = t.elapsed
    return rec


def run_sgdclassifier(ds, loss, args, p_ref):
    from sklearn.linear_model import SGDClassifier

    Xa = append_ones(ds["X"])
    clf = SGDClassifier(loss=loss, alpha=1.0 / (args.C * ds["n"]), fit_intercept=False,
                        max_iter=args.sgdclassifier_max_iter, random_state=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with PeakRSS({"main": os.getpid()}) as mem, Timer() as t:
            clf.fit(Xa, ds["y_pm"])
    converged = not any("converge" in str(c.message).lower() for c in caught)
    coef = clf.coef_.ravel()
    rec = record(ds, "sgdclassifier", loss, args.C, coef[:-1], float(coef[-1]), fit_s=t.elapsed,
                 p_ref=p_ref, rounds=int(clf.n_iter_), converged=converged, **mem.summary())
    rec["time_to_target_s"] = t.elapsed if rec["rel_objective"] <= SLACK else None
    return rec


def run_dasksvm(client, worker_pids, ds, X, y, method, loss, args, p_ref, label, n_blocks):
    from dasksvm import LinearSVC

    max_iter = args.sgd_max_iter if method == "sgd" else args.max_iter
    clf = LinearSVC(C=args.C, loss=loss, tol=args.tol, max_iter=max_iter,
                    random_state=args.seed, client=client, **SOLVERS[method])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PeakRSS(worker_pids) as mem, Timer() as t:
            clf.fit(X, y)
    hist = clf.history_
    t_hit, r_hit = time_to_target(hist, p_ref)
    solve_s = hist[-1]["time"]
    rounds = len(hist) - 1
    per_round = [h["bytes"] for h in hist[1:]] or [hist[0]["bytes"]]
    rec = record(
        ds, label, loss, args.C, clf.coef_.ravel(), float(clf.intercept_[0]), fit_s=t.elapsed,
        p_ref=p_ref, solver=method, n_blocks=n_blocks, n_workers=len(worker_pids),
        rounds=int(clf.n_iter_), converged=bool(clf.converged_), rel_gap=float(clf.rel_gap_),
        solver_s=solve_s, block_build_s=t.elapsed - solve_s,
        time_to_target_s=t_hit, round_at_target=r_hit,
        time_to_target_slack1e4_s=time_to_target(hist, p_ref, 1e-4)[0],
        time_to_gap1e4_s=time_to_gap(hist, 1e-4),
        s_per_round=solve_s / max(rounds, 1),
        bytes_per_round=float(np.median(per_round)),
        history_primal_final=float(clf.primal_), **mem.summary(),
        history=[{"round": h["round"], "time": round(h["time"], 4), "primal": h["primal"],
                  "rel_gap": h["rel_gap"], "bytes": h["bytes"]} for h in hist],
    )
    return rec


def warm_jit(client, K, seed, methods):
    """Time a tiny fit of every (method, loss) twice on a fresh cluster: the first
    pays numba's compile / cache load in the workers, the second does not."""
    from distributed import wait

    from dasksvm import LinearSVC
    from dasksvm.datasets import make_classification

    X, y = make_classification(400, 50, nnz_per_row=5, chunks=400 // K, random_state=seed)
    X, y = client.persist([X, y])
    wait([X, y])
    times = []
    for _ in range(2):
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for method in methods:
                for loss in LOSSES:
                    if accepts(method, loss):
                        LinearSVC(loss=loss, max_iter=3, tol=0.0, client=client,
                                  **SOLVERS[method]).fit(X, y)
        times.append(t.elapsed)
    del X, y
    return {"first_tiny_fits_s": times[0], "second_tiny_fits_s": times[1],
            "jit_s": times[0] - times[1]}


def accepts(method, loss):
    """Newton is for the squared hinge only (formulations.md 1d)."""
    return method != "newton" or loss == "squared_hinge"


def shape_methods(shape, last, args):
    """The methods run on one cluster shape (see the module docstring)."""
    procs, _ = shape
    out = []
    for m in args.solvers:
        if (m == "exact" and procs == 1) or (m == "sgd" and (not last or args.no_sgd)):
            continue
        out.append(m)
    return out


def overhead_bench(client, args):
    """CoCoA+ rounds on 8 blocks, d = 50,000, negligible compute: seconds per round."""
    from distributed import wait

    from dasksvm import LinearSVC
    from dasksvm.datasets import make_classification

    out = {}
    for K in (8,):
        n = 8 * 128
        X, y = make_classification(n, 50_000, nnz_per_row=10, chunks=n // K,
                                   random_state=args.seed)
        X, y = client.persist([X, y])
        wait([X, y])
        clf = LinearSVC(loss="hinge", solver="cocoa", tol=0.0, max_iter=args.overhead_rounds,
                        client=client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        t = np.array([h["time"] for h in clf.history_])
        d = np.diff(t)
        out[f"K{K}"] = {
            "n_blocks": K, "n_rows": n, "d": 50_000, "nnz_per_row": 10,
            "n_workers": len(client.scheduler_info(n_workers=-1)["workers"]),
            "rounds": len(d), "mean_ms": 1e3 * float(d.mean()),
            "median_ms": 1e3 * float(np.median(d)), "p90_ms": 1e3 * float(np.percentile(d, 90)),
            "min_ms": 1e3 * float(d.min()),
            "bytes_per_round": float(np.median([h["bytes"] for h in clf.history_[1:]])),
            "loadavg": loadavg(),
        }
        del X, y
    out["components"] = round_components(client)
    return out


def _noop(x):
    return None


def round_components(client, reps=30, d=50_000, n_tasks=8):
    """Medians (ms) of the pieces of a round with no work: broadcasting a d-vector to every
    worker, and a submit + gather of 8 no-op tasks (one per block, spread over the workers)."""
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    w = np.zeros(d)
    bcast, tasks = [], []
    for _ in range(reps):
        with Timer() as t:
            f = client.scatter(w, broadcast=True, hash=False)
            client.gather(f)
        bcast.append(t.elapsed)
        with Timer() as t:
            fs = [client.submit(_noop, k, workers=[workers[k % len(workers)]], pure=False)
                  for k in range(n_tasks)]
            client.gather(fs)
        tasks.append(t.elapsed)
        del f, fs
    return {"broadcast_d50k_ms": 1e3 * float(np.median(bcast)),
            "submit_gather_8_noop_tasks_ms": 1e3 * float(np.median(tasks)), "reps": reps}


def run_dask_phase(datasets, refs, args, results):
    from distributed import Client, LocalCluster

    env = {}
    for i, (procs, threads) in enumerate(args.shapes):
        last = i == len(args.shapes) - 1
        K, shape = procs * threads, f"{procs}x{threads}"
        methods = shape_methods((procs, threads), last, args)
        with Timer() as tc:
            cluster = LocalCluster(n_workers=procs, threads_per_worker=threads, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
        pids = client.run(os.getpid)
        worker_pids = {addr: pid for addr, pid in pids.items()}
        log(f"cluster {shape} up in {tc.elapsed:.1f}s")
        jit = warm_jit(client, K, args.seed, methods)
        log(f"  JIT: first tiny fits {jit['first_tiny_fits_s']:.2f}s, "
            f"second {jit['second_tiny_fits_s']:.2f}s")
        env[shape] = {"cluster_start_s": tc.elapsed, "n_blocks": K, **jit}
        for ds in datasets:
            with Timer() as tl:
                X, y = dask_data(client, ds, K, args)
            env[shape][f"load_persist_{ds['name']}_s"] = tl.elapsed
            log(f"  {ds['name']}: loaded + persisted in {K} blocks in {tl.elapsed:.1f}s")
            for method in methods:
                for loss in args.losses:
                    if not accepts(method, loss):
                        continue
                    name = f"{method} {shape}"
                    p_ref = refs[(ds["name"], loss)]
                    rec = run_dasksvm(client, worker_pids, ds, X, y, method, loss, args, p_ref,
                                      name, K)
                    rec["shape"] = shape
                    results.append(rec)
                    log(f"    {name} {loss}: t_target {fmt(rec['time_to_target_s'])}s "
                        f"fit {rec['fit_s']:.2f}s rounds {rec['rounds']} "
                        f"gap {rec['rel_gap']:.1e} rel_obj {rec['rel_objective']:.2e} "
                        f"acc {rec['test_accuracy']:.4f}")
            del X, y
        if last and args.overhead_rounds:
            env["overhead"] = overhead_bench(client, args)
            log(f"  overhead: {env['overhead']}")
        client.close()
        cluster.close()
        gc.collect()
    return env


# --------------------------------------------------------------------------- Spark


def spark_libsvm(ds, cache, tag):
    """Training rows + a constant column as a 1-based libsvm file with 0/1 labels."""
    from sklearn.datasets import dump_svmlight_file

    path = cache / f"spark-{ds['name']}-{tag}.libsvm"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        Xa = append_ones(ds["X"])
        dump_svmlight_file(Xa, (ds["y_pm"] > 0).astype(np.int64), str(tmp), zero_based=False)
        tmp.rename(path)
    return path


def run_spark_phase(datasets, refs, args, results, cache):
    import psutil

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    files = {}
    for ds in datasets:
        with Timer() as t:
            files[ds["name"]] = spark_libsvm(ds, cache, args.tag)
        log(f"spark input {files[ds['name']].name} ready in {t.elapsed:.1f}s")
    from pyspark.ml.classification import LinearSVC as SparkLinearSVC
    from pyspark.sql import SparkSession

    with Timer() as tj:
        spark = (
            SparkSession.builder.master("local[2]").appName("dasksvm-bench-linear")
            .config("spark.driver.memory", args.spark_driver_memory)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        spark.range(1).count()  # the JVM is up and can run a job
    spark.sparkContext.setLogLevel("ERROR")
    log(f"Spark session (JVM) started in {tj.elapsed:.1f}s")
    jvm_pids = {f"jvm-{p.pid}": p.pid for p in psutil.Process().children(recursive=True)
                if "java" in p.name().lower()}
    env = {"jvm_start_s": tj.elapsed, "master": "local[2]",
           "driver_memory": args.spark_driver_memory, "max_iter": args.spark_max_iter}
    try:
        for ds in datasets:
            if "hinge" not in args.losses:
                continue
            with Timer() as tl:
                df = (spark.read.format("libsvm").option("numFeatures", str(ds["d"] + 1))
                      .load(str(files[ds["name"]])).repartition(2).cache())
                n = df.count()
            assert n == ds["n"], (n, ds["n"])
            env[f"load_{ds['name']}_s"] = tl.elapsed
            svc = SparkLinearSVC(maxIter=args.spark_max_iter, regParam=1.0 / (args.C * n),
                                 fitIntercept=False, standardization=False, tol=1e-6)
            with PeakRSS(jvm_pids) as mem, Timer() as t:
                model = svc.fit(df)
            coef = model.coefficients.toArray()
            try:
                summ = model.summary() if callable(model.summary) else model.summary
                obj_hist = list(summ.objectiveHistory)
                iters = int(summ.totalIterations)
            except Exception:  # noqa: BLE001
                obj_hist, iters = [], None
            p_ref = refs[(ds["name"], "hinge")]
            rec = record(ds, "spark", "hinge", args.C, coef[:-1], float(coef[-1]), fit_s=t.elapsed,
                         p_ref=p_ref, rounds=iters, converged=(iters is not None
                                                               and iters < args.spark_max_iter),
                         spark_objective_times_Cn=(obj_hist[-1] * args.C * n) if obj_hist else None,
                         load_s=tl.elapsed, jvm_start_s=tj.elapsed, **mem.summary())
            rec["time_to_target_s"] = t.elapsed if rec["rel_objective"] <= SLACK else None
            results.append(rec)
            log(f"  spark {ds['name']}: fit {t.elapsed:.1f}s iters {iters} "
                f"rel_obj {rec['rel_objective']:.2e} acc {rec['test_accuracy']:.4f}")
            df.unpersist()
    finally:
        spark.stop()
    return env


# --------------------------------------------------------------------------- report


def dask_runs(results, name=None, loss=None):
    """The dasksvm rows (of one dataset and loss), in the order they ran."""
    return [r for r in results if "solver" in r and name in (None, r["dataset"])
            and loss in (None, r["loss"])]


def targets(results, env, args):
    """The targets of the issues, from one run: see the module docstring."""
    by = {(r["dataset"], r["method"], r["loss"]): r for r in results}
    names = list(dict.fromkeys(r["dataset"] for r in results))
    out = []

    def ratio(a, b):
        return a / b if (a is not None and b) else None

    def secs(x, none="not reached"):
        return none if x is None else f"{x:.3g} s"

    for name in names:
        for loss in args.losses:
            runs = [r for r in dask_runs(results, name, loss) if r["solver"] != "sgd"]
            if name in REAL and runs:
                missed = [f"{r['method']} (gap {r['rel_gap']:.1e} after {r['rounds']} rounds)"
                          for r in runs if r["time_to_gap1e4_s"] is None]
                out.append({"target": f"{name} {loss}: every solver certifies a 1e-4 gap",
                            "value": len(runs) - len(missed), "goal": len(runs),
                            "met": not missed,
                            "detail": "missed: " + ", ".join(missed) if missed else "all did"})
            ll = by.get((name, "liblinear", loss))
            if name not in GENERATED or ll is None:
                continue
            for r in runs:
                procs = int(r["shape"].split("x")[0])
                goal = 0.7 if procs == 1 else (1.0 if loss == "squared_hinge" else 2.0)
                t4 = r.get("time_to_target_slack1e4_s")
                v = ratio(t4, ll["fit_s"])
                out.append({
                    "target": f"{name} {loss}: {r['method']} time to P_LL (1 + 1e-4) <= "
                              f"{goal} x LIBLINEAR",
                    "value": v, "goal": goal, "met": v is not None and v <= goal,
                    "detail": f"{secs(t4)} vs LIBLINEAR {ll['fit_s']:.3g} s"})
        sk = by.get((name, "spark", "hinge"))
        if sk is None:
            continue
        # the same objective for both: what Spark reached, or P_LL when Spark got there
        goal_p = max(sk["primal"], by[(name, "liblinear", "hinge")]["primal"])
        what = "P_LL" if sk["time_to_target_s"] else "Spark's final objective"
        for r in dask_runs(results, name, "hinge"):
            if r["solver"] == "sgd":
                continue
            t_cc, _ = time_to_target(r["history"], goal_p, 0.0)
            with_jvm = ratio(sk["fit_s"] + sk["jvm_start_s"], t_cc)
            detail = (f"Spark fit {sk['fit_s']:.3g} s + JVM {sk['jvm_start_s']:.3g} s "
                      f"(rel obj {sk['rel_objective']:.2e}, {sk['rounds']} iters; fit only "
                      f"{fmt(ratio(sk['fit_s'], t_cc), '.3g')}x) vs {r['method']} "
                      f"{secs(t_cc, 'never (in its rounds)')} to {what}")
            out.append({"target": f"{name} hinge: Spark incl. JVM start / {r['method']} >= 10x",
                        "value": with_jvm, "goal": 10,
                        "met": with_jvm is not None and with_jvm >= 10, "detail": detail})
    ov = env.get("dask", {}).get("overhead", {}).get("K8")
    if ov:
        out.append({"target": "CoCoA+ overhead per round, 8 blocks, d = 50k <= 20 ms",
                    "value": ov["median_ms"], "goal": 20, "met": ov["median_ms"] <= 20,
                    "detail": f"median {ov['median_ms']:.1f} ms, mean {ov['mean_ms']:.1f} ms, "
                              f"{ov['n_workers']} workers, load average {ov['loadavg']}"})
    return out


def solver_table(results):
    """One row per (dataset, loss): LIBLINEAR's fit, then each dasksvm method's whole fit
    to the certified gap (its rounds), and Spark's."""
    by = {(r["dataset"], r["method"], r["loss"]): r for r in results}
    methods = list(dict.fromkeys(r["method"] for r in dask_runs(results)))
    spark = any(r["method"] == "spark" for r in results)
    head = ["dataset", "loss", "LIBLINEAR (s)"] + methods + (["Spark (s)"] if spark else [])
    body = []
    for name, loss in dict.fromkeys((r["dataset"], r["loss"]) for r in results):
        ll = by.get((name, "liblinear", loss))
        if ll is None:
            continue
        cells = [name, loss, fmt(ll["fit_s"], ".3g")]
        for m in methods:
            r = by.get((name, m, loss))
            if r is None:
                cells.append("-")
                continue
            gap = "" if r["time_to_gap1e4_s"] is not None else f", gap {r['rel_gap']:.1e}"
            cells.append(f"{r['fit_s']:.3g} ({r['rounds']}{gap})")
        if spark:
            sk = by.get((name, "spark", loss))
            cells.append("-" if sk is None else
                         f"{sk['fit_s']:.3g} + JVM {sk['jvm_start_s']:.3g} "
                         f"(rel obj {sk['rel_objective']:.1e})")
        body.append(cells)
    return md_table(head, body, "llr" + "r" * (len(head) - 3))


def markdown(payload):
    env, cfg, res = payload["environment"], payload["config"], payload["results"]
    lines = ["# Linear SVM benchmark: dasksvm vs LIBLINEAR, SGDClassifier, Spark MLlib\n"]
    lines.append(
        f"Run {env['date']} on {env['cpu_count']} cores / {env['memory_gib']} GiB "
        f"(shared machine; load average at start {env['loadavg_start']}, "
        f"at end {payload['loadavg_end']}). Command: `{' '.join(cfg['command'])}`. "
        f"Total wall time {payload['total_s']:.0f} s.\n"
    )
    lines.append(
        f"C = {cfg['C']}, dasksvm tol = {cfg['tol']} (relative duality gap), max_iter = "
        f"{cfg['max_iter']} (sgd {cfg['sgd_max_iter']}), LIBLINEAR max_iter = "
        f"{cfg['liblinear_max_iter']} (default tol 1e-4), Spark maxIter = {cfg['spark_max_iter']} "
        f"(tol 1e-6). Cluster shapes (processes x threads, one block per thread): "
        f"{', '.join(cfg['shape_names'])}. Target objective P_LL = "
        "LIBLINEAR's final primal; 'time to P_LL' is the first dasksvm round with "
        f"P <= P_LL (1 + {SLACK:g}) (solver clock, data already persisted), or the whole fit "
        "for scikit-learn / Spark when they end at or below P_LL.\n"
    )
    lines.append("## Data\n")
    rows = [[d["name"], d["source"], f"{d['n']:,}", f"{d['d']:,}", f"{d['nnz']:,}",
             f"{d['n_test']:,}", d["kind"]] for d in payload["datasets"]]
    lines.append(md_table(["dataset", "source", "n train", "d", "nnz", "n test", "storage"],
                          rows, "llrrrrl"))
    lines.append("\n## Solvers\n")
    lines.append(
        "Each dasksvm cell: the whole `fit` (blocks built inside it, data persisted) to the "
        f"certified relative gap {cfg['tol']:g}, and its rounds; a gap is shown where "
        "max_iter stopped it first. LIBLINEAR: its whole fit at its default tol. Spark: its "
        "fit, the JVM start apart, and how far its final objective is from P_LL.\n")
    lines.append(solver_table(res))
    lines.append("\n## Results\n")
    lines.append(
        "rel obj = (P - P_LL) / P_LL. Peak RSS: dasksvm = largest worker process (holds its "
        "blocks); scikit-learn = this process, with the growth during fit in brackets; Spark = "
        "the JVM. bytes/round: dasksvm's history (broadcast of w plus the partials).\n"
    )
    hdr = ["dataset", "loss", "method", "time to P_LL (s)", "to P_LL(1+1e-4) (s)",
           "to gap 1e-4 (s)", "fit wall (s)", "s/round", "rel obj", "test acc", "rounds",
           "converged", "bytes/round", "peak RSS MiB"]
    rows = []
    for r in res:
        mem = fmt(r.get("peak_mib"), ".0f")
        if r["method"] in ("liblinear", "sgdclassifier"):
            mem = f"{mem} (+{fmt(r.get('delta_mib'), '.0f')})"
        dask_run = "solver" in r
        slack4 = r.get("time_to_target_slack1e4_s") if dask_run else (
            r["fit_s"] if (r.get("rel_objective") or 0) <= 1e-4 else None)
        rows.append([
            r["dataset"], r["loss"], r["method"],
            fmt(r.get("time_to_target_s"), ".3g", "not reached"),
            fmt(slack4, ".3g", "not reached"),
            fmt(r.get("time_to_gap1e4_s"), ".3g", "not reached" if dask_run else "-"),
            fmt(r["fit_s"], ".3g"), fmt(r.get("s_per_round"), ".3f"),
            fmt(r.get("rel_objective"), ".2e"), fmt(r["test_accuracy"], ".4f"),
            fmt(r.get("rounds"), "d"), fmt(r.get("converged")), fmt(r.get("bytes_per_round"), ".3g"),
            mem,
        ])
    lines.append(md_table(hdr, rows, "lllrrrrrrrrlrr"))
    lines.append("\n## Fixed costs\n")
    de = payload["environment"].get("dask", {})
    rows = []
    for k, v in de.items():
        if k == "overhead":
            continue
        rows.append([k, fmt(v["cluster_start_s"], ".2f"), fmt(v["first_tiny_fits_s"], ".2f"),
                     fmt(v["second_tiny_fits_s"], ".2f"), fmt(v["jit_s"], ".2f")])
    if rows:
        lines.append(md_table(["cluster", "LocalCluster start (s)", "4 tiny fits, first (s)",
                               "same, second (s)", "JIT (s) = difference"], rows, "lrrrr"))
    sp_env = payload["environment"].get("spark")
    if sp_env:
        lines.append(f"\nSpark: JVM / session start {sp_env['jvm_start_s']:.1f} s "
                     f"(master {sp_env['master']}, driver memory {sp_env['driver_memory']}); "
                     "loading + caching the libsvm input: "
                     + ", ".join(f"{k[5:-2]} {v:.1f} s" for k, v in sp_env.items()
                                 if k.startswith("load_")) + ".\n")
    ov = de.get("overhead", {}).get("K8")
    if ov:
        lines.append(
            f"\nPer-round overhead (CoCoA+, hinge, {ov['n_blocks']} blocks on {ov['n_workers']} "
            f"workers, {ov['n_rows']} rows, d = {ov['d']:,}, {ov['nnz_per_row']} nnz/row, "
            f"{ov['rounds']} rounds): median {ov['median_ms']:.1f} ms, mean {ov['mean_ms']:.1f} ms, "
            f"p90 {ov['p90_ms']:.1f} ms, min {ov['min_ms']:.1f} ms per round; "
            f"{ov['bytes_per_round']:.3g} bytes per round.\n")
        comp = de.get("overhead", {}).get("components")
        if comp:
            lines.append(
                f"Pieces of an empty round on the same cluster (medians of {comp['reps']}): "
                f"broadcast of a 50k float64 vector {comp['broadcast_d50k_ms']:.1f} ms; submit + "
                f"gather of 8 no-op tasks {comp['submit_gather_8_noop_tasks_ms']:.1f} ms.\n")
    lines.append(
        "\nCaveats: timings come from a shared 2-core machine (see the load averages; other "
        "jobs were running), so a shape of 2 threads or processes had no second free core and "
        "per-round times include waiting for the CPU. `mr_tfidf.train` and news20 are sorted "
        "by label (LinearSVC deals the rows into its blocks at random, `shuffle=True`). A "
        "dasksvm row whose "
        "'to P_LL' says 'not reached' did not get there within its rounds (see 'rounds' and "
        "'converged').\n")
    lines.append("\n## Targets\n")
    rows = [[t["target"], fmt(t["value"], ".3g"), t["goal"], "met" if t["met"] else "MISSED",
             t["detail"]] for t in payload["targets"]]
    lines.append(md_table(["target", "value", "goal", "", "detail"], rows, "lrrll"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["a9a", "w8a", "news20", "mr_tfidf"],
                   choices=list(REAL) + list(GENERATED))
    p.add_argument("--scale", type=float, default=0.03,
                   help="size of the generated sets relative to 2M x 1M (sparse) / 1M x 100 (dense)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: scale 0.005, fewer rounds, a9a/mr_tfidf/sparse/dense")
    p.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=["1x2", "2x1"],
                   help="cluster shapes PxT: P worker processes of T threads")
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--tol", type=float, default=1e-4, help="dasksvm relative duality gap")
    p.add_argument("--max-iter", type=int, default=1000, help="cocoa / newton rounds")
    p.add_argument("--sgd-max-iter", type=int, default=50, help="dasksvm sgd rounds")
    p.add_argument("--liblinear-max-iter", type=int, default=10_000)
    p.add_argument("--sgdclassifier-max-iter", type=int, default=1000)
    p.add_argument("--spark-max-iter", type=int, default=150)
    p.add_argument("--spark-driver-memory", default="4g")
    p.add_argument("--overhead-rounds", type=int, default=100)
    p.add_argument("--no-spark", action="store_true")
    p.add_argument("--no-sgd", action="store_true", help="skip dasksvm solver='sgd'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "dasksvm-bench"))
    p.add_argument("--out", default=str(RESULTS_DIR / "linear"),
                   help="output path without extension (.json and .md are written)")
    p.add_argument("--render", metavar="JSON",
                   help="only rewrite the markdown (and targets) of an existing results JSON")
    args = p.parse_args(argv)
    if args.quick:
        if "--scale" not in (argv or sys.argv):
            args.scale = 0.005
        if "--datasets" not in (argv or sys.argv):
            args.datasets = ["a9a", "mr_tfidf", "sparse", "dense"]
        if "--shapes" not in (argv or sys.argv):
            args.shapes = [(1, 2)]
        args.max_iter = min(args.max_iter, 200)
        args.sgd_max_iter = min(args.sgd_max_iter, 50)
        args.spark_max_iter = min(args.spark_max_iter, 100)
        args.overhead_rounds = min(args.overhead_rounds, 50)
    args.shapes = [parse_shape(v) if isinstance(v, str) else v for v in args.shapes]
    args.shape_names = [f"{p}x{t}" for p, t in args.shapes]
    args.tag = f"s{args.scale:g}-seed{args.seed}"
    return args


def render(path):
    """Rebuild the targets and the markdown of a finished run from its JSON."""
    import json

    path = Path(path)
    payload = json.loads(path.read_text())
    cfg = argparse.Namespace(**payload["config"])
    payload["targets"] = targets(payload["results"], payload["environment"], cfg)
    write_json(path, payload)
    write_text(path.with_suffix(".md"), markdown(payload))
    print(markdown(payload))


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        render(args.render)
        return
    t_start = time.perf_counter()
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    env = env_info(extra_modules=("pyspark", "psutil"))
    log(f"bench_linear: {vars(args)}")

    datasets = [prepare(name, args, cache) for name in args.datasets]
    results, refs = [], {}
    for ds in datasets:  # single-process references first: P_LL is needed by everything else
        for loss in args.losses:
            rec = run_liblinear(ds, loss, args)
            refs[(ds["name"], loss)] = rec["primal"]
            results.append(rec)
            log(f"{ds['name']} liblinear {loss}: {rec['fit_s']:.2f}s iters {rec['rounds']} "
                f"conv {rec['converged']} P {rec['primal']:.6g} acc {rec['test_accuracy']:.4f}")
            if loss != "hinge":  # SGDClassifier is benchmarked with the hinge only
                continue
            rec = run_sgdclassifier(ds, loss, args, refs[(ds["name"], loss)])
            results.append(rec)
            log(f"{ds['name']} sgdclassifier {loss}: {rec['fit_s']:.2f}s epochs {rec['rounds']} "
                f"rel_obj {rec['rel_objective']:.2e} acc {rec['test_accuracy']:.4f}")

    env["dask"] = run_dask_phase(datasets, refs, args, results)
    if not args.no_spark:
        env["spark"] = run_spark_phase(datasets, refs, args, results, cache)

    order = {n: i for i, n in enumerate(args.datasets)}
    results.sort(key=lambda r: (order[r["dataset"]], r["loss"]))
    cfg = {k: v for k, v in vars(args).items()}
    cfg["command"] = ["python"] + sys.argv
    payload = {
        "benchmark": "linear",
        "environment": env,
        "config": cfg,
        "slack": SLACK,
        "datasets": [{k: v for k, v in d.items()
                      if k not in ("X", "y", "X_test", "y_test", "y_pm", "y_test_pm", "classes")}
                     for d in datasets],
        "results": results,
    }
    payload["targets"] = targets(results, env, args)
    payload["loadavg_end"] = loadavg()
    payload["total_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    write_json(out.with_suffix(".json"), payload)
    write_text(out.with_suffix(".md"), markdown(payload))
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} "
        f"in {payload['total_s']:.0f}s total")
    print(markdown(payload))


if __name__ == "__main__":
    main()
