"""The round engine: every iterative solver of dasksvm runs on it.

A solver is a :class:`Machine`: small functions in the shape of dask's
chunk / combine / aggregate. On the workers, ``init`` builds a block's state
(dual variables, norms) and ``local`` runs the block's step of a round and
returns a *partial*; partials are combined by
:func:`~dasksvm.parallel.reduce.add_partials` (the all-reduce); on the
client, ``step`` certifies the round (primal, dual, extras) and updates the
shared model, and ``message`` says what the next round sends down.

The engine alone owns what every solver used to write by hand:

- placement: one task per worker per round, handling all the worker's
  blocks inside it (on its threads, where it has several); the blocks'
  states stay in the worker's memory under the fit's token and never travel;
  a worker's partials are summed on it before they leave;
- task keys (:func:`~dasksvm.parallel.keys.task_key`), the counts of tasks
  and bytes taken from what was really sent, the :class:`History`;
- the relative-gap stop, the final evaluation round after ``max_iter``,
  the ``ConvergenceWarning``;
- seeds (:class:`~dasksvm.parallel.seeds.Seeds`, one per round and block);
- progress: ``callback(record)`` and ``Client.log_event("dasksvm-progress")``;
- checkpoints (:mod:`~dasksvm.parallel.checkpoint`) and resuming from them;
- recovery from a lost worker: blocks come back from their lineage (or the
  client's copy), lost states restart from the last checkpoint or from zero,
  and the shared model is recomputed from the states (``Machine.rebuild``),
  so the iterate stays a feasible dual point and the certificate stays honest.

Schedules: :class:`AllBlocks` (every block from the same model, CoCoA+ /
SGD / the row-parallel multiclass machines), :class:`Ring` (the blocks in
turn, each seeing the changes of those before it, handed from worker to
worker) and :class:`Custom` (the machine lays out its round's tasks itself
through :meth:`Engine.submit`: the Weston-Watkins pair chains, the
cascade's tree levels).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import numbers
import os
import queue
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dask
import numpy as np

from .checkpoint import read_checkpoint, write_checkpoint
from .client import PINNED, pin_tasks, prompt_sends, worker_addresses
from .delta import encode, receive
from .history import History, _caller_stacklevel, warn_not_converged
from .keys import new_token, task_key
from .reduce import add_partials, wire_nbytes
from .seeds import Seeds

__all__ = [
    "PROGRESS_TOPIC",
    "AllBlocks",
    "Custom",
    "Engine",
    "Machine",
    "Ring",
    "RunResult",
    "StateLost",
    "WarmState",
    "wire_nbytes",
]

#: ``Client.log_event`` topic of the per-round records (and of fit start / end)
PROGRESS_TOPIC = "dasksvm-progress"
#: messages above this size are scattered to their workers instead of riding in the task
_INLINE_BYTES = 1 << 20
#: consecutive recoveries after which a fit gives up
_MAX_RECOVERIES = 8


class StateLost(RuntimeError):
    """Raised on a worker that was asked to run blocks whose state it does not hold."""


# ---------------------------------------------------------------------------------------
# the machine protocol
# ---------------------------------------------------------------------------------------


class Machine:
    """What a solver gives the engine (subclass it; the defaults say what is optional).

    Attributes
    ----------
    name : str
        The solver's name in messages and warnings ("CoCoA+").
    prefix : str
        First word of its task keys ("cocoa").
    broadcast : bool
        True: :meth:`message` is called once per round and the same object
        goes to every worker. False: it is called per worker with the
        indices of the worker's blocks.
    worker_fields : tuple of str or None
        The attributes the worker side reads (its settings): the machine is
        pickled with every task it runs, with these only, so the client's
        model never rides along. What changes from round to round and the
        workers need goes in the message.
    """

    name = "solver"
    prefix = "solver"
    broadcast = True
    #: the attributes the worker side reads: only these travel with a task (None: all)
    worker_fields = None

    def __getstate__(self):
        if self.worker_fields is None:
            return dict(self.__dict__)
        return {k: v for k, v in self.__dict__.items() if k in self.worker_fields}

    # --- what defines the problem (checkpoints must match it) -------------------------
    def problem(self):
        """JSON-able dict of what defines the problem and the meaning of the states."""
        return {}

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        """The block's state; ``saved`` is its :meth:`save` dict from a checkpoint, or None."""

    def local(self, block, state, message, seed, update, carry=None):
        """One round on one block: may change ``state`` in place; returns the partial.

        ``update`` is False in the final evaluation round (certify only).
        ``carry`` (ring schedule) is the sum of the partials of the blocks
        that ran before this one in the round, or None. ``message`` is valid
        for this round only: the worker patches it in place with the next
        round's changes (:mod:`.delta`), so copy what the state keeps.
        """
        raise NotImplementedError

    def worker_local(self, blocks, states, view, seeds, update, run):
        """The round's partials of one worker's blocks (AllBlocks schedule): ``run(f,
        js)`` is ``[f(j) for j in js]`` on the worker's threads, reused within the round.
        The default runs :meth:`local` once per block; a machine whose blocks share a
        view may split their work into steps that all blocks take in turn."""
        return run(lambda j: self.local(blocks[j], states[j], view, seeds[j], update),
                   range(len(blocks)))

    def worker_view(self, message, blocks, states):
        """What the blocks of one worker receive as their round message (called once per
        round task on the worker, before their :meth:`local` steps; not by the ring
        schedule). The default is the message itself; a machine whose blocks on one
        worker should act as one part (sharing one change of the model, on all the
        worker's threads at once) returns the view they share."""
        return message

    def settle(self, state, acceptance):
        """Resolve the change ``local`` left pending in ``state``: ``acceptance`` is what
        :meth:`advance` returned on the client (adopt the change as it says), or None
        (the client did not take it: drop it). Runs before every other use of a state
        and must be idempotent."""

    def rebuild(self, block, state):
        """The block's share of the shared model recomputed from its state (recovery),
        dropping any change not yet accepted by the client; None if it has none."""

    def save(self, state):
        """The state as a dict of arrays (checkpoints)."""
        return {}

    def export(self, state):
        """What the result keeps of the state (one future per block); None for nothing."""

    # --- on the client -----------------------------------------------------------------
    def message(self, blocks=None):
        """What the next round sends down (see ``broadcast``)."""

    def step(self, total, round, update):
        """Certify the round from the combined partial and update the model.

        Returns a dict with ``primal`` and ``dual`` (floats), optionally
        ``stop`` (the stopping quantity, default the relative gap) and
        ``extra`` (more keys for the history record).
        """
        raise NotImplementedError

    def advance(self):
        """The fit goes on after the last :meth:`step`: move the model to the next iterate
        and return the acceptance the workers' :meth:`settle` needs (not None)."""
        return True

    def restore(self, total):
        """Set the shared model from the sum of the blocks' :meth:`rebuild` partials."""

    def model_arrays(self):
        """The client's model as a dict of arrays (checkpoints)."""
        return {}

    def load_model_arrays(self, arrays):
        """Inverse of :meth:`model_arrays`."""

    def warm(self, arrays, problem):
        """A start for this problem from the final state of a fit of ``problem`` (the same
        data and problem but for C; see :class:`WarmState`).

        ``arrays`` are that fit's arrays as a checkpoint names them (``model__*``,
        ``block{k}__*``, ``state__*`` for a Custom schedule); the result, in the same
        naming, must be a feasible point of this problem (e.g. duals scaled or clipped to
        the new box). The engine loads it as it loads a checkpoint and then, for the
        per-block schedules, rebuilds the shared model from the states (:meth:`rebuild`,
        :meth:`restore`), so ``model__*`` may be left out. None (the default): the
        machine has no warm start, and the fit starts cold with a warning."""

    def coef(self):
        """The model the last certificate is for."""
        raise NotImplementedError

    def result_state(self):
        """Extra entries of the result's ``state`` dict (e.g. the layout of a fit)."""
        return {}

    def finish(self, engine):
        """Release what the machine made on the cluster (called once the fit ends)."""


