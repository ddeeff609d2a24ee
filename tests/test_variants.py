"""Model variants beyond the default: family-specific slopes, logistic noise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayes_sloth as bs

warnings.filterwarnings("ignore", category=FutureWarning)

FAST = dict(chains=2, warmup=300, draws=300)
# the law the simulator draws from: the recovered parameters mean what they meant there (the learned link's
# steepness trades with the skills' scale, so scales are only comparable under the generating link)
SIGMOID_LAW = dict(link="sigmoid", model_effects=False, instruct_shift=False, instruct_slope=False)
# a test of one option fits the law its data were drawn from: the default's slopes off unless it tests them
NO_SLOPES = dict(instruct_slope=False, family_slopes=False)


@pytest.fixture(scope="module")
def sloped():
    """A leaderboard whose families differ in how fast skills grow with size
    (omega = 0.8 on the standardized log S), fitted with family slopes."""
    lb, truth = bs.simulate_leaderboard(n_families=25, n_benchmarks=6, n_skills=1, models_per_family=(2, 6),
                                        family_slopes=True, family_slope_sd=0.8, seed=4, **SIGMOID_LAW)
    law = bs.SkillsLaw(1, anchors=truth["anchors"], family_slopes=True, seed=1, **SIGMOID_LAW, **FAST).fit(lb)
    return lb, truth, law


def _largest_family(lb):
    counts = lb.covariates["family"].value_counts()
    return counts.index[0]


def test_family_slopes_are_recovered(sloped):
    """Each family's own slope in log S is recovered inside its 90 % interval.

    The identified quantity is the family's total slope in log S,
    ``B_S / sd_S + B_SxT (log T_f - m_T) / sd_SxT + gamma_f / sd_S``: within a
    family the tokens are nearly constant, so the interaction slope B_SxT is
    itself a family-level slope in log S, and gamma_f alone trades off against
    it (on this seed the interaction is 2.8 sd above its truth, which shifts
    every gamma_f together: gamma_f alone covers 11 of 25).
    """
    lb, truth, law = sloped
    post = law.idata_.posterior
    assert post["family_slope"].dims == ("chain", "draw", "family", "skill")
    lo, hi = np.quantile(post["family_slope_sd"].values.ravel(), [0.05, 0.95])
    assert lo < 0.8 < hi, (lo, hi)
    std = law.standardizer_
    cov = lb.covariates
    lt = np.log(cov["tokens"]).groupby(cov["family"]).mean().reindex(truth["families"]).to_numpy()

    def total(b_s, b_int, gamma):
        return b_s / std.sd[0] + b_int * (lt - std.center[1]) / std.sd[2] + gamma / std.sd[0]

    B = post["slopes"].isel(skill=0).values.reshape(-1, 3)
    gamma = post["family_slope"].sel(family=truth["families"]).isel(skill=0).values.reshape(len(B), -1)
    drawn = total(B[:, :1], B[:, 2:3], gamma)
    true = total(truth["slopes"][0, 0], truth["slopes"][2, 0], truth["family_slope"][:, 0])
    lo, hi = np.quantile(drawn, [0.05, 0.95], axis=0)
    cover = np.mean((true >= lo) & (true <= hi))
    # 25 families at a nominal 0.9: 18 or fewer covered has probability < 1 % (binomial)
    assert cover >= 0.76, cover


@pytest.mark.slow
def test_family_slopes_widen_size_extrapolation(sloped):
    """The largest model of a family seen only through its smallest model:
    with family slopes its skill carries the uncertainty of how that family
    scales, so its interval is wider than without (skills are linear in the
    slopes; scores would saturate near 1 and hide the difference)."""
    lb, truth, _ = sloped
    fam = _largest_family(lb)
    members = lb.covariates.index[lb.covariates["family"] == fam]
    sizes = lb.covariates.loc[members, "params"].sort_values()
    smallest, largest = sizes.index[0], sizes.index[-1]
    keep = [m for m in lb.models if m not in set(members) - {smallest}]
    train = lb.select(models=keep)
    new = lb.select(models=[largest])
    w = {}
    for slopes in (True, False):
        law = bs.SkillsLaw(1, anchors=truth["anchors"], family_slopes=slopes, seed=1, **SIGMOID_LAW, **FAST).fit(train)
        # the held-out model's scores must not be conditioned on: the question is extrapolation from its family
        iv = bs.interval(law.predict(new, condition=False).predictions["skills"].isel(skill=0), 0.9)
        w[slopes] = float((iv["upper"] - iv["lower"]).squeeze())
    assert w[True] > 1.2 * w[False], (fam, w)


def test_unseen_family_draws_its_slope_from_the_population(sloped):
    lb, truth, law = sloped
    new = lb.to_frame().reset_index().iloc[[0]].copy().drop(columns=lb.benchmarks)
    new["model"], new["family"] = "stranger-7b", "never-seen"
    pred = law.predict(new).predictions
    assert not bool(pred["seen_family"].values[0])
    assert float(pred["score"].min()) >= 0.0 and float(pred["score"].max()) <= 1.0


@pytest.mark.slow
def test_logistic_noise_fit_recovers_noise_scale():
    """Logistic noise fitted to data simulated with normal noise of sd s: the
    logistic scale should be near s * sqrt(3) / pi (same sd), within its posterior."""
    lb, truth = bs.simulate_leaderboard(n_families=20, n_benchmarks=5, n_skills=1, sigma=(0.03, 0.03), seed=2, **SIGMOID_LAW)
    law = bs.SkillsLaw(1, anchors=truth["anchors"], noise="logistic", family_slopes=False, seed=0, **SIGMOID_LAW,
                       **FAST).fit(lb)
    assert law.diagnostics_.divergences == 0
    scale = law.idata_.posterior["sigma"].mean(("chain", "draw")).values
    # moment matching: normal sd 0.03 <-> logistic scale 0.0165; tails differ, so allow 35 %
    np.testing.assert_allclose(scale, 0.03 * np.sqrt(3) / np.pi, rtol=0.35)


@pytest.mark.slow
def test_instruct_slope_is_recovered():
    """Instruction tuning that adds more to larger models (delta_S = 0.8 per sd of log S on top of a shift of
    0.3): the fitted slope's 90 % interval holds the truth and excludes zero."""
    from bayes_sloth.core.model import describe

    truth = {"instruct_slope": [0.8], "instruct_shift": [0.3]}
    lb, tr = bs.simulate_leaderboard(n_families=24, n_benchmarks=5, n_skills=1, models_per_family=(3, 6), seed=3,
                                     link="sigmoid", model_effects=False, instruct_slope=True, truth=truth)
    n_tuned = lb.covariates.loc[lb.covariates["instruct"], "family"].nunique()
    assert n_tuned >= 4, "this seed needs several instruction-tuned families"
    law = bs.SkillsLaw(1, anchors=tr["anchors"], link="sigmoid", model_effects=False, instruct_slope=True,
                       family_slopes=False, seed=0, **FAST).fit(lb)
    post = law.idata_.posterior
    assert post["instruct_slope"].dims == ("chain", "draw", "skill")
    assert law.diagnostics_.divergences == 0
    lo, hi = np.quantile(post["instruct_slope"].values.ravel(), [0.05, 0.95])
    assert 0.0 < lo < 0.8 < hi, (lo, hi)
    assert "delta_S instruct_i x_i,logS" in describe(law.spec_)


