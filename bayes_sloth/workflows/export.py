"""Forecast tables for papers and spreadsheets: CSV and LaTeX, written atomically.

A forecast table (:meth:`SkillsLaw.forecast`) is tidy: one row per (model,
benchmark). For a spreadsheet that is the right shape (:func:`write_forecasts`
with a ``.csv`` path writes it as it is, text cells escaped against formula
injection). For a paper, one row per model and one column per benchmark
reads better: :func:`wide_forecasts` builds it, each cell ``mean [lower,
upper]`` at the table's interval level, and :func:`forecasts_to_latex`
renders it through pandas (``DataFrame.to_latex``, LaTeX special characters
in names escaped).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.io import output_target, write_csv, write_text

#: Columns a forecast table must have to be exported.
REQUIRED = ("model", "benchmark", "mean", "lower", "upper")
FORMATS = {".csv": "csv", ".tex": "latex"}


def _check_table(table) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"a forecast table (DataFrame from SkillsLaw.forecast) is needed, got {type(table).__name__}")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"the forecast table has no column {missing[0]!r} (needs {', '.join(REQUIRED)}): "
                         "export the DataFrame SkillsLaw.forecast returns")
    dup = table.duplicated(["model", "benchmark"])
    if dup.any():
        r = table[dup].iloc[0]
        raise InputError(f"the forecast table has two rows for model {r['model']!r} on benchmark {r['benchmark']!r}")
    return table


def _level(table: pd.DataFrame) -> float | None:
    if "level" not in table:
        return None
    levels = pd.unique(table["level"])
    if len(levels) != 1:
        raise InputError(f"the forecast table mixes interval levels {sorted(levels)}: export one level at a time")
    return float(levels[0])


def wide_forecasts(table: pd.DataFrame, *, digits: int = 3, percent: bool = False) -> pd.DataFrame:
    """One row per model, its family (if known) and one column per benchmark, each cell ``"mean [lower, upper]"``.

    ``digits`` decimals of the score as a fraction in [0, 1], or of percentage
    points with ``percent=True``. Benchmarks and models keep the table's order.
    """
    table = _check_table(table)
    if not isinstance(digits, (int, np.integer)) or isinstance(digits, bool) or not 0 <= digits <= 6:
        raise InputError(f"digits must be an integer from 0 to 6, got {digits!r}")
    k = 100.0 if percent else 1.0
    fmt = f"{{:.{int(digits)}f}}"
    cell = [f"{fmt.format(k * m)} [{fmt.format(k * lo)}, {fmt.format(k * hi)}]"
            for m, lo, hi in zip(table["mean"], table["lower"], table["upper"])]
    wide = (table.assign(_cell=cell).pivot(index="model", columns="benchmark", values="_cell")
            .reindex(index=pd.unique(table["model"]), columns=pd.unique(table["benchmark"])))
    wide.columns.name = None
    if "family" in table:
        family = table.drop_duplicates("model").set_index("model")["family"]
        wide.insert(0, "family", family.reindex(wide.index))
    return wide.fillna("")


def forecasts_to_latex(table: pd.DataFrame, *, digits: int = 3, percent: bool = False, caption: str | None = None,
                       label: str | None = None) -> str:
    """The forecast table as a LaTeX ``table`` (booktabs rules), one row per model (:func:`wide_forecasts`).

    The default caption says what the cells are and at which interval level;
    names are escaped for LaTeX (``_``, ``%``, ``&``, ...); a ``caption``
    given is used as LaTeX, unescaped.
    """
    wide = wide_forecasts(table, digits=digits, percent=percent)
    level = _level(table)
    if caption is None:
        unit = "percentage points" if percent else "fraction of the benchmark's items"
        iv = (f"central {100 * level:g}\\% posterior predictive interval" if level is not None
              else "posterior predictive interval")
        caption = f"Forecast score (posterior predictive mean, {unit}) and {iv} in brackets."
    n_text = 1 + int("family" in wide)
    return wide.to_latex(escape=True, caption=caption, label=label,
                         column_format="l" * n_text + "r" * (wide.shape[1] - n_text + 1))


def write_forecasts(table: pd.DataFrame, path: str | os.PathLike, *, format: str | None = None, digits: int = 3,
                    percent: bool = False) -> Path:
    """Write a forecast table to ``path`` atomically: CSV (tidy, as :meth:`SkillsLaw.forecast` returns it) or LaTeX
    (:func:`forecasts_to_latex`). ``format`` ("csv" or "latex") defaults to the suffix (``.csv``, ``.tex``)."""

    output_target(path, "forecast table")  # a name ending with a separator names a folder: Path() would drop it
    path = Path(path)
    if format is None:
        format = FORMATS.get(path.suffix.lower())
        if format is None:
            raise InputError(f"cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}: use .csv or "
                             ".tex, or pass format='csv' or 'latex'")
    if format not in FORMATS.values():
        raise InputError(f"format must be 'csv' or 'latex', got {format!r}")
    table = _check_table(table)
    if format == "csv":
        text = [c for c in ("model", "family", "benchmark") if c in table]
        return write_csv(table, path, index=False, text_columns=text, what="forecast table")
    return write_text(forecasts_to_latex(table, digits=digits, percent=percent), path, what="forecast table")


__all__ = ["forecasts_to_latex", "wide_forecasts", "write_forecasts"]
