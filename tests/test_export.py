"""Forecast tables exported for spreadsheets (CSV) and papers (LaTeX)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth import cli
from bayes_sloth.core.errors import InputError


def _table(level=0.9):
    rows = []
    for m, fam in (("big_model-7b", "fam_a"), ("=cmd", "fam&b")):
        for j, b in enumerate(("MMLU", "GSM8K", "IFEval")):
            mean = 0.3 + 0.1 * j + (0.05 if m.startswith("=") else 0.0)
            rows.append(dict(model=m, family=fam, benchmark=b, mean=mean, lower=mean - 0.1, upper=mean + 0.12,
                             level=level))
    return pd.DataFrame(rows)


def test_wide_table_has_one_row_per_model_in_the_tables_order():
    wide = bs.wide_forecasts(_table(), digits=2)
    assert list(wide.index) == ["big_model-7b", "=cmd"]
    assert list(wide.columns) == ["family", "MMLU", "GSM8K", "IFEval"]
    assert list(wide["family"]) == ["fam_a", "fam&b"]
    assert wide.loc["big_model-7b", "GSM8K"] == "0.40 [0.30, 0.52]"
    pct = bs.wide_forecasts(_table(), digits=1, percent=True)
    assert pct.loc["=cmd", "MMLU"] == "35.0 [25.0, 47.0]"


def test_latex_escapes_names_and_states_the_level(tmp_path):
    tex = bs.forecasts_to_latex(_table(level=0.8))
    assert r"\begin{table}" in tex and r"\toprule" in tex and r"\end{tabular}" in tex
    assert r"big\_model-7b" in tex and r"fam\&b" in tex  # LaTeX special characters escaped
    assert r"central 80\% posterior predictive interval" in tex
    out = bs.write_forecasts(_table(), tmp_path / "f.tex")
    assert out.read_text() == bs.forecasts_to_latex(_table())


def test_csv_round_trips_the_tidy_table_with_formula_cells_escaped(tmp_path):
    t = _table()
    bs.write_forecasts(t, tmp_path / "f.csv")
    back = pd.read_csv(tmp_path / "f.csv")
    assert list(back.columns) == list(t.columns)
    np.testing.assert_allclose(back["upper"], t["upper"], rtol=0, atol=1e-12)
    assert set(back["model"]) == {"big_model-7b", "'=cmd"}


@pytest.mark.parametrize("bad, match", [
    (lambda t: t.drop(columns="upper"), "no column 'upper'"),
    (lambda t: pd.concat([t, t.iloc[[0]]]), "two rows for model 'big_model-7b' on benchmark 'MMLU'"),
    (lambda t: t.assign(level=[0.9] * 3 + [0.5] * 3), "mixes interval levels"),
    (lambda t: t.to_dict(), "DataFrame"),
])
def test_bad_tables_are_named(bad, match, tmp_path):
    with pytest.raises(InputError, match=match):
        bs.write_forecasts(bad(_table()), tmp_path / "f.tex")


def test_unknown_suffix_and_digits_are_refused(tmp_path):
    with pytest.raises(InputError, match="suffix '.xlsx'"):
        bs.write_forecasts(_table(), tmp_path / "f.xlsx")
    with pytest.raises(InputError, match="digits"):
        bs.wide_forecasts(_table(), digits=2.5)
    assert not list(tmp_path.iterdir())


def test_cli_predict_writes_latex_by_suffix(tiny_fit, tmp_path):
    law, path = tiny_fit
    new = pd.DataFrame({"model": ["n-1", "n-2"], "family": [law.families_[0]] * 2, "params": [1.0, 3.0],
                        "tokens": [1.0, 1.5]})
    src = tmp_path / "new.csv"
    new.to_csv(src, index=False)
    assert cli.main(["predict", str(path), "--data", str(src), "--seed", "3", "--out", str(tmp_path / "f.tex")]) == 0
    tex = (tmp_path / "f.tex").read_text()
    want = bs.forecasts_to_latex(law.forecast(new, seed=3))
    assert tex == want
    assert cli.main(["predict", str(path), "--data", str(src), "--out", str(tmp_path / "f.json")]) == 2
    assert not (tmp_path / "f.json").exists()
