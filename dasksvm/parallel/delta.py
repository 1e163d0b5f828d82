"""A round's message sent as its change from the one the worker already holds.

Between two rounds most solvers move their model only where the round's rows
touched it (CoCoA+ on sparse data: the columns of the rows visited), so the
engine keeps, per worker, the last message it sent, and sends the next one as
``(positions, new values)`` of the array entries that changed, when that is
under a quarter of the array. The values are the new ones, not differences:
the worker's copy is then bit-for-bit the client's. Any other leaf (scalars,
None, arrays whose shape or dtype changed, arrays that changed densely) goes
whole.

A message is a numpy array or a tuple / list of leaves. The worker keeps the
last message it received per fit (:func:`receive`) and patches it in place, so
a machine must not keep a reference to its round's message past the round.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Delta", "encode", "receive"]

#: a changed array goes as (positions, values) below this fraction of its entries
_SPARSE_FRACTION = 0.25


class _Changed:
    """The entries ``positions`` (of the flattened array) of a leaf now hold ``values``."""

    __slots__ = ("positions", "values")

    def __init__(self, positions, values):
        self.positions, self.values = positions, values


class Delta:
    """A message as version ``version``: whole (``base`` None) or as changes to ``base``."""

    __slots__ = ("base", "leaves", "version")

    def __init__(self, base, version, leaves):
        self.base, self.version, self.leaves = base, version, leaves

    def wire_nbytes(self):
        leaves, _ = _leaves(self.leaves)
        return sum(_leaf_nbytes(v) for v in leaves) + 16


def _leaf_nbytes(leaf):
    from .reduce import wire_nbytes

    if isinstance(leaf, _Changed):
        return int(leaf.positions.nbytes + leaf.values.nbytes)
    return wire_nbytes(leaf)


def _leaves(message):
    if type(message) in (tuple, list):  # not a NamedTuple such as a SparseVector
        return list(message), type(message)
    return [message], None


def _rebuild(leaves, kind):
    return leaves[0] if kind is None else kind(leaves)


def _changed(new, old):
    """``_Changed`` for ``new`` against ``old`` when few entries differ, else None."""
    if not (isinstance(new, np.ndarray) and isinstance(old, np.ndarray)) \
            or new.shape != old.shape or new.dtype != old.dtype or new.dtype.hasobject \
            or new.size == 0:
        return None
    flat_new, flat_old = new.reshape(-1), old.reshape(-1)
    pos = np.flatnonzero(flat_new != flat_old)
    if len(pos) > _SPARSE_FRACTION * new.size:
        return None
    pos = pos.astype(np.int32) if new.size < 2**31 else pos
    return _Changed(pos, flat_new[pos])


def _copy(leaf):
    """An array leaf's own C-ordered, writable copy (on an in-process cluster a whole
    message is the client's object, which patching must not touch); others as they are."""
    return np.array(leaf, order="C") if isinstance(leaf, np.ndarray) else leaf


def encode(message, held, version):
    """``(Delta to send, mirror)`` for ``message`` as ``version``.

    ``held`` is ``(version, mirror)``: the client's mirror of what the worker
    holds, or None (the message then goes whole, and the mirror is a new
    copy). Changes are applied to the mirror in place, as the worker will
    apply them to its copy: no copy of an unchanged array per round. Remember
    ``(version, mirror)`` as what the worker holds once the send succeeded
    (and forget it if the round failed: the mirror may be ahead).
    """
    leaves, kind = _leaves(message)
    whole = Delta(None, version, message)
    if held is not None:
        base, mirror = held
        old, old_kind = _leaves(mirror)
        if old_kind is kind and len(old) == len(leaves):
            sent = [_changed(new, prev) or new for new, prev in zip(leaves, old)]
            if any(isinstance(v, _Changed) for v in sent):
                kept = [_patch(prev, ch) for prev, ch in zip(old, sent)]
                return Delta(base, version, _rebuild(sent, kind)), (version,
                                                                    _rebuild(kept, kind))
    return whole, (version, _rebuild([_copy(v) for v in leaves], kind))


def _patch(held, change):
    """``held`` with ``change`` applied (in place for a :class:`_Changed`), or the new
    leaf's own copy."""
    if isinstance(change, _Changed):
        held.reshape(-1)[change.positions] = change.values
        return held
    return _copy(change)


def receive(wire, holder, lost):
    """The message ``wire`` (a :class:`Delta`) stands for, on a worker.

    ``holder`` is the worker's dict for this fit (``version``, ``message``):
    a whole message replaces it; changes are applied in place to the held
    message of their base version (a task re-run for a version finds it
    applied already). ``lost(text)`` is raised when the worker holds neither.
    """
    have = holder.get("version")
    if have == wire.version:
        return holder["message"]
    if wire.base is None:
        leaves, kind = _leaves(wire.leaves)
        message = _rebuild([_copy(v) for v in leaves], kind)
    elif have != wire.base:
        raise lost(f"this worker holds message version {have}, the change is from "
                   f"version {wire.base}")
    else:
        held, kind = _leaves(holder["message"])
        changes, _ = _leaves(wire.leaves)
        message = _rebuild([_patch(cur, ch) for cur, ch in zip(held, changes)], kind)
    holder.update(version=wire.version, message=message)
    return message
