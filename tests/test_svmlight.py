"""Tests of dasksvm.datasets.load_svmlight against scikit-learn's load_svmlight_file."""

import bz2
import gzip
import lzma
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_svmlight_file, load_svmlight_files

from dasksvm.datasets import load_svmlight

DATA_DIR = Path(
    os.environ.get("DASKSVM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
_AUXILIARY = (".vocab", ".classes", ".featmap")
DATA_FILES = (
    sorted(p.name for p in DATA_DIR.glob("*.xz") if not any(tag in p.name for tag in _AUXILIARY))
    if DATA_DIR.is_dir()
    else []
)
_NO_DATA = pytest.mark.skip(reason=f"dataset mirror {DATA_DIR} not found; set DASKSVM_DATA")
DATA_PARAMS = DATA_FILES or [pytest.param("missing", marks=_NO_DATA)]


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("svmlight-plain")


_REFERENCE = {}


def _plain_copy(plain_dir, name):
    """Decompressed copy of a data file (made once per module)."""
    target = plain_dir / name[: -len(".xz")]
    if not target.exists():
        with lzma.open(DATA_DIR / name, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def _reference(path, **kwargs):
    key = (str(path), tuple(sorted(kwargs.items())))
    if key not in _REFERENCE:
        _REFERENCE[key] = load_svmlight_file(str(path), **kwargs)
    return _REFERENCE[key]


def _blocks(X):
    return list(dask.compute(*X.to_delayed().ravel()))


def _assert_same(X, y, X_ref, y_ref):
    """Exact equality (values bit for bit, pattern, labels) and structural checks."""
    assert not any(np.isnan(c) for c in X.chunks[0])
    assert X.chunks[1] == (X_ref.shape[1],)
    assert y.chunks == (X.chunks[0],)
    assert isinstance(X._meta, sp.csr_matrix)
    assert X.shape == X_ref.shape
    blocks = _blocks(X)
    for block, rows in zip(blocks, X.chunks[0]):
        assert isinstance(block, sp.csr_matrix)
        assert block.shape == (rows, X.shape[1])
        assert block.indices.dtype == np.int32
        assert block.indptr.dtype == np.int32
        assert block.dtype == X.dtype
    got = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    X_ref = sp.csr_matrix(X_ref)
    assert got.shape == X_ref.shape
    np.testing.assert_array_equal(got.indptr, X_ref.indptr)
    np.testing.assert_array_equal(got.indices, X_ref.indices)
    assert got.dtype == X_ref.dtype
    np.testing.assert_array_equal(got.data.view(np.uint8), X_ref.data.view(np.uint8))
    y_got = y.compute()
    assert y_got.dtype == np.float64
    np.testing.assert_array_equal(y_got.view(np.uint64), np.asarray(y_ref).view(np.uint64))


def _write(path, text):
    data = text.encode("latin-1") if isinstance(text, str) else text
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", DATA_PARAMS)
def test_parity_compressed_one_block(name, plain_dir):
    """Each .xz file, decompressed inside one task, equals scikit-learn's parse."""
    X_ref, y_ref = _reference(_plain_copy(plain_dir, name))
    X, y = load_svmlight(DATA_DIR / name)
    assert X.numblocks == (1, 1)
    _assert_same(X, y, X_ref, y_ref)


@pytest.mark.parametrize("name", DATA_PARAMS)
def test_parity_plain_many_blocks(name, plain_dir):
    """The decompressed copy, cut into ~10 byte ranges, equals scikit-learn's parse."""
    path = _plain_copy(plain_dir, name)
    X_ref, y_ref = _reference(path)
    X, y = load_svmlight(path, blocksize=path.stat().st_size // 10 + 1)
    assert 5 <= X.numblocks[0] <= 20
    _assert_same(X, y, X_ref, y_ref)


@pytest.mark.skipif(not DATA_FILES, reason=f"dataset mirror {DATA_DIR} not found")
def test_multiple_files_share_n_features(plain_dir):
    train, test = _plain_copy(plain_dir, "a9a.xz"), _plain_copy(plain_dir, "a9a.t.xz")
    Xa, ya, Xb, yb = load_svmlight_files([str(train), str(test)], n_features=123)
    X_ref, y_ref = sp.vstack([Xa, Xb], format="csr"), np.concatenate([ya, yb])
    # explicit n_features, mixed compressed and plain, many blocks
    X, y = load_svmlight([train, DATA_DIR / "a9a.t.xz"], n_features=123, blocksize="256KiB")
    _assert_same(X, y, X_ref, y_ref)
    # n_features inferred as the maximum over both files (a9a.t alone has 122)
    X, y = load_svmlight([test, train])
    assert X.shape == (X_ref.shape[0], 123)
    assert load_svmlight(test)[0].shape[1] == 122
    assert load_svmlight(test, n_features=123)[0].shape[1] == 123
    with pytest.raises(ValueError, match="n_features=100"):
        load_svmlight(train, n_features=100)


def test_glob_sorted_order(tmp_path):
    _write(tmp_path / "b.svm", "2 1:2\n")
    _write(tmp_path / "a.svm", "1 3:1\n")
    _write(tmp_path / "c.svm.gz", gzip.compress(b"3 2:5\n"))
    X, y = load_svmlight(str(tmp_path / "*.svm*"))
    np.testing.assert_array_equal(y.compute(), [1, 2, 3])
    np.testing.assert_array_equal(X.compute().toarray(), [[0, 0, 1], [2, 0, 0], [0, 5, 0]])
    # an explicit list keeps the order given
    X, y = load_svmlight([tmp_path / "c.svm.gz", tmp_path / "a.svm"])
    np.testing.assert_array_equal(y.compute(), [3, 1])
    with pytest.raises(FileNotFoundError):
        load_svmlight(str(tmp_path / "*.none"))
    with pytest.raises(FileNotFoundError):
        load_svmlight(tmp_path / "missing.svm")


def _small_text(n_rows=400, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_rows):
        idx = np.sort(rng.choice(60, size=rng.integers(0, 8), replace=False)) + 1
        vals = rng.normal(size=len(idx))
        feats = " ".join(f"{j}:{v:.6g}" for j, v in zip(idx, vals))
        lines.append(f"{rng.integers(1, 4)} {feats}".rstrip())
        if i % 37 == 0:
            lines.append("# a comment: with 1:2 and caf\xe9")
        if i % 53 == 0:
            lines.append("")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "suffix, compress", [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)]
)
@pytest.mark.parametrize("blocksize", ["64MiB", 500])
def test_compressed_streams(tmp_path, suffix, compress, blocksize):
    text = _small_text()
    plain = _write(tmp_path / "plain.svm", text)
    packed = _write(tmp_path / ("data.svm" + suffix), compress(text.encode("latin-1")))
    X_ref, y_ref = load_svmlight_file(str(plain))
    X, y = load_svmlight(packed, blocksize=blocksize)
    if blocksize == 500:
        assert X.numblocks[0] > 5  # one task, many pieces
    _assert_same(X, y, X_ref, y_ref)


def test_float32(tmp_path):
    path = _write(tmp_path / "f.svm", _small_text() + "1 1:0.1 2:3.4028235e38 3:1e-40\n")
    X_ref, y_ref = load_svmlight_file(str(path), dtype=np.float32)
    X, y = load_svmlight(path, dtype=np.float32, blocksize=700)
    assert X.dtype == np.float32 and X._meta.dtype == np.float32
    _assert_same(X, y, X_ref, y_ref)


EDGE_TEXT = (
    "# header comment\n"
    "+1 qid:3 1:0.5 7:-2.5e-3 10:1E+2   # trailing comment with : and \xff\n"
    "-1\n"
    "\n"
    "   \t \n"
    "0 2:0 3:-0 4:.5 5:5. 6:+7 8:1e-320\r\n"
    "2.5\t1:1\t\t3:0.12345678901234567\x0b4:1e22 5:1e23 6:123456789012345678901234\n"
    "1e1 9:-0.000001234 11:000012 # comment\n"
    "3 1:4.9406564584124654e-324 2:1.7976931348623157e308\n"
    "-0 1:1\n"
    "7 +12:1"
)


@pytest.mark.parametrize("blocksize", ["1MiB", 7, 40])
def test_edge_cases_match_sklearn(tmp_path, blocksize):
    """Comments, qid, blank lines, CRLF, tabs, explicit zeros, no final newline..."""
    path = _write(tmp_path / "edge.svm", EDGE_TEXT)
    X_ref, y_ref = load_svmlight_file(str(path))
    X, y = load_svmlight(path, blocksize=blocksize)
    _assert_same(X, y, X_ref, y_ref)
    assert X.shape == (8, 12)
    assert X.compute().nnz == X_ref.nnz  # explicit zeros are stored entries


def test_zero_based(tmp_path):
    one = _write(tmp_path / "one.svm", "1 1:1 3:2\n-1 2:1\n")
    zero = _write(tmp_path / "zero.svm", "1 0:1 3:2\n-1 2:1\n")
    for path in (one, zero):
        for zb in ("auto", True, False) if path is one else ("auto", True):
            X_ref, y_ref = load_svmlight_file(str(path), zero_based=zb)
            X, y = load_svmlight(path, zero_based=zb)
            _assert_same(X, y, X_ref, y_ref)
    # "auto" looks at all files: a 0 in one of them makes all zero-based
    X, _ = load_svmlight([one, zero])
    assert X.shape == (4, 4)
    np.testing.assert_array_equal(X.compute().toarray()[0], [0, 1, 0, 2])
    with pytest.raises(ValueError, match=r"zero\.svm, line 1:"):
        load_svmlight(zero, zero_based=False)


def test_empty_inputs(tmp_path):
    for text in ["", "# only a comment\n\n", "1\n-1\n"]:
        path = _write(tmp_path / "e.svm", text)
        X_ref, y_ref = load_svmlight_file(str(path))
        X, y = load_svmlight(path)
        _assert_same(X, y, X_ref, y_ref)


def test_parameter_validation(tmp_path):
    path = _write(tmp_path / "p.svm", "1 1:1\n")
    with pytest.raises(ValueError, match="dtype"):
        load_svmlight(path, dtype=np.int64)
    with pytest.raises(ValueError, match="zero_based"):
        load_svmlight(path, zero_based="yes")
    with pytest.raises(ValueError, match="blocksize"):
        load_svmlight(path, blocksize=0)
    with pytest.raises(ValueError, match="n_features"):
        load_svmlight(path, n_features=0)
    with pytest.raises(TypeError):
        load_svmlight(path, n_features=1.5)


# ---------------------------------------------------------------------------- errors

# (kind, bad line, extra keyword arguments)
CORRUPTIONS = {
    "label-text": ("abc 1:2", {}),
    "label-nan": ("nan 1:2", {}),
    "label-inf": ("-inf 1:2", {}),
    "label-overflow": ("1e400 1:2", {}),
    "label-missing": ("1:2 3:4", {}),
    "value-text": ("1 1:x", {}),
    "value-empty": ("1 1:", {}),
    "value-nan": ("1 2:NaN", {}),
    "value-inf": ("1 2:inf", {}),
    "value-overflow": ("1 2:1e400", {}),
    "value-float32-overflow": ("1 2:1e39", {"dtype": np.float32}),
    "double-colon": ("1 2:3:4", {}),
    "missing-colon": ("1 1:2 5", {}),
    "index-text": ("1 a:2", {}),
    "index-zero-one-based": ("1 0:2 3:1", {"zero_based": False}),
    "index-negative": ("1 -3:2", {}),
    "index-decreasing": ("1 5:1 3:1", {}),
    "index-repeated": ("1 3:1 3:2", {}),
    "index-huge": ("1 99999999999:1", {}),
    "qid-bad": ("1 qid:x 2:1", {}),
    "non-ascii-label": ("1\xe9 2:1", {}),
    "non-ascii-token": ("1 2:1 \xff", {}),
    "control-byte": ("1 2:1\x00", {}),
}


def _corrupt_file(tmp_path, bad_line, line_number, n_lines=120, suffix=".svm"):
    rows = _small_text(n_rows=n_lines).splitlines()
    rows[line_number - 1] = bad_line
    text = ("\n".join(rows) + "\n").encode("latin-1")
    path = tmp_path / ("bad" + suffix)
    if suffix == ".gz":
        text = gzip.compress(text)
    path.write_bytes(text)
    return path


# scikit-learn accepts these (it stores NaN / inf, skips any qid, lets float32 overflow)
# or raises another exception type (OverflowError for the huge index)
_SKLEARN_DIFFERS = {
    "label-nan",
    "label-inf",
    "label-overflow",
    "value-nan",
    "value-inf",
    "value-overflow",
    "value-float32-overflow",
    "qid-bad",
    "index-huge",
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("layout", ["one-block", "many-blocks", "gz-pieces"])
def test_errors_name_file_and_line(tmp_path, kind, layout):
    bad, kwargs = CORRUPTIONS[kind]
    line_number = 97
    suffix = ".gz" if layout == "gz-pieces" else ".svm"
    path = _corrupt_file(tmp_path, bad, line_number, suffix=suffix)
    blocksize = "64MiB" if layout == "one-block" else 300
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line {line_number}:"):
        load_svmlight(path, blocksize=blocksize, **kwargs)
    if kind not in _SKLEARN_DIFFERS:
        with pytest.raises(ValueError):
            load_svmlight_file(str(path), **kwargs)


def test_error_messages_are_specific(tmp_path):
    cases = {
        "1 5:1 3:1": "strictly increasing",
        "1 -3:2": "negative feature index",
        "1 1:2 5": "no ':'",
        "nan 1:2": "label is NaN or infinite",
        "1 2:inf": "value is NaN or infinite",
        "1\xe9 2:1": "non-ASCII",
        "abc 1:2": "label is not a decimal number",
    }
    for bad, reason in cases.items():
        path = _write(tmp_path / "m.svm", f"1 1:1\n# c\n{bad}\n")
        with pytest.raises(ValueError, match=rf"line 3: .*{re.escape(reason)}"):
            load_svmlight(path)


def test_first_bad_line_is_reported(tmp_path):
    # line 2 overflows (found by the exact fallback), line 4 is malformed
    path = _write(tmp_path / "two.svm", "1 1:1\n1 1:1e999\n1 1:1\nx 1:1\n")
    with pytest.raises(ValueError, match="line 2:"):
        load_svmlight(path)


# ------------------------------------------------------------------------ hypothesis

_LABELS = st.one_of(
    st.sampled_from(["-1", "+1", "1", "0", "2", "17", "-0", "1.0", "3e0", "2.5E-1"]),
    st.integers(-5, 50).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
)


def _fmt(value, style):
    if style == "repr":
        return repr(value)
    if style == "plus":
        return "+" + repr(abs(value))
    if style == "int":
        return str(int(value))
    return format(value, style)


_VALUES = st.builds(
    _fmt,
    st.one_of(
        st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-310, 123456789.0]),
        st.integers(-1000, 1000).map(float),
    ),
    st.sampled_from(["repr", "plus", "int", ".6g", ".3e", ".17g", "E", ".20f", ".2f"]),
)
_SPACE = st.sampled_from([" ", "  ", "\t", " \t"])


@st.composite
def _rows(draw, min_rows=0, allow_zero=True):
    n = draw(st.integers(min_rows, 25))
    lines = []
    zero = allow_zero and draw(st.booleans())
    for _ in range(n):
        kind = draw(st.sampled_from(["row", "row", "row", "row", "comment", "blank"]))
        if kind == "comment":
            lines.append(draw(st.sampled_from(["# note", "#", "  # 3:4 qid:1", "#\xe9\xff"])))
            continue
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
            continue
        idx = sorted(draw(st.sets(st.integers(0 if zero else 1, 300), max_size=12)))
        parts = [draw(_LABELS)]
        if draw(st.integers(0, 9)) == 0:
            parts.append(f"qid:{draw(st.integers(0, 99))}")
        for i in idx:
            parts.append(f"{i}:{draw(_VALUES)}")
        sep = draw(_SPACE)
        line = sep.join(parts)
        if draw(st.integers(0, 5)) == 0:
            line += " # trailing: 1:2"
        lines.append(line)
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines)
    if lines and draw(st.booleans()):
        text += eol
    return text


