"""The law's coordinates: every parameterization the sampler can use is the same posterior (float64 checks)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import bayes_sloth as bs
from bayes_sloth.core.covariates import Standardizer
from bayes_sloth.core.idata import leaderboard_arrays
from bayes_sloth.core import model as law_model
from bayes_sloth.core.model import ModelSpec, assemble_loadings, helmert_basis, instruct_shares, skills_law
from bayes_sloth.core.sites import site_table


@pytest.fixture(scope="module")
def board():
    lb, _ = bs.simulate_leaderboard(n_families=7, n_benchmarks=6, n_skills=2, models_per_family=(1, 4), seed=2)
    assert 0 < lb.covariates["instruct"].sum() < len(lb)  # both kinds of family: the shear has work to do
    std = Standardizer.fit(lb.covariates["params"], lb.covariates["tokens"])
    return lb, leaderboard_arrays(lb, std, lb.families)


def test_helmert_basis_is_orthonormal_and_sums_to_zero():
    for n in (1, 2, 5, 68):
        Q = helmert_basis(n)
        assert Q.shape == (n, n - 1)
        np.testing.assert_allclose(Q.T @ Q, np.eye(n - 1), atol=1e-12)
        np.testing.assert_allclose(Q.sum(axis=0), 0.0, atol=1e-12)
        if n > 1:  # Q Q' is the centring projection: Q v has the law of z - mean(z)
            np.testing.assert_allclose(Q @ Q.T, np.eye(n) - 1.0 / n, atol=1e-12)


@pytest.mark.parametrize("loadings", ["positive", "real"])
def test_scaled_coordinates_are_the_anchored_posterior(board, loadings):
    """At a random point of the scaled coordinates, the model's log density equals the anchored model's at the
    same law (alpha, slopes, loadings, intercepts, ...) plus the log Jacobian of the map, up to the family
    mean the scaled coordinates leave out (a standard normal per skill and pooled effect, here at 0).
    float64: the two sides agree to 1e-9 of a log density of order 1e3; a wrong Jacobian term is off by
    log tau ~ 0.1 or more."""
    lb, data = board
    with jax.enable_x64(True):
        args = {k: (jnp.asarray(v, jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v)
                for k, v in data.items()}
        K, J, F = 2, len(lb.benchmarks), len(lb.families)
        common = dict(family_slopes=True, instruct_slope=True, loadings=loadings)
        new = ModelSpec(K, J, F, (0, 1), coordinates="scaled", **common)
        old = ModelSpec(K, J, F, (0, 1), coordinates="anchored", **common)
        rng = np.random.default_rng(0)
        tau = rng.uniform(0.3, 1.5, K)
        c = tau**law_model.SCALE_POWER
        cols = new.free_loading_index % K
        free = rng.uniform(0.2, 2.0, len(cols)) * (1 if loadings == "positive" else rng.choice([-1, 1], len(cols)))
        pn = {"tau": tau, "slopes_scaled": rng.normal(size=(3, K)), "instruct_shift_scaled": rng.normal(size=K),
              "instruct_slope_scaled": rng.normal(size=K), "family_slope_sd_scaled": rng.uniform(0.1, 1, K),
              "family_v": rng.normal(size=(F - 1, K)), "family_slope_v": rng.normal(size=(F - 1, K)),
              "loadings_scaled": free, "intercept_shifted": rng.normal(size=J),
              "link_weights": rng.dirichlet(np.ones(7)), "sigma": rng.uniform(0.02, 0.08, J), "model_sd": 0.3,
              "model_z": rng.normal(size=len(lb.models))}
        share = np.asarray(instruct_shares(args["family"], args["instruct"], F))
        tilt = share - share.mean()
        Q = helmert_basis(F)
        d = pn["instruct_shift_scaled"]
        lam = free / c[cols]
        L = np.asarray(assemble_loadings(old, jnp.asarray(lam)))
        po = {"tau": tau, "slopes": c * pn["slopes_scaled"], "instruct_shift": c * d,
              "instruct_slope": c * pn["instruct_slope_scaled"], "family_slope_sd": c * pn["family_slope_sd_scaled"],
              "family_z": Q @ pn["family_v"] - tilt[:, None] * (c * d / tau), "family_slope_z": Q @ pn["family_slope_v"],
              "loadings_free": lam, "intercept": pn["intercept_shifted"] - share.mean() * (L @ (c * d)),
              **{k: pn[k] for k in ("link_weights", "sigma", "model_sd", "model_z")}}
        ln, trace_new = log_density(skills_law, (new,), args, {k: jnp.asarray(v) for k, v in pn.items()})
        lo, trace_old = log_density(skills_law, (old,), args, {k: jnp.asarray(v) for k, v in po.items()})
        # scale changes: slopes (3 per skill), shift, slope, omega multiply by tau; free loadings divide
        log_jacobian = 6 * np.log(c).sum() - np.log(c[cols]).sum()
        family_means = 2 * K * 0.5 * np.log(2 * np.pi)  # -log N(0 | 0, 1) for each mean left out
        assert float(ln) == pytest.approx(float(lo) + log_jacobian + family_means, rel=1e-12, abs=1e-9)
        for site in ("alpha", "loadings", "intercept", "skills", "family_slope"):
            np.testing.assert_allclose(trace_new[site]["value"], trace_old[site]["value"], rtol=1e-10, atol=1e-12)


def test_each_coordinates_declares_the_same_law_to_the_user():
    """The sites a user reads (checked and forecast) are the same in both coordinates; only the sampler's raw
    coordinates differ."""
    new = site_table(ModelSpec(2, 6, 5, (0, 1), coordinates="scaled"))
    old = site_table(ModelSpec(2, 6, 5, (0, 1), coordinates="anchored"))
    shown = lambda t: {n: s.dims for n, s in t.items() if s.checked}  # noqa: E731
    assert shown(new) == shown(old)
    assert {n for n, s in new.items() if s.role == "coordinate"} == {
        "slopes_scaled", "instruct_shift_scaled", "instruct_slope_scaled", "family_slope_sd_scaled", "family_v",
        "family_slope_v", "loadings_scaled", "intercept_shifted", "model_z"}


def test_auto_coordinates_follow_the_number_of_families():
    """coordinates="auto" (the default) is the scaled coordinates from AUTO_SCALED_MIN_FAMILIES families and the
    anchored ones below; an explicit choice is kept at any size, and the spec (and so the fit file) names the
    coordinates the sampler used, never "auto"."""
    n = law_model.AUTO_SCALED_MIN_FAMILIES
    assert bs.SkillsLaw().coordinates == "auto"
    assert ModelSpec(2, 6, n - 1, (0, 1)).coordinates == "anchored"
    assert ModelSpec(2, 6, n, (0, 1)).coordinates == "scaled"
    assert ModelSpec(2, 6, n - 1, (0, 1), coordinates="scaled").coordinates == "scaled"
    assert ModelSpec(2, 6, n, (0, 1), coordinates="anchored").coordinates == "anchored"
    for f in (n - 1, n):
        saved = ModelSpec(2, 6, f, (0, 1)).to_dict()
        assert saved["coordinates"] != "auto"
        assert ModelSpec.from_dict(saved).coordinates == saved["coordinates"]
    raw = lambda spec: {name for name, s in site_table(spec).items() if s.role == "coordinate"}  # noqa: E731
    assert "loadings_scaled" in raw(ModelSpec(2, 6, n, (0, 1)))
    assert "loadings_scaled" not in raw(ModelSpec(2, 6, n - 1, (0, 1)))
