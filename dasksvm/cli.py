"""The ``dasksvm`` command: train, predict and evaluate SVMs on svmlight files.

LIBLINEAR's ``train`` / ``predict`` habits, on a dask cluster::

    dasksvm train DATA... --out MODEL [--model auto|linear|ww|llw|cs|ovr|cascade] [-C C] ...
    dasksvm predict MODEL DATA... --out FILE [--decision]
    dasksvm evaluate MODEL DATA...
    dasksvm datasets list | info NAME | fetch NAME
    dasksvm bench [NAME...] [--quick]
    dasksvm demo

Exit status: 0 done; 2 a wrong command line, found before any cluster
starts (argparse's own errors, a file or pattern that names nothing, options
that exclude each other or that the chosen model would not use); 1 a failed
run (unreadable data or model file, a scheduler that does not answer, ...),
with the reason on one line of standard error (``-v`` adds the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shlex
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

__all__ = ["build_parser", "main"]

MODELS = ("auto", "linear", "ww", "llw", "cs", "ovr", "cascade")
KERNELS = ("rbf", "linear", "poly", "sigmoid")
FEATURE_MAPS = ("rff", "orf", "nystroem")
#: seconds to wait for a scheduler to answer (``--connect-timeout``)
CONNECT_TIMEOUT = 5.0
#: C of ``dasksvm demo``: a9a's best test accuracy; at C = 1 CoCoA+ needs about ten
#: times more rounds to certify 1e-3 (docs/linear.md)
DEMO_C = 0.1
#: ``Client.log_event`` topic of the engine's per-round records
PROGRESS_TOPIC = "dasksvm-progress"
#: arguments of ``dasksvm bench --quick`` per benchmark script (results go to
#: benchmarks/results/quick/, the committed results are left alone); a script not
#: listed gets its own ``--quick`` when it has one
BENCH_QUICK = {
    "engine": ["--parts", "kill", "--kills", "1", "--solvers", "cocoa",
               "--out", "benchmarks/results/quick/engine"],
    "features": ["--quick", "--datasets", "a9a", "--out", "benchmarks/results/quick/features",
                 "--plot", "benchmarks/results/quick/features.png"],
    "linear": ["--quick", "--no-spark", "--out", "benchmarks/results/quick/linear"],
    "loader": ["--size-gb", "0.05", "--repeats", "1", "--repeats-large", "1",
               "--out", "benchmarks/results/quick"],
    "multiclass_accuracy": ["--datasets", "satimage", "--Cs", "1", "--max-iter", "50",
                            "--out", "benchmarks/results/quick/multiclass_accuracy"],
    "smo": ["--datasets", "a9a", "--max-rows", "2000", "--out", "benchmarks/results/quick"],
    "ww": ["--n-samples", "20000", "--n-test", "2000", "--n-features", "20000",
           "--n-classes", "50", "--big-classes", "0", "--skip-peers", "--configs", "2w",
           "--gap-on", "2w", "--out", "benchmarks/results/quick"],
}


# --------------------------------------------------------------------------- errors


class UsageError(Exception):
    """A wrong command line (exit status 2), found before anything runs."""


class Failure(Exception):
    """A run that failed for a reason the user can act on (exit status 1)."""


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (and a pointer to ``--help``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- option types


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def _gamma(text):
    if text in ("scale", "auto"):
        return text
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be scale, auto or a positive number, got {text!r}") from None


def _features(text):
    kind, sep, d = text.partition(":")
    if kind not in FEATURE_MAPS or not sep:
        raise argparse.ArgumentTypeError(
            f"must be rff:D, orf:D or nystroem:D (D features), got {text!r}")
    try:
        return kind, _positive_int(d)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"D in {text!r} must be a positive integer (the number of features)") from None


# --------------------------------------------------------------------------- the parser


def _version():
    from . import __version__

    return __version__


def _add_data_options(p):
    p.add_argument("data", nargs="+", metavar="DATA",
                   help="training data: svmlight / LIBSVM files or glob patterns (quote "
                        "them), plain or compressed (.xz .lzma .gz .bz2); rows of all "
                        "files are concatenated")
    p.add_argument("--test", metavar="DATA", default=None,
                   help="svmlight file or glob pattern to report the accuracy on")
    _add_loader_options(p)


def _add_loader_options(p):
    p.add_argument("--n-features", type=_positive_int, default=None, metavar="N",
                   help="number of columns (default: the largest feature index in the files)")
    p.add_argument("--blocksize", default="64MiB", metavar="SIZE",
                   help="bytes of text per parsed block, e.g. 16MiB (default 64MiB; a "
                        "compressed file is one stream)")


def _add_model_options(p, demo):
    g = p.add_argument_group("model")
    if not demo:
        g.add_argument("--model", choices=MODELS, default="auto",
                       help="auto (default): linear for two classes, ovr (one-vs-rest, "
                            "LIBLINEAR's default) for more; linear: LinearSVC (CoCoA+ or "
                            "SGD); ww / llw / cs / ovr: MulticlassSVC's Weston-Watkins, "
                            "Lee-Lin-Wahba, Crammer-Singer, one-vs-rest (cs and ww were the "
                            "most accurate in docs/multiclass.md); cascade: CascadeSVC, the "
                            "exact kernel SVM (LIBSVM's C-SVC)")
    c_help = (f"regularization: the weight of the sum of losses (default {DEMO_C:g}, a9a's "
              "best test accuracy)" if demo else
              "regularization: the weight of the sum of losses (default 1)")
    g.add_argument("-C", type=_positive_float, default=DEMO_C if demo else 1.0, help=c_help)
    g.add_argument("--loss", choices=("squared_hinge", "hinge"), default=None,
                   help="--model linear: the loss (default squared_hinge, LIBLINEAR -s 1; "
                        "hinge is -s 3)")
    g.add_argument("--solver", choices=("auto", "cocoa", "newton", "sgd"), default=None,
                   help="--model linear: auto (default: newton for the squared hinge on "
                        "sparse data of 10 rows per column or more, else cocoa), cocoa, "
                        "newton (trust-region Newton, squared hinge) or sgd (all-reduce "
                        "subgradient)")
    g.add_argument("--local-passes", type=_positive_float, default=None, metavar="P",
                   help="--model linear --solver cocoa (implied when --solver is not "
                        "given): coordinate passes per block per round (default 1)")
    if not demo:
        g.add_argument("--kernel", choices=KERNELS, default=None,
                       help="--model cascade or --features nystroem:D: the kernel "
                            "(default rbf)")
        g.add_argument("--gamma", type=_gamma, default=None, metavar="G",
                       help="kernel width, a number, or auto (1 / n_features) or (cascade "
                            "only) scale (1 / (n_features * var(X))); default: scale for "
                            "cascade, 1 for rff / orf, auto for nystroem")
        g.add_argument("--degree", type=_positive_int, default=None, metavar="N",
                       help="--kernel poly: the degree (default 3)")
        g.add_argument("--coef0", type=float, default=None, metavar="R",
                       help="--kernel poly or sigmoid: the constant term (default 0 for "
                            "cascade, 1 for nystroem)")
        g.add_argument("--features", type=_features, default=None, metavar="MAP:D",
                       help="a kernel approximation before the linear model: rff:D (random "
                            "Fourier), orf:D (orthogonal random) or nystroem:D, D features; "
                            "the model file is then a Pipeline")
    g.add_argument("--tol", type=_positive_float, default=None,
                   help="stop at this relative duality gap (cascade: the maximal violating "
                        "pair's gap); default 1e-3")
    g.add_argument("--max-iter", type=_positive_int, default=None, metavar="N",
                   help="rounds at most (ww: epochs; cascade: passes); default 1000 "
                        "(cascade 10); the summary says when it stopped the fit")
    g.add_argument("--class-weight", choices=("balanced",), default=None,
                   help="balanced: weigh each class by n_samples / (n_classes * its count)")
    g.add_argument("--seed", type=_seed, default=None,
                   help="random_state of the solver and the feature map (default 0); not "
                        "with --model cascade, which draws nothing at random")


def _add_cluster_options(p):
    g = p.add_argument_group(
        "cluster (default: a LocalCluster on 127.0.0.1, one worker process whose threads "
        "are the cores)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="connect to a running dask scheduler (tcp://host:port, or "
                            "tls://host:port with the --tls-* options)")
    where.add_argument("--scheduler-file", metavar="FILE", default=None,
                       help="connect to the scheduler a `dask scheduler --scheduler-file` "
                            "JSON file names")
    where.add_argument("--slurm", metavar="OPTIONS", default=None,
                       help='start dask workers as SLURM jobs (dask-jobqueue), OPTIONS being '
                            'key=value pairs, e.g. "cores=1 memory=2GB queue=debug '
                            'walltime=00:30:00"; --workers N jobs (default 2)')
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="an embedded LocalCluster of N worker processes (default 1, the "
                        "fastest shape on one machine: docs/choosing.md); with --slurm: N jobs")
    g.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                   help="threads per embedded worker process (default: the cores divided "
                        "among the processes)")
    g.add_argument("--tls-ca-file", metavar="FILE", default=None,
                   help="TLS: the certificate authority (with --tls-cert and --tls-key)")
    g.add_argument("--tls-cert", metavar="FILE", default=None,
                   help="TLS: this client's certificate")
    g.add_argument("--tls-key", metavar="FILE", default=None,
                   help="TLS: this client's private key")
    g.add_argument("--connect-timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help=f"give up on a scheduler that does not answer within this time "
                        f"(default {CONNECT_TIMEOUT:g})")


def _add_output_options(p, demo):
    g = p.add_argument_group("output")
    if demo:
        g.add_argument("--out", metavar="MODEL", default=None,
                       help="also save the model to this file (see dasksvm predict)")
    else:
        g.add_argument("--out", metavar="MODEL", required=True,
                       help="the model file to write (arrays and JSON, no pickle: "
                            "dasksvm.load_model reads it)")
    g.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help="auto (default): a progress bar when standard error is a terminal, "
                        "else one line every --progress-every rounds; the bar's position is "
                        "log(gap0 / gap) / log(gap0 / tol)")
    g.add_argument("--progress-every", type=_positive_int, default=None, metavar="N",
                   help="print a progress line every N rounds (default 10; implies "
                        "--progress lines unless --progress is given)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="also print the solver's record of every round and distributed's "
                        "warnings, and the traceback of a failure")


def build_parser():
    """The ``dasksvm`` argument parser (one subparser per command)."""
    parser = _Parser(prog="dasksvm",
                     description="Train, predict and evaluate SVMs on svmlight files, on a "
                                 "dask cluster.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="exit status: 0 done; 2 a wrong command line (found before any "
                            "cluster starts); 1 a failed run, its reason on one line of "
                            "standard error")
    parser.add_argument("--version", action="version", version=f"dasksvm {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on svmlight files, save it",
                           description="Train an SVM on svmlight files on a dask cluster and "
                                       "save it (LIBLINEAR's train).")
    _add_data_options(train)
    _add_model_options(train, demo=False)
    _add_cluster_options(train)
    _add_output_options(train, demo=False)

    demo = sub.add_parser("demo", help="train LinearSVC on the a9a data shipped with the package",
                          description=f"Train LinearSVC (CoCoA+) on the a9a data shipped with "
                                      f"the package, C = {DEMO_C:g} by default, on an embedded "
                                      "LocalCluster, and report the test accuracy.")
    _add_model_options(demo, demo=True)
    _add_cluster_options(demo)
    _add_output_options(demo, demo=True)

    pred = sub.add_parser("predict", help="write the predicted label of every row",
                          description="Predict with a saved model: one label per line, as "
                                      "written in the training file (LIBLINEAR's predict).")
    pred.add_argument("model", metavar="MODEL", help="a model file of dasksvm train")
    pred.add_argument("data", nargs="+", metavar="DATA",
                      help="svmlight files or glob patterns to predict")
    pred.add_argument("--out", metavar="FILE", required=True, help="where to write the labels")
    pred.add_argument("--decision", action="store_true",
                      help="also write the decision values after each label (a first line "
                           "starting with # names the columns)")
    pred.add_argument("--blocksize", default="64MiB", metavar="SIZE",
                      help="bytes of text per parsed block (default 64MiB)")

    ev = sub.add_parser("evaluate", help="accuracy, per-class precision/recall/F1, confusion",
                        description="Evaluate a saved model on labelled svmlight data.")
    ev.add_argument("model", metavar="MODEL", help="a model file of dasksvm train")
    ev.add_argument("data", nargs="+", metavar="DATA",
                    help="labelled svmlight files or glob patterns")
    ev.add_argument("--blocksize", default="64MiB", metavar="SIZE",
                    help="bytes of text per parsed block (default 64MiB)")

    ds = sub.add_parser("datasets", help="the named benchmark datasets (list, info, fetch)",
                        description="The named datasets of dasksvm's registry.")
    ds_sub = ds.add_subparsers(dest="action", required=True, metavar="ACTION")
    home_help = "the folder holding the dataset files (default $DASKSVM_DATA, else ~/dasksvm_data)"
    ds_list = ds_sub.add_parser("list", help="every dataset, and whether it is on disk",
                                description="List the registry's datasets.")
    ds_list.add_argument("--data-home", metavar="DIR", default=None, help=home_help)
    names = _dataset_names()
    ds_info = ds_sub.add_parser("info", help="one dataset's files, counts and provenance",
                                description="Describe one dataset of the registry.")
    ds_info.add_argument("name", metavar="NAME", choices=names,
                         help=f"one of: {', '.join(names)}")
    ds_info.add_argument("--data-home", metavar="DIR", default=None, help=home_help)
    ds_fetch = ds_sub.add_parser("fetch", help="find (or download) and verify a dataset's files",
                                 description="Find a dataset's files in the data home, "
                                             "download the missing ones when a URL is "
                                             "configured, and check every SHA-256.")
    ds_fetch.add_argument("name", metavar="NAME", choices=names,
                          help=f"one of: {', '.join(names)}")
    ds_fetch.add_argument("--data-home", metavar="DIR", default=None, help=home_help)
    ds_fetch.add_argument("--download-url", metavar="URL", default=None,
                          help="base URL of a mirror to download missing files from "
                               "(default $DASKSVM_DATA_URL; without one nothing is downloaded)")

    bench = sub.add_parser("bench", help="run the benchmark suite of benchmarks/",
                           description="Run the benchmark scripts of the source tree's "
                                       "benchmarks/ folder (see benchmarks/README.md), one "
                                       "after the other, each in its own Python process.")
    bench.add_argument("names", nargs="*", metavar="NAME",
                       help=f"benchmarks to run (default all): {', '.join(sorted(BENCH_QUICK))}")
    bench.add_argument("--quick", action="store_true",
                       help="a smoke run of each (small sizes, few rounds; for the scripts "
                            "named above the results go to benchmarks/results/quick/ so that "
                            "the committed ones stay; others get their own --quick)")
    bench.add_argument("--dry-run", action="store_true",
                       help="print the commands, run nothing")
    return parser


def _dataset_names():
    from .datasets.fetch import list_datasets

    return list(list_datasets())


# --------------------------------------------------------------------------- checks


def _expand(patterns, what):
    """The files a path / glob (or a list of them) names; a UsageError when one names none."""
    from .datasets.svmlight import _expand_paths

    try:
        return _expand_paths(patterns)
    except (FileNotFoundError, TypeError, ValueError) as e:
        raise UsageError(f"{what}: {_one_line(e)}") from None


def _check_out(path, what="--out"):
    if os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{what} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{what} {path!r}: the folder {folder!r} is not writable")


def _check_blocksize(text):
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(text)
    except (ValueError, TypeError):
        n = None
    if not n or n < 1:
        raise UsageError(f"--blocksize {text!r} is not a size such as 64MiB")


def _check_model_options(args, demo):
    """The combinations of model options that a model would not use."""
    model = "linear" if demo else args.model
    fmap = None if demo or args.features is None else args.features[0]
    for opt, name in ((args.loss, "--loss"), (args.solver, "--solver"),
                      (args.local_passes, "--local-passes")):
        if opt is not None and model != "linear":
            hint = (" (--model auto picks ovr for more than two classes: give --model linear)"
                    if model == "auto" else "")
            raise UsageError(f"{name} is only for --model linear, not --model {model}{hint}")
    if args.local_passes is not None and args.solver not in (None, "cocoa"):
        raise UsageError(f"--local-passes is for --solver cocoa ({args.solver} makes no "
                         "coordinate passes)")
    if args.seed is not None and model == "cascade":
        raise UsageError("--seed: --model cascade draws nothing at random")
    if demo:
        return
    if fmap is not None and model == "cascade":
        raise UsageError("--features is for the linear models; --model cascade uses the exact "
                         "kernel (--kernel, --gamma)")
    kernel_ok = model == "cascade" or fmap == "nystroem"
    if args.kernel is not None and not kernel_ok:
        raise UsageError(f"--kernel is for --model cascade or --features nystroem:D; --model "
                         f"{model} is linear" + (f" and {fmap} approximates the rbf kernel only"
                                                 if fmap else " (add --features rff:D for an "
                                                              "rbf kernel)"))
    kernel = args.kernel or "rbf"
    if args.gamma is not None:
        if model != "cascade" and fmap is None:
            raise UsageError(f"--gamma is for --model cascade or --features; --model {model} "
                             "has no kernel")
        if kernel == "linear":
            raise UsageError("--gamma: the linear kernel has no gamma")
        if args.gamma == "scale" and model != "cascade":
            raise UsageError("--gamma scale is for --model cascade; with --features give a "
                             "number or auto (1 / n_features)")
    if args.degree is not None and kernel != "poly":
        raise UsageError("--degree is for --kernel poly")
    if args.coef0 is not None and kernel not in ("poly", "sigmoid"):
        raise UsageError("--coef0 is for --kernel poly or sigmoid")


def _check_cluster_options(args):
    remote = args.scheduler is not None or args.scheduler_file is not None
    if args.workers is not None and remote:
        raise UsageError("--workers starts a local cluster; a running scheduler "
                         "(--scheduler / --scheduler-file) has its own workers")
    if args.threads is not None and (remote or args.slurm is not None):
        raise UsageError("--threads is for the embedded local cluster; a running scheduler "
                         "or SLURM jobs have their own workers")
    if args.connect_timeout is not None and not remote:
        raise UsageError("--connect-timeout is for --scheduler / --scheduler-file")
    tls = {"--tls-ca-file": args.tls_ca_file, "--tls-cert": args.tls_cert,
           "--tls-key": args.tls_key}
    given = [k for k, v in tls.items() if v is not None]
    if given:
        if len(given) < 3:
            missing = [k for k in tls if k not in given]
            raise UsageError(f"TLS needs --tls-ca-file, --tls-cert and --tls-key; "
                             f"{', '.join(missing)} missing")
        if not remote:
            raise UsageError("the --tls-* options are for connecting to a running scheduler "
                             "(--scheduler tls://... or --scheduler-file)")
        for k, v in tls.items():
            if not os.path.isfile(v):
                raise UsageError(f"{k}: no such file: {v!r}")
        if args.scheduler is not None and not args.scheduler.startswith("tls://"):
            raise UsageError(f"--scheduler {args.scheduler!r}: with the --tls-* options the "
                             "address must start with tls://")
    elif args.scheduler is not None and args.scheduler.startswith("tls://"):
        raise UsageError("a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key")
    if args.scheduler_file is not None and not os.path.isfile(args.scheduler_file):
        raise UsageError(f"--scheduler-file: no such file: {args.scheduler_file!r}")
    if args.slurm is not None:
        try:
            from .parallel.hpc import parse_slurm_options
        except ImportError as e:
            raise Failure(f"--slurm is not available in this installation ({_one_line(e)})") \
                from None
        try:
            parse_slurm_options(args.slurm)
        except ValueError as e:
            raise UsageError(f"--slurm: {_one_line(e)}") from None
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError:
            raise Failure("--slurm needs dask-jobqueue, which is not installed: "
                          "pip install dask-jobqueue") from None


def _check_progress_options(args):
    if args.progress_every is not None and args.progress in ("bar", "none"):
        raise UsageError(f"--progress-every prints lines; it does not go with --progress "
                         f"{args.progress}")


# --------------------------------------------------------------------------- the cluster


@contextlib.contextmanager
def _quiet_distributed(verbose):
    """distributed's log lines off (unless -v) while the command runs."""
    if verbose:
        yield
        return
    from distributed.utils import silence_logging_cmgr

    with silence_logging_cmgr(logging.CRITICAL):
        yield


