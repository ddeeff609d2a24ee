"""The variational fit (mean-field AutoNormal, Adam): chain starts for NUTS, and ``method="svi"``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_uniform

from .idata import constrain_draws
from .model import ModelSpec, skills_law
from .programs import bounded_jit, cached

SVI_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()


def _svi_program(spec: ModelSpec, steps: int, lr: float):
    return cached(SVI_CACHE, (spec, steps, lr), lambda: _build_svi_program(spec, steps, lr))


class _OrderedTraceELBO:
    """NumPyro's single-particle ``Trace_ELBO``, with the sites summed in name order.

    ``Trace_ELBO`` sums the sites of ``set(model) | set(guide)``, whose order
    follows Python's per-process string hashing, so every new process traced
    a differently ordered program: XLA's on-disk cache never hit and each
    ``bayes-sloth`` command compiled the variational fit again (3 s of a
    fit). The same estimator, the same random streams, a fixed order.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        from numpyro.handlers import replay, seed
        from numpyro.infer.util import compute_log_probs

        model_seed, guide_seed = jax.random.split(rng_key)
        guide_lp, guide_trace = compute_log_probs(seed(guide, guide_seed), args, kwargs, param_map)
        model_lp, _ = compute_log_probs(replay(seed(model, model_seed), guide_trace), args, kwargs, param_map)
        zero = jnp.array(0.0)
        elbo = sum((model_lp.get(n, zero) - guide_lp.get(n, zero) for n in sorted(set(model_lp) | set(guide_lp))),
                   start=zero)
        return {"loss": -elbo, "mutable_state": None}

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        return self.loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)["loss"]


def _build_svi_program(spec: ModelSpec, steps: int, lr: float):
    """Jitted variational fit for this structure, compiled once and reused."""
    return bounded_jit(svi_run(spec, steps, lr), keep=1)


def svi_run(spec: ModelSpec, steps: int, lr: float):
    """The variational fit as a pure function ``(rng_key, data) -> (params, losses)``.

    The guide is built inside the trace, so nothing of the model runs eagerly
    (an eager trace compiles hundreds of one-op programs).
    """
    from numpyro.infer import SVI
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import Adam

    model = partial(skills_law, spec)

    def run(rng_key, data):
        guide = AutoNormal(model, init_loc_fn=init_to_uniform(radius=0.5), init_scale=0.05)
        svi = SVI(model, guide, Adam(lr), _OrderedTraceELBO())
        state = svi.init(rng_key, **data)

        def body(state, _):
            state, loss = svi.update(state, **data)
            return state, loss

        state, losses = jax.lax.scan(body, state, None, length=steps)
        return svi.get_params(state), losses

    return run


def fit_svi(spec: ModelSpec, data: dict, *, steps: int = 2000, seed: int = 0, lr: float = 0.02):
    """Mean-field Gaussian variational fit (AutoNormal, Adam) of the skills law.

    Returns ``(params, losses)``: the guide's ``{site}_auto_loc`` and
    ``{site}_auto_scale`` in unconstrained space, and the ELBO loss per step.
    Fast (seconds) but approximate: it underestimates posterior spread and
    gives no convergence diagnostics, so the package uses it to start NUTS
    near the posterior's bulk and, for leaderboards too large for NUTS, on its
    own with a warning.
    """
    params, losses = _svi_program(spec, steps, lr)(jax.random.PRNGKey(seed), data)
    return params, np.asarray(losses)


INIT_SPREAD = 2.0


def svi_init_params(params, n_chains: int, seed: int, spread: float = INIT_SPREAD) -> dict:
    """Starting points for the chains: independent draws from the variational
    approximation with its scales inflated by ``spread`` (overdispersed
    relative to it), in NUTS's unconstrained space."""
    key = jax.random.PRNGKey(seed)
    out = {}
    for i, name in enumerate(sorted(k[: -len("_auto_loc")] for k in params if k.endswith("_auto_loc"))):
        loc, scale = params[f"{name}_auto_loc"], params[f"{name}_auto_scale"]
        eps = jax.random.normal(jax.random.fold_in(key, i), (n_chains,) + loc.shape, dtype=loc.dtype)
        out[name] = loc + spread * scale * eps
    return out


def svi_variances(params) -> jnp.ndarray:
    """The variational fit's variances in the unconstrained space, flattened
    like ``ravel_pytree`` flattens the sampler's state (sites by sorted name):
    the starting diagonal of NUTS's inverse mass matrix."""
    names = sorted(k[: -len("_auto_scale")] for k in params if k.endswith("_auto_scale"))
    return jnp.concatenate([jnp.ravel(params[f"{n}_auto_scale"]) ** 2 for n in names])


def run_svi(spec: ModelSpec, data: dict, cfg, seed: int):
    """Variational fit, then ``cfg.draws`` draws from the approximation as one
    pseudo-chain (same layout as :func:`run_nuts`; the sampler statistics are
    empty: there is no sampler to diagnose)."""
    t0 = time.perf_counter()
    params, _ = fit_svi(spec, data, steps=max(cfg.svi_steps, 5000), seed=seed)
    z = svi_init_params(params, 1000 if cfg.auto else int(cfg.draws), seed + 1, spread=1.0)
    samples = constrain_draws(spec, z, data)
    samples = {k: np.asarray(v)[None] for k, v in samples.items() if k != "y"}
    return samples, {}, time.perf_counter() - t0
