"""Parallel svmlight / LIBSVM loader producing row-chunked dask arrays of CSR blocks.

The work is split in three steps:

1. **Plan** (on the client, no data read): expand the paths, take each file's size,
   and cut every plain file into byte ranges of about ``blocksize``. A compressed
   file (``.xz``, ``.lzma``, ``.gz``, ``.bz2``) cannot be entered in the middle, so it
   gets one task that decompresses it as a stream.
2. **Parse** (one task per byte range or compressed file, on the workers): read the
   bytes, align them to whole lines, and run the numba kernel
   :func:`dasksvm.kernels.svmlight.parse_block` (``nogil``, so threads run in
   parallel). A compressed stream is parsed piece by piece, about ``blocksize``
   decompressed bytes at a time, so one task may return several pieces. Only the
   per-piece metadata (rows, largest and smallest feature index) comes back to the
   client.
3. **Assemble**: from the metadata the client decides the index base and
   ``n_features``, then builds ``X`` and ``y`` with known row chunks; each output
   block is made from its parsed piece where the piece lives.

Where the data lives: with a default :class:`distributed.Client` (the one
:func:`dask.base.get_scheduler` returns), the parse results stay on the workers as
futures and the returned arrays are persisted arrays whose blocks never pass
through the client. With any other scheduler (threads by default) the parse runs
through :func:`dask.compute` and the returned arrays hold the blocks in local
memory. In both cases each file byte is parsed exactly once.
"""

import bz2
import glob
import gzip
import lzma
import math
import numbers
import os

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.base import get_scheduler, tokenize
from dask.utils import parse_bytes

from ..kernels import svmlight as _kern

__all__ = ["load_svmlight"]

