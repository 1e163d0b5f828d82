"""Tutorial 1: a certified linear SVM on a LocalCluster.

Run with ``python tutorials/01_linear_svm.py``. It loads the a9a data shipped
with dasksvm, fits LinearSVC with CoCoA+ on 2 blocks, shows the per-round
certificate, and checks it against scikit-learn's LIBLINEAR.
"""

import numpy as np
from distributed import Client, LocalCluster
from sklearn.svm import LinearSVC as LiblinearSVC

import dasksvm
from dasksvm.datasets import load_demo, load_svmlight

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        ds = load_demo()
        X, y = load_svmlight(str(ds["train"]), n_features=ds.n_features)
        X, y = X.rechunk({0: 16281}), y.rechunk({0: 16281})  # 2 row blocks
        model = dasksvm.LinearSVC(C=0.1, tol=1e-3, random_state=0).fit(X, y)
        for rec in model.history_[:: max(1, len(model.history_) // 8)]:
            print(f"round {rec['round']:4d}  P {rec['primal']:.6f}  D {rec['dual']:.6f}  "
                  f"rel gap {rec['rel_gap']:.2e}  {rec['bytes']} bytes")
        print("certified:", model.converged_, "relative gap", model.rel_gap_)

        # The same problem with LIBLINEAR, and its objective by our formula.
        Xs, ys = client.compute([X, y], sync=True)  # one scipy CSR matrix
        ref = LiblinearSVC(C=0.1, dual=True, tol=1e-8, max_iter=100_000).fit(Xs, ys)
        w = np.r_[ref.coef_.ravel(), ref.intercept_]
        Xa = np.c_[Xs.toarray(), np.ones(Xs.shape[0])]
        P_ref = 0.5 * w @ w + 0.1 * np.sum(np.maximum(0, 1 - ys * (Xa @ w)) ** 2)
        print(f"LIBLINEAR P = {P_ref:.6f}; dasksvm P = {model.primal_:.6f}; "
              f"P - P_ref = {model.primal_ - P_ref:.2e} <= gap {model.primal_ - model.dual_:.2e}")
