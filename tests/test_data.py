"""The data the package ships and where it reads it from.

The real table and the paper's protocol and errors are package data, so the
main job works on a machine with no network and no ``../shared``. These
tests pin down the order of the sources (``data_dir``, then
``$BAYES_SLOTH_DATA_DIR``, then the packaged copy; a download only with
``refresh=True``), the sha256 checks, and the readers of the reference files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core import datasets as bsdata
from bayes_sloth.core.data import DATA_DIR_ENV, load_protocol, paper_errors, protocol_path, sloth_data_path
from bayes_sloth.core.metadata import BENCHMARK_SETS, CHANCE_FLOOR, SLOTH_DATA, SLOTH_REFERENCE

from .conftest import REPO_ROOT

PACKAGED = {
    "table": SLOTH_DATA,
    "protocol": SLOTH_REFERENCE["protocol"],
    "mae_summary": SLOTH_REFERENCE["mae_summary"],
}


def _resource(relpath: str):
    ref = resources.files("bayes_sloth")
    for part in relpath.split("/"):
        ref = ref / part
    return ref


def _no_download(monkeypatch):
    """No data folder in the environment, and any download attempt fails the test."""
    import pooch

    calls = []

    def retrieve(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("pooch.retrieve called: the default path must not download")

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(pooch, "retrieve", retrieve)
    return calls


# ------------------------------------------------------------ packaged files
@pytest.mark.parametrize("key", list(PACKAGED))
def test_packaged_file_matches_its_pinned_sha256(key):
    """Read straight from the package (not through the code under test)."""
    meta = PACKAGED[key]
    content = _resource(meta["packaged"]).read_bytes()
    assert hashlib.sha256(content).hexdigest() == meta["sha256"]


def test_packaged_table_has_its_licence_and_source_beside_it():
    folder = _resource("datasets/sloth")
    licence = (folder / "LICENSE-sloth.txt").read_text()
    assert "MIT License" in licence and "Copyright (c) 2024 Felipe Maia Polo" in licence
    source = (folder / "SOURCE.md").read_text()
    for fact in ("github.com/felipemaiapolo/sloth", "data/data_v2.csv", "6dc6bb3efeefc7c1db01d60cba1f4b73e5d260d1",
                 SLOTH_DATA["url"], SLOTH_DATA["sha256"]):
        assert fact in source, fact


def test_package_data_is_declared_for_wheels():
    """Every packaged file is named in pyproject's package-data (the wheel check, without building one)."""
    import tomllib

    conf = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    declared = set(conf["tool"]["setuptools"]["package-data"]["bayes_sloth"])
    shipped = [m["packaged"] for m in PACKAGED.values()] + ["datasets/sloth/LICENSE-sloth.txt",
                                                            "datasets/sloth/SOURCE.md"]
    assert not [p for p in shipped if p not in declared]


# ------------------------------------------------------- where the table comes from
def test_default_is_the_packaged_copy_and_downloads_nothing(monkeypatch, tmp_path):
    calls = _no_download(monkeypatch)
    monkeypatch.chdir(tmp_path)
    path = sloth_data_path()
    assert path.read_bytes() == _resource(SLOTH_DATA["packaged"]).read_bytes()
    assert path.parent.name == "sloth" and path.parent.parent.name == "datasets"
    lb = bs.load_sloth()
    assert len(lb) == 188 and len(lb.benchmarks) == 12
    assert calls == []


def _table_copy(folder: Path) -> Path:
    (folder / "sloth").mkdir(parents=True)
    dst = folder / "sloth" / "data_v2.csv"
    dst.write_bytes(_resource(SLOTH_DATA["packaged"]).read_bytes())
    return dst


def test_env_folder_comes_before_the_packaged_copy(monkeypatch, tmp_path):
    _no_download(monkeypatch)
    copy = _table_copy(tmp_path / "env")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert sloth_data_path() == copy


