"""Weston-Watkins solver: exactness against cvxpy, the certificate, the distributed structure.

The references are cvxpy (Clarabel) solves of the WW primal, cached per module
in ``_REF``. Sizes are kept small so that the file runs in a few minutes on two
cores: the distributed pair schedule needs tens of epochs and every epoch is a
few dozen small tasks.
"""

import lzma
import os
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from dask.utils import key_split
from distributed import get_task_stream
from sklearn.datasets import load_svmlight_file

from dasksvm.exceptions import ConvergenceWarning
from dasksvm.kernels.ww import ww_cd_pass, ww_hinge_screen, ww_hinge_sums, ww_own_scores
from dasksvm.parallel.blocks import BlockSet
from dasksvm.parallel.checkpoint import read_checkpoint
from dasksvm.parallel.schedule import one_factorization
from dasksvm.parallel.shuffle import assign_bundles, place_bundles, shuffle_by_class
from dasksvm.solvers import solve, solve_ww
from dasksvm.solvers.ww import _ww_link as _real_link

_DATA = {}
_REF = {}


# ---------------------------------------------------------------------------------------
# helpers: data, a numpy WW primal, W(alpha), the cvxpy reference
# ---------------------------------------------------------------------------------------


def _load(data_dir, name, n_rows=None):
    """(X CSR float64 / int32, y encoded 0..K-1 as float, K) of the first ``n_rows`` rows."""
    key = (name, n_rows)
    if key not in _DATA:
        with lzma.open(data_dir / f"{name}.xz") as f:
            X, y = load_svmlight_file(f)
        X = sp.csr_matrix(X, dtype=np.float64)
        if n_rows is not None:
            X, y = X[:n_rows], y[:n_rows]
        X.indices = X.indices.astype(np.int32)
        X.indptr = X.indptr.astype(np.int32)
        classes, yy = np.unique(y, return_inverse=True)
        _DATA[key] = (X, yy.astype(np.float64), len(classes))
    return _DATA[key]


def ww_primal(W, X, y, C):
    """1/2 ||W||^2 + C sum_i sum_{c != y_i} max(0, 1 - (w_{y_i} - w_c).x_i), plain numpy."""
    W = W.toarray() if sp.issparse(W) else np.asarray(W)
    y = y.astype(np.int64)
    M = np.asarray(X @ W.T)
    own = M[np.arange(len(y)), y]
    H = np.maximum(0.0, 1.0 - own[:, None] + M)
    H[np.arange(len(y)), y] = 0.0
    return 0.5 * float((W * W).sum()) + C * float(H.sum())


def w_of_alpha(X, y, alpha):
    """w_c = sum_{y_i = c} (sum_c' alpha_ic') x_i - sum_{y_i != c} alpha_ic x_i."""
    y = y.astype(np.int64)
    beta = -alpha.copy()
    beta[np.arange(len(y)), y] = alpha.sum(axis=1)
    return np.asarray((X.T @ beta).T)


def reference(X, y, K, C, key):
    """P* by cvxpy (Clarabel) on the primal with explicit slacks, cached in ``_REF``."""
    if key in _REF:
        return _REF[key]
    cp = pytest.importorskip("cvxpy")
    n, d = X.shape
    y = y.astype(np.int64)
    if d > n:
        # the optimum lies in the span of the rows: solve on Z with Z Z^T = X X^T instead
        ev, V = np.linalg.eigh((X @ X.T).toarray())
        keep = ev > 1e-10 * ev.max()
        X = sp.csr_matrix(V[:, keep] * np.sqrt(ev[keep]))
        d = X.shape[1]
    rows = np.concatenate([np.flatnonzero(y != c) for c in range(K)])
    cls = np.concatenate([np.full(int((y != c).sum()), c) for c in range(K)])
    coo = X[rows].tocoo()
    m = len(rows)
    A = sp.csr_matrix(
        (np.concatenate([coo.data, -coo.data]),
         (np.concatenate([coo.row, coo.row]),
          np.concatenate([y[rows][coo.row] * d + coo.col, cls[coo.row] * d + coo.col]))),
        shape=(m, K * d),
    )
    w = cp.Variable(K * d)
    xi = cp.Variable(m)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(w) + C * cp.sum(xi)),
                      [xi >= 1 - A @ w, xi >= 0])
    prob.solve(solver=cp.CLARABEL)
    _REF[key] = float(prob.value)
    return _REF[key]


def _check_certificate(r, X, y, K, C, tol):
    """The reported P, D, gap are those of coef and alpha, recomputed with numpy."""
    coef = r.coef.toarray() if sp.issparse(r.coef) else r.coef
    assert coef.shape == (K, X.shape[1])
    P = ww_primal(coef, X, y, C)
    assert P == pytest.approx(r.primal, rel=1e-9)
    assert r.gap == pytest.approx(r.primal - r.dual, rel=1e-12, abs=1e-12)
    alpha = r.state["alpha"]
    yi = y.astype(np.int64)
    assert np.all(alpha >= 0) and np.all(alpha <= C * (1 + 1e-12))
    assert np.all(alpha[np.arange(len(yi)), yi] == 0)
    W = w_of_alpha(X, y, alpha)
    np.testing.assert_allclose(W, coef, atol=1e-9 * max(1.0, np.abs(coef).max()))
    D = alpha.sum() - 0.5 * float((W * W).sum())
    assert D == pytest.approx(r.dual, rel=1e-9, abs=1e-9)
    assert (P - D) <= tol * abs(P) * (1 + 1e-9)
    return P


# ---------------------------------------------------------------------------------------
# exactness against cvxpy (formulations.md section 5: WW primal to 1e-4 relative)
# ---------------------------------------------------------------------------------------