def _security(args):
    from distributed import Security

    return Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert,
                    tls_client_key=args.tls_key, require_encryption=True)


@contextlib.contextmanager
def _open_cluster(args):
    """The client of the cluster the options name; what was started here ends with it."""
    import dask
    from distributed import Client

    if args.scheduler is not None or args.scheduler_file is not None:
        from .parallel.client import get_client

        where = (args.scheduler if args.scheduler is not None
                 else f"the scheduler of {args.scheduler_file}")
        timeout = args.connect_timeout or CONNECT_TIMEOUT
        security = _security(args) if args.tls_ca_file else None
        before = _current_client()
        try:
            with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout:g}s"}):
                client = get_client(address=args.scheduler, scheduler_file=args.scheduler_file,
                                    security=security)
        except (OSError, TimeoutError, ValueError) as e:
            raise Failure(f"cannot connect to {where}: {_one_line(e)}") from None
        try:
            if not client.nthreads():
                raise Failure(f"{where} has no workers")
            yield client
        finally:
            if client is not before:
                client.close()
        return
    if args.slurm is not None:
        from .parallel.hpc import slurm_cluster

        jobs = args.workers or 2
        print(f"cluster: submitting {jobs} SLURM jobs ({args.slurm}); waiting for their "
              "workers", flush=True)
        try:
            cluster = slurm_cluster(args.slurm, jobs=jobs)
        except (ImportError, RuntimeError, TimeoutError, ValueError, OSError) as e:
            raise Failure(f"--slurm: {_one_line(e)}") from None
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    from .parallel.client import local_cluster

    cluster = local_cluster(args.workers or 1, args.threads,
                            silence_logs=logging.WARNING if args.verbose else logging.CRITICAL)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _current_client():
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


