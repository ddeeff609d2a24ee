r"""Links g: R -> (0, 1), from a benchmark's linear predictor to its share of the range above the chance floor.

A link is an object (:class:`Link`): its parameters (the sample sites it
adds to the model, with their priors), its function and slope, a realistic
truth for simulations and a line for :func:`~bayes_sloth.core.model.describe`.
:func:`get_link` maps a name to its link; nothing else branches on the name.

``"sigmoid"``: the logistic function, no parameters.

``"monotone"``: a learned link shared by all benchmarks, a mixture of unit
logistic functions at fixed knots c_m (:data:`LINK_KNOTS`)::

    g(eta) = sum_m w_m sigmoid(eta - (c_m - sum_l w_l c_l)),   w ~ Dirichlet(1, ..., 1)

centred so that the location stays with the benchmark intercepts. It is
increasing from 0 to 1 whatever the weights, is the sigmoid when one knot has
all the weight, and can be flatter or asymmetric; its steepness is not
separately identified from the skills' scale, its shape is.

``"monotone-pooled"``: each benchmark j has its own link g_j of that form
with weights w_j, partially pooled toward shared weights w on the log scale
(a logistic-normal, non-centred)::

    w_j = softmax(log w + s_g (z_j - mean_l z_l)),   z_j ~ Normal(0, I_M),
    w ~ Dirichlet(1, ..., 1),   s_g ~ HalfNormal(LINK_SD_SCALE)

so every w_j is on the simplex, s_g = 0 is the shared link exactly, and how
much the links differ is learned. The z_j sum to zero over benchmarks, so w
stays the benchmarks' common centre. Each g_j is applied on the (model,
benchmark) grid (column j on link j), so it needs no gather and its gradient
no scatter.

The mixtures' derivatives are written out (``jax.custom_vjp``) so that every
sum over the values is a matrix-vector product: reverse-mode autodiff of the
same formula sums each knot's terms one add at a time on a CPU, and the link's
gradient cost 5x its value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .errors import InputError

#: Centres of the learned links' logistic components.
LINK_KNOTS = np.linspace(-3.0, 3.0, 7)
#: Prior scale of s_g, the spread of the benchmarks' link weights around the shared ones on the log scale
#: (``"monotone-pooled"``): HalfNormal(1) puts half its mass below 0.67, where a benchmark's weight at a
#: knot is typically (z = +-1) within a factor e^0.67 ~ 2 of the shared one.
LINK_SD_SCALE = 1.0
#: Realistic truth of the per-benchmark links' spread s_g in simulations.
REALISTIC_LINK_SD = 0.5
#: The dims of a link's sites (ArviZ reads event dims from ``infer={"event_dims": ...}``).
KNOT_DIM = "link_knot"


#: |eta| beyond which the learned link is constant in float32 (knot offsets are at most 6 from 0)
_ETA_CLIP = 40.0


def _logistic_terms(eta, weights):
    """The knots' logistic terms, shape (..., M, n), for eta (..., n) and weights (..., M).

    ``sigmoid(eta - o_m) = 1 / (1 + exp(-eta) exp(o_m))``: one exponential
    per value, not one per knot; eta is clipped where every term is within
    1e-10 of 0 or 1.
    """
    knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
    offsets = knots - jnp.sum(weights * knots, axis=-1, keepdims=True)  # (..., M)
    e = jnp.exp(-jnp.clip(eta, -_ETA_CLIP, _ETA_CLIP))
    return 1.0 / (1.0 + jnp.exp(offsets)[..., :, None] * e[..., None, :])


def _logistic_mixture_fwd(eta, weights):
    terms = _logistic_terms(eta, weights)
    return jnp.einsum("...m,...mn->...n", weights, terms), (terms, weights)


@jax.custom_vjp
def _logistic_mixture(eta, weights):
    return _logistic_mixture_fwd(eta, weights)[0]


def _logistic_mixture_bwd(res, ct):
    # Written out so that every sum over the n values is a matrix-vector product: reverse-mode autodiff of
    # the same formula sums each knot's n terms in a reduction that the CPU runs one add at a time, and the
    # link's gradient cost 5x as much as its value.
    terms, weights = res
    slope = terms * (1.0 - terms)  # d sigmoid(eta - o_m) / d eta, = -d / d o_m
    d_eta = ct * jnp.einsum("...m,...mn->...n", weights, slope)
    d_direct = jnp.einsum("...mn,...n->...m", terms, ct)
    d_offsets = -weights * jnp.einsum("...mn,...n->...m", slope, ct)
    knots = jnp.asarray(LINK_KNOTS, dtype=weights.dtype)  # o_m = c_m - sum_l w_l c_l
    d_weights = d_direct - knots * jnp.sum(d_offsets, axis=-1, keepdims=True)
    return d_eta, d_weights


_logistic_mixture.defvjp(_logistic_mixture_fwd, _logistic_mixture_bwd)


def pooled_link_weights(shared, link_sd, link_z):
    """Per-benchmark link weights partially pooled toward the shared ones, shape (..., J, M)::

        w_j = softmax(log w + s_g (z_j - mean_l z_l))

    ``shared`` (..., M) on the simplex, ``link_sd`` (...) >= 0, ``link_z``
    (..., J, M). With ``link_sd = 0`` every row is ``shared`` (up to
    rounding). A shared weight that underflowed to 0 stays 0 (its log is
    floored at the dtype's smallest normal number, so gradients stay finite).
    """
    tiny = jnp.finfo(jnp.result_type(shared)).tiny
    log_w = jnp.log(jnp.maximum(shared, tiny))
    dev = link_z - jnp.mean(link_z, axis=-2, keepdims=True)
    return jax.nn.softmax(log_w[..., None, :] + jnp.asarray(link_sd)[..., None, None] * dev, axis=-1)


def _pooled_terms(eta, weights):
    """Logistic terms (..., M, J, N) and weights (..., M, J, 1) of per-benchmark links on a grid.

    ``eta`` (..., N, J) with benchmark j in column j, ``weights`` (..., J, M).
    As in :func:`_logistic_terms`, one exponential per value:
    ``sigmoid(eta - o_jm) = 1 / (1 + exp(-eta) exp(o_jm))``, the J x M
    factors ``exp(o_jm)`` broadcast over the models (no gather). The models
    are the last axis: with the benchmarks there (12 values) the CPU code
    was about 7x slower.
    """
    knots = jnp.asarray(LINK_KNOTS, dtype=eta.dtype)
    offsets = knots - jnp.sum(weights * knots, axis=-1, keepdims=True)  # (..., J, M)
    scale = jnp.swapaxes(jnp.exp(offsets), -1, -2)[..., None]  # (..., M, J, 1)
    e = jnp.exp(-jnp.clip(jnp.swapaxes(eta, -1, -2), -_ETA_CLIP, _ETA_CLIP))  # (..., J, N)
    return 1.0 / (1.0 + scale * e[..., None, :, :]), jnp.swapaxes(weights, -1, -2)[..., None]


def _pooled_mixture_fwd(eta, weights):
    terms, w = _pooled_terms(eta, weights)
    return jnp.swapaxes(jnp.sum(w * terms, axis=-3), -1, -2), (terms, w)


@jax.custom_vjp
def _pooled_mixture(eta, weights):
    return _pooled_mixture_fwd(eta, weights)[0]


def _pooled_mixture_bwd(res, ct):
    # As _logistic_mixture_bwd, per benchmark: the gradients in a link's weights and offsets are sums over
    # the models, matrix-vector products per benchmark (no scatter, no one-add-at-a-time reduction).
    terms, w = res
    ct = jnp.swapaxes(ct, -1, -2)  # (..., J, N)
    slope = terms * (1.0 - terms)  # d sigmoid(eta - o_jm) / d eta, = -d / d o_jm
    d_eta = jnp.swapaxes(ct * jnp.sum(w * slope, axis=-3), -1, -2)
    d_direct = jnp.einsum("...mjn,...jn->...jm", terms, ct)
    d_offsets = -jnp.swapaxes(w[..., 0], -1, -2) * jnp.einsum("...mjn,...jn->...jm", slope, ct)  # (..., J, M)
    knots = jnp.asarray(LINK_KNOTS, dtype=terms.dtype)  # o_jm = c_m - sum_l w_jl c_l
    return d_eta, d_direct - knots * jnp.sum(d_offsets, axis=-1, keepdims=True)


_pooled_mixture.defvjp(_pooled_mixture_fwd, _pooled_mixture_bwd)


class Link:
    """A monotone link. Subclasses set ``name`` and ``symbol`` and override what they change."""

    name = ""
    #: How :func:`~bayes_sloth.core.model.describe` writes it.
    symbol = "g"
    #: Applied on the (model, benchmark) grid, one link per benchmark (else to a flat vector of pairs).
    on_grid = False

    def sample(self, n_benchmarks: int) -> dict:
        """Inside the model: sample the link's parameters; returns the entries it adds to the law's parameters."""
        return {}

    def weights(self, params: dict):
        """What :meth:`__call__` reads from the law's parameters (None for a link without parameters)."""
        return None

    def __call__(self, eta, weights=None):
        """g(eta); with ``on_grid``, eta is (..., N, J), column j on benchmark j's link."""
        raise NotImplementedError

    def value_and_slope(self, eta, weights=None):
        """g(eta) and g'(eta)."""
        raise NotImplementedError

    def realistic(self, rng: np.random.Generator, n_benchmarks: int) -> dict:
        """A realistic truth of the link's sampled sites, for simulations."""
        return {}

    def describe(self) -> list[str]:
        """Lines of :func:`~bayes_sloth.core.model.describe` that define the link (none for a fixed function)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Link):
    """The logistic function."""

    name = "sigmoid"
    symbol = "sigmoid"

    def __call__(self, eta, weights=None):
        return jax.nn.sigmoid(eta)

    def value_and_slope(self, eta, weights=None):
        g = jax.nn.sigmoid(eta)
        return g, g * (1.0 - g)


def _knot_weights_prior():
    return dist.Dirichlet(jnp.ones(len(LINK_KNOTS)))


class Monotone(Link):
    """One learned monotone link for every benchmark (module docstring)."""

    name = "monotone"
    symbol = "g"

    def sample(self, n_benchmarks: int) -> dict:
        return {"link_weights": numpyro.sample("link_weights", _knot_weights_prior(),
                                               infer={"event_dims": [KNOT_DIM]})}

    def weights(self, params: dict):
        return params["link_weights"]

    def __call__(self, eta, weights=None):
        return _logistic_mixture(eta, weights)

    def value_and_slope(self, eta, weights=None):
        t = _logistic_terms(eta, weights)
        return (jnp.einsum("...m,...mn->...n", weights, t), jnp.einsum("...m,...mn->...n", weights, t * (1.0 - t)))

    def realistic(self, rng, n_benchmarks):
        return {"link_weights": rng.dirichlet(np.ones(len(LINK_KNOTS)))}

    def describe(self) -> list[str]:
        return ["g(eta)   = sum_m w_m sigmoid(eta - c_m + sum_l w_l c_l),  w ~ Dirichlet(1)   learned monotone link"]


class MonotonePooled(Monotone):
    """A learned link per benchmark, partially pooled toward a shared one (module docstring)."""

    name = "monotone-pooled"
    symbol = "g_j"
    on_grid = True

    def sample(self, n_benchmarks: int) -> dict:
        p = super().sample(n_benchmarks)
        link_sd = numpyro.sample("link_sd", dist.HalfNormal(LINK_SD_SCALE))
        with numpyro.plate("benchmark", n_benchmarks, dim=-1):  # the dim every sampled benchmark site has
            link_z = numpyro.sample("link_z", dist.Normal(0.0, 1.0).expand([len(LINK_KNOTS)]).to_event(1),
                                    infer={"coordinate_of": "benchmark_link_weights", "event_dims": [KNOT_DIM]})
        with numpyro.plate("benchmark", n_benchmarks, dim=-2), numpyro.plate(KNOT_DIM, len(LINK_KNOTS), dim=-1):
            p["benchmark_link_weights"] = numpyro.deterministic(
                "benchmark_link_weights", pooled_link_weights(p["link_weights"], link_sd, link_z))
        return p

    def weights(self, params: dict):
        return params["benchmark_link_weights"]

    def __call__(self, eta, weights=None):
        if jnp.ndim(weights) < 2 or jnp.shape(eta)[-1:] != jnp.shape(weights)[-2:-1]:
            raise InputError(f"link='monotone-pooled' needs eta (..., N, J) and weights (..., J, M), got shapes "
                             f"{jnp.shape(eta)} and {jnp.shape(weights)}")
        return _pooled_mixture(eta, weights)

    def value_and_slope(self, eta, weights=None):
        t, w = _pooled_terms(eta, weights)
        return tuple(jnp.swapaxes(jnp.sum(w * a, axis=-3), -1, -2) for a in (t, t * (1.0 - t)))

    def realistic(self, rng, n_benchmarks):
        return dict(super().realistic(rng, n_benchmarks), link_sd=np.asarray(REALISTIC_LINK_SD),
                    link_z=rng.normal(size=(n_benchmarks, len(LINK_KNOTS))))

    def describe(self) -> list[str]:
        return ["g_j(eta) = sum_m w_jm sigmoid(eta - c_m + sum_l w_jl c_l)               learned link per benchmark",
                f"w_j      = softmax(log w + s_g (z_j - mean z)),  z_j ~ Normal(0, I),  w ~ Dirichlet(1),  "
                f"s_g ~ HalfNormal({LINK_SD_SCALE:g})   partially pooled"]


#: Every link by its name (``LawOptions.link``).
REGISTRY = {cls.name: cls() for cls in (Monotone, MonotonePooled, Sigmoid)}


def get_link(name: str) -> Link:
    """The link registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown link {name!r}: links are {tuple(REGISTRY)}") from None


def link_fn(eta, link: str, weights=None):
    """g(eta) of the link named ``link`` with its ``weights`` (see :class:`Link`)."""
    return get_link(link)(eta, weights)