# (dataset, rows, C, n_blocks, n_bundles, layout, cluster, local_passes)
# dna has 3 classes: it runs as one bundle (layout "owner": all variables in one task per
# epoch), its slow dual tail (~280 passes to 1e-4 at C = 0.1) covered by inner passes.
EXACT_CASES = [
    ("dna.scale", None, 0.05, 1, 1, "auto", "thread_client", 30),
    ("dna.scale", None, 0.1, 2, 1, "auto", "process_client", 60),
    ("dna.scale", None, 1.0, 4, 1, "auto", "thread_client", 150),
    ("satimage.scale", 600, 0.1, 2, 2, "spread", "process_client", 1),
    ("satimage.scale", 600, 0.1, 4, 4, "owner", "process_client", 1),
    ("pendigits.scale", 600, 0.02, 1, 4, "spread", "thread_client", 1),
    ("sector_pdsparse.heldout", 60, 1.0, 2, 4, "spread", "thread_client", 1),
]


@pytest.mark.parametrize(
    "name, n_rows, C, n_blocks, n_bundles, layout, cluster, passes", EXACT_CASES,
    ids=[f"{c[0].split('.')[0]}-C{c[2]}-k{c[3]}-B{c[4]}-{c[5]}-{c[6].split('_')[0]}"
         for c in EXACT_CASES],
)
def test_primal_matches_cvxpy(request, data_dir, name, n_rows, C, n_blocks, n_bundles,
                              layout, cluster, passes):
    client = request.getfixturevalue(cluster)
    X, y, K = _load(data_dir, name, n_rows)
    p_star = reference(X, y, K, C, (name, n_rows, C))
    blocks = BlockSet.from_arrays(client, X, y, n_blocks=n_blocks)
    try:
        tol = 1e-4
        r = solve_ww(blocks, K, C=C, tol=tol, max_iter=1000, n_bundles=n_bundles,
                     layout=layout, local_passes=passes, random_state=0, return_dual=True)
    finally:
        blocks.release()
    assert r.converged and r.rel_gap <= tol and r.state["recoveries"] == 0
    assert r.state["n_bundles"] == n_bundles
    assert r.state["layout"] == (layout if layout != "auto" else "owner")
    P = _check_certificate(r, X, y, K, C, tol)
    # Table 1: the same objective as the generic solver, to 1e-4 relative
    assert abs(P - p_star) / p_star <= 1e-4 + 1e-7
    # gap honesty: the suboptimality is never more than the reported gap
    assert P - p_star <= r.gap + 1e-7 * p_star
    assert r.dual <= p_star * (1 + 1e-7)
    rec = r.history[-1]
    assert rec["round"] == r.n_iter and rec["rel_gap"] == pytest.approx(r.rel_gap)
    assert rec["n_tasks"] > 0


@pytest.mark.parametrize("n_bundles", [None, 3])
def test_the_default_sizing_follows_its_rule(process_client, data_dir, n_bundles):
    """``n_bundles=None`` on a small problem: one bundle (owner layout, one part) running
    ``10^8 // (nnz K)`` passes a round (1 to 100), at cvxpy's optimum; a given ``B > 1``
    runs one pass a link (``local_passes="auto"``) and two parts."""
    X, y, K = _load(data_dir, "dna.scale")
    C = 0.05
    p_star = reference(X, y, K, C, ("dna.scale", None, C))
    blocks = BlockSet.from_arrays(process_client, X, y, n_blocks=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            r = solve_ww(blocks, K, C=C, tol=1e-4, max_iter=1000 if n_bundles is None else 2,
                         n_bundles=n_bundles, random_state=0, return_dual=True)
        passes = min(100, 10**8 // (sum(blocks.nnz) * K))
    finally:
        blocks.release()
    assert 1 < passes
    if n_bundles is None:
        assert r.state["n_bundles"] == 1 and r.state["layout"] == "owner"
        assert r.state["local_passes"] == passes and r.state["pair_sweeps"] == 1
        assert r.converged and r.n_iter < 10  # dna needs ~100s of passes at this C
        P = _check_certificate(r, X, y, K, C, 1e-4)
        assert abs(P - p_star) / p_star <= 1e-4 + 1e-7
    else:
        assert r.state["n_bundles"] == 3 and r.state["layout"] == "spread"
        assert r.state["local_passes"] == 1 and r.state["pair_sweeps"] == 2


@pytest.mark.parametrize("ws_margin", [None, 0.0, 0.5])
def test_working_sets_keep_the_certified_optimum(thread_client, data_dir, ws_margin):
    """Working sets (the default) change which variables a link visits, never the answer."""
    X, y, K = _load(data_dir, "pendigits.scale", 600)
    C = 0.02
    p_star = reference(X, y, K, C, ("pendigits.scale", 600, C))
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)
    try:
        r = solve_ww(blocks, K, C=C, tol=1e-4, max_iter=1000, n_bundles=4, ws_margin=ws_margin,
                     random_state=0, return_dual=True)
    finally:
        blocks.release()
    assert r.converged
    P = _check_certificate(r, X, y, K, C, 1e-4)
    assert abs(P - p_star) / p_star <= 1e-4 + 1e-7
    ws = [h["ws_nnz"] for h in r.history]
    if ws_margin is None:
        assert ws == [0] * len(ws)
    else:  # the certificate's working set: a part of the n * (K - 1) variables
        assert all(0 < v < len(y) * (K - 1) for v in ws)


def test_ws_margin_is_checked(thread_client, data_dir):
    X, y, K = _load(data_dir, "pendigits.scale", 100)
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=1)
    try:
        for bad in (-0.1, float("nan"), "0"):
            with pytest.raises(ValueError, match=r"ws_margin must be .*; or None"):
                solve_ww(blocks, K, ws_margin=bad)
    finally:
        blocks.release()


