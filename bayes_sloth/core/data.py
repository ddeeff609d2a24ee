"""Leaderboard data: loading, validation and the pinned real table.

A :class:`Leaderboard` is one validated table of LLMs: for each model its
family, parameters (billions), training tokens (trillions), instruct flag, and
its scores on a set of benchmarks in [0, 1], missing scores kept as ``NaN``.
Every check names the column, row or value at fault; nothing is dropped,
coerced or rescaled behind the user's back.

The real table (the Sloth paper's) and the paper's leave-family-out protocol
and published errors ship with the package in ``datasets/``, sha256-checked,
so the default path needs no network: :func:`load_sloth`,
:func:`load_protocol`, :func:`paper_errors`.
"""

from __future__ import annotations

import atexit
import csv
import difflib
import hashlib
import io
import json
import os
import re
import unicodedata
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataUnavailableError, InputError
from .errors import warn as _warn
from .metadata import (
    AGGREGATE_COLUMNS,
    CHANCE_FLOOR,
    DEFAULT_BENCHMARKS,
    LARGEST_PARAMS_BILLIONS,
    LARGEST_TOKENS_TRILLIONS,
    MAX_PARAMS_BILLIONS,
    MAX_TOKENS_TRILLIONS,
    SLOTH_COLUMNS,
    SLOTH_DATA,
    SLOTH_FLOPS_COLUMN,
    SLOTH_REFERENCE,
)

#: Environment variable that points the package at a local copy of the data
#: (a folder holding ``sloth/data_v2.csv`` or ``data_v2.csv``).
DATA_DIR_ENV = "BAYES_SLOTH_DATA_DIR"

_CANONICAL = ("model", "family", "params", "tokens", "instruct")
#: Tokens and FLOPs are taken to disagree when FLOPs / (6 N T) is outside [1 / F, F] with this F: a
#: mixture-of-experts model's FLOPs count its active parameters (Mixtral 8x7B: 13 of 47 B, ratio 0.28), so
#: ratios of a few are plausible; a unit slip (a factor of 1e3) or a typo is not.
FLOPS_TOKENS_FACTOR = 10.0
_DEFAULT_COLUMNS = {name: name for name in _CANONICAL}


def _fmt_rows(labels: Iterable, limit: int = 5) -> str:
    labels = [str(x) for x in labels]
    more = f" (and {len(labels) - limit} more)" if len(labels) > limit else ""
    return ", ".join(repr(x) for x in labels[:limit]) + more


def nfc(label):
    """A text label in Unicode normal form C (the form keyboards and most files use): the same name typed in
    another normal form (a composed or a decomposed accent) is the same name. Anything else is returned as is."""
    return unicodedata.normalize("NFC", label) if isinstance(label, str) else label


def label_key(label) -> str:
    """What two spellings of one name share: NFC, case folded, without whitespace ("MMLU-Pro", "mmlu-pro ",
    "MMLU- Pro"). Names with one key and different spellings are refused or matched with a "did you mean",
    never silently taken for two names."""
    return unicodedata.normalize("NFC", "".join(nfc(str(label)).casefold().split()))


def same_but_spelling(name, candidates) -> list:
    """The candidates that differ from ``name`` only in case, whitespace or Unicode normal form."""
    key = label_key(name)
    return [c for c in candidates if c != name and label_key(c) == key]


