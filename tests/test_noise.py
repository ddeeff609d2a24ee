"""The noise distributions: proper densities on [0, 1] whose draws follow them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from bayes_sloth.core.model import ModelSpec, TruncatedLogistic01, noise_dist

CASES = [(0.05, 0.03), (0.5, 0.1), (0.97, 0.05), (0.0, 0.02), (1.0, 0.2)]


@pytest.mark.parametrize("loc,scale", CASES)
def test_truncated_logistic_matches_scipy_and_integrates_to_one(loc, scale):
    d = TruncatedLogistic01(loc, scale)
    ref = stats.logistic(loc, scale)
    mass = ref.cdf(1.0) - ref.cdf(0.0)
    ys = np.array([0.0, 0.01, 0.3, 0.5, 0.99, 1.0])
    np.testing.assert_allclose(np.asarray(d.log_prob(jnp.asarray(ys))), ref.logpdf(ys) - np.log(mass),
                               rtol=1e-5, atol=1e-5)
    total, _ = integrate.quad(lambda y: float(jnp.exp(d.log_prob(y))), 0.0, 1.0, points=[loc], limit=200)
    assert abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("loc,scale", CASES)
def test_truncated_logistic_draws_follow_the_density(loc, scale):
    d = TruncatedLogistic01(loc, scale)
    x = np.asarray(d.sample(jax.random.PRNGKey(3), (20000,)), dtype=float)
    assert x.min() >= 0.0 and x.max() <= 1.0
    ref = stats.logistic(loc, scale)
    mass = ref.cdf(1.0) - ref.cdf(0.0)
    # with 20000 draws a correct sampler fails this at the 0.1 % level only
    assert stats.kstest(x, lambda y: (ref.cdf(y) - ref.cdf(0.0)) / mass).pvalue > 1e-3


def test_noise_option_selects_the_distribution():
    spec = dict(n_skills=1, n_benchmarks=2, n_families=1, anchors=(0,))
    assert isinstance(noise_dist(ModelSpec(**spec, noise="logistic"), 0.5, 0.1), TruncatedLogistic01)
    assert not isinstance(noise_dist(ModelSpec(**spec), 0.5, 0.1), TruncatedLogistic01)


@pytest.mark.parametrize("loc,scale", CASES + [(0.3, 0.5), (1e-6, 0.01)])
def test_fast_truncated_normal_is_numpyros_truncated_normal(loc, scale):
    """The likelihood's own TruncatedNormal01 is the same density as NumPyro's general form."""
    import numpyro.distributions as dist

    from bayes_sloth.core.model import TruncatedNormal01

    ys = jnp.asarray([0.0, 1e-4, 0.05, 0.3, 0.5, 0.97, 1.0])
    ours = TruncatedNormal01(loc, scale)
    ref = dist.TruncatedNormal(loc, scale, low=0.0, high=1.0)
    np.testing.assert_allclose(np.asarray(ours.log_prob(ys)), np.asarray(ref.log_prob(ys)), rtol=2e-5, atol=2e-5)
    g_ours = jax.grad(lambda m, s: TruncatedNormal01(m, s).log_prob(ys).sum(), argnums=(0, 1))(loc, scale)
    g_ref = jax.grad(lambda m, s: dist.TruncatedNormal(m, s, low=0.0, high=1.0).log_prob(ys).sum(),
                     argnums=(0, 1))(loc, scale)
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_ref), rtol=1e-4, atol=1e-3)
    assert isinstance(noise_dist(ModelSpec(n_skills=1, n_benchmarks=2, n_families=1, anchors=(0,)), loc, scale),
                      TruncatedNormal01)
