# %% [markdown]
# # Tutorial 5: a Weston-Watkins fit on SLURM, watched on the dashboard, resumed after its client dies
#
# On an HPC cluster the workers are batch jobs (`dask_jobqueue.SLURMCluster`),
# the fit is watched on the Dask dashboard's `/dasksvm` page, and the notebook
# that started it may die. This tutorial does all three on a real SLURM:
#
# 1. start two worker jobs with `dasksvm.parallel.hpc.slurm_cluster` (the same
#    function as `dasksvm train --slurm "OPTIONS"`; `docs/hpc.md` says how to
#    set cores, memory and queues) and put the `/dasksvm` page on its dashboard;
# 2. run a Weston-Watkins fit from a *second* client process that writes a
#    checkpoint every round, and kill that process (SIGKILL) mid-fit;
# 3. resume the fit here from the checkpoint with `fit(..., resume=True)` and
#    check its certificate; the page has followed both clients' rounds.
#
# It needs a running SLURM: `scripts/slurm/start.sh` starts a single-node one
# (as root, from Debian's packages); the test suite runs this file that way
# (`tests/test_slurm.py`). Data: 600 rows of dna (3 classes) from the dataset
# mirror (`$DASKSVM_DATA`, default `../shared/data` next to the repository).

# %%
import lzma
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from distributed import Client
from sklearn.datasets import load_svmlight_file

import dasksvm
from dasksvm.dashboard import PLUGIN_NAME, install
from dasksvm.parallel.hpc import slurm_cluster

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd()
DATA = Path(os.environ.get("DASKSVM_DATA", REPO.parent / "shared" / "data"))
WORK = Path(tempfile.mkdtemp(prefix="dasksvm-tutorial5-"))
CHECKPOINT = WORK / "ww.ckpt"

# %% [markdown]
# ## 1. Two SLURM jobs, one worker each, and the dashboard page

# %%
cluster = slurm_cluster("cores=1 memory=1GB dashboard=127.0.0.1:0", jobs=2)
client = Client(cluster)
print("page:", install(client))
print("workers:", sorted(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values()))

# %% [markdown]
# ## 2. A fit from another client process, killed mid-fit
#
# The child connects to the same scheduler, fits WW with a checkpoint every
# round (a callback slows each round down, standing for a long fit), and is
# killed once the checkpoint holds a few rounds.

# %%
# two bundles: the pair schedule, one pass an epoch (by default these 600 rows would be one
# bundle with many passes a round, certified in a few rounds: no time to kill the client)
FIT = {"multi_class": "ww", "C": 0.003, "tol": 1e-3, "max_iter": 500, "random_state": 0,
       "n_bundles": 2, "checkpoint": str(CHECKPOINT), "checkpoint_every": 1}
child = textwrap.dedent(f"""
    import lzma
    import time
    from distributed import Client
    from sklearn.datasets import load_svmlight_file
    import dasksvm
    X, y = load_svmlight_file(lzma.open({str(DATA / "dna.scale.xz")!r}))
    client = Client({cluster.scheduler_address!r})
    dasksvm.MulticlassSVC(**{FIT!r}, client=client,
                          callback=lambda rec: time.sleep(0.5)).fit(X[:600], y[:600])
""")
proc = subprocess.Popen([sys.executable, "-c", child], cwd=WORK)


def checkpoint_round():
    """The next round recorded in the checkpoint file (0 while there is none)."""
    try:
        from dasksvm.parallel.checkpoint import read_checkpoint

        return int(read_checkpoint(CHECKPOINT)[1]["round"])
    except ValueError:
        return 0


deadline = time.monotonic() + 300
while checkpoint_round() < 4:
    assert proc.poll() is None, "the fitting client ended before it could be killed"
    assert time.monotonic() < deadline, "no checkpoint after 300 s"
    time.sleep(0.2)
proc.send_signal(signal.SIGKILL)
proc.wait()
killed_at = checkpoint_round()
print(f"client killed; the checkpoint holds rounds < {killed_at}")

# %% [markdown]
# ## 3. Resume here, from the checkpoint
#
# Same data, same problem (C, classes, solver): the fit continues at the
# checkpoint's round instead of starting over, and ends certified.

# %%
with lzma.open(DATA / "dna.scale.xz") as f:
    X, y = load_svmlight_file(f)
X, y = X[:600], y[:600]
model = dasksvm.MulticlassSVC(**FIT, client=client).fit(X, y, resume=True)
first = model.history_[0]["round"]
resumed = [r for r in model.history_ if r["round"] >= killed_at]
print(f"rounds {first}..{model.n_iter_}: converged={model.converged_}, "
      f"relative gap {model.rel_gap_:.2e}, training accuracy {model.score(X, y):.3f}")
assert model.converged_ and model.rel_gap_ <= FIT["tol"]
assert resumed and resumed[0]["round"] == killed_at  # it went on, it did not start over
assert model.n_iter_ >= killed_at

# %% [markdown]
# The `/dasksvm` page's table lists both fits: the killed client's (its
# rounds stop at the kill, and its status stays "running": a killed client
# sends no end) and the resumed one, whose history holds the checkpoint's
# rounds and then its own. The rows, as the scheduler holds them:

# %%
snap = client.run_on_scheduler(
    lambda dask_scheduler: dask_scheduler.plugins[PLUGIN_NAME].snapshot())
ww_fits = [row for row in snap["fits"] if row["solver"] == "ww"]
for row in ww_fits:
    print({k: row[k] for k in ("fit", "solver", "status", "rounds")})
assert len(ww_fits) >= 2
print("mean relative gap of the resumed fit's last rounds:",
      np.mean([r["rel_gap"] for r in model.history_[-3:]]))

# %%
client.close()
cluster.close()
