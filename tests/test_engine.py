"""The round engine: keys, counts, stopping, callback, events, seeds, ring, checkpoints."""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from dask.utils import key_split

from dasksvm import ConvergenceWarning
from dasksvm.parallel import BlockSet
from dasksvm.parallel.checkpoint import FORMAT, read_checkpoint, write_checkpoint
from dasksvm.parallel.client import FIT_SEND_INTERVAL, prompt_sends
from dasksvm.parallel.engine import (
    PROGRESS_TOPIC,
    AllBlocks,
    Engine,
    Machine,
    Ring,
    wire_nbytes,
)
from dasksvm.parallel.keys import task_key
from dasksvm.parallel.seeds import Seeds


class Halving(Machine):
    """A toy machine: the gap halves every round; each block sends (its row count, its
    index, the seed it got); the model is a vector of ``width`` floats."""

    name = "halving"
    prefix = "toy"

    def __init__(self, width=1000, n_blocks=1):
        self.x = np.zeros(width)
        self.gap = 1.0
        self.seen = []
        self.n_blocks = n_blocks

    def init(self, block, saved):
        return {"visits": 0}

    def local(self, block, state, message, seed, update, carry=None):
        state["visits"] += 1
        onehot = np.zeros(self.n_blocks)
        onehot[block.index] = seed
        return float(block.n_rows), onehot

    def message(self, blocks=None):
        return self.x

    def step(self, total, round, update):
        self.seen.append(total)
        return {"primal": 1.0, "dual": 1.0 - self.gap}

    def advance(self):
        self.gap /= 2
        return True

    def coef(self):
        return self.x


def _blocks(client, n_rows=40, n_blocks=4, d=3):
    rng = np.random.RandomState(0)
    X = sp.random(n_rows, d, density=0.5, format="csr", random_state=rng)
    y = np.where(rng.rand(n_rows) > 0.5, 1.0, -1.0)
    return BlockSet.from_arrays(client, X, y, n_blocks=n_blocks, name="toy-data")


def test_task_keys_name_the_step():
    k = task_key("cocoa", "local", "deadbeef", round=12, where="w3")
    assert k == "cocoa-local-r12-w3-deadbeef" and key_split(k) == "cocoa-local"
    k = task_key("ww", "pair-link", "0a1b2c3d", round=3, where=["b1", "b6"], attempt=2)
    assert key_split(k) == "ww-pair-link" and k.endswith("-a2-0a1b2c3d")
    with pytest.raises(ValueError, match="lowercase letters"):
        task_key("ww", "r3", "deadbeef")


def test_seeds_depend_only_on_position():
    a, b = Seeds(7), Seeds(7)
    assert a.seed(3, 1) == b.seed(3, 1)
    assert len({a.seed(t, k) for t in range(10) for k in range(10)}) == 100
    assert Seeds(8).seed(3, 1) != a.seed(3, 1)
    assert 0 <= a.seed(0, 0) < 2**31
    assert Seeds(None).entropy != Seeds(None).entropy
    with pytest.raises(ValueError, match="random_state"):
        Seeds("x")


def test_wire_nbytes_counts_buffers():
    X = sp.random(5, 4, density=0.5, format="csr")
    assert wire_nbytes((np.zeros(10), 1.0, None)) == 88
    assert wire_nbytes(X) == X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def test_one_task_per_worker_keys_and_counts(client):
    from distributed import get_task_stream

    blocks = _blocks(client)
    machine = Halving(n_blocks=4)
    n_workers = len(set(blocks.workers))
    with get_task_stream(client) as ts:
        eng = Engine(blocks, machine, tol=1e-2, max_iter=50, random_state=5)
        run = eng.run()
    assert run.converged and run.n_iter == 7  # gap 2^-7 <= 1e-2
    groups = {key_split(t["key"]) for t in ts.data}
    assert groups == {"toy-init", "toy-local"}  # Halving exports nothing
    for r in range(run.n_iter + 1):
        local = [t["key"] for t in ts.data if f"-local-r{r}-" in t["key"]]
        assert len(local) == n_workers
    for rec in run.history:
        assert rec["n_tasks"] == n_workers
        # round 0 sends x whole, later rounds its (empty) change; 16 bytes of versions
        sent = machine.x.nbytes if rec["round"] == 0 else 0
        assert rec["bytes_down"] == n_workers * (sent + 16)
        assert rec["bytes_up"] == n_workers * (8 + 4 * 8)  # one summed partial per worker
        assert rec["bytes"] == rec["bytes_down"] + rec["bytes_up"]
    # the partials were summed: every block's rows once, every block's own seed
    rows, seeds = machine.seen[0]
    assert rows == 40.0
    np.testing.assert_array_equal(seeds, [eng.seeds.seed(0, k) for k in range(4)])
    blocks.release()