def test_edge_cases_single_example_class_zero_rows_absent_classes(thread_client, data_dir):
    """A class with one row, a class with none, all-zero rows, blocks missing classes."""
    X0, y0, K0 = _load(data_dir, "satimage.scale", 150)
    rng = np.random.default_rng(0)
    one = sp.csr_matrix(rng.normal(size=(1, X0.shape[1])) * 0.3)
    zeros = sp.csr_matrix((3, X0.shape[1]))
    X = sp.vstack([X0, one, zeros], format="csr")
    y = np.concatenate([y0, [K0], [0.0, 1.0, 2.0]])
    K = K0 + 2  # class K0 has one row, class K0 + 1 has none
    order = np.argsort(y, kind="stable")  # sorted: each of the 4 blocks lacks most classes
    X, y = X[order], y[order]
    C = 0.1
    p_star = reference(X, y, K, C, ("edge", C))
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=4)
    try:
        r = solve_ww(blocks, K, C=C, tol=1e-4, max_iter=500, n_bundles=3, random_state=1,
                     return_dual=True)
    finally:
        blocks.release()
    assert r.converged
    P = _check_certificate(r, X, y, K, C, 1e-4)
    assert abs(P - p_star) / p_star <= 1e-4 + 1e-7
    # an all-zero row has gradient 1 on every variable: all its alphas sit at C
    alpha = r.state["alpha"]
    zero_rows = np.flatnonzero(np.diff(X.indptr) == 0)
    for i in zero_rows:
        others = np.delete(alpha[i], int(y[i]))
        np.testing.assert_allclose(others, C)


def test_sparse_coef_layout_matches_dense(thread_client, data_dir):
    X, y, K = _load(data_dir, "sector_pdsparse.heldout", 60)
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)
    out = {}
    try:
        for sparse in (False, True):
            with pytest.warns(ConvergenceWarning, match="Weston-Watkins did not converge"):
                out[sparse] = solve_ww(blocks, K, C=1.0, tol=1e-12, max_iter=3, n_bundles=4,
                                       random_state=3, sparse_coef=sparse)
    finally:
        blocks.release()
    assert sp.issparse(out[True].coef) and isinstance(out[False].coef, np.ndarray)
    np.testing.assert_allclose(out[True].coef.toarray(), out[False].coef, atol=1e-12)
    for a, b in zip(out[True].history, out[False].history, strict=True):
        assert a["primal"] == pytest.approx(b["primal"], rel=1e-12)
        assert a["dual"] == pytest.approx(b["dual"], rel=1e-12)
    assert out[True].primal == pytest.approx(ww_primal(out[True].coef, X, y, 1.0), rel=1e-9)


# ---------------------------------------------------------------------------------------
# distributed structure: task keys, the schedule, what moves between workers
# ---------------------------------------------------------------------------------------


def _incoming(dask_worker):
    """``(key, nbytes)`` of every key this worker fetched from another one (dask's log)."""
    return [(str(k), int(n)) for rec in getattr(dask_worker, "transfer_incoming_log", ())
            for k, n in rec["keys"].items()]


#: the dashboard groups (key_split) of every task a WW fit submits
_GROUPS = {"ww-init", "ww-load", "ww-link", "ww-diff", "ww-certify", "ww-coef", "ww-dual",
           "ww-save", "ww-resume", "ww-rebuild", "ww-restore", "ww-fingerprint", "ww-free"} | {
    f"ww-shuffle-{s}" for s in ("count", "split", "piece", "sizes", "bundle", "info")}


def _round_of(key):
    m = re.search(r"-r(\d+)-", key)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("layout", ["spread", "owner"])
def test_task_keys_schedule_and_only_weights_move(thread_client, data_dir, layout):
    X, y, K = _load(data_dir, "satimage.scale", 300)
    client = thread_client
    blocks = BlockSet.from_arrays(client, X, y, n_blocks=2)
    try:
        with (
            get_task_stream(client=client) as ts,
            pytest.warns(ConvergenceWarning, match="Weston-Watkins did not converge"),
        ):
            r = solve_ww(blocks, K, C=0.1, tol=1e-12, max_iter=2, n_bundles=4, layout=layout,
                         pair_sweeps=2, random_state=0)
    finally:
        blocks.release()
    keys = [str(t["key"]) for t in ts.data]
    # every key names its step: the dashboard never shows a bare "ww" group
    groups = {key_split(k) for k in keys}
    assert groups <= _GROUPS, groups - _GROUPS
    assert {"ww-init", "ww-link", "ww-certify", "ww-coef", "ww-free", "ww-shuffle-bundle"} <= groups
    link = re.compile(r"^ww-link-r(\d+)-s(\d+)-b(\d+)-b(\d+)-h(\d+)-[0-9a-f]{8}$")
    by_round = {}
    for k in keys:
        m = link.match(k)
        if m:
            t, s, a, b = (int(g) for g in m.groups()[:4])
            by_round.setdefault((t, s), set()).add((a, b))
    # two update rounds, each the 3 perfect matchings of the 1-factorization of 4 bundles
    expected = list(one_factorization(4))
    assert sorted(by_round) == [(t, s) for t in range(2) for s in range(3)]
    for (_, s), pairs in by_round.items():
        assert sorted(pairs) == expected[s]
    held = {w for ps in r.state["pieces"] for w, _ in ps}
    if len(held) > 1:  # a chain alternates 2 workers, pair_sweeps times
        assert any(re.match(r"^ww-link-r\d+-s\d+-b\d+-b\d+-h4-", k) for k in keys)
    # one certificate task per worker holding pieces and certified round
    certs = [k for k in keys if key_split(k) == "ww-certify"]
    assert sorted(_round_of(k) for k in certs) == sorted([0, 1] * len(held))
    # the history: rounds 0, 1 (update) and 2 (the evaluation round: the same iterate, no task)
    assert [h["round"] for h in r.history] == [0, 1, 2]
    for h in r.history[:2]:  # n_tasks: exactly the round's tasks (the setup counts in round 0)
        assert h["n_tasks"] == sum(_round_of(k) == h["round"] for k in keys) > 0
    last = r.history[2]
    assert last["n_tasks"] == last["bytes"] == 0 and last["primal"] == r.history[1]["primal"]
    assert r.n_iter == 2 and r.primal == r.history[1]["primal"]
    assert r.state["pair_sweeps"] == 2 and r.state["recoveries"] == 0
    # after the shuffle only weight blocks cross between workers: never rows, never duals
    fit_keys = set(keys)
    moved = [k for recs in client.run(_incoming).values() for k, _ in recs if k in fit_keys]
    assert moved, "a 4-bundle fit on 2 workers moves weight blocks"
    for k in moved:
        assert key_split(k) in {"ww-link", "ww-load", "ww-diff", "ww-shuffle-piece"}, k
    if len(held) > 1:
        assert sum(h["bytes"] for h in r.history) > 0
    if layout == "spread":  # no example ever left its worker
        assert r.state["shuffle_bytes"] == 0
        assert not [k for k in moved if "shuffle" in k]


