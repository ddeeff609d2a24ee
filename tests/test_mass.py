"""The low-rank mass matrix (bayes_sloth.core.mass) and how the sampler feeds it (adaptation="low-rank")."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from bayes_sloth.core import mass
from bayes_sloth.core.model import ModelSpec
from bayes_sloth.core.sampler import lowrank_mask
from bayes_sloth.core.sites import simplex_sites

from .conftest import TINY_FIT, make_tiny_frame


def _gaussian(n=30, S=4000, seed=0):
    """Draws and potential gradients of a Gaussian with coordinates on scales 0.01 to 10 and one direction
    through 10 coordinates that is 30 times narrower than its coordinates' own scales (correlation 0.999)."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.01, 10.0, n)
    R = np.eye(n)
    v = np.zeros(n)
    v[:10] = 1 / np.sqrt(10)
    R = R - (1 - 1 / 30**2) * np.outer(v, v)  # variance 1/900 along v, 1 across it
    cov = scales[:, None] * R * scales[None, :]
    x = rng.multivariate_normal(np.zeros(n), cov, size=S)
    g = x @ np.linalg.inv(cov)  # the potential's gradient of a centred Gaussian
    return x, g, cov


def _condition(pre, cov):
    """Condition number of the covariance in the preconditioned coordinates u (x = mu + P u)."""
    n = cov.shape[0]
    P = np.stack([np.asarray(mass.to_x(pre, e)) - np.asarray(pre["mu"]) for e in np.eye(n)], axis=1)
    Pi = np.linalg.inv(P)
    w = np.linalg.eigvalsh(Pi @ cov @ Pi.T)
    return w[-1] / w[0]


def test_low_rank_rounds_a_narrow_direction_the_diagonal_cannot():
    x, g, cov = _gaussian()
    diagonal = mass.estimate(x, g, max_rank=0, dtype=np.float64)
    low_rank = mass.estimate(x, g, dtype=np.float64)
    # the diagonal fixes each coordinate's scale but leaves the narrow direction 30 times narrower: about
    # 900 in variance; the low-rank correction finds it from the gradients (4,000 exact draws: a few percent)
    assert _condition(diagonal, cov) > 300
    assert _condition(low_rank, cov) < 2.0
    assert mass.rank(low_rank) >= 1 and mass.rank(diagonal) == 0


def test_maps_are_inverse_and_shapes_fixed():
    x, g, _ = _gaussian(n=12, S=500)
    pre = mass.estimate(x, g, max_rank=4, dtype=np.float64)
    assert pre["U"].shape == (12, 8) and pre["s"].shape == (8,)
    u = np.random.default_rng(1).normal(size=(5, 12))
    np.testing.assert_allclose(np.asarray(mass.to_u(pre, mass.to_x(pre, u))), u, rtol=1e-10, atol=1e-10)


def test_masked_coordinates_keep_the_diagonal_only():
    x, g, cov = _gaussian()
    full = mass.estimate(x, g, max_rank=0, dtype=np.float64)
    mask = np.ones(30, dtype=bool)
    mask[[20, 29]] = False  # two coordinates outside the narrow direction
    pre = mass.estimate(x, g, dtype=np.float64, mask=mask)
    assert np.all(pre["U"][~mask] == 0)
    np.testing.assert_allclose(pre["d"], full["d"], rtol=1e-12)  # every coordinate's own scale as before
    assert _condition(pre, cov) < 2.0  # the narrow direction is corrected as without a mask
    # a masked coordinate of the narrow direction keeps it narrow: the correction cannot move what it may not
    # use (the link's knot weights in the law's narrowest direction, benchmarks/results/geometry_lowrank.md)
    mask[0] = False
    partial = mass.estimate(x, g, dtype=np.float64, mask=mask)
    assert _condition(partial, cov) > 10 * _condition(pre, cov)
    with pytest.raises(ValueError, match="one entry per coordinate"):
        mass.estimate(x, g, mask=mask[:-1])


def test_mask_follows_the_flattening_order_of_the_state():
    from jax.flatten_util import ravel_pytree

    z = {"tau": jnp.zeros((4, 2)), "link_weights": jnp.zeros((4, 6)), "alpha": jnp.zeros((4, 3, 2))}
    mask = lowrank_mask(z, ("link_weights",))
    one_chain = {k: jnp.arange(np.prod(v.shape[1:])).reshape(v.shape[1:]) + 100 * (k == "link_weights")
                 for k, v in z.items()}
    flat = np.asarray(ravel_pytree(one_chain)[0])
    assert mask.shape == (14,)
    np.testing.assert_array_equal(~mask, flat >= 100)


def test_the_links_knot_weights_are_the_simplex_sites():
    spec = ModelSpec(2, 6, 4, (0, 1))
    assert simplex_sites(spec) == ("link_weights",)
    assert simplex_sites(ModelSpec(2, 6, 4, (0, 1), link="sigmoid")) == ()


@pytest.mark.slow
def test_a_low_rank_fit_agrees_with_the_diagonal_one():
    """The same posterior sampled with both mass matrices: the means of the law's parameters agree within
    their Monte Carlo error (5 standard errors, with the ESS of each fit)."""
    import arviz as az

    import bayes_sloth as bs

    frame = make_tiny_frame()
    kw = dict(TINY_FIT, warmup=300, draws=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bs.SkillsLaw(adaptation="diagonal", **kw).fit(frame)
        b = bs.SkillsLaw(adaptation="low-rank", **kw).fit(frame)
    assert b.diagnostics_.divergences == 0
    for name in ("tau", "slopes", "intercept", "sigma"):
        se2 = []
        for law in (a, b):
            p = law.idata_.posterior[name]
            ess = az.ess(law.idata_.posterior[[name]])[name].values
            se2.append(p.var(("chain", "draw")).values / ess)
        ma, mb = (law.idata_.posterior[name].mean(("chain", "draw")).values for law in (a, b))
        assert np.all(np.abs(ma - mb) < 5 * np.sqrt(se2[0] + se2[1])), (name, ma, mb)
