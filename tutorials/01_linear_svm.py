# %% [markdown]
# # Tutorial 1: quick start, a certified linear SVM
#
# This tutorial fits `dasksvm.LinearSVC` on **a9a** (UCI Adult, 32,561 training and
# 16,281 test rows, 123 binary features), which ships inside the package
# (`dasksvm.datasets.load_demo`, no download). It shows the per-round `history_`,
# the certificate (primal P, dual D, relative duality gap), lazy prediction on
# dask arrays, a check against scikit-learn's LIBLINEAR, and a convergence plot of
# the three binary solvers (`cocoa`, `sgd`, `newton`).
#
# Run it as a script, `python tutorials/01_linear_svm.py`, or as a notebook
# (`jupytext --to notebook tutorials/01_linear_svm.py`). The plot goes to
# `$DASKSVM_TUTORIAL_OUT` (default: `tutorial-output/` in the current directory).
# It takes about 10 s on two idle cores.

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from sklearn.svm import LinearSVC as LiblinearSVC

import dasksvm
from dasksvm.datasets import load_demo
from dasksvm.solvers import SOLVERS

OUT = Path(os.environ.get("DASKSVM_TUTORIAL_OUT", "tutorial-output"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## A cluster
#
# Every dasksvm fit runs on a `dask.distributed` client. Without one, dasksvm
# starts an embedded `LocalCluster` (`dasksvm.local_cluster()`: one worker process
# whose threads are the cores, the fastest shape on one machine). Here we start
# our own: two single-threaded workers as threads of this process
# (`processes=False`), so that the script needs no `if __name__ == "__main__"`
# guard and also runs in a notebook. The numba kernels release the GIL, so the two
# workers compute in parallel. On a real cluster you would pass its address to
# `Client` (or use dask-jobqueue) and change nothing else.

# %%
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                       dashboard_address="127.0.0.1:0", silence_logs="error")
client = Client(cluster)

# %% [markdown]
# ## Data as dask arrays
#
# `load_demo()` returns a `Dataset`, and its `load(split)` gives lazy dask arrays
# whose row blocks are scipy CSR matrices (`load_svmlight` underneath). We cut the
# training rows into two blocks, one per worker, and persist them: the blocks now
# live in the workers' memory and never come back to this process.

# %%
ds = load_demo()
X, y = ds.load("train")
X_test, y_test = ds.load("test")
X, y = X.rechunk({0: 16281}), y.rechunk({0: 16281})  # 2 row blocks
X, y = client.persist([X, y])
print(X)

# %% [markdown]
# ## Fit, and read the certificate
#
# `LinearSVC` minimizes LIBLINEAR's objective
# `P(w) = 1/2 ||w||^2 + C sum_i max(0, 1 - y_i w.x_i)^2` (the squared hinge, the
# intercept as a regularized constant column). The default, `solver="auto"`,
# picks from the shape of X: a9a has 263 rows per column, so it runs the
# trust-region Newton method (one all-reduce per function evaluation or CG step);
# with fewer than 10 rows per column it would run CoCoA+ (dual coordinate ascent
# on each block, the blocks' changes of w all-reduced once per round); `solver_`
# says which ran. Every round computes the primal `P(w_t)` and a dual value
# `D <= P*` (the optimum), so `P(w_t) - P* <= P - D`: the fit stops at the first
# round whose relative gap `(P - D) / |P|` is at most `tol`. With C = 0.01 it
# needs a few dozen rounds at most.

# %%
model = dasksvm.LinearSVC(C=0.01, tol=1e-3, random_state=0, client=client).fit(X, y)
for rec in model.history_[:: max(1, len(model.history_) // 6)] + model.history_[-1:]:
    print(f"round {rec['round']:3d}  P {rec['primal']:11.4f}  D {rec['dual']:11.4f}  "
          f"rel gap {rec['rel_gap']:.2e}  {rec['time']:5.2f} s  {rec['n_tasks']} tasks  "
          f"{rec['bytes']} bytes")
print("solver:", model.solver_, " converged:", model.converged_, " rounds:", model.n_iter_,
      " certified relative gap:", f"{model.rel_gap_:.2e}")

# %% [markdown]
# Each record also says what the round cost: `n_tasks` (one task per worker) and
# `bytes` moved (w down to each worker and one partial back from each).

# %% [markdown]
# ## Predict
#
# On dask input, `predict`, `decision_function` and `score` are lazy: they build a
# `map_blocks` graph that runs where the blocks are. `.compute()` gives the numbers.

# %%
pred = model.predict(X_test)          # a lazy dask array
print(pred)
acc = model.score(X_test, y_test)
print("test accuracy:", float(acc.compute() if hasattr(acc, "compute") else acc))

# %% [markdown]
# ## The same problem with LIBLINEAR
#
# scikit-learn's `LinearSVC(dual=True)` solves the same problem on one core. We
# evaluate its objective with our formula: since `P_ref >= P*`, the certificate
# says `P_dasksvm - P_ref <= P_dasksvm - P* <= P - D`.

# %%
Xs, ys = client.compute([X, y], sync=True)  # one scipy CSR matrix, all rows
ref = LiblinearSVC(C=0.01, dual=True, tol=1e-6, max_iter=100_000).fit(Xs, ys)
w = np.r_[ref.coef_.ravel(), ref.intercept_]
Xa = np.c_[Xs.toarray(), np.ones(Xs.shape[0])]
P_ref = 0.5 * w @ w + 0.01 * np.sum(np.maximum(0, 1 - ys * (Xa @ w)) ** 2)
gap = model.primal_ - model.dual_
print(f"LIBLINEAR P = {P_ref:.6f}; dasksvm P = {model.primal_:.6f}; "
      f"P - P_ref = {model.primal_ - P_ref:.2e} <= gap {gap:.2e}")
assert model.primal_ - P_ref <= gap

# %% [markdown]
# ## Convergence of the binary solvers
#
# The harder problem at C = 0.1, with each binary solver of
# `dasksvm.solvers.SOLVERS`, 100 rounds at most and `tol=1e-6`, which none of them
# reaches in 100 rounds here, so the curves show how each one closes its gap:
#
# * `cocoa` (CoCoA+): local dual coordinate ascent per block, one all-reduce of the
#   change of w per round;
# * `newton`: the trust-region Newton method (TRON) for the squared hinge, one
#   round per function evaluation and one per conjugate-gradient step;
# * `sgd`: the primal all-reduce subgradient method (Pegasos steps, averaged).
#
# The left panel is the certified relative gap `(P - D) / |P|` of each round; the
# right one the primal's excess over the best dual value any solver reached,
# `(P(w_t) - D_best) / D_best`, an upper bound of `(P(w_t) - P*) / P*`. SGD's dual
# certificate stays near 1 in 100 steps although its primal improves: a
# subgradient method approaches the optimum only at an O(1/t) rate, and its
# certificate closes only as w does.

# %%
solvers = [s for s in ("cocoa", "newton", "sgd") if s in SOLVERS]
runs = {}
for solver in solvers:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dasksvm.ConvergenceWarning)  # max_iter is the point
        t0 = time.perf_counter()
        m = dasksvm.LinearSVC(C=0.1, solver=solver, tol=1e-6, max_iter=100, random_state=0,
                              client=client).fit(X, y)
    runs[solver] = m.history_
    print(f"{solver:7s} {len(m.history_):4d} rounds  {time.perf_counter() - t0:5.2f} s  "
          f"final rel gap {m.rel_gap_:.2e}  P {m.primal_:.4f}")

d_best = max(r["dual"] for h in runs.values() for r in h)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
for solver, h in runs.items():
    t = [r["time"] for r in h]
    ax1.semilogy(t, [max(r["rel_gap"], 1e-16) for r in h], label=solver)
    ax2.semilogy(t, [max((r["primal"] - d_best) / d_best, 1e-16) for r in h], label=solver)
ax1.set(xlabel="time (s)", ylabel="relative duality gap (P - D) / |P|",
        title="a9a, C = 0.1, 2 blocks")
ax2.set(xlabel="time (s)", ylabel="(P - D_best) / D_best", title="primal excess")
ax1.legend()
fig.tight_layout()
fig.savefig(OUT / "convergence.png", dpi=100)
print("wrote", OUT / "convergence.png")

# %% [markdown]
# Which solver to use when is in the page "Choosing a model and a solver".
# Close the cluster when done:

# %%
client.close()
cluster.close()
