"""Benchmark: kernel approximations + dasksvm.LinearSVC against the exact RBF SVM.

For each dataset and each D (``n_components``) the three maps of
:mod:`dasksvm.estimators.features` (``RandomFourierFeatures``,
``OrthogonalRandomFeatures``, ``Nystroem``, all for the RBF kernel
exp(-gamma ||x - x'||^2)) feed ``dasksvm.LinearSVC`` on a real
``LocalCluster`` (``--workers`` worker processes of ``--threads`` threads, one row
block per thread: 2 x 1 by default; 1 x 2 is the shape ``docs/choosing.md`` documents
for one machine, whose threads share one model), against scikit-learn's exact ``SVC(kernel="rbf")`` (LIBSVM,
``tol=1e-3``, ``cache_size=1000``, one core) with the same C and gamma on the
same rows.

Datasets (``$DASKSVM_DATA``, default ``../shared/data``):

* ``a9a``: the a9a / a9a.t files (123 binary features, CSR input: the
  maps' numba CSR transform), gamma = 0.05, C = 1;
* ``magic04``: 20% hold-out (seed ``--seed``), standardized on the training
  rows, dense input, gamma = 0.1 (= 1 / n_features), C = 1;
* ``skin_nonskin``: 20% hold-out, features / 255, dense input, gamma = 10,
  C = 1 (the reference settings of issue 9).

``--sizes`` caps the training rows (a seeded subsample; the test rows are
capped by ``--max-test``). The features are ``--dtype`` (float32 by default:
4 bytes a value, numpy's vectorized float32 cos); the persisted features of n
rows take 4 n D bytes and LinearSVC's dense blocks (the features with the
intercept column, CoCoA+'s dense kernels) as much again.

Measured per (dataset, map, D):

* ``map_s``: ``fit`` of the map on the dask training array plus its
  ``transform``, computed and persisted on the workers (the input is
  persisted before the clock starts);
* ``fit_s``: ``LinearSVC(C, solver="cocoa", tol, max_iter=--max-iter,
  shuffle=--shuffle).fit`` on the persisted features, for each ``tol`` in
  ``--tol`` (its rounds, its certified relative gap). The rows are already in
  random order (the hold-out permutation; a9a's file is not sorted by label),
  so the default run deals no rows (``shuffle=False``); ``solver="cocoa"``
  because ``solver="auto"`` picks Newton for n >= 10 (D + 1), which is far
  slower on these dense features (its blocks are made CSR);
* ``predict_s`` and the test accuracy: transform + predict of the test rows;
* the exact SVC's ``fit`` and ``predict`` times, accuracy and support vectors;
  ``speedup`` = SVC fit time / (map_s + fit_s).

The cluster start and the warm-up (numba JIT and imports on the workers: a
tiny fit of each path, float32 and float64, dense and CSR) are timed apart,
outside every row.

Nystroem needs an m x m eigendecomposition (O(m^3)) and n m^2 work to
transform; it runs for D <= ``--nystroem-max``, D <= n_train and
n_train D^2 <= ``--nystroem-work``. A (dataset, D) whose features would take
more than ``--max-gb`` on the workers (n_train D 2 itemsize bytes: the
persisted features and LinearSVC's dense blocks) is skipped and listed as
such.

Results: ``benchmarks/results/features.json`` and ``features.md``, and the
plot ``docs/img/features.png`` (accuracy vs D and time vs D, matplotlib, for
the rows of one tol: ``--plot-tol``, default the second of ``--tol``).

Usage::

    python benchmarks/bench_features.py [--quick] [--sizes 10000 | a9a=32561 ...]
        [--datasets a9a magic04 skin_nonskin] [--D 100 300 1000 3000 10000]
        [--workers 2] [--threads 1] [--tol 0.3 0.1 0.01] [--dtype float32]
        [--max-test 20000]

``--quick``: D in {100, 300, 1000}, at most 5,000 training rows per set.
"""

from __future__ import annotations

import argparse
import gc
import lzma
import sys
import time
import warnings
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

PLOT = REPO / "docs" / "img" / "features.png"

