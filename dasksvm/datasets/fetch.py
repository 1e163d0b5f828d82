"""Named benchmark datasets: find them in a local mirror, check their hashes.

The files are the LIBSVM / svmlight text files (1-based, ascending feature
indices, xz-compressed) described in ``registry.json``, which ships with the
package and holds for every file its SHA-256 and size, and for every dataset
its task, label convention, feature count and provenance. :func:`fetch` looks
the files up in a local directory (the *data home*), checks every byte against
the registry and returns a :class:`Dataset`: the verified paths plus that
metadata. Nothing is parsed here; load a split with :meth:`Dataset.load`
(which calls :func:`dasksvm.datasets.load_svmlight`).

Where the data home is, first match wins:

1. the ``data_home`` argument,
2. the ``DASKSVM_DATA`` environment variable,
3. ``~/dasksvm_data``.

A file that is missing there is downloaded only when a base URL is configured
(the ``download_url`` argument, else ``DASKSVM_DATA_URL``): the file
``<url>/<file name>`` is fetched with :mod:`urllib` into the data home, checked
and only then moved into place. ``file://`` URLs work, so a shared directory
can serve as the "server".

:func:`load_demo` needs neither: it returns the a9a files shipped inside the
package (``dasksvm/datasets/data``, see the README there for their source and
licence).

Maintainers regenerate the hashes and counts of the registry from a directory
holding the files with::

    python -m dasksvm.datasets.fetch --update-registry /path/to/mirror
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "ChecksumMismatchError",
    "Dataset",
    "DatasetNotFoundError",
    "fetch",
    "get_data_home",
    "list_datasets",
    "load_demo",
]

DATA_HOME_ENV = "DASKSVM_DATA"
DATA_URL_ENV = "DASKSVM_DATA_URL"
DEFAULT_DATA_HOME = "~/dasksvm_data"

_HERE = Path(__file__).resolve().parent
REGISTRY_PATH = _HERE / "registry.json"
DEMO_DIR = _HERE / "data"
DEMO_DATASET = "a9a"

_CHUNK = 1 << 20


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is neither in the data home nor downloadable."""


class ChecksumMismatchError(OSError):
    """A dataset file's SHA-256 differs from the one in the registry."""


@dataclass(frozen=True)
class Dataset:
    """A named dataset whose files were found and verified.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"a9a"``.
    files : Mapping[str, pathlib.Path]
        Split name (``"train"``, ``"test"``, ``"heldout"``) -> verified path of
        the xz-compressed LIBSVM file. Sets without a published test split
        have only ``"train"``.
    task : {"binary", "multiclass"}
    n_features : int
        Largest feature index over all splits (pass it to the loader so that
        train and test get the same width).
    n_classes : int
    labels : tuple of int
        The distinct label values written in the files, ascending (e.g.
        ``(-1, 1)``, ``(0, 1)``, ``(1, 2, ..., 20)``).
    label_convention : str
        ``labels`` in words: ``"-1/+1"``, ``"0/1"``, ``"1/2"``, ``"1..K"``
        style ranges.
    n_samples, nnz : Mapping[str, int]
        Rows and stored non-zeros of each split.
    extras : Mapping[str, pathlib.Path]
        Verified auxiliary files (vocabularies, class names, feature maps).
    zero_based : bool
        Always False: the files use 1-based feature indices.
    description, licence, source : str
        What the data is, under which terms, and where the bytes came from.
    """

    name: str
    files: Mapping[str, Path]
    task: str
    n_features: int
    n_classes: int
    labels: tuple
    label_convention: str
    n_samples: Mapping[str, int]
    nnz: Mapping[str, int]
    extras: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    zero_based: bool = False
    description: str = ""
    licence: str = ""
    source: str = ""

    @property
    def splits(self):
        """The split names, in registry order."""
        return tuple(self.files)

    def __getitem__(self, split):
        try:
            return self.files[split]
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no split {split!r}; it has {list(self.files)}"
            ) from None

    def load(self, split="train", **kwargs):
        """Load one split lazily with :func:`dasksvm.datasets.load_svmlight`.

        ``n_features`` defaults to :attr:`n_features` (the same width for
        every split) and ``zero_based`` to False; other keyword arguments
        (``blocksize``, ``dtype``) are passed on. Returns ``(X, y)``.
        """
        from .svmlight import load_svmlight

        kwargs.setdefault("n_features", self.n_features)
        kwargs.setdefault("zero_based", self.zero_based)
        return load_svmlight(self[split], **kwargs)