def test_max_iter_evaluation_round_and_warning(thread_client):
    blocks = _blocks(thread_client, n_blocks=2)
    with pytest.warns(ConvergenceWarning, match="halving did not converge: max_iter=3"):
        run = Engine(blocks, Halving(n_blocks=2), tol=1e-9, max_iter=3).run()
    assert not run.converged and run.n_iter == 3 and len(run.history) == 4
    assert [r["round"] for r in run.history] == [0, 1, 2, 3]
    # the evaluation round certifies the model after the last update
    assert run.history[-1]["rel_gap"] == pytest.approx(2.0**-3)
    blocks.release()


def test_callback_sees_every_round_and_stops_cleanly(thread_client):
    blocks = _blocks(thread_client, n_blocks=2)
    seen = []

    def callback(rec):
        seen.append(rec["round"])
        return rec["round"] < 2

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        run = Engine(blocks, Halving(n_blocks=2), tol=1e-9, max_iter=100,
                     callback=callback).run()
    assert seen == [0, 1, 2] and run.stopped and not run.converged and run.n_iter == 2
    blocks.release()


def test_progress_events_reach_other_clients(thread_client):
    blocks = _blocks(thread_client, n_blocks=2)
    eng = Engine(blocks, Halving(n_blocks=2), tol=1e-2, max_iter=50)
    eng.run()
    events = [e for _, e in thread_client.get_events(PROGRESS_TOPIC) if e["fit"] == eng.token]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    rounds = [e for e in events if e["event"] == "round"]
    assert [e["round"] for e in rounds] == list(range(8))
    assert all(e["solver"] == "toy" and "rel_gap" in e for e in rounds)
    blocks.release()


def test_client_sends_promptly_during_a_fit_only(thread_client):
    stream = thread_client.scheduler_comm
    own = stream.interval
    seen = []
    blocks = _blocks(thread_client, n_blocks=2)
    with prompt_sends(thread_client):  # a second holder: the fit must not restore early
        Engine(blocks, Halving(n_blocks=2), tol=1e-2, max_iter=50,
               callback=lambda rec: seen.append(stream.interval)).run()
        assert stream.interval == FIT_SEND_INTERVAL
    assert seen and set(seen) == {FIT_SEND_INTERVAL} and stream.interval == own > seen[0]
    blocks.release()


class Ordered(Halving):
    """Ring check: block k returns 1 + (sum of what came before it) at position k."""

    def local(self, block, state, message, seed, update, carry=None):
        out = np.zeros(self.n_blocks)
        out[block.index] = 1.0 + (0.0 if carry is None else carry.sum())
        return out


def test_ring_visits_blocks_in_turn(client):
    blocks = _blocks(client, n_blocks=4)
    machine = Ordered(n_blocks=4)
    run = Engine(blocks, machine, tol=0.3, max_iter=10, schedule=Ring(laps=1)).run()
    assert run.converged
    np.testing.assert_array_equal(machine.seen[0], [1.0, 2.0, 4.0, 8.0])
    # consecutive blocks of one worker share a task
    runs = 1 + sum(a != b for a, b in zip(blocks.workers, blocks.workers[1:], strict=False))
    assert all(r["n_tasks"] == runs for r in run.history)
    blocks.release()


def test_ring_laps_go_around_again(thread_client):
    blocks = _blocks(thread_client, n_blocks=2)
    machine = Ordered(n_blocks=2)
    Engine(blocks, machine, tol=0.6, max_iter=10, schedule=Ring(laps=2)).run()
    # lap 1: [1, 2]; lap 2 adds [1 + 3, 1 + 3 + 4] -> [5, 10]
    np.testing.assert_array_equal(machine.seen[0], [5.0, 10.0])
    blocks.release()


def test_allblocks_is_the_default_schedule(thread_client):
    blocks = _blocks(thread_client, n_blocks=2)
    eng = Engine(blocks, Halving(n_blocks=2), tol=0.6, max_iter=3)
    assert isinstance(eng.schedule, AllBlocks)
    eng.run()
    blocks.release()


@pytest.mark.parametrize("bad,match", [
    ({"tol": -1.0}, "tol must be"),
    ({"max_iter": 0}, "max_iter must be"),
    ({"checkpoint_every": 0}, "checkpoint_every must be"),
    ({"callback": 3}, "callback must be callable"),
])
def test_engine_rejects_bad_run_parameters(thread_client, bad, match):
    blocks = _blocks(thread_client, n_blocks=2)
    kw = {"tol": 1e-3, "max_iter": 10, **bad}
    with pytest.raises(ValueError, match=match):
        Engine(blocks, Halving(), **kw)
    blocks.release()