def test_data_dir_comes_before_the_env_folder(monkeypatch, tmp_path):
    _no_download(monkeypatch)
    (tmp_path / "env").mkdir()  # no table there: would fail if it were used
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    copy = _table_copy(tmp_path / "explicit")
    assert sloth_data_path(tmp_path / "explicit") == copy


def _tampered(monkeypatch, tmp_path, relpath):
    """The package's copy of ``relpath`` replaced by one with a byte changed."""
    bad = tmp_path / "tampered" / Path(relpath).name
    bad.parent.mkdir()
    content = bytearray(_resource(relpath).read_bytes())
    content[-2] ^= 1
    bad.write_bytes(bytes(content))
    real = bsdata._packaged
    monkeypatch.setattr(bsdata, "_packaged", lambda rel: bad if rel == relpath else real(rel))
    return bad


def test_damaged_packaged_table_is_refused(monkeypatch, tmp_path):
    _no_download(monkeypatch)
    _tampered(monkeypatch, tmp_path, SLOTH_DATA["packaged"])
    with pytest.raises(bs.DataUnavailableError) as info:
        sloth_data_path()
    msg = str(info.value)
    assert "\n" not in msg
    for s in ("shipped with the package", "sha256", "reinstall", "refresh=True", DATA_DIR_ENV):
        assert s in msg, msg


# ------------------------------------------------------------ refresh: the download
def _pooch_env(monkeypatch, tmp_path, downloader):
    """An empty temp cache, and pooch's HTTP download replaced (no network)."""
    import pooch
    import pooch.downloaders

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(pooch, "os_cache", lambda project: cache)
    monkeypatch.setattr(pooch.downloaders.HTTPDownloader, "__call__", downloader)
    return cache


def _serving(content: bytes, urls: list):
    def download(self, url, output_file, pooch, check_only=False):
        urls.append(url)
        if hasattr(output_file, "write"):
            output_file.write(content)
        else:
            Path(output_file).write_bytes(content)
    return download


def test_refresh_downloads_the_pinned_url_into_the_cache(monkeypatch, tmp_path):
    urls = []
    cache = _pooch_env(monkeypatch, tmp_path, _serving(_resource(SLOTH_DATA["packaged"]).read_bytes(), urls))
    path = sloth_data_path(refresh=True)
    assert urls == [SLOTH_DATA["url"]]
    assert path == cache / SLOTH_DATA["filename"] and path.is_file()
    assert bs.load_sloth(refresh=True).sha256() == bs.load_sloth().sha256()
    assert urls == [SLOTH_DATA["url"]]  # the cached, verified file is reused


def test_refresh_with_wrong_bytes_is_refused(monkeypatch, tmp_path):
    _pooch_env(monkeypatch, tmp_path, _serving(b"Model,Family2\nnot,the pinned table\n", []))
    with pytest.raises(bs.DataUnavailableError, match="sha256.*not using it"):
        bs.load_sloth(refresh=True)


def test_refresh_offline_says_what_to_do(monkeypatch, tmp_path):
    import requests

    def no_network(self, url, output_file, pooch, check_only=False):
        raise requests.exceptions.ConnectionError(f"Failed to resolve host for {url}")

    _pooch_env(monkeypatch, tmp_path, no_network)
    with pytest.raises(bs.DataUnavailableError) as info:
        bs.load_sloth(refresh=True)
    msg = str(info.value)
    assert "\n" not in msg
    for s in ("could not download", "offline", "leave out refresh=True", DATA_DIR_ENV):
        assert s in msg, msg


def test_refresh_and_data_dir_together_are_refused(tmp_path):
    with pytest.raises(bs.InputError, match="not both"):
        sloth_data_path(tmp_path, refresh=True)


