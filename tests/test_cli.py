"""The `dasksvm` command: the README's main job and `train` on any svmlight file."""

import subprocess
import sys

from dasksvm.cli import main


def test_train_on_a_file(process_client, data_dir, capsys):
    addr = process_client.scheduler.address
    rc = main([
        "train", str(data_dir / "mushrooms_agaricus.train.xz"),
        "--test", str(data_dir / "mushrooms_agaricus.test.xz"),
        "-C", "0.01", "--loss", "hinge", "--scheduler", addr,
    ])
    out = capsys.readouterr().out
    assert rc == 0
    assert "6513 rows x 126 features" in out
    assert "converged after" in out and "relative duality gap" in out
    acc = float(out.split("test accuracy")[1].split()[0])
    assert acc > 0.95


def test_demo_runs_on_an_embedded_cluster():
    proc = subprocess.run(
        [sys.executable, "-m", "dasksvm.cli", "demo"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "cluster: " in out and "32561 rows x 123 features" in out
    assert "converged after" in out
    assert float(out.split("test accuracy")[1].split()[0]) > 0.84