DATASETS = {
    "a9a": {"train": "a9a.xz", "test": "a9a.t.xz", "n_features": 123, "prep": "none",
            "sparse": True, "gamma": 0.05, "C": 1.0},
    "magic04": {"file": "magic04.xz", "n_features": 10, "prep": "standardize",
                "sparse": False, "gamma": 0.1, "C": 1.0, "test_fraction": 0.2},
    "skin_nonskin": {"file": "skin_nonskin.xz", "n_features": 3, "prep": "div255",
                     "sparse": False, "gamma": 10.0, "C": 1.0, "test_fraction": 0.2},
}
MAPS = ("rff", "orf", "nystroem")
MAP_NAMES = {"rff": "RandomFourierFeatures", "orf": "OrthogonalRandomFeatures",
             "nystroem": "Nystroem"}
FULL_D = (100, 300, 1000, 3000, 10000)
QUICK_D = (100, 300, 1000)
QUICK_ROWS = 5000
#: copies of each feature value held on the workers during a fit: the persisted
#: features and LinearSVC's dense blocks (the features with the intercept column)
FEATURE_COPIES = 2
DTYPES = {"float32": np.float32, "float64": np.float64}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]}]", *a, flush=True)


# --------------------------------------------------------------------------- data


def _load(path, n_features):
    from sklearn.datasets import load_svmlight_file

    with lzma.open(path) as f:
        X, y = load_svmlight_file(f, n_features=n_features)
    return sp.csr_matrix(X, dtype=np.float64), y


