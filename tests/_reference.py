"""Reference objectives and data loading for the tests (plain numpy / scikit-learn)."""

import lzma

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file


def load_xz(path, n_features=None):
    """(X CSR with int32 indices, y) of an xz svmlight file via scikit-learn."""
    with lzma.open(path) as f:
        X, y = load_svmlight_file(f, n_features=n_features)
    X = sp.csr_matrix(X, dtype=np.float64)
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X, y


def with_intercept(X, scaling=1.0):
    col = sp.csr_matrix(np.full((X.shape[0], 1), scaling))
    return sp.hstack([X, col], format="csr")


def binary_primal(X, y_pm, w, b, C, loss, sample_c=None):
    """P(w, b) = 1/2 (||w||^2 + b^2 / s^2 ... ) as LIBLINEAR: b regularized via the column.

    ``b`` here is the weight of the intercept column (not intercept_).
    """
    m = np.maximum(0.0, 1.0 - y_pm * (X @ w + b))
    c = C if sample_c is None else sample_c
    lossv = m * m if loss == "squared_hinge" else m
    return 0.5 * (w @ w + b * b) + float(np.sum(c * lossv))


def run_without_jit(module, *tests):
    """Run the named test functions of ``tests.<module>`` in a fresh interpreter with
    numba's JIT off (the kernels as plain Python), and fail with its stderr if any fails."""
    import os
    import subprocess
    import sys

    calls = "; ".join(f"t.{name}()" for name in tests)
    code = f"import tests.{module} as t; {calls}; print('ok')"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