@dataclass(frozen=True)
class AllBlocks:
    """Every block runs ``local`` from the same message; the partials are summed."""

    ring = False


@dataclass(frozen=True)
class Ring:
    """The blocks run in turn, ``laps`` times around, each one's ``local`` getting the
    sum of the partials before it (``carry``), handed from worker to worker; one task
    per run of consecutive blocks on the same worker."""

    laps: int = 1
    ring = True


@dataclass(frozen=True)
class Custom:
    """The machine drives its own rounds (the Weston-Watkins pair chains, the cascade's
    tree levels) through the engine's :meth:`Engine.submit` / :meth:`Engine.gather`:

    - ``machine.run_round(engine, round, update, attempt) -> (total, bytes_down,
      bytes_up)`` submits the round's tasks and returns what :meth:`Machine.step`
      reads, and the bytes it sent down and up;
    - ``machine.recover(engine, attempt)`` rebuilds what a lost worker held;
    - ``machine.save_states(engine) -> dict of arrays`` and
      ``machine.load_states(engine, arrays)`` write and restore the workers'
      states for checkpoints (the per-block ``save`` / ``init(saved)`` are not
      used).
    """

    ring = False


@dataclass(frozen=True)
class WarmState:
    """The final state of a fit kept in memory for a warm start (an in-memory checkpoint).

    ``arrays``: the model and the states as :meth:`Engine._write_checkpoint` names them;
    ``meta``: the data fingerprint, the number of blocks and the machine's ``problem()``
    (no history, no seed position: a warm fit starts at round 0).
    """

    arrays: dict
    meta: dict


@dataclass
class RunResult:
    """What :meth:`Engine.run` returns."""

    coef: object
    record: dict
    n_iter: int
    converged: bool
    history: list
    stopped: bool = False
    exports: list = field(default_factory=list)
    recoveries: int = 0
    state: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------

_LOCAL_STORE = {}
_LOCAL_MESSAGES = {}


def _worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _store(token):
    """The states of fit ``token`` held by this worker (block index -> state)."""
    w = _worker()
    root = _LOCAL_STORE if w is None else w.__dict__.setdefault("_dasksvm_states", {})
    return root.setdefault(token, {})


