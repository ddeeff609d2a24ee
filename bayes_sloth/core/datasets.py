"""The data that ships with the package: the Sloth table, the paper's protocol and its published errors.

Each is byte-identical to its pinned source and sha256-checked, so the
default path needs no network (:func:`load_sloth`, :func:`load_protocol`,
:func:`paper_errors`); :func:`sloth_data_path` with ``refresh=True`` downloads
the pinned table again (through pooch), and a local folder can stand in
(``$BAYES_SLOTH_DATA_DIR``).
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import json
import os
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import DataUnavailableError, InputError
from .leaderboard import Leaderboard, fmt_rows
from .metadata import SLOTH_DATA, SLOTH_REFERENCE
from .readers import load_leaderboard

#: Environment variable that points the package at a local copy of the data
#: (a folder holding ``sloth/data_v2.csv`` or ``data_v2.csv``).
DATA_DIR_ENV = "BAYES_SLOTH_DATA_DIR"


# ------------------------------------------------------------ real data
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Files of ``bayes_sloth/datasets/`` made into filesystem paths, by relative path.
_PACKAGED: dict[str, Path] = {}


#: Keeps files extracted from a zipped installation until the process exits;
#: created (and registered with atexit) on first use, so importing changes nothing.
_PACKAGED_FILES: ExitStack | None = None


def _packaged(relpath: str) -> Path:
    """Filesystem path of a file shipped inside the package (``relpath`` from ``bayes_sloth/``).

    Read through :mod:`importlib.resources`, so it works wherever the package
    is installed; a zipped installation gets the file extracted once.
    """
    global _PACKAGED_FILES
    if relpath not in _PACKAGED:
        ref = resources.files("bayes_sloth")
        for part in relpath.split("/"):
            ref = ref / part
        if not ref.is_file():
            raise DataUnavailableError(
                f"bayes_sloth/{relpath} is missing from the installed package: reinstall bayes_sloth "
                "(a build without its package data?)"
            )
        if _PACKAGED_FILES is None:
            _PACKAGED_FILES = ExitStack()
            atexit.register(_PACKAGED_FILES.close)
        _PACKAGED[relpath] = Path(_PACKAGED_FILES.enter_context(resources.as_file(ref)))
    return _PACKAGED[relpath]


def _verified_packaged(relpath: str, sha: str, what: str, instead: str) -> Path:
    path = _packaged(relpath)
    got = _sha256_file(path)
    if got != sha:
        raise DataUnavailableError(
            f"the {what} shipped with the package ({path}) has sha256 {got[:12]}..., expected {sha[:12]}...: "
            f"the installation is damaged; reinstall bayes_sloth{instead}"
        )
    return path


def sloth_data_path(data_dir: str | os.PathLike | None = None, *, refresh: bool = False) -> Path:
    """Path of a verified copy of the Sloth table.

    In this order:

    1. ``data_dir``, a folder holding ``sloth/data_v2.csv`` or ``data_v2.csv``;
    2. else ``$BAYES_SLOTH_DATA_DIR``, a folder of the same shape;
    3. else the copy shipped with the package (``bayes_sloth/datasets/sloth/``),
       so the default needs no network.

    ``refresh=True`` instead downloads the pinned URL into pooch's cache (a
    file already cached with the right hash is reused) and returns that: the
    way to re-fetch the table from its source. The sha256 (in
    :data:`bayes_sloth.core.metadata.SLOTH_DATA`) is checked in every case; a
    wrong one is a :class:`DataUnavailableError` that says what to do.
    """
    fname, sub, sha = SLOTH_DATA["filename"], SLOTH_DATA["subdir"], SLOTH_DATA["sha256"]
    if refresh:
        if data_dir is not None:
            raise InputError(
                "sloth_data_path: pass data_dir= (a local copy) or refresh=True (download), not both"
            )
        return _download_sloth()
    folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if folder is not None:
        folder = Path(folder)
        for cand in (folder / sub / fname, folder / fname):
            if cand.is_file():
                got = _sha256_file(cand)
                if got != sha:
                    raise DataUnavailableError(
                        f"{cand} has sha256 {got[:12]}..., expected {sha[:12]}...: it is not the pinned "
                        "Sloth table; replace it with the file from the pinned URL"
                    )
                return cand
        raise DataUnavailableError(
            f"no {sub}/{fname} or {fname} in {str(folder)!r} (from "
            f"{'data_dir' if data_dir is not None else '$' + DATA_DIR_ENV}); put the Sloth table there or unset it"
        )
    return _verified_packaged(
        SLOTH_DATA["packaged"], sha, "Sloth table",
        f", download the pinned copy with refresh=True, or point ${DATA_DIR_ENV} (data_dir=, --data-dir) at a "
        f"folder holding {sub}/{fname}",
    )


def _download_sloth() -> Path:
    """The pinned Sloth table from its URL, through pooch's cache, sha256-checked."""
    import pooch

    fname, sha = SLOTH_DATA["filename"], SLOTH_DATA["sha256"]
    cache = Path(pooch.os_cache("bayes_sloth"))
    try:
        path = pooch.retrieve(SLOTH_DATA["url"], known_hash=f"sha256:{sha}", fname=fname, path=cache, progressbar=False)
    except ValueError as exc:  # pooch: hash mismatch
        raise DataUnavailableError(
            f"downloaded Sloth table failed its sha256 check ({str(exc).splitlines()[0]}); not using it"
        ) from None
    except Exception as exc:  # network errors come in many types
        raise DataUnavailableError(
            f"could not download the Sloth table ({type(exc).__name__}); offline? leave out refresh=True to use "
            f"the copy shipped with the package, or point ${DATA_DIR_ENV} (data_dir=, --data-dir) at a folder "
            f"holding {SLOTH_DATA['subdir']}/{fname}"
        ) from None
    return Path(path)


