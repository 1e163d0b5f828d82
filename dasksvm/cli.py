"""The ``dasksvm`` command: train and evaluate on svmlight files.

    dasksvm demo                       train LinearSVC on the shipped a9a data
    dasksvm train FILE [--test FILE] [--loss hinge] [-C 1] [--scheduler ADDRESS]
"""

from __future__ import annotations

import argparse
import sys
import time


def _train(train_path, test_path, args):
    from .parallel import get_client

    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    else:
        client = get_client()
    try:
        return _fit_and_report(client, train_path, test_path, args)
    finally:
        if args.scheduler:
            client.close()


def _fit_and_report(client, train_path, test_path, args):
    from . import LinearSVC
    from .datasets import load_svmlight

    n_workers = len(client.nthreads())
    print(f"cluster: {n_workers} workers; dashboard {client.dashboard_link}")
    t0 = time.perf_counter()
    n_features = args.n_features
    train = load_svmlight(train_path, n_features=n_features, blocksize=args.blocksize)
    test = load_svmlight(test_path, n_features=n_features) if test_path else None
    if n_features is None and test is not None and test[0].shape[1] != train[0].shape[1]:
        # one feature space for both files: the larger max index
        n_features = max(train[0].shape[1], test[0].shape[1])
        if train[0].shape[1] < n_features:
            train = load_svmlight(train_path, n_features=n_features, blocksize=args.blocksize)
        else:
            test = load_svmlight(test_path, n_features=n_features)
    X, y = train
    threads = sum(client.nthreads().values())
    if X.numblocks[0] < threads:
        # a compressed file arrives as one block: give every worker thread one
        rows = -(-X.shape[0] // threads)
        X, y = X.rechunk({0: rows}), y.rechunk({0: rows})
    X, y = client.persist([X, y])
    t_load = time.perf_counter() - t0
    print(f"loaded {train_path}: {X.shape[0]} rows x {X.shape[1]} features, "
          f"{X.numblocks[0]} blocks, {t_load:.2f}s")
    model = LinearSVC(
        C=args.C,
        loss=args.loss,
        solver=args.solver,
        tol=args.tol,
        max_iter=args.max_iter,
        local_passes=args.local_passes,
        random_state=0,
        client=client,
        verbose=args.verbose,
    )
    t1 = time.perf_counter()
    model.fit(X, y)
    t_fit = time.perf_counter() - t1
    print(f"{'round':>6} {'primal':>14} {'dual':>14} {'rel_gap':>10} {'time_s':>8}")
    recs = model.history_
    step = max(1, len(recs) // 10)
    for rec in recs[::step] + ([recs[-1]] if (len(recs) - 1) % step else []):
        print(f"{rec['round']:>6} {rec['primal']:>14.6f} {rec['dual']:>14.6f} "
              f"{rec['rel_gap']:>10.3e} {rec['time']:>8.2f}")
    status = "converged" if model.converged_ else "stopped by max_iter"
    print(f"{status} after {model.n_iter_} rounds; relative duality gap {model.rel_gap_:.3e}; "
          f"fit {t_fit:.2f}s")
    print(f"train accuracy {model.score(X, y):.4f}")
    if test is not None:
        print(f"test accuracy  {model.score(*test):.4f}")
    return 0


def _add_train_options(p):
    p.add_argument("-C", type=float, default=1.0, help="regularization (sum of losses), default 1")
    p.add_argument("--loss", choices=["squared_hinge", "hinge"], default="squared_hinge")
    p.add_argument("--solver", choices=["cocoa", "sgd"], default="cocoa")
    p.add_argument("--tol", type=float, default=1e-3, help="relative duality gap, default 1e-3")
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--local-passes", type=float, default=1.0,
                   help="cocoa: coordinate passes per block per round, default 1")
    p.add_argument("--n-features", type=int, default=None)
    p.add_argument("--blocksize", default="64MiB")
    p.add_argument("--scheduler", default=None, help="address of a running dask scheduler")
    p.add_argument("-v", "--verbose", type=int, default=0)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dasksvm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on the a9a data shipped with the package")
    _add_train_options(demo)
    # C = 0.1: a9a's best test accuracy; at C = 1 CoCoA+ on 2 blocks needs
    # ~10x more rounds to certify 1e-3 (see docs/linear.md)
    demo.set_defaults(C=0.1)
    train = sub.add_parser("train", help="train LinearSVC on an svmlight file")
    train.add_argument("file")
    train.add_argument("--test", default=None, help="svmlight file to report accuracy on")
    _add_train_options(train)
    args = parser.parse_args(argv)
    from .parallel import close_embedded_cluster

    try:
        if args.command == "demo":
            from .datasets import load_demo

            ds = load_demo()
            return _train(str(ds["train"]), str(ds["test"]), args)
        return _train(args.file, args.test, args)
    finally:
        close_embedded_cluster()


if __name__ == "__main__":
    sys.exit(main())
