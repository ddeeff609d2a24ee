r"""Posterior predictive forecasts for new models, seen or unseen families.

For each posterior draw s and each new model i with covariates x_i:

- family seen in the fit: alpha_f(i) is that family's draw alpha_f^(s);
- family never seen: alpha_new^(s) = tau^(s) * z^(s), z^(s) ~ Normal(0, I_K),
  one draw per new family shared by all of its models (so forecasts of two
  models of the same new family move together, as they should); with
  family-specific slopes, likewise gamma_new^(s) = omega^(s) * u^(s);
- with model effects, a model that was in the fit keeps its posterior
  offset e_i^(s); any other model draws e^(s) = s^(s) * v, v ~ Normal(0, 1);
- a model without a token count: a fitted one keeps its posterior latent
  tokens; any other draws its standardized log tokens from the token
  regression, x_T^(s) = a^(s) + b^(s) x_S + s_T^(s) e, e ~ Normal(0, 1)
  (:meth:`SkillsLaw._row_covariates`), so x_i has one value per draw;

then ``mu`` = m_ij^(s) (the law's mean score) and ``score`` ~ the noise model
around it (TruncatedNormal on [0, 1] by default), all through
:func:`bayes_sloth.core.model.pair_dist` and :func:`~bayes_sloth.core.model.noise_dist`,
the law's own code.

The random numbers of a never-seen family come from a stream keyed by the
family's name, and those of a row (its fresh offset, its noise) from a
stream keyed by the row's name: a forecast depends on the fit, the row and
the seed, not on which other rows are asked for at the same time. So a
scaling curve and a forecast table of the same never-seen family, made in
separate calls with the same seed, use the same family draws.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .idata import real_dtype
from .model import ModelSpec, assemble_loadings, noise_dist, pair_dist
from .programs import bounded_jit
from .sites import law_parameters, pooled

#: Random streams of a forecast (``jax.random.split(key, 4)``): the noise of the scores, and each pooled
#: effect's new members by the effect's name (an effect not listed takes a stream keyed by its name).
_Y_STREAM = 1
_EFFECT_STREAMS = {"alpha": 0, "family_slope": 2, "model_effect": 3}


def flat_posterior(spec: ModelSpec, posterior: xr.Dataset) -> dict:
    """The sites a forecast reads (:func:`~bayes_sloth.core.sites.law_parameters`) with one leading draw axis
    (chain x draw), and the loading matrix assembled from its free entries."""
    C, S = posterior.sizes["chain"], posterior.sizes["draw"]
    flat = {name: jnp.asarray(posterior[name].values.reshape((C * S,) + posterior[name].shape[2:]))
            for name in law_parameters(spec) if name in posterior}
    flat["loadings"] = assemble_loadings(spec, jnp.asarray(posterior["loadings_free"].values.reshape(C * S, -1)))
    return flat


def effect_stream(keys, name: str):
    """The key of the stream a pooled effect's new members are drawn from."""
    if name in _EFFECT_STREAMS:
        return keys[_EFFECT_STREAMS[name]]
    return jax.random.fold_in(keys[0], stream_code(name))


def member_shape(flat: dict, site) -> tuple:
    """Shape of one member's effect (e.g. (K,) for a family efficiency, () for a model offset)."""
    return tuple(flat[site.scale].shape[1:])


def stream_code(name: str) -> int:
    """A stable 31-bit code of a name (CRC-32), used to key the random stream of a family or a row."""
    return zlib.crc32(str(name).encode("utf-8")) & 0x7FFFFFFF


