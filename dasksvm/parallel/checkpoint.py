"""Checkpoint files: arrays and JSON metadata in one zip, with SHA-256s, never pickle.

A checkpoint is a zip archive (the ``.npz`` layout) holding one ``.npy``
member per array and ``meta.json``: the caller's metadata plus the SHA-256
of every array member. It is written atomically (a temporary file in the
same folder, flushed and fsynced, then renamed over the old one), so a fit
killed while writing leaves the previous checkpoint intact. Reading checks
every hash and loads arrays with ``allow_pickle=False``: a truncated,
altered or foreign file is refused with a ``ValueError`` saying why, and no
code in it ever runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["FORMAT", "read_checkpoint", "write_checkpoint"]

#: ``meta.json["format"]`` of the files this module writes
FORMAT = "dasksvm-checkpoint-1"


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def write_checkpoint(path, arrays, meta):
    """Write ``arrays`` (name -> ndarray, no object dtype) and ``meta`` (JSON-able) to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    hashes = {}
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, a in arrays.items():
                    if np.asarray(a).dtype == object:
                        raise TypeError(f"checkpoint array {name!r} has dtype object")
                    raw = _npy_bytes(a)
                    hashes[name] = hashlib.sha256(raw).hexdigest()
                    zf.writestr(f"{name}.npy", raw)
                body = {"format": FORMAT, "sha256": hashes, "meta": meta}
                zf.writestr("meta.json", json.dumps(body, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checkpoint(path):
    """``(arrays, meta)`` of a checkpoint file, every hash checked.

    Raises
    ------
    ValueError
        The file is missing, truncated, not a dasksvm checkpoint, or an array
        does not match its recorded SHA-256.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                body = json.loads(zf.read("meta.json"))
            except KeyError:
                raise ValueError(f"checkpoint {path!r} has no meta.json: not a dasksvm "
                                 "checkpoint") from None
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise ValueError(f"checkpoint {path!r} is not a {FORMAT} file")
            digests, meta = body.get("sha256"), body.get("meta")
            if not (isinstance(digests, dict) and isinstance(meta, dict)
                    and all(isinstance(k, str) and isinstance(v, str)
                            for k, v in digests.items())):
                raise ValueError(f"checkpoint {path!r}: malformed meta.json (sha256 must map "
                                 "names to digests, meta must be an object)")
            arrays = {}
            members = set(zf.namelist()) - {"meta.json"}
            expected = {f"{n}.npy" for n in body["sha256"]}
            if members != expected:
                raise ValueError(f"checkpoint {path!r} holds members {sorted(members)}, its "
                                 f"metadata lists {sorted(expected)}: altered file")
            for name, digest in body["sha256"].items():
                raw = zf.read(f"{name}.npy")
                if hashlib.sha256(raw).hexdigest() != digest:
                    raise ValueError(f"checkpoint {path!r}: array {name!r} does not match its "
                                     "SHA-256 (corrupted or altered file)")
                arrays[name] = np.load(io.BytesIO(raw), allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"checkpoint {path!r} is truncated or corrupted ({e})") from None
    return arrays, body["meta"]