def load_sloth(
    data_dir: str | os.PathLike | None = None,
    benchmarks: Sequence[str] | None = None,
    *,
    refresh: bool = False,
) -> Leaderboard:
    """The Sloth paper's leaderboard (Open LLM Leaderboard v1 + v2), validated.

    Parameters
    ----------
    data_dir : path, optional
        Local folder with the table. Without it: ``$BAYES_SLOTH_DATA_DIR``,
        else the copy shipped with the package (no network); see
        :func:`sloth_data_path`.
    benchmarks : list of str, optional
        Score columns; default the twelve of Leaderboard v1 and v2.
    refresh : bool
        Download the pinned file (through pooch's cache) instead.
    """
    return load_leaderboard(sloth_data_path(data_dir, refresh=refresh), benchmarks=benchmarks)


# ------------------------------------------------- the paper's protocol
#: Keys a protocol file needs, with what each holds (for the error message).
_PROTOCOL_KEYS = {
    "benchmark_sets": "benchmark names per set",
    "test_groups": "lists of test families per '<set>/n_train_models=<n>'",
}


def protocol_path(path: str | os.PathLike | None = None) -> Path:
    """Path of the leave-family-out protocol file (``sloth_protocol.json``).

    ``path`` if given (it must exist), else the paper's protocol shipped with
    the package, sha256-checked against
    :data:`bayes_sloth.core.metadata.SLOTH_REFERENCE`.
    """
    if path is None:
        ref = SLOTH_REFERENCE["protocol"]
        return _verified_packaged(ref["packaged"], ref["sha256"], "protocol file", "")
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"protocol file {str(path)!r} does not exist: give the path of a sloth_protocol.json, or none "
            "for the paper's protocol shipped with the package"
        )
    if path.is_dir():
        raise InputError(f"protocol file {str(path)!r} is a folder: give the path of the JSON file itself")
    return path


def _json_type(x) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(x), "number")


def load_protocol(path: str | os.PathLike | None = None) -> dict:
    """The leave-family-out protocol as a dict (the paper's by default).

    Keys ``benchmark_sets`` (set name -> benchmark names), ``test_groups``
    (``"<set>/n_train_models=<n>"`` -> list of groups, each a list of
    families) and, in the paper's file, ``chance_floor``. A file that cannot
    be read, is not JSON or lacks what the protocol needs is an
    :class:`InputError` naming the file and the fault, checked here so that
    the evaluation never fails halfway with a bare ``KeyError``.
    """
    path = protocol_path(path)
    where = f"protocol file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} cannot be read ({type(exc).__name__}): check its permissions and encoding (UTF-8)") from None
    try:
        proto = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): fix or replace it") from None
    need = "; ".join(f"{k!r} ({v})" for k, v in _PROTOCOL_KEYS.items())
    if not isinstance(proto, dict):
        raise InputError(f"{where} holds a JSON {_json_type(proto)}, not an object with keys {need}")
    missing = [k for k in _PROTOCOL_KEYS if k not in proto]
    if missing:
        raise InputError(f"{where} lacks key(s) {fmt_rows(missing)}: a protocol needs {need}")
    for key, check, shape in (
        ("benchmark_sets", lambda v: isinstance(v, list) and v and all(isinstance(b, str) for b in v),
         "a non-empty list of benchmark names"),
        ("test_groups", lambda v: isinstance(v, list) and all(
            isinstance(g, list) and g and all(isinstance(f, str) for f in g) for g in v),
         "a list of groups, each a non-empty list of family names"),
    ):
        entries = proto[key]
        if not isinstance(entries, dict):
            raise InputError(f"{where}: {key!r} must be a JSON object ({_PROTOCOL_KEYS[key]}), not a {_json_type(entries)}")
        for name, value in entries.items():
            if not check(value):
                raise InputError(f"{where}: {key}[{name!r}] must be {shape}, got {json.dumps(value)[:60]}")
    return proto


def paper_errors() -> pd.DataFrame:
    """The paper's published leave-family-out errors, one row per cell.

    Columns ``method`` (e.g. ``sloth_trainlink_d3``), ``benchmark_set``,
    ``n_train`` (training models per test family) and ``mae`` (mean absolute
    error averaged over test groups), in the order of the shipped
    ``sloth_lofo_mae_summary.csv``. That file is a wide table whose first rows
    are headers (benchmark set, then number of training models, then the
    ``method`` label); this is the same numbers, tidy.
    """
    ref = SLOTH_REFERENCE["mae_summary"]
    path = _verified_packaged(ref["packaged"], ref["sha256"], "table of the paper's errors", "")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    sets, ns = rows[0][1:], rows[1][1:]
    records = [
        (row[0], bset, int(n), float(mae))
        for row in rows[3:]
        for bset, n, mae in zip(sets, ns, row[1:], strict=True)
    ]
    return pd.DataFrame(records, columns=["method", "benchmark_set", "n_train", "mae"])
