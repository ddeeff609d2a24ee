r"""Posterior predictive forecasts for new models, seen or unseen families.

For each posterior draw s and each new model i with covariates x_i:

- family seen in the fit: alpha_f(i) is that family's draw alpha_f^(s);
- family never seen: alpha_new^(s) = tau^(s) * z^(s), z^(s) ~ Normal(0, I_K),
  one draw per new family shared by all of its models (so forecasts of two
  models of the same new family move together, as they should); with
  family-specific slopes, likewise gamma_new^(s) = omega^(s) * u^(s);
- with model effects, a model that was in the fit keeps its posterior
  offset e_i^(s); any other model draws e^(s) = s^(s) * v, v ~ Normal(0, 1);

then ``mu`` = m_ij^(s) (the law's mean score) and ``score`` ~ the noise model
around it (TruncatedNormal on [0, 1] by default). Results are labelled
xarray objects with dims (chain, draw, model, benchmark).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .inference import real_dtype
from .model import ModelSpec, pair_dist


def forecast_draws(
    spec: ModelSpec,
    posterior: xr.Dataset,
    x: np.ndarray,
    family_index: np.ndarray,
    new_family_index: np.ndarray,
    instruct: np.ndarray,
    floor: np.ndarray,
    seed: int,
    model_index: np.ndarray | None = None,
):
    """Draws of the mean law and of predicted scores for new rows.

    ``family_index[i]`` is the fitted family of row i, or -1 if unseen, in
    which case ``new_family_index[i]`` (0..n_new-1) groups rows of one new
    family. ``model_index[i]`` is the row's index among the fitted models, or
    -1 for a new model (used only with model effects). Returns numpy arrays
    ``(mu, score, theta)`` of shape (chain, draw, N, J) and (chain, draw, N, K).
    """
    C, S = posterior.sizes["chain"], posterior.sizes["draw"]
    K, J = spec.n_skills, spec.n_benchmarks
    N = len(x)
    flat = {
        name: jnp.asarray(posterior[name].values.reshape((C * S,) + posterior[name].shape[2:]))
        for name in ("alpha", "slopes", "loadings", "intercept", "sigma", "tau", "instruct_shift",
                     "family_slope", "family_slope_sd", "model_effect", "model_sd", "link_weights")
        if name in posterior
    }
    n_new = int(new_family_index.max()) + 1 if (family_index < 0).any() else 0
    F = flat["alpha"].shape[1]
    fam = np.where(family_index >= 0, family_index, F + np.maximum(new_family_index, 0)).astype(np.int32)
    om, ob = np.divmod(np.arange(N * J), J)
    real = real_dtype()
    midx = np.full(N, -1) if model_index is None else np.asarray(model_index)
    mu, score, theta = _forecast(
        spec, max(n_new, 1), flat, jnp.asarray(x, real), jnp.asarray(fam), jnp.asarray(instruct, real),
        jnp.asarray(floor, real), jnp.asarray(om), jnp.asarray(ob), jax.random.PRNGKey(seed),
        jnp.asarray(midx.astype(np.int32)),
    )
    shape = (C, S, N, J)
    return (
        np.asarray(mu).reshape(shape),
        np.asarray(score).reshape(shape),
        np.asarray(theta).reshape(C, S, N, K),
    )


@partial(jax.jit, static_argnums=(0, 1))
def _forecast(spec, n_new, flat, x, fam, instruct, floor, om, ob, key, midx):
    """Compiled core of :func:`forecast_draws` (one program per structure and shapes)."""
    key_alpha, key_y, key_slope, key_model = jax.random.split(key, 4)
    K = spec.n_skills
    # alpha for the fitted families, then one population draw per new family
    z_new = jax.random.normal(key_alpha, (flat["alpha"].shape[0], n_new, K), dtype=flat["alpha"].dtype)
    alpha_all = jnp.concatenate([flat["alpha"], flat["tau"][:, None, :] * z_new], axis=1)
    params = dict(flat, alpha=alpha_all)
    if spec.family_slopes:
        u_new = jax.random.normal(key_slope, z_new.shape, dtype=z_new.dtype)
        params["family_slope"] = jnp.concatenate(
            [flat["family_slope"], flat["family_slope_sd"][:, None, :] * u_new], axis=1)
    if spec.model_effects:
        fresh = flat["model_sd"][:, None] * jax.random.normal(
            key_model, (flat["model_sd"].shape[0], x.shape[0]), dtype=z_new.dtype)
        fitted = jnp.take(flat["model_effect"], jnp.maximum(midx, 0), axis=1)
        params["model_effect"] = jnp.where((midx >= 0)[None, :], fitted, fresh)
    d, mu, theta = pair_dist(spec, params, x, fam, instruct, floor, om, ob)
    return mu, d.sample(key_y), theta


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
