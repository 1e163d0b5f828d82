"""Benchmark: dasksvm.datasets.load_svmlight against sklearn.datasets.load_svmlight_file.

Both loaders read the same plain (uncompressed) svmlight file from the page cache:

* ``news20_bydate_tfidf.train`` from the dataset mirror, decompressed to a
  temporary directory first;
* a generated file of ``--size-gb`` gigabytes (rows of +1/-1 labels and sorted
  feature indices with six-digit values, written with vectorised numpy).

dasksvm runs on a ``distributed.LocalCluster`` with 1 and 2 worker processes of one
thread each (the cluster is started, and the numba kernels loaded in the workers by
a warm-up load of a tiny file, before the clock starts; that warm-up time is
reported separately). scikit-learn runs in this process. Throughput is file bytes
divided by wall time; the time of a dasksvm load covers parsing, the metadata
round trip and building the persisted blocks on the workers.

Results go to ``benchmarks/results/loader.json`` and ``loader.md``.

Usage::

    python benchmarks/bench_loader.py [--size-gb 1.0] [--workers 1 2] [--repeats 3]
"""

import argparse
import json
import lzma
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DASKSVM_DATA", REPO.parent / "shared" / "data"))


def write_synthetic(path, size_bytes, n_features=200_000, mean_nnz=40, seed=0):
    """Write a random svmlight file of at least ``size_bytes`` bytes.

    Parameters
    ----------
    path : path-like
        Output file.
    size_bytes : int
        Minimum size of the file.
    n_features : int, default=200_000
        About the largest feature index (indices are sums of random gaps).
    mean_nnz : int, default=40
        Mean number of features per row (uniform in 1 .. 2 * mean_nnz - 1).
    seed : int, default=0
        Seed of the generator.

    Returns
    -------
    rows, nnz : int
        Rows and stored entries written.
    """
    rng = np.random.default_rng(seed)
    total_rows = total_nnz = written = 0
    rows = 50_000
    with open(path, "wb") as f:
        while written < size_bytes:
            nnz_row = rng.integers(1, 2 * mean_nnz, size=rows)
            nnz = int(nnz_row.sum())
            first = np.concatenate([[0], np.cumsum(nnz_row)[:-1]])  # first entry of each row
            row_of = np.repeat(np.arange(rows), nnz_row)
            gaps = rng.geometric(2 * mean_nnz / n_features, size=nnz)  # max index ~ n_features
            csum = np.cumsum(gaps)
            idx = csum - (csum[first] - gaps[first])[row_of]  # 1-based, increasing in a row
            vals = rng.integers(1, 1_000_000, size=nnz)
            n_dig = np.floor(np.log10(idx)).astype(np.int64) + 1
            entry_len = 1 + n_dig + 1 + 8  # " idx:0.dddddd"
            entry_end = np.cumsum(entry_len)
            row_body = entry_end[first + nnz_row - 1] - (entry_end[first] - entry_len[first])
            row_len = 2 + row_body + 1  # label, entries, newline
            row_start = np.concatenate([[0], np.cumsum(row_len)[:-1]])
            # position of each entry: its row's start + 2 + entries before it in the row
            before = entry_end - entry_len - (entry_end[first] - entry_len[first])[row_of]
            start = row_start[row_of] + 2 + before
            out = np.empty(int(row_start[-1] + row_len[-1]), dtype=np.uint8)
            out[row_start] = np.where(rng.random(rows) < 0.5, ord("+"), ord("-"))
            out[row_start + 1] = ord("1")
            out[row_start + row_len - 1] = ord("\n")
            out[start] = ord(" ")
            for d in range(int(n_dig.max())):
                mask = n_dig > d
                out[(start + n_dig - d)[mask]] = 48 + (idx[mask] // 10**d) % 10
            colon = start + n_dig + 1
            out[colon] = ord(":")
            out[colon + 1] = ord("0")
            out[colon + 2] = ord(".")
            for k in range(6):
                out[colon + 3 + k] = 48 + (vals // 10 ** (5 - k)) % 10
            f.write(out.tobytes())
            written += len(out)
            total_rows += rows
            total_nnz += nnz
    return total_rows, total_nnz


def time_sklearn(path, repeats):
    """Best wall time of scikit-learn's loader over ``repeats`` runs, and its nnz."""
    from sklearn.datasets import load_svmlight_file

    best = (float("inf"), 0.0)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        X, y = load_svmlight_file(str(path))
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
        shape, nnz = X.shape, X.nnz
        del X, y
    return best, shape, nnz


def time_dasksvm(client, path, repeats, blocksize):
    """Best wall time (and CPU time, client + workers) of dasksvm's loader on ``client``."""
    from dasksvm.datasets import load_svmlight

    best = (float("inf"), 0.0)
    for _ in range(repeats):
        w0 = client.run(time.process_time)
        t0, c0 = time.perf_counter(), time.process_time()
        X, y = load_svmlight(path, blocksize=blocksize)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        w1 = client.run(time.process_time)
        cpu += sum(w1[k] - w0[k] for k in w0)
        best = min(best, (wall, cpu))
        blocks = X.numblocks[0]
        per_block = X.map_blocks(_nnz, chunks=((1,) * blocks,), drop_axis=1, dtype=np.int64)
        nnz = int(per_block.sum().compute())
        shape = X.shape
        del X, y, per_block
    return best, shape, nnz, blocks


def _nnz(block):
    return np.array([block.nnz])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-gb", type=float, default=1.0, help="size of the generated file in GB (10**9 bytes)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per loader on news20 (best is kept)"
    )
    parser.add_argument(
        "--repeats-large", type=int, default=1, help="runs per loader on the generated file"
    )
    parser.add_argument("--blocksize", default="64MiB")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tmpdir", default=None, help="where to put the temporary files")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import dask
    import numba
    import sklearn
    from distributed import Client, LocalCluster

    from dasksvm.datasets import load_svmlight

    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-loader-", dir=args.tmpdir))
    try:
        datasets = {}
        src = args.data_dir / "news20_bydate_tfidf.train.xz"
        if src.exists():
            plain = work / "news20_bydate_tfidf.train"
            with lzma.open(src, "rb") as fin, open(plain, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            datasets["news20_bydate_tfidf.train"] = (plain, args.repeats)
        else:
            print(f"{src} not found: news20 skipped", file=sys.stderr)
        synth = work / "synthetic.svm"
        t0 = time.perf_counter()
        write_synthetic(synth, int(args.size_gb * 1e9))
        print(
            f"generated {synth.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        datasets[f"synthetic {args.size_gb:g} GB"] = (synth, args.repeats_large)
        tiny = work / "tiny.svm"
        tiny.write_bytes(b"1 1:0.5 3:1\n-1 2:0.25\n")

        records = []
        warmups = {}
        for name, (path, repeats) in datasets.items():
            size_mb = path.stat().st_size / 1e6
            (secs, cpu), shape, nnz = time_sklearn(path, repeats)
            print(f"{name}: sklearn {secs:.2f} s ({size_mb / secs:.1f} MB/s)", flush=True)
            records.append(
                {
                    "dataset": name,
                    "size_mb": round(size_mb, 1),
                    "rows": shape[0],
                    "n_features": shape[1],
                    "nnz": nnz,
                    "loader": "sklearn.load_svmlight_file",
                    "workers": 1,
                    "seconds": secs,
                    "cpu_seconds": cpu,
                    "mb_per_s": size_mb / secs,
                    "blocks": 1,
                }
            )
        for n_workers in args.workers:
            with (
                LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=40,
                ) as cluster,
                Client(cluster) as client,
            ):
                t0 = time.perf_counter()
                with dask.config.set(scheduler=client):
                    load_svmlight(tiny, blocksize=8)  # >= 2 tasks: every worker warms up
                warmups[n_workers] = time.perf_counter() - t0
                print(
                    f"{n_workers} worker(s): warm-up (numba cache load) {warmups[n_workers]:.2f} s",
                    flush=True,
                )
                for name, (path, repeats) in datasets.items():
                    size_mb = path.stat().st_size / 1e6
                    with dask.config.set(scheduler=client):
                        (secs, cpu), shape, nnz, blocks = time_dasksvm(
                            client, path, repeats, args.blocksize
                        )
                    print(
                        f"{name}: dasksvm {n_workers} worker(s) {secs:.2f} s "
                        f"({size_mb / secs:.1f} MB/s, {blocks} blocks)",
                        flush=True,
                    )
                    records.append(
                        {
                            "dataset": name,
                            "size_mb": round(size_mb, 1),
                            "rows": shape[0],
                            "n_features": shape[1],
                            "nnz": nnz,
                            "loader": "dasksvm.load_svmlight",
                            "workers": n_workers,
                            "seconds": secs,
                            "cpu_seconds": cpu,
                            "mb_per_s": size_mb / secs,
                            "blocks": blocks,
                        }
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for rec in records:
        ref = next(
            r
            for r in records
            if r["dataset"] == rec["dataset"] and r["loader"].startswith("sklearn")
        )
        rec["speedup_vs_sklearn"] = rec["mb_per_s"] / ref["mb_per_s"]
        if rec["nnz"] != ref["nnz"] or rec["rows"] != ref["rows"]:
            raise RuntimeError(f"dasksvm and sklearn disagree on {rec['dataset']}")

    meta = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "numpy": np.__version__,
            "dask": dask.__version__,
            "numba": numba.__version__,
            "sklearn": sklearn.__version__,
        },
        "blocksize": args.blocksize,
        "load_average_at_start": load_at_start,
        "warmup_seconds": {str(k): v for k, v in warmups.items()},
        "note": "wall time, files in the page cache; best of the repeats; "
        "dasksvm workers are single-thread processes of a LocalCluster",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader.json").write_text(
        json.dumps({"meta": meta, "results": records}, indent=2) + "\n"
    )
    lines = [
        "# svmlight loader: dasksvm vs scikit-learn",
        "",
        (
            f"{meta['machine']['cpus']} CPUs, Python {meta['machine']['python']}, "
            f"dask {dask.__version__}, numba {numba.__version__}, scikit-learn "
            f"{sklearn.__version__}; blocksize {args.blocksize}; best of repeats; "
            "plain files in the page cache. MB/s = file bytes / wall seconds; CPU s = "
            "CPU time of this process plus all workers. Load average of the machine "
            f"at the start (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in load_at_start)}."
        ),
        "",
        (
            "| dataset | MB | rows | nnz | loader | workers | blocks | seconds | CPU s | MB/s "
            "| vs sklearn |"
        ),
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['size_mb']:.0f} | {r['rows']:,} | {r['nnz']:,} | "
            f"{r['loader']} | {r['workers']} | {r['blocks']} | {r['seconds']:.2f} | "
            f"{r['cpu_seconds']:.2f} | "
            f"{r['mb_per_s']:.1f} | {r['speedup_vs_sklearn']:.2f}x |"
        )
    lines += [
        "",
        "Warm-up of a fresh cluster (numba kernels loaded from the cache in the "
        "workers), not included above: "
        + ", ".join(f"{k} worker(s) {v:.2f} s" for k, v in warmups.items()),
        "",
    ]
    (args.out / "loader.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
