"""The tutorials run: each ``tutorials/NN_*.py`` as a script in a subprocess.

Every script starts its own LocalCluster and closes it at its end; it runs with a
temporary directory as its working directory, reads the real data from
``$DASKSVM_DATA`` (the directory tests/conftest.py uses) and writes its plots to
``$DASKSVM_TUTORIAL_OUT``. The test checks that it exits 0 and wrote its files.
The four together take about a minute on two idle cores (subsets; sizes in each
tutorial's text).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import DATA_DIR, REPO

TUTORIALS = REPO / "tutorials"
PNG = b"\x89PNG\r\n\x1a\n"

# script -> (needs the dataset mirror, the files it writes into $DASKSVM_TUTORIAL_OUT)
EXPECTED = {
    "01_linear_svm.py": (False, ["convergence.png"]),
    "02_multiclass_news20.py": (True, ["news20_accuracy_vs_C.png"]),
    "03_model_selection.py": (True, ["magic04_grid_search.png"]),
    "04_kernels.py": (True, ["kernel_accuracy_vs_D.png"]),
}


# tutorials on a real SLURM: run by tests/test_slurm.py, where SLURM is started
ON_SLURM = {"05_slurm_dashboard.py"}


def _scripts():
    return sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))


def test_every_tutorial_is_registered_and_closes_its_cluster():
    assert _scripts() == sorted(set(EXPECTED) | ON_SLURM), "add each new tutorial to EXPECTED"
    for name in ON_SLURM:
        text = (TUTORIALS / name).read_text(encoding="utf-8")
        assert "slurm_cluster(" in text and "cluster.close()" in text, name
    for name in EXPECTED:
        text = (TUTORIALS / name).read_text(encoding="utf-8")
        assert text.startswith("# %% [markdown]\n# # Tutorial"), name  # jupytext percent format
        assert "LocalCluster(" in text and "cluster.close()" in text, name
        assert "matplotlib.use(\"Agg\")" in text or "plt" not in text, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs(name, tmp_path):
    needs_data, outputs = EXPECTED[name]
    if needs_data and not DATA_DIR.is_dir():
        pytest.skip(f"dataset mirror {DATA_DIR} not found; set DASKSVM_DATA")
    out = tmp_path / "out"
    env = dict(os.environ, DASKSVM_DATA=str(DATA_DIR), DASKSVM_TUTORIAL_OUT=str(out),
               MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(TUTORIALS / name)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - t0
    log = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{name} exited {proc.returncode} after {seconds:.1f} s\n{log}"
    for fname in outputs:
        path = out / fname
        assert path.is_file(), f"{name} did not write {fname}\n{log}"
        data = path.read_bytes()
        if fname.endswith(".png"):
            assert data.startswith(PNG) and len(data) > 5000, f"{fname} is not a PNG plot"
    print(f"{name}: {seconds:.1f} s")
