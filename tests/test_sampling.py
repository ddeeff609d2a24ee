"""``draws="auto"``: sample until the checks pass, or say why it stopped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayes_sloth as bs

LEAN = dict(link="sigmoid", model_effects=False, instruct_shift=False)


@pytest.fixture(scope="module")
def board():
    lb, truth = bs.simulate_leaderboard(n_families=8, n_benchmarks=4, n_skills=1, models_per_family=(2, 4), seed=3,
                                        **LEAN)
    return lb, truth


def _fit(lb, truth, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bs.SkillsLaw(1, anchors=truth["anchors"], chains=2, warmup=150, draws="auto", progress=False,
                            seed=0, **LEAN, **kw).fit(lb)


def test_auto_draws_stop_when_the_checks_pass(board):
    law = _fit(*board, target_ess=150, max_draws=2000)
    rep = law.sampling_
    assert rep["stopped"] == "converged", rep
    n = law.idata_.posterior.sizes["draw"]
    assert n == rep["draws_per_chain"] and n % 100 == 0 and n < 2000
    # what it reached is what the fit's own diagnostics say: the same draws, the same checks
    d = law.diagnostics_
    assert d.max_rhat <= 1.01 and min(d.min_ess_bulk, d.min_ess_tail) >= 150 and d.divergences == 0
    assert np.isclose(rep["max_rhat"], d.max_rhat) and np.isclose(rep["min_ess"], min(d.min_ess_bulk, d.min_ess_tail))


def test_auto_draws_say_when_the_cap_is_reached(board):
    law = _fit(*board, target_ess=100000, max_draws=200)
    assert law.sampling_["stopped"].startswith("cap: 200 draws per chain reached max_draws=200")
    assert law.idata_.posterior.sizes["draw"] == 200


def test_auto_draws_are_checked_as_arguments():
    with pytest.raises(bs.InputError, match="draws must be a positive integer or 'auto'"):
        bs.SkillsLaw(draws="many").fit(None)
    with pytest.raises(bs.InputError, match="max_draws must be at least 100"):
        bs.SkillsLaw(draws="auto", max_draws=50).fit(None)
