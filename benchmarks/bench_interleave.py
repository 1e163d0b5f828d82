"""Diagnostic: how the order in which one worker's blocks take their coordinate steps
moves CoCoA+'s rounds (one worker: its blocks share one view of w, formulations.md 1b).

No cluster: one process runs the machine's own worker code
(``CoCoA.worker_view`` / ``worker_local`` / ``local``, the engine's slices in lockstep
``_Runner.in_turn``) over blocks held here, and certifies every round exactly: the
relative gap (P(w_t) - D(alpha_t)) / P(w_t), with w_t = w(alpha_t) summed from the blocks'
exact changes. The problem: news20 (comp.* against the rest, 11,314 x 47,525, tf-idf),
rows shuffled (seed 0), intercept column of 1, hinge, C = 1, shrinking on, the same
coordinate passes a round everywhere (``--passes``, default what ``local_passes="auto"``
gives 2 blocks), so a round is the same work in every configuration.

Configurations (``ROUND_SLICES`` set per run):

* ``1 block``: one block of all rows (LIBLINEAR's dual coordinate descent);
* ``2 blocks, 1 thread, S slices``: the two blocks' steps cut into S slices, taken
  block 0 slice s, block 1 slice s, block 0 slice s + 1, ... (no concurrency: the
  order alone);
* ``2 blocks, 2 threads, S slices``: one block per thread, meeting after every slice;
  ``every column hot``: all the view's columns summed from per-block changes read every
  ``REFRESH_ROWS`` steps (the library's default makes only the 64 most frequent hot);
* ``steps merged``: the blocks' active rows gathered and stepped as one block's on one
  thread (``CoCoA._merged_ascent``): always, or by the library's rule (on one thread, or
  with at most ``MERGE_SHARE`` of the rows active); the other rows say ``never``.

Measured per configuration and seed: rounds to a certified 1e-4, seconds of those rounds,
and for 2 threads the share of one thread's step time that overlapped the other's.

Results: ``benchmarks/results/interleave.json`` and ``interleave.md``.

Usage::

    python benchmarks/bench_interleave.py [--rounds 40] [--seeds 0 1] [--passes P]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
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

TOL = 1e-4
CONFIGS = [  # (label, blocks, threads, slices, every column hot, merged steps)
    ("1 block", 1, 1, 256, False, "rule"),
    ("2 blocks, 1 thread, 16 slices", 2, 1, 16, False, "never"),
    ("2 blocks, 1 thread, 256 slices", 2, 1, 256, False, "never"),
    ("2 blocks, 1 thread, 4096 slices", 2, 1, 4096, False, "never"),
    ("2 blocks, 2 threads, 1 slice", 2, 2, 1, False, "never"),
    ("2 blocks, 2 threads, 16 slices", 2, 2, 16, False, "never"),
    ("2 blocks, 2 threads, 256 slices", 2, 2, 256, False, "never"),
    ("2 blocks, 2 threads, 1 slice, every column hot", 2, 2, 1, True, "never"),
    ("2 blocks, 2 threads, 256 slices, every column hot", 2, 2, 256, True, "never"),
    ("2 blocks, 2 threads, steps merged always", 2, 2, 256, False, "always"),
    ("2 blocks, 2 threads, steps merged at <= MERGE_SHARE active (default)", 2, 2, 256,
     False, "rule"),
    ("2 blocks, 1 thread, steps merged (default)", 2, 1, 256, False, "rule"),
]


def load_news20():
    import lzma

    from sklearn.datasets import load_svmlight_file

    with lzma.open(DATA_DIR / "news20_bydate_tfidf.train.xz") as f:
        X, y = load_svmlight_file(f, n_features=47525)
    y = np.where((y >= 2) & (y <= 6), 1.0, -1.0)
    perm = np.random.RandomState(0).permutation(X.shape[0])
    X = sp.hstack([X[perm], np.ones((X.shape[0], 1))], format="csr")
    X.indices = X.indices.astype(np.int32)
    return X, y[perm]


class Overlap:
    """Start and end of every slice's steps, per block (thread-safe appends)."""

    def __init__(self):
        self.spans, self.lock = {}, threading.Lock()

    def share(self):
        """Share of block 0's step time during which block 1 was stepping too."""
        a, b = self.spans.get(0, []), self.spans.get(1, [])
        busy = sum(e - s for s, e in a)
        both = sum(max(0.0, min(e, e2) - max(s, s2)) for s, e in a for s2, e2 in b)
        return both / busy if busy else None