_OPENERS = {".xz": lzma.open, ".lzma": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_INT32_MAX = np.iinfo(np.int32).max
_READ_STEP = 1 << 16
_TERMINATORS = frozenset(b" \t\n\r\x0b\x0c#")

_REASONS = {
    _kern.ERR_LABEL: "the label is not a decimal number",
    _kern.ERR_INDEX: "a feature is not of the form index:value",
    _kern.ERR_VALUE: "a feature value is not a decimal number",
    _kern.ERR_NEGATIVE_INDEX: "negative feature index",
    _kern.ERR_ZERO_INDEX: "feature index 0 in a file read with zero_based=False "
    "(indices start at 1)",
    _kern.ERR_ORDER: "feature indices must be strictly increasing within a line "
    "(decreasing or repeated index)",
    _kern.ERR_INDEX_RANGE: f"feature index larger than {_kern.MAX_INDEX}",
    _kern.ERR_QID: "malformed qid token (expected qid:integer)",
    _kern.ERR_NONFINITE: "value is infinite or out of range of the output dtype",
}


class _BlockError(Exception):
    """A parse error in a buffer, with the buffer-local line (0-based)."""

    def __init__(self, code, token, line):
        super().__init__(code, token, line)
        self.code = code
        self.token = token
        self.line = line


def _describe(code, token):
    """Human-readable reason for a parse error on ``token`` (bytes)."""
    text = token[:60].decode("ascii", errors="backslashreplace")
    if len(token) > 60:
        text += "..."
    if any(b >= 128 for b in token):
        reason = "non-ASCII byte outside a comment"
    elif any(b < 32 or b == 127 for b in token):
        reason = "control character outside a comment"
    else:
        reason = _REASONS.get(code, "malformed line")
        number = token
        if code in (_kern.ERR_VALUE, _kern.ERR_NONFINITE) and b":" in token:
            number = token.split(b":", 1)[1]
        if code == _kern.ERR_INDEX and b":" not in token:
            reason = "a feature has no ':' (expected index:value)"
        elif code in (_kern.ERR_LABEL, _kern.ERR_VALUE, _kern.ERR_NONFINITE):
            try:
                value = float(number)
            except ValueError:
                pass
            else:
                if not math.isfinite(value):
                    what = "label" if code == _kern.ERR_LABEL else "feature value"
                    reason = f"{what} is NaN or infinite"
    return f"{reason} (token {text!r})"


def _token_at(buf, pos):
    """Bytes of the token starting at ``buf[pos]`` (up to whitespace or '#')."""
    stop = pos
    n = len(buf)
    while stop < n and stop - pos < 200 and buf[stop] not in _TERMINATORS:
        stop += 1
    return bytes(buf[pos:stop])


def _error(path, line_number, code, token):
    return ValueError(
        f"Invalid svmlight data in {path}, line {line_number}: {_describe(code, token)}"
    )


def _trim(a, n):
    """``a[:n]``, copied when that frees a large unused tail."""
    if len(a) - n > (1 << 20) and n < 0.75 * len(a):
        return a[:n].copy()
    return a[:n]


def _parse_buffer(buf, subtract, allow_zero, dtype):
    """Parse whole lines of svmlight text held in a uint8 array.

    Parameters
    ----------
    buf : ndarray of uint8
        Whole lines (the last may lack its newline).
    subtract : int
        0 or 1, subtracted from each feature index.
    allow_zero : bool
        Whether feature index 0 is valid.
    dtype : str
        dtype of the values, ``"<f8"`` or ``"<f4"``.

    Returns
    -------
    piece : tuple
        ``(indptr, indices, data, labels, max_index, min_index)`` where the
        indices are as written in the text minus ``subtract`` and ``max_index``,
        ``min_index`` are the raw extremes (-1 and ``MAX_INDEX + 1`` if none).
    n_newlines : int
        Newline bytes in ``buf``.

    Raises
    ------
    _BlockError
        On malformed input, with the buffer-local 0-based line.
    """
    n_nl, n_colon = _kern.count_delimiters(buf)
    idx_dtype = np.int32 if n_colon <= _INT32_MAX else np.int64
    data = np.empty(n_colon, dtype=dtype)
    indices = np.empty(n_colon, dtype=idx_dtype)
    indptr = np.empty(n_nl + 2, dtype=idx_dtype)
    labels = np.empty(n_nl + 1, dtype=np.float64)
    n_rows, nnz, max_index, min_index, code, err_pos, err_line, slow = _kern.parse_block(
        buf, data, indices, indptr, labels, int(subtract), bool(allow_zero)
    )
    # Tokens outside the exact fast path: converted by Python's float (correctly
    # rounded). They all precede any error the kernel stopped at.
    for start, stop, target, line in slow.tolist():
        token = bytes(buf[start:stop])
        value = float(token)
        if target >= 0:
            with np.errstate(over="ignore"):  # float32 overflow: reported just below
                data[target] = value
            finite = np.isfinite(data[target])
        else:
            labels[-1 - target] = value
            finite = math.isfinite(value)
        if not finite:
            code_here = _kern.ERR_NONFINITE if target >= 0 else _kern.ERR_LABEL
            raise _BlockError(code_here, token, line)
    if code != _kern.ERR_NONE:
        raise _BlockError(code, _token_at(buf, err_pos), err_line)
    piece = (
        _trim(indptr, n_rows + 1),
        _trim(indices, nnz),
        _trim(data, nnz),
        _trim(labels, n_rows),
        int(max_index),
        int(min_index),
    )
    return piece, int(n_nl)


def _read_into(f, out):
    """Fill ``out`` (uint8 array) from ``f``; return the number of bytes read."""
    view = memoryview(out).cast("B")
    total = 0
    while total < len(view):
        k = f.readinto(view[total:])
        if not k:
            break
        total += k
    return total


def _line_start(f, offset, size):
    """Position just after the first newline at or after ``offset`` (or ``size``)."""
    if offset <= 0:
        return 0
    if offset >= size:
        return size
    f.seek(offset)
    pos = offset
    while True:
        chunk = f.read(_READ_STEP)
        if not chunk:
            return size
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)


def _newlines_before(path, stop):
    """Number of newline bytes in ``path[:stop]`` (used only to report errors)."""
    count = 0
    step = 1 << 24
    buf = np.empty(step, dtype=np.uint8)
    with open(path, "rb") as f:
        done = 0
        while done < stop:
            k = _read_into(f, buf[: min(step, stop - done)])
            if not k:
                break
            count += int(_kern.count_newlines(buf[:k]))
            done += k
    return count


def _parse_range(path, offset, end, size, subtract, allow_zero, dtype):
    """Parse the lines of a plain file that belong to the byte range [offset, end).

    A range starts just after the first newline at or after ``offset`` (at 0 for
    the first range) and ends just after the first newline at or after ``end``,
    so consecutive ranges partition the file's lines.

    Returns
    -------
    list of tuple
        One piece (see :func:`_parse_buffer`).
    """
    with open(path, "rb") as f:
        start = _line_start(f, offset, size)
        stop = size if end >= size else _line_start(f, end, size)
        buf = np.empty(max(stop - start, 0), dtype=np.uint8)
        if len(buf):
            f.seek(start)
            n = _read_into(f, buf)
            if n != len(buf):
                raise OSError(f"{path} changed while it was being read")
    try:
        piece, _ = _parse_buffer(buf, subtract, allow_zero, dtype)
    except _BlockError as err:
        line = _newlines_before(path, start) + err.line + 1
        raise _error(path, line, err.code, err.token) from None
    return [piece]


