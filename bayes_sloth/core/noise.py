"""The misfit of a score around the law: a location-scale law truncated to [0, 1], per benchmark.

``noise="normal"``: y ~ TruncatedNormal(m, sigma) on [0, 1]; ``"logistic"``:
a logistic of scale sigma truncated the same way (heavier tails). Either
way predictive draws stay in [0, 1], exact 0 and 1 scores have a finite
density, and scores below the chance floor are allowed. (A truncated
Student-t was tried and removed: JAX has neither the gradient of its CDF in
the degrees of freedom nor its inverse CDF, which truncated sampling needs.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from .errors import InputError


class _LocScaleOnUnit(dist.Distribution):
    """A location-scale law truncated to [0, 1]: the parameters and support both noise laws share."""

    arg_constraints = {"loc": dist.constraints.real, "scale": dist.constraints.positive}
    support = dist.constraints.unit_interval
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc, scale, *, validate_args=None):
        self.loc, self.scale = jnp.broadcast_arrays(jnp.asarray(loc), jnp.asarray(scale))
        super().__init__(batch_shape=jnp.shape(self.loc), validate_args=validate_args)


class TruncatedNormal01(_LocScaleOnUnit):
    """Normal(loc, scale) truncated to [0, 1], for ``0 <= loc <= 1``.

    The same density as ``numpyro.distributions.TruncatedNormal(loc, scale,
    low=0, high=1)``, written for the likelihood's hot path: with
    ``u = (1 - loc) / (scale sqrt 2)`` and ``v = loc / (scale sqrt 2)``, both
    >= 0, the truncation mass is ``(erf(u) + erf(v)) / 2``, a sum of two
    non-negative terms (no cancellation, no branches), where the general
    form takes the difference of two normal CDFs with sign tests to keep it
    accurate. Its log density and gradient cost about a tenth as much, and
    they are most of the sampler's work. Draws and the CDF are NumPyro's.
    """

    def log_prob(self, value):
        r = 1.0 / (self.scale * np.sqrt(2.0))
        z = (value - self.loc) * r
        mass2 = jax.lax.erf((1.0 - self.loc) * r) + jax.lax.erf(self.loc * r)  # twice the truncation mass
        return -z * z - jnp.log(self.scale) - jnp.log(mass2) + (np.log(2.0) - 0.5 * np.log(2.0 * np.pi))

    def _reference(self):
        return dist.TruncatedNormal(self.loc, self.scale, low=0.0, high=1.0)

    def sample(self, key, sample_shape=()):
        return self._reference().sample(key, sample_shape)

    def cdf(self, value):
        return self._reference().cdf(value)


class TruncatedLogistic01(_LocScaleOnUnit):
    """Logistic(loc, scale) truncated to [0, 1], for ``0 <= loc <= 1``.

    Heavier tails than the Normal (excess kurtosis 1.2) and a closed-form CDF
    and quantile, so the density, its gradient and exact draws (inverse CDF)
    are cheap. The truncation mass ``sigmoid((1 - loc) / s) - sigmoid(-loc / s)``
    is at least about 1/2 because the law's mean lies in [0, 1].
    """

    def _cdf_bounds(self):
        return jax.nn.sigmoid(-self.loc / self.scale), jax.nn.sigmoid((1.0 - self.loc) / self.scale)

    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        lo, hi = self._cdf_bounds()
        return -z - 2.0 * jax.nn.softplus(-z) - jnp.log(self.scale) - jnp.log(hi - lo)

    def sample(self, key, sample_shape=()):
        lo, hi = self._cdf_bounds()
        shape = sample_shape + self.batch_shape
        u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(lo)).tiny, maxval=1.0)
        p = lo + u * (hi - lo)
        return jnp.clip(self.loc + self.scale * (jnp.log(p) - jnp.log1p(-p)), 0.0, 1.0)

    def cdf(self, value):
        lo, hi = self._cdf_bounds()
        return jnp.clip((jax.nn.sigmoid((value - self.loc) / self.scale) - lo) / (hi - lo), 0.0, 1.0)


def noise_dist(spec, mean, sigma):
    """Distribution of a score around its mean, supported on [0, 1]:
    ``sigma`` is the Normal's sd (``noise="normal"``) or the logistic's scale
    (``noise="logistic"``, sd = sigma * pi / sqrt(3) before truncation)."""
    return get_noise(spec.noise)(mean, sigma)



#: Every noise law by its name (``LawOptions.noise``).
REGISTRY = {"normal": TruncatedNormal01, "logistic": TruncatedLogistic01}


def get_noise(name: str):
    """The noise law registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown noise {name!r}: noise laws are {tuple(REGISTRY)}") from None