def _slot(token):
    """This worker's bookkeeping for fit ``token``: the last round message it holds
    (``version``, ``message``: :mod:`.delta`) and the latest ``epoch`` it ran."""
    w = _worker()
    root = _LOCAL_MESSAGES if w is None else w.__dict__.setdefault("_dasksvm_messages", {})
    return root.setdefault(token, {})


def _enter(token, epoch):
    """Admit a task of ``epoch`` = (round, attempt), or refuse it if this worker already
    ran a later one: a task of a failed round that the scheduler starts late (after the
    recovery) must not touch the states. Returns the slot."""
    slot = _slot(token)
    if epoch < slot.get("epoch", epoch):
        raise StateLost(f"a task of round {epoch[0]} attempt {epoch[1]} came after round "
                        f"{slot['epoch'][0]} attempt {slot['epoch'][1]}: not run")
    slot["epoch"] = epoch
    return slot


def _drop_store(token, dask_worker=None):
    """Forget fit ``token``'s states and message (run on every worker by ``Client.run``,
    which passes the worker as ``dask_worker``: ``get_worker`` does not work there)."""
    w = dask_worker if dask_worker is not None else _worker()
    for name, local in (("_dasksvm_states", _LOCAL_STORE),
                        ("_dasksvm_messages", _LOCAL_MESSAGES)):
        root = local if w is None else w.__dict__.get(name, {})
        root.pop(token, None)


def _threads():
    """The calling worker's threads (1 outside a worker). distributed keeps the count on
    the worker's state (``Worker.nthreads`` is gone since 2022.x)."""
    w = _worker()
    if w is None:
        return 1
    n = getattr(getattr(w, "state", None), "nthreads", None) or getattr(w, "nthreads", 1)
    return max(1, int(n or 1))


#: how many slices one thread of :meth:`_Runner.in_turn` may run ahead of the slowest:
#: at 0 (strict lockstep, a ``threading.Barrier`` after every slice) each meeting of two
#: threads cost 50-110 us on this machine (2,000 slices of 383 dense rows of 101 float32
#: values on 2 threads: 101-116 us a slice against 58 us alone; a Barrier 172 us); at 1 a
#: thread rarely waits (57-65 us a slice)
TURN_SLACK = 1


@contextlib.contextmanager
def thread_runner(n_items):
    """``run(func, items) = [func(i) for i in items]`` on up to ``n_items`` of the worker's
    threads (in this thread when it has one; ``run.width`` of them), one pool for every
    call in the block."""
    n = min(_threads(), n_items)
    if n <= 1:
        yield _Runner(lambda func, items: [func(i) for i in items], 1)
        return
    with ThreadPoolExecutor(n) as pool:
        yield _Runner(lambda func, items: list(pool.map(func, items)), n)


class _Runner:
    """``run(func, items)`` of :func:`thread_runner`; ``width``: its threads."""

    __slots__ = ("_map", "width")

    def __init__(self, map_, width):
        self._map, self.width = map_, width

    def __call__(self, func, items):
        return self._map(func, items)

    def in_turn(self, n_items, n_slices, step):
        """``step(j, s)`` for every item j < ``n_items`` and slice s < ``n_slices``, in
        near lockstep: thread t takes slice s of its items j = t, t + width, ... in turn,
        once every thread has finished its slices before s - :data:`TURN_SLACK` (so no
        item's slice s + 1 + TURN_SLACK starts before every item's slice s has ended). An
        error in one thread stops the others and is raised."""
        done = [0] * self.width  # slices each thread has finished
        failed = []
        turn = threading.Condition()

        def lane(t):
            try:
                for s in range(n_slices):
                    need = s - TURN_SLACK
                    if min(done) < need:  # read unlocked: a stale value only waits
                        with turn:
                            turn.wait_for(lambda: failed or min(done) >= need)  # noqa: B023
                    if failed:
                        return
                    for j in range(t, n_items, self.width):
                        step(j, s)
                    with turn:
                        done[t] = s + 1
                        turn.notify_all()
            except BaseException:
                with turn:
                    failed.append(t)
                    turn.notify_all()
                raise

        self._map(lane, range(self.width))


def map_threads(func, items):
    """``[func(i) for i in items]``, on the worker's threads when it has several."""
    with thread_runner(len(items)) as run:
        return run(func, items)


def _sum(parts):
    parts = [p for p in parts if p is not None]
    return functools.reduce(add_partials, parts) if parts else None


def _worker_init(token, epoch, machine, indices, saved, rebuild, blocks):
    """Make (or keep) the states of this worker's blocks; with ``rebuild`` return the sum of
    their :meth:`Machine.rebuild` partials. ``saved[j]`` restores block ``indices[j]``."""
    _enter(token, epoch)
    store = _store(token)

    def one(j):
        k = indices[j]
        if k not in store:
            store[k] = machine.init(blocks[j], saved[j])
        machine.settle(store[k], None)
        return machine.rebuild(blocks[j], store[k]) if rebuild else None

    return _sum(map_threads(one, range(len(indices))))


def _held(token, indices, machine, acceptance):
    """This worker's store of fit ``token``, its states of ``indices`` settled."""
    store = _store(token)
    missing = [k for k in indices if k not in store]
    if missing:
        raise StateLost(f"this worker holds no state for blocks {missing} of fit {token}")
    for k in indices:
        machine.settle(store[k], acceptance)
    return store


