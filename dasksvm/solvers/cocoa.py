"""CoCoA+ for the binary linear SVM (formulations.md section 1b)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..kernels.sdca import (
    cocoa_local,
    dense_cocoa_local,
    dense_primal_dual_partials,
    dense_row_combination,
    direction_partials,
    gather_rows,
    primal_dual_partials,
    row_combination,
    visiting_order,
)
from ..parallel import Least, SparseVector, add_into, sq_norm, to_dense
from ..parallel.engine import AllBlocks, Machine
from ..parallel.shared import forget, mapped, meet, share_hosts
from ._common import LOSSES, BestIterate, dual_bound, passes_per_round, saved_array, scaled_duals
from .registry import Param, register
from .rowparallel import line_search

__all__ = ["AGGREGATIONS", "CoCoA", "build_cocoa"]

# aggregation -> (gamma, sigma, search) as a function of the number of parts K (the
# workers); search "line": the exact step along the summed proposal (formulations.md 1c),
# "momentum": the summed proposal, then the exact step along the last step. With one
# worker every rule is LIBLINEAR's dual coordinate descent (gamma = sigma = 1).
#: what shares one view of w: a worker's blocks (its threads), or every worker process
#: of a host (through /dev/shm)
SHARES = ("worker", "host")

AGGREGATIONS = {
    "add": lambda K: (1.0, float(K), None),
    "average": lambda K: (1.0 / K, 1.0, None),
    "exact": lambda K: (1.0, 1.0, "line" if K > 1 else None),
    "momentum": lambda K: (1.0, float(K), "momentum" if K > 1 else None),
}


class _State:
    """A block's dual variables ``alpha``, the change ``proposal`` not yet taken, its
    squared row norms, per-row bounds C_i; ``rows``, the rows the next local pass visits
    (shrinking keeps ``active[:n]``), ``lo``/``hi`` the shrinking thresholds; and ``view``:
    (the worker's blocks, the view's columns, this block's column positions in the view
    (None for a dense block), its row in the view's ``hot``), made when that set changes;
    ``gathered``: the buffer of the worker's merged steps (on its first block's state)."""

    __slots__ = ("active", "alpha", "c", "gathered", "hi", "image", "lo", "meets", "moved",
                 "proposal", "rows", "sqn", "step", "view")

    def __init__(self, alpha, sqn, c):
        self.alpha, self.sqn, self.c, self.proposal, self.view = alpha, sqn, c, None, None
        self.gathered, self.meets = None, 0  # meets: rounds its host's view has met
        # momentum: the last step taken (alpha_t - alpha_{t-1}, or None), its image
        # X_b^T (step y) and the proposal's, on the block's columns (all for a dense one)
        self.step = self.image = self.moved = None
        self.active = np.empty(len(alpha), dtype=np.int64)
        self.rows = np.arange(len(alpha), dtype=np.int64)
        self.lo, self.hi = -np.inf, np.inf


#: a round's coordinate steps per block are at least this share of its rows (times
#: ``local_passes``), so that when shrinking keeps few rows the round's progress still
#: weighs about as much as the certificate's pass over all of them (a step at a random
#: row costs ~6 rows of that sequential pass). One worker: the whole share; its blocks
#: share w (Gauss-Seidel), and the certificate is then most of a round's cost (py-spy of a
#: 1 process x 2 threads worker, 400k x 200k text-like rows, hinge, C = 1: 54% of its
#: threads' time in the certificate at a share of 0.25); in ``bench_rounds.py`` (1x2, one
#: run per share) a share of 1 took 4 / 5 / 12 / 12 rounds to LIBLINEAR's objective
#: (squared hinge / hinge at C = 0.1, then at C = 1) at 0.49 / 0.70 / 0.47 / 0.55 times
#: LIBLINEAR's fit, 0.25 took 5 / 7 / 17 / 25 rounds at 0.58 / 0.93 / 0.51 / 0.74 times,
#: 2 took 3 / 3 / 7 / 8 at 0.62 / 0.90 / 0.44 / 0.66. Several workers (Jacobi between
#: them): a quarter; a share of 1 on 2 processes took 26 / 33 / 80 / 207 rounds there,
#: each round longer, where a quarter took 12 / 33 / 74 / 238 (``results/rounds.md``).
STEPS_SHARE = {"one worker": 1.0, "several workers": 0.25}

#: a round's steps of the blocks of one worker are cut into this many slices, taken in turn
#: (each thread takes its blocks' slices in turn, at most ``TURN_SLACK`` slices ahead of the
#: slowest thread: ``_Runner.in_turn``). A pass over a fixed split of the rows (each part in
#: random order, the parts one after the other) converges far slower than one permutation
#: of them all: a9a shuffled, hinge, C = 1, 160 passes of the project's kernel in one
#: process, relative gap 7.6e-4 for one permutation, 3.2e-3 for two parts in turn. Rounds
#: to a certified 1e-4 (a9a as is, hinge, C = 1, one pass a round, an in-process
#: LocalCluster of one worker; one block of all rows: 59), for 2 blocks on 1 thread / 2 on
#: 2 threads / 8 on 2 threads: 1 slice 300 (not certified) / 66 / 300 (not certified),
#: 16 slices 170 / 63 / 300, 64 slices 67 / 61 / 166, 256 slices 58 / 63 / 56. Threads
#: that start apart drift into the fixed split too: news20 (comp.*), hinge, 1 process x
#: 2 threads took 41 rounds, 2.87 s unsliced, 19 rounds, 1.49 s in 256 slices (one
#: block of all rows on one thread: 14 rounds, 0.42 s)
ROUND_SLICES = 256

#: the blocks of one worker take their steps as one block's, on one thread
#: (:meth:`CoCoA._merged_ascent`: their active rows gathered, one visiting order over all
#: of them), when the worker has one thread, or once shrinking leaves at most this share
#: of their rows active (gathering them is then cheap; their certificates and exact
#: changes stay on all the threads). Slices in turn are not fine enough where rows share
#: many columns, and two threads stepping at once did no better: on news20 (comp.*),
#: hinge, C = 1, 5 passes a round, in one process with the worker's own code
#: (``benchmarks/bench_interleave.py``, results/interleave.md, two seeds), one block took
#: 8 rounds to a certified 1e-4; 2 blocks on 1 thread in 16 / 256 / 4,096 slices more
#: than 40 / 18 / 7; 2 blocks on 2 threads in 1 / 16 / 256 slices 28-29 / more than 40 /
#: 15-18, and 7 with this share. On 1 process x 2 threads (a real LocalCluster, hinge,
#: C = 1, two fits each, one probe run): shares 0.1 / 0.25 / 0.5 took 22-24 / 8 / 7
#: rounds on news20 (19-22 never merged) and 4.03-4.04 / 4.17-4.37 / 4.56-5.19 s on 400k
#: x 200k text-like rows (4.25-4.35 s never merged), whose rows share few columns
MERGE_SHARE = 0.25

#: with shrinking, a round's steps over all of a block's active rows (one block, or the
#: worker's blocks merged) also shrink between passes and stop once a pass's projected
#: gradients spread over at most this share of the first pass's (``spread_stop`` of
#: :func:`cocoa_local`), within the round's steps. In one process with the worker's code
#: (2 blocks, 2 threads, rounds to a certified 1e-4 at spread_stop 0 / 0.1 / 0.03, one run
#: each): a9a hinge C = 1 7 / 5 / 7 (0.3: 7), w8a 16 / 14 / 13, news20 (comp.*) 7 / 8 / 8
#: in 0.67 / 0.57 / 0.52 s, 400k x 200k text-like hinge C = 1 12 / 11 / 11, C = 0.1
#: 5 / 4 / 4; the squared hinge within a round either way (a9a 10 / 10, w8a 12 / 13 / 12,
#: 400k C = 1 13 / 14 / 13). One worker only: on 2 processes (one block each, sigma' = 2)
#: the 400k set's hinge at C = 0.1 took 41 rounds with it and 33 without (two fits each,
#: the same both times), the squared hinge at C = 1 74 either way
SPREAD_STOP = 0.1

#: ``local_passes="auto"`` with one worker: a round's passes over a block take about this
#: many non-zeros in coordinate steps (a round costs ~10-15 ms of dask overhead; 16 passes
#: a round fitted a9a, w8a and mr_tfidf on 1 process x 2 threads 3-28x faster than 1,
#: tol 1e-4)...
AUTO_WORK = 4_000_000
#: ...in at most this many passes. With several workers "auto" is one pass: their blocks
#: are combined as CoCoA+ parts, and more local passes there took as many rounds or more
#: (a9a, w8a, news20 on 2 processes)
AUTO_MAX_PASSES = 32

#: rounds between two looks at D(beta) while D(alpha) certifies better (CoCoA.step)
BETA_EVERY = 8
#: D(beta) is summed every round once D(alpha)'s gap is within this many tol
BETA_NEAR = 10.0

#: a column is hot in a worker's view when at least this share of the view's rows hold it
#: (the intercept always is), the most frequent ``MAX_HOT`` at most
HOT_SHARE, MAX_HOT = 1.0 / 16, 64


class _View:
    """The round's model as the blocks of one worker share it: ``w`` whole (for the
    certificate); ``z``: a copy of w plus, on the cold columns, sigma times the change the
    worker's blocks have made so far in the round; ``slot``: each column's row in ``hot``
    (-1: cold; empty: every column cold), and ``hot`` (n_blocks, n_hot): each block's own
    change of the hot columns (a dense view: every column is hot, ``slot`` unused)."""

    __slots__ = ("hot", "slot", "w", "z")

    def __init__(self, w, slot, n_hot, n_blocks, z=None, hot=None):
        self.w, self.slot = w, slot
        self.z = w.copy() if z is None else z
        self.hot = np.zeros((n_blocks, n_hot)) if hot is None else hot


def _host_arrays(m, n_slots, n_columns, n_hot):
    """(flags, z, hot) of a host's shared view in its bytes ``m``: after the first
    ``n_slots`` int64 words (the members' marks, :mod:`~dasksvm.parallel.shared`), the
    round each slot has met, then z (n_columns,) and hot (n_slots, n_hot)."""
    words = m.view(np.int64)
    flags = words[n_slots:2 * n_slots]
    floats = m.view(np.float64)[2 * n_slots:]
    hot = floats[n_columns:n_columns + n_slots * n_hot].reshape(n_slots, n_hot)
    return flags, floats[:n_columns], hot


def _host_nbytes(n_slots, n_columns, n_hot):
    return 8 * (2 * n_slots + n_columns + n_slots * n_hot)


#: the ``slot`` of a view without hot columns
NO_SLOT = np.zeros(0, dtype=np.int32)


def _hot_columns(blocks, n_columns):
    """The hot columns of CSR ``blocks`` (:data:`HOT_SHARE`), sorted."""
    counts = np.zeros(n_columns, dtype=np.int64)
    for b in blocks:
        counts[b.cols] += b.col_counts
    n_rows = sum(b.n_rows for b in blocks)
    hot = np.flatnonzero(counts >= max(1.0, HOT_SHARE * n_rows))
    return np.sort(hot[np.argsort(-counts[hot], kind="stable")[:MAX_HOT]])


def _dot(w, v):
    """w.v for a dense w and a dense or :class:`SparseVector` v."""
    if isinstance(v, SparseVector):
        return float(w[v.indices] @ v.values)
    return float(w @ v)


class CoCoA(Machine):
    """Certified CoCoA+ for the binary linear SVM, as a round-engine machine.

    Minimizes P(w) = 1/2 ||w||^2 + sum_i C_i loss(y_i w.x_i) over the block
    columns (C_i = C times the row's weight, held in ``block.weight``; y in
    {-1, +1}) through its dual (formulations.md section 1).

    One round t (one task per worker, key ``cocoa-local-r{t}-w{j}``):

    1. the client sends w_t (one float64 vector of n_columns) to each worker;
    2. every block on the worker, where its dual variables alpha live,
       computes its share of P(w_t), of D(alpha_t) and of the dual point
       beta(w_t) read off w_t by the loss's derivative, picks the rows of
       its local pass (``shrinking``), then runs ``local_passes`` passes of
       dual coordinate ascent over them and keeps the proposed alpha. The
       blocks of one worker are one part of CoCoA+: they share one view of
       w and of the change made so far in the round, at once on the
       worker's threads as in PASSCoDe (Hsieh, Yu and Dhillon 2015), so a
       worker behaves like one block of all its rows (Gauss-Seidel) and
       only the K workers are combined as CoCoA+ parts (sigma' = K,
       gamma = 1 for ``"add"``; sigma' = 1, gamma = 1/K for ``"average"``).
       The hot columns of the view (the intercept, the most frequent
       features) are summed from per-block changes, so the threads lose no
       update where they meet most (without that, on 400k x 200k text-like
       rows at C = 1, the primal at w(alpha) stayed 1e2-1e3 times further
       from the optimum than one block's for 20 rounds). The blocks' steps
       are cut into :data:`ROUND_SLICES` slices taken in turn, so blocks
       beyond the worker's threads, and threads that would drift apart,
       still visit the rows in about one permutation of them all; on one
       thread, or once shrinking leaves :data:`MERGE_SHARE` of the rows,
       they are stepped as one block of their active rows. Each
       block returns its own exact change, X_b^T (d_b y_b), so w_{t+1} =
       w(alpha_{t+1}) whatever the threads' interleaving;
    3. the worker sums its blocks' (change of w, loss share, dual shares)
       and sends that one partial up (touched coordinates only when that
       is smaller);
    4. the client records P(w_t), the better of D(alpha_t) and the best
       multiple of D(beta(w_t)), the gap, and sets w_{t+1} = w_t + eta sum dw;
       the blocks set alpha <- alpha + eta (proposal - alpha) at the start of
       the next round. eta = 1 (``"add"``, ``"average"``), or, for
       ``"exact"``, the step maximizing the dual along the summed proposal
       (formulations.md 1c: every block also sends its share of the dual's
       slope and curvature along it and its largest feasible step, a
       :class:`~dasksvm.parallel.Least`), with the blocks' local passes at
       sigma' = 1 (each as if alone). ``"momentum"`` takes CoCoA+'s whole
       summed proposal (sigma' = K) and then the exact step e2 >= 0 along p,
       the last step taken, cut where a unit step from the proposal would
       cross a bound (so rows the proposal put on a bound stay there, and
       shrinking keeps working): alpha <- proposal + e2 p; each block also
       sends the dual's slope and curvature along p, its largest feasible
       step (a ``Least``) and X_b^T (p y), which it keeps up to date from its
       own changes (so the direction is always that of the states the
       workers hold, after a resume or a lost worker too). Both searches are
       exact, so the dual never
       decreases. Blocks that share nothing are block Jacobi, slowest along
       directions a fixed step length does not reach; the last step points
       along them (measured: 2.4-3.3x fewer rounds than adding on 2
       workers, ``benchmarks/results/rounds_between.md``).

    Stopping rule (the engine's): the first round with (P - D) / |P| <= tol,
    where P is the lowest primal of the iterates so far, P(w_s) with s <= t,
    and D the dual at round t; it returns that w_s. Any w bounds the optimum
    from above and any dual-feasible point from below, so P(w_s) - D is a
    certified gap for w_s; the iterates' own primal is not monotone under
    CoCoA+ (under ``"momentum"`` it jumped 14x in one round on 196k x 101
    random features while the dual rose), and stopping on it alone took
    ``"momentum"`` past 300 rounds where the best iterate certified in 69
    (the same features of all 245,056 rows in 4 blocks). ``history_`` records both: ``primal`` (the
    best) and ``primal_iterate`` (P(w_t)).

    The dual is the better of two dual-feasible points: alpha_t itself and the best
    multiple of beta(w_t), read off w_t by the loss's derivative, whose value needs
    u = X^T (beta y) summed over every violating row (about half of the
    certificate's pass on CSR blocks: 58 -> 26 ms for 10^7 non-zeros). It is summed in the rounds
    where beta can end the fit: once alpha's gap is within :data:`BETA_NEAR` tol, after
    a round where beta certified better, and every :data:`BETA_EVERY` rounds (the
    gap is never taken from a point not computed). Measured in-process: on generated
    text-like data (200,000 x 100,000, both losses, C in {0.1, 1}, 1 block, and 2
    under momentum) beta was the better point only at round 0 (alpha = 0) and never
    moved the stopping round; on mushrooms (C = 0.01, tol 1e-5) it ends the fit at
    round 37 where alpha alone takes 104, and this rule stops at 37 too.

    Parameters
    ----------
    n_columns : int
    n_parts : int
        The number of workers holding blocks (K above).
    C : float > 0
    loss : {"hinge", "squared_hinge"}
    local_passes : float > 0
        Coordinate passes per block per round (fractions allowed) over the
        rows shrinking keeps, at least ``steps_share`` of all its rows in
        steps (:data:`STEPS_SHARE`, by ``n_parts``).
    aggregation : {"add", "average", "exact", "momentum"}
        How the K workers' changes combine (above). Measured on 2 and 4
        processes in ``benchmarks/bench_rounds.py``; with one worker all of
        them are LIBLINEAR's dual coordinate descent. A resumed fit continues
        its momentum (a checkpoint keeps each block's last step); a block
        restored after a lost worker takes its last step from the checkpoint
        it is restored from, or starts it again.
    shrinking : bool
        Leave out of the local passes the rows at a bound whose gradient at w_t
        pushes them against it by more than the block's largest violation at
        w_{t-1} (LIBLINEAR's rule, decided afresh from every certificate; the
        certificate sees every row). With one worker, within a round whose steps pass
        over all of a block's kept rows (one block, or the worker's blocks merged), the
        same rule also shrinks between passes, and the steps end after a pass whose
        projected gradients spread over at most :data:`SPREAD_STOP` times the first
        pass's.
    """

    name = "CoCoA+"
    prefix = "cocoa"
    worker_fields = ("C", "l2", "gamma", "sigma", "search", "local_passes", "steps_share",
                     "shrinking", "spread_stop", "with_u", "host_views")

    def __init__(self, n_columns, n_parts, *, C, loss, local_passes, aggregation,
                 shrinking=True, tol=None, host_views=None, n_workers=None):
        self.shrinking = bool(shrinking)
        self.tol = tol  # the fit's; None sums u in every round
        self.aggregation = aggregation
        self._combine(n_parts)
        # block -> (file, slot, slots, hot columns or None: all) of its host's shared view
        self.host_views = dict(host_views or {})
        self._files = {v[0] for v in self.host_views.values()}
        self.n_workers = n_parts if n_workers is None else n_workers
        self.C, self.loss, self.l2 = float(C), loss, loss == "squared_hinge"
        self.local_passes = float(local_passes)
        self.w = np.zeros(n_columns)
        self._best = BestIterate("w")  # the iterate w_s of lowest primal so far
        self.with_u, self._beta_round = True, 0  # sum u (D(beta)) this round; when last
        self._change = None  # the step of w the client takes in advance()
        self._acceptance = (1.0, 0.0)  # the step (e1, e2) the blocks take in settle()

    def _combine(self, n_parts):
        """How ``n_parts`` parts combine (``aggregation``), and the steps that depend on
        whether there is one."""
        self.gamma, self.sigma, self.search = AGGREGATIONS[self.aggregation](n_parts)
        self.spread_stop = SPREAD_STOP if self.shrinking and n_parts == 1 else 0.0
        self.steps_share = STEPS_SHARE["one worker" if n_parts == 1 else "several workers"]

    def problem(self):
        return {"solver": "cocoa", "C": self.C, "loss": self.loss}

    # --- on the workers ----------------------------------------------------------------
    def init(self, block, saved):
        sqn = block.sq_norms()
        alpha = np.zeros(block.n_rows) if saved is None else saved_array(saved, "alpha",
                                                                         (block.n_rows,))
        st = _State(alpha, sqn, self.C * block.weight)
        if saved is not None and "shrink_bounds" in saved:  # a checkpoint, not a warm start
            st.lo, st.hi = saved_array(saved, "shrink_bounds", (2,))
            if "step" in saved:
                st.step = saved_array(saved, "step", (block.n_rows,)).copy()
                st.image = self._local_image(block, st.step)
        return st

    def settle(self, st, acceptance):
        """alpha <- alpha + e1 (proposal - alpha) + e2 p with ``acceptance`` = (e1, e2)
        (1, 0 but for the exact steps; p the cut last step, momentum only, which then
        becomes the step just taken); the proposal is dropped either way."""
        if st.proposal is not None and acceptance is not None:
            e1, e2 = acceptance
            old = st.alpha
            if e1 == 1.0 and e2 == 0.0:
                st.alpha = st.proposal
            else:
                st.alpha = old + e1 * (st.proposal - old)
                if e2 != 0.0:
                    st.alpha += e2 * st.step
                # the searched steps are feasible up to rounding
                np.clip(st.alpha, 0.0, None if self.l2 else st.c, out=st.alpha)
            if self.search == "momentum":
                st.step = st.alpha - old
                st.image = st.moved + e2 * st.image if e2 != 0.0 else st.moved
        st.proposal = None

    def worker_view(self, w, blocks, states):
        share = self.host_views.get(blocks[0].index)
        m = None if share is None else mapped(share[0])
        if m is not None:
            return self._host_view(w, m, blocks, states)
        key = tuple((b.index, b.dense is not None) for b in blocks)
        if states[0].view is None or states[0].view[0] != key:
            self._make_view(key, len(w), blocks, states)
        _, slot, _, _, n_hot = states[0].view
        return _View(w, slot, n_hot, len(blocks))

    @staticmethod
    def _make_view(key, n_columns, blocks, states):
        """The view's hot columns (every column when a block is dense; none for a lone
        block, which races with nobody) as each column's ``slot``; a CSR block's positions
        in the view are its own column indices (no array made: building positions into a
        view of the blocks' columns took 0.16 s of a 1 x 2 fit's first round on 400k x
        200k text-like rows, 2 x 10^7 non-zeros, mostly in touching their fresh memory)."""
        if any(b.dense is not None for b in blocks):
            slot, n_hot = NO_SLOT, n_columns
        elif len(blocks) == 1:
            slot, n_hot = NO_SLOT, 0
        else:
            hot = _hot_columns(blocks, n_columns)
            slot = np.full(n_columns, -1, dtype=np.int32)
            slot[hot] = np.arange(len(hot), dtype=np.int32)
            n_hot = len(hot)
        for me, (b, st) in enumerate(zip(blocks, states, strict=True)):
            st.view = (key, slot, None if b.dense is not None else b.X.indices, me, n_hot)

    def _host_view(self, w, m, blocks, states):
        """The view shared by every worker process of this host (one file of /dev/shm
        mapped by each, :mod:`~dasksvm.parallel.shared`): its z and hot rows live there,
        each block in its host slot. The host's first slot sets z = w_t; every block
        zeroes its own hot row; then the members meet (:func:`meet`: polling, at most
        ``MEET_TIMEOUT`` s) before any steps. Every block's exact change stays its own
        (its CSR rows, or its own hot row), so the view only orders the steps."""
        name, _, n_slots, hot = self.host_views[blocks[0].index]
        key = ("host", name)
        if states[0].view is None or states[0].view[0] != key:
            slot, n_hot = NO_SLOT, len(w)  # dense: every column hot
            if hot is not None:
                slot = np.full(len(w), -1, dtype=np.int32)
                slot[hot] = np.arange(len(hot), dtype=np.int32)
                n_hot = len(hot)
            for b, st in zip(blocks, states, strict=True):
                st.view = (key, slot, None if b.dense is not None else b.X.indices,
                           self.host_views[b.index][1], n_hot)
        _, slot, _, _, n_hot = states[0].view
        flags, z, rows = _host_arrays(m, n_slots, len(w), n_hot)
        mine = [st.view[3] for st in states]
        rows[mine] = 0.0
        if 0 in mine:
            z[:] = w
        states[0].meets += 1
        meet(flags, mine, states[0].meets)
        return _View(w, slot, n_hot, n_slots, z=z, hot=rows)

    def local(self, block, st, view, seed, update, carry=None):
        if not isinstance(view, _View):  # run outside the engine's worker task
            view = self.worker_view(view, [block], [st])
        cert, new, n_steps = self._begin(block, st, view, update)
        if not update:
            return cert
        if n_steps:
            self._ascent(block, st, view, new, st.rows, n_steps, seed)
        return self._finish(block, st, view, cert, new, n_steps)

    def worker_local(self, blocks, states, view, seeds, update, run):
        """With several blocks on the worker: their certificates and exact changes on the
        worker's threads; their steps either as one block's, on one thread
        (:meth:`_merged_ascent`, when :meth:`_merges`), or cut into (up to)
        :data:`ROUND_SLICES` slices of one visiting order taken in turn (``run.in_turn``:
        no thread more than ``TURN_SLACK`` slices ahead of another)."""
        if len(blocks) == 1 or not update:
            return super().worker_local(blocks, states, view, seeds, update, run)
        js = range(len(blocks))
        begun = run(lambda j: self._begin(blocks[j], states[j], view, update), js)
        if self._merges(blocks, states, run.width):
            self._merged_ascent(blocks, states, view, begun, seeds[0])
        else:
            self._sliced_ascent(blocks, states, view, begun, seeds, run)
        return run(lambda j: self._finish(blocks[j], states[j], view, *begun[j]), js)

    @staticmethod
    def _merges(blocks, states, width):
        """Whether the blocks' steps run as one block's: CSR blocks, on one thread, or
        with at most :data:`MERGE_SHARE` of their rows active (gathering them is then
        cheap)."""
        if any(b.dense is not None for b in blocks):
            return False
        active = sum(len(st.rows) for st in states)
        return width == 1 or active <= MERGE_SHARE * sum(b.n_rows for b in blocks)

    def _merged_ascent(self, blocks, states, view, begun, seed):
        """The blocks' ``n_steps`` summed, taken on their active rows gathered into one
        CSR block (in the view's positions, :func:`gather_rows`), in one visiting order
        over all of them, on this thread, every column cold (the hot columns' reads cost
        30% of the steps: 0.24 against 0.17 s for 400k steps over 31k rows of 400k x
        200k text-like data); each proposal gets its rows' new alpha. The gathered rows
        live in one buffer kept on the first block's state for the fit (:meth:`_buffer`).
        Stepping the blocks' rows in place instead took 0.27-0.30 s for those steps: the
        rows lie spread over the blocks' memory."""
        js = [j for j in range(len(blocks)) if begun[j][2]]
        if not js:
            return
        csr = [(blocks[j].X.indptr, None, blocks[j].X.data) for j in js]
        rows = [states[j].rows for j in js]
        nnz = sum(int((ip[r + 1] - ip[r]).sum()) for (ip, _, _), r in zip(csr, rows,
                                                                          strict=True))
        pos, data = self._buffer(states[0], nnz)
        indptr = np.empty(sum(len(r) for r in rows) + 1, dtype=np.int64)
        gather_rows(tuple(np.asarray(ip, np.int64) for ip, _, _ in csr),
                    tuple(states[j].view[2] for j in js),
                    tuple(np.asarray(d, np.float64) for _, _, d in csr),
                    np.repeat(np.arange(len(js)), [len(r) for r in rows]),
                    np.concatenate(rows), indptr, pos, data)

        def gather(get):
            return np.concatenate([get(j)[states[j].rows] for j in js])

        alpha = gather(lambda j: begun[j][1])
        cocoa_local(indptr, pos, data, gather(lambda j: blocks[j].y),
                    gather(lambda j: states[j].c), gather(lambda j: states[j].sqn), alpha,
                    view.z, np.zeros((1, 0)), 0, NO_SLOT, self.sigma, self.l2,
                    np.arange(len(alpha)), sum(begun[j][2] for j in js), seed,
                    self.spread_stop)
        for j, a, n in zip(js, np.cumsum([0] + [len(r) for r in rows[:-1]]),
                           [len(r) for r in rows], strict=True):
            begun[j][1][states[j].rows] = alpha[a:a + n]

    @staticmethod
    def _buffer(st, nnz):
        """(positions, values) arrays for ``nnz`` gathered non-zeros, kept on ``st`` and
        made anew only when too small: memory touched for the first time is dear here
        (gathering 80k of 400k text-like rows into fresh arrays, with scipy's row indexing
        and vstack, took 0.36 s in the first merged round, 0.01 s a round after)."""
        if st.gathered is None or len(st.gathered[0]) < nnz:
            st.gathered = (np.empty(nnz, dtype=np.int32), np.empty(nnz))
        return st.gathered[0][:nnz], st.gathered[1][:nnz]

    def _sliced_ascent(self, blocks, states, view, begun, seeds, run):
        """The blocks' steps on the worker's threads, in :data:`ROUND_SLICES` slices taken
        in turn (see :meth:`worker_local`)."""
        js = range(len(blocks))
        orders = [states[j].rows[visiting_order(seeds[j], len(states[j].rows), begun[j][2])]
                  for j in js]
        n_slices = max(1, min(ROUND_SLICES, max(len(o) for o in orders)))

        def step(j, s):
            n = len(orders[j])
            part = orders[j][s * n // n_slices:(s + 1) * n // n_slices]
            if len(part):
                self._ascent(blocks[j], states[j], view, begun[j][1], part, len(part),
                             (int(seeds[j]) + s + 1) % 2**32, spread_stop=0.0)

        run.in_turn(len(blocks), n_slices, step)

    def _begin(self, block, st, view, update):
        """The block's certificate at w_t, the copy of alpha its steps change, and how many
        steps it takes (0 without ``update``, or with no active row: e.g. a block of
        zero-weight rows, all shrunk at alpha = 0)."""
        cert = self._certificate(block, st, view.w, update)
        if not (update and len(st.rows)):
            return cert, None, 0
        n_steps = round(self.local_passes * max(len(st.rows), self.steps_share * block.n_rows))
        return cert, st.alpha.copy(), n_steps

    def _finish(self, block, st, view, cert, new, n_steps):
        """The block's partial once its steps are taken: its exact change of w, the
        certificate and what the aggregation's search needs; keeps the proposal."""
        if n_steps == 0:
            new = st.alpha.copy()
            dw = SparseVector(np.zeros(0, np.int64), np.zeros(0), len(view.w))
        else:
            v = self._exact_change(block, st, view, new)
            if self.gamma != 1.0:
                new = st.alpha + self.gamma * (new - st.alpha)
                v *= self.gamma
            dw = v if block.dense is not None else block.spread(v, len(view.w))
        st.proposal = new
        if self.search == "line":
            slope, curv, upper = direction_partials(st.alpha, new, st.c, self.l2)
            return dw, cert, np.array([slope, curv]), Least(upper)
        if self.search == "momentum":
            st.moved = self._local_image(block, new - st.alpha) if n_steps == 0 else v
            self._momentum(block, st, new)
            slope, curv, upper = direction_partials(new, new + st.step, st.c, self.l2)
            image = st.image if block.dense is not None else block.spread(st.image, len(view.w))
            return dw, cert, np.array([slope, curv]), Least(upper), image
        return dw, cert

    def _momentum(self, block, st, new):
        """Set the block's momentum direction p and its image X_b^T (p y): its last step,
        cut where a unit step from the proposal ``new`` would cross a bound (so a row the
        proposal put on a bound stays there, and shrinking keeps working)."""
        if st.step is None:
            st.step = np.zeros(block.n_rows)
            st.image = np.zeros_like(st.moved)
        p = np.maximum(st.step, -new)
        if not self.l2:
            np.minimum(p, st.c - new, out=p)
        st.image = st.image + self._local_image(block, p - st.step)
        st.step = p

    @staticmethod
    def _local_image(block, d):
        """X_b^T (d y) on the block's columns (all columns for a dense block)."""
        if block.dense is not None:
            return dense_row_combination(block.dense, d * block.y)
        X = block.X
        return row_combination(X.indptr, X.indices, X.data, d * block.y,
                               block.n_columns)[block.cols]

    def _certificate(self, block, st, w, update=True):
        """(u, loss, dual, b_sum, b_sq, n_active) of the block at w
        (:func:`primal_dual_partials`); with ``update``, sets the n_active rows of the
        round's local pass (all of them without ``shrinking``) and the next thresholds."""
        lo, hi = (st.lo, st.hi) if self.shrinking else (-np.inf, np.inf)
        if block.dense is not None:
            loss, dual, u, b_sum, b_sq, n_active, lo, hi = dense_primal_dual_partials(
                block.dense, block.y, st.c, st.alpha, w, self.l2, lo, hi, st.active,
                self.with_u)
        else:
            # on the block's own column indices (CoCoA never makes its local ones: their
            # fresh memory took ~0.1 s of a first round on 2 x 10^7 non-zeros)
            X = block.X
            loss, dual, u, b_sum, b_sq, n_active, lo, hi = primal_dual_partials(
                X.indptr, X.indices, X.data, block.y, st.c, st.alpha, w, self.l2, lo, hi,
                st.active, self.with_u)
            u = block.spread(u[block.cols], len(w))
        if not self.with_u:  # nothing summed: nothing to send
            u = SparseVector(np.zeros(0, np.int64), np.zeros(0), len(w))
        if update:
            st.rows, st.lo, st.hi = st.active[:n_active], lo, hi
        return u, loss, dual, b_sum, b_sq, n_active

    def _ascent(self, block, st, view, alpha, rows, n_steps, seed, spread_stop=None):
        """Up to ``n_steps`` coordinate steps of the block over ``rows`` (in random order)
        on ``alpha``, in place, in ``view``; ``spread_stop`` as :func:`cocoa_local`'s
        (default: the machine's)."""
        _, _, pos, me, _ = st.view
        spread_stop = self.spread_stop if spread_stop is None else spread_stop
        if block.dense is not None:
            dense_cocoa_local(block.dense, block.y, st.c, st.sqn, alpha, view.w, view.hot,
                              me, self.sigma, self.l2, rows, n_steps, seed, spread_stop)
        else:
            cocoa_local(block.X.indptr, pos, block.X.data, block.y, st.c, st.sqn, alpha,
                        view.z, view.hot, me, view.slot, self.sigma, self.l2, rows, n_steps,
                        seed, spread_stop)

    def _exact_change(self, block, st, view, alpha):
        """The block's exact change of w from alpha_t to ``alpha``: all columns (a dense
        block, read off its row of the view's ``hot``) or ``len(block.cols)``."""
        if block.dense is not None:
            return view.hot[st.view[3]].copy()
        X = block.X
        return row_combination(X.indptr, X.indices, X.data, (alpha - st.alpha) * block.y,
                               block.n_columns)[block.cols]

    def rebuild(self, block, st):
        if block.dense is not None:
            return dense_row_combination(block.dense, st.alpha * block.y)
        w_loc = np.asarray(block.X.T @ (st.alpha * block.y))[block.cols]
        return block.spread(w_loc)

    def save(self, st):
        out = {"alpha": st.alpha, "shrink_bounds": np.array([st.lo, st.hi])}
        if st.step is not None:
            out["step"] = st.step
        return out

    def export(self, st):
        return st.alpha.copy()

    # --- on the client -----------------------------------------------------------------
    def warm(self, arrays, problem):
        """The previous fit's alpha scaled by C / C_old (w is rebuilt from it)."""
        return scaled_duals(arrays, self.C / float(problem["C"]))

    def message(self, blocks=None):
        return self.w

    def step(self, total, round, update):
        dw, cert, *search = total if update else (None, total)
        u, loss_sum, dual_sum, b_sum, b_sq, n_active = cert
        wsq = float(self.w @ self.w)
        # two dual-feasible points: the iterate alpha_t (w_t = w(alpha_t)) and the best
        # multiple of beta(w_t); the better one certifies w_t
        dual_alpha = dual_sum - 0.5 * wsq
        primal = 0.5 * wsq + loss_sum
        best = self._best.offer(primal, self.w)
        dual_beta = self._dual_beta(u, b_sum, b_sq, dual_alpha, round)
        extra = {"dual_alpha": dual_alpha, "active_rows": int(n_active),
                 "primal_iterate": primal}
        if update:
            e, self._change = self._take(dw, *search)
            self._acceptance = e
            if self.search is not None:
                extra["step"] = e[0]
            if self.search == "momentum":
                extra["momentum"] = e[1]
        return {"primal": best, "dual": max(dual_alpha, dual_beta), "extra": extra}

    def _dual_beta(self, u, b_sum, b_sq, dual_alpha, round):
        """D at the best multiple of beta(w_t) when the round summed u (else -inf), and
        whether the next round sums it (see the class docstring)."""
        value = -np.inf
        if self.with_u:
            value = dual_bound(u, b_sum, b_sq, self.l2)
            self._beta_round = round
        best = self._best.value
        near = self.tol is None or best - dual_alpha <= BETA_NEAR * self.tol * abs(best)
        self.with_u = (near or value > dual_alpha
                       or round + 1 - self._beta_round >= BETA_EVERY)
        return value

    def _take(self, dw, scalars=None, reach=None, image=None):
        """The round's step ``(e1, e2)`` and the change of w it makes: (1, 0) and the
        summed dw without a search; the exact step along dw (``"line"``, formulations.md
        1c: the blocks' ``scalars`` are the dual's slope less w.dw and its curvature less
        ||dw||^2, ``reach`` the largest feasible step); or, for ``"momentum"``, all of dw
        and then the exact step along the blocks' cut last steps, whose summed ``image``
        in w is P (the same scalars, from the proposal). Both searches are exact: the
        dual never decreases."""
        if self.search is None:
            return (1.0, 0.0), dw
        if self.search == "line":
            slope, curv = scalars
            eta = float(line_search(_dot(self.w, dw), sq_norm(dw) + curv, slope,
                                    upper=float(reach.values)))
            scaled = dw._replace(values=eta * dw.values) if isinstance(dw, SparseVector) \
                else eta * dw
            return (eta, 0.0), scaled
        slope, curv = scalars  # momentum: the whole proposal, then the best step along P
        P = np.array(to_dense(image), dtype=np.float64)
        dd = float(P @ P) + curv
        wd = float(self.w @ P) + _dot(P, dw)  # (w + dw).P: P from the proposal
        e2 = float(line_search(wd, dd, slope, upper=float(reach.values))) if dd > 0.0 else 0.0
        change = e2 * P
        add_into(change, dw)
        return (1.0, e2), change

    def advance(self):
        add_into(self.w, self._change)  # w_{t+1} = w_t + the step's change of w
        self._change = None
        return self._acceptance

    def restore(self, total):
        """After a lost worker: w from the states; the hosts' shared views end (the blocks
        may have moved), and the workers combine as parts from then on."""
        self.w = to_dense(total).astype(np.float64, copy=True)
        if self.host_views:
            self.host_views = {}
            self._combine(self.n_workers)

    def finish(self, engine):
        forget(engine.client, self._files)

    def model_arrays(self):
        return {"w": self.w, **self._best.arrays(self.C),
                "beta_rule": np.array([float(self.with_u), float(self._beta_round)])}

    def load_model_arrays(self, arrays):
        self.w = saved_array(arrays, "w", self.w.shape).copy()
        self._best.load(arrays, self.C, self.w.shape)
        if "beta_rule" in arrays:  # a resumed fit sums u where the whole fit would
            with_u, self._beta_round = saved_array(arrays, "beta_rule", (2,))
            self.with_u, self._beta_round = bool(with_u), int(self._beta_round)

    def coef(self):
        """The iterate of lowest primal (the one the last certificate is for)."""
        return self._best.get(self.w)


def auto_local_passes(nnz, n_rows, n_parts):
    """Passes per block per round for ``local_passes="auto"``: one worker's blocks share
    its w (Gauss-Seidel, the more passes a round the fewer rounds), so
    ``AUTO_WORK // work`` passes (1 to ``AUTO_MAX_PASSES``), ``work`` the non-zeros of the
    largest block (its rows, if more); several workers: 1."""
    if n_parts > 1:
        return 1.0
    work = max(max(nnz, default=0), max(n_rows, default=1))
    return float(passes_per_round(work, AUTO_WORK, AUTO_MAX_PASSES))


@register("cocoa", "binary", {
    "loss": Param("squared_hinge", ("choice", LOSSES)),
    "local_passes": Param("auto", ("auto", ("real", 0.0, None, True))),
    "aggregation": Param("momentum", ("choice", tuple(AGGREGATIONS))),
    "shrinking": Param(True, ("bool",)),
    "share": Param("worker", ("choice", SHARES)),
})
def build_cocoa(blocks, n_classes, seeds, *, C, tol, loss, local_passes, aggregation,
                shrinking, share):
    """CoCoA+ (:class:`CoCoA`) on every block at once; ``local_passes="auto"`` is
    :func:`auto_local_passes`; ``share="host"``: the worker processes of one host
    share one view (:func:`host_views`) and count as one part."""
    views = host_views(blocks) if share == "host" else {}
    files = {k: v[0] for k, v in views.items()}
    parts = {files.get(k, w) for k, w in enumerate(blocks.workers)}
    n_parts = len(parts)
    if local_passes == "auto":
        local_passes = auto_local_passes(blocks.nnz, blocks.n_rows, n_parts)
    machine = CoCoA(blocks.n_columns, n_parts, C=C, loss=loss,
                    local_passes=local_passes, aggregation=aggregation, shrinking=shrinking,
                    tol=tol, host_views=views, n_workers=len(set(blocks.workers)))
    return machine, AllBlocks()


def _column_info(block):
    return block.dense is not None, block.cols, block.col_counts, block.n_rows


def host_views(blocks):
    """``{block: (file, slot, slots, hot columns)}`` for the blocks whose host's worker
    processes share one view (:func:`~dasksvm.parallel.shared.share_hosts`): its hot
    columns as one worker's view would pick them from all of the host's blocks (None:
    a dense block, every column hot)."""
    by_worker = {}
    for k, w in enumerate(blocks.workers):
        by_worker.setdefault(w, []).append(k)
    if len(by_worker) < 2:
        return {}
    info = blocks.gather_map(_column_info, key="cocoa-columns")
    hot = {}

    def nbytes(order):
        group = [SimpleNamespace(cols=info[k][1], col_counts=info[k][2], n_rows=info[k][3])
                 for k in order]
        dense = any(info[k][0] for k in order)
        hot[tuple(order)] = None if dense else _hot_columns(group, blocks.n_columns)
        n_hot = blocks.n_columns if dense else len(hot[tuple(order)])
        return _host_nbytes(len(order), blocks.n_columns, n_hot)

    out = {}
    for w, (name, order) in share_hosts(blocks.client, by_worker, nbytes).items():
        for k in by_worker[w]:
            out[k] = (name, order.index(k), len(order), hot[tuple(order)])
    return out