# ------------------------------------------------------------ the real table, two ways
def test_real_table_loads_identically_from_package_and_shared_folder(real_data_dir, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    shared = sloth_data_path(real_data_dir)
    packaged = sloth_data_path()
    assert shared != packaged and shared.read_bytes() == packaged.read_bytes()
    a, b = bs.load_sloth(real_data_dir), bs.load_sloth()
    assert a.sha256() == b.sha256()
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())
    assert len(a) == 188 and a.n_observed == 1638


# ------------------------------------------------------------ the paper's protocol
def test_protocol_is_packaged_and_agrees_with_metadata(monkeypatch):
    _no_download(monkeypatch)
    proto = load_protocol()
    assert protocol_path().read_bytes() == _resource(SLOTH_REFERENCE["protocol"]["packaged"]).read_bytes()
    assert proto["benchmark_sets"] == BENCHMARK_SETS
    assert proto["chance_floor"] == {b: CHANCE_FLOOR[b] for b in proto["chance_floor"]}
    assert sorted(proto["test_groups"]) == sorted(f"{s}/n_train_models={n}" for s in BENCHMARK_SETS for n in (1, 2))
    assert ["qwen2"] in proto["test_groups"]["leaderboard_v1/n_train_models=1"]


def test_explicit_protocol_file_is_used(tmp_path):
    mine = {"benchmark_sets": {"two": ["MMLU", "ARC"]}, "test_groups": {"two/n_train_models=1": [["opt"]]}}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    assert protocol_path(path) == path
    assert load_protocol(path) == mine


def test_damaged_packaged_protocol_is_refused(monkeypatch, tmp_path):
    _tampered(monkeypatch, tmp_path, SLOTH_REFERENCE["protocol"]["packaged"])
    with pytest.raises(bs.DataUnavailableError, match="protocol file shipped with the package.*sha256.*reinstall"):
        load_protocol()


GOOD = {"benchmark_sets": {"s": ["MMLU"]}, "test_groups": {"s/n_train_models=1": [["opt"]]}}


def _protocol_file(tmp_path, content):
    path = tmp_path / "proto.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


BAD_PROTOCOLS = [
    ("missing", None, ("nowhere.json", "does not exist")),
    ("folder", "dir", ("is a folder",)),
    ("not-json", "benchmark_sets: [MMLU]\n", ("proto.json", "is not JSON", "line 1")),
    ("not-utf8", b"\xff\xfe{\x00}", ("proto.json", "cannot be read", "UTF-8")),
    ("a-list", [1, 2], ("proto.json", "JSON list", "'benchmark_sets'", "'test_groups'")),
    ("no-test-groups", {"benchmark_sets": GOOD["benchmark_sets"]}, ("proto.json", "lacks key(s) 'test_groups'")),
    ("no-keys", {"chance_floor": {}}, ("proto.json", "'benchmark_sets', 'test_groups'")),
    ("sets-not-object", {**GOOD, "benchmark_sets": ["MMLU"]}, ("proto.json", "'benchmark_sets' must be a JSON object")),
    ("set-not-names", {**GOOD, "benchmark_sets": {"s": "MMLU"}}, ("proto.json", "benchmark_sets['s']", "list of benchmark names")),
    ("group-not-lists", {**GOOD, "test_groups": {"s/n_train_models=1": ["opt"]}},
     ("proto.json", "test_groups['s/n_train_models=1']", "list of family names")),
]


@pytest.mark.parametrize("content,expect", [c[1:] for c in BAD_PROTOCOLS], ids=[c[0] for c in BAD_PROTOCOLS])
def test_bad_protocol_file_is_one_line_input_error(tmp_path, content, expect):
    if content is None:
        path = tmp_path / "nowhere.json"
    elif content == "dir":
        path = tmp_path / "proto_dir"
        path.mkdir()
    else:
        path = _protocol_file(tmp_path, content)
    for call in (load_protocol, protocol_path):
        if call is protocol_path and content not in (None, "dir"):
            continue  # the path exists: only the reader looks inside
        with pytest.raises(bs.InputError) as info:
            call(path)
        msg = str(info.value)
        assert "\n" not in msg, msg
        for s in expect:
            assert s in msg, f"{s!r} not in {msg!r}"