def _parse_stream(path, blocksize, subtract, allow_zero, dtype):
    """Decompress ``path`` as a stream and parse it about ``blocksize`` bytes at a time.

    Returns
    -------
    list of tuple
        The pieces (see :func:`_parse_buffer`) in file order; at least one.
    """
    opener = _OPENERS[_suffix(path)]
    pieces = []
    lines_before = 0
    carry = np.empty(0, dtype=np.uint8)
    with opener(path, "rb") as f:
        while True:
            buf = np.empty(len(carry) + blocksize, dtype=np.uint8)
            buf[: len(carry)] = carry
            n = len(carry) + _read_into(f, buf[len(carry) :])
            at_eof = n < len(buf)
            if at_eof:
                cut = n
            else:
                cut = int(_kern.last_newline(buf, n)) + 1
                if cut == 0:  # a line longer than blocksize: read on
                    carry = buf[:n]
                    continue
            if cut > 0:
                try:
                    piece, n_nl = _parse_buffer(buf[:cut], subtract, allow_zero, dtype)
                except _BlockError as err:
                    line = lines_before + err.line + 1
                    raise _error(path, line, err.code, err.token) from None
                pieces.append(piece)
                lines_before += n_nl
            if at_eof:
                break
            carry = buf[cut:n].copy()
    if not pieces:
        pieces.append(_parse_buffer(np.empty(0, np.uint8), subtract, allow_zero, dtype)[0])
    return pieces


def _pieces_meta(pieces):
    """``[(n_rows, max_index, min_index), ...]`` for the pieces of one task."""
    return [(len(p[3]), p[4], p[5]) for p in pieces]


def _finalize_x(pieces, j, add_one, n_features):
    """CSR block of shape (n_rows, n_features) from piece ``j`` of a parse task."""
    indptr, indices, data, labels = pieces[j][:4]
    if add_one:
        indices = indices + 1
    block = sp.csr_matrix((data, indices, indptr), shape=(len(labels), n_features), copy=False)
    block.has_sorted_indices = True
    return block


def _piece_labels(pieces, j):
    """Labels of piece ``j`` of a parse task."""
    return pieces[j][3]


def _suffix(path):
    return os.path.splitext(path)[1].lower()


def _expand_paths(paths):
    """List of absolute file paths from a path, a glob pattern, or a list of those."""
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    else:
        try:
            items = list(paths)
        except TypeError:
            raise TypeError(
                "paths must be a path, a glob pattern or a list of them, "
                f"got {type(paths).__name__}"
            ) from None
        if not items:
            raise ValueError("no paths given")
    files = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"expected a path or glob pattern, got {type(item).__name__}")
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(p for p in glob.glob(text) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"no file matches the pattern {text!r}")
        else:
            if not os.path.isfile(text):
                raise FileNotFoundError(f"no such file: {text!r}")
            matches = [text]
        files.extend(os.path.abspath(p) for p in matches)
    return files