@pytest.fixture(scope="module")
def jittered():
    """A leaderboard whose models sit above or below their family's law by their
    own offset on the link scale (sd 0.4, the same on every benchmark), fitted
    with model effects."""
    lb, truth = bs.simulate_leaderboard(n_families=20, n_benchmarks=6, n_skills=1, models_per_family=(2, 6),
                                        model_effect_sd=0.4, seed=5, link="sigmoid", instruct_shift=False)
    law = bs.SkillsLaw(1, anchors=truth["anchors"], model_effects=True, seed=1, link="sigmoid", **NO_SLOPES,
                       **FAST).fit(lb)
    return lb, truth, law


@pytest.mark.slow
def test_model_effect_scale_is_recovered(jittered):
    """The scale of the models' offsets is inside its 90 % interval, and the
    offsets themselves are recovered (each model is seen through ~5 scores)."""
    lb, truth, law = jittered
    post = law.idata_.posterior
    assert post["model_effect"].dims == ("chain", "draw", "model")
    assert law.diagnostics_.divergences == 0
    lo, hi = np.quantile(post["model_sd"].values.ravel(), [0.05, 0.95])
    assert lo < 0.4 < hi, (lo, hi)
    est = post["model_effect"].sel(model=truth["models"]).mean(("chain", "draw")).values
    assert np.corrcoef(est, truth["model_effect"])[0, 1] > 0.8


