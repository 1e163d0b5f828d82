"""Named datasets: lookup in the data home, SHA-256 checks, file:// download, demo data."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dasksvm.datasets import fetch, load_demo
from dasksvm.datasets.fetch import (
    DATA_HOME_ENV,
    DATA_URL_ENV,
    DEMO_DIR,
    REGISTRY_PATH,
    ChecksumMismatchError,
    Dataset,
    DatasetNotFoundError,
    _scan,
    _update_registry,
    get_data_home,
    list_datasets,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DASKSVM_DATA", REPO.parent / "shared" / "data"))

EXPECTED = {
    "a9a": ("binary", {"train", "test"}, 123, (-1, 1), "-1/+1"),
    "w8a": ("binary", {"train"}, 300, (-1, 1), "-1/+1"),
    "mushrooms": ("binary", {"train", "test"}, 126, (0, 1), "0/1"),
    "higgs7k": ("binary", {"train", "test"}, 28, (0, 1), "0/1"),
    "magic04": ("binary", {"train"}, 10, (-1, 1), "-1/+1"),
    "skin_nonskin": ("binary", {"train"}, 3, (1, 2), "1/2"),
    "mr_tfidf": ("binary", {"train", "test"}, 7727, (0, 1), "0/1"),
    "dna": ("multiclass", {"train", "test"}, 180, (1, 2, 3), "1..3"),
    "satimage": ("multiclass", {"train", "test"}, 36, tuple(range(1, 7)), "1..6"),
    "pendigits": ("multiclass", {"train", "test"}, 16, tuple(range(1, 11)), "1..10"),
    "optdigits": ("multiclass", {"train", "test"}, 64, tuple(range(10)), "0..9"),
    "letter": ("multiclass", {"train"}, 16, tuple(range(1, 27)), "1..26"),
    "shuttle": ("multiclass", {"train", "test"}, 9, tuple(range(1, 8)), "1..7"),
    "news20_bydate_tfidf": ("multiclass", {"train", "test"}, 47525, tuple(range(1, 21)), "1..20"),
    "sector_pdsparse": ("multiclass", {"heldout", "test"}, 55188, tuple(range(1, 106)), "1..105"),
}


@pytest.fixture
def mirror():
    if not DATA_DIR.is_dir():
        pytest.skip(f"dataset mirror {DATA_DIR} not found; set DASKSVM_DATA")
    return DATA_DIR


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(DATA_HOME_ENV, raising=False)
    monkeypatch.delenv(DATA_URL_ENV, raising=False)
    return monkeypatch


def _copy(names, src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(src / n, dst / n)
    return dst


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


DNA_FILES = ["dna.scale.xz", "dna.scale.t.xz"]


def test_registry_lists_the_mirror_datasets():
    assert set(list_datasets()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fetch_finds_and_verifies_every_dataset(name, mirror, clean_env):
    clean_env.setenv(DATA_HOME_ENV, str(mirror))
    ds = fetch(name)
    task, splits, n_features, labels, convention = EXPECTED[name]
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.task == task and set(ds.splits) == splits
    assert ds.n_features == n_features
    assert ds.labels == labels and ds.n_classes == len(labels)
    assert ds.label_convention == convention and ds.zero_based is False
    for split, path in ds.files.items():
        assert path.parent == mirror and path.is_file()
        assert ds[split] == path and ds.n_samples[split] > 0 and ds.nnz[split] > 0
    for path in ds.extras.values():
        assert path.is_file()
    assert ds.licence and ds.source and ds.description
    with pytest.raises(TypeError):
        ds.files["train2"] = path  # read-only mapping
    with pytest.raises(KeyError, match="has no split 'validation'"):
        ds["validation"]


def test_registry_hashes_are_those_of_the_files(mirror):
    reg = json.loads(REGISTRY_PATH.read_text())
    for spec in reg["datasets"].values():
        for entry in [*spec["splits"].values(), *spec["extras"].values()]:
            path = mirror / entry["file"]
            assert path.stat().st_size == entry["size"]
            assert _sha(path) == entry["sha256"], entry["file"]


def test_registry_counts_match_the_readme(mirror):
    ds = fetch("a9a", mirror)
    assert dict(ds.n_samples) == {"train": 32561, "test": 16281}
    assert dict(ds.nnz) == {"train": 451592, "test": 225731}
    assert fetch("w8a", mirror).n_samples["train"] == 49749
    assert fetch("sector_pdsparse", mirror).n_samples == {"heldout": 865, "test": 961}
    info = _scan(mirror / "dna.scale.t.xz")
    assert info == {"n_samples": 1186, "n_features": 180, "nnz": 53669, "empty_rows": 0,
                    "labels": [1, 2, 3]}


def test_update_registry_reproduces_the_shipped_entries(mirror, tmp_path):
    shipped = json.loads(REGISTRY_PATH.read_text())
    computed = ("sha256", "size", "n_samples", "n_features", "nnz", "empty_rows")
    small = {"format": 1, "datasets": {}}
    for name in ("dna", "mushrooms"):
        spec = json.loads(json.dumps(shipped["datasets"][name]))
        for key in ("n_features", "labels", "n_classes"):
            del spec[key]
        for entry in [*spec["splits"].values(), *spec["extras"].values()]:
            for key in computed:
                entry.pop(key, None)
        small["datasets"][name] = spec
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(small))
    _update_registry(mirror, path)
    rebuilt = json.loads(path.read_text())["datasets"]
    for name in ("dna", "mushrooms"):
        assert rebuilt[name] == shipped["datasets"][name]


def test_data_home_resolution(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / "dasksvm_data"
    clean_env.setenv(DATA_HOME_ENV, str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home("~/x") == tmp_path / "x"


def test_argument_beats_environment(mirror, clean_env, tmp_path):
    clean_env.setenv(DATA_HOME_ENV, str(tmp_path / "nothing-here"))
    assert fetch("dna", data_home=mirror)["train"] == mirror / "dna.scale.xz"
    with pytest.raises(DatasetNotFoundError):
        fetch("dna")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'covtype'.*a9a.*w8a"):
        fetch("covtype")


def test_missing_file_says_where_it_looked(clean_env, tmp_path):
    clean_env.setenv(DATA_HOME_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        fetch("dna")
    msg = str(info.value)
    assert str(tmp_path / "dna.scale.xz") in msg
    assert "DASKSVM_DATA" in msg and "DASKSVM_DATA_URL" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_second_split(mirror, clean_env, tmp_path):
    _copy(["dna.scale.xz"], mirror, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="dna.scale.t.xz"):
        fetch("dna", tmp_path)


def test_corrupted_copy_is_rejected(mirror, clean_env, tmp_path):
    _copy(DNA_FILES, mirror, tmp_path)
    path = tmp_path / "dna.scale.t.xz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    expected = json.loads(REGISTRY_PATH.read_text())["datasets"]["dna"]["splits"]["test"]
    with pytest.raises(ChecksumMismatchError) as info:
        fetch("dna", tmp_path)
    msg = str(info.value)
    assert str(path) in msg and expected["sha256"] in msg and _sha(path) in msg


def test_truncated_copy_is_rejected(mirror, clean_env, tmp_path):
    _copy(DNA_FILES, mirror, tmp_path)
    path = tmp_path / "dna.scale.xz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ChecksumMismatchError, match="dna.scale.xz"):
        fetch("dna", tmp_path)


def test_download_from_file_url(mirror, clean_env, tmp_path):
    server = _copy(DNA_FILES, mirror, tmp_path / "server")
    home = tmp_path / "home" / "data"           # does not exist yet
    ds = fetch("dna", home, download_url=server.as_uri())
    assert sorted(p.name for p in home.iterdir()) == sorted(DNA_FILES)
    for name in DNA_FILES:
        assert (home / name).read_bytes() == (mirror / name).read_bytes()
    assert ds["train"] == home / "dna.scale.xz"
    # now present: no download needed (server gone), files re-verified
    shutil.rmtree(server)
    assert fetch("dna", home).files == ds.files


def test_download_url_from_environment(mirror, clean_env, tmp_path):
    server = _copy(DNA_FILES, mirror, tmp_path / "server")
    clean_env.setenv(DATA_HOME_ENV, str(tmp_path / "home"))
    clean_env.setenv(DATA_URL_ENV, server.as_uri() + "/")
    ds = fetch("dna")
    assert ds["test"] == tmp_path / "home" / "dna.scale.t.xz"


def test_download_of_a_corrupt_file_leaves_nothing(mirror, clean_env, tmp_path):
    server = _copy(DNA_FILES, mirror, tmp_path / "server")
    (server / "dna.scale.xz").write_bytes(b"not the data")
    home = tmp_path / "home"
    with pytest.raises(ChecksumMismatchError, match="dna.scale.xz"):
        fetch("dna", home, download_url=server.as_uri())
    assert list(home.iterdir()) == []


def test_download_of_a_missing_file(clean_env, tmp_path):
    (tmp_path / "server").mkdir()
    with pytest.raises(DatasetNotFoundError, match="could not download"):
        fetch("dna", tmp_path / "home", download_url=(tmp_path / "server").as_uri())
    assert list((tmp_path / "home").iterdir()) == []


def test_load_demo_ships_verified_a9a(clean_env):
    ds = load_demo()
    assert ds.name == "a9a" and ds.task == "binary" and ds.labels == (-1, 1)
    assert ds.files["train"] == DEMO_DIR / "a9a.xz"
    assert ds.files["test"] == DEMO_DIR / "a9a.t.xz"
    reg = json.loads(REGISTRY_PATH.read_text())["datasets"]["a9a"]["splits"]
    for split, path in ds.files.items():
        assert path.is_file() and _sha(path) == reg[split]["sha256"]
    readme = (DEMO_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "352cf02bacc00b5926fe6e25acb3d01620060479" in readme


def test_demo_loads_with_a_common_width(clean_env):
    ds = load_demo()
    X, y = ds.load("test")
    assert X.shape == (16281, 123)   # a9a.t alone only reaches feature 122
    yv = y.compute()
    assert set(np.unique(yv)) == {-1.0, 1.0}
