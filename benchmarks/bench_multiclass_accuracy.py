"""Test accuracy and model density of the multiclass machines, dasksvm and scikit-learn.

For every dataset and every C, fits dasksvm's ``MulticlassSVC`` with
``multi_class`` in {ww, llw, cs, ovr} and scikit-learn's ``LinearSVC``
one-vs-rest (``loss="hinge"``, the same objective as dasksvm's ovr) and
Crammer-Singer, all with LIBLINEAR's intercept (``fit_intercept=True``,
``intercept_scaling=1``), and records the test accuracy, the density of the
model (fraction of non-zero entries of ``coef_``), the fit time, the rounds
and the certificate (relative duality gap reached; dasksvm only).

Writes ``benchmarks/results/multiclass_accuracy.json`` (one record per fit)
and ``.md`` (the table), and with ``--update-docs`` replaces the table in
``docs/multiclass.md`` between its ``<!-- bench:start -->`` and
``<!-- bench:end -->`` markers. With ``--merge`` the new records are added to
the existing JSON (a record with the same (dataset, C, method) is replaced,
the others are kept), and the .md and docs tables are rebuilt from all of
them; the JSON's ``meta["runs"]`` and the .md list every command that
contributed, with its wall time and load average.

Usage::

    python benchmarks/bench_multiclass_accuracy.py                       # everything
    python benchmarks/bench_multiclass_accuracy.py --datasets satimage optdigits \\
        --Cs 0.125 1 8 --methods llw cs sk-cs --max-iter 200
    python benchmarks/bench_multiclass_accuracy.py --Cs 0.25 0.5 --merge  # add to the results

Splits: news20 (bydate train / test), sector (PD-Sparse heldout as the
training set / test), letter (own 15,000 / 5,000 split, seed 0), shuttle,
satimage, optdigits (their train / test files). Training rows are shuffled
once (seed 0): some files are sorted by label, and row blocks holding one
class each slow CoCoA+ down. optdigits and shuttle hold raw features
(0..16, and up to thousands): they are divided per column by the training
set's largest absolute value (``--no-scale`` keeps them raw; then no solver,
LIBLINEAR included, gets near its optimum in the budgets used here).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import DATA_DIR, loadavg

#: name -> (train file, test file or None for an own split)
DATASETS = {
    "news20": ("news20_bydate_tfidf.train.xz", "news20_bydate_tfidf.test.xz"),
    "sector": ("sector_pdsparse.heldout.xz", "sector_pdsparse.test.xz"),
    "letter": ("letter.scale.all.xz", None),
    "shuttle": ("shuttle.train.xz", "shuttle.test.xz"),
    "satimage": ("satimage.scale.xz", "satimage.scale.t.xz"),
    "optdigits": ("optdigits.train.xz", "optdigits.test.xz"),
}
#: datasets whose files hold raw, unscaled features (optdigits 0..16, shuttle up to
#: thousands): scaled by the training set's largest absolute value per column
#: (sparsity kept), as LIBSVM's shuttle.scale is, unless --no-scale
RAW_FEATURES = ("optdigits", "shuttle")
DASK_METHODS = ("ww", "llw", "cs", "ovr")
SK_METHODS = ("sk-ovr", "sk-cs")
METHODS = DASK_METHODS + SK_METHODS
DEFAULT_CS = tuple(2.0**k for k in range(-3, 4))
#: settings that change the results: a merge warns when they differ between runs
RESULT_ARGS = ("tol", "max_iter", "sk_tol", "sk_max_iter", "no_scale", "n_workers", "processes")


def _read(path, n_features=None):
    from sklearn.datasets import load_svmlight_file

    with lzma.open(path) as f:
        X, y = load_svmlight_file(f, n_features=n_features)
    X = sp.csr_matrix(X, dtype=np.float64)
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X, y


def _max_abs_scale(Xtr, Xte):
    m = np.asarray(abs(Xtr).max(axis=0).todense()).ravel()
    s = sp.diags(1.0 / np.where(m > 0, m, 1.0))
    return sp.csr_matrix(Xtr @ s), sp.csr_matrix(Xte @ s)


def load(name, data_dir=DATA_DIR, scale=True):
    """(X_train, y_train, X_test, y_test) as CSR float64 / labels, train rows shuffled."""
    train, test = DATASETS[name]
    if test is None:
        X, y = _read(data_dir / train)
        perm = np.random.RandomState(0).permutation(X.shape[0])
        n_test = X.shape[0] // 4
        te, tr = perm[:n_test], perm[n_test:]
        Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
    else:
        Xtr, ytr = _read(data_dir / train)
        Xte, yte = _read(data_dir / test)
        d = max(Xtr.shape[1], Xte.shape[1])
        Xtr, ytr = _read(data_dir / train, d)
        Xte, yte = _read(data_dir / test, d)
        perm = np.random.RandomState(0).permutation(Xtr.shape[0])
        Xtr, ytr = Xtr[perm], ytr[perm]
    if scale and name in RAW_FEATURES:
        Xtr, Xte = _max_abs_scale(Xtr, Xte)
    for X in (Xtr, Xte):
        X.indices = X.indices.astype(np.int32)
        X.indptr = X.indptr.astype(np.int32)
    return Xtr, ytr, Xte, yte


def density(coef):
    """Fraction of non-zero entries of coef_ (intercepts excluded)."""
    coef = np.asarray(coef)
    return float(np.count_nonzero(coef)) / coef.size


def fit_one(method, C, data, client, args):
    """Fit one model; returns its record (accuracy, density, time, rounds, certificate)."""
    Xtr, ytr, Xte, yte = data
    rec = {"method": method, "C": C}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if method in SK_METHODS:
            from sklearn.svm import LinearSVC

            kw = {"loss": "hinge"} if method == "sk-ovr" else {"multi_class": "crammer_singer"}
            model = LinearSVC(C=C, tol=args.sk_tol, max_iter=args.sk_max_iter, dual=True,
                              random_state=0, **kw).fit(Xtr, ytr)
            rec["n_iter"] = int(np.max(model.n_iter_))
        else:
            from dasksvm.estimators.multiclass import MulticlassSVC

            model = MulticlassSVC(method, C=C, tol=args.tol, max_iter=args.max_iter,
                                  client=client, random_state=0).fit(Xtr, ytr)
            rec.update(n_iter=int(model.n_iter_), converged=bool(model.converged_),
                       rel_gap=float(model.rel_gap_), primal=float(model.primal_),
                       dual=float(model.dual_))
        rec["fit_time"] = time.perf_counter() - t0
    rec["warnings"] = sorted({type(w.message).__name__ for w in caught})
    rec["accuracy"] = float(np.mean(np.asarray(model.predict(Xte)) == yte))
    rec["density"] = density(model.coef_)
    coef = np.asarray(model.coef_)
    rec["coef_shape"] = list(coef.shape)
    return rec


def markdown(records, cs, methods):
    """The accuracy / density table: one row per (dataset, C), one column per method.

    Datasets in the order of their first record, C in the order of ``cs``.
    """
    by = {(r["dataset"], r["C"], r["method"]): r for r in records}
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    head = "| dataset | C | " + " | ".join(methods) + " |"
    note = (
        "Test accuracy (%) / model density (fraction of non-zero coef_ entries). "
        "dasksvm entries marked * stopped at max_iter before the requested gap "
        "(the relative gap they reached is in the JSON record)."
    )
    lines = [
        note,
        "",
        head,
        "|" + "---|" * (len(methods) + 2),
    ]
    for ds in datasets:
        for C in cs:
            cells = []
            for m in methods:
                r = by.get((ds, C, m))
                if r is None:
                    cells.append("")
                    continue
                star = "*" if r.get("converged") is False else ""
                cells.append(f"{100 * r['accuracy']:.2f}{star} / {r['density']:.2f}")
            if any(cells):
                lines.append(f"| {ds} | {C:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Fit time (s), same layout:")
    lines.append("")
    lines.append(head)
    lines.append("|" + "---|" * (len(methods) + 2))
    for ds in datasets:
        for C in cs:
            cells = []
            for m in methods:
                r = by.get((ds, C, m))
                cells.append("" if r is None else f"{r['fit_time']:.1f}")
            if any(cells):
                lines.append(f"| {ds} | {C:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def merge(old, new):
    """``old`` records with those of ``new`` added; a new record replaces an old one
    with the same (dataset, C, method). Sorted by dataset (order of first
    appearance, old records first), then C, then method (``METHODS`` order)."""
    key = lambda r: (r["dataset"], r["C"], r["method"])
    merged = {key(r): r for r in old}
    merged.update((key(r), r) for r in new)
    ds_order = {d: i for i, d in enumerate(dict.fromkeys(r["dataset"] for r in [*old, *new]))}
    m_order = {m: i for i, m in enumerate(METHODS)}
    return sorted(merged.values(),
                  key=lambda r: (ds_order[r["dataset"]], r["C"], m_order.get(r["method"], 99)))


def legacy_run(meta, md_path):
    """A ``meta["runs"]`` entry for a results file written before runs were listed
    (one run; its command is read from the .md it wrote)."""
    run = {k: meta.get(k) for k in ("args", "total_time_s", "machine")}
    text = md_path.read_text() if md_path.exists() else ""
    m = re.search(r"^Command: `([^`]*)`", text, re.MULTILINE)
    run["command"] = m.group(1) if m else None
    run["loadavg_start"] = run["loadavg_end"] = None  # not recorded then
    return run


def describe_run(run):
    """One line of the .md's list of runs: command, wall time, cores, load average."""
    cmd = run.get("command") or "(command not recorded)"
    cpus = (run.get("machine") or {}).get("cpus")
    line = f"`{cmd}`: {run['total_time_s'] / 60:.1f} min wall on {cpus} cores"
    code = run.get("code")
    if code and code.get("commit"):
        line += (f", dasksvm at {code['commit'][:7]}"
                 + (" plus uncommitted changes" if code.get("dasksvm_modified") else ""))
    if run.get("loadavg_start") is None:
        return line + " (load average not recorded)"
    fits = run.get("loadavg_fits") or []
    line += (f"; load average (1 / 5 / 15 min) at start {run['loadavg_start']}, "
             f"at end {run['loadavg_end']}")
    if fits:
        line += (f"; 1-min load after each fit: mean {np.mean(fits):.2f}, "
                 f"max {np.max(fits):.2f}")
    return line


