"""The simulator draws leaderboards through the model (``skills_law``), for every option of the law.

Boards are small and share one shape (8 families of 3 models, 5 benchmarks),
so each law's simulator is compiled once for the whole module.
"""

from __future__ import annotations

import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.idata import model_arrays
from bayes_sloth.core.model import LINK_KNOTS, ModelSpec, pair_dist
from bayes_sloth.workflows.simulation import LEAN_LAW, write_synthetic

SMALL = dict(n_families=8, n_benchmarks=5, n_skills=2, models_per_family=3)
#: the parameters ``pair_dist`` takes (the law's mean and noise of a pair)
LAW_SITES = ("alpha", "slopes", "loadings", "intercept", "sigma", "link_weights", "instruct_shift", "instruct_slope",
             "model_effect", "family_slope")


def _spec(truth) -> ModelSpec:
    K, J, F = len(truth["tau"]), len(truth["benchmarks"]), len(truth["families"])
    return ModelSpec(n_skills=K, n_benchmarks=J, n_families=F, anchors=tuple(range(K)), **truth["law"])


def _args(lb, truth, y=None):
    N, J = len(lb), len(lb.benchmarks)
    om, ob = np.divmod(np.arange(N * J), J)
    fam = pd.Index(truth["families"]).get_indexer(lb.covariates["family"])
    return model_arrays(truth["x"], fam, lb.covariates["instruct"].to_numpy(float), truth["floors"], om, ob,
                        np.zeros(N * J) if y is None else y)


@partial(jax.jit, static_argnums=0)
def _pair_mean(spec, params, a):
    _, m, theta = pair_dist(spec, params, a["x"], a["family"], a["instruct"], a["floor"], a["obs_model"],
                            a["obs_bench"])
    return m, theta


def _law_mean(lb, truth, drop=()):
    """The model's own mean (``pair_dist``) of every pair at the truth's parameters, (N, J)."""
    params = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in truth.items() if k in LAW_SITES and k not in drop}
    m, theta = _pair_mean(_spec(truth), params, _args(lb, truth))
    return np.asarray(m).reshape(len(lb), -1), np.asarray(theta)


def _log_likelihood(lb, truth):
    """Log density of each simulated score (N, J) under the model's likelihood (``pair_dist``) at the truth."""
    params = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in truth.items() if k in LAW_SITES}
    y = jnp.asarray(truth["y"].ravel(), dtype=jnp.float32)
    return np.asarray(_pair_log_prob(_spec(truth), params, _args(lb, truth), y)).reshape(truth["y"].shape)


@partial(jax.jit, static_argnums=0)
def _pair_log_prob(spec, params, a, y):
    d, _, _ = pair_dist(spec, params, a["x"], a["family"], a["instruct"], a["floor"], a["obs_model"],
                        a["obs_bench"])
    return d.log_prob(y)


#: a seed whose board has both instruct and base models (whole families are instruct with probability 0.25)
SEED = 3


@pytest.fixture(scope="module")
def default_board():
    return bs.simulate_leaderboard(**SMALL, seed=SEED)


