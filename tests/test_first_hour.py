"""What a new user meets in the first hour, coming from PyMC or Bambi: the prior predictive through the model
itself, a misspelled benchmark answered with the valid names, and the law's configuration shown without objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs

from .conftest import TINY_FIT, make_tiny_frame


def test_prior_predictive_is_drawn_through_the_model_like_pymc(tiny_fit):
    """sample_prior_predictive gives PyMC's groups: ``prior`` with the posterior's sites, dims and coordinates,
    ``prior_predictive`` over the scored pairs (coordinates as posterior_predictive), and the observed data; the
    same seed gives the same draws, another seed others; scores stay in [0, 1]; the prior is wider than the
    posterior it is updated into."""
    law = tiny_fit[0]
    pri = law.sample_prior_predictive(300, seed=1)
    assert {"prior", "prior_predictive", "observed_data", "constant_data"} <= set(pri.groups())
    post = law.idata_.posterior
    assert set(pri.prior.data_vars) == set(post.data_vars)
    for name in post.data_vars:
        assert pri.prior[name].dims == post[name].dims, name
        assert pri.prior[name].sizes["draw"] == 300
    assert list(pri.prior["benchmark"].values) == list(post["benchmark"].values)
    y = pri.prior_predictive["y"]
    assert y.dims == ("chain", "draw", "obs") and y.sizes["obs"] == law.idata_.observed_data["y"].sizes["obs"]
    assert list(y["obs_model"].values) == list(law.idata_.posterior_predictive["obs_model"].values)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(pri.prior["tau"].std()) > 2 * float(post["tau"].std())
    again = law.sample_prior_predictive(300, seed=1)
    np.testing.assert_array_equal(again.prior_predictive["y"].values, y.values)
    other = law.sample_prior_predictive(300, seed=2)
    assert not np.array_equal(other.prior_predictive["y"].values, y.values)
    # before any fit, on a table of one's own (Bambi's prior_predictive on a model not yet fitted)
    fresh = bs.SkillsLaw(**TINY_FIT).sample_prior_predictive(50, make_tiny_frame())
    assert fresh.prior_predictive["y"].sizes["draw"] == 50
    with pytest.raises(bs.InputError, match="samples must be a positive integer, got 0"):
        law.sample_prior_predictive(0)
    with pytest.raises(bs.InputError, match="not fitted"):
        bs.SkillsLaw(**TINY_FIT).sample_prior_predictive(10)


def test_a_misspelled_benchmark_lists_the_valid_benchmarks_not_the_raw_columns():
    """The Sloth table has ~110 columns (sub-task scores, dates, ...): a name that is not a benchmark is answered
    with the nearest benchmark and the list of benchmarks, never the CSV's raw columns or a local path."""
    with pytest.raises(bs.InputError) as err:
        bs.load_sloth(benchmarks=["MMLU", "HumanEvl"])
    msg = str(err.value)
    assert "did you mean 'HumanEval'?" in msg and "'MMLU-PRO'" in msg and "'GPQA'" in msg
    assert "Unnamed" not in msg and "bbh_" not in msg and "'date'" not in msg and "/" not in msg.split("(")[0]
    assert "the Sloth table" in msg
    frame = pd.DataFrame({"model": ["a-1b", "b-1b"], "family": ["a", "b"], "params": [1.0, 1.0],
                          "tokens": [1.0, 1.0], "MMLU": [0.5, 0.6], "GSM8K": [0.1, 0.2], "notes": ["x", "y"]})
    with pytest.raises(bs.InputError, match=r"did you mean 'GSM8K'\?\); its benchmarks are: 'MMLU', 'GSM8K' \(and 1"):
        bs.load_leaderboard(frame, benchmarks=["GSM8k_"])


def test_the_estimator_repr_shows_a_callable_by_name(tiny_fit):
    law = bs.SkillsLaw(progress=lambda *a: None)
    assert " object at 0x" not in repr(law) and "progress=" in repr(law)
    from bayes_sloth.cli import ProgressLines

    assert repr(bs.SkillsLaw(progress=ProgressLines())) == "SkillsLaw(n_skills=3, progress=LineDisplay)"