def _int32(X):
    """CSR with int32 indices (LIBSVM through scikit-learn accepts no others)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        X.indices = X.indices.astype(np.int32)
        X.indptr = X.indptr.astype(np.int32)
    return X


def prepare(name, cap, max_test, seed):
    """Train / test rows of one dataset, preprocessed, capped; and a description."""
    spec = DATASETS[name]
    rng = np.random.default_rng(seed)
    if "train" in spec:
        Xtr, ytr = _load(DATA_DIR / spec["train"], spec["n_features"])
        Xte, yte = _load(DATA_DIR / spec["test"], spec["n_features"])
        split = "test file"
    else:
        X, y = _load(DATA_DIR / spec["file"], spec["n_features"])
        perm = rng.permutation(X.shape[0])
        n_test = round(spec["test_fraction"] * X.shape[0])
        te, tr = perm[:n_test], perm[n_test:]
        Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
        split = f"{spec['test_fraction']:.0%} hold-out, seed {seed}"
    n_full = Xtr.shape[0]
    if cap is not None and cap < Xtr.shape[0]:
        keep = np.sort(rng.choice(Xtr.shape[0], size=cap, replace=False))
        Xtr, ytr = Xtr[keep], ytr[keep]
    if max_test is not None and max_test < Xte.shape[0]:
        keep = np.sort(rng.choice(Xte.shape[0], size=max_test, replace=False))
        Xte, yte = Xte[keep], yte[keep]
    if spec["prep"] == "standardize":
        Xtr, Xte = Xtr.toarray(), Xte.toarray()
        mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
        sd[sd == 0] = 1.0
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    elif spec["prep"] == "div255":
        Xtr, Xte = Xtr.toarray() / 255.0, Xte.toarray() / 255.0
    Xtr, Xte = _int32(Xtr), _int32(Xte)
    info = {
        "name": name, "n_train": Xtr.shape[0], "n_train_full": n_full, "n_test": Xte.shape[0],
        "d": Xtr.shape[1], "split": split, "prep": spec["prep"],
        "blocks": "CSR" if spec["sparse"] else "dense", "gamma": spec["gamma"], "C": spec["C"],
    }
    return Xtr, ytr, Xte, yte, info


def to_dask(X, n_blocks):
    import dask.array as da

    rows = -(-X.shape[0] // n_blocks)
    if sp.issparse(X):
        return da.from_array(sp.csr_matrix(X), chunks=(rows, -1), asarray=False)
    return da.from_array(np.ascontiguousarray(X), chunks=(rows, -1))


# --------------------------------------------------------------------------- runs


def run_exact(Xtr, ytr, Xte, yte, info, args):
    from sklearn.svm import SVC

    svc = SVC(C=info["C"], kernel="rbf", gamma=info["gamma"], tol=1e-3, cache_size=1000)
    with Timer() as t:
        svc.fit(Xtr, ytr)
    with Timer() as tp:
        pred = svc.predict(Xte)
    return {"fit_s": t.elapsed, "predict_s": tp.elapsed, "accuracy": float(np.mean(pred == yte)),
            "n_support": int(svc.support_.size)}


def make_map(kind, gamma, D, seed, dtype=np.float64):
    import dasksvm

    cls = getattr(dasksvm, MAP_NAMES[kind])
    if kind == "nystroem":
        return cls(kernel="rbf", gamma=gamma, n_components=D, random_state=seed, dtype=dtype)
    return cls(gamma=gamma, n_components=D, random_state=seed, dtype=dtype)


def run_map(client, kind, D, Xd, yd, Xtd, yte, info, args):
    """One map at one D: its fit + transform (persisted), then one LinearSVC fit and
    test prediction per ``tol``; one result row per tol."""
    from distributed import wait

    import dasksvm

    est = make_map(kind, info["gamma"], D, args.seed, DTYPES[args.dtype])
    with Timer() as tm:
        est.fit(Xd)
        Z = est.transform(Xd).persist()
        wait(Z)
    Zt = est.transform(Xtd)
    rows = []
    for tol in args.tol:
        clf = dasksvm.LinearSVC(C=info["C"], solver="cocoa", tol=tol, max_iter=args.max_iter,
                                shuffle=args.shuffle, random_state=args.seed, client=client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dasksvm.ConvergenceWarning)
            with Timer() as tf:
                clf.fit(Z, yd)
        with Timer() as tp:
            pred = clf.predict(Zt).compute()
        rounds = clf.history_[1:] if len(clf.history_) > 1 else clf.history_
        rows.append({
            "dataset": info["name"], "map": kind, "D": D, "tol": tol, "map_s": tm.elapsed,
            "fit_s": tf.elapsed, "total_s": tm.elapsed + tf.elapsed,
            "predict_s": tp.elapsed, "accuracy": float(np.mean(pred == yte)),
            "rounds": int(clf.n_iter_), "converged": bool(clf.converged_),
            "rel_gap": float(clf.rel_gap_),
            # the engine's own per-round time (median), and the fit outside the rounds
            # (input checks, building the blocks, the states, the release)
            "round_s": float(np.median([r["round_time"] for r in rounds])),
            "outside_rounds_s": tf.elapsed - float(sum(r["round_time"]
                                                       for r in clf.history_)),
        })
    del Z, Zt
    gc.collect()
    return rows


def warm_up(client, n_blocks):
    """JIT / import costs on the workers, outside the timings: a tiny fit per path (dense
    float32 and float64 features, CSR input; CoCoA+'s dense and CSR kernels)."""
    import dask.array as da

    import dasksvm

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    for Xw in (X, sp.csr_matrix(np.where(X > 0.5, 1.0, 0.0))):
        Xd = to_dask(Xw, n_blocks)
        yd = da.from_array(y, chunks=(Xd.chunks[0],))
        for dtype in (np.float32, np.float64):
            for kind in MAPS:
                Z = make_map(kind, 0.1, 20, 0, dtype).fit(Xd).transform(Xd)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf = dasksvm.LinearSVC(solver="cocoa", tol=1e-2, max_iter=5,
                                            shuffle=False, client=client).fit(Z, yd)
                    clf.predict(Z).compute()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dasksvm.LinearSVC(solver="cocoa", tol=1e-2, max_iter=5, client=client).fit(Xd, yd)


def run(args):
    import dask.array as da
    from distributed import Client, LocalCluster

    results = {"exact": {}, "maps": [], "datasets": {}, "skipped": []}
    with Timer() as tc:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                               processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               silence_logs=40)
        client = Client(cluster)  # the default client: Nystroem's fit gathers through it
    results["cluster_start_s"] = tc.elapsed
    try:
        with Timer() as tw:
            warm_up(client, args.workers * args.threads)
        results["warm_up_s"] = tw.elapsed
        for name in args.datasets:
            cap = args.caps.get(name)
            Xtr, ytr, Xte, yte, info = prepare(name, cap, args.max_test, args.seed)
            results["datasets"][name] = info
            log(f"{name}: {info['n_train']} train / {info['n_test']} test rows, d={info['d']}")
            exact = run_exact(Xtr, ytr, Xte, yte, info, args)
            results["exact"][name] = exact
            log(f"  exact SVC: acc {exact['accuracy']:.4f}, fit {exact['fit_s']:.2f}s, "
                f"{exact['n_support']} SV")
            Xd = to_dask(Xtr, args.workers * args.threads).persist()
            Xtd = to_dask(Xte, args.workers * args.threads).persist()
            yd = da.from_array(ytr, chunks=(Xd.chunks[0],)).persist()
            for kind in args.maps:
                for D in args.D:
                    reason = None
                    if kind == "nystroem" and (D > args.nystroem_max or D > info["n_train"]):
                        reason = f"Nystroem D > {args.nystroem_max} or > n train"
                    elif kind == "nystroem" and info["n_train"] * D * D > args.nystroem_work:
                        reason = (f"Nystroem n D^2 = {info['n_train'] * D * D:.2g} > "
                                  f"--nystroem-work {args.nystroem_work:.2g}")
                    itemsize = np.dtype(DTYPES[args.dtype]).itemsize
                    gb = FEATURE_COPIES * itemsize * info["n_train"] * D / 1e9
                    if gb > args.max_gb:
                        reason = f"features ~{gb:.3g} GB > --max-gb {args.max_gb}"
                    if reason:
                        results["skipped"].append({"dataset": name, "map": kind, "D": D,
                                                   "reason": reason})
                        continue
                    for r in run_map(client, kind, D, Xd, yd, Xtd, yte, info, args):
                        r["speedup"] = exact["fit_s"] / r["total_s"]
                        r["acc_minus_exact"] = r["accuracy"] - exact["accuracy"]
                        results["maps"].append(r)
                        log(f"  {kind:8s} D={D:5d} tol={r['tol']:g}: acc {r['accuracy']:.4f} "
                            f"map {r['map_s']:.2f}s fit {r['fit_s']:.2f}s ({r['rounds']} "
                            f"rounds, {r['round_s']:.3f}s each) -> x{r['speedup']:.2f}")
            del Xd, Xtd, yd
            client.run(gc.collect)
    finally:
        client.close()
        cluster.close()
    return results