def code_state():
    """The git commit of the dasksvm that is imported, and whether its files differ from it."""
    import dasksvm

    pkg = Path(dasksvm.__file__).resolve().parent
    try:
        git = lambda *a: subprocess.run(["git", "-C", str(pkg), *a], capture_output=True,
                                        text=True, check=True).stdout.strip()
        return {"dasksvm": str(pkg), "commit": git("rev-parse", "HEAD"),
                "dasksvm_modified": bool(git("status", "--porcelain", "--", "."))}
    except (OSError, subprocess.CalledProcessError):
        return {"dasksvm": str(pkg), "commit": None, "dasksvm_modified": None}


def update_docs(table, path):
    text = path.read_text()
    new = re.sub(
        r"<!-- bench:start -->.*<!-- bench:end -->",
        lambda _: f"<!-- bench:start -->\n{table}<!-- bench:end -->",
        text,
        flags=re.DOTALL,
    )
    path.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--Cs", nargs="+", type=float, default=list(DEFAULT_CS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--tol", type=float, default=1e-3, help="dasksvm relative duality gap")
    p.add_argument("--max-iter", type=int, default=300, help="dasksvm rounds at most")
    p.add_argument("--sk-tol", type=float, default=1e-4)
    p.add_argument("--sk-max-iter", type=int, default=20_000)
    p.add_argument("--no-scale", action="store_true",
                   help=f"keep the raw features of {', '.join(RAW_FEATURES)}")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--processes", action="store_true", help="worker processes (default threads)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "multiclass_accuracy")
    p.add_argument("--update-docs", action="store_true",
                   help="write the table into docs/multiclass.md")
    p.add_argument("--merge", action="store_true",
                   help="add the records to the existing JSON (same (dataset, C, method) "
                        "replaced) and rebuild the tables from all of them")
    args = p.parse_args(argv)
    command = "python benchmarks/bench_multiclass_accuracy.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    old_records, old_runs = [], []
    json_path = args.out.with_suffix(".json")
    if args.merge and json_path.exists():
        old = json.loads(json_path.read_text())
        old_records = old["records"]
        old_runs = old["meta"].get("runs") or [legacy_run(old["meta"], args.out.with_suffix(".md"))]
        for run in old_runs:
            diff = {k: (run["args"].get(k), getattr(args, k)) for k in RESULT_ARGS
                    if run["args"].get(k) != getattr(args, k)}
            if diff:
                warnings.warn(f"merging runs with different settings (old, new): {diff}")
        print(f"# merging into {len(old_records)} records of {len(old_runs)} earlier run(s)",
              flush=True)

    from distributed import Client, LocalCluster

    extra = {"host": "127.0.0.1"} if args.processes else {}
    cluster = LocalCluster(n_workers=args.n_workers, threads_per_worker=1,
                           processes=args.processes, dashboard_address=None, silence_logs=40,
                           **extra)
    client = Client(cluster)
    records = []
    load_start, load_fits = loadavg(), []
    t_all = time.perf_counter()
    try:
        for ds in args.datasets:
            t0 = time.perf_counter()
            data = load(ds, scale=not args.no_scale)
            info = {"dataset": ds, "n_train": data[0].shape[0], "n_test": data[2].shape[0],
                    "n_features": data[0].shape[1], "n_classes": len(np.unique(data[1]))}
            print(f"# {ds}: {info} (loaded in {time.perf_counter() - t0:.1f}s)", flush=True)
            for C in args.Cs:
                for m in args.methods:
                    rec = dict(info, **fit_one(m, C, data, client, args))
                    rec["loadavg"] = loadavg()
                    if rec["loadavg"] is not None:
                        load_fits.append(rec["loadavg"][0])
                    records.append(rec)
                    _dump(args.out.with_suffix(".partial.json"), {"records": records})
                    print(f"{ds:10s} C={C:<6g} {m:7s} acc={rec['accuracy']:.4f} "
                          f"dens={rec['density']:.3f} t={rec['fit_time']:.1f}s "
                          f"it={rec['n_iter']} gap={rec.get('rel_gap', float('nan')):.1e}",
                          flush=True)
    finally:
        client.close()
        cluster.close()
    run = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "total_time_s": time.perf_counter() - t_all,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "loadavg_fits": load_fits,
        "code": code_state(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }
    runs = old_runs + [run]
    records = merge(old_records, records)
    meta = {"runs": runs, "total_time_s": sum(r["total_time_s"] for r in runs)}
    _dump(json_path, {"meta": meta, "records": records})
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    cs = sorted({r["C"] for r in records})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    table = markdown(records, cs, methods)
    listing = "\n".join(f"{i}. {describe_run(r)}" for i, r in enumerate(runs, 1))
    args.out.with_suffix(".md").write_text(
        "# Multiclass accuracy benchmark\n\n"
        f"Commands whose records make up the tables ({len(runs)} run(s); with `--merge` a "
        "later run's record replaces an earlier one for the same dataset, C and method):\n\n"
        f"{listing}\n\n"
        "Fit times are wall-clock on a machine shared with other work, so they are noisy "
        "(the load average after each fit is in its JSON record where it was recorded).\n\n"
        + table
    )
    if args.update_docs:
        update_docs(table, REPO / "docs" / "multiclass.md")
    print(table)


if __name__ == "__main__":
    main()
