"""The one helper that names task keys (the tests import it too).

A key reads ``{prefix}-{step}-r{round}-{where}-{token}``: ``prefix`` is the
solver (``cocoa``), ``step`` what the task does (``local``, ``init``,
``certify``, several words joined by dashes are fine), ``round`` the round,
``where`` the worker or block the task is for (``w0``, ``b3``) and ``token``
the fit's token. :func:`dask.utils.key_split` of such a key is
``"{prefix}-{step}"``, the group the dashboard shows.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["new_token", "task_key"]

_WORD = re.compile(r"^[a-z][a-z]*$")


def new_token():
    """A short random token that keeps task keys of different fits apart."""
    return uuid.uuid4().hex[:8]


def task_key(prefix, step, token, *, round=None, where=None, attempt=0):
    """The key of one task.

    Parameters
    ----------
    prefix, step : str
        Words of letters only (``step`` may join several with dashes): they
        form the dashboard group ``f"{prefix}-{step}"``.
    token : str
        The fit's token.
    round : int, optional
        Appended as ``r{round}``.
    where : str or sequence of str, optional
        Placement tags (``"w0"``, ``"b3"``, ``"l1"``), appended in order.
    attempt : int
        Retries of the same task after a worker was lost (``a1``, ...).
    """
    words = [prefix, *step.split("-")]
    for w in words:
        if not _WORD.match(w):
            raise ValueError(f"key words must be lowercase letters only, got {w!r} in {step!r}")
    parts = list(words)
    if round is not None:
        parts.append(f"r{int(round)}")
    if where is not None:
        parts.extend([where] if isinstance(where, str) else list(where))
    if attempt:
        parts.append(f"a{int(attempt)}")
    parts.append(token)
    return "-".join(parts)