@functools.cache
def _registry():
    with open(REGISTRY_PATH, encoding="utf-8") as f:
        return json.load(f)


def list_datasets():
    """Names of all datasets in the registry, sorted."""
    return tuple(sorted(_registry()["datasets"]))


def get_data_home(data_home=None):
    """The local mirror directory: ``data_home``, else ``$DASKSVM_DATA``, else
    ``~/dasksvm_data``. The directory is not created."""
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or DEFAULT_DATA_HOME
    return Path(os.path.expandvars(os.path.expanduser(str(data_home))))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path, entry):
    got = _sha256(path)
    if got != entry["sha256"]:
        raise ChecksumMismatchError(
            f"checksum mismatch for {path}: expected sha256 {entry['sha256']}, got {got} "
            f"(size {path.stat().st_size} bytes, expected {entry['size']}). The file is "
            "corrupt or a different version: delete it and fetch again."
        )


def _download(url, dest, entry):
    """Fetch ``url`` into ``dest`` through a temporary file, checking the hash."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        try:
            with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
        except urllib.error.URLError as exc:
            raise DatasetNotFoundError(
                f"could not download {url} to {dest}: {exc.reason}"
            ) from exc
        _verify(tmp, entry)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)


def _label_convention(labels):
    if len(labels) == 2:
        return "/".join(f"{v:+d}" if min(labels) < 0 else str(v) for v in labels)
    if list(labels) == list(range(labels[0], labels[0] + len(labels))):
        return f"{labels[0]}..{labels[-1]}"
    return ",".join(map(str, labels))


def _locate(name, fname, entry, home, url):
    path = home / fname
    if not path.is_file():
        if url is None:
            raise DatasetNotFoundError(
                f"dataset {name!r}: file {fname!r} not found; looked for {path}. Put the "
                f"dataset files in that directory, or point the {DATA_HOME_ENV} environment "
                "variable (or the data_home argument) at the directory that holds them, "
                f"e.g. export {DATA_HOME_ENV}=/path/to/data; to download them instead set "
                f"{DATA_URL_ENV} (or the download_url argument) to the base URL of a mirror."
            )
        _download(url.rstrip("/") + "/" + fname, path, entry)
    _verify(path, entry)
    return path


def fetch(name, data_home=None, *, download_url=None):
    """Find, verify (and if configured, download) the files of a named dataset.

    Parameters
    ----------
    name : str
        A registry name, see :func:`list_datasets`: ``"a9a"``, ``"w8a"``,
        ``"mushrooms"``, ``"higgs7k"``, ``"magic04"``, ``"skin_nonskin"``,
        ``"mr_tfidf"``, ``"dna"``, ``"satimage"``, ``"pendigits"``,
        ``"optdigits"``, ``"letter"``, ``"shuttle"``,
        ``"news20_bydate_tfidf"``, ``"sector_pdsparse"``.
    data_home : str or path-like, optional
        Directory holding the files (flat, under their registry file names).
        Default: ``$DASKSVM_DATA``, else ``~/dasksvm_data``.
    download_url : str, optional
        Base URL of a mirror; missing files are downloaded from
        ``<download_url>/<file name>`` into ``data_home`` and checked.
        Default: ``$DASKSVM_DATA_URL``; when neither is set nothing is
        downloaded.

    Returns
    -------
    Dataset
        Verified paths (split -> path) and the registry metadata.

    Raises
    ------
    ValueError
        Unknown name.
    DatasetNotFoundError
        A file is missing and no download URL is configured; the message says
        where it looked.
    ChecksumMismatchError
        A file (found or downloaded) does not match its registry SHA-256.
    """
    datasets = _registry()["datasets"]
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(datasets))}")
    spec = datasets[name]
    home = get_data_home(data_home)
    url = (download_url if download_url is not None else os.environ.get(DATA_URL_ENV)) or None

    files = {s: _locate(name, e["file"], e, home, url) for s, e in spec["splits"].items()}
    extras = {s: _locate(name, e["file"], e, home, url) for s, e in spec["extras"].items()}
    labels = tuple(spec["labels"])
    return Dataset(
        name=name,
        files=MappingProxyType(files),
        task=spec["task"],
        n_features=spec["n_features"],
        n_classes=len(labels),
        labels=labels,
        label_convention=_label_convention(labels),
        n_samples=MappingProxyType({s: e["n_samples"] for s, e in spec["splits"].items()}),
        nnz=MappingProxyType({s: e["nnz"] for s, e in spec["splits"].items()}),
        extras=MappingProxyType(extras),
        description=spec["description"],
        licence=spec["licence"],
        source=spec["source"],
    )


def load_demo():
    """The a9a dataset (UCI Adult, LIBSVM preprocessing) shipped with the package.

    32,561 training and 16,281 test rows, 123 binary features, labels -1/+1,
    about 230 kB compressed; no download, no data home needed. The files are
    verified like those of :func:`fetch`.

    Returns
    -------
    Dataset
        ``files`` maps ``"train"`` and ``"test"`` to paths inside the package.

    Examples
    --------
    >>> from dasksvm.datasets import load_demo
    >>> ds = load_demo()
    >>> X, y = ds.load("train")        # doctest: +SKIP
    """
    return fetch(DEMO_DATASET, data_home=DEMO_DIR, download_url="")


# --- registry maintenance --------------------------------------------------------------


def _scan(path):
    """Counts of one LIBSVM file (plain standard-library parse)."""
    n = nnz = max_index = empty = 0
    labels = set()
    with lzma.open(path, "rt") as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            n += 1
            labels.add(float(parts[0]))
            if len(parts) == 1:
                empty += 1
                continue
            nnz += len(parts) - 1
            max_index = max(max_index, int(parts[-1].split(":", 1)[0]))
    if not all(v.is_integer() for v in labels):
        raise ValueError(f"{path}: non-integer labels {sorted(labels)}")
    return {
        "n_samples": n,
        "n_features": max_index,
        "nnz": nnz,
        "empty_rows": empty,
        "labels": sorted(int(v) for v in labels),
    }


def _update_registry(src_dir, registry_path=REGISTRY_PATH):
    """Recompute hashes, sizes and counts of every registry file from ``src_dir``."""
    src_dir = Path(src_dir)
    with open(registry_path, encoding="utf-8") as f:
        reg = json.load(f)
    for spec in reg["datasets"].values():
        labels = set()
        for entry in spec["splits"].values():
            path = src_dir / entry["file"]
            entry.update(sha256=_sha256(path), size=path.stat().st_size)
            info = _scan(path)
            labels.update(info.pop("labels"))
            entry.update(info)
        for entry in spec["extras"].values():
            path = src_dir / entry["file"]
            entry.update(sha256=_sha256(path), size=path.stat().st_size)
        spec["n_features"] = max(e["n_features"] for e in spec["splits"].values())
        spec["labels"] = sorted(labels)
        spec["n_classes"] = len(labels)
    with open(registry_path, "w", encoding="utf-8") as f:
        json.dump(reg, f, indent=2)
        f.write("\n")
    _registry.cache_clear()


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dasksvm.datasets.fetch")
    parser.add_argument("--update-registry", metavar="DIR", required=True,
                        help="recompute registry.json hashes and counts from the files in DIR")
    args = parser.parse_args(argv)
    _update_registry(args.update_registry)


if __name__ == "__main__":
    main()