# ------------------------------------------------------------ the paper's errors
def test_paper_errors_is_the_published_table_tidied():
    err = paper_errors()
    assert list(err.columns) == ["method", "benchmark_set", "n_train", "mae"]
    assert len(err) == 28 * 6 and not err.isna().any().any()
    assert set(err["benchmark_set"]) == set(BENCHMARK_SETS) and set(err["n_train"]) == {1, 2}
    assert not err.duplicated(["method", "benchmark_set", "n_train"]).any()
    cell = err.set_index(["method", "benchmark_set", "n_train"])["mae"]
    # values as printed in the file
    assert cell[("sloth_trainlink_d3", "leaderboard_v1", 1)] == 0.0425
    assert cell[("logF_sigmoid", "leaderboard_v2", 2)] == 0.06732
    assert cell[("pca_d3", "leaderboard_v1+v2", 2)] == 0.08415
    assert err["mae"].between(0.0, 1.0).all()


# ------------------------------------------------------------ no ../shared at all
def test_works_from_a_copy_of_the_package_with_no_shared_folder(tmp_path):
    """A copy of the package in a bare folder, no data env vars, downloads made to fail."""
    import shutil

    pkg = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "bayes_sloth", pkg / "bayes_sloth",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "import pooch\n"
        "def no(*a, **k): raise RuntimeError('download attempted')\n"
        "pooch.retrieve = no\n"
        "import bayes_sloth as bs\n"
        "from bayes_sloth.core.data import load_protocol, paper_errors, sloth_data_path\n"
        "print(bs.__file__)\n"
        "print(sloth_data_path())\n"
        "print(len(bs.load_sloth()), len(load_protocol()['test_groups']), len(paper_errors()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAYES_SLOTH_")}
    env["PYTHONPATH"] = str(pkg)
    r = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(str(pkg)), lines  # the copy, not the repository
    assert lines[1].startswith(str(pkg))
    assert lines[2] == "188 6 168"


# ------------------------------------------------------------ names are text
def test_csv_names_are_read_as_text(tmp_path):
    """Model ``000`` stays ``000``; families ``1`` and ``1.0`` stay two families; only an empty cell is missing."""
    path = tmp_path / "names.csv"
    path.write_text(
        "model,family,params,tokens,MMLU\n"
        "000,1,1,1,0.30\n"
        "007,1,2,1,0.40\n"
        "1e3,1.0,3,1,0.50\n"
        "2.50,1.0,4,1,0.60\n"
        "x,NA,5,1,0.70\n"
    )
    lb = bs.load_leaderboard(path)
    assert lb.models == ["000", "007", "1e3", "2.50", "x"]
    assert lb.families == ["1", "1.0", "NA"]
    assert lb.covariates["family"].tolist() == ["1", "1", "1.0", "1.0", "NA"]
    assert lb.covariates["params"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # numbers are still numbers


def test_dataframe_names_are_converted_with_str():
    df = pd.DataFrame({"model": [0, 1, 2, 3], "family": pd.Series([1, 1, 1.0, 1.0], dtype=object),
                       "params": [1.0, 2.0, 3.0, 4.0], "tokens": 1.0, "MMLU": [0.3, 0.4, 0.5, 0.6]})
    lb = bs.load_leaderboard(df)
    assert lb.models == ["0", "1", "2", "3"]
    assert lb.families == ["1", "1.0"]


def test_real_table_content_is_pinned():
    """The packaged table loads to exactly the leaderboard it always has (validation changes must not move it).

    If a deliberate change to loading (not to the data) moves this hash, say so in the commit.
    """
    lb = bs.load_sloth()
    assert (len(lb), len(lb.families), lb.n_observed) == (188, 68, 1638)
    assert lb.sha256() == "eaf59387f58d817694b0ddc665f7158e61d888a2c7923dccdd070ae130e2f705"
