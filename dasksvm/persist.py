"""Model files: a fitted estimator as arrays and JSON, never pickle.

:func:`save_model` writes a fitted estimator to one file and
:func:`load_model` reads it back. The file is a checkpoint file of
:mod:`dasksvm.parallel.checkpoint` (a zip of ``.npy`` members, each with its
SHA-256 in ``meta.json``, written atomically), whose metadata holds:

* ``kind`` (``"dasksvm-model"``), ``format_version`` (:data:`FORMAT_VERSION`),
  ``dasksvm_version`` and ``sklearn_version`` (of the writer);
* ``estimator``: the class name (from an allow-list, :data:`ALLOWED`; dasksvm's
  ``MaxAbsScaler`` is ``"dasksvm.MaxAbsScaler"``, scikit-learn's ``"MaxAbsScaler"``), its
  parameters (``get_params(deep=False)``, JSON values; ``client`` and
  ``callback`` are dropped, and a ``random_state`` that is a ``RandomState``
  or ``Generator`` is stored as None and listed under ``dropped``) and its
  fitted attributes: ndarrays as members of the zip, scipy CSR matrices as
  three arrays and a shape, numbers, strings, lists and dicts as JSON,
  ``history_`` as plain JSON; a ``Pipeline`` lists its steps instead of its
  ``steps`` parameter;
* ``estimator_sha256``: the SHA-256 of that tree in canonical JSON, so that
  an altered ``meta.json`` is refused as well as an altered array.

Loading runs no code from the file: arrays are read with
``numpy.load(allow_pickle=False)``, classes are looked up in the allow-list
by name (nothing is imported by a name the file gives), the constructor of
an allowed class receives JSON values only, and attribute names are checked
(identifiers, not dunders, not names the class defines such as methods).
Any problem is a ``ValueError`` saying why.

Examples
--------
>>> import dasksvm                                           # doctest: +SKIP
>>> model = dasksvm.LinearSVC().fit(X, y)                    # doctest: +SKIP
>>> dasksvm.save_model(model, "a9a.model")                   # doctest: +SKIP
>>> dasksvm.load_model("a9a.model").predict(X_test)          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re

import numpy as np
import scipy.sparse as sp

from .parallel.checkpoint import read_checkpoint, write_checkpoint

__all__ = ["ALLOWED", "FORMAT_VERSION", "MODEL_KIND", "load_model", "save_model"]

#: ``meta["kind"]`` of a model file
MODEL_KIND = "dasksvm-model"
#: the model format this version writes (and the newest it reads)
FORMAT_VERSION = 1

#: estimators a model file may hold at its top level (and as pipeline steps)
ALLOWED = (
    "LinearSVC",
    "MulticlassSVC",
    "CascadeSVC",
    "RandomFourierFeatures",
    "OrthogonalRandomFeatures",
    "Nystroem",
    "dasksvm.MaxAbsScaler",
    "Pipeline",
)
#: scikit-learn transformers allowed only as steps of a pipeline
_STEP_ONLY = ("MaxAbsScaler", "StandardScaler")
#: parameters never saved (handles on a running process)
_DROPPED = ("client", "callback")
#: attributes never saved, and refused in a file: the in-memory state of a warm start
#: (``warm_start=True``; futures and solver state of the process that fitted)
_NOT_SAVED = ("_warm_state",)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DTYPES = ("float64", "float32")
_SPARSE = {"csr_matrix": sp.csr_matrix, "csr_array": sp.csr_array}


def _classes():
    """Name -> class of everything a model file may name (imported here, by us)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    from .estimators.cascade import CascadeSVC
    from .estimators.features import MaxAbsScaler as DaskMaxAbsScaler
    from .estimators.features import Nystroem, OrthogonalRandomFeatures, RandomFourierFeatures
    from .estimators.linear import LinearSVC
    from .estimators.multiclass import MulticlassSVC

    return {
        "LinearSVC": LinearSVC,
        "MulticlassSVC": MulticlassSVC,
        "CascadeSVC": CascadeSVC,
        "RandomFourierFeatures": RandomFourierFeatures,
        "OrthogonalRandomFeatures": OrthogonalRandomFeatures,
        "Nystroem": Nystroem,
        "dasksvm.MaxAbsScaler": DaskMaxAbsScaler,
        "Pipeline": Pipeline,
        "MaxAbsScaler": MaxAbsScaler,
        "StandardScaler": StandardScaler,
    }