def forecast_draws(
    spec: ModelSpec,
    posterior: xr.Dataset,
    x: np.ndarray,
    family_index: np.ndarray,
    new_family_codes: np.ndarray,
    instruct: np.ndarray,
    floor: np.ndarray,
    seed: int,
    row_codes: np.ndarray,
    model_index: np.ndarray | None = None,
):
    """Draws of the mean law and of predicted scores for rows at covariates ``x`` (standardized).

    ``family_index[i]`` is the fitted family of row i, or -1 if unseen, in
    which case ``new_family_codes[i]`` (see :func:`stream_code`) keys the
    random stream of its family's efficiency: rows with the same code share
    one draw. ``row_codes[i]`` keys the row's own stream (fresh offset,
    noise). ``model_index[i]`` is the row's index among the fitted models, or
    -1 for a new model (used only with model effects). ``x`` is (N, 3), or
    (chain x draw, N, 3) when rows have imputed tokens (one draw of their
    covariates per posterior draw). Returns numpy arrays
    ``(mu, score, theta)`` of shape (chain, draw, N, J) and (chain, draw, N, K).
    """
    C, S = posterior.sizes["chain"], posterior.sizes["draw"]
    K, J = spec.n_skills, spec.n_benchmarks
    N = np.shape(x)[-2]
    flat = flat_posterior(spec, posterior)
    F = flat["alpha"].shape[1]
    codes = pd.Index(pd.unique(np.asarray(new_family_codes)[np.asarray(family_index) < 0]))
    fam = np.where(family_index >= 0, family_index, F + np.maximum(codes.get_indexer(new_family_codes), 0))
    real = real_dtype()
    midx = np.full(N, -1) if model_index is None else np.asarray(model_index)
    mu, score, theta = _forecast(
        spec, flat, jnp.asarray(x, real), jnp.asarray(fam.astype(np.int32)), jnp.asarray(instruct, real),
        jnp.asarray(floor, real), jax.random.PRNGKey(seed), jnp.asarray(np.asarray(codes, dtype=np.int32)),
        jnp.asarray(np.asarray(row_codes, dtype=np.int32)), jnp.asarray(midx.astype(np.int32)),
    )
    return (np.asarray(mu).reshape(C, S, N, J), np.asarray(score).reshape(C, S, N, J),
            np.asarray(theta).reshape(C, S, N, K))


def _normals(key, codes, shape, dtype):
    """Standard normals (len(codes), *shape): code c's slice from the stream ``fold_in(key, c)``."""
    return jax.vmap(lambda c: jax.random.normal(jax.random.fold_in(key, c), shape, dtype))(codes)


@bounded_jit(static_argnums=0)
def _forecast(spec, flat, x, fam, instruct, floor, key, family_codes, row_codes, midx):
    """Compiled core of :func:`forecast_draws` (one program per structure and shapes)."""
    keys = jax.random.split(key, 4)
    key_y = keys[_Y_STREAM]
    D = flat["alpha"].shape[0]
    J = spec.n_benchmarks
    dtype = flat["alpha"].dtype
    params = dict(flat)
    # each family effect: the fitted families' draws, then one population draw per new family, keyed by its name
    for s in pooled(spec, "family"):
        z_new = jnp.moveaxis(_normals(effect_stream(keys, s.name), family_codes, (D,) + member_shape(flat, s),
                                      dtype), 0, 1)
        params[s.name] = jnp.concatenate([flat[s.name], jnp.expand_dims(flat[s.scale], 1) * z_new], axis=1)
    # each model effect: a fitted model keeps its draws, a new one draws from the population, keyed by its row
    for s in pooled(spec, "model"):
        fresh = jnp.expand_dims(flat[s.scale], 1) * jnp.moveaxis(
            _normals(effect_stream(keys, s.name), row_codes, (D,) + member_shape(flat, s), dtype), 0, 1)
        fitted = jnp.take(flat[s.name], jnp.maximum(midx, 0), axis=1)
        keep = (midx >= 0).reshape((1, -1) + (1,) * (fitted.ndim - 2))
        params[s.name] = jnp.where(keep, fitted, fresh)
    N = x.shape[-2]
    om, ob = jnp.divmod(jnp.arange(N * J), J)
    _, mu, theta = pair_dist(spec, params, x, fam, instruct, floor, om, ob)
    mu = mu.reshape(D, N, J)
    sigma = jnp.broadcast_to(flat["sigma"][:, None, :], mu.shape)

    def row_scores(code, m, s):  # one row's noise from its own stream
        return noise_dist(spec, m, s).sample(jax.random.fold_in(key_y, code))

    score = jax.vmap(row_scores, in_axes=(0, 1, 1), out_axes=1)(row_codes, mu, sigma)
    return mu, score, theta


def interval(draws: xr.DataArray | xr.Dataset, level: float = 0.9, dims=("chain", "draw")) -> xr.Dataset:
    """Central (equal-tailed) posterior interval at ``level``.

    Returns a Dataset with ``lower`` and ``upper`` (for a DataArray) over the
    remaining dims, e.g. (model, benchmark).
    """
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    if isinstance(draws, xr.Dataset):
        raise InputError("interval takes one DataArray, e.g. pred.predictions['score']")
    q = draws.quantile([(1 - level) / 2, (1 + level) / 2], dim=list(dims))
    return xr.Dataset({"lower": q.isel(quantile=0, drop=True), "upper": q.isel(quantile=1, drop=True)})


