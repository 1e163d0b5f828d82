"""Numba kernels that parse svmlight / LIBSVM text held in a ``uint8`` array.

The kernels know nothing of files, dask or scipy: they take a byte buffer and
preallocated output arrays and return plain integers and small arrays. The
caller (:mod:`dasksvm.datasets.svmlight`) turns error codes into messages that
name the file and the line.

Grammar accepted, one sample per line (lines end with ``\\n``)::

    line    := [ws] [label {ws [qid] feature}* ] [ws] ['#' comment]
    label   := decimal
    qid     := 'qid:' ['+'|'-'] digits        (first feature token only; skipped)
    feature := ['+'|'-'] digits ':' decimal
    decimal := ['+'|'-'] (digits ['.' [digits]] | '.' digits) [('e'|'E') ['+'|'-'] digits]

``ws`` is any of the ASCII whitespace bytes ``b" \\t\\r\\v\\f"`` (the set that
``bytes.split`` uses, so CRLF line endings are accepted). A token ends at
whitespace, at the end of the line or at ``#``; everything from ``#`` to the end of
the line is a comment. Lines that hold nothing but whitespace and comments are
skipped and produce no row, as in :func:`sklearn.datasets.load_svmlight_file`.

Decimal values are converted exactly (correctly rounded, the same double that
Python's ``float`` returns). A fast path covers mantissas of at most 2**53 with a
decimal exponent in [-22, 22] (Clinger's exact case: one correctly rounded IEEE
multiplication or division of two exactly representable numbers). Any other
token is reported back in the ``slow`` table and converted by the caller with
Python's ``float``, so the result never depends on an approximate conversion.
"""

import numpy as np
from numba import njit

__all__ = [
    "ERR_INDEX",
    "ERR_INDEX_RANGE",
    "ERR_LABEL",
    "ERR_NEGATIVE_INDEX",
    "ERR_NONE",
    "ERR_NONFINITE",
    "ERR_ORDER",
    "ERR_QID",
    "ERR_VALUE",
    "ERR_ZERO_INDEX",
    "MAX_INDEX",
    "count_delimiters",
    "count_newlines",
    "last_newline",
    "parse_block",
]

ERR_NONE = 0
ERR_LABEL = 1  # the label is not a finite decimal number
ERR_INDEX = 2  # a feature token is not ``integer:value``
ERR_VALUE = 3  # a feature value is not a finite decimal number
ERR_NEGATIVE_INDEX = 4  # a feature index below zero
ERR_ZERO_INDEX = 5  # index 0 while zero-based indices are not allowed
ERR_ORDER = 6  # a feature index not greater than the one before it
ERR_INDEX_RANGE = 7  # a feature index that does not fit a 32-bit column index
ERR_QID = 8  # a ``qid`` token that is not ``qid:integer``
ERR_NONFINITE = 9  # a value that is finite as text but not in the output dtype

#: Largest feature index accepted: ``index + 1`` columns must fit an int32.
MAX_INDEX = 2**31 - 2

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
_MANTISSA_MAX = 2**53
_MAX_SIG_DIGITS = 18  # 10**18 - 1 < 2**63 - 1: the mantissa never overflows int64


@njit(nogil=True, cache=True)
def _is_terminator(c):
    # ASCII whitespace (\t \n \v \f \r, space) or '#'
    return c == 32 or (c >= 9 and c <= 13) or c == 35


@njit(nogil=True, cache=True)
def _is_blank(c):
    # whitespace inside a line: space, \t, \v, \f, \r (\n ends the line)
    return c == 32 or c == 9 or c == 11 or c == 12 or c == 13