def _pooled():
    from dasksvm.solvers.ww import _POOL

    return len(_POOL._free)


@pytest.mark.parametrize("ship_changes", [False, True])
def test_bytes_are_the_weight_blocks_that_crossed(process_client, data_dir, ship_changes):
    """``bytes_w`` of every round is what dask moved between the worker processes:
    the weight hands in its transfer logs (satimage's weights are dense, so a hand's
    bytes in memory, what dask logs, are its bytes on the wire)."""
    X, y, K = _load(data_dir, "satimage.scale", 300)
    client = process_client
    client.amm.stop()  # no replica dropped and fetched again while the fit runs
    blocks = BlockSet.from_arrays(client, X, y, n_blocks=2)
    try:
        with (
            get_task_stream(client=client) as ts,
            pytest.warns(ConvergenceWarning, match="Weston-Watkins did not converge"),
        ):
            r = solve_ww(blocks, K, C=0.1, tol=1e-12, max_iter=4, n_bundles=4, random_state=0,
                         ship_changes=ship_changes)
    finally:
        blocks.release()
        client.amm.start()
    assert len({w for ps in r.state["pieces"] for w, _ in ps}) == 2
    assert np.count_nonzero(r.coef) == r.coef.size
    fit_keys = {str(t["key"]) for t in ts.data}
    log = [(k, n) for recs in client.run(_incoming).values() for k, n in recs if k in fit_keys]
    assert {key_split(k) for k, _ in log} <= {"ww-link", "ww-load", "ww-diff"}
    # ship_changes: after round 0 a block moves as its changes from a version the reader
    # holds (ww-diff), never whole through a load: every worker cached every block's
    # final version in the last certificate
    later = {key_split(k) for k, _ in log if _round_of(k) >= 1}
    if ship_changes:
        assert "ww-diff" in later and "ww-load" not in later
    else:
        assert "ww-diff" not in later and "ww-load" in later
    for h in r.history[1:4]:  # round 0 starts from zero blocks (they travel as nothing)
        hands = [n for k, n in log if _round_of(k) == h["round"]]
        assert hands and h["bytes_w"] == sum(n - 64 for n in hands)  # 64: sizeof's overhead
        assert h["bytes"] == h["bytes_up"] > h["bytes_w"] and h["bytes_down"] == 0
    assert r.history[4]["bytes"] == 0
    # the fit's end empties every worker's pool of reusable arrays
    assert set(client.run(_pooled).values()) == {0}


def test_shipping_changes_gives_the_same_iterates_bit_for_bit(process_client, data_dir):
    """A block that moves as its changes from a version the reader holds (``ww-diff``)
    or not at all (the reader's cached copy) is rebuilt bit for bit: the fit is the same
    as when every read moves the whole hand (``ship_changes=False``, the default), and
    moves fewer bytes."""
    X, y, K = _load(data_dir, "satimage.scale", 300)
    runs = []
    for ship_changes in (True, False):
        blocks = BlockSet.from_arrays(process_client, X, y, n_blocks=2)
        try:
            with pytest.warns(ConvergenceWarning):
                runs.append(solve_ww(blocks, K, C=0.1, tol=1e-12, max_iter=4, n_bundles=4,
                                     random_state=0, ship_changes=ship_changes))
        finally:
            blocks.release()
    fast, full = runs
    assert len({w for ps in fast.state["pieces"] for w, _ in ps}) == 2
    np.testing.assert_array_equal(fast.coef, full.coef)
    assert [h["primal"] for h in fast.history] == [h["primal"] for h in full.history]
    assert [h["dual"] for h in fast.history] == [h["dual"] for h in full.history]
    assert sum(h["bytes_w"] for h in fast.history) < sum(h["bytes_w"] for h in full.history)


def test_wire_nbytes_is_what_a_hand_pickles_to():
    import pickle

    from dasksvm.solvers.ww import _DenseBlock, _Hand

    rng = np.random.default_rng(0)
    few = np.zeros((400, 6))
    few[rng.choice(400, 30, replace=False), 2] = 1.5  # travels as its non-zeros
    mid = rng.normal(size=(100, 6)) * (rng.random((100, 6)) < 0.6)  # travels dense
    csr = sp.random(6, 400, density=0.05, format="csr", random_state=1)
    for blocks in [(_DenseBlock(rng.normal(size=(50, 6))),), (_DenseBlock(few), csr),
                   (_DenseBlock(mid),), (_DenseBlock(np.zeros((300, 4))),)]:
        h = _Hand(blocks, "tcp://a", (1, 2))
        n = len(pickle.dumps(h, protocol=5))
        assert h.wire_nbytes() <= n <= h.wire_nbytes() + 1200
        back = pickle.loads(pickle.dumps(h))
        for a, b in zip(blocks, back.blocks, strict=True):
            np.testing.assert_array_equal(a.toarray() if sp.issparse(a) else a.a,
                                          b.toarray() if sp.issparse(b) else b.a)