def _digest(tree):
    text = json.dumps(tree, sort_keys=True, ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- writing


class _Writer:
    """Encodes values to JSON, putting arrays aside as named zip members."""

    def __init__(self):
        self.arrays = {}

    def array(self, a, where):
        a = np.asarray(a)
        tag = {}
        if a.dtype == object:
            flat = a.ravel().tolist()
            if not all(isinstance(v, str) for v in flat):
                raise ValueError(f"cannot save {where}: an object array that is not all "
                                 "strings (model files hold no pickled objects)")
            a = np.array(flat, dtype=str).reshape(a.shape)
            tag["object"] = True
        if a.dtype.kind not in "biufU":
            raise ValueError(f"cannot save {where}: arrays of dtype {a.dtype} are not supported")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return {"$array": name, **tag}

    def value(self, v, where, plain=False):
        """JSON for ``v``; ``plain``: arrays become lists (for ``history_``)."""
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, os.PathLike):  # a checkpoint path: its text
            return os.fspath(v)
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v)
        if isinstance(v, np.ndarray):
            if plain:
                return self.value(v.tolist(), where, plain)
            return self.array(v, where)
        if sp.issparse(v):
            fmt = type(v).__name__
            if fmt not in _SPARSE or plain:
                raise ValueError(f"cannot save {where}: a sparse {fmt} (only CSR matrices)")
            return {"$csr": {"format": fmt, "shape": [int(n) for n in v.shape],
                             "data": self.array(v.data, where),
                             "indices": self.array(v.indices, where),
                             "indptr": self.array(v.indptr, where)}}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]", plain) for i, x in enumerate(v)]
        if isinstance(v, tuple):
            items = [self.value(x, f"{where}[{i}]", plain) for i, x in enumerate(v)]
            return items if plain else {"$tuple": items}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self.value(x, f"{where}[{k!r}]", plain) for k, x in v.items()}
            return {"$dict": [[self.value(k, where, plain), self.value(x, f"{where}[{k!r}]", plain)]
                              for k, x in v.items()]}
        if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
            name = np.dtype(v).name
            if name not in _DTYPES:
                raise ValueError(f"cannot save {where}: dtype {name} (only {list(_DTYPES)})")
            return {"$dtype": name, "type": not isinstance(v, np.dtype)}
        raise ValueError(f"cannot save {where}: a {type(v).__name__} is not an array, number, "
                         "string, list or dict")

    def estimator(self, est, where, classes, step=False):
        allowed = ALLOWED + (_STEP_ONLY if step else ())
        # the record's name of the class: dasksvm's own classes that share a name with
        # scikit-learn's (MaxAbsScaler) are "dasksvm.<name>"
        name = next((n for n in allowed if classes.get(n) is type(est)), type(est).__name__)
        if name not in allowed or classes.get(name) is not type(est):
            kind = "a pipeline step" if step else "a model file"
            raise ValueError(f"cannot save {where}: {type(est).__module__}.{name} is not an "
                             f"estimator {kind} may hold (allowed: {', '.join(allowed)})")
        params = est.get_params(deep=False)
        node = {"class": name, "params": {}, "dropped": []}
        if name == "Pipeline":
            if step:
                raise ValueError(f"cannot save {where}: a Pipeline inside a Pipeline")
            steps = params.pop("steps")
            node["steps"] = [[str(n), self.estimator(s, f"step {n!r}", classes, step=True)]
                             for n, s in steps]
        for p, v in params.items():
            if p in _DROPPED:
                continue
            if p == "random_state" and isinstance(v, (np.random.RandomState,
                                                      np.random.Generator)):
                node["params"][p] = None
                node["dropped"].append(p)
                continue
            node["params"][p] = self.value(v, f"{name} parameter {p}")
        if name == "Pipeline":
            return node
        _check_fitted(est, where)
        attrs = {}
        for a, v in vars(est).items():
            if a in params or a in _NOT_SAVED:
                continue
            _check_attribute_name(type(est), a, params, f"cannot save {where}")
            attrs[a] = self.value(v, f"{name}.{a}", plain=(a == "history_"))
        node["attributes"] = attrs
        return node