# --- checkpoint files ---------------------------------------------------------------


def test_checkpoint_file_round_trip(tmp_path):
    path = tmp_path / "fit.ckpt"
    arrays = {"model__w": np.arange(5.0), "block0__alpha": np.ones(3)}
    write_checkpoint(path, arrays, {"round": 4, "problem": {"C": 1.0}})
    got, meta = read_checkpoint(path)
    assert meta == {"round": 4, "problem": {"C": 1.0}}
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
    # rewriting replaces atomically: no temporary file is left behind
    write_checkpoint(path, arrays, {"round": 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.ckpt"]


def test_checkpoint_refuses_truncated_altered_and_foreign_files(tmp_path):
    path = tmp_path / "fit.ckpt"
    write_checkpoint(path, {"w": np.arange(100.0)}, {"round": 1})
    raw = path.read_bytes()
    (tmp_path / "short.ckpt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        read_checkpoint(tmp_path / "short.ckpt")
    altered = bytearray(raw)
    pos = raw.index(np.arange(100.0).tobytes()[8:16])
    altered[pos] ^= 0xFF
    (tmp_path / "bad.ckpt").write_bytes(bytes(altered))
    with pytest.raises(ValueError, match="SHA-256|corrupted"):
        read_checkpoint(tmp_path / "bad.ckpt")
    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as zf:
        zf.writestr("x.npy", b"not an array")
    with pytest.raises(ValueError, match="not a dasksvm checkpoint"):
        read_checkpoint(tmp_path / "foreign.npz")
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoint_never_unpickles(tmp_path):
    """A crafted file whose member is a pickled object array, with a matching hash."""
    import hashlib

    buf = io.BytesIO()
    np.save(buf, np.array([print], dtype=object), allow_pickle=True)
    raw = buf.getvalue()
    meta = {"format": FORMAT, "sha256": {"evil": hashlib.sha256(raw).hexdigest()}, "meta": {}}
    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil.npy", raw)
        zf.writestr("meta.json", json.dumps(meta))
    with pytest.raises(ValueError, match="allow_pickle|corrupted"):
        read_checkpoint(path)
    with pytest.raises(TypeError, match="object"):
        write_checkpoint(tmp_path / "x.ckpt", {"a": np.array([None], dtype=object)}, {})


class Threads(Halving):
    """Records the thread each block ran on."""

    def local(self, block, state, message, seed, update, carry=None):
        import threading
        import time

        time.sleep(0.05)
        state.setdefault("threads", set()).add(threading.get_ident())
        return super().local(block, state, message, seed, update, carry)

    def export(self, state):
        return sorted(state["threads"])


def test_a_worker_runs_its_blocks_on_its_threads():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        blocks = _blocks(client, n_blocks=4)
        run = Engine(blocks, Threads(n_blocks=4), tol=0.3, max_iter=10).run()
        assert all(r["n_tasks"] == 1 for r in run.history)
        threads = set().union(*map(set, client.gather(run.exports)))
        assert len(threads) == 2
        blocks.release()


def test_large_messages_are_scattered_whole(thread_client):
    """A message over 1 MiB (here a tuple) reaches the workers as the same object."""
    blocks = _blocks(thread_client, n_blocks=2)

    class Big(Halving):
        def message(self, blocks=None):
            return (np.ones(200_000), 3)

        def local(self, block, state, message, seed, update, carry=None):
            assert isinstance(message, tuple) and message[1] == 3
            return super().local(block, state, message, seed, update, carry)

    run = Engine(blocks, Big(n_blocks=2), tol=0.3, max_iter=5).run()
    assert run.history[0]["bytes_down"] == 2 * (200_000 * 8 + 8 + 16)
    assert run.history[1]["bytes_down"] == 2 * (8 + 16)  # the array did not change
    blocks.release()


def test_messages_travel_as_their_change():
    """encode / receive: the worker's copy is bit-for-bit the client's message."""
    from dasksvm.parallel.delta import Delta, encode, receive

    rng = np.random.RandomState(0)
    w = rng.randn(1000)
    holder, held, sent = {}, None, []
    for version in range(1, 6):
        msg = (w, version * 0.5, None)
        wire, held = encode(msg, held, version)
        sent.append(wire.wire_nbytes())
        got = receive(wire, holder, RuntimeError)
        np.testing.assert_array_equal(got[0], w)
        assert got[1:] == (version * 0.5, None) and got[0] is not w
        w = w.copy()
        w[rng.choice(1000, 10, replace=False)] += rng.randn(10)  # a sparse change
    assert sent[0] == 1000 * 8 + 8 + 16 and all(n == 10 * 12 + 8 + 16 for n in sent[1:])
    # a re-run task for the same version finds it applied; a dense change goes whole
    assert receive(wire, holder, RuntimeError) is got
    wire, held = encode((w + 1.0, 0.0, None), held, 6)
    assert wire.base is None
    receive(wire, holder, RuntimeError)
    # a change from a version the worker does not hold is refused
    stale = Delta(3, 7, (np.zeros(1000), 0.0, None))
    with pytest.raises(RuntimeError, match="version 6, the change is from version 3"):
        receive(stale, holder, RuntimeError)
    # a changed shape goes whole
    wire, held = encode((np.zeros(5), 0.0, None), held, 8)
    assert wire.base is None and receive(wire, holder, RuntimeError)[0].shape == (5,)


def test_a_late_task_of_a_failed_round_is_not_run():
    """After a recovery at (round 4, attempt 1), a task of (4, 0) that the scheduler starts
    late is refused before it touches the states; later epochs are admitted."""
    from dasksvm.parallel.engine import StateLost, _drop_store, _enter

    token = "feedface"
    _enter(token, (4, 0))
    _enter(token, (4, 1))
    with pytest.raises(StateLost, match="round 4 attempt 0 came after round 4 attempt 1"):
        _enter(token, (4, 0))
    _enter(token, (5, 0))
    _drop_store(token)
    _enter(token, (0, 0))  # a dropped fit forgets its epoch
    _drop_store(token)


def test_cocoa_sends_the_touched_columns_only(client):
    """On wide sparse data, a CoCoA+ round moves the changed coordinates of w down and
    the touched ones up, not n_columns floats per worker."""
    from dasksvm.solvers import solve_cocoa

    d, rng = 20_000, np.random.RandomState(0)
    X = sp.random(64, d, density=5 / d, format="csr", random_state=rng)
    y = np.where(rng.rand(64) > 0.5, 1.0, -1.0)
    blocks = BlockSet.from_arrays(client, X, y, n_blocks=4)
    with pytest.warns(ConvergenceWarning):
        res = solve_cocoa(blocks, C=1.0, tol=0.0, max_iter=5)
    n_workers = len(set(blocks.workers))
    touched = len(np.unique(X.indices))
    assert res.history[0]["bytes_down"] == n_workers * (d * 8 + 16)
    for rec in res.history[1:]:
        assert 0 < rec["bytes_down"] <= n_workers * (touched * 12 + 16)
        assert rec["bytes_up"] < n_workers * d
    blocks.release()


def _n_states(dask_worker):
    return len(dask_worker.__dict__.get("_dasksvm_states", {}))


def test_states_are_dropped_after_the_fit(client):
    blocks = _blocks(client, n_blocks=4)
    Engine(blocks, Halving(n_blocks=4), tol=0.3, max_iter=5).run()
    assert set(client.run(_n_states).values()) == {0}
    blocks.release()


def test_in_turn_takes_every_slice_of_every_item_in_near_lockstep():
    """Runner.in_turn: every (item, slice) once, no slice s + 1 + TURN_SLACK started before
    all of slice s has ended, on one thread and on two; an error in one thread is raised
    (no hang)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from dasksvm.parallel.engine import TURN_SLACK, _Runner, thread_runner

    with thread_runner(3) as run:  # outside a worker: one thread
        seen = []
        run.in_turn(3, 2, lambda j, s: seen.append((j, s)))
    assert seen == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]

    lock, seen, events = threading.Lock(), [], []

    def record(j, s):
        with lock:
            seen.append((j, s))
            events.append(("start", j, s))
        if j == 0:  # one thread slower than the other: the fast one must wait
            time.sleep(0.001)
        with lock:
            events.append(("end", j, s))

    with ThreadPoolExecutor(2) as pool:
        run = _Runner(lambda f, items: list(pool.map(f, items)), 2)
        run.in_turn(5, 40, record)
        assert sorted(seen) == [(j, s) for j in range(5) for s in range(40)]
        ended = set()
        for kind, j, s in events:
            if kind == "end":
                ended.add((j, s))
            elif s > TURN_SLACK:
                assert all((k, s - 1 - TURN_SLACK) in ended for k in range(5)), (j, s)

        def failing(j, s):
            if (j, s) == (1, 3):
                raise RuntimeError("step failed on purpose")

        with pytest.raises(RuntimeError, match="step failed on purpose"):
            run.in_turn(4, 10, failing)
