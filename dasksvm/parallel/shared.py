"""Arrays shared by the worker processes of one host, in a file of ``/dev/shm``.

A solver whose blocks on one worker share a view of the model (its threads stepping
at once) can widen that view to every worker process of a host: each process maps the
same file, so their steps meet in memory as threads' do. Nothing exact rides on it (the
view only decides which values the steps read; every block still returns its own exact
change), so a worker that cannot map it, or that waits too long for the others, steps
on its own view instead.

On the client :func:`share_hosts` groups workers by host, makes one file per host of
two or more of them, checks that every member maps the same memory (a mark each
writes, read back by all), and unlinks the file at once: the members' mappings keep it
alive until :func:`forget` drops them (at the end of the fit), so no file outlives a
fit, even one whose workers die.
"""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import urlparse

import numpy as np

#: where the shared files live (a RAM file system on Linux); without it nothing is shared
SHM_DIR = "/dev/shm"
#: seconds a worker waits for the other members of its host at the start of a round
#: before it steps without them (only the order of the steps depends on it)
MEET_TIMEOUT = 2.0

_MAPS = {}  # on a worker: file name -> its np.memmap (bytes)


def host_of(address):
    """The host part of a worker address (``tcp://10.0.0.5:4312`` -> ``10.0.0.5``)."""
    return urlparse(address).hostname or address


def _path(name):
    return os.path.join(SHM_DIR, name)


def _attach(name, nbytes, slots, dask_worker=None):
    """Map file ``name`` (made if missing) of ``nbytes``; write this worker's mark (its
    slot + 1) at each of its ``slots[address]`` in the first int64 words."""
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:  # reserve the pages now: a full tmpfs is an OSError here, not a SIGBUS later
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, nbytes)
        elif os.fstat(fd).st_size < nbytes:
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)
    m = np.memmap(_path(name), dtype=np.uint8, mode="r+", shape=(nbytes,))
    _MAPS[name] = m
    marks = m[:8 * sum(len(v) for v in slots.values())].view(np.int64)
    for s in slots[dask_worker.address]:
        marks[s] = s + 1


def _marked(name, n_slots):
    """Whether every slot's mark is visible in this worker's mapping."""
    m = _MAPS.get(name)
    return m is not None and bool(
        np.array_equal(m[:8 * n_slots].view(np.int64), np.arange(1, n_slots + 1)))


def _unlink(name):
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        pass


def _drop(names):
    for name in names:
        _MAPS.pop(name, None)


def share_hosts(client, blocks_by_worker, nbytes_of):
    """Files shared by the workers of each host holding two or more of them.

    ``blocks_by_worker``: ``{worker address: [its blocks]}``; a host's blocks take the
    slots 0, 1, ... of its arrays in the order of its workers and their lists.
    ``nbytes_of(blocks)``: the file size for a host's blocks (in slot order). Returns
    ``{worker address: (file name, its host's blocks in slot order)}`` for the workers
    whose host shares (checked); workers of other hosts are left out.
    """
    if not os.path.isdir(SHM_DIR):
        return {}
    hosts = {}
    for w in blocks_by_worker:
        hosts.setdefault(host_of(w), []).append(w)
    out = {}
    for members in hosts.values():
        if len(members) < 2:
            continue
        order = [k for w in members for k in blocks_by_worker[w]]
        slot = {k: i for i, k in enumerate(order)}
        slots = {w: [slot[k] for k in blocks_by_worker[w]] for w in members}
        name = f"dasksvm-{uuid.uuid4().hex}"
        try:
            client.run(_attach, name, int(nbytes_of(order)), slots, workers=members)
            ok = all(client.run(_marked, name, len(order), workers=members).values())
        except OSError:
            ok = False
        finally:
            client.run(_unlink, name, workers=members[:1])
        if ok:
            out.update({w: (name, order) for w in members})
        else:
            client.run(_drop, [name], workers=members)
    return out


def mapped(name):
    """This worker's mapping of ``name`` (bytes), or None (e.g. a worker started later)."""
    return _MAPS.get(name)


def forget(client, names):
    """Drop the workers' mappings of ``names`` (the fit is over)."""
    if names:
        client.run(_drop, sorted(names))


def meet(flags, slots, count, timeout=MEET_TIMEOUT):
    """Set ``flags[s] = count`` for this worker's ``slots``, then wait (polling) until
    every flag reaches ``count`` or ``timeout`` seconds pass; True if all met."""
    flags[slots] = count
    deadline = time.monotonic() + timeout
    while np.min(flags) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0001)
    return True