# --------------------------------------------------------------------------- progress


class Progress:
    """Follows a fit round by round: a tqdm bar, text lines, or nothing.

    Called with each round's history record (the estimators' ``callback``;
    for an estimator without one, the engine's ``dasksvm-progress`` events).
    The stopping quantity is ``record["stop"]`` when the solver gives one
    (cascade: the violating pair's gap; ovr: the largest class gap), else the
    relative duality gap. The bar's position is ``log(gap0 / gap) /
    log(gap0 / tol)`` (gap0: the first round's), clipped to [0, 1]; a line
    (every ``every`` rounds, the first and the last) shows the round, the gap,
    the primal and dual values, the solver's clock and the training rows
    visited per second (rows x rounds / seconds).

    Parameters
    ----------
    mode : {"bar", "lines", "none"}
    tol : float
    n_rows : int
    every : int
    unit : str
        What a round is called ("round", "epoch", "pass").
    label : str
        What the gap is called.
    stream : file, optional
        Where the lines go (default: standard output); the bar goes to
        standard error.
    """

    def __init__(self, mode, *, tol, n_rows, every=10, unit="round", label="rel_gap",
                 stream=None):
        self.mode, self.tol, self.n_rows, self.every = mode, float(tol), int(n_rows), every
        self.unit, self.label = unit, label
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._last_round = None
        self._printed = None
        self._last = None
        self._count = 0
        self._gap0 = None
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=1000, file=sys.stderr, dynamic_ncols=True, leave=True,
                             bar_format=self._format("-", math.nan, math.nan))

    def __call__(self, record):
        self.update(record)

    def position(self, gap):
        """The bar's position in [0, 1] for a stopping quantity ``gap``."""
        if not math.isfinite(gap):
            return 0.0
        if gap <= self.tol:
            return 1.0
        if self._gap0 is None:
            self._gap0 = gap
        if self._gap0 <= self.tol:
            return 1.0
        pos = math.log(self._gap0 / gap) / math.log(self._gap0 / self.tol)
        return min(1.0, max(0.0, pos))

    def update(self, record):
        """Show one round's record (records of rounds already shown are skipped)."""
        with self._lock:
            rnd = int(record.get("round", self._count))
            if self._last_round is not None and rnd <= self._last_round:
                return
            self._last_round = rnd
            self._count += 1
            gap = float(record.get("stop", record.get("rel_gap", math.nan)))
            secs = float(record.get("time", math.nan))
            rate = self.n_rows * self._count / secs if secs > 0 else math.nan
            self._last = (record, gap, secs, rate)
            pos = self.position(gap)
            if self._bar is not None:
                self._bar.n = round(1000 * pos)
                self._bar.bar_format = self._format(rnd, gap, rate)
                self._bar.refresh()
            elif self.mode == "lines" and (self._count == 1 or rnd % self.every == 0):
                self._line()

    def _format(self, rnd, gap, rate):
        """tqdm's bar_format for a round: the numbers written in, tqdm's fields in braces."""
        gap = f"{gap:.2e}" if math.isfinite(gap) else "-"
        rate = f"{rate:,.0f}" if math.isfinite(rate) else "-"
        return (f"{self.unit} {rnd} {{percentage:3.0f}}%|{{bar}}| {self.label} {gap} "
                f"(tol {self.tol:g}), {rate} rows/s [{{elapsed}}]")

    def _line(self):
        record, gap, secs, rate = self._last
        self._printed = record.get("round")
        print(f"{self.unit} {record.get('round', 0):>5}  {self.label} {gap:.3e} "
              f"(tol {self.tol:g})  primal {record.get('primal', math.nan):.8g}  "
              f"dual {record.get('dual', math.nan):.8g}  {secs:8.2f}s  {rate:,.0f} rows/s",
              file=self.stream, flush=True)

    def finish(self, history=()):
        """Show the records of ``history`` not seen yet and the last line; close the bar."""
        for record in history or ():
            self.update(record)
        with self._lock:
            if (self.mode == "lines" and self._last is not None
                    and self._printed != self._last[0].get("round")):
                self._line()
            if self._bar is not None:
                self._bar.close()
                self._bar = None