def test_the_pool_reuses_only_arrays_nothing_else_refers_to():
    """A dense block from the pool gives its buffer back when it dies, unless a view of
    it is still alive (its values must not change under the view); the next array
    that fits reuses it (the smallest free one that does); ``_ww_free`` empties the
    pool, and an array taken before it is not kept when its block dies later."""
    import weakref

    from dasksvm.solvers.ww import _POOL, _DenseBlock, _w_store, _ww_free

    _POOL.clear()
    shape = (7, 3)
    old = _DenseBlock(np.zeros(shape))
    b = _w_store(old, None, np.ones(shape))
    ref = weakref.ref(b.a.base)
    del b
    assert ref() is not None  # dead block, its buffer kept by the pool
    c = _w_store(old, None, np.full(shape, 2.0))
    assert c.a.base is ref()
    np.testing.assert_array_equal(c.a, 2.0)
    view = c.a[1:]
    del c
    d = _w_store(old, None, np.full(shape, 3.0))
    assert d.a is not view.base
    np.testing.assert_array_equal(view, 2.0)  # not recycled under the live view
    assert _POOL.take((5, 5)).shape == (5, 5)  # an empty pool allocates
    small = _w_store(old, None, np.ones((2, 3)))
    assert small.a.base is not d.a.base
    del small
    assert _w_store(old, None, np.ones((1, 3))).a.base.size == 6  # the smallest that fits
    del d
    assert _POOL._free
    e = _w_store(old, None, np.ones(shape))
    assert _ww_free({}, {}) == 0 and not _POOL._free
    del e  # taken before the fit's end: not kept
    assert not _POOL._free


# ---------------------------------------------------------------------------------------
# the cluster: 1, 2, 3 workers; a lost worker; a lost state; a failed task; checkpoints
# ---------------------------------------------------------------------------------------


def _cluster(n_workers, processes):
    from distributed import Client, LocalCluster

    kwargs = {"host": "127.0.0.1"} if processes else {}
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                           dashboard_address="127.0.0.1:0", silence_logs=50, **kwargs)
    return cluster, Client(cluster, set_as_default=False)


def test_one_two_three_workers_reach_the_same_objective(data_dir):
    X, y, K = _load(data_dir, "satimage.scale", 600)
    C, tol = 0.1, 1e-4
    p_star = reference(X, y, K, C, ("satimage.scale", 600, C))
    out = {}
    for n_workers in (1, 2, 3):
        cluster, client = _cluster(n_workers, processes=False)
        try:
            blocks = BlockSet.from_arrays(client, X, y, n_blocks=3)
            out[n_workers] = solve_ww(blocks, K, C=C, tol=tol, n_bundles=4, random_state=0,
                                      return_dual=True)
            blocks.release()
        finally:
            client.close()
            cluster.close()
    for n_workers, r in out.items():
        assert r.converged and len({w for ps in r.state["pieces"] for w, _ in ps}) == n_workers
        P = _check_certificate(r, X, y, K, C, tol)
        assert abs(P - p_star) / p_star <= tol
    primals = [r.primal for r in out.values()]
    assert max(primals) - min(primals) <= tol * max(primals)
    assert sum(h["bytes_w"] for h in out[1].history) == 0  # one worker: no weight moves
    assert all(sum(h["bytes_w"] for h in out[n].history) > 0 for n in (2, 3))


def test_a_killed_worker_costs_nothing(data_dir):
    """A worker process dies (os._exit) at round 2; its nanny restarts it. The fit rebuilds
    the lost pieces and ends at the undisturbed fit's objective, certified."""
    X, y, K = _load(data_dir, "satimage.scale", 600)
    C, tol = 0.1, 1e-4
    cluster, client = _cluster(3, processes=True)
    killed = []

    def kill(rec):
        if rec["round"] == 2 and not killed:
            killed.append(blocks.workers[0])
            client.run(os._exit, 1, workers=killed, on_error="ignore")

    try:
        blocks = BlockSet.from_arrays(client, X, y, n_blocks=3)
        ref = solve_ww(blocks, K, C=C, tol=tol, n_bundles=4, random_state=0)
        r = solve_ww(blocks, K, C=C, tol=tol, n_bundles=4, random_state=0, callback=kill,
                     return_dual=True)
        blocks.release()
    finally:
        client.close()
        cluster.close()
    assert killed and ref.converged and r.converged
    assert ref.state["recoveries"] == 0 and r.state["recoveries"] >= 1
    assert killed[0] not in {w for ps in r.state["pieces"] for w, _ in ps}
    assert r.state["recovered"][-1]["reshuffled"]
    assert 0 < r.state["recovered"][-1]["kept"] < X.shape[0]
    assert r.state["shuffle_bytes"] == 0  # spread layout: no example moves, even re-shuffled
    _check_certificate(r, X, y, K, C, tol)
    assert abs(r.primal - ref.primal) <= tol * ref.primal


def _drop_fit_states(dask_worker):
    dask_worker.__dict__.get("_dasksvm_states", {}).clear()


def _piece_workers(dask_worker):
    """One entry (this worker) per piece of a WW fit this worker holds."""
    stores = dask_worker.__dict__.get("_dasksvm_states", {}).values()
    return [dask_worker.address for st in stores for k in st
            if isinstance(k, tuple) and len(k) == 3 and k[0] != "W"]