_counter = iter(range(10**9))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_rows(), blocksize=st.sampled_from(["64MiB", 1, 13, 64, 200]))
def test_hypothesis_roundtrip(tmp_path, text, blocksize):
    path = _write(tmp_path / f"h{next(_counter)}.svm", text)
    X_ref, y_ref = load_svmlight_file(str(path))
    X, y = load_svmlight(path, blocksize=blocksize)
    _assert_same(X, y, X_ref, y_ref)


_BAD_TOKENS = {
    "label": lambda rest: "x1 " + rest,
    "label-nan": lambda rest: "nan " + rest,
    "value": lambda rest: "1 " + rest + " 400:abc",
    "value-inf": lambda rest: "1 " + rest + " 400:inf",
    "colon": lambda rest: "1 " + rest + " 400",
    "zero": lambda rest: "1 0:1 " + rest,
    "negative": lambda rest: "1 -2:1 " + rest,
    "decreasing": lambda rest: "1 " + rest + " 400:1 399:1",
    "repeated": lambda rest: "1 " + rest + " 400:1 400:1",
    "non-ascii": lambda rest: "1 " + rest + " 400:1\xe9",
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=_rows(min_rows=1, allow_zero=False),
    data=st.data(),
    kind=st.sampled_from(sorted(_BAD_TOKENS)),
    blocksize=st.sampled_from(["64MiB", 1, 17, 100]),
)
def test_hypothesis_corruption(tmp_path, text, data, kind, blocksize):
    lines = re.split(r"\r?\n", text) if text else [""]
    at = data.draw(st.integers(0, len(lines) - 1))
    rest = " ".join(f"{i}:1" for i in data.draw(st.sets(st.integers(1, 300), max_size=4)))
    rest = " ".join(sorted(rest.split(), key=lambda t: int(t.split(":")[0])))
    lines[at] = _BAD_TOKENS[kind](rest)
    path = _write(tmp_path / f"c{next(_counter)}.svm", "\n".join(lines))
    with pytest.raises(ValueError, match=rf"\.svm, line {at + 1}:"):
        load_svmlight(path, blocksize=blocksize, zero_based=False)