@contextlib.contextmanager
def _follow_events(client, progress, solver):
    """Feed ``progress`` from the engine's events, for an estimator without ``callback``."""
    def handler(event):
        msg = event[1] if isinstance(event, (tuple, list)) else event
        if isinstance(msg, dict) and msg.get("event") == "round" and msg.get("solver") == solver:
            progress.update(msg)

    client.subscribe_topic(PROGRESS_TOPIC, handler)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(PROGRESS_TOPIC)


def _progress_mode(args):
    if args.progress != "auto":
        return args.progress
    if args.progress_every is not None:
        return "lines"
    return "bar" if sys.stderr.isatty() else "lines"


# --------------------------------------------------------------------------- data


def _with_width(X, n):
    """Dask X of CSR blocks with exactly ``n`` columns (padded or cut; lazy)."""
    import numpy as np

    if X.shape[1] == n:
        return X
    return X.map_blocks(_block_width, n, chunks=(X.chunks[0], (n,)), dtype=X.dtype,
                        meta=X._meta if X._meta is not None else np.empty((0, 0)))


def _block_width(block, n):
    import scipy.sparse as sp

    block = sp.csr_matrix(block)
    if block.shape[1] > n:
        return block[:, :n].tocsr()
    return sp.csr_matrix((block.data, block.indices, block.indptr), shape=(block.shape[0], n))