def _worker_round(token, epoch, machine, indices, seeds, message, acceptance, update, blocks):
    """One round's work of one worker: ``local`` on each of its blocks, partials summed."""
    slot = _enter(token, epoch)
    store = _held(token, indices, machine, acceptance)
    message = receive(message, slot, StateLost)
    states = [store[k] for k in indices]
    view = machine.worker_view(message, blocks, states)
    with thread_runner(len(indices)) as run:
        return _sum(machine.worker_local(blocks, states, view, seeds, update, run))


def _worker_ring_visit(token, epoch, machine, indices, seeds, message, acceptance, update,
                       carry, crossed, first, blocks):
    """One visit of the ring: this worker's consecutive blocks in turn, each seeing the
    sum of the partials before it. ``carry`` is ``(sum or _Start(), bytes moved so far)``;
    ``crossed``: it came from another worker (its sum is counted as moved). Only the
    ``first`` lap of a round settles the states: on later laps the change pending in a
    state is this round's own (from the block's earlier visits), still to be proposed."""
    slot = _enter(token, epoch)
    store = _held(token, indices if first else [], machine, acceptance)
    missing = [k for k in indices if k not in store]
    if missing:
        raise StateLost(f"this worker holds no state for blocks {missing} of fit {token}")
    message = receive(message, slot, StateLost)
    total, moved = carry
    total = None if isinstance(total, _Start) else total
    if crossed:
        moved += wire_nbytes(total)
    for j, k in enumerate(indices):
        part = machine.local(blocks[j], store[k], message, seeds[j], update, total)
        total = part if total is None else add_partials(total, part)
    return total, moved


class _Start:
    """The carry's sum before the first visit of a ring round (nothing yet)."""


def _worker_task(token, func, args):
    """``func(store, *args)`` with this worker's store of fit ``token`` (a dict the
    machine keys as it likes); for :meth:`Engine.submit`."""
    return func(_store(token), *args)


def _worker_save(token, machine, indices, acceptance):
    store = _held(token, indices, machine, acceptance)
    return {k: machine.save(store[k]) for k in indices}


def _worker_export(token, machine, k, acceptance):
    store = _held(token, [k], machine, acceptance)
    return machine.export(store[k])


def _block_fingerprint(block):
    h = hashlib.sha256()
    # a dense block is hashed as it is: asking for block.X would make it CSR for good
    rows = ((block.dense,) if block.dense is not None
            else (block.X.indptr, block.X.indices, block.X.data))
    for a in (*rows, block.y, block.weight):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _worker_fingerprints(indices, blocks):
    return {k: _block_fingerprint(b) for k, b in zip(indices, blocks, strict=True)}


# ---------------------------------------------------------------------------------------
# client side
# ---------------------------------------------------------------------------------------


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer, bool)):
        return int(v) if not isinstance(v, bool) else v
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


def _recoverable(exc):
    from distributed import KilledWorker

    names = {"CancelledError", "FutureCancelledError", "CommClosedError", "FutureLost"}
    return isinstance(exc, (StateLost, KilledWorker, OSError)) or type(exc).__name__ in names


