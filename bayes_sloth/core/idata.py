"""A fit's labelled InferenceData, built from its sampled sites.

The deterministic sites (family efficiencies, loadings, offsets, skills), the
pointwise log-likelihood and the replicated scores are computed from the
sampled sites by :func:`complete_posterior` and :func:`observation_groups`, at
fit time and again when a saved fit (which stores the sampled sites only) is
loaded, so both give the same numbers bit for bit. Dims come from the model's
plates (:mod:`bayes_sloth.core.sites`).
"""

from __future__ import annotations

import warnings
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from .diagnostics import CHECKED_ATTR
from .model import COVARIATES, LINK_KNOTS, ModelSpec, fitted_covariates, pair_dist, skills_law, standardization_array
from .programs import bounded_jit
from .sites import checked, posterior_dims


@bounded_jit(static_argnums=0)
def constrain_draws(spec: ModelSpec, z: dict, data: dict) -> dict:
    """Unconstrained draws (leading draw axis) -> the sampled sites on their own scale."""
    from numpyro.infer.util import constrain_fn

    model = partial(skills_law, spec)
    return jax.vmap(lambda zi: constrain_fn(model, (), data, zi, return_deterministic=False))(z)


@bounded_jit(static_argnums=0)
def _deterministic_sites(spec: ModelSpec, sampled: dict, data: dict) -> dict:
    """The model's deterministic sites for each draw of the sampled sites (leading draw axis), by
    running the model itself with the sampled values substituted: the law is written once."""
    from numpyro import handlers

    model = partial(skills_law, spec)

    def one(values):
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=values)).get_trace(**data)
        return {k: site["value"] for k, site in tr.items() if site["type"] == "deterministic"}

    return jax.vmap(one)(sampled)


def complete_posterior(spec: ModelSpec, sampled: dict, data: dict) -> dict:
    """Sampled sites (chain, draw, ...) -> every site of the posterior, deterministic ones added
    (family efficiencies, loadings, offsets, skills). The same computation at fit time and on load."""
    C, S = next(iter(sampled.values())).shape[:2]
    flat = {k: jnp.asarray(np.asarray(v).reshape((C * S,) + np.shape(v)[2:])) for k, v in sampled.items()}
    det = jax.device_get(_deterministic_sites(spec, flat, data))
    out = {k: np.asarray(v) for k, v in sampled.items()}
    out.update({k: np.asarray(v).reshape((C, S) + np.shape(v)[1:]) for k, v in det.items()})
    return out


def model_site_shapes(spec: ModelSpec, data: dict) -> tuple[dict, dict]:
    """Shapes of the law's sites for ``data``, read off the model itself (an abstract trace: nothing is
    computed or compiled): ``(sampled, deterministic)``, each a dict name -> shape of one draw. ``sampled``
    holds the latent sample sites (what a fit samples and a fit file stores), not the observed scores."""
    from numpyro import handlers

    model = partial(skills_law, spec)
    kinds = {}

    def trace(key):
        tr = handlers.trace(handlers.seed(model, rng_seed=key)).get_trace(**data)
        keep = {k: s for k, s in tr.items() if (s["type"] == "sample" and not s["is_observed"])
                or s["type"] == "deterministic"}
        kinds.update({k: s["type"] for k, s in keep.items()})
        return {k: s["value"] for k, s in keep.items()}

    shapes = jax.eval_shape(trace, jax.random.PRNGKey(0))
    sampled = {k: tuple(v.shape) for k, v in shapes.items() if kinds[k] == "sample"}
    deterministic = {k: tuple(v.shape) for k, v in shapes.items() if kinds[k] == "deterministic"}
    return sampled, deterministic


