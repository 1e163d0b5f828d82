"""The trust-region Newton solver: kernels, LIBLINEAR's primal optimum, the certificate,
keys, the warning, checkpoints and recovery of its state machine."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC as SkLinearSVC

from dasksvm import ConvergenceWarning, LinearSVC
from dasksvm.kernels.newton import hessian_vector, loss_gradient
from dasksvm.parallel import BlockSet, to_dense
from dasksvm.parallel.blocks import make_block
from dasksvm.parallel.checkpoint import read_checkpoint
from dasksvm.parallel.reduce import add_partials
from dasksvm.solvers import solve, solve_newton
from dasksvm.solvers.newton import Newton

from ._reference import binary_primal, load_xz

# (file, C): LIBLINEAR takes 7-9 Newton iterations on them; the fits stay at 25-50 rounds
DATASETS = {"a9a": ("a9a.xz", 0.001), "mr_tfidf": ("mr_tfidf.train.xz", 0.1)}
TOL = 1e-9
_CACHE = {}


def _data(data_dir, name):
    """(X, y in {-1, +1}, C, P_ref): LIBLINEAR's primal TRON at a tiny tol is the reference."""
    if name not in _CACHE:
        path, C = DATASETS[name]
        X, y = load_xz(data_dir / path)
        y = np.where(y == np.unique(y)[1], 1.0, -1.0)
        ref = SkLinearSVC(C=C, loss="squared_hinge", dual=False, tol=1e-12, max_iter=1000)
        ref.fit(X, y)
        P_ref = binary_primal(X, y, ref.coef_.ravel(), ref.intercept_[0], C, "squared_hinge")
        _CACHE[name] = (X, y, C, P_ref)
    return _CACHE[name]


def _primal(X, y, coef, C):
    """P of a coef over the block columns (the last one the intercept column, scaling 1)."""
    coef = to_dense(coef)
    return binary_primal(X, y, coef[:-1], coef[-1], C, "squared_hinge")


# --- kernels ---------------------------------------------------------------------------