def spelling_clashes(labels) -> list[tuple]:
    """Groups of distinct labels (in order of first appearance) that differ only in case, whitespace or normal
    form."""
    groups: dict[str, list] = {}
    for lab in labels:
        members = groups.setdefault(label_key(lab), [])
        if lab not in members:
            members.append(lab)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def did_you_mean(name, candidates, cutoff: float = 0.6) -> str:
    """" (did you mean 'X'?)" for the closest candidate (case-insensitively), or ""."""
    cands = [str(c) for c in candidates]
    folded = {c.casefold(): c for c in cands}
    close = difflib.get_close_matches(str(name).casefold(), list(folded), n=1, cutoff=cutoff)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def is_aggregate_column(name) -> bool:
    """A column that summarises the other scores (:data:`bayes_sloth.core.metadata.AGGREGATE_COLUMNS`)."""
    return re.sub(r"[^0-9a-z]", "", label_key(name)) in AGGREGATE_COLUMNS


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """A validated leaderboard.

    Attributes
    ----------
    covariates : DataFrame
        Index ``model`` (unique names); columns ``family`` (str), ``params``
        (billions, > 0 or NaN), ``tokens`` (trillions, > 0 or NaN),
        ``instruct`` (bool).
    scores : DataFrame
        Index ``model`` (same order), one float column per benchmark, values in
        [0, 1] or NaN for a missing score.
    floors : Series
        Chance floor of each benchmark, in [0, 1).
    """

    covariates: pd.DataFrame
    scores: pd.DataFrame
    floors: pd.Series

    # ------------------------------------------------------------------ views
    @property
    def models(self) -> list[str]:
        return list(self.covariates.index)

    @property
    def benchmarks(self) -> list[str]:
        return list(self.scores.columns)

    @property
    def families(self) -> list[str]:
        """Families in order of first appearance."""
        return list(pd.unique(self.covariates["family"]))

    @property
    def n_observed(self) -> int:
        return int(self.scores.notna().to_numpy().sum())

    def __len__(self) -> int:
        return len(self.covariates)

    def __repr__(self) -> str:
        return (
            f"Leaderboard({len(self)} models, {len(self.families)} families, "
            f"{len(self.benchmarks)} benchmarks, {self.n_observed} observed scores)"
        )

    def to_frame(self) -> pd.DataFrame:
        """One flat table: covariates then scores, index ``model``."""
        return pd.concat([self.covariates, self.scores], axis=1)

    def sha256(self) -> str:
        """Hash of the table's content (covariates, scores, floors).

        Computed on one canonical layout (family as text, params and tokens as
        floats, the instruct flag as a bool, scores and floors as floats, in
        this order), so a table rebuilt from a fit file hashes as the table
        that was fitted, whatever types the fitted one was built with.
        """
        cov = self.covariates
        frame = pd.concat([pd.DataFrame({"family": cov["family"].astype(str).to_numpy(),
                                         "params": cov["params"].to_numpy(dtype=float),
                                         "tokens": cov["tokens"].to_numpy(dtype=float),
                                         "instruct": cov["instruct"].to_numpy(dtype=bool)},
                                        index=pd.Index(cov.index.astype(str), name="model")),
                           pd.DataFrame(self.scores.to_numpy(dtype=float), index=pd.Index(cov.index.astype(str),
                                        name="model"), columns=[str(b) for b in self.scores.columns])], axis=1)
        floors = pd.Series(self.floors.to_numpy(dtype=float), name="floor",
                           index=pd.Index([str(b) for b in self.floors.index], name="benchmark"))
        h = hashlib.sha256()
        h.update(frame.to_csv(float_format="%.17g").encode())
        h.update(floors.to_csv(float_format="%.17g").encode())
        return h.hexdigest()

    # ------------------------------------------------------------ selection
    def select(
        self,
        benchmarks: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        families: Sequence[str] | None = None,
    ) -> "Leaderboard":
        """A new leaderboard restricted to some benchmarks, models or families.

        Unknown names raise :class:`InputError`; order follows the arguments
        for benchmarks and the table for models.
        """
        cov, sc = self.covariates, self.scores
        if benchmarks is not None:
            benchmarks = list(benchmarks)
            unknown = [b for b in benchmarks if b not in sc.columns]
            if unknown:
                raise InputError(
                    f"benchmark {_fmt_rows(unknown)} is not in the table; "
                    f"available: {_fmt_rows(sc.columns, 20)}"
                )
            sc = sc[benchmarks]
        keep = pd.Series(True, index=cov.index)
        if models is not None:
            models = list(models)
            unknown = [m for m in models if m not in cov.index]
            if unknown:
                raise InputError(f"model {_fmt_rows(unknown)} is not in the table")
            keep &= cov.index.isin(models)
        if families is not None:
            families = list(families)
            unknown = [f for f in families if f not in set(cov["family"])]
            if unknown:
                raise InputError(f"family {_fmt_rows(unknown)} is not in the table")
            keep &= cov["family"].isin(families)
        return Leaderboard(cov[keep.to_numpy()], sc[keep.to_numpy()], self.floors[sc.columns])

    def complete_covariates(self, warn: bool = True, columns: Sequence[str] = ("params", "tokens")) -> "Leaderboard":
        """Drop models with a missing value in ``columns`` (default parameters or tokens), with a warning.

        :meth:`SkillsLaw.fit` needs only the parameters (``columns=("params",)``):
        a model without a token count gets latent tokens. The warning counts
        and names the dropped models, so nothing goes silently.
        """
        columns = list(columns)
        missing = self.covariates[columns].isna().any(axis=1)
        if not missing.any():
            return self
        if warn:
            names = list(self.covariates.index[missing])
            what = " or ".join("parameters" if c == "params" else c for c in columns)
            warnings.warn(
                f"dropped {len(names)} of {len(self)} models with missing {what}: {_fmt_rows(names, 8)}",
                UserWarning,
                stacklevel=2,
            )
        return self.select(models=list(self.covariates.index[~missing]))

    def long(self) -> pd.DataFrame:
        """Observed scores as a long table (model, benchmark, score), table order."""
        sc = self.scores
        rows, cols = np.nonzero(sc.notna().to_numpy())
        return pd.DataFrame(
            {
                "model": sc.index.to_numpy()[rows],
                "benchmark": sc.columns.to_numpy()[cols],
                "score": sc.to_numpy()[rows, cols],
            }
        )