def _default_client():
    """The distributed Client that dask would use now, or None."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    owner = getattr(get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def _decide_layout(metas, zero_based, n_features):
    """Index shift, number of columns and non-empty pieces from the metadata."""
    flat = [m for task in metas for m in task]
    saw_zero = any(m[2] == 0 for m in flat)
    max_raw = max((m[1] for m in flat), default=-1)
    if zero_based == "auto":
        zero = add_one = saw_zero
    else:
        zero, add_one = bool(zero_based), False
    needed = 1 if max_raw < 0 else (max_raw + 1 if zero else max_raw)
    needed = max(needed, 1)
    if n_features is None:
        n_features = needed
    elif n_features < needed:
        raise ValueError(
            f"n_features={n_features}, but the data has feature index {max_raw} "
            f"({'zero' if zero else 'one'}-based), which needs n_features >= {needed}"
        )
    kept = [(i, j, m[0]) for i, task in enumerate(metas) for j, m in enumerate(task) if m[0]]
    return add_one, n_features, kept


def _make_arrays(x_blocks, y_blocks, row_chunks, n_features, dtype, token):
    """Dask arrays from per-block values (arrays or futures) with known chunks."""
    if not row_chunks:
        x_blocks = [sp.csr_matrix((0, n_features), dtype=dtype)]
        y_blocks = [np.empty(0, dtype=np.float64)]
        row_chunks = [0]
    name_x = f"load-svmlight-X-{token}"
    name_y = f"load-svmlight-y-{token}"
    X = da.Array(
        {(name_x, k, 0): b for k, b in enumerate(x_blocks)},
        name_x,
        (tuple(row_chunks), (n_features,)),
        meta=sp.csr_matrix((0, 0), dtype=dtype),
    )
    y = da.Array(
        {(name_y, k): b for k, b in enumerate(y_blocks)},
        name_y,
        (tuple(row_chunks),),
        meta=np.empty(0, dtype=np.float64),
    )
    return X, y


def load_svmlight(
    paths, *, n_features=None, blocksize="64MiB", dtype=np.float64, zero_based="auto"
):
    """Load svmlight / LIBSVM files into a row-chunked dask array of CSR blocks.

    Each line of a file is ``label index:value index:value ...`` with strictly
    increasing indices; ``qid:n`` right after the label is skipped, ``#`` starts a
    comment, and lines with nothing but whitespace or a comment are skipped. The
    result equals :func:`sklearn.datasets.load_svmlight_file` on the same file with
    the same ``n_features``: same values, same sparsity pattern (explicit zeros such
    as ``3:0`` are kept as stored entries) and same labels.

    Parameters
    ----------
    paths : str, path-like, or list of those
        A file, a glob pattern (its matches are taken in sorted order), or a list
        of files and patterns (taken in the order given). Rows of all files are
        concatenated. Files ending in ``.xz``, ``.lzma``, ``.gz`` or ``.bz2`` are
        decompressed as streams, inside the tasks. With a distributed cluster the
        paths must be readable by the workers.
    n_features : int, optional
        Number of columns. By default, the largest feature index over **all** the
        files. Pass it explicitly when train and test files are loaded by separate
        calls, so that both get the same number of columns.
    blocksize : int or str, default="64MiB"
        Approximate bytes of text per block (``dask.utils.parse_bytes`` strings
        are accepted). Plain files are cut into ranges of this size aligned to
        line ends and parsed in parallel; compressed files are decompressed by one
        task each and cut into pieces of about this many decompressed bytes.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        dtype of the values in ``X``. ``y`` is always float64.
    zero_based : bool or "auto", default="auto"
        Whether the feature indices in the files start at 0. ``"auto"``: zero-based
        if an index 0 appears anywhere in the files, otherwise one-based (indices
        are shifted down by one). With ``False`` an index 0 is an error.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
        Chunked along rows only, with known chunk sizes. Each block is a
        :class:`scipy.sparse.csr_matrix` of ``dtype`` with sorted indices and
        int32 ``indices``/``indptr`` (int64 only for a block of more than
        2**31 - 1 stored entries); ``X._meta`` is an empty ``csr_matrix``.
        Blocks with no rows are left out.
    y : dask.array.Array of shape (n_samples,)
        float64 labels, with the same row chunks as ``X``.

    Raises
    ------
    ValueError
        On malformed input, naming the file and the 1-based line number within
        it: a label or value that is not a decimal number (including NaN and
        infinity, and values that overflow ``dtype``), a feature without ``:``, a
        negative index, an index 0 with ``zero_based=False``, indices not strictly
        increasing within a line, an index above 2**31 - 2, a malformed ``qid``,
        or a byte outside ASCII (or an ASCII control byte) outside a comment.
        Also when ``n_features`` is smaller than the data needs.
    FileNotFoundError
        When a path does not exist or a pattern matches nothing.

    See Also
    --------
    sklearn.datasets.load_svmlight_file : the single-machine reference.

    Notes
    -----
    **Execution.** The files are first parsed by tasks (one per byte range of a
    plain file, one per compressed file); only small metadata (rows and largest
    and smallest index per block) returns to the client, which then fixes the
    index base and ``n_features`` and builds the output blocks from the parsed
    pieces. With a default :class:`distributed.Client`, the tasks are submitted
    to it, the output blocks are made on the worker that parsed them, and the
    returned arrays are persisted (their graphs hold futures; the function waits
    for them). Otherwise the parse runs through :func:`dask.compute` on the current
    scheduler (threads by default) and the arrays hold the blocks in memory.
    Either way every byte is parsed once, by a numba kernel that releases the
    GIL. Line numbers for error messages are computed only when an error occurs.

    **Why scipy CSR blocks** (and not pydata ``sparse``): the package's numba
    kernels read the ``(indptr, indices, data)`` triple of each block directly,
    and scikit-learn estimators accept ``csr_matrix`` blocks unchanged (they
    reject int64 indices, hence int32).

    **Differences from scikit-learn**, on input scikit-learn accepts: NaN and
    infinite labels or values are errors here; Python's digit separators
    (``1_000``) are not accepted; a ``qid`` token must be ``qid:integer``. With
    several files and ``zero_based="auto"``, the base is decided from the index 0
    over all files (scikit-learn's ``load_svmlight_files`` also treats a file
    without any feature as zero-based).

    Values are converted exactly: a fast path handles mantissas up to 2**53 with
    decimal exponents in [-22, 22]; longer or larger tokens (17+ significant
    digits, say) fall back to Python's ``float`` and are slower.

    Examples
    --------
    >>> from dasksvm.datasets import load_svmlight
    >>> X, y = load_svmlight("a9a.xz", n_features=123)  # doctest: +SKIP
    >>> X_test, y_test = load_svmlight("a9a.t.xz", n_features=123)  # doctest: +SKIP
    """
    files = _expand_paths(paths)
    if n_features is not None:
        if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral):
            raise TypeError(f"n_features must be an integer or None, got {n_features!r}")
        if n_features < 1:
            raise ValueError(f"n_features must be at least 1, got {n_features}")
        n_features = int(n_features)
    if not (zero_based == "auto" or zero_based is True or zero_based is False):
        raise ValueError(f"zero_based must be True, False or 'auto', got {zero_based!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    size = parse_bytes(blocksize) if isinstance(blocksize, str) else blocksize
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"blocksize must be a positive number of bytes, got {blocksize!r}")
    size = int(size)

    subtract = 0 if zero_based is True else 1
    allow_zero = zero_based is not False
    options = (subtract, allow_zero, dtype.str)
    specs = []
    stats = []
    for path in files:
        st = os.stat(path)
        stats.append((path, st.st_size, st.st_mtime_ns))
        if _suffix(path) in _OPENERS:
            specs.append((_parse_stream, (path, size) + options))
        else:
            n_blocks = max(1, -(-st.st_size // size))
            for k in range(n_blocks):
                end = min((k + 1) * size, st.st_size)
                specs.append((_parse_range, (path, k * size, end, st.st_size) + options))
    token = tokenize(stats, size, dtype.str, zero_based, n_features)
    parse_keys = [f"load-svmlight-parse-{token}-{i}" for i in range(len(specs))]

    client = _default_client()
    if client is None:
        tasks = [
            dask.delayed(func, pure=True)(*args, dask_key_name=key)
            for (func, args), key in zip(specs, parse_keys)
        ]
        parsed = dask.compute(*tasks)
        metas = [_pieces_meta(pieces) for pieces in parsed]
        add_one, n_features, kept = _decide_layout(metas, zero_based, n_features)
        x_blocks = [_finalize_x(parsed[i], j, add_one, n_features) for i, j, _ in kept]
        y_blocks = [_piece_labels(parsed[i], j) for i, j, _ in kept]
        row_chunks = [rows for _, _, rows in kept]
        return _make_arrays(x_blocks, y_blocks, row_chunks, n_features, dtype, token)

    from distributed import wait

    parsed = [
        client.submit(func, *args, key=key, pure=False)
        for (func, args), key in zip(specs, parse_keys)
    ]
    meta_keys = [f"load-svmlight-meta-{token}-{i}" for i in range(len(specs))]
    metas = client.gather(client.map(_pieces_meta, parsed, key=meta_keys, pure=False))
    add_one, n_features, kept = _decide_layout(metas, zero_based, n_features)
    name_x = f"load-svmlight-X-{token}"
    name_y = f"load-svmlight-y-{token}"
    x_blocks = [
        client.submit(_finalize_x, parsed[i], j, add_one, n_features, key=(name_x, k, 0))
        for k, (i, j, _) in enumerate(kept)
    ]
    y_blocks = [
        client.submit(_piece_labels, parsed[i], j, key=(name_y, k))
        for k, (i, j, _) in enumerate(kept)
    ]
    with client.as_current():  # wait() looks the client up; it may not be the global one
        wait(x_blocks + y_blocks)
    row_chunks = [rows for _, _, rows in kept]
    return _make_arrays(x_blocks, y_blocks, row_chunks, n_features, dtype, token)
