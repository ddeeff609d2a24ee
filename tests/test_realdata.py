"""Real Sloth table: loading, and a short fit through the command line.

Skipped, with the reason, when the table is not available (CI points
BAYES_SLOTH_DATA_DIR at ../shared/data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import bayes_sloth as bs
from bayes_sloth.cli import main

_here = Path(__file__).resolve().parents[1]
_candidates = [os.environ.get("BAYES_SLOTH_DATA_DIR"), str(_here.parent / "shared" / "data")]
DATA_DIR = next((c for c in _candidates if c and (Path(c) / "sloth" / "data_v2.csv").is_file()), None)
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        DATA_DIR is None,
        reason="real Sloth table not found: set BAYES_SLOTH_DATA_DIR or place ../shared beside the repo",
    ),
]


def test_sloth_table_loads_as_documented():
    lb = bs.load_sloth(data_dir=DATA_DIR)
    assert len(lb) == 188
    assert len(lb.families) == 68
    assert lb.benchmarks == bs.BENCHMARK_SETS["leaderboard_v1+v2"]
    assert lb.scores["MMLU"].notna().sum() == 160
    assert lb.scores["MMLU-PRO"].notna().sum() == 113
    assert (lb.scores["MATH Lvl 5"] == 0).sum() > 0  # exact zeros are kept
    assert lb.covariates["tokens"].isna().sum() == 13  # kept at load; a fit gives them latent tokens
    assert lb.floors["MMLU"] == 0.25 and lb.floors["GSM8K"] == 0.0
    with pytest.warns(UserWarning, match="dropped 13 of 188 models"):
        complete = lb.complete_covariates()
    assert len(complete) == 175


@pytest.mark.slow
def test_fit_command_json(tmp_path, capsys):
    out = tmp_path / "fit.nc"
    rc = main(["fit", "--data-dir", DATA_DIR, "--skills", "2", "--chains", "2", "--warmup", "150",
               "--draws", "150", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("seconds", "n_models", "n_benchmarks", "n_observed", "max_rhat", "min_ess_bulk", "divergences"):
        assert key in res
    assert res["n_models"] == 188 and res["n_benchmarks"] == 12  # the 13 without tokens too (latent tokens)
    assert res["n_observed"] == 1638
    assert out.is_file()
    law = bs.SkillsLaw.load(out)
    # a model every benchmark has seen, forecast from the fit, lands near its score
    tab = law.forecast(law.leaderboard_.select(models=["meta-llama-3-8b"]), level=0.9)
    err = np.abs(tab["median"] - tab["observed"]).mean()
    assert err < 0.08