@njit(nogil=True, cache=True)
def _parse_decimal(buf, p, end):
    """Parse a decimal number starting at ``buf[p]``.

    Returns ``(status, value, q)``: ``status`` is 0 when ``value`` is exact, 1 when
    the token is well formed but must be converted by the caller (slow path),
    -1 when it is malformed; ``q`` is the position of the byte after the token.
    """
    neg = False
    if p < end and (buf[p] == 43 or buf[p] == 45):
        neg = buf[p] == 45
        p += 1
    m = np.int64(0)
    n_sig = 0
    n_digits = 0
    exp10 = np.int64(0)
    slow = False
    while p < end:
        c = np.int64(buf[p])
        if c < 48 or c > 57:
            break
        n_digits += 1
        if m != 0 or c != 48:
            if n_sig < _MAX_SIG_DIGITS:
                m = m * 10 + (c - 48)
                n_sig += 1
            else:
                slow = True
        p += 1
    if p < end and buf[p] == 46:
        p += 1
        while p < end:
            c = np.int64(buf[p])
            if c < 48 or c > 57:
                break
            n_digits += 1
            if m == 0 and c == 48:
                exp10 -= 1
            elif n_sig < _MAX_SIG_DIGITS:
                m = m * 10 + (c - 48)
                n_sig += 1
                exp10 -= 1
            else:
                slow = True
            p += 1
    if n_digits == 0:
        return -1, 0.0, p
    if p < end and (buf[p] == 101 or buf[p] == 69):
        p += 1
        eneg = False
        if p < end and (buf[p] == 43 or buf[p] == 45):
            eneg = buf[p] == 45
            p += 1
        e = np.int64(0)
        n_exp = 0
        while p < end:
            c = np.int64(buf[p])
            if c < 48 or c > 57:
                break
            if e < 100000:
                e = e * 10 + (c - 48)
            n_exp += 1
            p += 1
        if n_exp == 0:
            return -1, 0.0, p
        if eneg:
            exp10 -= e
        else:
            exp10 += e
    if p < end and not _is_terminator(buf[p]):
        return -1, 0.0, p
    if m == 0 and not slow:
        v = 0.0
    elif slow or m > _MANTISSA_MAX or exp10 > 22 or exp10 < -22:
        return 1, 0.0, p
    elif exp10 >= 0:
        v = float(m) * _POW10[exp10]
    else:
        v = float(m) / _POW10[-exp10]
    if neg:
        v = -v
    return 0, v, p


@njit(nogil=True, cache=True)
def count_delimiters(buf):
    """Count newlines and colons in ``buf``.

    Parameters
    ----------
    buf : ndarray of uint8

    Returns
    -------
    n_newlines, n_colons : int
        Upper bounds used to size the outputs of :func:`parse_block`: rows are at
        most ``n_newlines + 1``, stored entries at most ``n_colons``.
    """
    n_nl = 0
    n_colon = 0
    for i in range(buf.shape[0]):
        c = buf[i]
        n_nl += c == 10
        n_colon += c == 58
    return n_nl, n_colon


@njit(nogil=True, cache=True)
def count_newlines(buf):
    """Number of ``\\n`` bytes in ``buf`` (ndarray of uint8)."""
    n = 0
    for i in range(buf.shape[0]):
        n += buf[i] == 10
    return n


@njit(nogil=True, cache=True)
def last_newline(buf, n):
    """Index of the last ``\\n`` in ``buf[:n]``, or -1 if there is none."""
    for i in range(n - 1, -1, -1):
        if buf[i] == 10:
            return i
    return -1


@njit(nogil=True, cache=True)
def _grow(table, n):
    if n < table.shape[0]:
        return table
    bigger = np.empty((2 * table.shape[0], table.shape[1]), dtype=table.dtype)
    bigger[:n] = table[:n]
    return bigger


