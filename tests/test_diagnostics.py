"""The vectorized R-hat and ESS of ``bayes_sloth.core.diagnostics`` against ArviZ."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayes_sloth.core.diagnostics import summary_table


def _ar1(rng, phi, shape, shift=None):
    """AR(1) chains with autocorrelation phi, (chain, draw, *rest)."""
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = e[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x if shift is None else x + shift


@pytest.mark.parametrize("chains,draws", [(4, 1000), (2, 201), (1, 50), (3, 7)])
def test_rhat_and_ess_match_arviz(chains, draws):
    """Same numbers as ``az.summary`` for mixing, sticky, shifted, skewed and
    constant parameters, even and odd draw counts, one chain or several."""
    rng = np.random.default_rng(chains * 1000 + draws)
    shift = np.arange(chains)[:, None, None] * 0.5
    post = xr.Dataset({
        "fast": (("chain", "draw"), rng.normal(size=(chains, draws))),
        "sticky": (("chain", "draw", "i"), _ar1(rng, 0.95, (chains, draws, 3))),
        "stuck": (("chain", "draw", "j"), _ar1(rng, 0.5, (chains, draws, 2), shift)),
        "skewed": (("chain", "draw"), rng.lognormal(size=(chains, draws)) ** 3),
        "antithetic": (("chain", "draw"), _ar1(rng, -0.7, (chains, draws))),
        "const": (("chain", "draw", "j"), np.ones((chains, draws, 2))),
    }, coords={"chain": np.arange(chains), "draw": np.arange(draws), "i": ["a", "b", "c"], "j": [0, 1]})
    names = list(post.data_vars)
    ours = summary_table(post, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.summary(az.convert_to_inference_data(post), var_names=names, kind="diagnostics", round_to="none")
    assert list(ours.index) == list(ref.index)
    for col in ("ess_bulk", "ess_tail", "r_hat"):
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-8, equal_nan=True,
                                   err_msg=col)


# ------------------------------------------------------------------ advice that names the cause
def _idata(rng, sigma, model_sd=None, diverging=None, scores=None):
    """A hand-made fit: posterior, sampler statistics, and the scores of three benchmarks."""
    C, D = sigma.shape[:2]
    benchmarks = ["b0", "b1", "b2"]
    post = {"sigma": (("chain", "draw", "benchmark"), sigma),
            "tau": (("chain", "draw"), np.abs(rng.normal(1, 0.1, (C, D))))}
    if model_sd is not None:
        post["model_sd"] = (("chain", "draw"), model_sd)
    div = np.zeros((C, D), bool) if diverging is None else diverging
    stats = {"diverging": (("chain", "draw"), div), "energy": (("chain", "draw"), rng.normal(size=(C, D))),
             "tree_depth": (("chain", "draw"), np.full((C, D), 3))}
    if scores is None:
        scores = rng.uniform(0.3, 0.9, (40, 3))
    const = {"scores": (("model", "benchmark"), scores), "floor": (("benchmark",), np.zeros(3))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(posterior=xr.Dataset(post, coords={"benchmark": benchmarks}),
                                sample_stats=xr.Dataset(stats),
                                constant_data=xr.Dataset(const, coords={"benchmark": benchmarks}))


def test_a_benchmark_that_barely_varies_is_named_not_target_accept():
    from bayes_sloth.core.diagnostics import diagnose

    rng = np.random.default_rng(0)
    sigma = np.abs(rng.normal(0.05, 0.005, (4, 200, 3)))
    sigma[:, :, 2] = np.abs(rng.normal(0.05, 0.005, (4, 200))) + np.arange(4)[:, None] * 0.05  # chains apart
    scores = rng.uniform(0.3, 0.9, (40, 3))
    scores[:, 2] = 0.5 + rng.normal(0, 0.002, 40)  # b2 hardly varies
    d = diagnose(_idata(rng, sigma, scores=scores))
    msg = next(p for p in d.problems if p.startswith("R-hat"))
    assert "sigma[b2]" in msg and "'b2'" in msg and "barely vary" in msg and "will not fix" in msg, msg


def test_divergences_at_a_small_scale_are_called_a_funnel():
    from bayes_sloth.core.diagnostics import diagnose

    rng = np.random.default_rng(1)
    sigma = np.abs(rng.normal(0.05, 0.005, (4, 200, 3)))
    model_sd = np.exp(rng.normal(-1.0, 0.5, (4, 200)))
    div = model_sd < np.quantile(model_sd, 0.05)  # divergent draws are the smallest offsets' scales
    d = diagnose(_idata(rng, sigma, model_sd=model_sd, diverging=div))
    msg = next(p for p in d.problems if "divergent" in p)
    assert "small model_sd" in msg and "funnel" in msg, msg


def test_funnel_advice_raises_target_accept_only_when_there_is_room():
    """At 0.9 the advice is to raise target_accept; at 0.99 (what "auto" uses on small boards) it says so instead."""
    from bayes_sloth.core.diagnostics import diagnose

    rng = np.random.default_rng(1)
    sigma = np.abs(rng.normal(0.05, 0.005, (4, 200, 3)))
    model_sd = np.exp(rng.normal(-1.0, 0.5, (4, 200)))
    div = model_sd < np.quantile(model_sd, 0.05)
    idata = _idata(rng, sigma, model_sd=model_sd, diverging=div)
    low, high, unknown = (next(p for p in diagnose(idata, target_accept=ta).problems if "divergent" in p)
                          for ta in (0.9, 0.99, None))
    assert "raise target_accept" in low and "raise target_accept" in unknown
    assert "raise target_accept" not in high and "already 0.99" in high and "funnel" in high


def test_chains_that_never_moved_are_a_verdict_not_a_crash():
    """Every draw of every chain the same (a sampler stuck at its start): R-hat is undefined, and the verdict
    says so instead of failing to name the worst parameter."""
    from bayes_sloth.core.diagnostics import diagnose

    rng = np.random.default_rng(2)
    idata = _idata(rng, np.full((4, 50, 3), 0.05))
    idata.posterior["tau"] = idata.posterior["tau"] * 0 + 1.0
    d = diagnose(idata)
    assert not d.ok
    assert any(p.startswith("R-hat undefined") and "stuck" in p for p in d.problems), d.problems


def test_too_few_draws_advice_follows_how_the_fit_drew():
    """A fixed-length fit is told about draws="auto"; one where auto already ran to its cap is told to raise
    max_draws (auto again would stop at the same cap); one where auto stopped at a divergence, to fix that first."""
    from bayes_sloth.core.diagnostics import diagnose

    rng = np.random.default_rng(3)
    sigma = np.abs(rng.normal(0.05, 0.005, (4, 30, 3)))  # 120 draws in all: ESS far below 400
    idata = _idata(rng, sigma)
    fixed = diagnose(idata)
    cap = diagnose(idata, sampling={"draws": "auto", "draws_per_chain": 30, "max_draws": 30,
                                    "stopped": "cap: 30 draws per chain reached max_draws=30 before ..."})
    div = diagnose(idata, sampling={"draws": "auto", "draws_per_chain": 30, "max_draws": 4000,
                                    "stopped": "divergences: more draws cannot remove a divergent transition"})
    ess = [next(p for p in d.problems if p.startswith("effective sample size")) for d in (fixed, cap, div)]
    assert 'draws="auto"' in ess[0] and "now 30 per chain" in ess[0], ess[0]
    assert "cap of 30" in ess[1] and "max_draws=60" in ess[1] and "--max-draws 60" in ess[1], ess[1]
    assert 'draws="auto" (--draws auto)' not in ess[1], ess[1]
    assert "stopped at a divergence" in ess[2] and "max_draws" not in ess[2], ess[2]