def forecast_table(predictions: xr.Dataset, level: float = 0.9, observed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy table of forecasts: model, family, benchmark, mean, median, lower, upper.

    ``predictions`` is the ``predictions`` group returned by
    :meth:`SkillsLaw.predict`; ``mean``/``median``/``lower``/``upper`` summarise
    the posterior predictive score (noise included); ``law_mean`` is the
    posterior mean of the law itself. If ``observed`` (models x benchmarks) is
    given, an ``observed`` column is added.
    """
    score = predictions["score"]
    iv = interval(score, level)
    tab = xr.Dataset(
        {
            "mean": score.mean(("chain", "draw")),
            "median": score.median(("chain", "draw")),
            "lower": iv["lower"],
            "upper": iv["upper"],
            "law_mean": predictions["mu"].mean(("chain", "draw")),
        }
    ).to_dataframe().reset_index()
    first = [c for c in ("model", "family", "seen_family", "benchmark") if c in tab.columns]
    tab = tab[first + [c for c in tab.columns if c not in first]]
    if observed is not None:
        obs = observed.stack(future_stack=True).rename("observed").rename_axis(["model", "benchmark"]).reset_index()
        tab = tab.merge(obs, on=["model", "benchmark"], how="left")
    tab["level"] = level
    return tab


def log_predictive_density(spec: ModelSpec, mu: xr.DataArray, sigma: xr.DataArray, observed,
                           sample_dims=("chain", "draw")) -> xr.DataArray:
    """Log posterior predictive density of observed scores: ``log (1/S) sum_s p(y | mu_s, sigma_s)``.

    ``p`` is the law's own noise distribution on [0, 1]
    (:func:`bayes_sloth.core.model.noise_dist`, the truncated Normal or logistic
    of ``spec``), at the draws s = 1..S of the law's mean ``mu`` (e.g.
    ``predictions["mu"]`` of :meth:`SkillsLaw.predict`, dims (chain, draw,
    model, benchmark)) and of the noise scale ``sigma`` (the posterior's
    ``sigma``, (chain, draw, benchmark)). ``observed`` holds the scores over
    the remaining dims (a DataArray, or an array in ``mu``'s order of them);
    a missing score gives NaN. The mean over draws is taken in float64
    (log-sum-exp), whatever JAX's precision. Returns a DataArray over the
    dims of ``mu`` other than ``sample_dims``.
    """
    sample_dims = list(sample_dims)
    rest = [d for d in mu.dims if d not in sample_dims]
    if not isinstance(observed, xr.DataArray):
        observed = xr.DataArray(np.asarray(observed, dtype=float), dims=rest,
                                coords={d: mu[d].values for d in rest if d in mu.coords})
    mu, sigma, y = xr.broadcast(mu, sigma, observed.astype(float))
    order = sample_dims + rest
    mu, sigma, y = (a.transpose(*order) for a in (mu, sigma, y))
    real = real_dtype()
    logp = noise_dist(spec, jnp.asarray(mu.values, real), jnp.asarray(sigma.values, real)).log_prob(
        jnp.asarray(np.nan_to_num(y.values, nan=0.5), real))
    logp = np.asarray(logp, dtype=np.float64).reshape((-1,) + mu.shape[len(sample_dims):])
    top = np.max(logp, axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    out = top + np.log(np.mean(np.exp(logp - top), axis=0))
    out = np.where(np.isnan(y.values.reshape(logp.shape)[0]), np.nan, out)
    return xr.DataArray(out, dims=rest, coords={d: mu[d].values for d in rest if d in mu.coords}, name="lpd")


#: What a forecast row is checked against the fitted models' range of: the two covariates, and their product
#: (compute, in B parameters x T tokens), which the law's interaction term extrapolates in even when each
#: covariate alone is inside its range (a 70 B model at 15 T tokens after 8 B at 15 T and 70 B at 2 T).
EXTRAPOLATION_CHECKS = (("params", "B parameters"), ("tokens", "T tokens"), ("compute", "B x T (params x tokens)"))


def outside_fitted_range(fitted: pd.DataFrame, params, tokens) -> dict:
    """Per check of :data:`EXTRAPOLATION_CHECKS`: (bool array, fitted min, fitted max) for rows with ``params``
    and ``tokens`` (arrays; a NaN token count, imputed, is not flagged on tokens or compute) against the
    models of ``fitted`` (a fit's covariates)."""
    fp, ft = (fitted[c].to_numpy(dtype=float) for c in ("params", "tokens"))
    p, t = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (params, tokens))
    out = {}
    for (col, _), fit_v, v in zip(EXTRAPOLATION_CHECKS, (fp, ft, fp * ft), (p, t, p * t)):
        lo, hi = float(np.nanmin(fit_v)), float(np.nanmax(fit_v))
        out[col] = ((v < lo) | (v > hi), lo, hi)
    return out
