"""Weston-Watkins on dask: epoch time on 1 and 2 cores, time to a duality gap, peers.

What it measures, on generated text-like data (``dasksvm.datasets.make_classification``,
``nnz_per_row`` non-zeros per row, power-law class sizes):

1. **Epoch time on three cluster shapes**: 1 worker process, 2 worker
   processes (one thread each), and 1 worker process with 2 threads (the
   kernels release the GIL, so two pair chains run side by side and the
   weight blocks never leave the process). The same number of bundles on
   all, so that an epoch is the same work: the median time of the epochs
   after the first (the first visits every variable, later ones only the
   working sets, and it also pays for moving the weights in and for loading
   the JIT-compiled kernels), and the speedups against 1 worker.
2. **Time to a relative duality gap** ``--tol`` (default 1e-3) on the shapes
   of ``--gap-on``: ``solve_ww`` from the shuffle to the certified stop, with
   the epochs, the bytes moved and the peak RSS of each worker process.
3. **Peers**: scikit-learn ``LinearSVC`` (LIBLINEAR) Crammer-Singer and
   one-vs-rest (hinge loss), both without intercept, ``tol=--tol`` and a
   ``max_iter`` cap, on the same training rows in this process. LIBLINEAR's
   ``tol`` is its own stopping rule (projected-gradient / KKT violation),
   not a duality gap: the numbers say how long the peers take at their
   usual notion of "the same accuracy", not at a certified one. Held-out
   accuracy is reported for everybody.
4. **A 10,000-class run** (``--big-classes``): ``solve_ww`` in the sparse
   weight layout (no dense ``K x d`` matrix anywhere) for a few epochs; time
   per epoch and peak memory per worker.

JIT compile time is measured separately (a tiny fit on each fresh cluster
before the timed runs). Results: ``benchmarks/results/ww{--tag}.json`` and ``.md``.

Run from the repository root::

    python benchmarks/bench_ww.py                       # 200k x 100k, 1000 classes
    python benchmarks/bench_ww.py --n-samples 50000 --n-features 50000 \\
        --big-n-samples 20000 --big-n-features 50000    # smaller
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (
    RESULTS_DIR,
    PeakRSS,
    Timer,
    env_info,
    fmt,
    loadavg,
    md_table,
    write_json,
    write_text,
)


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=200_000, help="training rows")
    p.add_argument("--n-test", type=int, default=20_000, help="held-out rows")
    p.add_argument("--n-features", type=int, default=100_000)
    p.add_argument("--n-classes", type=int, default=1000)
    p.add_argument("--nnz-per-row", type=float, default=50.0)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--tol", type=float, default=1e-3, help="relative duality gap")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--n-bundles", type=int, default=4, help="bundles (same on 1 and 2 workers)")
    p.add_argument("--timing-epochs", type=int, default=3,
                   help="epochs of the 1- vs 2-worker epoch-time runs")
    p.add_argument("--chunk-rows", type=int, default=25_000, help="rows per input block")
    p.add_argument("--peer-max-iter", type=int, default=200,
                   help="max_iter of the LIBLINEAR peers")
    p.add_argument("--gap-on", nargs="*", choices=tuple(CONFIGS), default=["2w", "1w2t"],
                   help="cluster shapes that also run to the gap (1w, 2w, 1w2t)")
    p.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS),
                   help="cluster shapes of the epoch-time runs (1w is always run: the base)")
    p.add_argument("--peers", nargs="*", choices=("cs", "ovr"), default=["cs", "ovr"],
                   help="LIBLINEAR peers to run")
    p.add_argument("--skip-peers", action="store_true", help="same as --peers with no value")
    p.add_argument("--big-classes", type=int, default=10_000, help="0 skips the big run")
    p.add_argument("--big-n-samples", type=int, default=50_000)
    p.add_argument("--big-n-features", type=int, default=100_000)
    p.add_argument("--big-n-bundles", type=int, default=16)
    p.add_argument("--big-epochs", type=int, default=2)
    p.add_argument("--big-on", choices=tuple(CONFIGS), default="2w",
                   help="cluster shape of the big run")
    p.add_argument("--big-sparse", choices=("auto", "yes", "no"), default="auto",
                   help="weight layout of the big run (auto: sparse when K*d*8 > 1 GiB)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--tag", default="", help="suffix of the result files (ww{tag}.json)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# objectives (numpy, on the client) for the result table
# ---------------------------------------------------------------------------------------


def cs_primal(W, X, y, C, chunk=5000):
    import numpy as np

    total = 0.0
    for s in range(0, X.shape[0], chunk):
        M = np.asarray(X[s:s + chunk] @ W.T)
        yy = y[s:s + chunk].astype(np.int64)
        own = M[np.arange(len(yy)), yy]
        D = 1.0 + M - own[:, None]
        D[np.arange(len(yy)), yy] = 0.0
        total += np.maximum(D.max(axis=1), 0.0).sum()
    return 0.5 * float((W * W).sum()) + C * total


def ovr_primal(W, X, y, C, chunk=5000):
    import numpy as np

    total = 0.0
    for s in range(0, X.shape[0], chunk):
        M = np.asarray(X[s:s + chunk] @ W.T)
        yy = y[s:s + chunk].astype(np.int64)
        S = -np.ones_like(M)
        S[np.arange(len(yy)), yy] = 1.0
        total += np.maximum(0.0, 1.0 - S * M).sum()
    return 0.5 * float((W * W).sum()) + C * total


def accuracy(W, X, y, chunk=5000):
    import numpy as np

    hits = 0
    for s in range(0, X.shape[0], chunk):
        M = np.asarray(X[s:s + chunk] @ (W.T if not hasattr(W, "toarray") else W.T.toarray()))
        hits += int((M.argmax(axis=1) == y[s:s + chunk]).sum())
    return hits / X.shape[0]


# ---------------------------------------------------------------------------------------
# the dask side
# ---------------------------------------------------------------------------------------


#: cluster shapes of the epoch-time runs: label -> (worker processes, threads per worker)
CONFIGS = {"1w": (1, 1), "2w": (2, 1), "1w2t": (1, 2)}
CONFIG_NAMES = {"1w": "1 worker", "2w": "2 workers (processes)",
                "1w2t": "1 worker, 2 threads"}


def _cluster(n_workers, threads=1):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                           host="127.0.0.1", dashboard_address=None, silence_logs=40)
    return cluster, Client(cluster)


def _worker_pids(client):
    return {w: pid for w, pid in client.run(os.getpid).items()}


def _warm_up(client):
    """A tiny fit: compiles (or loads from the numba cache) the kernels on every worker."""
    import numpy as np

    from dasksvm.parallel.blocks import BlockSet
    from dasksvm.solvers import solve_ww

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8))
    y = (np.arange(64) % 4).astype(float)
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    with Timer() as t:
        for sparse in (False, True):
            blocks = BlockSet.from_arrays(client, X, y, n_blocks=n_workers)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                solve_ww(blocks, 4, C=1.0, tol=1e-9, max_iter=1, n_bundles=4, sparse_coef=sparse)
            blocks.release()
    return t.elapsed


def run_ww(client, X, y, K, *, C, tol, max_iter, n_bundles, sparse_coef=None, quiet=False):
    """solve_ww on the rows of the dask arrays; returns (result, wall, peak RSS summary)."""
    from dasksvm.parallel.blocks import BlockSet
    from dasksvm.solvers import solve_ww

    blocks = BlockSet.from_arrays(client, X, y.astype("f8"), name="bench-data")
    pids = _worker_pids(client)
    with PeakRSS(pids, interval=0.2) as mem, Timer() as t, warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        r = solve_ww(blocks, K, C=C, tol=tol, max_iter=max_iter, n_bundles=n_bundles,
                     random_state=0, sparse_coef=sparse_coef)
    blocks.release()
    return r, t.elapsed, mem.summary()


def _epoch_stats(r):
    import numpy as np

    epochs = [h for h in r.history if h["n_tasks"]]  # not the evaluation after max_iter
    times = [h["epoch_time"] for h in epochs]
    later = epochs[1:] if len(epochs) > 1 else epochs
    return {
        "epoch_times": times,
        "epoch_time_median": float(np.median([h["epoch_time"] for h in later])),
        "first_epoch_time": times[0],
        "bytes_per_epoch": [h["bytes"] for h in epochs],
        "bytes_per_epoch_median": float(np.median([h["bytes"] for h in later])),
        "tasks_per_epoch": [h["n_tasks"] for h in epochs],
        "rel_gaps": [h["rel_gap"] for h in r.history],
        "shuffle_time": r.history[0]["time"] - r.history[0]["epoch_time"],
    }


def main(argv=None):
    import dask
    import numpy as np

    from dasksvm.datasets import make_classification

    args = _parse(argv)
    env = env_info()
    t_start = time.perf_counter()
    out = {"env": env, "args": {k: (str(v) if isinstance(v, Path) else v)
                                for k, v in vars(args).items()}}
    n, nt, d, K = args.n_samples, args.n_test, args.n_features, args.n_classes
    print(f"data: {n} + {nt} rows x {d} features, {K} classes", flush=True)
    X, y = make_classification(n + nt, d, n_classes=K, nnz_per_row=args.nnz_per_row,
                               class_sizes="powerlaw", chunks=args.chunk_rows, random_state=0)
    Xtr_d, ytr_d = X[:n], y[:n]
    with Timer() as t_gen:
        Xte, yte = dask.compute(X[n:], y[n:], scheduler="threads")
    out["data"] = {"n_train": n, "n_test": nt, "n_features": d, "n_classes": K,
                   "nnz_per_row": args.nnz_per_row, "class_sizes": "powerlaw",
                   "generator": f"make_classification({n + nt}, {d}, n_classes={K}, "
                                f"nnz_per_row={args.nnz_per_row}, class_sizes='powerlaw', "
                                "random_state=0); first n_train rows train, rest test"}

    runs = {}
    # 1. epoch time per cluster shape (same bundles: the same work per epoch)
    # 2. time to the requested gap on the shapes of --gap-on
    labels = [k for k in CONFIGS if k == "1w" or k in args.configs]
    for label in labels:
        w, threads = CONFIGS[label]
        cluster, client = _cluster(w, threads)
        try:
            jit = _warm_up(client)
            print(f"[{label}] JIT warm-up {jit:.1f}s", flush=True)
            r, wall, mem = run_ww(client, Xtr_d, ytr_d, K, C=args.C, tol=1e-12,
                                  max_iter=args.timing_epochs, n_bundles=args.n_bundles,
                                  quiet=True)
            st = _epoch_stats(r)
            runs[f"epochs-{label}"] = {"workers": w, "threads": threads, "jit_s": jit,
                                       "wall_s": wall, **st, "peak_rss": mem,
                                       "n_bundles": r.state["n_bundles"],
                                       "pair_sweeps": r.state["pair_sweeps"],
                                       "shuffle_bytes": r.state["shuffle_bytes"]}
            print(f"[{label}] epoch {st['epoch_time_median']:.2f}s "
                  f"(first {st['first_epoch_time']:.2f}s), peak RSS {mem['peak_mib']} MiB",
                  flush=True)
            if label in args.gap_on:
                r, wall, mem = run_ww(client, Xtr_d, ytr_d, K, C=args.C, tol=args.tol,
                                      max_iter=args.max_epochs, n_bundles=args.n_bundles)
                st = _epoch_stats(r)
                hit = next((h["time"] for h in r.history if h["rel_gap"] <= args.tol), None)
                coef = r.coef
                runs[f"ww-{label}"] = {
                    "workers": w, "threads": threads, "wall_s": wall, "time_to_tol_s": hit,
                    "epochs": r.n_iter, "converged": r.converged, "rel_gap": r.rel_gap,
                    "primal": r.primal, "dual": r.dual, **st, "peak_rss": mem,
                    "test_accuracy": accuracy(coef, Xte, yte),
                    "bytes_total": int(sum(h["bytes"] for h in r.history)),
                    "ws_nnz": [h.get("ws_nnz") for h in r.history],
                    "n_bundles": r.state["n_bundles"], "pair_sweeps": r.state["pair_sweeps"],
                    "shuffle_bytes": r.state["shuffle_bytes"],
                }
                print(f"[{label}] to rel gap {args.tol:g}: {hit} s, {r.n_iter} epochs, "
                      f"acc {runs[f'ww-{label}']['test_accuracy']:.4f}", flush=True)
        finally:
            client.close()
            cluster.close()
    e1 = runs["epochs-1w"]["epoch_time_median"]
    out["speedup_epoch_vs_1w"] = {label: e1 / runs[f"epochs-{label}"]["epoch_time_median"]
                                  for label in labels if label != "1w"}
    out["runs"] = runs

    # 3. peers (LIBLINEAR) in this process
    peers = {}
    wanted = [] if args.skip_peers else args.peers
    if wanted:
        from sklearn.exceptions import ConvergenceWarning as SkConv
        from sklearn.svm import LinearSVC

        with Timer() as t_load:
            Xtr, ytr = dask.compute(Xtr_d, ytr_d, scheduler="threads")
        out["data"]["client_load_s"] = t_load.elapsed + t_gen.elapsed
        for name, kw, prim in (
            ("liblinear-cs", {"multi_class": "crammer_singer"}, cs_primal),
            ("liblinear-ovr", {"multi_class": "ovr", "loss": "hinge"}, ovr_primal),
        ):
            if name.split("-")[1] not in wanted:
                continue
            est = LinearSVC(C=args.C, tol=args.tol, fit_intercept=False,
                            max_iter=args.peer_max_iter, **kw)
            with PeakRSS({"client": os.getpid()}, interval=0.2) as mem, Timer() as t, \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SkConv)
                est.fit(Xtr, ytr)
            W = est.coef_
            peers[name] = {
                "wall_s": t.elapsed, "n_iter": int(np.max(est.n_iter_)),
                "converged": not any(issubclass(c.category, SkConv) for c in caught),
                "own_primal": prim(W, Xtr, ytr, args.C),
                "test_accuracy": accuracy(W, Xte, yte), "peak_rss": mem.summary(),
            }
            print(f"[{name}] {t.elapsed:.1f}s acc {peers[name]['test_accuracy']:.4f} "
                  f"converged {peers[name]['converged']}", flush=True)
        del Xtr, ytr
    out["peers"] = peers

    # 4. many classes, sparse weight layout
    big = None
    if args.big_classes:
        nb, db, Kb = args.big_n_samples, args.big_n_features, args.big_classes
        print(f"big: {nb} rows x {db} features, {Kb} classes", flush=True)
        Xb, yb = make_classification(nb, db, n_classes=Kb, nnz_per_row=args.nnz_per_row,
                                     class_sizes="powerlaw", chunks=args.chunk_rows,
                                     random_state=1)
        cluster, client = _cluster(*CONFIGS[args.big_on])
        try:
            jit = _warm_up(client)
            r, wall, mem = run_ww(client, Xb, yb, Kb, C=args.C, tol=1e-12,
                                  max_iter=args.big_epochs, n_bundles=args.big_n_bundles,
                                  quiet=True,
                                  sparse_coef={"auto": None, "yes": True, "no": False}[
                                      args.big_sparse])
            st = _epoch_stats(r)
            coef = r.coef
            big = {"n_samples": nb, "n_features": db, "n_classes": Kb,
                   "cluster": CONFIG_NAMES[args.big_on],
                   "jit_s": jit, "wall_s": wall, **st, "peak_rss": mem,
                   "sparse_coef": r.state["sparse_coef"], "n_bundles": r.state["n_bundles"],
                   "pair_sweeps": r.state["pair_sweeps"], "coef_nnz": int(coef.nnz)
                   if hasattr(coef, "nnz") else None,
                   "dense_coef_would_be_gib": Kb * db * 8 / 2**30,
                   "rel_gap_after": r.rel_gap}
            print(f"[big] epoch {st['epoch_time_median']:.1f}s peak RSS {mem['peak_mib']} MiB",
                  flush=True)
        finally:
            client.close()
            cluster.close()
    out["big"] = big
    out["total_wall_s"] = time.perf_counter() - t_start
    out["env"]["loadavg_end"] = loadavg()
    stem = f"ww{args.tag}"
    write_json(args.out / f"{stem}.json", out)
    write_text(args.out / f"{stem}.md", _markdown(out, args))
    print(f"wrote {args.out / stem}.json and .md", flush=True)
    return out


def _markdown(out, args):
    env, data, runs, peers, big = out["env"], out["data"], out["runs"], out["peers"], out["big"]
    lines = [
        "# Weston-Watkins benchmark: dasksvm `solve_ww` on 1 and 2 cores vs LIBLINEAR\n",
        (f"Run {env['date']} on {env['cpu_count']} cores / {env['memory_gib']} GiB (shared "
        f"machine; load average at start {env['loadavg_start']}, at end "
        f"{env.get('loadavg_end')}). Command: `python {' '.join(env['argv'])}`. Total wall "
        f"time {out['total_wall_s']:.0f} s.\n"),
        (f"Data: {data['generator']} ({data['n_train']:,} x {data['n_features']:,}, "
        f"{data['n_classes']} classes, ~{data['nnz_per_row']:g} non-zeros per row). "
        f"C = {args.C}, no intercept. WW stops at a relative duality gap of {args.tol:g}; "
        f"LIBLINEAR runs with tol = {args.tol:g} (its own KKT-violation rule, not a gap) "
        f"and max_iter = {args.peer_max_iter}.\n"),
        "## Epoch time: 1 worker, 2 worker processes, 1 worker with 2 threads\n",
        ("Same bundles everywhere (so an epoch is the same work); median of the epochs after "
        "the first. JIT = a tiny warm-up fit on the fresh cluster (numba cache).\n"),
    ]
    rows = []
    for label in CONFIGS:
        r = runs.get(f"epochs-{label}")
        if r is None:
            continue
        rows.append([CONFIG_NAMES[label], r["n_bundles"], r["pair_sweeps"],
                     fmt(r["jit_s"], ".1f"), fmt(r["shuffle_time"], ".1f"),
                     fmt(r["first_epoch_time"], ".1f"), fmt(r["epoch_time_median"], ".2f"),
                     fmt(r["bytes_per_epoch_median"] / 2**20, ".0f"),
                     fmt(r["peak_rss"]["peak_mib"], ".0f")])
    lines.append(md_table(["cluster", "bundles", "pair sweeps", "JIT (s)", "shuffle (s)",
                           "first epoch (s)", "epoch (s)", "MiB moved / epoch",
                           "peak RSS / process (MiB)"], rows, "lrrrrrrrr"))
    lines.append("\nSpeedup of an epoch against 1 worker: " + ", ".join(
        f"{CONFIG_NAMES[k]} **{v:.2f}x**" for k, v in out["speedup_epoch_vs_1w"].items())
        + ".\n")
    lines.append("## Time to the target, and the LIBLINEAR peers\n")
    rows = []
    gaps = []
    for label in CONFIGS:
        r = runs.get(f"ww-{label}")
        if r is None:
            continue
        rows.append([f"dasksvm WW ({CONFIG_NAMES[label]})", fmt(r["time_to_tol_s"], ".1f"),
                     fmt(r["wall_s"], ".1f"), r["epochs"], fmt(r["converged"]),
                     f"{r['rel_gap']:.2e}", fmt(r["test_accuracy"], ".4f"),
                     fmt(r["peak_rss"]["peak_mib"], ".0f")])
        gaps.append(f"{CONFIG_NAMES[label]}: " + ", ".join(f"{g:.2e}" for g in r["rel_gaps"]))
    for name, p in peers.items():
        rows.append([f"scikit-learn LinearSVC {name.split('-')[1].upper()} (LIBLINEAR, 1 core)",
                     "-", fmt(p["wall_s"], ".1f"), p["n_iter"], fmt(p["converged"]), "-",
                     fmt(p["test_accuracy"], ".4f"), fmt(p["peak_rss"]["peak_mib"], ".0f")])
    if rows:
        lines.append(md_table(["method", "time to gap (s)", "fit wall (s)", "epochs / iters",
                               "converged", "final rel gap", "test acc", "peak RSS (MiB)"],
                              rows, "lrrrrrrr"))
    else:
        lines.append("(not run: `--gap-on` empty and `--skip-peers`)\n")
    if gaps:
        lines.append("\nWW per-epoch relative gaps:\n")
        lines.extend(f"- {g}" for g in gaps)
        lines.append("")
    if big:
        lines.append(f"## {big['n_classes']:,} classes (sparse weight layout)\n")
        lines.append(
            f"{big['n_samples']:,} x {big['n_features']:,}, {big['n_classes']:,} power-law "
            f"classes, {big['cluster']}, {big['n_bundles']} bundles, pair sweeps "
            f"{big['pair_sweeps']}. A dense K x d weight matrix would take "
            f"{big['dense_coef_would_be_gib']:.1f} GiB; the sparse layout was "
            f"{'on' if big['sparse_coef'] else 'off (automatic choice)'}"
            + (f" and the final coef has {big['coef_nnz']:,} non-zeros" if big["coef_nnz"]
               else "") + ".\n")
        lines.append(md_table(
            ["epochs", "shuffle (s)", "epoch times (s)", "MiB moved / epoch",
             "peak RSS / worker (MiB)", "rel gap after"],
            [[len(big["epoch_times"]), fmt(big["shuffle_time"], ".1f"),
              ", ".join(f"{t:.1f}" for t in big["epoch_times"]),
              ", ".join(f"{b / 2**20:.0f}" for b in big["bytes_per_epoch"]),
              fmt(big["peak_rss"]["peak_mib"], ".0f"), f"{big['rel_gap_after']:.2e}"]],
            "rrrrrr"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