def test_model_effects_fitted_model_keeps_its_offset(jittered):
    """Predicting a fitted model by its name keeps its posterior offset; the
    same covariates under a new name are a new model with a fresh offset, so
    its link-scale interval is wider and its law interval with it."""
    lb, truth, law = jittered
    row = lb.to_frame().reset_index().iloc[[0]].drop(columns=lb.benchmarks)
    twin = row.assign(model="twin-of-" + row["model"].iloc[0])
    w = {}
    for name, frame in (("fitted", row), ("new", twin)):
        mu = law.predict(frame).predictions["mu"].isel(model=0)
        logit = np.log(mu - 0.0 + 1e-12) - np.log1p(-mu)  # monotone, so interval ends map through it
        iv = bs.interval(logit.sel(benchmark=truth["anchors"][0]), 0.9)
        w[name] = float(iv["upper"] - iv["lower"])
    assert w["new"] > 1.5 * w["fitted"], w
    # the fitted model's law is its own: the same as the fit's posterior at that model
    post = law.idata_.posterior
    b = truth["anchors"][0]
    eta = (post["skills"].sel(model=row["model"].iloc[0]) * law.loadings_.sel(benchmark=b)).sum("skill") \
        + post["intercept"].sel(benchmark=b) + post["model_effect"].sel(model=row["model"].iloc[0])
    floor = float(law.idata_.constant_data["floor"].sel(benchmark=b))
    mu_fit = floor + (1 - floor) / (1 + np.exp(-eta))
    pred = law.predict(row).predictions["mu"].sel(benchmark=b).isel(model=0)
    np.testing.assert_allclose(pred.values, mu_fit.values, rtol=1e-4, atol=1e-6)


def test_learned_link_is_a_monotone_map_onto_the_unit_interval():
    """Any weights give an increasing map from R onto (0, 1); all weight on one
    knot is the sigmoid itself (the centring removes the knot's offset)."""
    import jax
    import jax.numpy as jnp

    from bayes_sloth.core.model import LINK_KNOTS, link_fn

    eta = jnp.linspace(-12.0, 12.0, 401)
    w = jax.random.dirichlet(jax.random.PRNGKey(0), jnp.ones(len(LINK_KNOTS)), (5,))
    g = np.asarray(link_fn(jnp.broadcast_to(eta, (5, eta.size)), "monotone", w))
    assert np.all(np.diff(g, axis=1) > 0)
    assert np.all(g[:, 0] < 0.01) and np.all(g[:, -1] > 0.99)
    for m in (0, 3, len(LINK_KNOTS) - 1):
        one = jnp.zeros(len(LINK_KNOTS)).at[m].set(1.0)
        np.testing.assert_allclose(np.asarray(link_fn(eta, "monotone", one)), np.asarray(jax.nn.sigmoid(eta)),
                                   atol=1e-6)