def real_dtype():
    """float32 by default; float64 when JAX's 64-bit mode is on
    (``jax.config.update("jax_enable_x64", True)`` before fitting)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def model_arrays(x, family, instruct, floor, obs_model, obs_bench, y, obs_weight=None, *,
                 standardization=None) -> dict:
    """Model arguments as JAX arrays of fixed dtypes (same dtypes -> same compiled code).

    Rows of ``x`` with a non-finite token column (a model without a token
    count) get latent tokens: their index is ``latent_tokens``, their token
    columns hold 0 (a placeholder the model never reads), and
    ``standardization`` (:func:`bayes_sloth.core.model.standardization_array`) is
    then required. Without such rows the arguments are exactly those of a law
    without latent tokens.
    """
    real = real_dtype()
    x = np.array(x, dtype=float)
    latent = np.flatnonzero(~np.isfinite(x[:, 1:]).all(axis=1)) if x.ndim == 2 and len(x) else np.zeros(0, int)
    extra = {}
    if len(latent):
        if standardization is None:
            raise ValueError("rows without tokens need the standardization (model_arrays(standardization=...))")
        x[latent, 1:] = 0.0
        extra = dict(latent_tokens=jnp.asarray(latent, dtype=jnp.int32),
                     standardization=jnp.asarray(standardization, dtype=real))
    out = dict(
        x=jnp.asarray(x, dtype=real),
        family=jnp.asarray(family, dtype=jnp.int32),
        instruct=jnp.asarray(instruct, dtype=real),
        floor=jnp.asarray(floor, dtype=real),
        obs_model=jnp.asarray(obs_model, dtype=jnp.int32),
        obs_bench=jnp.asarray(obs_bench, dtype=jnp.int32),
        y=jnp.asarray(y, dtype=real),
    )
    out["obs_weight"] = jnp.ones(out["y"].shape, dtype=bool) if obs_weight is None else jnp.asarray(obs_weight, dtype=bool)
    out.update(extra)
    return out


def leaderboard_arrays(lb, standardizer, families, obs_weight=None) -> dict:
    """The model's array arguments for a leaderboard: standardized covariates,
    family indices (into ``families``), instruct flags, floors and the
    observed (model, benchmark) pairs in ``lb.long()`` order."""
    long = lb.long()
    cov = lb.covariates
    return model_arrays(
        x=standardizer.transform(cov["params"], cov["tokens"]),
        family=pd.Index(families).get_indexer(cov["family"]),
        instruct=cov["instruct"].to_numpy(dtype=float),
        floor=lb.floors.to_numpy(),
        obs_model=pd.Index(lb.models).get_indexer(long["model"]),
        obs_bench=pd.Index(lb.benchmarks).get_indexer(long["benchmark"]),
        y=long["score"].to_numpy(),
        obs_weight=obs_weight,
        standardization=standardization_array(standardizer),
    )


def group_attrs() -> dict:
    """Provenance attributes of every group, as ArviZ's converters write them."""
    import datetime

    import numpyro

    return {"created_at": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(),
            "arviz_version": az.__version__, "inference_library": "numpyro",
            "inference_library_version": numpyro.__version__}


def posterior_dataset(spec: ModelSpec, sites: dict, *, models, families, benchmarks, latent_models=()):
    """Labelled posterior (chain, draw, ...) of every site the posterior holds, dims from the model's plates
    (:func:`~bayes_sloth.core.sites.posterior_dims`); the ``skill`` coordinate names each skill's anchor,
    ``latent_model`` the models with latent tokens. The attribute ``checked_sites`` lists the sites whose
    R-hat and ESS decide convergence (:func:`~bayes_sloth.core.diagnostics.diagnose` reads it)."""
    C, S = next(iter(sites.values())).shape[:2]
    coords = {
        "chain": np.arange(C), "draw": np.arange(S),
        "skill": [str(benchmarks[a]) for a in spec.anchors],
        "family": list(families), "benchmark": list(benchmarks), "model": list(models),
        "covariate": list(COVARIATES), "loading_free": np.arange(len(spec.free_loading_index)),
        "link_knot": LINK_KNOTS, "latent_model": list(latent_models), "token_term": ["intercept", "log_params"],
    }
    # the full loading matrix is not in it: its anchor entries are constants (1 and 0), on which R-hat and ESS
    # are undefined (az.summary warns); the free ones are ``loadings_free``, the matrix is SkillsLaw.loadings_
    dims = posterior_dims(spec)
    ds = xr.Dataset({name: (["chain", "draw", *dims[name]], np.asarray(v)) for name, v in sites.items()
                     if name in dims})
    ds = ds.assign_coords({k: coords[k] for k in ds.dims if k in coords})
    ds.attrs[CHECKED_ATTR] = [n for n in checked(spec) if n in ds]
    return ds


def sample_stats_dataset(extra: dict):
    """NUTS statistics over (chain, draw) with ArviZ's names, and each chain's warm-up cost."""
    n_steps = np.asarray(extra["num_steps"])
    C, S = n_steps.shape
    return xr.Dataset(
        {
            "lp": (["chain", "draw"], np.asarray(extra["lp"])),
            "acceptance_rate": (["chain", "draw"], np.asarray(extra["acceptance_rate"])),
            "step_size": (["chain", "draw"], np.asarray(extra["step_size"])),
            "diverging": (["chain", "draw"], np.asarray(extra["diverging"])),
            "energy": (["chain", "draw"], np.asarray(extra["energy"])),
            "n_steps": (["chain", "draw"], n_steps),
            "tree_depth": (["chain", "draw"], np.floor(np.log2(n_steps + 1)).astype(np.int64)),
            # leapfrog steps of each chain's warm-up, all iterations together (the cost the draws do not show)
            "warmup_n_steps": (["chain"], np.asarray(extra["warmup_steps"]).astype(np.int64)),
        },
        coords={"chain": np.arange(C), "draw": np.arange(S)},
    )