class Engine:
    """Runs a :class:`Machine` on a :class:`~dasksvm.parallel.BlockSet` until certified.

    Parameters
    ----------
    blocks : BlockSet
    machine : Machine
    tol : float >= 0
        Stop at the first round whose stopping quantity (the relative gap
        unless the machine says otherwise) is <= tol.
    max_iter : int >= 1
        Update rounds at most; one evaluation round follows them (certify
        only) and a ConvergenceWarning is issued when it misses tol.
    random_state : None, int, RandomState or Generator
        Entropy of the :class:`~dasksvm.parallel.seeds.Seeds`.
    seeds : Seeds, optional
        Use these seeds (shared with the machine) instead of ``random_state``.
    verbose : int
        Print one line per round.
    callback : callable, optional
        ``callback(record)`` after every round; returning ``False`` stops
        the fit cleanly (the result is that round's certified model).
    checkpoint : path, optional
        File written every ``checkpoint_every`` rounds (and at the end).
    checkpoint_every : int >= 1
    resume : bool
        Continue from ``checkpoint`` when that file exists (same data and
        problem, else a ValueError); start from zero when it does not.
    schedule : AllBlocks, Ring or Custom
    warm : WarmState, optional
        Start from this final state of an earlier fit (an in-memory checkpoint) when it
        is for the same data and blocking (the data fingerprint) and the same problem
        but for C: the machine makes it feasible for this C (:meth:`Machine.warm`) and,
        for the per-block schedules, the shared model is rebuilt from the states, as
        after a recovery, so w = w(alpha) and the certificate is exact. Otherwise the fit
        starts cold with a UserWarning naming what differs. A checkpoint being resumed
        takes precedence.
    keep_warm : bool
        Return this fit's final state as ``RunResult.state["warm"]`` (a
        :class:`WarmState`; costs one pass hashing the blocks and one gather of the
        states).
    """

    def __init__(self, blocks, machine, *, tol, max_iter, random_state=None, seeds=None,
                 verbose=0, callback=None, checkpoint=None, checkpoint_every=10, resume=False,
                 schedule=None, warm=None, keep_warm=False):
        _check_run_params(tol, max_iter, checkpoint_every, callback)
        self.blocks = blocks
        self.client = blocks.client
        self.machine = machine
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.verbose = verbose
        self.callback = callback
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.checkpoint_every = int(checkpoint_every)
        self.resume = bool(resume)
        self.schedule = schedule or AllBlocks()
        if warm is not None and not isinstance(warm, WarmState):
            raise ValueError(f"warm must be a WarmState or None, got {type(warm).__name__}")
        self.warm, self.keep_warm = warm, bool(keep_warm)
        self.seeds = seeds if seeds is not None else Seeds(random_state)
        self.token = new_token()
        self.history = History(verbose, machine.prefix)
        self.recoveries = 0
        self.n_tasks = 0
        self._acceptance = None  # what the workers settle pending changes with
        self._saved = None  # per-block saved states of the last checkpoint (recovery)
        self._fingerprint = None
        self._events = None  # the _EventSender, started with the first event
        self._waited = 0.0  # seconds of the current round spent waiting for the workers
        self._version = 0  # of the round messages (parallel/delta.py)
        self._sent = {}  # worker -> (version, copy) of the last message it holds
        self._sending = {}  # the same for this round's messages, until the round succeeds
        self._pinned = False  # whether the scheduler was asked to leave our tasks in place

    # --- keys and submission -------------------------------------------------------
    def key(self, step, *, round=None, where=None, attempt=0):
        """The task key of one of this fit's tasks (:func:`~dasksvm.parallel.keys.task_key`)."""
        return task_key(self.machine.prefix, step, self.token, round=round, where=where,
                        attempt=attempt)

    def _by_worker(self):
        """``[(worker address, [block indices])]``, workers in address order (the
        placement is read from the BlockSet: no scheduler round trip)."""
        groups = {}
        for k, w in enumerate(self.blocks.workers):
            groups.setdefault(w, []).append(k)
        return sorted(groups.items())

    def _submit(self, func, *args, key, worker):
        """Submit to ``worker``, loosely (a task whose worker left runs elsewhere and
        raises StateLost) and pinned (work stealing leaves it alone: :func:`pin_tasks`)."""
        self.n_tasks += 1
        if not self._pinned:
            self._pinned = True
            pin_tasks(self.client)
        with dask.annotate(**{PINNED: True}):
            return self.client.submit(func, *args, key=key, workers=[worker],
                                      allow_other_workers=True, pure=False)

    def _pass(self, obj, workers):
        """``(obj or its future, bytes sent)``: ``obj`` rides in the task, or is scattered
        to ``workers`` first when it is large."""
        size = wire_nbytes(obj)
        if size > _INLINE_BYTES:
            [obj] = self.client.scatter([obj], workers=list(workers),
                                        broadcast=len(workers) > 1, hash=False)
        return obj, size * len(workers)

    def _ship(self, message, workers):
        """``({worker: object or future to pass}, bytes sent)`` for a round message to
        ``workers``: as its change from what each worker holds (:mod:`.delta`), one
        encoding per group of workers holding the same version."""
        self._version += 1
        groups = {}
        for w in workers:
            held = self._sending.get(w) or self._sent.get(w)
            groups.setdefault(None if held is None else held[0], []).append((w, held))
        out, sent = {}, 0
        for members in groups.values():
            wire, kept = encode(message, members[0][1], self._version)
            ws = [w for w, _ in members]
            obj, nbytes = self._pass(wire, ws)
            for w in ws:
                out[w] = obj
                self._sending[w] = kept
            sent += nbytes
        return out, sent

    def submit(self, step, func, *args, worker, round=None, where=None, attempt=0):
        """Submit ``func(store, *args)`` to ``worker`` (for :class:`Custom` machines).

        ``store`` is the worker's dict of this fit's states; futures among
        ``args`` are resolved by dask (moved to ``worker`` if held elsewhere).
        The key is :meth:`key` ``(step, round, where, attempt)``; the task is
        counted in the round's ``n_tasks``. Returns the future.
        """
        key = self.key(step, round=round, where=where, attempt=attempt)
        return self._submit(_worker_task, self.token, func, args, key=key, worker=worker)

    def gather(self, futures):
        """The values of ``futures`` on the client (the wait is not the engine's own time)."""
        t0 = time.perf_counter()
        try:
            return self.client.gather(futures)
        finally:
            self._waited += time.perf_counter() - t0

    def workers(self):
        """The live workers' addresses, sorted."""
        return worker_addresses(self.client)

    def _block_futures(self, indices):
        return [self.blocks.futures[k] for k in indices]

    def per_worker(self, func, *args, step):
        """``func(indices, blocks, *args)`` once per worker over its blocks, gathered:
        a dict ``{block index: value}`` merged from the workers' dicts (setup tasks)."""
        futs = [self._submit(func, ks, self._block_futures(ks), *args,
                             key=self.key(step, where=f"w{i}"), worker=w)
                for i, (w, ks) in enumerate(self._by_worker())]
        out = {}
        for d in self.client.gather(futs):
            out.update(d)
        return out

    # --- the loop --------------------------------------------------------------------
    def run(self):
        """Run rounds until certified, stopped or out of rounds; see the class docstring."""
        with prompt_sends(self.client):
            try:
                start = self._start()
                self._event("start", round=start)
                t, rec, converged, stopped = self._rounds(start)
                if self.checkpoint:
                    self._write_checkpoint(t)
                warm = WarmState(*self._snapshot(t, history=False)) if self.keep_warm else None
                exports = self._exports()
                self._event("end", round=t, converged=converged)
            finally:
                self.close()
        state = self.machine.result_state()
        if warm is not None:
            state["warm"] = warm
        return RunResult(coef=self.machine.coef(), record=rec, n_iter=t, converged=converged,
                         history=self.history.records, stopped=stopped, exports=exports,
                         recoveries=self.recoveries, state=state)

    def _rounds(self, start):
        """The rounds from ``start``: ``(last round, its record, converged, stopped)``."""
        converged = stopped = False
        rec = None
        for t in range(start, self.max_iter + 1):
            update = t < self.max_iter
            t_round, self._waited = time.perf_counter(), 0.0
            total, n_tasks, down, up = self._round_with_recovery(t, update)
            step = self.machine.step(total, t, update)
            round_time = time.perf_counter() - t_round
            rec = self.history.add(
                t, step["primal"], step["dual"], n_tasks=n_tasks, nbytes=down + up,
                bytes_down=down, bytes_up=up, recoveries=self.recoveries,
                round_time=round_time, engine_time=round_time - self._waited,
                **step.get("extra", {}),
            )
            stop = float(step.get("stop", rec["rel_gap"]))
            if "stop" in step:
                rec["stop"] = stop
            self._event("round", **rec)
            converged = stop <= self.tol
            if self.callback is not None and self.callback(rec) is False and not converged:
                stopped = True
            if converged or stopped or not update:
                break
            self._acceptance = self.machine.advance()
            if self.checkpoint and (t + 1) % self.checkpoint_every == 0:
                self._write_checkpoint(t + 1)
        if rec is None:  # resumed from a checkpoint taken after the final round
            raise ValueError(f"checkpoint {self.checkpoint!r} is at round {start}, past "
                             f"max_iter={self.max_iter}: raise max_iter to continue")
        if not converged and not stopped:
            warn_not_converged(self.machine.name, self.max_iter, stop, self.tol,
                               *self._scale_facts())
        return t, rec, converged, stopped

    def _scale_facts(self):
        """``(C, largest squared row norm)`` for the warning's scaling hint; ``(None,
        None)`` for kernel machines (their scale is gamma's)."""
        problem = self.machine.problem()
        if "C" not in problem or "kernel" in problem:
            return None, None
        return float(problem["C"]), self.blocks.max_sq_norm

    def close(self):
        """Drop this fit's states from the workers' memory; let the machine release its own;
        deliver the progress events still queued."""
        try:
            self.machine.finish(self)
        finally:
            with contextlib.suppress(Exception):
                self.client.run(_drop_store, self.token)
            if self._events is not None:
                self._events.close()

    # --- starting, resuming ----------------------------------------------------------
    def _start(self):
        """Build the blocks' states (from the checkpoint when resuming, else from the warm
        state when it applies); the first round."""
        saved_blocks, start, custom, rebuild = None, 0, None, False
        if self.checkpoint or self.warm is not None or self.keep_warm:
            self._fingerprint = self._data_fingerprint()
        if self.resume and self.checkpoint and os.path.exists(self.checkpoint):
            arrays, meta = read_checkpoint(self.checkpoint)
            self._check_match(meta)
            saved_blocks = _split_block_arrays(arrays, len(self.blocks))
            self.machine.load_model_arrays(_prefixed(arrays, "model__"))
            custom = _prefixed(arrays, "state__") if int(meta["round"]) else None
            self.seeds.entropy = int(meta["entropy"])
            start = int(meta["round"])
            # the records of the rounds before the next one (a checkpoint taken at a
            # stop also holds that round's record: it runs again, now as an update round)
            self.history = History(self.verbose, self.machine.prefix,
                                   [r for r in meta["history"] if r["round"] < start])
        elif self.warm is not None and (arrays := self._warm_arrays()) is not None:
            saved_blocks = _split_block_arrays(arrays, len(self.blocks))
            model = _prefixed(arrays, "model__")
            if model:
                self.machine.load_model_arrays(model)
            custom, rebuild = _prefixed(arrays, "state__"), True
        self._saved = saved_blocks
        custom_schedule = isinstance(self.schedule, Custom)
        total = self._init_states(saved_blocks, rebuild=rebuild and not custom_schedule,
                                  step="warm" if rebuild else "init", round=start)
        if rebuild and not custom_schedule:
            self.machine.restore(total)  # w = w(alpha) of the warm states
        if custom_schedule and custom is not None:
            self.machine.load_states(self, custom)
        return start

    def _warm_arrays(self):
        """The warm state made a start of this fit by the machine, or None (then warned)."""
        meta = self.warm.meta
        reason = self._mismatch(meta, free=("C",))
        arrays = None
        if reason is None:
            arrays = self.machine.warm(dict(self.warm.arrays), meta["problem"])
            if arrays is None:
                reason = f"{self.machine.name} has no warm start"
        if reason is not None:
            warnings.warn(f"warm_start: the previous fit {reason}; this fit starts cold",
                          UserWarning, stacklevel=_caller_stacklevel())
        return arrays

    def _init_states(self, saved, rebuild, step, round, attempt=0):
        futs = []
        for i, (w, ks) in enumerate(self._by_worker()):
            sv, _ = self._pass([None if saved is None else saved[k] for k in ks], [w])
            futs.append(self._submit(_worker_init, self.token, (round, attempt), self.machine,
                                     ks, sv, rebuild,
                                     self._block_futures(ks),
                                     key=self.key(step, where=f"w{i}", attempt=attempt),
                                     worker=w))
        return _sum(self.client.gather(futs))

    def _data_fingerprint(self):
        per_block = self.per_worker(_worker_fingerprints, step="fingerprint")
        h = hashlib.sha256(str(self.blocks.n_columns).encode())
        for k in range(len(self.blocks)):
            h.update(per_block[k].encode())
        return h.hexdigest()

    def _check_match(self, meta):
        reason = self._mismatch(meta)
        if reason is not None:
            raise ValueError(f"checkpoint {self.checkpoint!r} {reason}")

    def _mismatch(self, meta, free=()):
        """Why the checkpoint or warm state ``meta`` does not fit this fit (None if it
        does); the problem's keys in ``free`` may differ."""
        if meta.get("fingerprint") != self._fingerprint:
            return ("was for other data (or another blocking, intercept, class or sample "
                    "weights): its data fingerprint differs from this fit's")
        if meta.get("n_blocks") != len(self.blocks):
            return f"has {meta.get('n_blocks')} blocks, this fit {len(self.blocks)}"
        mine = _jsonable(self.machine.problem())
        theirs = meta.get("problem", {})
        diff = sorted(k for k in set(mine) | set(theirs)
                      if k not in free and mine.get(k) != theirs.get(k))
        if diff:
            what = ", ".join(f"{k}={theirs.get(k)!r} there, {mine.get(k)!r} here" for k in diff)
            return f"is for another problem: {what}"
        return None

    def _write_checkpoint(self, next_round):
        write_checkpoint(self.checkpoint, *self._snapshot(next_round))

    def _snapshot(self, next_round, history=True):
        """``(arrays, meta)`` of the fit before round ``next_round``: the client's model, the
        blocks' states (gathered by one task per worker, or the machine's ``save_states``)
        and, with ``history``, the records and the seed position (checkpoints)."""
        arrays = {f"model__{n}": a for n, a in self.machine.model_arrays().items()}
        if isinstance(self.schedule, Custom):
            arrays.update({f"state__{n}": a for n, a in self.machine.save_states(self).items()})
            return arrays, self._meta(next_round, history)
        states = {}
        futs = [self._submit(_worker_save, self.token, self.machine, ks, self._acceptance,
                             key=self.key("save", round=next_round, where=f"w{i}"), worker=w)
                for i, (w, ks) in enumerate(self._by_worker())]
        for d in self.client.gather(futs):
            states.update(d)
        for k, st in states.items():
            arrays.update({f"block{k}__{n}": a for n, a in st.items()})
        self._saved = [states[k] for k in range(len(self.blocks))]
        return arrays, self._meta(next_round, history)

    def _meta(self, next_round, history=True):
        meta = {
            "problem": _jsonable(self.machine.problem()),
            "fingerprint": self._fingerprint,
            "n_blocks": len(self.blocks),
        }
        if history:
            meta.update(round=int(next_round), entropy=int(self.seeds.entropy),
                        history=_jsonable(self.history.records))
        return meta

    # --- one round -----------------------------------------------------------------
    def _round_with_recovery(self, t, update):
        attempt = 0
        while True:
            try:
                out = self._round(t, update, attempt)
                self._acceptance = None  # this round's changes wait for advance()
                return out
            except Exception as exc:
                lost = set(self.blocks.workers) - set(worker_addresses(self.client))
                if not (_recoverable(exc) or lost):
                    raise
                attempt += 1
                if attempt > _MAX_RECOVERIES:
                    raise RuntimeError(f"{self.machine.name}: round {t} failed {attempt} times "
                                       f"after losing workers ({exc!r}); giving up") from exc
                self._recover(t, attempt, exc)

    def _round(self, t, update, attempt):
        tasks_before = self.n_tasks
        if isinstance(self.schedule, Custom):
            total, down, up = self.machine.run_round(self, t, update, attempt)
            return total, self.n_tasks - tasks_before, down, up
        groups = self._by_worker()
        down = 0
        self._sending = {}
        if self.machine.broadcast:
            msgs, down = self._ship(self.machine.message(), [w for w, _ in groups])
            self._round_messages = msgs
        if self.schedule.ring:
            out = self._ring_round(t, update, attempt, groups, down, tasks_before)
        else:
            futs = []
            for i, (w, ks) in enumerate(groups):
                if not self.machine.broadcast:
                    msgs, nb = self._ship(self.machine.message(ks), [w])
                    down += nb
                seeds = [self.seeds.seed(t, k) for k in ks]
                futs.append(self._submit(
                    _worker_round, self.token, (t, attempt), self.machine, ks, seeds, msgs[w],
                    self._acceptance, update, self._block_futures(ks),
                    key=self.key("local", round=t, where=f"w{i}", attempt=attempt), worker=w,
                ))
            parts = self.gather(futs)
            up = sum(wire_nbytes(p) for p in parts)
            out = _sum(parts), self.n_tasks - tasks_before, down, up
        self._sent.update(self._sending)  # the workers hold this round's messages now
        self._sending = {}
        return out

    def _ring_round(self, t, update, attempt, groups, down, tasks_before):
        """Visits in block order, ``laps`` times; consecutive blocks of one worker share a
        task; the carry (sum of partials so far, and the bytes it has moved between
        workers) goes from task to task, and only the last one is gathered."""
        runs = []
        for k, w in enumerate(self.blocks.workers):
            if runs and runs[-1][0] == w:
                runs[-1][1].append(k)
            else:
                runs.append((w, [k]))
        index = {w: i for i, (w, _) in enumerate(groups)}
        msgs = self._round_messages if self.machine.broadcast else None
        carry, at = (_Start(), 0), None
        laps = max(1, self.schedule.laps) if update else 1
        for lap in range(laps):
            for w, ks in runs:
                if not self.machine.broadcast:
                    msgs, nb = self._ship(self.machine.message(ks), [w])
                    down += nb
                seeds = [self.seeds.seed(t, k, lap) for k in ks]
                carry = self._submit(
                    _worker_ring_visit, self.token, (t, attempt), self.machine, ks, seeds,
                    msgs[w],
                    self._acceptance, update, carry, at is not None and at != w, lap == 0,
                    self._block_futures(ks),
                    key=self.key("local", round=t, where=[f"w{index[w]}", f"l{lap}",
                                                          f"b{ks[0]}"], attempt=attempt),
                    worker=w,
                )
                at = w
        total, moved = self.gather(carry)
        return total, self.n_tasks - tasks_before, down, moved + wire_nbytes(total)

    # --- recovery --------------------------------------------------------------------
    def _recover(self, t, attempt, exc):
        """After a lost worker: blocks back, lost states from the checkpoint or zero,
        the shared model recomputed from all states."""
        self._event("recover", round=t, error=repr(exc))
        self._sent, self._sending = {}, {}  # a new worker holds no message: send them whole
        if self.verbose:
            print(f"[{self.machine.prefix}] round {t}: lost a worker ({exc!r}); recovering",
                  flush=True)
        deadline = time.monotonic() + 120
        while not worker_addresses(self.client):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.machine.name}: no workers left after {exc!r}") from exc
            time.sleep(0.2)
        self.blocks.refresh()
        if isinstance(self.schedule, Custom):
            self.machine.recover(self, attempt)
            self.recoveries += 1
            self._acceptance = None
            return
        total = self._init_states(self._saved, rebuild=True, step="recover", round=t,
                                  attempt=attempt)
        self.machine.restore(total)
        self._acceptance = None
        self.recoveries += 1

    # --- results and events ------------------------------------------------------------
    def _exports(self):
        """One future per block of ``machine.export(state)``, left on the block's worker."""
        if isinstance(self.schedule, Custom) or type(self.machine).export is Machine.export:
            return []
        from distributed import wait

        out = [self._submit(_worker_export, self.token, self.machine, k, self._acceptance,
                            key=self.key("export", where=f"b{k}"), worker=w)
               for k, w in enumerate(self.blocks.workers)]
        with self.client.as_current():
            wait(out)  # before the states are dropped
        return out

    def _event(self, kind, **fields):
        """Log a progress event (sent by a background thread: the fit does not wait)."""
        msg = _jsonable({"fit": self.token, "solver": self.machine.prefix, "event": kind,
                         **fields})
        if self._events is None:
            self._events = _EventSender(self.client)
        self._events.send(msg)