@njit(nogil=True, cache=True)
def parse_block(buf, data, indices, indptr, labels, subtract, allow_zero):
    """Parse svmlight text into CSR arrays.

    Parameters
    ----------
    buf : ndarray of uint8
        Whole lines of svmlight text (the last one may lack its ``\\n``).
    data : ndarray of float64 or float32, shape (n_colons,)
        Output values; at least as long as the number of ``:`` in ``buf``.
    indices : ndarray of int32 or int64, shape (n_colons,)
        Output column indices: the index in the file minus ``subtract``.
    indptr : ndarray of int32 or int64, shape (n_newlines + 2,)
        Output row pointers.
    labels : ndarray of float64, shape (n_newlines + 1,)
        Output labels.
    subtract : int
        0 or 1, subtracted from every feature index on output.
    allow_zero : bool
        Whether a feature index of 0 is valid.

    Returns
    -------
    n_rows, nnz : int
        Rows and stored entries written.
    max_index, min_index : int
        Largest and smallest feature index as written in the text (-1 and
        ``MAX_INDEX + 1`` when there are no entries).
    err_code : int
        ``ERR_NONE`` or one of the ``ERR_*`` codes; on error the other outputs are
        incomplete.
    err_pos, err_line : int
        Byte position of the offending token and number of ``\\n`` before it.
    slow : ndarray of int64, shape (n_slow, 4)
        Tokens whose conversion is left to the caller: ``(start, stop, target,
        line)`` where ``target >= 0`` is a position in ``data`` and
        ``target < 0`` means ``labels[-1 - target]``.
    """
    n = buf.shape[0]
    slow = np.empty((16, 4), dtype=np.int64)
    n_slow = 0
    pos = 0
    line = 0
    row = 0
    nnz = 0
    max_index = -1
    min_index = MAX_INDEX + 1
    indptr[0] = 0
    while pos < n:
        # one line: [pos, next \n); tokens are parsed up to n, '\n' ends them
        p = pos
        while p < n and _is_blank(buf[p]):
            p += 1
        if p < n and buf[p] != 10 and buf[p] != 35:
            status, v, q = _parse_decimal(buf, p, n)
            if status < 0:
                return row, nnz, max_index, min_index, ERR_LABEL, p, line, slow[:n_slow]
            if status == 1:
                slow = _grow(slow, n_slow)
                slow[n_slow, 0] = p
                slow[n_slow, 1] = q
                slow[n_slow, 2] = -1 - row
                slow[n_slow, 3] = line
                n_slow += 1
            labels[row] = v
            p = q
            first = True
            prev = np.int64(-1)
            while True:
                while p < n and _is_blank(buf[p]):
                    p += 1
                if p >= n or buf[p] == 10 or buf[p] == 35:
                    break
                start = p
                if (
                    first
                    and p + 3 < n
                    and buf[p] == 113
                    and buf[p + 1] == 105
                    and buf[p + 2] == 100
                ):
                    # 'qid:<integer>' as the first feature token: skipped
                    first = False
                    p += 3
                    ok = p < n and buf[p] == 58
                    p += 1
                    if ok and p < n and (buf[p] == 43 or buf[p] == 45):
                        p += 1
                    n_dig = 0
                    while p < n and buf[p] >= 48 and buf[p] <= 57:
                        p += 1
                        n_dig += 1
                    if not ok or n_dig == 0 or (p < n and not _is_terminator(buf[p])):
                        return (row, nnz, max_index, min_index, ERR_QID, start, line, slow[:n_slow])
                    continue
                first = False
                neg = False
                if buf[p] == 43 or buf[p] == 45:
                    neg = buf[p] == 45
                    p += 1
                idx = np.int64(0)
                n_dig = 0
                while p < n:
                    c = np.int64(buf[p])
                    if c < 48 or c > 57:
                        break
                    if idx <= MAX_INDEX:
                        idx = idx * 10 + (c - 48)
                    n_dig += 1
                    p += 1
                if n_dig == 0 or p >= n or buf[p] != 58:
                    return row, nnz, max_index, min_index, ERR_INDEX, start, line, slow[:n_slow]
                if neg and idx != 0:
                    return (
                        row,
                        nnz,
                        max_index,
                        min_index,
                        ERR_NEGATIVE_INDEX,
                        start,
                        line,
                        slow[:n_slow],
                    )
                if idx == 0 and not allow_zero:
                    return (
                        row,
                        nnz,
                        max_index,
                        min_index,
                        ERR_ZERO_INDEX,
                        start,
                        line,
                        slow[:n_slow],
                    )
                if idx <= prev:
                    return row, nnz, max_index, min_index, ERR_ORDER, start, line, slow[:n_slow]
                if idx > MAX_INDEX:
                    return (
                        row,
                        nnz,
                        max_index,
                        min_index,
                        ERR_INDEX_RANGE,
                        start,
                        line,
                        slow[:n_slow],
                    )
                status, v, q = _parse_decimal(buf, p + 1, n)
                if status < 0:
                    return row, nnz, max_index, min_index, ERR_VALUE, start, line, slow[:n_slow]
                if status == 1:
                    slow = _grow(slow, n_slow)
                    slow[n_slow, 0] = p + 1
                    slow[n_slow, 1] = q
                    slow[n_slow, 2] = nnz
                    slow[n_slow, 3] = line
                    n_slow += 1
                data[nnz] = v
                if not np.isfinite(data[nnz]):
                    # finite double that overflows a float32 output
                    return (
                        row,
                        nnz,
                        max_index,
                        min_index,
                        ERR_NONFINITE,
                        start,
                        line,
                        slow[:n_slow],
                    )
                indices[nnz] = idx - subtract
                nnz += 1
                max_index = max(max_index, idx)
                min_index = min(min_index, idx)
                prev = idx
                p = q
            row += 1
            indptr[row] = nnz
        while p < n and buf[p] != 10:  # rest of a comment
            p += 1
        pos = p + 1
        line += 1
    return row, nnz, max_index, min_index, ERR_NONE, 0, 0, slow[:n_slow]
