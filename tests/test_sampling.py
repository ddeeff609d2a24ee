"""``draws="auto"``: sample until the checks pass, or say why it stopped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayes_sloth as bs

LEAN = dict(link="sigmoid", model_effects=False, instruct_shift=False, instruct_slope=False, family_slopes=False)


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


@pytest.fixture(scope="module")
def converged(board):
    return _fit(*board, target_ess=150, max_draws=2000)


def test_auto_draws_stop_when_the_checks_pass(converged):
    law = converged
    rep = law.sampling_
    assert rep["stopped"] == "converged", rep
    n = law.idata_.posterior.sizes["draw"]
    assert n == rep["draws_per_chain"] and n % 100 == 0 and n < 2000
    # what it reached is what the fit's own diagnostics say: the same draws, the same checks
    d = law.diagnostics_
    assert d.max_rhat <= 1.01 and min(d.min_ess_bulk, d.min_ess_tail) >= 150 and d.divergences == 0
    assert np.isclose(rep["max_rhat"], d.max_rhat) and np.isclose(rep["min_ess"], min(d.min_ess_bulk, d.min_ess_tail))


def test_auto_draws_check_only_the_failing_scalars_and_decide_as_the_full_check(converged):
    """While a scalar that failed the last full check still fails, only the failing ones are checked: the
    decision after every block is the full check's, and the report of a stop is the full check's."""
    from bayes_sloth.core.sampler import SamplerConfig, _auto_verdict
    from bayes_sloth.core.sites import checked

    post = converged.idata_.posterior
    names = [k for k in checked(converged.spec_) if k in post]
    block = 20
    n_blocks = post.sizes["draw"] // block
    sites = [{k: post[k].values[:, b * block:(b + 1) * block] for k in names} for b in range(n_blocks)]
    blocks = [(s, {"diverging": np.zeros((2, block), bool)}) for s in sites]
    cfg = SamplerConfig(chains=2, draws="auto", target_ess=150, max_draws=10_000, block=block)
    failing, screened_steps, decisions = None, 0, []
    for b in range(1, n_blocks + 1):
        done_full, report_full, failing_full = _auto_verdict(converged.spec_, blocks[:b], sites[:b], cfg)
        screened_steps += failing is not None and len(failing) > 0
        done, report, failing = _auto_verdict(converged.spec_, blocks[:b], sites[:b], cfg, failing)
        assert done == done_full, b
        decisions.append(done)
        if done:
            assert report == report_full and set(failing) == set(failing_full)
            break
    assert decisions[-1] and not decisions[0] and screened_steps >= 2  # the screening was exercised


def test_auto_draws_say_when_the_cap_is_reached(board):
    law = _fit(*board, target_ess=100000, max_draws=200)
    assert law.sampling_["stopped"].startswith("cap: 200 draws per chain reached max_draws=200")
    assert law.idata_.posterior.sizes["draw"] == 200


def test_auto_draws_are_checked_as_arguments():
    with pytest.raises(bs.InputError, match="draws must be a positive integer or 'auto'"):
        bs.SkillsLaw(draws="many").fit(None)
    with pytest.raises(bs.InputError, match="max_draws must be at least 100"):
        bs.SkillsLaw(draws="auto", max_draws=50).fit(None)


def test_svi_fits_the_scores_says_it_is_narrow_and_is(board, converged):
    """``method="svi"``: the mean-field path for leaderboards too large for NUTS. It must fit (its forecasts of
    the scores it was given are as close as the noise allows), say what it is, and be what it says: narrower
    than the posterior for the law's global parameters (``benchmarks/results/variational.md`` measures it)."""
    lb, truth = board
    svi = bs.SkillsLaw(1, anchors=truth["anchors"], method="svi", draws=1000, progress=False, seed=0, **LEAN)
    with pytest.warns(UserWarning, match="mean-field variational approximation.*too narrow"):
        svi.fit(lb)
    post, ref = svi.idata_.posterior, converged.idata_.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1000
    # fitted models' forecasts of their own observed scores: a fit of the right law leaves residuals of the
    # noise's size (sd at most truth["sigma"].max()); an unfitted or misplaced approximation would not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mu = svi.predict(lb, condition=False).predictions["mu"].mean(("chain", "draw"))
    obs = lb.scores.to_numpy(dtype=float)
    resid = np.abs(mu.sel(model=lb.models, benchmark=lb.benchmarks).values - obs)[np.isfinite(obs)]
    assert resid.mean() < truth["sigma"].max(), (resid.mean(), truth["sigma"])

    def width90(p):
        v = p["slopes"].values.reshape((-1,) + p["slopes"].shape[2:])
        return np.quantile(v, 0.95, axis=0) - np.quantile(v, 0.05, axis=0)

    assert (width90(post) < width90(ref)).all(), (width90(post), width90(ref))
