"""The one seed scheme: a ``numpy.random.SeedSequence`` spawned per round and block.

The seed of (round t, block k) is ``SeedSequence(entropy, spawn_key=(t, k))``:
it depends on nothing but the fit's entropy and its position, so a resumed
fit draws exactly the seeds the uninterrupted fit would have drawn, and the
blocks' seeds do not depend on which worker runs them.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Seeds"]


class Seeds:
    """Seeds of one fit.

    Parameters
    ----------
    random_state : None, int, numpy RandomState or Generator
        None draws fresh entropy; an int is the entropy itself.
    """

    def __init__(self, random_state=None):
        if random_state is None:
            entropy = np.random.SeedSequence().entropy
        elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
            entropy = int(random_state)
        elif isinstance(random_state, np.random.RandomState):
            entropy = int(random_state.randint(0, 2**31 - 1))
        elif isinstance(random_state, np.random.Generator):
            entropy = int(random_state.integers(0, 2**63 - 1))
        else:
            raise ValueError(f"random_state must be None, an int, a RandomState or a Generator, "
                             f"got {random_state!r}")
        if entropy < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state!r}")
        self.entropy = entropy

    def sequence(self, *position):
        """The ``SeedSequence`` at ``position`` (e.g. ``(round, block)``)."""
        return np.random.SeedSequence(self.entropy, spawn_key=tuple(int(p) for p in position))

    def seed(self, *position):
        """A 31-bit int seed at ``position``, for the numba kernels."""
        return int(self.sequence(*position).generate_state(1)[0] & 0x7FFFFFFF)

    def generator(self, *position):
        """A ``numpy.random.Generator`` at ``position``."""
        return np.random.default_rng(self.sequence(*position))