def _describe_files(files):
    return files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"


def _load(files, *, n_features=None, blocksize="64MiB"):
    """``load_svmlight`` with its ValueError (file and line) as a Failure."""
    from .datasets import load_svmlight

    try:
        return load_svmlight(files, n_features=n_features, blocksize=blocksize)
    except (ValueError, OSError) as e:
        raise Failure(_one_line(e)) from None


def _label_text(values):
    """Labels as written in svmlight files: integers without a decimal point."""
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(
            values)):
        return [str(v) for v in values.astype(np.int64).tolist()]
    return [str(v) for v in values.tolist()]


# --------------------------------------------------------------------------- train


def _resolve_model(args, n_classes):
    model = args.model
    if model == "auto":
        model = "linear" if n_classes == 2 else "ovr"
    if model == "linear" and n_classes > 2:
        raise Failure(f"--model linear is binary, but the training data has {n_classes} "
                      "classes: use --model ovr, cs, ww or llw (or auto)")
    return model


def _build_estimator(args, model, n_features, client, demo):
    """The estimator (or Pipeline) the options describe, and its description."""
    from . import CascadeSVC, LinearSVC, MulticlassSVC
    from .estimators.features import Nystroem, OrthogonalRandomFeatures, RandomFourierFeatures

    seed = 0 if args.seed is None else args.seed
    opts = {"C": args.C}
    if args.tol is not None:
        opts["tol"] = args.tol
    if args.class_weight is not None:
        opts["class_weight"] = args.class_weight
    if model == "cascade":
        for name in ("kernel", "gamma", "degree", "coef0"):
            if getattr(args, name) is not None:
                opts[name] = getattr(args, name)
        if args.max_iter is not None:
            opts["max_passes"] = args.max_iter
        est = CascadeSVC(**opts)
    else:
        if args.max_iter is not None:
            opts["max_iter"] = args.max_iter
        opts["random_state"] = seed
        if model == "linear":
            if args.local_passes is not None and args.solver is None:
                opts["solver"] = "cocoa"  # the only solver with coordinate passes
            for opt in ("loss", "solver", "local_passes"):
                if getattr(args, opt) is not None:
                    opts[opt] = getattr(args, opt)
            est = LinearSVC(**opts)
        else:
            est = MulticlassSVC(model, **opts)
    shown = [f"{k}={v!r}" for k, v in opts.items()]
    if isinstance(est, MulticlassSVC):
        shown.insert(0, repr(model))
    desc = f"{type(est).__name__}({', '.join(shown)})"
    est.set_params(client=client, verbose=min(args.verbose, 1) if args.verbose else 0)
    fmap = None if demo else args.features
    if fmap is None:
        return est, est, desc
    kind, D = fmap
    mopts = {"n_components": D, "random_state": seed}
    gamma = args.gamma
    if gamma == "auto":
        gamma = 1.0 / n_features
    if gamma is not None:
        mopts["gamma"] = gamma
    if kind == "nystroem":
        for name in ("kernel", "degree", "coef0"):
            if getattr(args, name) is not None:
                mopts[name] = getattr(args, name)
        fm = Nystroem(**mopts)
    else:
        fm = (RandomFourierFeatures if kind == "rff" else OrthogonalRandomFeatures)(**mopts)
    from sklearn.pipeline import Pipeline

    fdesc = f"{type(fm).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in mopts.items()) + ")"
    return Pipeline([("features", fm), ("svm", est)]), est, f"{fdesc} -> {desc}"