def test_kernels_match_scipy():
    rng = np.random.RandomState(3)
    X = sp.random(60, 15, density=0.3, format="csr", random_state=rng)
    y = np.where(rng.rand(60) > 0.5, 1.0, -1.0)
    c = rng.rand(60) * 2.0
    c[:5] = 0.0  # rows of weight 0 take no part
    w = rng.randn(15) * 0.5
    v = rng.randn(15)
    loss, b_sum, u, diag, coef = loss_gradient(X.indptr, X.indices, X.data, y, c, w, True)
    m = 1.0 - y * (X @ w)
    act = (m > 0) & (c > 0)
    beta = np.where(act, 2.0 * c * m, 0.0)
    assert loss == pytest.approx(np.sum(c * np.maximum(m, 0) ** 2 * (c > 0)), rel=1e-12)
    assert b_sum == pytest.approx(beta.sum(), rel=1e-12)
    np.testing.assert_allclose(u, X.T @ (beta * y), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(coef, np.where(act, 2.0 * c, 0.0))
    D = sp.diags(coef)
    np.testing.assert_allclose(diag, (X.T @ D @ X).diagonal(), rtol=1e-12, atol=1e-14)
    rows = np.flatnonzero(coef)
    hv = hessian_vector(X.indptr, X.indices, X.data, rows, coef[rows], v)
    np.testing.assert_allclose(hv, X.T @ (D @ (X @ v)), rtol=1e-12, atol=1e-14)
    # the gradient and Hessian of f are these plus w and v: a finite-difference check
    f = lambda x: 0.5 * x @ x + np.sum(c * np.maximum(1.0 - y * (X @ x), 0.0) ** 2)
    e = 1e-6
    g_fd = np.array([(f(w + e * ej) - f(w - e * ej)) / (2 * e) for ej in np.eye(15)])
    np.testing.assert_allclose(w - u, g_fd, rtol=1e-6, atol=1e-6)
    _, _, _, empty, _ = loss_gradient(X.indptr, X.indices, X.data, y, c, w, False)
    assert empty.shape == (0,)


# --- against LIBLINEAR's primal solver ---------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("n_blocks", [1, 2, 8])
def test_matches_liblinear_primal(process_client, data_dir, name, n_blocks):
    X, y, C, P_ref = _data(data_dir, name)
    blocks = BlockSet.from_arrays(process_client, X, y, n_blocks=n_blocks, intercept_scaling=1.0)
    try:
        res = solve_newton(blocks, C=C, tol=TOL, max_iter=1000)
    finally:
        blocks.release()
    P = _primal(X, y, res.coef, C)
    assert res.converged and res.rel_gap <= TOL
    assert P == pytest.approx(res.primal, rel=1e-10)  # the record is for the returned coef
    assert abs(P - P_ref) / P_ref <= 1e-6
    # the dual is a lower bound of P* <= P_ref; P - P* <= P - D
    assert res.dual <= P_ref * (1 + 1e-12)
    assert P - P_ref <= res.gap + 1e-12 * P_ref
    hist = res.history
    assert len(hist) == res.n_iter + 1
    for rec in hist:
        assert {"primal", "dual", "gap", "rel_gap", "newton_iter", "cg_iter"} <= set(rec)
        assert rec["gap"] == pytest.approx(rec["primal"] - rec["dual"])
        assert rec["dual"] <= P_ref * (1 + 1e-12)
    # TRON accepts decreases only; the dual bound never falls
    assert all(b["primal"] <= a["primal"] for a, b in itertools.pairwise(hist))
    assert all(b["dual"] >= a["dual"] for a, b in itertools.pairwise(hist))
    # a Newton method: a few iterations (LIBLINEAR needs 7-10 here), each one evaluation
    # round plus its CG rounds; a gradient method would need hundreds
    evals = sum(r["round_kind"] == "f" for r in hist)
    assert res.state["newton_iter"] <= 20 and evals <= 30
    assert res.state["cg_iter"] + evals == len(hist)
    # one d-vector down per worker, one (two with the preconditioner) up per worker
    d8 = 8 * (X.shape[1] + 1)
    n_workers = len(set(blocks.workers))
    hv = [r for r in hist if r["round_kind"] == "hv"]
    assert all(r["bytes_down"] <= n_workers * (d8 + 64) for r in hist)
    assert all(r["bytes_up"] <= n_workers * d8 for r in hv)


def test_estimator_solver_newton(process_client, data_dir):
    X, y, C, P_ref = _data(data_dir, "mr_tfidf")
    model = LinearSVC(C=C, solver="newton", tol=TOL, client=process_client, random_state=0)
    model.fit(X, y)
    assert model.converged_
    P = binary_primal(X, y, model.coef_.ravel(), model.intercept_[0], C, "squared_hinge")
    assert abs(P - P_ref) / P_ref <= 1e-6
    assert {"primal", "dual", "gap"} <= set(model.history_[-1])
    with pytest.raises(ValueError, match="squared_hinge"):
        LinearSVC(C=C, solver="newton", loss="hinge", client=process_client).fit(X, y)


# --- the engine's side: warning, keys, bad parameters, checkpoints ----------------------


@pytest.fixture(scope="module")
def small(process_client, data_dir):
    X, y, C, _ = _data(data_dir, "mr_tfidf")
    blocks = BlockSet.from_arrays(process_client, X, y, n_blocks=2, intercept_scaling=1.0)
    yield blocks, C
    blocks.release()


def test_warning_keys_and_bad_parameters(process_client, small):
    from dask.utils import key_split
    from distributed import get_task_stream

    blocks, C = small
    expected = "trust-region Newton did not converge: max_iter=4"
    with get_task_stream(process_client) as ts, pytest.warns(ConvergenceWarning, match=expected):
        res = solve("newton", blocks, C=C, tol=1e-12, max_iter=4)
    assert not res.converged and res.n_iter == 4 and len(res.history) == 5
    assert [r["round_kind"] for r in res.history][:2] == ["f", "hv"]
    keys = [t["key"] for t in ts.data]
    assert {key_split(k) for k in keys} == {"newton-init", "newton-local"}
    n_workers = len(set(blocks.workers))
    for r in range(5):
        local = [k for k in keys if k.startswith(f"newton-local-r{r}-")]
        assert len(local) == n_workers
    with pytest.raises(ValueError, match="newton.*squared_hinge only"):
        solve("newton", blocks, C=C, loss="hinge")
    with pytest.raises(ValueError, match="cg_tol must be"):
        solve("newton", blocks, C=C, cg_tol=1.0)
    with pytest.raises(TypeError, match="takes no parameter"):
        solve("newton", blocks, C=C, local_passes=2.0)


def test_resume_from_a_checkpoint_continues_the_same_run(small, tmp_path):
    blocks, C = small
    path = tmp_path / "newton.ckpt"
    full = solve("newton", blocks, C=C, tol=TOL, max_iter=1000)
    with pytest.warns(ConvergenceWarning):
        solve("newton", blocks, C=C, tol=TOL, max_iter=7, checkpoint=path, checkpoint_every=3)
    _, meta = read_checkpoint(path)
    assert meta["round"] == 7 and meta["problem"]["solver"] == "newton"
    more = solve("newton", blocks, C=C, tol=TOL, max_iter=1000, checkpoint=path, resume=True)
    # the resumed fit is the uninterrupted one, round for round (the CG state and the
    # workers' active sets were saved mid-iteration)
    assert more.converged and more.n_iter == full.n_iter
    assert [r["round"] for r in more.history] == list(range(full.n_iter + 1))
    np.testing.assert_allclose([r["primal"] for r in more.history],
                               [r["primal"] for r in full.history], rtol=1e-13)
    np.testing.assert_allclose(to_dense(more.coef), to_dense(full.coef), rtol=1e-12,
                               atol=1e-15)
    with pytest.raises(ValueError, match="another problem"):
        solve("newton", blocks, C=C, preconditioner=False, checkpoint=path, resume=True)


# --- the state machine by hand: recovery restarts the iteration, same optimum -------------


def _drive(machine, blocks, rounds, restore_at=()):
    """Run ``machine`` over in-process blocks as the engine does (settle, local, sum, step,
    advance); at the rounds in ``restore_at`` drop every state and ``restore`` first."""
    states = [machine.init(b, None) for b in blocks]
    acceptance = None
    for t in range(rounds):
        if t in restore_at:
            saved = [machine.save(s) for s in states]
            states = [machine.init(b, sv) for b, sv in zip(blocks, saved, strict=True)]
            for s in states:
                machine.settle(s, None)
            machine.restore(None)
            acceptance = None
        msg = machine.message()
        for s in states:
            machine.settle(s, acceptance)
        parts = [machine.local(b, s, msg, 0, True) for b, s in zip(blocks, states, strict=True)]
        total = parts[0]
        for p in parts[1:]:
            total = add_partials(total, p)
        rec = machine.step(total, t, True)
        if rec["primal"] - rec["dual"] <= 1e-10 * rec["primal"]:
            return rec, t
        acceptance = machine.advance()
    raise AssertionError("no convergence")


@pytest.mark.parametrize("preconditioner", [True, False])
def test_state_machine_recovery_and_plain_tron(preconditioner):
    rng = np.random.RandomState(0)
    X = sp.random(400, 30, density=0.2, format="csr", random_state=rng)
    y = np.where(X @ rng.randn(30) + 0.1 * rng.randn(400) > 0, 1.0, -1.0)
    weight = rng.rand(400) + 0.5
    blocks = [make_block(X[k::3], y[k::3], weight[k::3], k, intercept_scaling=1.0)
              for k in range(3)]
    Xb = sp.vstack([b.X for b in blocks], format="csr")
    yb = np.concatenate([b.y for b in blocks])
    cb = 2.0 * np.concatenate([b.weight for b in blocks])
    ref = SkLinearSVC(C=2.0, dual=False, tol=1e-12, max_iter=1000, fit_intercept=False)
    ref.fit(Xb, yb, sample_weight=cb / 2.0)

    def P(w):
        return 0.5 * w @ w + np.sum(cb * np.maximum(0.0, 1.0 - yb * (Xb @ w)) ** 2)

    P_ref = P(ref.coef_.ravel())
    m = Newton(31, C=2.0, cg_tol=0.1, preconditioner=preconditioner)
    rec, t = _drive(m, blocks, 200)
    assert rec["primal"] == pytest.approx(P(m.coef()), rel=1e-12)
    assert abs(rec["primal"] - P_ref) / P_ref <= 1e-8
    # states lost after the first Newton iteration and again in a later CG: same optimum
    m2 = Newton(31, C=2.0, cg_tol=0.1, preconditioner=preconditioner)
    rec2, t2 = _drive(m2, blocks, 200, restore_at=(3, 8, 9))
    assert abs(rec2["primal"] - P_ref) / P_ref <= 1e-8
    assert t2 > t  # the restarted iterations cost rounds
    # the model arrays round-trip
    m3 = Newton(31, C=2.0, cg_tol=0.1, preconditioner=preconditioner)
    m3.load_model_arrays(m2.model_arrays())
    np.testing.assert_array_equal(m3.coef(), m2.tron.w)
    with pytest.raises(ValueError, match="checkpoint array 'w'"):
        m3.load_model_arrays({**m2.model_arrays(), "w": np.zeros(3)})


def test_a_hessian_product_without_an_active_set_is_an_error():
    block = make_block(sp.eye(4, format="csr"), np.ones(4), None, 0)
    m = Newton(4, C=1.0, cg_tol=0.1, preconditioner=True)
    st = m.init(block, None)
    with pytest.raises(RuntimeError, match="before any evaluation"):
        m.local(block, st, (1, np.ones(4)), 0, True)
    m.local(block, st, (0, np.zeros(4)), 0, True)
    m.settle(st, True)
    assert st.rows.tolist() == [0, 1, 2, 3]