@pytest.mark.parametrize("layout", ["spread", "owner"])
def test_a_lost_state_on_a_live_worker_is_rebuilt(thread_client, data_dir, layout):
    """The stores of one worker vanish mid-fit (the worker stays): its pieces are rebuilt
    by a new shuffle, their duals restart from zero, W is recomputed; same optimum."""
    X, y, K = _load(data_dir, "pendigits.scale", 600)
    C = 0.02
    p_star = reference(X, y, K, C, ("pendigits.scale", 600, C))
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)
    done = []

    before = []

    def drop(rec):
        if rec["round"] == 3 and not done:
            done.append(rec["nnz_alpha"])
            before.extend(w for ps in thread_client.run(_piece_workers).values() for w in ps)
            thread_client.run(_drop_fit_states, workers=[blocks.workers[1]])

    try:
        r = solve_ww(blocks, K, C=C, tol=1e-4, n_bundles=4, random_state=0, callback=drop,
                     layout=layout, return_dual=True)
    finally:
        blocks.release()
    assert done and r.converged and r.state["recoveries"] == 1
    (rec,) = r.state["recovered"]
    assert rec["round"] == 4 and rec["reshuffled"] and rec["rows"] == X.shape[0]
    lost = sum(n for ps in r.state["pieces"] for w, n in ps if w == blocks.workers[1])
    assert 0 < rec["kept"] == X.shape[0] - lost  # that worker's rows restarted from zero
    if layout == "owner":  # the bundles stay with their owners
        assert sorted(w for ps in r.state["pieces"] for w, _ in ps) == sorted(before)
    P = _check_certificate(r, X, y, K, C, 1e-4)
    assert abs(P - p_star) / p_star <= 1e-4 + 1e-7


_FLAKY = {"after": None}


def _flaky_link(store, spec, sources):
    """``_ww_link``, failing once (StateLost) after ``_FLAKY["after"]`` more links ran."""
    from dasksvm.parallel.engine import StateLost

    if _FLAKY["after"] is not None:
        if _FLAKY["after"] == 0:
            _FLAKY["after"] = None
            raise StateLost("a task that found no state (test)")
        _FLAKY["after"] -= 1
    return _real_link(store, spec, sources)


def test_a_failed_round_is_rolled_back_and_run_again(thread_client, data_dir, monkeypatch):
    """A link fails mid-round (no worker lost): the round's steps are dropped, W is
    recomputed, the round runs again: the same iterates as a fit that never failed."""
    import dasksvm.solvers.ww as ww_module

    X, y, K = _load(data_dir, "satimage.scale", 300)
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)

    def fail_in_round_3(rec):
        if rec["round"] == 2:
            _FLAKY["after"] = 5

    try:
        ref = solve_ww(blocks, K, C=0.1, tol=1e-3, n_bundles=4, random_state=0)
        monkeypatch.setattr(ww_module, "_ww_link", _flaky_link)
        r = solve_ww(blocks, K, C=0.1, tol=1e-3, n_bundles=4, random_state=0,
                     callback=fail_in_round_3)
    finally:
        blocks.release()
        _FLAKY["after"] = None
    assert r.state["recoveries"] == 1 and r.converged and r.n_iter == ref.n_iter
    for a, b in zip(r.history, ref.history, strict=True):
        assert a["primal"] == pytest.approx(b["primal"], rel=1e-9)
        assert a["dual"] == pytest.approx(b["dual"], rel=1e-9)
    assert r.history[3]["recoveries"] == 1 and r.history[2]["recoveries"] == 0
    (rec,) = r.state["recovered"]  # no worker lost: every piece stays, every dual kept
    assert rec == {"round": 3, "rows": X.shape[0], "kept": X.shape[0], "reshuffled": False}


@pytest.mark.parametrize("sparse", [False, True])
def test_checkpoint_and_resume_continue_the_fit(thread_client, data_dir, tmp_path, sparse):
    """Stop after 5 rounds with a checkpoint every 2; resume: the same rounds, the same
    certified objective as the fit that never stopped."""
    X, y, K = _load(data_dir, "satimage.scale", 300)
    path = tmp_path / "ww.ckpt"
    kw = {"C": 0.1, "tol": 1e-3, "n_bundles": 4, "random_state": 0, "sparse_coef": sparse}
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)
    try:
        full = solve_ww(blocks, K, **kw)
        with pytest.warns(ConvergenceWarning, match="Weston-Watkins did not converge"):
            part = solve_ww(blocks, K, max_iter=5, checkpoint=path, checkpoint_every=2, **kw)
        arrays, meta = read_checkpoint(path)
        r = solve("ww", blocks, K, resume=True, checkpoint=path, checkpoint_every=2,
                  return_dual=True, **kw)
        with pytest.raises(ValueError, match="another problem"):
            solve("ww", blocks, K, resume=True, checkpoint=path, **dict(kw, C=0.2))
    finally:
        blocks.release()
    coef = ["model__coef_indptr", "model__coef_indices", "model__coef_data"] if sparse \
        else ["model__coef"]
    assert meta["round"] == 5 and {"alpha_indptr", "alpha_indices", "alpha_data",
                                   "ws_indptr", "ws_indices", *coef} <= {
        n.removeprefix("state__") for n in arrays}
    assert sp.issparse(r.coef) == sparse
    assert [h["round"] for h in part.history] == list(range(6))
    # the history goes on from the checkpoint's rounds 0-4 (the file is labeled round 5,
    # the next round to run: the evaluation round 5 runs again as an update round); from
    # there the resumed rounds are exactly those of the fit that never stopped (same
    # duals, working sets, weights, seeds by position)
    assert r.converged and r.n_iter == full.n_iter
    assert [h["round"] for h in r.history] == list(range(r.n_iter + 1))
    assert r.history[:5] == part.history[:5]
    for a, b in zip(r.history[5:], full.history[5:], strict=True):
        assert (a["primal"], a["dual"], a["nnz_alpha"]) == (b["primal"], b["dual"],
                                                           b["nnz_alpha"])
    _check_certificate(r, X, y, K, 0.1, 1e-3)