def run(X, y, n_blocks, n_threads, passes, seed, max_rounds):
    """Rounds of one configuration (the module constants set by the caller)."""
    from dasksvm.parallel.blocks import Block
    from dasksvm.parallel.engine import _Runner
    from dasksvm.solvers import cocoa

    parts = np.array_split(np.arange(X.shape[0]), n_blocks)
    blocks = [Block(X[p[0]:p[-1] + 1], y[p], np.ones(len(p)), k) for k, p in enumerate(parts)]
    machine = cocoa.CoCoA(X.shape[1], 1, C=1.0, loss="hinge", local_passes=passes,
                          aggregation="add", shrinking=True, tol=TOL)
    states = [machine.init(b, None) for b in blocks]
    overlap, ascent = Overlap(), machine._ascent

    def timed_ascent(block, st, view, alpha, rows, n_steps, seed_):
        t0 = time.perf_counter()
        ascent(block, st, view, alpha, rows, n_steps, seed_)
        with overlap.lock:
            overlap.spans.setdefault(block.index, []).append((t0, time.perf_counter()))

    machine._ascent = timed_ascent
    w = np.zeros(X.shape[1])
    with ThreadPoolExecutor(n_threads) as pool:
        run_ = _Runner(lambda f, items: list(pool.map(f, items)), n_threads)
        clock = 0.0
        for t in range(max_rounds + 1):
            for st in states:
                machine.settle(st, (1.0, 0.0))
            alpha = np.concatenate([st.alpha for st in states])
            primal = 0.5 * w @ w + np.maximum(0.0, 1.0 - y * (X @ w)).sum()
            gap = (primal - (alpha.sum() - 0.5 * w @ w)) / primal
            if gap <= TOL:
                return {"rounds": t, "seconds": clock, "final_gap": gap,
                        "overlap": overlap.share() if n_threads > 1 else None}
            seeds = [int(s) for s in np.random.SeedSequence([seed, t]).generate_state(n_blocks)]
            with Timer() as tr:
                view = machine.worker_view(w, blocks, states)
                outs = (machine.worker_local(blocks, states, view, seeds, True, run_)
                        if n_blocks > 1 else
                        [machine.local(blocks[0], states[0], view, seeds[0], True)])
            clock += tr.elapsed
            for dw in (o[0] for o in outs):
                if hasattr(dw, "indices"):
                    w[dw.indices] += dw.values
                else:
                    w += dw
    return {"rounds": None, "seconds": clock, "final_gap": gap,
            "overlap": overlap.share() if n_threads > 1 else None}


def markdown(payload):
    rows = [[r["config"], r["seed"], fmt(r["rounds"]), f"{r['seconds']:.2f}",
             f"{r['final_gap']:.1e}", fmt(r["overlap"], ".2f")] for r in payload["results"]]
    return "\n".join([
        "# The order of one worker's steps: rounds of CoCoA+ on news20",
        "",
        (f"Run {payload['env']['date']} on {payload['env']['cpu_count']} CPUs (load average "
         f"at start {payload['load_start']}, at end {payload['load_end']}). Command: "
         f"`{payload['command']}`. Total wall time {payload['wall_s']:.0f} s."),
        "",
        (f"news20 (comp.* against the rest), {payload['n']} x {payload['d']} with the "
         f"intercept column, hinge, C = 1, shrinking on, {payload['passes']:g} coordinate "
         "passes a round per block, in one process (no dask; the machine's own worker "
         f"code). Rounds: to a relative gap <= {TOL:g}, computed exactly here each round "
         f"('-': not within {payload['max_rounds']}); seconds: those rounds' worker work; "
         "overlap: share of block 0's step time during which block 1 stepped too."),
        "",
        md_table(["configuration", "seed", "rounds", "s", "final gap", "overlap"], rows,
                 align="lrrrrr"),
        "",
    ])


def main(argv=None):
    from dasksvm.solvers import cocoa

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="most rounds per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--passes", type=float, default=None,
                    help="coordinate passes a round per block (default: auto for 2 blocks)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "interleave")
    args = ap.parse_args(argv)
    load_start = loadavg()
    with Timer() as wall:
        X, y = load_news20()
        halves = np.array_split(np.arange(X.shape[0]), 2)
        passes = args.passes or cocoa.auto_local_passes(
            [X[h[0]:h[-1] + 1].nnz for h in halves], [len(h) for h in halves], 1)
        defaults = cocoa.ROUND_SLICES, cocoa.HOT_SHARE, cocoa.MAX_HOT
        rule = cocoa.CoCoA.__dict__["_merges"]  # the staticmethod itself
        merges = {"rule": rule, "never": staticmethod(lambda *a: False),
                  "always": staticmethod(lambda blocks, *a: blocks[0].dense is None)}
        results = []
        try:
            for label, n_blocks, n_threads, slices, all_hot, merge in CONFIGS:
                cocoa.ROUND_SLICES = slices
                cocoa.HOT_SHARE, cocoa.MAX_HOT = (0.0, X.shape[1]) if all_hot else defaults[1:]
                cocoa.CoCoA._merges = merges[merge]
                for seed in args.seeds:
                    r = run(X, y, n_blocks, n_threads, passes, seed, args.rounds)
                    r.update(config=label, seed=seed)
                    results.append(r)
                    print(f"[{time.strftime('%H:%M:%S')}] {label} seed {seed}: "
                          f"{fmt(r['rounds'])} rounds, {r['seconds']:.2f} s, "
                          f"overlap {fmt(r['overlap'], '.2f')}", flush=True)
        finally:
            cocoa.ROUND_SLICES, cocoa.HOT_SHARE, cocoa.MAX_HOT = defaults
            cocoa.CoCoA._merges = rule
    payload = {"env": env_info(), "command": "python benchmarks/bench_interleave.py "
               + " ".join(argv if argv is not None else sys.argv[1:]),
               "n": X.shape[0], "d": X.shape[1], "passes": passes, "max_rounds": args.rounds,
               "load_start": load_start, "load_end": loadavg(), "wall_s": wall.elapsed,
               "results": results}
    write_json(args.out.with_suffix(".json"), payload)
    write_text(args.out.with_suffix(".md"), markdown(payload))
    print(f"wrote {args.out}.json, .md")


if __name__ == "__main__":
    main()