# --------------------------------------------------------------------------- output


def _best(res, name, tol=None):
    """The fastest row (map + fit) within 1 point of the exact accuracy, or None."""
    ok = [r for r in res["maps"] if r["dataset"] == name and r["acc_minus_exact"] >= -0.01
          and (tol is None or r["tol"] == tol)]
    return min(ok, key=lambda r: r["total_s"]) if ok else None


def markdown(payload):
    res, env, cfg = payload["results"], payload["env"], payload["config"]
    lines = ["# Kernel approximations + dasksvm.LinearSVC vs exact RBF SVC\n"]
    lines.append(
        f"Command: `{' '.join(env['argv'])}`; {env['date']}, {env['cpu_count']} CPUs, "
        f"load average at start {env['loadavg_start']}, at end {payload['loadavg_end']}; "
        f"{cfg['workers']} worker process(es) of {cfg.get('threads', 1)} thread(s), one "
        "block per thread. "
        f"Features: {cfg['dtype']}. LinearSVC: solver='cocoa', shuffle={cfg['shuffle']}, "
        f"tol in {cfg['tol']} (relative duality gap), max_iter={cfg['max_iter']}. "
        f"Exact: scikit-learn SVC(kernel='rbf', tol=1e-3, cache_size=1000), one core. "
        f"Outside every row: cluster start {res['cluster_start_s']:.2f} s, warm-up (JIT, "
        f"imports) {res['warm_up_s']:.2f} s; the whole run {payload['wall_s']:.0f} s.\n"
    )
    if cfg["quick"] or any(v["n_train"] < v["n_train_full"] for v in res["datasets"].values()):
        lines.append("**Training rows capped** (`--sizes` / `--quick`): see n train below.\n")
    rows = []
    for name, info in res["datasets"].items():
        ex = res["exact"][name]
        rows.append([name, f"{info['n_train']:,} of {info['n_train_full']:,}",
                     f"{info['n_test']:,}", info["d"], info["blocks"], info["prep"],
                     info["split"], info["gamma"], info["C"], fmt(ex["accuracy"], ".4f"),
                     fmt(ex["fit_s"], ".2f"), fmt(ex["predict_s"], ".2f"), ex["n_support"]])
    lines.append(md_table(
        ["dataset", "n train", "n test", "d", "input", "prep", "split", "gamma", "C",
         "SVC acc", "SVC fit (s)", "SVC predict (s)", "SVs"], rows, "lrrrllllrrrrr"))
    lines.append("")
    lines.append("Per row: the map's fit + transform of the training rows (persisted on the "
                 "workers), the LinearSVC fit on them at that tol (rounds, the median "
                 "round, the fit's time outside its rounds: input checks, blocks, states), "
                 "total = map + fit, speedup = exact SVC fit / total.\n")
    rows = []
    for r in res["maps"]:
        ex = res["exact"][r["dataset"]]
        rows.append([r["dataset"], r["map"], r["D"], fmt(r["tol"], "g"),
                     fmt(r["accuracy"], ".4f"), fmt(100 * r["acc_minus_exact"], "+.2f"),
                     fmt(r["map_s"], ".2f"), fmt(r["fit_s"], ".2f"), r["rounds"],
                     fmt(r["round_s"], ".3f"), fmt(r["outside_rounds_s"], ".2f"),
                     fmt(r["rel_gap"], ".3f"), fmt(r["total_s"], ".2f"),
                     fmt(ex["fit_s"], ".2f"), fmt(r["speedup"], ".1f"),
                     fmt(r["predict_s"], ".2f")])
    lines.append(md_table(
        ["dataset", "map", "D", "tol", "test acc", "vs exact (points)",
         "map fit+transform (s)", "LinearSVC fit (s)", "rounds", "s / round",
         "fit outside rounds (s)", "rel gap", "total (s)", "exact SVC fit (s)", "speedup",
         "test predict (s)"], rows, "llrrrrrrrrrrrrrr"))
    if res["skipped"]:
        lines.append("\nNot run:\n")
        lines.append(md_table(["dataset", "map", "D", "why"],
                              [[s["dataset"], s["map"], s["D"], s["reason"]]
                               for s in res["skipped"]], "llrl"))
    lines.append("\nWithin 1 point of the exact accuracy, fastest (map + fit) per dataset "
                 "and tol:\n")
    rows = []
    for name in res["datasets"]:
        for tol in cfg["tol"]:
            b = _best(res, name, tol)
            if b:
                rows.append([name, fmt(tol, "g"), b["map"], b["D"], fmt(b["accuracy"], ".4f"),
                             fmt(b["total_s"], ".2f"), fmt(res["exact"][name]["fit_s"], ".2f"),
                             fmt(b["speedup"], ".1f")])
            else:
                rows.append([name, fmt(tol, "g"), "none", "-", "-", "-", "-", "-"])
    lines.append(md_table(["dataset", "tol", "map", "D", "test acc", "total (s)",
                           "SVC fit (s)", "speedup vs SVC"], rows, "lrlrrrrr"))
    if "skin_nonskin" in res["datasets"]:
        b = _best(res, "skin_nonskin")
        verdict = ("no map within 1 point" if b is None else
                   f"best {b['map']} D={b['D']} tol={b['tol']:g}: accuracy "
                   f"{b['accuracy']:.4f} (exact {res['exact']['skin_nonskin']['accuracy']:.4f})"
                   f", {b['total_s']:.2f} s against {res['exact']['skin_nonskin']['fit_s']:.2f}"
                   f" s, {b['speedup']:.1f}x: target "
                   f"{'met' if b['speedup'] >= 20 else 'not met'}")
        lines.append(f"\nIssue 9's target (skin_nonskin within 1 point at >= 20x less time): "
                     f"{verdict}.")
    return "\n".join(lines) + "\n"