def _param_names(cls):
    """The parameters of ``cls.__init__`` (scikit-learn's convention: no ``*args``)."""
    sig = inspect.signature(cls.__init__)
    return {n for n, p in sig.parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_fitted(est, where):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(est)
    except NotFittedError:
        raise ValueError(f"cannot save {where}: {type(est).__name__} is not fitted; fit it "
                         "first") from None


def _check_attribute_name(cls, name, params, prefix):
    if (not _NAME.match(name) or name.startswith("__") or name in params
            or name in _NOT_SAVED or hasattr(cls, name)):
        raise ValueError(f"{prefix}: {name!r} is not a name a fitted attribute of "
                         f"{cls.__name__} may have")


def save_model(estimator, path):
    """Write a fitted estimator to ``path`` (arrays and JSON, atomic, never pickle).

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~dasksvm.LinearSVC`, :class:`~dasksvm.MulticlassSVC`,
        :class:`~dasksvm.CascadeSVC`, :class:`~dasksvm.RandomFourierFeatures`,
        :class:`~dasksvm.OrthogonalRandomFeatures`, :class:`~dasksvm.Nystroem`,
        :class:`~dasksvm.MaxAbsScaler`, or a fitted scikit-learn ``Pipeline`` of
        those and of scikit-learn's ``MaxAbsScaler`` / ``StandardScaler``. The
        in-memory state of ``warm_start=True`` is not written (a loaded model's next
        fit starts cold).
    path : str or path-like
        The file to write (replaced atomically if it exists).

    Raises
    ------
    ValueError
        The estimator is not of an allowed class, not fitted, or holds a value
        that cannot be written without pickle (the message names it).
    """
    import sklearn

    from . import __version__

    writer = _Writer()
    tree = writer.estimator(estimator, "the estimator", _classes())
    meta = {
        "kind": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "dasksvm_version": __version__,
        "sklearn_version": sklearn.__version__,
        "estimator": tree,
        "estimator_sha256": _digest(tree),
    }
    write_checkpoint(path, writer.arrays, meta)


# --------------------------------------------------------------------------- reading


class _Reader:
    """Decodes the JSON tree of a model file against its arrays."""

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays

    def fail(self, why):
        return ValueError(f"model file {self.path!r}: {why}")

    def array(self, ref, where):
        if not (isinstance(ref, dict) and isinstance(ref.get("$array"), str)):
            raise self.fail(f"{where} is not an array reference")
        name = ref["$array"]
        if name not in self.arrays:
            raise self.fail(f"{where} refers to array {name!r}, which the file does not hold")
        a = self.arrays[name]
        if ref.get("object") is True:
            a = a.astype(object)
        return a

    def value(self, v, where):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x, where) for x in v]
        if not isinstance(v, dict):
            raise self.fail(f"{where} has a value of JSON type {type(v).__name__}")
        tags = [k for k in v if k.startswith("$")]
        if not tags:
            return {k: self.value(x, where) for k, x in v.items()}
        tag = tags[0]
        if tag == "$array":
            return self.array(v, where)
        if tag == "$tuple" and isinstance(v[tag], list):
            return tuple(self.value(x, where) for x in v[tag])
        if tag == "$dict" and isinstance(v[tag], list):
            out = {}
            for item in v[tag]:
                if not (isinstance(item, list) and len(item) == 2):
                    raise self.fail(f"{where} holds a malformed dict entry")
                key = self.value(item[0], where)
                if isinstance(key, (list, dict)):
                    raise self.fail(f"{where} holds a dict key of type {type(key).__name__}")
                out[key] = self.value(item[1], where)
            return out
        if tag == "$dtype" and v[tag] in _DTYPES:
            dt = np.dtype(v[tag])
            return dt.type if v.get("type") is True else dt
        if tag == "$csr" and isinstance(v[tag], dict):
            return self.csr(v[tag], where)
        raise self.fail(f"{where} has an unknown or malformed value tag {tag!r}")

    def csr(self, spec, where):
        fmt, shape = spec.get("format"), spec.get("shape")
        if fmt not in _SPARSE or not (isinstance(shape, list) and len(shape) == 2
                                      and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise self.fail(f"{where} is a malformed sparse matrix")
        data, indices, indptr = (self.array(spec.get(k), where)
                                 for k in ("data", "indices", "indptr"))
        try:
            m = _SPARSE[fmt]((data, indices, indptr), shape=tuple(shape))
            m.check_format(full_check=True)
        except (ValueError, TypeError) as e:
            raise self.fail(f"{where} is not a valid CSR matrix ({e})") from None
        return m

    def estimator(self, node, where, classes, step=False):
        if not isinstance(node, dict):
            raise self.fail(f"{where} is not an estimator record")
        name = node.get("class")
        allowed = ALLOWED + (_STEP_ONLY if step else ())
        if not isinstance(name, str) or name not in allowed:
            raise self.fail(f"{where} names class {name!r}, which is not an estimator dasksvm "
                            f"loads (allowed: {', '.join(allowed)})")
        cls = classes[name]
        keys = {"class", "params", "dropped", "steps" if name == "Pipeline" else "attributes"}
        extra = sorted(set(node) - keys)
        if extra:
            raise self.fail(f"{where} ({name}): unexpected record key(s) {extra}")
        params = node.get("params")
        if not isinstance(params, dict):
            raise self.fail(f"{where} has no parameter record")
        known = _param_names(cls)
        unknown = sorted((set(params) - known) | (set(params) & {"steps", *_DROPPED}))
        if unknown:
            raise self.fail(f"{where}: a {name} model file holds no parameter(s) {unknown}")
        kwargs = {p: self.value(v, f"{name} parameter {p}") for p, v in params.items()}
        if name == "Pipeline":
            if step:
                raise self.fail("a Pipeline inside a Pipeline")
            steps = node.get("steps")
            if not (isinstance(steps, list) and steps
                    and all(isinstance(s, list) and len(s) == 2 and isinstance(s[0], str)
                            for s in steps)):
                raise self.fail("the pipeline's steps are malformed")
            kwargs["steps"] = [(n, self.estimator(s, f"step {n!r}", classes, step=True))
                               for n, s in steps]
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as e:
                raise self.fail(f"cannot rebuild the pipeline ({e})") from None
        try:
            est = cls(**kwargs)
        except (TypeError, ValueError) as e:  # pragma: no cover - the names were checked
            raise self.fail(f"cannot rebuild {name} ({e})") from None
        attrs = node.get("attributes")
        if not isinstance(attrs, dict) or not attrs:
            raise self.fail(f"{where} ({name}) has no fitted attributes")
        for a, v in attrs.items():
            _check_attribute_name(cls, a, known, f"model file {self.path!r}")
            setattr(est, a, self.value(v, f"{name}.{a}"))
        return est


def load_model(path):
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator
        The fitted estimator (or pipeline), with ``client=None`` and
        ``callback=None``; it predicts exactly as the saved one.

    Raises
    ------
    ValueError
        The file is missing, truncated, altered (an array or the metadata
        does not match its SHA-256), not a dasksvm model file (a foreign zip,
        a fit checkpoint), written by a newer dasksvm (a newer format
        version), names a class that is not on the allow-list, or holds
        anything else that is not a model this version reads; the message
        says which.
    """
    path = os.fspath(path)
    try:
        arrays, meta = read_checkpoint(path)
    except ValueError as e:
        raise ValueError(f"cannot load model {path!r}: {e}") from None
    except (TypeError, AttributeError, KeyError) as e:  # a meta.json of the wrong shape
        raise ValueError(f"cannot load model {path!r}: malformed meta.json "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
        raise ValueError(f"{path!r} is not a dasksvm model file (a fit checkpoint or another "
                         "dasksvm file?): its metadata has no kind 'dasksvm-model'")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"model file {path!r} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"model file {path!r} has format version {version}, newer than this dasksvm "
            f"({_version()}) reads (up to {FORMAT_VERSION}); it was written by dasksvm "
            f"{meta.get('dasksvm_version')!r}: upgrade dasksvm to load it"
        )
    tree = meta.get("estimator")
    if meta.get("estimator_sha256") != _digest(tree):
        raise ValueError(f"model file {path!r}: the estimator record does not match its "
                         "SHA-256 (corrupted or altered file)")
    return _Reader(path, arrays).estimator(tree, "the estimator", _classes())


def _version():
    from . import __version__

    return __version__