def test_the_simulator_goes_through_the_model(default_board):
    """The truth's mean scores are the model's (``pair_dist``) at the truth's
    parameters; the scores are the y site's draws around them; the model's
    likelihood of every score, at the truth, is finite."""
    lb, truth = default_board
    m, theta = _law_mean(lb, truth)
    np.testing.assert_allclose(m, truth["mu"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(theta, truth["skills"], rtol=1e-5, atol=1e-5)
    obs = lb.scores.notna().to_numpy()
    np.testing.assert_array_equal(lb.scores.to_numpy()[obs], truth["y"][obs])
    assert np.all((truth["y"] >= 0) & (truth["y"] <= 1))
    # the law's noise: scores sit around mu at the scale of sigma (0.01-0.04), not around anything else
    resid = (truth["y"] - truth["mu"]) / truth["sigma"]
    assert 0.5 < resid.std() < 1.5 and abs(resid.mean()) < 0.5
    # the model's likelihood of every simulated score at the truth is finite
    lp = _log_likelihood(lb, truth)
    assert lp.shape == truth["y"].shape and np.isfinite(lp).all()


def test_default_law_is_the_packages(default_board):
    lb, truth = default_board
    assert truth["law"] == dict(link="monotone", loadings="positive", noise="normal", instruct_shift=True,
                                instruct_slope=False, family_slopes=False, model_effects=True)
    # the package's default law, less its slopes (zero in the default truth: the fitted default contains it)
    fitted = {k: v for k, v in bs.SkillsLaw().get_params().items() if k in truth["law"]}
    assert fitted == dict(truth["law"], instruct_slope=True, family_slopes=True)
    assert truth["anchors"] == lb.benchmarks[:2] and not truth["prior"]


def test_offsets_shift_and_learned_link_are_in_the_default_truth(default_board):
    """Per-model offsets are nonzero and enter the law's mean; the instruct
    shift moves exactly the instruct models' skills; the link weights are on
    the simplex."""
    lb, truth = default_board
    e = truth["model_effect"]
    assert e.shape == (len(lb),) and np.all(e != 0)
    np.testing.assert_allclose(e, truth["model_sd"] * truth["model_z"], rtol=1e-6)
    without, _ = _law_mean(lb, truth, drop=("model_effect",))
    assert np.abs(without - truth["mu"]).max() > 0.01  # the offsets are in mu (sd 0.3 on the link scale)
    instruct = lb.covariates["instruct"].to_numpy()
    assert 0 < instruct.sum() < len(lb), "this seed needs instruct and base models"
    fam = pd.Index(truth["families"]).get_indexer(lb.covariates["family"])
    shift = truth["skills"] - truth["alpha"][fam] - truth["x"] @ truth["slopes"]
    np.testing.assert_allclose(shift[instruct], np.broadcast_to(truth["instruct_shift"], shift[instruct].shape),
                               atol=1e-5)
    np.testing.assert_allclose(shift[~instruct], 0.0, atol=1e-5)
    assert np.all(truth["instruct_shift"] != 0)
    w = truth["link_weights"]
    assert w.shape == (len(LINK_KNOTS),) and np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-5)


def test_instruct_slope_grows_the_shift_with_size_and_only_for_instruct_models():
    """With ``instruct_slope`` an instruct model's skills move by delta + delta_S x_logS, a base model's
    not at all; without it the truth's slope is zero and the shift is flat in size (the default)."""
    lb, truth = bs.simulate_leaderboard(**SMALL, seed=SEED, instruct_slope=True)
    instruct = lb.covariates["instruct"].to_numpy()
    assert 0 < instruct.sum() < len(lb), "this seed needs instruct and base models"
    fam = pd.Index(truth["families"]).get_indexer(lb.covariates["family"])
    shift = truth["skills"] - truth["alpha"][fam] - truth["x"] @ truth["slopes"]
    want = truth["instruct_shift"] + truth["x"][:, :1] * truth["instruct_slope"]
    np.testing.assert_allclose(shift[instruct], want[instruct], atol=1e-5)
    np.testing.assert_allclose(shift[~instruct], 0.0, atol=1e-5)
    assert np.all(truth["instruct_slope"] != 0) and np.ptp(truth["x"][instruct, 0]) > 0.5  # a slope to see
    _, flat = bs.simulate_leaderboard(**SMALL, seed=SEED)
    assert not flat["instruct_slope"].any() and not flat["law"]["instruct_slope"]


def test_lean_law_is_the_sigmoid_law_without_offsets_or_shift():
    lb, truth = bs.simulate_leaderboard(**SMALL, seed=0, **LEAN_LAW)
    assert not {"model_sd", "model_z", "link_weights"} & set(truth)
    assert not truth["model_effect"].any() and not truth["instruct_shift"].any()
    eta = truth["skills"] @ truth["loadings"].T + truth["intercept"]
    c = truth["floors"]
    np.testing.assert_allclose(truth["mu"], c + (1 - c) / (1 + np.exp(-eta)), rtol=1e-5, atol=1e-6)


def test_family_slopes_noise_and_loadings_options():
    lb, truth = bs.simulate_leaderboard(**SMALL, seed=0, family_slopes=True, family_slope_sd=0.5)
    g = truth["family_slope"]
    assert g.shape == (8, 2) and np.abs(g).min() > 0
    np.testing.assert_allclose(g.sum(axis=0), 0.0, atol=1e-5)  # centred, as the model's alpha
    np.testing.assert_allclose(truth["family_slope_sd"], [0.5, 0.5])
    m, _ = _law_mean(lb, truth)
    np.testing.assert_allclose(m, truth["mu"], rtol=1e-5, atol=1e-6)
    without, _ = _law_mean(lb, truth, drop=("family_slope",))
    assert np.abs(without - truth["mu"]).max() > 0.01
    # the noise law changes the scores around the same law, nothing else
    _, normal = bs.simulate_leaderboard(**SMALL, seed=3)
    _, logistic = bs.simulate_leaderboard(**SMALL, seed=3, noise="logistic")
    np.testing.assert_allclose(normal["mu"], logistic["mu"])
    assert logistic["law"]["noise"] == "logistic" and not np.allclose(normal["y"], logistic["y"])
    assert np.all((logistic["y"] >= 0) & (logistic["y"] <= 1))
    _, real = bs.simulate_leaderboard(**SMALL, seed=3, loadings="real")
    assert real["law"]["loadings"] == "real"


def test_truth_overrides_single_sites():
    lb, truth = bs.simulate_leaderboard(**SMALL, seed=0, truth={"tau": [0.5, 0.6], "model_sd": 0.05})
    np.testing.assert_allclose(truth["tau"], [0.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(truth["model_effect"], 0.05 * truth["model_z"], rtol=1e-5)
    _, base = bs.simulate_leaderboard(**SMALL, seed=0)
    np.testing.assert_array_equal(truth["slopes"], base["slopes"])  # the other sites as without the override


def test_reproducible_from_the_seed(default_board):
    lb, truth = default_board
    lb2, truth2 = bs.simulate_leaderboard(**SMALL, seed=SEED)
    pd.testing.assert_frame_equal(lb.to_frame(), lb2.to_frame())
    for k in ("mu", "y", "loadings", "link_weights", "model_effect"):
        np.testing.assert_array_equal(truth[k], truth2[k])
    _, other = bs.simulate_leaderboard(**SMALL, seed=SEED + 1)
    assert not np.allclose(truth["loadings"], other["loadings"])


def test_prior_draws_every_parameter_from_the_model_and_vary_with_the_seed():
    a_lb, a = bs.simulate_leaderboard(**SMALL, seed=0, prior=True)
    b_lb, b = bs.simulate_leaderboard(**SMALL, seed=1, prior=True)
    assert a["prior"] and a["law"]["link"] == "monotone"
    for k in ("tau", "sigma", "slopes", "link_weights", "model_sd", "intercept"):
        assert not np.allclose(a[k], b[k]), k
    m, _ = _law_mean(a_lb, a)
    np.testing.assert_allclose(m, a["mu"], rtol=1e-5, atol=1e-6)


def test_anchor_observed_on_every_model_and_every_benchmark_scored():
    lb, truth = bs.simulate_leaderboard(**SMALL, seed=2, missing=0.7, **LEAN_LAW)
    sc = lb.scores
    assert sc[truth["anchors"][0]].notna().all()
    assert sc.notna().any(axis=0).all()
    assert 0.4 < sc.iloc[:, 1:].isna().to_numpy().mean() < 0.95  # the others are mostly missing


@pytest.mark.parametrize("kw,fragment", [
    (dict(link="cubic"), "'cubic'"),
    (dict(noise="student"), "'student'"),
    (dict(loadings="negative"), "'negative'"),
    (dict(model_effects="yes"), "model_effects must be True or False, got 'yes'"),
    (dict(instruct_slope=1), "instruct_slope must be True or False, got 1"),
    (dict(prior=1), "prior must be True or False, got 1"),
    (dict(n_skills=6), "n_skills must be at most n_benchmarks (5)"),
    (dict(n_families=0), "n_families must be a positive integer, got 0"),
    (dict(missing=1.0), "missing must be a share in [0, 1), got 1.0"),
    (dict(sigma=(0.05, 0.01)), "0 < min <= max, got (0.05, 0.01)"),
    (dict(family_slope_sd=0.5), "family_slope_sd=0.5 needs family_slopes=True"),
    (dict(model_effect_sd=0.2, model_effects=False), "model_effect_sd=0.2 needs model_effects=True"),
    (dict(model_effect_sd=-1.0), "model_effect_sd must be a finite number >= 0, got -1.0"),
    (dict(prior=True, sigma=(0.01, 0.02)), "sigma would be ignored"),
    (dict(floors=[0.0, 0.25]), "one chance floor per benchmark (5)"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(truth={"bogus": 1.0}), "'bogus', not a parameter site"),
    (dict(truth={"link_weights": np.ones(7) / 7}, link="sigmoid"), "'link_weights', not a parameter site"),
    (dict(truth={"tau": [1.0, 2.0, 3.0]}), "truth['tau'] must have shape (2,), got (3,)"),
    (dict(truth={"sigma": [0.1, -0.1, 0.1, 0.1, 0.1]}), "truth['sigma'] = [0.1, -0.1, 0.1, 0.1, 0.1] is outside"),
    (dict(truth={"link_weights": np.ones(7)}), "truth['link_weights']"),
    (dict(truth={"model_sd": 0.0}), "truth['model_sd'] = 0.0 is outside the support of the site's prior"),
    (dict(truth=[("tau", 1.0)]), "truth must be a dict"),
])
def test_bad_options_are_input_errors_naming_the_value(kw, fragment):
    args = dict(SMALL, **kw)
    with pytest.raises(bs.InputError) as err:
        bs.simulate_leaderboard(**args)
    assert fragment in str(err.value)


def test_write_synthetic_writes_both_files_whole(tmp_path):
    csv = write_synthetic(tmp_path, seed=0, **SMALL)
    assert csv == tmp_path / "synthetic_leaderboard.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_leaderboard.csv", "synthetic_truth.json"]
    truth = json.loads((tmp_path / "synthetic_truth.json").read_text())
    lb = bs.load_leaderboard(csv, floors=truth["floors_by_benchmark"])
    _, direct = bs.simulate_leaderboard(**SMALL, seed=0)
    assert lb.models == truth["models"] == direct["models"]
    np.testing.assert_allclose(truth["mu"], direct["mu"], rtol=1e-6)
    np.testing.assert_allclose(lb.scores.to_numpy(), np.where(lb.scores.notna(), direct["y"], np.nan),
                               rtol=1e-5)
    assert truth["law"]["link"] == "monotone" and truth["seed"] == 0