@pytest.mark.parametrize("layout", ["spread", "owner"])
def test_shuffle_groups_rows_by_class(thread_client, data_dir, layout):
    X, y, K = _load(data_dir, "satimage.scale", 300)
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=3)
    offsets = np.concatenate([[0], np.cumsum(blocks.n_rows)])
    row_worker = np.repeat(blocks.workers, blocks.n_rows)
    try:
        bs = shuffle_by_class(blocks, K, 4, layout=layout, key_prefix="wwtest-shuffle")
        pieces = [[thread_client.gather(pc.future) for pc in ps] for ps in bs.pieces]
    finally:
        blocks.release()
    assert offsets[-1] == X.shape[0]
    seen = []
    counts = np.bincount(y.astype(int), minlength=K)
    for p, ps in enumerate(pieces):
        if layout == "owner":
            assert len(ps) == 1
        rows_p = []
        for pc, b in zip(bs.pieces[p], ps, strict=True):
            np.testing.assert_array_equal(b.classes, bs.classes[p])
            np.testing.assert_array_equal(b.classes[b.label], y[b.rows])
            np.testing.assert_allclose(b.X.toarray(), X[b.rows].toarray())
            Xr = X[b.rows]
            np.testing.assert_allclose(b.sqnorm, np.asarray(Xr.multiply(Xr).sum(1)).ravel())
            np.testing.assert_array_equal(b.cols[b.local_indices], b.X.indices)
            assert b.n_rows == pc.n_rows
            if layout == "spread":  # the rows never left their worker
                assert set(row_worker[b.rows]) <= {pc.worker}
            rows_p.append(b.rows)
        rows_p = np.concatenate(rows_p)
        assert len(rows_p) == bs.n_rows[p] == counts[bs.classes[p]].sum()
        seen.append(rows_p)
    assert sorted(np.concatenate(seen)) == list(range(X.shape[0]))
    assert sorted(np.concatenate(bs.classes)) == list(range(K))
    assert (bs.nbytes_moved == 0) == (layout == "spread" or len(set(blocks.workers)) == 1)
    bs.release()


def test_assign_and_place_bundles_balance():
    counts = np.array([50, 40, 30, 20, 10, 5, 5, 0])
    groups = assign_bundles(counts, 3)
    assert sorted(np.concatenate(groups)) == list(range(8))
    loads = [counts[g].sum() for g in groups]
    assert max(loads) - min(loads) <= 10
    assert all(len(g) for g in groups)
    with pytest.raises(ValueError, match="n_bundles must be in"):
        assign_bundles(counts, 9)
    where = place_bundles([10, 10, 10, 10], ["a", "b"])
    assert sorted(where) == ["a", "a", "b", "b"]
    assert place_bundles([100, 1, 1, 1], ["a", "b"]).count("a") == 1


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_bundles": 4}, "n_bundles=4 is larger than n_classes=3"),
        ({"n_bundles": 0}, "n_bundles must be >= 1, got 0; or None"),
        ({"C": 0.0}, "C must be > 0"),
        ({"tol": -1.0}, "tol must be >= 0"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"local_passes": 0}, "local_passes must be >= 1"),
        ({"local_passes": 1.5}, "local_passes must be a finite int"),
        ({"pair_sweeps": 0}, 'pair_sweeps must be >= 1, got 0; or "auto"'),
        ({"layout": "rows"}, "layout must be one of"),
        ({"sparse_coef": 1}, "sparse_coef must be True or False"),
        ({"exact_rows": "yes"}, "exact_rows must be True or False"),
    ],
)
def test_bad_parameters(thread_client, kwargs, match):
    X = np.eye(6)
    y = np.array([0, 1, 2, 0, 1, 2], dtype=float)
    blocks = BlockSet.from_arrays(thread_client, X, y, n_blocks=2)
    try:
        with pytest.raises(ValueError, match=match):
            solve_ww(blocks, 3, **kwargs)
    finally:
        blocks.release()


def test_bad_labels(thread_client):
    X = np.eye(4)
    blocks = BlockSet.from_arrays(thread_client, X, np.array([0, 1, 5, 1.0]), n_blocks=2)
    try:
        with pytest.raises(ValueError, match=r"label 5.0 is not an integer in \[0, 3\)"):
            solve_ww(blocks, 3)
    finally:
        blocks.release()
    blocks = BlockSet.from_arrays(thread_client, X, np.array([0, 1, 0.5, 1.0]), n_blocks=1)
    try:
        with pytest.raises(ValueError, match="encode the labels"):
            solve_ww(blocks, 3)
    finally:
        blocks.release()


# ---------------------------------------------------------------------------------------
# kernels against slow numpy versions
# ---------------------------------------------------------------------------------------


def _kernel_case(seed=0, n=12, d=5, K=4, C=0.7):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.7))
    X.indices = X.indices.astype(np.int32)
    y = rng.integers(0, K, n)
    return X, y, K, C


def _visit(X, y, K, C, Wt, seg, i, exact, ws=None):
    n = X.shape[0]
    sq = np.asarray(X.multiply(X).sum(1)).ravel()
    lab = y.astype(np.int64)
    use_ws = ws is not None
    ws = ws if use_ws else (np.zeros(n + 1, np.int64), np.zeros(0, np.int32))
    return ww_cd_pass(X.indptr, X.indices, X.data, sq, lab, np.zeros(n, np.int64),
                      np.full(n, K, np.int64), lab, np.full(n, C), Wt, *seg,
                      np.array([i], np.int64), 0, 1, exact, use_ws, *ws)