def _fit_words(est):
    """(what a round is called, what its gap is called) for an estimator."""
    name = type(est).__name__
    if name == "CascadeSVC":
        return "pass", "kkt_gap"
    if name == "MulticlassSVC" and est.multi_class == "ww":
        return "epoch", "rel_gap"
    if name == "MulticlassSVC" and est.multi_class == "ovr":
        return "round", "max_class_rel_gap"
    return "round", "rel_gap"


def _train(args, files, test_files, demo=False):
    import dask
    import dask.array as da
    import numpy as np

    from .exceptions import ConvergenceWarning
    from .persist import save_model

    t_start = time.perf_counter()
    with _open_cluster(args) as client:
        nthreads = client.nthreads()
        threads = sum(nthreads.values())
        print(f"cluster: {len(nthreads)} workers, {threads} threads; dashboard "
              f"{client.dashboard_link}", flush=True)
        t0 = time.perf_counter()
        X, y = _load(files, n_features=args.n_features, blocksize=args.blocksize)
        Xt = yt = None
        if test_files:
            Xt, yt = _load(test_files, n_features=args.n_features, blocksize=args.blocksize)
            width = max(X.shape[1], Xt.shape[1])
            X, Xt = _with_width(X, width), _with_width(Xt, width)
        if X.shape[0] == 0:
            raise Failure(f"{_describe_files(files)} holds no rows")
        if X.numblocks[0] < threads:
            # a compressed file arrives as one block: give every worker thread one
            rows = -(-X.shape[0] // threads)
            X, y = X.rechunk({0: rows}), y.rechunk({0: rows})
        X, y = client.persist([X, y])
        if Xt is not None:
            Xt, yt = client.persist([Xt, yt])
        classes = np.asarray(da.unique(y).compute())
        print(f"loaded {_describe_files(files)}: {X.shape[0]} rows x {X.shape[1]} features, "
              f"{len(classes)} classes, {X.numblocks[0]} blocks, "
              f"{time.perf_counter() - t0:.2f}s", flush=True)
        if len(classes) < 2:
            raise Failure(f"the training data has a single class ({_label_text(classes)[0]}); "
                          "a classifier needs two or more")
        model = "linear" if demo else _resolve_model(args, len(classes))
        est, final, desc = _build_estimator(args, model, X.shape[1], client, demo)
        print(f"model: {desc}", flush=True)
        unit, label = _fit_words(final)
        every = args.progress_every or 10
        progress = Progress(_progress_mode(args), tol=final.get_params()["tol"],
                            n_rows=X.shape[0], every=every, unit=unit, label=label)
        follow = contextlib.nullcontext()
        if "callback" in final.get_params():
            final.set_params(callback=progress)
        else:
            follow = _follow_events(client, progress, "cascade")
        t1 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                with follow:
                    est.fit(X, y)
            except ValueError as e:
                raise Failure(f"the fit failed: {_one_line(e)}") from None
            finally:
                progress.finish(getattr(final, "history_", ()))
        t_fit = time.perf_counter() - t1
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        acc = None
        if Xt is not None:
            pred = est.predict(Xt)
            pred, truth = dask.compute(pred, yt)
            acc = float(np.mean(np.asarray(pred) == np.asarray(truth)))
        if "callback" in final.get_params():
            final.set_params(callback=None)
        if args.out is not None:
            try:
                save_model(est, args.out)
            except (ValueError, OSError) as e:
                raise Failure(f"cannot save the model to {args.out!r}: {_one_line(e)}") from None
    print(_summary(final, args, t_fit, time.perf_counter() - t_start, acc,
                   0 if Xt is None else Xt.shape[0], unit, label), flush=True)
    return 0


def _summary(final, args, t_fit, t_total, acc, n_test, unit, label):
    hist = final.history_
    last = hist[-1] if hist else {}
    gap = float(last.get("stop", last.get("rel_gap", math.nan)))
    tol = final.get_params()["tol"]
    n = final.n_iter_
    plural = {"pass": "passes"}.get(unit, unit + "s")
    if final.converged_:
        head = f"converged in {n} {plural}: {label} {gap:.3e} <= tol {tol:g}"
    elif getattr(final, "stopped_", False):
        head = f"stopped at {unit} {n}: {label} {gap:.3e} (tol {tol:g})"
    else:
        cap = final.get_params().get("max_passes", final.get_params().get("max_iter"))
        head = (f"NOT converged: --max-iter {cap} stopped it after {n} {plural} at {label} "
                f"{gap:.3e} > tol {tol:g} (raise --max-iter)")
    parts = [head]
    if acc is not None:
        parts.append(f"test accuracy {acc:.4f} ({n_test} rows)")
    parts.append(f"fit {t_fit:.2f}s, total {t_total:.2f}s")
    parts.append(f"model saved to {args.out}" if args.out else "model not saved (no --out)")
    return "; ".join(parts)


def _cmd_train(args):
    _check_model_options(args, demo=False)
    _check_cluster_options(args)
    _check_progress_options(args)
    _check_blocksize(args.blocksize)
    files = _expand(args.data, "DATA")
    test_files = _expand(args.test, "--test") if args.test is not None else None
    _check_out(args.out)
    return _train(args, files, test_files)


def _cmd_demo(args):
    from .datasets import load_demo

    _check_model_options(args, demo=True)
    _check_cluster_options(args)
    _check_progress_options(args)
    if args.out is not None:
        _check_out(args.out)
    ds = load_demo()
    args.n_features, args.blocksize, args.model, args.features = ds.n_features, "64MiB", \
        "linear", None
    return _train(args, [str(ds["train"])], [str(ds["test"])], demo=True)


# --------------------------------------------------------------------------- predict, evaluate


def _read_model(path):
    from .persist import load_model

    if not os.path.isfile(path):
        raise UsageError(f"MODEL: no such file: {path!r}")
    try:
        return load_model(path)
    except ValueError as e:
        raise Failure(_one_line(e)) from None


def _dask_ready(model):
    """Whether every step of the model takes dask arrays (dasksvm's estimators do)."""
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    return all(type(s).__module__.startswith("dasksvm.") for s in steps)


def _model_input(model, files, blocksize):
    """(X, y) of the files, X with the model's number of columns; in memory when the model
    has a scikit-learn step (its transformers read no dask arrays)."""
    n = model.n_features_in_
    X, y = _load(files, blocksize=blocksize)
    if X.shape[1] > n:
        print(f"note: {_describe_files(files)} has feature indices up to {X.shape[1]}; the "
              f"model has {n} features: the others are ignored", file=sys.stderr)
    X = _with_width(X, n)
    if not _dask_ready(model):
        import dask

        X, y = dask.compute(X, y)
    return X, y


def _compute(*values):
    """The values computed (dask arrays on the current scheduler; others as they are)."""
    import dask

    return list(dask.compute(*values))


def _cmd_predict(args):
    import numpy as np

    _check_blocksize(args.blocksize)
    files = _expand(args.data, "DATA")
    _check_out(args.out)
    model = _read_model(args.model)
    X, _ = _model_input(model, files, args.blocksize)
    try:
        if args.decision:
            pred, dec = _compute(model.predict(X), model.decision_function(X))
        else:
            [pred] = _compute(model.predict(X))
    except ValueError as e:
        raise Failure(_one_line(e)) from None
    labels = _label_text(pred)
    with open(args.out, "w", encoding="utf-8") as f:
        if args.decision:
            dec = np.asarray(dec, dtype=np.float64)
            classes = _label_text(model.classes_)
            if dec.ndim == 1:
                f.write(f"# label decision (> 0: {classes[1]}, else {classes[0]})\n")
                dec = dec[:, None]
            else:  # one column per class, or (one-vs-one) per pair of classes
                cols = (classes if dec.shape[1] == len(classes)
                        else [f"d{k}" for k in range(dec.shape[1])])
                f.write("# label " + " ".join(cols) + "\n")
            f.writelines(lab + " " + " ".join(f"{v:.10g}" for v in row) + "\n"
                         for lab, row in zip(labels, dec.tolist(), strict=True))
        else:
            f.writelines(lab + "\n" for lab in labels)
    print(f"wrote {len(labels)} labels to {args.out}")
    return 0


def _cmd_evaluate(args):
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    _check_blocksize(args.blocksize)
    files = _expand(args.data, "DATA")
    model = _read_model(args.model)
    X, y = _model_input(model, files, args.blocksize)
    try:
        pred, truth = _compute(model.predict(X), y)
    except ValueError as e:
        raise Failure(_one_line(e)) from None
    pred, truth = np.asarray(pred), np.asarray(truth)
    labels = np.union1d(np.asarray(model.classes_), np.unique(truth))
    names = _label_text(labels)
    p, r, f1, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(truth, pred, labels=labels)
    acc = accuracy_score(truth, pred)
    print(f"accuracy {acc:.4f} ({int(np.sum(pred == truth))} / {len(truth)} rows of "
          f"{_describe_files(files)})")
    w = max(5, *(len(n) for n in names))
    print(f"{'class':>{w}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}")
    for k, name in enumerate(names):
        print(f"{name:>{w}} {p[k]:9.4f} {r[k]:9.4f} {f1[k]:9.4f} {int(s[k]):9d}")
    print(f"{'macro':>{w}} {p.mean():9.4f} {r.mean():9.4f} {f1.mean():9.4f} {int(s.sum()):9d}")
    print("confusion matrix (rows: true class, columns: predicted class)")
    cw = max(w, len(str(int(cm.max()))) if cm.size else 1)
    print(" " * w + " " + " ".join(f"{n:>{cw}}" for n in names))
    for name, row in zip(names, cm.tolist(), strict=True):
        print(f"{name:>{w}} " + " ".join(f"{v:>{cw}d}" for v in row))
    return 0


# --------------------------------------------------------------------------- datasets


def _cmd_datasets(args):
    import importlib

    fetch_mod = importlib.import_module("dasksvm.datasets.fetch")  # (the package's
    # ``fetch`` attribute is the function of that name)
    spec_of = fetch_mod._registry()["datasets"]
    home = fetch_mod.get_data_home(args.data_home)
    if args.action == "list":
        print(f"{'name':<22} {'task':<10} {'classes':>7} {'features':>9}  {'rows':<28} on disk")
        for name in fetch_mod.list_datasets():
            spec = spec_of[name]
            rows = ", ".join(f"{s} {e['n_samples']}" for s, e in spec["splits"].items())
            here = all((home / e["file"]).is_file() for e in spec["splits"].values())
            print(f"{name:<22} {spec['task']:<10} {spec['n_classes']:>7} "
                  f"{spec['n_features']:>9}  {rows:<28} {'yes' if here else 'no'}")
        print(f"data home: {home} (--data-home, or ${fetch_mod.DATA_HOME_ENV})")
        return 0
    spec = spec_of[args.name]
    if args.action == "info":
        print(f"{args.name}: {spec['description']}")
        print(f"task {spec['task']}, {spec['n_classes']} classes (labels "
              f"{fetch_mod._label_convention(spec['labels'])}), {spec['n_features']} features")
        print(f"licence: {spec['licence']}")
        print(f"source: {spec['source']}")
        for kind, entries in (("split", spec["splits"]), ("extra", spec["extras"])):
            for s, e in entries.items():
                path = home / e["file"]
                counts = (f", {e['n_samples']} rows, {e['nnz']} non-zeros"
                          if "n_samples" in e else "")
                print(f"{kind} {s}: {e['file']} ({e['size']} bytes{counts}; sha256 "
                      f"{e['sha256']}): {path if path.is_file() else 'not in ' + str(home)}")
        return 0
    try:
        ds = fetch_mod.fetch(args.name, args.data_home, download_url=args.download_url)
    except (OSError, ValueError) as e:
        raise Failure(_one_line(e)) from None
    for s, path in {**ds.files, **ds.extras}.items():
        print(f"{s}: {path} (sha256 verified)")
    return 0


# --------------------------------------------------------------------------- bench


def _bench_dir():
    return Path(__file__).resolve().parent.parent / "benchmarks"


def _bench_quick_args(name, script):
    """The arguments of a quick run: :data:`BENCH_QUICK`'s, else the script's own
    ``--quick`` when it defines one, else None."""
    if name in BENCH_QUICK:
        return list(BENCH_QUICK[name])
    if '"--quick"' in script.read_text(encoding="utf-8"):
        return ["--quick"]
    return None


def _cmd_bench(args):
    root = _bench_dir()
    if not root.is_dir():
        raise Failure(f"no benchmark suite at {root}: dasksvm bench runs the scripts of a "
                      "source checkout's benchmarks/ folder")
    found = sorted(p.stem[len("bench_"):] for p in root.glob("bench_*.py"))
    unknown = [n for n in args.names if n not in found]
    if unknown:
        raise UsageError(f"unknown benchmark(s) {', '.join(map(repr, unknown))}; available: "
                         f"{', '.join(found)}")
    for name in args.names or found:
        script = root / f"bench_{name}.py"
        cmd = [sys.executable, str(script)]
        if args.quick:
            quick = _bench_quick_args(name, script)
            if quick is None:
                print(f"note: bench_{name}.py has no quick settings: a full run")
            else:
                cmd += quick
        print("$ " + shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        if args.quick:
            (root / "results" / "quick").mkdir(parents=True, exist_ok=True)
        rc = subprocess.run(cmd, cwd=root.parent, check=False).returncode
        if rc:
            raise Failure(f"bench_{name}.py failed with exit status {rc}")
    return 0


# --------------------------------------------------------------------------- main


_COMMANDS = {
    "train": _cmd_train,
    "demo": _cmd_demo,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "datasets": _cmd_datasets,
    "bench": _cmd_bench,
}


def main(argv=None):
    """Run the ``dasksvm`` command with ``argv`` (default ``sys.argv[1:]``); the exit status.

    0: done; 2: a wrong command line (one line on standard error, before any
    cluster starts); 1: a failed run (its reason on one line of standard
    error; with ``-v`` also the traceback); 130: interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    prog = f"dasksvm {args.command}"
    verbose = getattr(args, "verbose", 0)
    try:
        with _quiet_distributed(verbose):
            return _COMMANDS[args.command](args)
    except UsageError as e:
        print(f"{prog}: error: {_one_line(e)} (see {prog} --help)", file=sys.stderr)
        return 2
    except Failure as e:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