def test_learned_link_gradient_is_the_formulas():
    """The learned link's hand-written reverse pass (written for speed) gives
    the values and gradients of autodiff through the plain formula
    sum_m w_m sigmoid(eta - o_m), with leading batch dims, over eta from deep
    in the lower tail to deep in the upper one (float64, so a wrong term
    would show far above rounding)."""
    import jax
    import jax.numpy as jnp

    from bayes_sloth.core.model import LINK_KNOTS, link_fn

    def plain(eta, w):
        knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
        o = knots - jnp.sum(w * knots, axis=-1, keepdims=True)
        return jnp.sum(w[..., None, :] * jax.nn.sigmoid(eta[..., None] - o[..., None, :]), axis=-1)

    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        eta = jnp.asarray(rng.normal(0.0, 6.0, (3, 40)))
        assert eta.dtype == jnp.float64
        w = jnp.asarray(rng.dirichlet(np.ones(len(LINK_KNOTS)), 3))
        ct = jnp.asarray(rng.normal(size=(3, 40)))
        np.testing.assert_allclose(link_fn(eta, "monotone", w), plain(eta, w), rtol=1e-12, atol=1e-14)
        ours = jax.grad(lambda e, v: jnp.sum(ct * link_fn(e, "monotone", v)), (0, 1))(eta, w)
        ref = jax.grad(lambda e, v: jnp.sum(ct * plain(e, v)), (0, 1))(eta, w)
        for a, b in zip(ours, ref):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def _plain_pooled(eta, weights):
    """Per-benchmark learned links written plainly: sum_m w_jm sigmoid(eta_ij - o_jm), eta (..., N, J)."""
    import jax
    import jax.numpy as jnp

    from bayes_sloth.core.model import LINK_KNOTS

    knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
    o = knots - jnp.sum(weights * knots, axis=-1, keepdims=True)  # (..., J, M)
    return jnp.sum(weights[..., None, :, :] * jax.nn.sigmoid(eta[..., None] - o[..., None, :, :]), axis=-1)


def test_pooled_link_gradient_is_the_formulas():
    """The per-benchmark links' hand-written reverse pass gives the values and
    gradients (in eta and in every benchmark's weights) of autodiff through
    the plain formula, with and without leading batch dims, jitted and
    vmapped over draws as the sampler and the forecasts call it, eta from
    deep in the lower tail to deep in the upper one (float64, so a wrong
    term would show far above rounding)."""
    import jax
    import jax.numpy as jnp

    from bayes_sloth.core.model import LINK_KNOTS, link_fn

    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        for batch in ((), (3,)):
            eta = jnp.asarray(rng.normal(0.0, 6.0, batch + (10, 4)))
            w = jnp.asarray(rng.dirichlet(np.ones(len(LINK_KNOTS)), batch + (4,)))
            ct = jnp.asarray(rng.normal(size=batch + (10, 4)))
            np.testing.assert_allclose(link_fn(eta, "monotone-pooled", w), _plain_pooled(eta, w),
                                       rtol=1e-12, atol=1e-14)
            ours = jax.grad(lambda e, v: jnp.sum(ct * link_fn(e, "monotone-pooled", v)), (0, 1))(eta, w)
            ref = jax.grad(lambda e, v: jnp.sum(ct * _plain_pooled(e, v)), (0, 1))(eta, w)
            for a, b in zip(ours, ref):
                assert a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        per_draw = jax.jit(jax.vmap(jax.grad(lambda v, e, c: jnp.sum(c * link_fn(e, "monotone-pooled", v)))))(w, eta, ct)
        np.testing.assert_allclose(per_draw, ref[1], rtol=1e-10, atol=1e-13)