# ----------------------------------------------------------------------- distributed


@pytest.mark.skipif(not DATA_FILES, reason=f"dataset mirror {DATA_DIR} not found")
def test_distributed_blocks_stay_on_workers(process_client, plain_dir):
    from distributed import futures_of

    path = _plain_copy(plain_dir, "mr_tfidf.train.xz")
    X_ref, y_ref = _reference(path)
    with dask.config.set(scheduler=process_client):
        X, y = load_svmlight([path, DATA_DIR / "dna.scale.xz"], blocksize="200KiB", n_features=7727)
        futures = futures_of(X)
        assert len(futures) == X.numblocks[0] >= 5
        assert all(f.status == "finished" for f in futures)
        assert set(process_client.who_has(futures).keys()) == {f.key for f in futures}
        X_dna, y_dna = _reference(_plain_copy(plain_dir, "dna.scale.xz"), n_features=7727)
        X_all = sp.vstack([sp.csr_matrix(X_ref, shape=(X_ref.shape[0], 7727)), X_dna])
        _assert_same(X, y, X_all, np.concatenate([y_ref, y_dna]))
        n_ref = X_ref.shape[0]
        # per-row sums computed on the workers from the CSR blocks
        sums = X.map_blocks(
            lambda b: np.asarray(b.sum(axis=1)).ravel(),
            drop_axis=1,
            dtype=np.float64,
            meta=np.empty(0),
        ).compute()
        np.testing.assert_allclose(sums[:n_ref], np.asarray(X_ref.sum(axis=1)).ravel())

        bad = _corrupt_file(plain_dir, "1 3:1 2:1", 311, n_lines=400)
        with pytest.raises(ValueError, match=r"bad\.svm, line 311:"):
            load_svmlight(bad, blocksize=1000)


# ------------------------------------------------------------------------------ numba


def test_pure_python_kernel(tmp_path):
    """The kernel gives the same answer with NUMBA_DISABLE_JIT=1 (small input)."""
    path = _write(tmp_path / "nojit.svm", EDGE_TEXT)
    script = textwrap.dedent(
        f"""
        import numpy as np, dask
        from sklearn.datasets import load_svmlight_file
        from dasksvm.datasets import load_svmlight
        X, y = load_svmlight({str(path)!r}, blocksize=30)
        Xr, yr = load_svmlight_file({str(path)!r})
        X = X.compute(scheduler="sync")
        assert (X != Xr).nnz == 0 and X.nnz == Xr.nnz
        np.testing.assert_array_equal(y.compute(), yr)
        try:
            load_svmlight({str(path)!r}, zero_based=False, n_features=3)
        except ValueError as e:
            assert "n_features=3" in str(e), e
        else:
            raise AssertionError("no error")
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