def constant_dataset(data: dict, *, models, benchmarks):
    """The model's array arguments, labelled: enough to rebuild ``data`` (with the scores) on load."""
    return xr.Dataset(
        {
            "x": (["model", "covariate"], np.asarray(data["x"])),
            "family_index": (["model"], np.asarray(data["family"])),
            "instruct": (["model"], np.asarray(data["instruct"])),
            "floor": (["benchmark"], np.asarray(data["floor"])),
            "obs_model_index": (["pair"], np.asarray(data["obs_model"])),
            "obs_benchmark_index": (["pair"], np.asarray(data["obs_bench"])),
            "obs_weight": (["pair"], np.asarray(data["obs_weight"])),
        },
        coords={"model": list(models), "covariate": list(COVARIATES), "benchmark": list(benchmarks),
                "pair": np.arange(int(np.shape(data["y"])[0]))},
    )


def observation_groups(spec: ModelSpec, sites: dict, data: dict, seed: int, *, models, benchmarks,
                       posterior_predictive: bool = True) -> dict:
    """``observed_data``, ``log_likelihood`` and ``posterior_predictive`` over the fitted pairs.

    Pairs masked out of the likelihood (``obs_weight`` False: a
    cross-validation fold's held-out scores) are in none of them, so
    ``az.loo`` and posterior predictive checks see exactly what was fitted;
    the ``obs`` coordinate keeps each pair's index among all pairs. The
    replicated scores use the key ``PRNGKey(seed + 1)``.
    """
    C, S = next(iter(sites.values())).shape[:2]
    flat = {k: jnp.asarray(v.reshape((C * S,) + v.shape[2:])) for k, v in sites.items()}
    keep = np.flatnonzero(np.asarray(data["obs_weight"]))
    om, ob = np.asarray(data["obs_model"])[keep], np.asarray(data["obs_bench"])[keep]
    coords = {"obs": keep, "obs_model": ("obs", np.asarray(models)[om]),
              "obs_benchmark": ("obs", np.asarray(benchmarks)[ob])}

    def per_draw(v):
        return xr.Dataset({"y": (["chain", "draw", "obs"], np.asarray(v).reshape(C, S, -1)[..., keep])},
                          coords={"chain": np.arange(C), "draw": np.arange(S)}).assign_coords(coords)

    out = {
        "observed_data": xr.Dataset({"y": (["obs"], np.asarray(data["y"])[keep])}, coords=coords),
        "log_likelihood": per_draw(_pointwise_loglik(spec, flat, data)),
    }
    if posterior_predictive:
        out["posterior_predictive"] = per_draw(_replicate(spec, flat, data, jax.random.PRNGKey(seed + 1)))
    return out


def to_inference_data(
    samples: dict,
    extra: dict,
    spec: ModelSpec,
    data: dict,
    *,
    models,
    families,
    benchmarks,
    seed: int,
    posterior_predictive: bool = True,
) -> az.InferenceData:
    """Labelled InferenceData from the sampled sites: posterior (deterministic sites added by
    :func:`complete_posterior`), sample_stats, log_likelihood, observed_data, posterior_predictive
    (replicated fitted scores) and constant_data."""
    sites = complete_posterior(spec, samples, data)
    groups = {"posterior": posterior_dataset(spec, sites, models=models, families=families, benchmarks=benchmarks,
                                             latent_models=latent_models(data, models))}
    if extra:
        groups["sample_stats"] = sample_stats_dataset(extra)
    groups.update(observation_groups(spec, sites, data, seed, models=models, benchmarks=benchmarks,
                                     posterior_predictive=posterior_predictive))
    groups["constant_data"] = constant_dataset(data, models=models, benchmarks=benchmarks)
    attrs = group_attrs()
    for ds in groups.values():
        ds.attrs.update(attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups)


def latent_models(data: dict, models) -> list:
    """Names of the models with latent tokens (``data["latent_tokens"]``), in their order."""
    return [models[i] for i in np.asarray(data.get("latent_tokens", np.zeros(0, int)))]


def _obs_dist(spec: ModelSpec, params: dict, data: dict):
    x = fitted_covariates(spec, params, data["x"], data.get("latent_tokens"), data.get("standardization"))
    d, _, _ = pair_dist(spec, params, x, data["family"], data["instruct"], data["floor"],
                        data["obs_model"], data["obs_bench"])
    return d


@bounded_jit(static_argnums=0)
def _pointwise_loglik(spec, params, data):
    return _obs_dist(spec, params, data).log_prob(data["y"])


@bounded_jit(static_argnums=0)
def _replicate(spec, params, data, key):
    return _obs_dist(spec, params, data).sample(key)
