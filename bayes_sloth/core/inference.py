"""Deprecated: the sampler, the variational fit and the InferenceData now have a module each.

:mod:`bayes_sloth.core.sampler` (NUTS), :mod:`bayes_sloth.core.variational`
(the variational fit) and :mod:`bayes_sloth.core.idata` (a fit's labelled
InferenceData). Names read from here still work, with a DeprecationWarning.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED = {
    "sampler": ("default_chain_method", "SamplerConfig", "get_sampler", "run_nuts", "run_nuts_masks", "PIECES"),
    "variational": ("fit_svi", "svi_init_params", "svi_variances", "run_svi", "INIT_SPREAD"),
    "idata": ("complete_posterior", "model_site_shapes", "real_dtype", "model_arrays", "leaderboard_arrays",
              "group_attrs", "posterior_dataset", "sample_stats_dataset", "constant_dataset", "observation_groups",
              "to_inference_data", "latent_models"),
}
_WHERE = {name: module for module, names in _MOVED.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        module = f"bayes_sloth.core.{_WHERE[name]}"
        warnings.warn(f"bayes_sloth.inference.{name} moved to {module}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