# ---------------------------------------------------------------- reading
def _read_csv(path: str | os.PathLike) -> tuple[pd.DataFrame, bytes]:
    """The table of a CSV file, and the file's bytes.

    The file is read once, whole, and parsed from memory: a pipe or a
    process substitution (``--data <(...)``) can be read only once, and a
    file changed between two reads would give two different tables.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"data path {str(path)!r} is a folder, not a CSV file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"data file {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    reason = _sniff_not_csv(raw)
    if reason:
        raise InputError(f"data file {str(path)!r} is not a CSV table: {reason}")
    try:
        df = pd.read_csv(io.BytesIO(raw))
    except pd.errors.EmptyDataError:
        raise InputError(f"data file {str(path)!r} is empty: it needs a header row and one row per model") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"data file {str(path)!r} is not a readable CSV table ({first})") from None
    if df.shape[1] < 2:
        raise InputError(
            f"data file {str(path)!r} does not look like a CSV table: it parsed into "
            f"{df.shape[1]} column(s); expected model, family, params, tokens and score columns"
        )
    if len(df) == 0:
        raise InputError(f"data file {str(path)!r} has a header but no rows")
    dup = _duplicated_header(raw)
    if dup:
        raise InputError(
            f"data file {str(path)!r} has column header {_fmt_rows(dup)} more than once (pandas would "
            "silently rename the second copy): rename or remove the duplicate column"
        )
    return df, raw


def _duplicated_header(raw: bytes) -> list[str]:
    """Header names that occur more than once (in Unicode normal form C), read from the file's bytes.

    pandas renames a repeated ``MMLU`` to ``MMLU.1``, after which nothing can
    tell it from a real column; the csv module gives the header as written.
    Empty names are left out: pandas names those ``Unnamed: k`` and they are
    never used as columns.
    """
    text = raw.decode("utf-8-sig", errors="replace")
    header = next((row for row in csv.reader(io.StringIO(text, newline="")) if row), [])
    seen, dup = set(), []
    for name in map(nfc, header):
        if name.strip() and name in seen and name not in dup:
            dup.append(name)
        seen.add(name)
    return dup


def _read_text_columns(raw: bytes, columns: Sequence[str]) -> pd.DataFrame:
    """Columns of a CSV file read as text, exactly as written (from the file's bytes; headers in NFC).

    Names are text, not numbers: read as numbers, model ``000`` would become
    ``0`` and families ``1`` and ``1.0`` would merge. Only an empty cell is
    missing (pandas' other missing markers, such as ``NA``, stay names).
    """
    text = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""])
    text.columns = [nfc(c) for c in text.columns]
    return text[list(columns)]


def _is_sloth_table(df: pd.DataFrame) -> bool:
    return all(col in df.columns for col in SLOTH_COLUMNS.values())


def _numeric_column(df: pd.DataFrame, col: str, what: str, models: pd.Index, hint: str = "") -> pd.Series:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"column {col!r} ({what}) has non-numeric value {raw.iloc[i]!r} in row "
            f"{i} (model {models[i]!r}); {int(bad.sum())} such value(s) in all: write a number, "
            f"or leave the cell empty for a missing value{hint}"
        )
    return num.astype(float)


def _sniff_not_csv(raw: bytes) -> str | None:
    """A reason why a file's bytes are clearly not a CSV table (JSON, HDF5/netCDF, zip/xlsx), or None."""
    head = raw[:8]
    if head.startswith(b"\x89HDF") or head.startswith(b"CDF"):
        return "it is a netCDF/HDF5 file (a saved fit? use `bayes-sloth predict FIT.nc --data NEW.csv`)"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (an .xlsx workbook?): export the sheet as CSV"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it looks like JSON: export the table as CSV"
    return None


def load_leaderboard(
    source: str | os.PathLike | pd.DataFrame,
    *,
    benchmarks: Sequence[str] | None = None,
    model_col: str | None = None,
    family_col: str | None = None,
    params_col: str | None = None,
    tokens_col: str | None = None,
    instruct_col: str | None = None,
    flops_col: str | None = None,
    floors: Mapping[str, float] | None = None,
    score_scale: str = "unit",
    require_scores: bool = True,
) -> Leaderboard:
    """Read and validate a leaderboard from a CSV path or a DataFrame.

    The Sloth table (``data_v2.csv``) is recognised by its column names and
    needs no options (family is its column ``Family2``; benchmarks default to
    the twelve of Leaderboard v1 and v2). Any other table names its columns
    with the ``*_col`` arguments (defaults ``model``, ``family``, ``params``,
    ``tokens``, ``instruct``); its benchmarks are ``benchmarks`` or else every
    other column.

    Model and family names are text, as written (model ``000`` stays
    ``000``; families ``1`` and ``1.0`` stay two families; in a CSV only an
    empty cell is a missing name). Plausible but wrong input is refused with
    an :class:`InputError` naming the column, row or value: a column header
    given twice, a blank name or family, parameters or tokens far above any
    public model (a raw count or the wrong unit: parameters are billions,
    tokens trillions; limits in :mod:`bayes_sloth.core.metadata`), and, when
    scores are required, a benchmark the law cannot learn from (observed
    scores all equal, all exactly 0 or 1, or all at or below the chance floor).

    Labels (column headers, model and family names, the names given in
    ``benchmarks`` and ``*_col``) are read in Unicode normal form C. Names
    that differ only in case, whitespace or normal form are never taken for
    two things, nor one silently for the other: two such models, families or
    used columns in one table are refused, and so is a benchmark asked for
    (``benchmarks``: the fitted ones, when reading forecast rows) that the
    table spells another way, with the spelling it has. A column that
    summarises the others (``Average``, ``avg``, ...;
    :data:`bayes_sloth.core.metadata.AGGREGATE_COLUMNS`) is refused as a
    benchmark unless named in ``benchmarks``. When score columns are
    optional (``require_scores=False``), a column not asked for whose name is
    close to a benchmark asked for is named in a warning (it is not used).

    Parameters
    ----------
    source : path or DataFrame
    benchmarks : list of str, optional
        Score columns to keep, in this order.
    floors : dict, optional
        Chance floor per benchmark; overrides the package metadata
        (:data:`bayes_sloth.core.metadata.CHANCE_FLOOR`). A benchmark known to
        neither gets floor 0 with a warning.
    flops_col : str, optional
        Column of training compute C in units of 1e21 FLOPs (the Sloth
        table's ``FLOPs (1E21)``, its default there; ``flops`` elsewhere,
        used when present). A model with C but no token count gets
        T = C / (6 N) trillion tokens (N in billions: the usual C = 6 N T,
        in these units exactly), with a warning naming it; a model with both
        whose C / (6 N T) is off by more than a factor
        :data:`FLOPS_TOKENS_FACTOR` is named in a warning (a unit slip or a
        typo in one of them). A model with neither keeps a missing token
        count: a fit gives it latent tokens (:mod:`bayes_sloth.core.model`).
    score_scale : {"unit", "percent"}
        ``"unit"``: scores must lie in [0, 1]; a column that looks like a
        percent scale (values above 1, none above 100) is an error that says
        so. ``"percent"``: every score is divided by 100.
    require_scores : bool
        If False (for prediction inputs), score columns may be absent.
    """
    raw = None
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        name = "the DataFrame"
        df.columns = [nfc(c) for c in df.columns]
        dup = list(pd.unique(df.columns[df.columns.duplicated()]))
        if dup:
            raise InputError(
                f"the DataFrame has column {_fmt_rows(dup)} more than once: rename or drop the duplicate "
                "(e.g. df.loc[:, ~df.columns.duplicated()]) so each column is one field"
            )
    else:
        df, raw = _read_csv(source)
        df.columns = [nfc(c) for c in df.columns]
        name = repr(str(source))
    if df.empty:
        raise InputError(f"{name} has no rows")
    if score_scale not in ("unit", "percent"):
        raise InputError(f"score_scale must be 'unit' or 'percent', got {score_scale!r}")

    given = {
        "model": model_col,
        "family": family_col,
        "params": params_col,
        "tokens": tokens_col,
        "instruct": instruct_col,
    }
    given = {k: nfc(v) for k, v in given.items()}
    sloth = all(v is None for v in given.values()) and _is_sloth_table(df)
    defaults = SLOTH_COLUMNS if sloth else _DEFAULT_COLUMNS
    cols = {k: (v if v is not None else defaults[k]) for k, v in given.items()}

    for key in ("model", "family", "params", "tokens"):
        if cols[key] not in df.columns:
            option = f"--{key}-col / {key}_col"
            near = same_but_spelling(cols[key], df.columns)
            hint = (f"; it has {near[0]!r}, which differs only in case or spacing: rename it to {cols[key]!r} or "
                    f"pass {option} {near[0]!r}" if near else f"; name it with {option}")
            raise InputError(
                f"{name} has no {key} column {cols[key]!r}{hint} "
                f"(columns are: {_fmt_rows(df.columns, 12)})"
            )
    if instruct_col is not None and cols["instruct"] not in df.columns:
        raise InputError(f"{name} has no instruct column {cols['instruct']!r}"
                         + did_you_mean(cols["instruct"], df.columns))
    if cols["instruct"] not in df.columns:
        near = same_but_spelling(cols["instruct"], df.columns)
        if near:  # an "Instruct" column would otherwise be read as a benchmark, or ignored
            raise InputError(f"{name} has no instruct column {cols['instruct']!r} but has {near[0]!r}, which differs "
                             f"only in case or spacing: rename it to {cols['instruct']!r} or pass --instruct-col / "
                             f"instruct_col {near[0]!r}")
    if raw is not None:
        text = _read_text_columns(raw, [cols["model"], cols["family"]])
        if len(text) != len(df):  # both reads skip the same blank lines; never expected
            raise InputError(f"{name}: could not read the model and family names as text")
        df[cols["model"]] = text[cols["model"]].to_numpy()
        df[cols["family"]] = text[cols["family"]].to_numpy()

    # --- model names
    model = df[cols["model"]]
    if model.isna().any():
        rows = np.flatnonzero(model.isna().to_numpy())
        raise InputError(f"column {cols['model']!r} (model name) is empty in row(s) {_fmt_rows(rows)}")
    model = model.astype(str).str.strip().map(nfc)
    if (model == "").any():
        rows = np.flatnonzero((model == "").to_numpy())
        raise InputError(f"column {cols['model']!r} (model name) is blank in row(s) {_fmt_rows(rows)}")
    dup = model[model.duplicated(keep=False)]
    if len(dup):
        raise InputError(
            f"column {cols['model']!r} has duplicate model name(s) {_fmt_rows(pd.unique(dup))}: "
            "each model must appear in one row"
        )
    clash = spelling_clashes(model)
    if clash:
        rows = [int(np.flatnonzero((model == m).to_numpy())[0]) for m in clash[0]]
        raise InputError(
            f"column {cols['model']!r} has model names {' and '.join(repr(m) for m in clash[0])} (rows "
            f"{', '.join(map(str, rows))}) that differ only in case or spacing: the same model twice? each model "
            f"must appear in one row; if they are different models, name them so they differ otherwise"
        )
    models = pd.Index(model, name="model")

    # --- family
    fam = df[cols["family"]]
    if fam.isna().any():
        rows = np.flatnonzero(fam.isna().to_numpy())
        raise InputError(
            f"column {cols['family']!r} (family) is missing for model(s) "
            f"{_fmt_rows(models[rows])}: every model needs a family"
        )
    fam = fam.astype(str).str.strip().map(nfc)
    if (fam == "").any():
        rows = np.flatnonzero((fam == "").to_numpy())
        raise InputError(
            f"column {cols['family']!r} (family) is blank for model(s) {_fmt_rows(models[rows])} "
            f"(row(s) {', '.join(str(r) for r in rows[:5])}): every model needs a family; write one (a model "
            "alone in its family can use its own name)"
        )

    clash = spelling_clashes(fam)
    if clash:
        who = [models[int(np.flatnonzero((fam == f).to_numpy())[0])] for f in clash[0]]
        raise InputError(
            f"column {cols['family']!r} (family) has {' and '.join(repr(f) for f in clash[0])} (models "
            f"{', '.join(repr(m) for m in who)}), which differ only in case or spacing: one family spelled two "
            "ways would be fitted as two families; write one spelling (or names that differ otherwise)"
        )

    # --- covariates
    cov = {"family": fam.to_numpy()}
    for key, what in (("params", "parameters, billions"), ("tokens", "training tokens, trillions")):
        v = _numeric_column(df, cols[key], what, models)
        bad = (v <= 0) | np.isinf(v)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            unknown = ("fits then drop the model with a warning" if key == "params" else
                       "fits then learn its tokens from the models that have them")
            raise InputError(
                f"column {cols[key]!r} ({what}) must be a finite positive number; model {models[i]!r} "
                f"(row {i}) has {v.iloc[i]:g}: fix it, or leave it empty if unknown ({unknown})"
            )
        _check_unit(v, key, cols[key], models)
        cov[key] = v.to_numpy()
    flops_col = nfc(flops_col)
    flops_name = flops_col if flops_col is not None else (SLOTH_FLOPS_COLUMN if sloth else "flops")
    if flops_col is not None and flops_col not in df.columns:
        raise InputError(f"{name} has no FLOPs column {flops_col!r} (columns are: {_fmt_rows(df.columns, 12)})")
    if flops_name in df.columns:
        cov["tokens"] = _tokens_from_flops(df, flops_name, cov["params"], cov["tokens"], models)
    if cols["instruct"] in df.columns:
        ins = df[cols["instruct"]]
        mapped = ins.map(
            lambda x: {True: True, False: False, 1: True, 0: False, "true": True, "false": False,
                       "True": True, "False": False, "1": True, "0": False, "yes": True, "no": False}.get(x, None)
            if not (isinstance(x, float) and np.isnan(x)) else None
        )
        if mapped.isna().any():
            i = int(np.flatnonzero(mapped.isna().to_numpy())[0])
            raise InputError(
                f"column {cols['instruct']!r} (instruct flag) must be true/false; model "
                f"{models[i]!r} (row {i}) has {ins.iloc[i]!r}"
            )
        cov["instruct"] = mapped.astype(bool).to_numpy()
    else:
        cov["instruct"] = np.zeros(len(df), dtype=bool)
    covariates = pd.DataFrame(cov, index=models)

    # --- scores
    used = {cols[k] for k in _CANONICAL} | {flops_name}
    explicit = benchmarks is not None
    if benchmarks is None:
        if sloth:
            benchmarks = list(DEFAULT_BENCHMARKS)
        else:
            benchmarks = [c for c in df.columns if c not in used and not str(c).startswith("Unnamed:")]
            aggregate = [c for c in benchmarks if is_aggregate_column(c)]
            if aggregate:
                raise InputError(
                    f"column {aggregate[0]!r} of {name} looks like an aggregate of the other scores (an average or "
                    "total), not a benchmark: fitted as one it would count every score twice; drop it, or choose "
                    "the score columns with benchmarks= (--benchmarks), naming it there if it really is a benchmark"
                )
    benchmarks = [nfc(b) for b in benchmarks]
    others = [c for c in df.columns if c not in used]
    missing_cols = [b for b in benchmarks if b not in df.columns]
    for b in missing_cols:
        near = same_but_spelling(b, others)
        if near:
            todo = (f"ask for {near[0]!r} as the table spells it, or rename the column" if require_scores else
                    f"rename the column to {b!r} for its scores to be used (a forecast is conditioned on them), or "
                    "drop it")
            raise InputError(f"benchmark {b!r} is not a column of {name}, but {near[0]!r} is (they differ only in "
                             f"case or spacing, and names must match exactly): {todo}")
    if missing_cols:
        if require_scores:
            raise InputError(
                f"benchmark {_fmt_rows(missing_cols)} is not a column of {name}"
                f"{did_you_mean(missing_cols[0], others)}; columns are: {_fmt_rows(others, 20)}"
            )
        benchmarks = [b for b in benchmarks if b in df.columns]
    clash = spelling_clashes(list(dict.fromkeys([cols[k] for k in _CANONICAL if cols[k] in df.columns]
                                                + ([flops_name] if flops_name in df.columns else []) + benchmarks)))
    if clash:
        raise InputError(
            f"{name} has columns {' and '.join(repr(c) for c in clash[0])}, which differ only in case or spacing: "
            "the same column twice? rename or drop one (or choose the score columns with benchmarks= / --benchmarks)"
        )
    if not require_scores and explicit:
        unused = [c for c in others if c not in benchmarks and not str(c).startswith("Unnamed:")]
        near = [(c, did_you_mean(c, missing_cols, cutoff=0.8)) for c in unused]
        near = [(c, hint) for c, hint in near if hint]
        if near:
            _warn(f"column(s) of {name} not used as scores: " + "; ".join(f"{c!r}{hint}" for c, hint in near[:5])
                  + " (only a column named exactly like a fitted benchmark is read as its scores)")
    if require_scores and not benchmarks:
        raise InputError(f"{name} has no benchmark score columns")
    if len(set(benchmarks)) != len(benchmarks):
        raise InputError(f"benchmark list names a column twice: {benchmarks}")
    scores = {}
    chosen = "" if explicit else "; or choose the score columns with benchmarks= (--benchmarks)"
    for b in benchmarks:
        v = _numeric_column(df, b, "benchmark score", models, chosen)
        if score_scale == "percent":
            v = v / 100.0
        out = (v < 0) | (v > 1)
        if out.any():
            i = int(np.flatnonzero(out.to_numpy())[0])
            obs = v.dropna()
            # a percent-scale column: nothing negative, nothing above 100, most values above 1
            if score_scale == "unit" and (obs >= 0).all() and obs.max() <= 100 and (obs > 1).mean() >= 0.5:
                raise InputError(
                    f"benchmark column {b!r} looks like a percent scale ({int((obs > 1).sum())} of {len(obs)} "
                    f"scores above 1, max {obs.max():g}); scores must be in [0, 1]: divide by 100 or pass "
                    "score_scale='percent' (--percent)"
                )
            raise InputError(
                f"benchmark column {b!r} has score {v.iloc[i]:g} for model {models[i]!r} "
                f"(row {i}) outside [0, 1] ({int(out.sum())} such value(s)): fix it, or leave the cell "
                "empty for a missing score"
            )
        scores[b] = v.to_numpy()
    scores = pd.DataFrame(scores, index=models, columns=benchmarks, dtype=float)
    if require_scores:
        empty = [b for b in benchmarks if scores[b].isna().all()]
        if empty:
            raise InputError(
                f"benchmark {_fmt_rows(empty)} has no observed score in {name}: leave it out of "
                "benchmarks= (--benchmarks) or add its scores"
            )

    fl = _resolve_floors(benchmarks, floors)
    if require_scores:
        for b in benchmarks:
            _check_learnable(scores[b], b, fl[b], name)
    return Leaderboard(covariates, scores, fl)


def _tokens_from_flops(df: pd.DataFrame, col: str, params: np.ndarray, tokens: np.ndarray,
                       models: pd.Index) -> np.ndarray:
    """Tokens with the missing ones computed from training FLOPs, T = C / (6 N); checks both ways.

    C is in units of 1e21 FLOPs, N in billions and T in trillions, so
    ``C = 6 N T`` holds with no other factor. A derived count above the
    token limit (C as a raw count, or in the wrong unit) is refused; a model
    whose reported tokens and FLOPs disagree by more than a factor
    :data:`FLOPS_TOKENS_FACTOR` is named in a warning (kept as reported).
    """
    c = _numeric_column(df, col, "training compute, units of 1e21 FLOPs", models).to_numpy()
    bad = (c <= 0) | np.isinf(c)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"column {col!r} (training compute, units of 1e21 FLOPs) must be a finite positive number; "
                         f"model {models[i]!r} (row {i}) has {c[i]:g}: fix it, or leave it empty if unknown")
    tokens = tokens.copy()
    derive = np.isnan(tokens) & np.isfinite(c) & np.isfinite(params)
    if derive.any():
        t = c / (6.0 * params)
        big = derive & (t > MAX_TOKENS_TRILLIONS)
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise InputError(
                f"model {models[i]!r} (row {i}) has no token count and {c[i]:g} in FLOPs column {col!r}: "
                f"T = C / (6 N) = {t[i]:g} trillion tokens, above {MAX_TOKENS_TRILLIONS:g}; FLOPs must be in "
                "units of 1e21 (and parameters in billions): divide the column by 1e21 if it holds raw FLOPs")
        tokens[derive] = t[derive]
        warnings.warn(f"training tokens of {int(derive.sum())} model(s) computed from column {col!r} as "
                      f"T = C / (6 N): {_fmt_rows(models[derive], 8)}", UserWarning, stacklevel=3)
    both = ~derive & np.isfinite(tokens) & np.isfinite(c) & np.isfinite(params)
    ratio = np.where(both, c / (6.0 * np.where(both, params * tokens, 1.0)), 1.0)
    off = both & ((ratio > FLOPS_TOKENS_FACTOR) | (ratio < 1.0 / FLOPS_TOKENS_FACTOR))
    if off.any():
        named = ", ".join(f"{models[i]!r} ({ratio[i]:.3g})" for i in np.flatnonzero(off)[:5])
        warnings.warn(f"FLOPs and tokens disagree for {int(off.sum())} model(s): C / (6 N T) = {named} is beyond a "
                      f"factor {FLOPS_TOKENS_FACTOR:g} of 1; check the units (C in 1e21 FLOPs, N in billions, T in "
                      "trillions) or a typo; the reported tokens are used", UserWarning, stacklevel=3)
    return tokens


#: For each covariate: what it counts, its unit, the largest public value and
#: the limit above which a value is a unit slip (the facts and the headroom are
#: in :mod:`bayes_sloth.core.metadata`), the smallest raw count a real model has, and
#: the two usual slips with their divisors.
_UNITS = {
    "params": ("parameters", "billion", "models", LARGEST_PARAMS_BILLIONS, MAX_PARAMS_BILLIONS, 1e6,
               ("a raw count", "1e9"), ("millions", "1e3")),
    "tokens": ("training tokens", "trillion", "training sets", LARGEST_TOKENS_TRILLIONS, MAX_TOKENS_TRILLIONS, 1e9,
               ("a raw count", "1e12"), ("billions", "1e3")),
}


def _check_unit(v: pd.Series, key: str, col: str, models: pd.Index) -> None:
    """Refuse a parameter or token count written in the wrong unit.

    Like a percent-scale score, such a value is valid as a number and wrong by
    a factor of a thousand or more: left in, it stretches the law's covariate
    scale and bends every forecast. Values far above anything public are
    refused, and the message says which slip the size suggests (a raw count,
    or one unit too small).
    """
    what, unit, things, largest, limit, raw_from, raw, smaller = _UNITS[key]
    big = v > limit
    if not big.any():
        return
    i = int(np.flatnonzero(big.to_numpy())[0])
    slip, divisor = raw if v.iloc[i] >= raw_from else smaller
    raise InputError(
        f"column {col!r} ({what}) has {v.iloc[i]:g} for model {models[i]!r} (row {i}; {int(big.sum())} such "
        f"value(s)), above {limit:g} {unit}, {limit / largest:g} times the largest public {things} (about "
        f"{largest:g} {unit}): {what} must be in {unit}s; this looks like {slip}: divide the column by {divisor}"
    )


def _check_learnable(v: pd.Series, bench: str, floor: float, name: str) -> None:
    """Refuse a benchmark whose observed scores carry no information about skill.

    A skills law learns a benchmark from how its scores differ between models
    above the chance floor. Scores all equal, all at or below the floor, or
    all exactly 0 or 1 (pass/fail outcomes) give it nothing to learn: such a
    table samples with R-hat near 3 and intervals of width zero. One observed
    score is allowed (the first data point of a new benchmark).
    """
    obs = v.dropna()
    n = len(obs)
    if n < 2:
        return
    if obs.nunique() == 1:
        why = f"all {n} observed scores equal {obs.iloc[0]:g}, so it cannot tell a stronger model from a weaker one"
    elif obs.isin([0.0, 1.0]).all():
        why = (f"all {n} observed scores are exactly 0 or 1 ({int((obs == 0).sum())} zeros, "
               f"{int((obs == 1).sum())} ones): pass/fail outcomes, not graded scores")
    elif (obs <= floor).all():
        why = (f"all {n} observed scores are at or below its chance floor {floor:g} (highest {obs.max():g}): "
               "what random guessing scores, no sign of skill")
    else:
        return
    raise InputError(
        f"benchmark {bench!r} in {name} cannot be learned: {why}; leave it out with benchmarks= (--benchmarks), "
        "or fix its scores"
    )


def _resolve_floors(benchmarks: Sequence[str], floors: Mapping[str, float] | None) -> pd.Series:
    floors = {nfc(k): v for k, v in dict(floors or {}).items()}
    out, unknown = {}, []
    for b in benchmarks:
        if b in floors:
            val = floors[b]
        elif b in CHANCE_FLOOR:
            val = CHANCE_FLOOR[b]
        else:
            val, _ = 0.0, unknown.append(b)
        try:
            val = float(val)
        except (TypeError, ValueError):
            raise InputError(f"chance floor of {b!r} must be a number, got {val!r}") from None
        if not 0.0 <= val < 1.0:
            raise InputError(f"chance floor of {b!r} must be in [0, 1), got {val!r}")
        out[b] = val
    if unknown:
        warnings.warn(
            f"no chance floor known for benchmark(s) {_fmt_rows(unknown)}: using 0; pass floors= to set one",
            UserWarning,
            stacklevel=3,
        )
    return pd.Series(out, name="floor", dtype=float).rename_axis("benchmark")


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
        raise InputError(f"{where} lacks key(s) {_fmt_rows(missing)}: a protocol needs {need}")
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


# ------------------------------------------------------------ families
def split_family(lb: Leaderboard, family: str, n_train: int, among: Sequence[str] | None = None) -> tuple[list, list]:
    """The one rule for "a family seen through its n smallest models" (the report and the evaluation use it).

    The family's models with parameters and tokens (only those in ``among``,
    when given: the evaluation passes the protocol's complete rows) are
    ordered by parameters, ties kept in table order; the first ``n_train``
    are the training models, the rest are held out. Returns
    ``(train_models, held_out_models)``; an unknown family (with a "did you
    mean"), a bad ``n_train``, or too few models is an :class:`InputError`.
    """
    cov = lb.covariates
    fams = set(cov["family"])
    if family not in fams:
        close = same_but_spelling(family, sorted(fams)) or [
            {f.casefold(): f for f in fams}[c] for c in difflib.get_close_matches(
                str(family).casefold(), sorted(f.casefold() for f in fams), n=3)]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(f"family {family!r} is not in the leaderboard{hint}")
    if not isinstance(n_train, (int, np.integer)) or isinstance(n_train, bool) or n_train < 0:
        raise InputError(f"n_train must be a non-negative integer, got {n_train!r}")
    members = cov[(cov["family"] == family).to_numpy() & cov[["params", "tokens"]].notna().all(axis=1).to_numpy()]
    if among is not None:
        members = members[members.index.isin(list(among))]
    order = list(members.sort_values("params", kind="mergesort").index)
    if len(order) < n_train + 1:
        raise InputError(
            f"family {family!r} has {len(order)} usable model(s) (parameters and tokens"
            f"{', complete scores' if among is not None else ''}); forecasting it from its {n_train} smallest "
            f"needs at least {n_train + 1}"
        )
    return order[:n_train], order[n_train:]