def test_pooled_links_are_monotone_onto_and_the_shared_link_at_zero_spread():
    """For any shared weights, spread and z (up to extreme ones), each
    benchmark's weights lie on the simplex and its link rises strictly from
    below 0.01 to above 0.99; with spread 0 every benchmark's link is the
    shared link (to rounding), and with spread > 0 and shared weights off
    the simplex's faces they differ; the slope the offsets' frame uses is
    the link's derivative; a weight matrix of the wrong shape is refused."""
    import jax
    import jax.numpy as jnp

    from bayes_sloth.core.errors import InputError
    from bayes_sloth.core.links import LINK_KNOTS, get_link, link_fn, pooled_link_weights

    M, J = len(LINK_KNOTS), 5
    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        eta = jnp.linspace(-14.0, 14.0, 561)
        grid = jnp.tile(eta[:, None], (1, J))  # the same values on every benchmark's link
        shared_draws = [rng.dirichlet(np.ones(M)), np.eye(M)[0], rng.dirichlet(np.full(M, 0.05))]
        for shared in shared_draws:
            for sd in (0.3, 1.0, 5.0):
                w = pooled_link_weights(jnp.asarray(shared), sd, jnp.asarray(rng.normal(size=(J, M))))
                assert np.all(np.asarray(w) >= 0) and np.allclose(np.asarray(w).sum(-1), 1.0, atol=1e-12)
                g = np.asarray(link_fn(grid, "monotone-pooled", w))
                assert np.all(np.diff(g, axis=0) > 0), (shared, sd)
                assert np.all(g[0] < 0.01) and np.all(g[-1] > 0.99)
                if shared is shared_draws[0]:  # (a weight of exactly 0 stays 0 on every benchmark)
                    assert np.abs(g - g[:, :1]).max() > 1e-3  # spread > 0: the benchmarks' links differ
            w0 = pooled_link_weights(jnp.asarray(shared), 0.0, jnp.asarray(rng.normal(size=(J, M))))
            np.testing.assert_allclose(w0, np.broadcast_to(shared, (J, M)), rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(link_fn(grid, "monotone-pooled", w0),
                                       np.asarray(link_fn(grid, "monotone", jnp.asarray(shared))), rtol=1e-12,
                                       atol=1e-15)
        g, slope = get_link("monotone-pooled").value_and_slope(grid, w)
        np.testing.assert_allclose(g, link_fn(grid, "monotone-pooled", w), rtol=1e-12)
        d = jax.grad(lambda e: jnp.sum(link_fn(e, "monotone-pooled", w)))(grid)
        np.testing.assert_allclose(slope, d, rtol=1e-9, atol=1e-15)
        with pytest.raises(InputError, match=r"\(561, 5\) and \(7,\)"):
            link_fn(grid, "monotone-pooled", jnp.asarray(shared))


def _knot_skewness(w):
    """Skewness of each link's knot distribution sum_m w_m delta(c_m): > 0 rises fast then saturates slowly,
    < 0 the mirror image (a convex start, like MATH Lvl 5); free of the link's location and spread."""
    from bayes_sloth.core.model import LINK_KNOTS

    c = np.asarray(LINK_KNOTS)
    mean = (w * c).sum(-1, keepdims=True)
    return (w * (c - mean) ** 3).sum(-1) / (w * (c - mean) ** 2).sum(-1) ** 1.5


@pytest.mark.slow
def test_pooled_links_tell_two_benchmark_links_apart():
    """Scores drawn from per-benchmark links, two benchmarks with a link that
    rises fast and saturates slowly (knot skewness +1.58), two with its
    mirror image (-1.58): the posterior of the difference of their mean
    skewness is more than 2 posterior sd from zero, on the right side, and
    within 3 sd of the truth (3.16); the spread s_g is away from 0 (5 % quantile
    above 0.3: the data reject one shared link); the fitted law's mean scores
    are near the true ones. A shared link would put the difference at 0.
    (The links' common spread trades with the skills' scale, a direction the
    data barely hold: at this small tree depth the two chains may disagree on
    tau, R-hat ~ 2 here, while both see the shapes; the shapes, free of the
    spread, are what is tested. Under the pre-grid code: difference 2.97, sd
    0.79.)"""
    from bayes_sloth.core.model import LINK_KNOTS, describe

    fast = np.array([8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125])
    fast /= fast.sum()
    W = np.stack([fast, fast, fast[::-1], fast[::-1]])  # benchmarks 0, 1 rise fast; 2, 3 start slow
    log_w = np.log(W)
    shared = np.exp(log_w.mean(axis=0))
    # w_j = softmax(log w + s (z_j - mean z)) = W_j with s = 1 and z_j = log W_j - mean_l log W_l
    truth = {"link_weights": shared / shared.sum(), "link_sd": 1.0, "link_z": log_w - log_w.mean(axis=0),
             "slopes": [[2.0], [0.5], [0.0]], "tau": [0.7], "loadings_free": [1.0, 1.0, 1.0],
             "intercept": [0.0] * 4, "sigma": [0.015] * 4}
    lb, tr = bs.simulate_leaderboard(n_families=12, n_benchmarks=4, n_skills=1, models_per_family=(3, 6), seed=3,
                                     missing=0.0, floors=[0.0] * 4, link="monotone-pooled", model_effects=False,
                                     instruct_shift=False, truth=truth)
    np.testing.assert_allclose(tr["benchmark_link_weights"], W, atol=1e-5)
    true_diff = _knot_skewness(W[:2]).mean() - _knot_skewness(W[2:]).mean()
    assert true_diff == pytest.approx(3.164, abs=1e-3)
    law = bs.SkillsLaw(1, link="monotone-pooled", model_effects=False, instruct_shift=False, anchors=tr["anchors"],
                       **NO_SLOPES, chains=2, warmup=250, draws=250, max_tree_depth=6, seed=0, progress=False).fit(lb)
    post = law.idata_.posterior
    assert post["benchmark_link_weights"].dims == ("chain", "draw", "benchmark", "link_knot")
    assert post["link_z"].shape[2:] == (4, len(LINK_KNOTS))
    skew = _knot_skewness(post["benchmark_link_weights"].values.reshape(-1, 4, len(LINK_KNOTS)))
    diff = skew[:, :2].mean(axis=1) - skew[:, 2:].mean(axis=1)
    assert diff.mean() > 2.0 * diff.std(), (diff.mean(), diff.std())
    assert abs(diff.mean() - true_diff) < 3.0 * diff.std(), (diff.mean(), diff.std())
    assert np.quantile(post["link_sd"].values, 0.05) > 0.3
    mu = law.predict(lb.covariates.reset_index()).predictions["mu"].mean(("chain", "draw")).values
    assert np.abs(mu - tr["mu"]).mean() < 0.02
    assert "learned link per benchmark" in describe(law.spec_)


@pytest.mark.slow
def test_learned_link_fits_a_sigmoid_law_as_well_as_the_sigmoid():
    """On data from the sigmoid law, the learned link's posterior mean of each
    observed pair's law is within 1.5x the sigmoid fit's error against the true
    law (the learned link is a superset; a wrong link or a link that fails to
    reach the data would be several times worse), and its forecasts stay in [0, 1]."""
    lb, truth = bs.simulate_leaderboard(n_families=15, n_benchmarks=5, n_skills=1, seed=4, **SIGMOID_LAW)
    errs = {}
    for link in ("sigmoid", "monotone"):
        law = bs.SkillsLaw(1, anchors=truth["anchors"], link=link, model_effects=False, instruct_shift=False,
                           **NO_SLOPES, seed=0, **FAST).fit(lb)
        pred = law.predict(lb.covariates.reset_index())
        fitted_mu = pred.predictions["mu"].mean(("chain", "draw")).values
        true_mu = truth["mu"]
        errs[link] = float(np.abs(fitted_mu - true_mu).mean())
        assert float(pred.predictions["score"].min()) >= 0.0
        assert float(pred.predictions["score"].max()) <= 1.0
    assert law.idata_.posterior["link_weights"].dims == ("chain", "draw", "link_knot")
    assert errs["monotone"] < 1.5 * errs["sigmoid"], errs
