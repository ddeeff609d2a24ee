"""Reading a leaderboard from a CSV file or a DataFrame, every value checked.

Every check names the column, row or value at fault; nothing is dropped,
coerced or rescaled behind the user's back (a percent scale, raw parameter or
token counts, an aggregate column, a pipe read once).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .errors import warn as _warn
from .leaderboard import (
    Leaderboard,
    did_you_mean,
    fmt_rows,
    is_aggregate_column,
    nfc,
    same_but_spelling,
    spelling_clashes,
)
from .metadata import (
    CHANCE_FLOOR,
    DEFAULT_BENCHMARKS,
    LARGEST_PARAMS_BILLIONS,
    LARGEST_TOKENS_TRILLIONS,
    MAX_PARAMS_BILLIONS,
    MAX_TOKENS_TRILLIONS,
    SLOTH_COLUMNS,
    SLOTH_FLOPS_COLUMN,
)

_CANONICAL = ("model", "family", "params", "tokens", "instruct")


#: Tokens and FLOPs are taken to disagree when FLOPs / (6 N T) is outside [1 / F, F] with this F: a
#: mixture-of-experts model's FLOPs count its active parameters (Mixtral 8x7B: 13 of 47 B, ratio 0.28), so
#: ratios of a few are plausible; a unit slip (a factor of 1e3) or a typo is not.
FLOPS_TOKENS_FACTOR = 10.0


_DEFAULT_COLUMNS = {name: name for name in _CANONICAL}


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
            f"data file {str(path)!r} has column header {fmt_rows(dup)} more than once (pandas would "
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
                f"the DataFrame has column {fmt_rows(dup)} more than once: rename or drop the duplicate "
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
    if sloth and not isinstance(source, pd.DataFrame):
        name = f"the Sloth table ({os.path.basename(str(source))!r})"
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
                f"(columns are: {fmt_rows(df.columns, 12)})"
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
        raise InputError(f"column {cols['model']!r} (model name) is empty in row(s) {fmt_rows(rows)}")
    model = model.astype(str).str.strip().map(nfc)
    if (model == "").any():
        rows = np.flatnonzero((model == "").to_numpy())
        raise InputError(f"column {cols['model']!r} (model name) is blank in row(s) {fmt_rows(rows)}")
    dup = model[model.duplicated(keep=False)]
    if len(dup):
        raise InputError(
            f"column {cols['model']!r} has duplicate model name(s) {fmt_rows(pd.unique(dup))}: "
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
            f"{fmt_rows(models[rows])}: every model needs a family"
        )
    fam = fam.astype(str).str.strip().map(nfc)
    if (fam == "").any():
        rows = np.flatnonzero((fam == "").to_numpy())
        raise InputError(
            f"column {cols['family']!r} (family) is blank for model(s) {fmt_rows(models[rows])} "
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
        raise InputError(f"{name} has no FLOPs column {flops_col!r} (columns are: {fmt_rows(df.columns, 12)})")
    if flops_name in df.columns:
        cov["tokens"] = _tokens_from_flops(df, flops_name, cov["params"], cov["tokens"], models)
    if cols["instruct"] in df.columns:
        ins = df[cols["instruct"]]
        mapped = ins.map(
            lambda x: {True: True, False: False, "true": True, "false": False,  # 1 and 0 are True and False here
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
            valid = _benchmark_columns(df, others, sloth)
            rest = len([c for c in others if c not in valid and not str(c).startswith("Unnamed:")])
            raise InputError(
                f"benchmark {fmt_rows(missing_cols)} is not a column of {name}"
                f"{did_you_mean(missing_cols[0], valid or others)}; its benchmarks are: {fmt_rows(valid, 30)}"
                + (f" (and {rest} other column(s): " + ("sub-task scores and metadata)" if sloth else "not scores)")
                   if rest else "")
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
                f"benchmark {fmt_rows(empty)} has no observed score in {name}: leave it out of "
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
                      f"T = C / (6 N): {fmt_rows(models[derive], 8)}", UserWarning, stacklevel=3)
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
            f"no chance floor known for benchmark(s) {fmt_rows(unknown)}: using 0; pass floors= to set one",
            UserWarning,
            stacklevel=3,
        )
    return pd.Series(out, name="floor", dtype=float).rename_axis("benchmark")


def _benchmark_columns(df: pd.DataFrame, others, sloth: bool) -> list:
    """The columns a user can ask for as benchmarks, to list in an error: in the Sloth table, those with a known
    chance floor (its MMLU-like benchmarks, not its sub-task and metadata columns); elsewhere the numeric columns
    that are not covariates."""
    if sloth:
        return [c for c in others if c in CHANCE_FLOOR]
    out = []
    for c in others:
        if str(c).startswith("Unnamed:"):
            continue
        if pd.api.types.is_numeric_dtype(df[c]) or pd.to_numeric(df[c], errors="coerce").notna().mean() > 0.5:
            out.append(c)
    return out


def _as_leaderboard(data, benchmarks=None, columns=None, require_scores=True) -> Leaderboard:
    if isinstance(data, Leaderboard):
        return data.select(benchmarks=benchmarks) if benchmarks is not None else data
    return load_leaderboard(data, benchmarks=benchmarks, require_scores=require_scores, **(columns or {}))


def read_new_models(new, benchmarks: Sequence[str] | None = None, columns: dict | None = None) -> Leaderboard:
    """New models to forecast, read and validated once: the one reader of forecast inputs.

    ``new`` is a DataFrame, a CSV path or a Leaderboard with model, family,
    params and tokens (and optional instruct) columns. Score columns are
    optional: those named like one of ``benchmarks`` (the fitted benchmarks)
    are read as observed scores, with the same checks as a leaderboard's;
    every other column is ignored (one whose name is close to a fitted
    benchmark's with a warning). A column that spells a fitted benchmark
    another way (case, spacing, Unicode normal form: ``mmlu`` for ``MMLU``)
    is refused, with the fitted name: read or ignored, it would change the
    forecast without a word. Any error in what is read is raised.
    """
    if isinstance(new, Leaderboard):
        for b in benchmarks or []:
            near = same_but_spelling(b, new.benchmarks) if b not in new.benchmarks else []
            if near:
                raise InputError(f"benchmark {b!r} is not a column of the new models' leaderboard, but {near[0]!r} is "
                                 "(they differ only in case or spacing, and names must match exactly): rename it to "
                                 f"{b!r} for its scores to be used (a forecast is conditioned on them), or drop it")
        keep = [b for b in (benchmarks or []) if b in new.benchmarks]
        return new.select(benchmarks=keep)
    return load_leaderboard(new, benchmarks=list(benchmarks or []), require_scores=False, **(columns or {}))