def plot(payload, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot")
        return None
    res = payload["results"]
    tol = payload["config"]["plot_tol"]
    names = list(res["datasets"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 7.5), squeeze=False)
    for j, name in enumerate(names):
        ex = res["exact"][name]
        ax_a, ax_t = axes[0, j], axes[1, j]
        for kind, marker in zip(MAPS, "osd", strict=True):
            rs = sorted((r for r in res["maps"] if r["dataset"] == name and r["map"] == kind
                         and r["tol"] == tol), key=lambda r: r["D"])
            if not rs:
                continue
            Ds = [r["D"] for r in rs]
            ax_a.plot(Ds, [r["accuracy"] for r in rs], marker=marker, label=kind)
            ax_t.plot(Ds, [r["total_s"] for r in rs], marker=marker, label=f"{kind} (map + fit)")
        ax_a.axhline(ex["accuracy"], color="k", ls="--", label="exact SVC")
        ax_a.axhline(ex["accuracy"] - 0.01, color="k", ls=":", lw=0.8, label="exact - 1 point")
        ax_t.axhline(ex["fit_s"], color="k", ls="--", label="exact SVC fit")
        ax_t.axhline(ex["fit_s"] / 20, color="k", ls=":", lw=0.8, label="exact SVC fit / 20")
        info = res["datasets"][name]
        ax_a.set_title(f"{name} ({info['n_train']:,} train rows), LinearSVC tol={tol:g}")
        ax_a.set_xscale("log")
        ax_t.set_xscale("log")
        ax_t.set_yscale("log")
        ax_a.set_ylabel("test accuracy")
        ax_t.set_ylabel("seconds")
        ax_t.set_xlabel("D (n_components)")
        ax_a.grid(True, which="both", alpha=0.3)
        ax_t.grid(True, which="both", alpha=0.3)
        if j == 0:
            ax_a.legend(fontsize=8)
            ax_t.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_caps(values, datasets):
    caps = {}
    for v in values or []:
        if "=" in v:
            k, n = v.split("=", 1)
            if k not in DATASETS:
                raise SystemExit(f"--sizes: unknown dataset {k!r}")
            caps[k] = int(n)
        else:
            caps.update({k: int(v) for k in datasets})
    return caps


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS))
    p.add_argument("--D", nargs="+", type=int, default=None, help=f"default {FULL_D}")
    p.add_argument("--quick", action="store_true",
                   help=f"D in {QUICK_D}, at most {QUICK_ROWS} training rows per set")
    p.add_argument("--sizes", nargs="+", default=None,
                   help="cap the training rows: N (all sets) or name=N")
    p.add_argument("--max-test", type=int, default=None, help="cap the test rows")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker process")
    p.add_argument("--tol", nargs="+", type=float, default=[0.3, 0.1, 0.01],
                   help="LinearSVC tol (relative duality gap): one fit per value")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32",
                   help="of the features (the maps' dtype)")
    p.add_argument("--shuffle", action="store_true",
                   help="LinearSVC(shuffle=True): deal the feature rows over the blocks")
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--nystroem-max", type=int, default=3000)
    p.add_argument("--nystroem-work", type=float, default=2e11,
                   help="skip Nystroem where n_train D^2 (its transform's n m^2) is larger")
    p.add_argument("--max-gb", type=float, default=6.0,
                   help="skip a (dataset, D) whose features would take more on the workers "
                        "(n D 2 itemsize bytes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS_DIR / "features"),
                   help="results path without suffix (.json and .md are written)")
    p.add_argument("--plot", default=str(PLOT))
    p.add_argument("--plot-tol", type=float, default=None,
                   help="the tol whose rows the plot shows (default: the second of --tol, "
                        "else the first)")
    args = p.parse_args(argv)
    if args.plot_tol is None:
        args.plot_tol = args.tol[1] if len(args.tol) > 1 else args.tol[0]
    elif args.plot_tol not in args.tol:
        raise SystemExit("--plot-tol must be one of --tol")
    if args.D is None:
        args.D = list(QUICK_D if args.quick else FULL_D)
    args.caps = parse_caps(args.sizes, args.datasets)
    if args.quick:
        for k in args.datasets:
            args.caps[k] = min(args.caps.get(k, QUICK_ROWS), QUICK_ROWS)
    return args


def main(argv=None):
    args = parse_args(argv)
    env = env_info()
    log(f"config: {vars(args)}")
    with Timer() as t:
        results = run(args)
    config = {k: v for k, v in vars(args).items()}
    payload = {"env": env, "config": config, "results": results, "wall_s": t.elapsed,
               "loadavg_end": loadavg()}
    out = Path(args.out)
    write_json(out.with_suffix(".json"), payload)
    write_text(out.with_suffix(".md"), markdown(payload))
    png = plot(payload, Path(args.plot))
    log(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}, plot {png}; "
        f"{t.elapsed:.0f}s")


if __name__ == "__main__":
    main()