def test_cd_pass_equals_sequential_numpy_steps():
    X, y, K, C = _kernel_case()
    n, d = X.shape
    Xd = X.toarray()
    Wt = np.zeros((d, K))
    seg = (np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0))
    Wref = np.zeros((K, d))
    A = np.zeros((n, K))
    order = np.random.default_rng(1).permutation(np.tile(np.arange(n), 3))
    for i in order:
        r = _visit(X, y, K, C, Wt, seg, i, False)
        seg = r[:3]
        x = Xd[i]
        for c in range(K):  # formulations.md 2a, one variable at a time
            if c == y[i]:
                continue
            if x @ x == 0:  # constant gradient 1: straight to the bound
                A[i, c] = C
                continue
            g = 1.0 - (Wref[y[i]] - Wref[c]) @ x
            a = min(max(A[i, c] + g / (2 * (x @ x)), 0.0), C)
            Wref[y[i]] += (a - A[i, c]) * x
            Wref[c] -= (a - A[i, c]) * x
            A[i, c] = a
    np.testing.assert_allclose(Wt.T, Wref, atol=1e-12)
    got = sp.csr_matrix((seg[2], seg[1], seg[0]), shape=(n, K)).toarray()
    np.testing.assert_allclose(got, A, atol=1e-12)


def _assert_row_kkt(Wt, x, label, alpha_row, C, targets):
    """Projected gradient zero for the row's variables ``targets``: the row block is solved."""
    for c in targets:
        g = 1.0 - (Wt[:, label] - Wt[:, c]) @ x
        a = alpha_row[c]
        if a <= 0.0:
            assert g <= 1e-9
        elif a >= C:
            assert g >= -1e-9
        else:
            assert abs(g) <= 1e-9


@pytest.mark.parametrize("exact", [False, True])
def test_working_set_restricts_the_steps(exact):
    """With a working set a visit changes only the set's variables and the row's non-zero
    ones, and takes exactly the steps of the full visit restricted to them."""
    X, y, K, C = _kernel_case(seed=6, K=6, C=0.5)
    n, d = X.shape
    rng = np.random.default_rng(7)
    Wt = np.zeros((d, K))
    seg = (np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0))
    for i in range(n):  # some non-zero duals first
        seg = _visit(X, y, K, C, Wt, seg, i, exact)[:3]
    # a random working set per row (never the row's own class)
    mask = rng.random((n, K)) < 0.4
    mask[np.arange(n), y] = False
    P = sp.csr_matrix(mask)
    ws = (P.indptr.astype(np.int64), P.indices.astype(np.int32))
    for i in rng.permutation(n):
        before = sp.csr_matrix((seg[2], seg[1], seg[0]), shape=(n, K)).toarray()
        allowed = mask[i] | (before[i] != 0)
        seg = _visit(X, y, K, C, Wt, seg, i, exact, ws)[:3]
        after = sp.csr_matrix((seg[2], seg[1], seg[0]), shape=(n, K)).toarray()
        changed = after[i] != before[i]
        assert not (changed & ~allowed).any()
        np.testing.assert_array_equal(np.delete(after, i, 0), np.delete(before, i, 0))
        # W stays W(alpha)
        np.testing.assert_allclose(
            w_of_alpha(X, y.astype(float), after), Wt.T, atol=1e-12)
        if exact and (X[i].multiply(X[i]).sum() > 0):
            # the row's variables in the set are optimal given the others (KKT)
            _assert_row_kkt(Wt, X[i].toarray().ravel(), y[i], after[i], C,
                            np.flatnonzero(allowed))


def test_hinge_screen_matches_numpy():
    X, y, K, _ = _kernel_case(seed=8, K=5)
    Wt = np.random.default_rng(9).normal(size=(X.shape[1], K))
    lab = y.astype(np.int64)
    own = ww_own_scores(X.indptr, X.indices, X.data, lab, Wt)
    M = X.toarray() @ Wt
    H = 1 - own[:, None] + M
    H[np.arange(len(y)), y] = -np.inf
    for margin in (0.0, 0.3):
        h, ip, ix = ww_hinge_screen(X.indptr, X.indices, X.data, own, lab, Wt, True, 10, margin)
        np.testing.assert_allclose(h, np.maximum(H, 0).sum(1))
        got = sp.csr_matrix((np.ones(len(ix)), ix - 10, ip), shape=(len(y), K)).toarray()
        np.testing.assert_array_equal(got != 0, H > -margin)


def test_exact_rows_solve_the_row_block():
    X, y, K, C = _kernel_case(seed=2, K=7, C=0.3)
    n, d = X.shape
    Xd = X.toarray()
    Wt = np.zeros((d, K))
    seg = (np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0))
    for i in np.random.default_rng(3).permutation(np.tile(np.arange(n), 2)):
        r = _visit(X, y, K, C, Wt, seg, i, True)
        seg = r[:3]
        alpha = sp.csr_matrix((seg[2], seg[1], seg[0]), shape=(n, K)).toarray()
        x = Xd[i]
        if x @ x == 0:
            continue
        # KKT of the row block: the projected gradient of every variable is zero
        _assert_row_kkt(Wt, x, y[i], alpha[i], C, [c for c in range(K) if c != y[i]])
    # W stays W(alpha)
    W = w_of_alpha(X, y.astype(float), sp.csr_matrix((seg[2], seg[1], seg[0]),
                                                     shape=(n, K)).toarray())
    np.testing.assert_allclose(W, Wt.T, atol=1e-12)


def test_hinge_kernels_match_numpy():
    X, y, K, C = _kernel_case(seed=4, K=5)
    Wt = np.random.default_rng(5).normal(size=(X.shape[1], K))
    lab = y.astype(np.int64)
    own = ww_own_scores(X.indptr, X.indices, X.data, lab, Wt)
    h = ww_hinge_sums(X.indptr, X.indices, X.data, own, lab, Wt, True)
    M = X.toarray() @ Wt
    np.testing.assert_allclose(own, M[np.arange(len(y)), y])
    H = np.maximum(0, 1 - own[:, None] + M)
    H[np.arange(len(y)), y] = 0
    np.testing.assert_allclose(h, H.sum(1))
    assert ww_primal(Wt.T, X, y, C) == pytest.approx(0.5 * (Wt**2).sum() + C * h.sum())
