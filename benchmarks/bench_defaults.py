"""Benchmark: do the estimators converge at their defaults on the real datasets?

Every estimator at its defaults (``tol`` 1e-3 relative duality gap, ``max_iter`` 1000; no
parameter set but the client) on the one-machine cluster of :func:`dasksvm.local_cluster`:
``LinearSVC()`` on each binary training file of ``$DASKSVM_DATA`` and ``MulticlassSVC()``
on each multiclass one (``--datasets`` picks). Recorded per fit, in one run: the solver
``auto`` picked, rounds, whether a ``ConvergenceWarning`` was raised, the certified
relative gap, the whole fit's wall time, and the training accuracy. The numba JIT is paid
by a small fit of each estimator before the clock starts; it and the cluster start are
reported apart.

Results: ``benchmarks/results/defaults.json`` and ``defaults.md``.

Usage::

    python benchmarks/bench_defaults.py [--datasets a9a w8a ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
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

#: name -> (training file, task)
DATASETS = {
    "a9a": ("a9a.xz", "binary"),
    "w8a": ("w8a.xz", "binary"),
    "mushrooms": ("mushrooms_agaricus.train.xz", "binary"),
    "mr_tfidf": ("mr_tfidf.train.xz", "binary"),
    "higgs7k": ("higgs7k.train.xz", "binary"),
    "magic04": ("magic04.xz", "binary"),
    "skin_nonskin": ("skin_nonskin.xz", "binary"),
    "dna": ("dna.scale.xz", "multiclass"),
    "satimage": ("satimage.scale.xz", "multiclass"),
    "pendigits": ("pendigits.scale.xz", "multiclass"),
    "optdigits": ("optdigits.train.xz", "multiclass"),
    "letter": ("letter.scale.all.xz", "multiclass"),
    "shuttle": ("shuttle.train.xz", "multiclass"),
    "news20": ("news20_bydate_tfidf.train.xz", "multiclass"),
    "sector": ("sector_pdsparse.heldout.xz", "multiclass"),
}


def load(name):
    import lzma

    from sklearn.datasets import load_svmlight_file

    with lzma.open(DATA_DIR / DATASETS[name][0]) as f:
        X, y = load_svmlight_file(f)
    return X.tocsr(), np.asarray(y)


def fit_one(est, X, y):
    """The fit's record: rounds, warning, gap, time, training accuracy."""
    with warnings.catch_warnings(record=True) as caught, Timer() as t:
        warnings.simplefilter("always")
        est.fit(X, y)
    warned = any(type(w.message).__name__ == "ConvergenceWarning" for w in caught)
    return {"solver": getattr(est, "solver_", getattr(est, "multi_class", "")),
            "rounds": int(np.max(est.n_iter_)), "warned": warned,
            "rel_gap": float(np.max(est.rel_gap_)), "fit_s": t.elapsed,
            "train_acc": float(est.score(X, y)), "load": loadavg()}


def run(args):
    from distributed import Client

    from dasksvm import LinearSVC, MulticlassSVC, local_cluster

    env = env_info()
    with Timer() as start:
        cluster = local_cluster(silence_logs=50)
        client = Client(cluster)
    rows = []
    try:
        rng = np.random.RandomState(0)
        Xs = rng.rand(300, 5)
        with Timer() as jit, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LinearSVC(max_iter=5, client=client).fit(Xs, Xs[:, 0] > 0.5)
            MulticlassSVC(max_iter=5, client=client).fit(Xs, (Xs[:, 0] * 3).astype(int))
        for name in args.datasets:
            X, y = load(name)
            kind = DATASETS[name][1]
            est = (LinearSVC if kind == "binary" else MulticlassSVC)(client=client)
            rec = {"dataset": name, "task": kind, "n": X.shape[0], "d": X.shape[1],
                   "classes": int(len(np.unique(y))), **fit_one(est, X, y)}
            rows.append(rec)
            print(name, {k: rec[k] for k in ("solver", "rounds", "warned", "rel_gap", "fit_s")},
                  flush=True)
    finally:
        client.close()
        cluster.close()
    out = {"env": env, "cluster_start_s": start.elapsed, "jit_s": jit.elapsed,
           "rows": rows, "loadavg_end": loadavg()}
    write_json(Path(args.out).with_suffix(".json"), out)
    write_text(Path(args.out).with_suffix(".md"), render(out))


def render(out):
    env = out["env"]
    head = ["data", "estimator", "n", "d", "classes", "solver", "rounds", "ConvergenceWarning",
            "rel gap", "fit (s)", "train acc"]
    body = [[r["dataset"], "LinearSVC()" if r["task"] == "binary" else "MulticlassSVC()",
             f"{r['n']:,}", f"{r['d']:,}", r["classes"], r["solver"], r["rounds"],
             "yes" if r["warned"] else "no", f"{r['rel_gap']:.2g}", fmt(r["fit_s"]),
             f"{r['train_acc']:.4f}"] for r in out["rows"]]
    return (
        "# Estimators at their defaults on the real datasets\n\n"
        f"Command: `python {' '.join(env['argv'])}`; {env['date']}, {env['cpu_count']} CPUs, "
        f"load average at start {env['loadavg_start']}, at end {out['loadavg_end']}. "
        "Cluster: `local_cluster()` (1 process x cpu_count threads); start "
        f"{out['cluster_start_s']:.2f} s, JIT (small fits) {out['jit_s']:.2f} s, both "
        "outside the times. Defaults: tol 1e-3 (relative duality gap), max_iter 1000.\n\n"
        + md_table(head, body, "llrrrlrlrrr") + "\n"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--out", default=str(RESULTS_DIR / "defaults"))
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
