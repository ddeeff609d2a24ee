"""bayes_sloth: Bayesian skills scaling laws for LLM benchmarks.

A hierarchical Bayesian version of the Sloth skills law (Maia Polo et al.,
arXiv:2412.06540) in NumPyro: forecasts of benchmark scores for new models and
for model families seen once or never, with posterior predictive intervals.

Importing the package changes nothing in the process (no JAX option, no
environment variable, no file) and imports nothing heavy: each name below
loads its module on first use. Call :func:`configure` first thing in a
session for parallel chains on the CPU's cores and a compile cache on disk.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError as _PNF
from importlib.metadata import version as _version

try:
    __version__ = _version("bayes_sloth")
except _PNF:  # running from a source tree without installation
    __version__ = "0.1.0"

#: Public name -> the module that defines it (loaded on first access, PEP 562).
_EXPORTS = {
    "configure": "config",
    "Leaderboard": "data",
    "load_leaderboard": "data",
    "load_protocol": "data",
    "load_sloth": "data",
    "paper_errors": "data",
    "sloth_data_path": "data",
    "split_family": "data",
    "Diagnostics": "diagnostics",
    "diagnose": "diagnostics",
    "BayesSlothError": "errors",
    "DataUnavailableError": "errors",
    "FitFileError": "errors",
    "InputError": "errors",
    "OutputError": "errors",
    "SkillsLaw": "estimator",
    "forecasts_to_latex": "export",
    "wide_forecasts": "export",
    "write_forecasts": "export",
    "read_new_models": "estimator",
    "BENCHMARK_SETS": "metadata",
    "CHANCE_FLOOR": "metadata",
    "forecast_table": "prediction",
    "interval": "prediction",
    "simulate_leaderboard": "simulation",
    "StackedLaw": "stacking",
    "stack": "stacking",
}
_SUBMODULES = ("cli", "conditional", "config", "data", "diagnostics", "errors", "estimator", "evaluation", "export",
               "inference", "io", "metadata", "model", "plots", "prediction", "progress", "questions", "report",
               "rotation", "simulation", "stacking", "sweeps")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bayes_sloth' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