class _EventSender:
    """Sends ``Client.log_event`` messages in order from a daemon thread, so that a round
    never waits for the scheduler's answer; a failure stops the sending, never the fit."""

    def __init__(self, client):
        self.client = client
        self.queue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="dasksvm-events", daemon=True)
        self.thread.start()

    def send(self, msg):
        self.queue.put(msg)

    def _loop(self):
        while (msg := self.queue.get()) is not None:
            try:
                self.client.log_event(PROGRESS_TOPIC, msg)
            except Exception:  # noqa: BLE001 - an event is a courtesy
                return

    def close(self, timeout=10):
        self.queue.put(None)
        self.thread.join(timeout)


def _prefixed(arrays, prefix):
    return {n[len(prefix):]: a for n, a in arrays.items() if n.startswith(prefix)}


def _split_block_arrays(arrays, n_blocks):
    return [_prefixed(arrays, f"block{k}__") for k in range(n_blocks)]


def _check_run_params(tol, max_iter, checkpoint_every, callback):
    if not isinstance(tol, numbers.Real) or not tol >= 0 or not np.isfinite(tol):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not isinstance(max_iter, numbers.Integral) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if (not isinstance(checkpoint_every, numbers.Integral) or isinstance(checkpoint_every, bool)
            or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {callback!r}")

