r"""The hierarchical skills scaling law: the model's math, written once.

Models i = 1..N of families f(i) = 1..F, benchmarks j = 1..J, skills k = 1..K;
x_i the standardized covariates (log parameters, log tokens, their
interaction; :mod:`bayes_sloth.core.covariates`, which also holds the latent
tokens of models without a token count). Each site is sampled inside named
plates (``family``, ``skill``, ``benchmark``, ``model``, ...), so its dims are
the model's own (:mod:`bayes_sloth.core.sites` reads them, as ArviZ does).

Skills::

    theta_i = alpha_f(i) + B' x_i                                   in R^K
              (+ gamma_f(i) x_i,logS)                               family_slopes
              (+ (delta + delta_S x_i,logS) instruct_i)            instruct_shift, instruct_slope
    alpha_f = tau (z_f - mean_g z_g),   z_f ~ Normal(0, I_K)        family efficiency, non-centred
    gamma_f = omega (u_f - mean_g u_g), u_f ~ Normal(0, I_K)        family slope in log S
    B ~ Normal(0, 2),  tau ~ HalfNormal(1),  omega ~ HalfNormal(0.5),  delta, delta_S ~ Normal(0, 1)

The efficiencies and slopes are centred over the fitted families: the
location of the skills is carried by the benchmark intercepts. A never-seen
family draws alpha_new = tau z and gamma_new = omega u around that centre.

Benchmark response, with c_j the chance floor and g a monotone link
(:mod:`bayes_sloth.core.links`)::

    eta_ij = lambda_j' theta_i + b_j (+ e_i)
    m_ij   = c_j + (1 - c_j) g(eta_ij),      b_j ~ Normal(0, 3)
    e_i    = s v_i,  v_i ~ Normal(0, 1),  s ~ HalfNormal(0.5)       model_effects: the model's own offset

The offset is one number per model, common to all its benchmarks: a family
seen through one small model does not take that model's idiosyncrasies for
the family's. On boards of at most :data:`OFFSET_FRAME_MAX_BENCHMARKS`
benchmarks the sampler moves v in u = m + r v, with m and r a Gaussian
approximation of u's conditional posterior (:func:`offset_frame`); the prior of
u and the Jacobian r are added, so the posterior is the same.

Loadings Lambda (J x K), identified by construction (Geweke and Zhou 1996):
skill k has an anchor benchmark a_k with Lambda[a_k, k] = 1 and
Lambda[a_k, l] = 0 for l > k; every other loading is free, HalfNormal(2)
(``loadings="positive"``: more skill never lowers a score) or Normal(0, 2)
(``"real"``). Anchors: :mod:`bayes_sloth.core.anchors`.

Noise, the misfit of each benchmark (:mod:`bayes_sloth.core.noise`)::

    y_ij ~ TruncatedNormal(m_ij, sigma_j) on [0, 1],   sigma_j ~ LogNormal(log 0.04, 0.5)

(or a truncated logistic). The prior on sigma_j (95 % in 0.015-0.11) keeps
away from zero: scores are averages over finitely many items, and a law that
fit one benchmark exactly is a Heywood case. Only observed pairs enter the
likelihood: missing scores are neither imputed nor a reason to drop a model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .anchors import default_anchors, log_compute  # noqa: F401  (their home before the split)
from .covariates import (  # noqa: F401  (their home before the split)
    COVARIATES,
    TOKEN_COEF_SD,
    TOKEN_SD_SCALE,
    Standardizer,
    fitted_covariates,
    latent_log_tokens,
    standardization_array,
    token_covariates,
    token_regression,
)
from .errors import InputError
from .links import LINK_KNOTS, LINK_SD_SCALE, Link, get_link, link_fn, pooled_link_weights  # noqa: F401
from .noise import TruncatedLogistic01, TruncatedNormal01, get_noise, noise_dist  # noqa: F401
from .options import AUTO_SCALED_MIN_FAMILIES, LINK_NAMES, LawOptions, absent_values

#: Allowed values of the law's options (declared in :mod:`bayes_sloth.core.options`).
LINKS = LINK_NAMES
LOADINGS = LawOptions.field("loadings").metadata["check"]
NOISES = LawOptions.field("noise").metadata["check"]


@dataclass(frozen=True, init=False)
class ModelSpec:
    """Static structure of one skills law: its options and everything that fixes array shapes.

    ``ModelSpec(n_skills, n_benchmarks, n_families, anchors, **law_options)``:
    the law's options (:class:`~bayes_sloth.core.options.LawOptions`, with its
    defaults) are read as attributes (``spec.link``, ``spec.family_slopes``),
    ``anchors`` are the anchor benchmarks' indices. Two fits with equal specs
    (and equal data shapes) share compiled code.
    """

    n_benchmarks: int
    n_families: int
    anchors: tuple[int, ...]
    n_latent_tokens: int
    options: LawOptions

    def __init__(self, n_skills: int, n_benchmarks: int, n_families: int, anchors, *, n_latent_tokens: int = 0,
                 options: LawOptions | None = None, **law):
        options = (options or LawOptions()).changed(n_skills=n_skills, **law).structure()
        if options.coordinates == "auto":  # resolved here, so the compiled law and the fit file name the real ones
            options = options.changed(coordinates=auto_coordinates(int(n_families)))
        if isinstance(n_latent_tokens, bool) or not isinstance(n_latent_tokens, (int, np.integer)) \
                or n_latent_tokens < 0:
            raise InputError(f"n_latent_tokens must be a non-negative integer, got {n_latent_tokens!r}")
        anchors = tuple(int(a) for a in anchors)
        if len(anchors) != options.n_skills or len(set(anchors)) != options.n_skills:
            raise InputError(f"need {options.n_skills} distinct anchor benchmarks, got {anchors}")
        for name, value in (("n_benchmarks", int(n_benchmarks)), ("n_families", int(n_families)),
                            ("anchors", anchors), ("n_latent_tokens", int(n_latent_tokens)), ("options", options)):
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # the law's options read as the spec's own attributes (only called when normal lookup fails)
        if name != "options" and name in LawOptions.names():
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def link_(self) -> Link:
        """The link object of ``self.link`` (:mod:`bayes_sloth.core.links`)."""
        return get_link(self.link)

    @property
    def loading_structure(self) -> np.ndarray:
        """J x K array: 1 = fixed at one, 0 = fixed at zero, -1 = free."""
        s = -np.ones((self.n_benchmarks, self.n_skills), dtype=int)
        for k, a in enumerate(self.anchors):
            s[a, k] = 1
            s[a, k + 1 :] = 0
        return s

    @property
    def free_loading_index(self) -> np.ndarray:
        """Flat (row-major) indices of the free loadings."""
        return np.flatnonzero(self.loading_structure.ravel() == -1)

    def to_dict(self) -> dict:
        """Flat: the law's options beside the shapes (the fit file's ``spec``)."""
        d = {k: v for k, v in self.options.to_dict().items() if k != "anchors"}
        d.update(n_benchmarks=self.n_benchmarks, n_families=self.n_families, anchors=list(self.anchors),
                 n_latent_tokens=self.n_latent_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        """From :meth:`to_dict`; an option missing from a fit saved before it existed takes the value the law
        had then (:func:`~bayes_sloth.core.options.absent_values`)."""
        d = dict(d)
        shape = {k: d.pop(k) for k in ("n_benchmarks", "n_families", "anchors", "n_latent_tokens") if k in d}
        law = {**absent_values(), **d}
        law.pop("anchors", None)
        return cls(law.pop("n_skills"), shape["n_benchmarks"], shape["n_families"], shape["anchors"],
                   n_latent_tokens=shape.get("n_latent_tokens", 0), **law)


def auto_coordinates(n_families: int) -> str:
    """The coordinates ``coordinates="auto"`` samples in on a leaderboard of ``n_families`` families.

    "scaled" from :data:`~bayes_sloth.core.options.AUTO_SCALED_MIN_FAMILIES` families, "anchored" below.
    The scaled coordinates measure each skill in units of its family spread tau_k: where many families pin
    tau_k, that removes the ridge between a skill's scale and its loadings (the whole Sloth table, 68
    families). Where tau_k is held loosely (few families, few scores per family, or a spread near zero),
    every coordinate of the skill is divided by an uncertain tau_k, and the posterior becomes a funnel in
    tau_k: in simulation-based calibration with 8 and with 24 families the scaled coordinates left
    replications divergent or unconverged (mostly those whose true tau was small) where the anchored ones
    did not; on 40 real families the two cost about the same. The number of families is a proxy for how well
    tau_k is measured, read before any fit.
    """
    return "scaled" if int(n_families) >= AUTO_SCALED_MIN_FAMILIES else "anchored"


# ------------------------------------------------------------------- the law
def assemble_loadings(spec: ModelSpec, free):
    """Full J x K loading matrix from the free loadings (leading batch dims allowed)."""
    fixed = jnp.asarray((spec.loading_structure == 1).astype(np.float32))
    idx = spec.free_loading_index
    batch = free.shape[:-1]
    flat = jnp.zeros(batch + (spec.n_benchmarks * spec.n_skills,), dtype=free.dtype)
    flat = flat.at[..., idx].set(free)
    return flat.reshape(batch + (spec.n_benchmarks, spec.n_skills)) + fixed


def skills_of(alpha, family, x, slopes, instruct=None, instruct_shift=None, family_slope=None,
              instruct_slope=None):
    """theta_i = alpha_f(i) + B' x_i (+ gamma_f(i) x_i,logS) (+ delta * instruct_i)
    (+ delta_S * instruct_i * x_i,logS), shape (..., N, K).

    Parameters may carry leading batch (draw) dimensions.
    """
    theta = jnp.take(alpha, family, axis=-2) + jnp.einsum("...nc,...ck->...nk", x, slopes)
    if family_slope is not None:
        theta = theta + jnp.take(family_slope, family, axis=-2) * x[..., 0:1]
    if instruct_shift is not None:
        theta = theta + instruct[:, None] * instruct_shift[..., None, :]
    if instruct_slope is not None:
        theta = theta + (instruct[:, None] * x[..., 0:1]) * instruct_slope[..., None, :]
    return theta


def link_weights_of(spec: ModelSpec, params: dict):
    """The weights the link of ``spec`` reads from ``params`` (None for the sigmoid)."""
    return spec.link_.weights(params)


def pair_mean(spec: ModelSpec, theta, loadings, intercept, floor, obs_model, obs_bench, model_effect=None,
              link_weights=None):
    """m = c_j + (1 - c_j) g(lambda_j' theta_i + b_j (+ e_i)) for the listed (i, j) pairs.

    ``link_weights``: the link's weights, :func:`link_weights_of` (per benchmark with ``"monotone-pooled"``).
    """
    # every (model, benchmark) pair in one small matrix product, then the listed pairs picked from it:
    # cheaper than gathering a skill row and a loading row per pair, whose gradients are two scatter-adds
    full = jnp.einsum("...nk,...jk->...nj", theta, loadings) + intercept[..., None, :]
    if model_effect is not None:  # added to the (N, J) matrix: its gradient is a row sum, not a scatter-add
        full = full + model_effect[..., :, None]
    n_bench = loadings.shape[-2]
    pick = obs_model * n_bench + obs_bench
    link = spec.link_
    if link.on_grid:  # benchmark j's link on column j of the grid, then the pairs picked
        g = jnp.take(link(full, link_weights).reshape(full.shape[:-2] + (-1,)), pick, axis=-1)
    else:
        g = link(jnp.take(full.reshape(full.shape[:-2] + (-1,)), pick, axis=-1), link_weights)
    c = floor[obs_bench]
    return c + (1.0 - c) * g


def pair_dist(spec: ModelSpec, params: dict, x, family, instruct, floor, obs_model, obs_bench):
    """Distribution of the scores of (model, benchmark) pairs given parameters.

    ``params`` maps site names (``alpha``, ``slopes``, ``loadings``,
    ``intercept``, ``sigma`` and optional ``instruct_shift``, ``instruct_slope``, ``family_slope``,
    ``model_effect``, and the link's ``link_weights`` or ``benchmark_link_weights``) to values
    with any leading batch dimensions. Returns (distribution, mean, skills).
    Shared by the model, the log-likelihood,
    replicated data and forecasts so the law is written once.
    """
    theta = skills_of(params["alpha"], family, x, params["slopes"], instruct, params.get("instruct_shift"),
                      params.get("family_slope"), params.get("instruct_slope"))
    m = pair_mean(spec, theta, params["loadings"], params["intercept"], floor, obs_model, obs_bench,
                  params.get("model_effect"), link_weights_of(spec, params))
    sigma = jnp.take(params["sigma"], obs_bench, axis=-1)
    return noise_dist(spec, m, sigma), m, theta


#: Prior of the per-benchmark noise sigma_j: LogNormal(log SIGMA_MEDIAN, SIGMA_LOG_SD) (see the module docstring)
SIGMA_MEDIAN = 0.04
SIGMA_LOG_SD = 0.5
#: Newton steps that place the offsets' sampling frame (:func:`offset_frame`)
OFFSET_NEWTON_STEPS = 2
#: The frame is used on leaderboards of at most this many benchmarks; with more, the offsets are sampled
#: non-centred (u = v): each is then held by many benchmarks, and the frame costs more gradient than it saves
#: trajectory (on the 12-benchmark Sloth table, 2.3x the gradient for trajectories 40 % shorter)
OFFSET_FRAME_MAX_BENCHMARKS = 5


def offset_frame(spec: ModelSpec, p: dict, s, x, family, instruct, floor, obs_model, obs_bench, y, obs_weight=None):
    """Centre m_i and scale r_i of the standardized offsets u_i = e_i / s given everything else.

    A Gaussian approximation of u_i's conditional posterior: Gauss-Newton
    steps from u = 0 on ``sum_j log N(y_ij | m_ij(u_i), sigma_j) - u_i^2 / 2``
    (the truncation ignored), with the link linearized at the current point::

        W_i = sum_j ((1 - c_j) g'(eta_ij) / sigma_j)^2,    r_i = (1 + s^2 W_i)^(-1/2)

    so r_i -> 1 (the plain non-centred u = v) where the data say little about
    model i, and r_i ~ sigma / (s g') where they pin its offset. Both are
    functions of the other parameters and the data only, so ``u = m + r v`` is
    an exact change of variables (the model adds its Jacobian); how good the
    approximation is only decides how round the posterior of v is.
    """
    theta = skills_of(p["alpha"], family, x, p["slopes"], instruct, p.get("instruct_shift"), p.get("family_slope"),
                      p.get("instruct_slope"))
    full = jnp.einsum("nk,jk->nj", theta, p["loadings"]) + p["intercept"][None, :]
    J = p["loadings"].shape[-2]
    eta0 = jnp.take(full.reshape(-1), obs_model * J + obs_bench)
    c = floor[obs_bench]
    inv_var = 1.0 / jnp.maximum(jnp.take(p["sigma"], obs_bench) ** 2, 1e-12)
    if obs_weight is not None:
        inv_var = jnp.where(obs_weight, inv_var, 0.0)
    n = x.shape[0]
    m = jnp.zeros(n, dtype=eta0.dtype)
    link, weights = spec.link_, link_weights_of(spec, p)
    for _ in range(OFFSET_NEWTON_STEPS):
        if link.on_grid:  # benchmark j's link on column j of the (N, J) grid
            g, slope = (jnp.take(a.reshape(-1), obs_model * J + obs_bench)
                        for a in link.value_and_slope(full + s * m[:, None], weights))
        else:
            g, slope = link.value_and_slope(eta0 + s * jnp.take(m, obs_model), weights)
        d = (1.0 - c) * slope
        res = y - (c + (1.0 - c) * g)
        grad = s * jax.ops.segment_sum(d * res * inv_var, obs_model, n) - m
        prec = 1.0 + s * s * jax.ops.segment_sum(d * d * inv_var, obs_model, n)
        m = m + grad / prec
    return m, jax.lax.rsqrt(prec)


def _anchored_coordinates(spec: ModelSpec) -> dict:
    """The skills' parameters sampled as they are written (``coordinates="anchored"``): each skill in its
    anchor's units, the family efficiencies and slopes non-centred (z ~ Normal(0, I), centred)."""
    K, J, F = spec.n_skills, spec.n_benchmarks, spec.n_families
    p = {}
    with _plate("covariate", len(COVARIATES), -2), _plate("skill", K):
        p["slopes"] = numpyro.sample("slopes", dist.Normal(0.0, 2.0))
    with _plate("skill", K):
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    p["alpha"] = pooled_effect("alpha", "family_z", "tau", tau, "family", F, K)
    if spec.family_slopes:
        with _plate("skill", K):
            omega = numpyro.sample("family_slope_sd", dist.HalfNormal(0.5))
        p["family_slope"] = pooled_effect("family_slope", "family_slope_z", "family_slope_sd", omega, "family", F, K)
    with _plate("skill", K):
        if spec.instruct_shift:
            p["instruct_shift"] = numpyro.sample("instruct_shift", dist.Normal(0.0, 1.0))
        if spec.instruct_slope:
            p["instruct_slope"] = numpyro.sample("instruct_slope", dist.Normal(0.0, 1.0))
    with _plate("loading_free", len(spec.free_loading_index)):
        prior = dist.HalfNormal(2.0) if spec.loadings == "positive" else dist.Normal(0.0, 2.0)
        free = numpyro.sample("loadings_free", prior, infer={"assembles": "loadings"})
    with _plate("benchmark", J, -2), _plate("skill", K):
        p["loadings"] = numpyro.deterministic("loadings", assemble_loadings(spec, free))
    with _plate("benchmark", J):
        p["intercept"] = numpyro.sample("intercept", dist.Normal(0.0, 3.0))
    return p


def helmert_basis(n: int) -> np.ndarray:
    """An orthonormal basis (n, n - 1) of the vectors that sum to zero (Helmert's): for v ~ Normal(0, I_(n-1)),
    Q v has the law of z - mean(z) for z ~ Normal(0, I_n)."""
    Q = np.zeros((n, max(n - 1, 0)))
    for k in range(1, n):
        Q[:k, k - 1] = 1.0
        Q[k, k - 1] = -float(k)
        Q[:, k - 1] /= np.sqrt(k * (k + 1.0))
    return Q


def instruct_shares(family, instruct, n_families: int):
    """I_f: the share of each family's models that are instruction-tuned."""
    counts = jax.ops.segment_sum(jnp.ones_like(instruct), family, n_families)
    return jax.ops.segment_sum(instruct, family, n_families) / jnp.maximum(counts, 1.0)


#: Each skill is sampled in units of tau_k ** SCALE_POWER (``coordinates="scaled"``): 1 is the family spread,
#: 0 the anchor's own units.
SCALE_POWER = 1.0


def _scaled_coordinates(spec: ModelSpec, family, instruct) -> dict:
    r"""The skills' parameters in coordinates where the posterior is rounder (``coordinates="scaled"``), mapped
    to the law's own: the same posterior, the same sites for the user.

    - Each skill k in units of its family spread tau_k (tilde: divided by tau_k, loadings multiplied):
      ``B = tau B~``, ``delta = tau delta~``, ``delta_S = tau delta_S~``, ``omega = tau omega~``,
      ``lambda_jk = lambda~_jk / tau_k``, with priors ``B~ ~ Normal(0, 2 / tau)`` and so on: the law's priors
      with their Jacobians. Only the anchor's unit loading then involves tau_k.
    - The families' centred efficiencies and slopes on a sum-zero basis Q (Helmert): F - 1 coordinates per
      skill, since the mean the data never see is not sampled (``Q v`` has the law of ``z - mean z``).
    - The instruct shift sheared off the efficiencies and the intercepts (no family mixes base and tuned
      models, so delta otherwise trades against every tuned family's efficiency and, through the centring,
      every intercept)::

          alpha_f = tau (Q v - (I_f - mean I) delta~),    v ~ Normal(Q'(I - mean I) delta~, I)
          b_j     = b'_j - mean I (Lambda delta)_j,        b' ~ Normal(mean I (Lambda delta)_j, 3)

      with I_f the share of family f's models that are tuned: shifts by functions of the other coordinates
      (Jacobian 1). The likelihood then no longer depends on delta.
    """
    K, J, F = spec.n_skills, spec.n_benchmarks, spec.n_families
    Q = jnp.asarray(helmert_basis(F), dtype=instruct.dtype)
    share = instruct_shares(family, instruct, F)
    tilt = share - jnp.mean(share)
    p = {}
    with _plate("skill", K):
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    c = tau**SCALE_POWER  # the unit each skill is sampled in
    with _plate("covariate", len(COVARIATES), -2), _plate("skill", K):
        b_s = numpyro.sample("slopes_scaled", dist.Normal(0.0, 2.0 / c), infer={"coordinate_of": "slopes"})
        p["slopes"] = numpyro.deterministic("slopes", c * b_s)
    d_s = jnp.zeros(K, dtype=instruct.dtype)
    with _plate("skill", K):
        if spec.instruct_shift:
            d_s = numpyro.sample("instruct_shift_scaled", dist.Normal(0.0, 1.0 / c),
                                 infer={"coordinate_of": "instruct_shift"})
            p["instruct_shift"] = numpyro.deterministic("instruct_shift", c * d_s)
        if spec.instruct_slope:
            dS_s = numpyro.sample("instruct_slope_scaled", dist.Normal(0.0, 1.0 / c),
                                  infer={"coordinate_of": "instruct_slope"})
            p["instruct_slope"] = numpyro.deterministic("instruct_slope", c * dS_s)
        if spec.family_slopes:
            om_s = numpyro.sample("family_slope_sd_scaled", dist.HalfNormal(0.5 / c),
                                  infer={"coordinate_of": "family_slope_sd"})
            omega = numpyro.deterministic("family_slope_sd", c * om_s)
    # one family: no contrast to sample (its centred efficiency is zero), and a plate cannot be empty
    v = jnp.zeros((0, K), dtype=instruct.dtype)
    if F > 1:
        with _plate("family_basis", F - 1, -2), _plate("skill", K):
            v = numpyro.sample("family_v", dist.Normal((Q.T @ tilt)[:, None] * (c * d_s / tau), 1.0),
                               infer={"coordinate_of": "alpha", "scale": "tau", "group": "family"})
    with _plate("family", F, -2), _plate("skill", K):
        p["alpha"] = numpyro.deterministic("alpha", tau * (Q @ v) - tilt[:, None] * (c * d_s))
    if spec.family_slopes:
        u = jnp.zeros((0, K), dtype=instruct.dtype)
        if F > 1:
            with _plate("family_basis", F - 1, -2), _plate("skill", K):
                u = numpyro.sample("family_slope_v", dist.Normal(0.0, 1.0),
                                   infer={"coordinate_of": "family_slope", "scale": "family_slope_sd",
                                          "group": "family"})
        with _plate("family", F, -2), _plate("skill", K):
            p["family_slope"] = numpyro.deterministic("family_slope", omega * (Q @ u))
    cols = jnp.asarray(spec.free_loading_index % K)
    with _plate("loading_free", len(spec.free_loading_index)):
        scale = 2.0 * jnp.take(c, cols)
        prior = dist.HalfNormal(scale) if spec.loadings == "positive" else dist.Normal(0.0, scale)
        free_s = numpyro.sample("loadings_scaled", prior, infer={"coordinate_of": "loadings_free",
                                                                 "assembles": "loadings"})
        free = numpyro.deterministic("loadings_free", free_s / jnp.take(c, cols))
    with _plate("benchmark", J, -2), _plate("skill", K):
        p["loadings"] = numpyro.deterministic("loadings", assemble_loadings(spec, free))
    shift = jnp.mean(share) * (p["loadings"] @ (c * d_s))  # mean I (Lambda delta)_j
    with _plate("benchmark", J):
        b = numpyro.sample("intercept_shifted", dist.Normal(shift, 3.0), infer={"coordinate_of": "intercept"})
        p["intercept"] = numpyro.deterministic("intercept", b - shift)
    return p


def skills_law(
    spec: ModelSpec,
    x,
    family,
    instruct,
    floor,
    obs_model,
    obs_bench,
    y=None,
    obs_weight=None,
    latent_tokens=None,
    standardization=None,
):
    """The hierarchical skills law (see the module docstring for the math).

    Parameters
    ----------
    spec : ModelSpec
        Static structure (K, J, F, anchors, link, loadings, noise).
    x : (N, 3) standardized covariates.
    family : (N,) int family index in 0..F-1.
    instruct : (N,) float, 1 for instruction-tuned models.
    floor : (J,) chance floors.
    obs_model, obs_bench : (n_obs,) int, the observed (model, benchmark) pairs.
    y : (n_obs,) observed scores, or None to sample them.
    obs_weight : (n_obs,) bool, optional mask: pairs with False are left out of
        the likelihood (cross-validation folds reuse one compiled program).
    latent_tokens : (n_latent_tokens,) int, the rows without a token count (their
        token columns of x are placeholders), with ``spec.n_latent_tokens > 0``.
    standardization : (8,) the standardizer's statistics (:func:`standardization_array`),
        with ``spec.n_latent_tokens > 0``.
    """
    K, J, N = spec.n_skills, spec.n_benchmarks, x.shape[0]
    if spec.n_latent_tokens:  # first: every later use of x sees the latent rows filled in
        x = token_regression(spec, x, latent_tokens, standardization)
    if spec.coordinates == "scaled":
        p = _scaled_coordinates(spec, family, instruct)
    else:
        p = _anchored_coordinates(spec)
    p.update(spec.link_.sample(J))
    with _plate("benchmark", J):
        p["sigma"] = numpyro.sample("sigma", dist.LogNormal(np.log(SIGMA_MEDIAN), SIGMA_LOG_SD))
    if spec.model_effects:  # after every other parameter: with data, the offsets' coordinates depend on them
        s_model = numpyro.sample("model_sd", dist.HalfNormal(0.5))
        frame = None
        if y is not None and J <= OFFSET_FRAME_MAX_BENCHMARKS:  # u = e / s = m + r v, m and r from the rest
            frame = offset_frame(spec, p, s_model, x, family, instruct, floor, obs_model, obs_bench, y, obs_weight)
        p["model_effect"] = pooled_effect("model_effect", "model_z", "model_sd", s_model, "model", N, None,
                                          centered=False, frame=frame)

    d, _, theta = pair_dist(spec, p, x, family, instruct, floor, obs_model, obs_bench)
    with _plate("model", N, -2), _plate("skill", K):
        numpyro.deterministic("skills", theta)
    if obs_weight is not None:
        d = d.mask(obs_weight)
    with _plate("obs", d.batch_shape[-1]):
        numpyro.sample("y", d, obs=y)


def _plate(name: str, size: int, dim: int = -1):
    """A named plate: the dim name every site inside it carries (ArviZ and :mod:`bayes_sloth.core.sites` read it)."""
    return numpyro.plate(name, size, dim=dim)


def pooled_effect(name: str, raw: str, scale_name: str, scale, group: str, n: int, k: int | None, *,
                  centered: bool = True, frame=None):
    """A partially pooled effect, non-centred: ``name = scale * (z - mean z)`` (``centered``) or ``scale * z``,
    with ``raw`` = z ~ Normal(0, I) over the plate ``group`` (n members) and, with ``k``, the skills.

    The raw site declares what it is a coordinate of (``infer``: the effect, its scale and its group), so a
    new member of the group (a never-seen family, a new model) is drawn from the population the same way
    everywhere: ``scale * z_new`` (:mod:`bayes_sloth.core.sites`). With ``frame = (m, r)`` the sampler moves v
    in ``z = m + r v`` (the prior of z and the Jacobian r are added: the same posterior, other coordinates;
    :func:`offset_frame`).
    """
    info = {"coordinate_of": name, "scale": scale_name, "group": group}
    inner = _plate("skill", k) if k is not None else contextlib.nullcontext()
    with _plate(group, n, -2 if k is not None else -1), inner:
        z = numpyro.sample(raw, dist.Normal(0.0, 1.0), infer=info)
        if frame is not None:
            m, r = frame
            v, z = z, m + r * z
            numpyro.factor(f"{raw}_frame", 0.5 * (v * v - z * z) + jnp.log(r))
        if centered:
            z = z - z.mean(axis=0)
        return numpyro.deterministic(name, scale * z)


def describe(spec: ModelSpec) -> str:
    """The law of ``spec`` in plain text, one line per equation: what the report shows.

    Generated from the spec (not copied from the docstring above), so a
    report always states the law that was fitted: each option adds or
    changes its own line.
    """
    link = spec.link_.symbol
    lines = [
        "x_i      = standardized (log S_i, log T_i, (log S_i - m_S)(log T_i - m_T))   S params (B), T tokens (T)",
        "theta_i  = alpha_f(i) + B' x_i" + (" + delta instruct_i" if spec.instruct_shift else "")
        + (" + delta_S instruct_i x_i,logS" if spec.instruct_slope else "")
        + (" + gamma_f(i) x_i,logS" if spec.family_slopes else "") + f"   {spec.n_skills} latent skill(s)",
        "alpha_f  = tau (z_f - mean z),  z_f ~ Normal(0, I)          family efficiency, partially pooled",
    ]
    if spec.family_slopes:
        lines.append("gamma_f  = omega (u_f - mean u),  u_f ~ Normal(0, I)        family slope in log S, partially pooled")
    if spec.model_effects:
        lines.append("e_i      = s v_i,  v_i ~ Normal(0, 1)                      the model's own offset, partially pooled")
    lines.append(f"m_ij     = c_j + (1 - c_j) {link}(lambda_j' theta_i + b_j" + (" + e_i" if spec.model_effects else "")
                 + ")   c_j chance floor")
    lines += spec.link_.describe()
    if spec.n_latent_tokens:
        lines.append(f"x_i,T    = a + b x_i,S + s e_i,  e_i ~ Normal(0, 1)   latent for the {spec.n_latent_tokens} "
                     "model(s) without tokens; a, b ~ Normal(0, 1), s ~ HalfNormal(1)")
    lines.append("Lambda   : unit loading of skill k on its anchor, zero on later anchors, "
                 + ("others positive" if spec.loadings == "positive" else "others real"))
    noise = get_noise(spec.noise).__name__.removesuffix("01")
    lines.append(f"y_ij     ~ {noise}(m_ij, sigma_j) on [0, 1]             misfit per benchmark; missing scores left out")
    return "\n".join(lines)
