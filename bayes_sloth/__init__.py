"""bayes_sloth: Bayesian skills scaling laws for LLM benchmarks.

A hierarchical Bayesian version of the Sloth skills law (Maia Polo et al.,
arXiv:2412.06540) in NumPyro: forecasts of benchmark scores for new models and
for model families seen once or never, with posterior predictive intervals.
"""

from __future__ import annotations

import os as _os
import sys as _sys


def _ask_for_cpu_devices() -> None:
    """Give XLA one host device per core so chains can run in parallel.

    Only possible before JAX starts its backend; a user who set
    ``--xla_force_host_platform_device_count`` keeps their setting.
    """
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    jax_mod = _sys.modules.get("jax")
    if jax_mod is not None:
        try:
            from jax._src import xla_bridge

            if xla_bridge._backends:  # backend already initialised: too late
                return
        except Exception:
            return
    n = _os.cpu_count() or 1
    _os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()


_ask_for_cpu_devices()


def _use_compilation_cache() -> None:
    """Keep XLA's compiled programs on disk so a new process (each
    ``bayes-sloth`` command, each notebook kernel) does not compile the
    sampler again: ``$BAYES_SLOTH_XLA_CACHE`` names the folder (default: the
    user cache, ``~/.cache/bayes_sloth/xla`` on Linux), ``0`` turns it off.
    A cache folder the user gave JAX already (``JAX_COMPILATION_CACHE_DIR``
    or ``jax.config``) is left alone.
    """
    import jax

    setting = _os.environ.get("BAYES_SLOTH_XLA_CACHE", "")
    if setting.lower() in ("0", "off", "false", "no") or jax.config.jax_compilation_cache_dir:
        return
    if not setting:
        import pooch

        setting = str(pooch.os_cache("bayes_sloth") / "xla")
    try:
        _os.makedirs(setting, exist_ok=True)
    except OSError:  # read-only home: compile in memory only
        return
    jax.config.update("jax_compilation_cache_dir", setting)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the small programs too (log-likelihood, forecasts)


_use_compilation_cache()

import warnings as _warnings  # noqa: E402

with _warnings.catch_warnings():
    _warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
    import arviz as _az  # noqa: F401,E402

from importlib.metadata import PackageNotFoundError as _PNF  # noqa: E402
from importlib.metadata import version as _version  # noqa: E402

try:
    __version__ = _version("bayes_sloth")
except _PNF:  # running from a source tree without installation
    __version__ = "0.1.0"

from .data import Leaderboard, load_leaderboard, load_sloth, sloth_data_path  # noqa: E402
from .diagnostics import Diagnostics, diagnose  # noqa: E402
from .errors import BayesSlothError, DataUnavailableError, FitFileError, InputError  # noqa: E402
from .estimator import SkillsLaw  # noqa: E402
from .metadata import BENCHMARK_SETS, CHANCE_FLOOR  # noqa: E402
from .prediction import forecast_table, interval  # noqa: E402
from .simulation import simulate_leaderboard  # noqa: E402

__all__ = [
    "BENCHMARK_SETS",
    "CHANCE_FLOOR",
    "BayesSlothError",
    "DataUnavailableError",
    "Diagnostics",
    "FitFileError",
    "InputError",
    "Leaderboard",
    "SkillsLaw",
    "diagnose",
    "forecast_table",
    "interval",
    "load_leaderboard",
    "load_sloth",
    "simulate_leaderboard",
    "sloth_data_path",
]
