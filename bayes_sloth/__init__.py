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
    "configure": "core.config",
    "Leaderboard": "core.data",
    "load_leaderboard": "core.data",
    "load_protocol": "core.data",
    "load_sloth": "core.data",
    "paper_errors": "core.data",
    "sloth_data_path": "core.data",
    "split_family": "core.data",
    "Diagnostics": "core.diagnostics",
    "diagnose": "core.diagnostics",
    "BayesSlothError": "core.errors",
    "DataUnavailableError": "core.errors",
    "FitFileError": "core.errors",
    "InputError": "core.errors",
    "OutputError": "core.errors",
    "SkillsLaw": "core.estimator",
    "forecasts_to_latex": "workflows.export",
    "wide_forecasts": "workflows.export",
    "write_forecasts": "workflows.export",
    "read_new_models": "core.data",
    "BENCHMARK_SETS": "core.metadata",
    "CHANCE_FLOOR": "core.metadata",
    "forecast_table": "core.prediction",
    "interval": "core.prediction",
    "simulate_leaderboard": "workflows.simulation",
    "StackedLaw": "workflows.stacking",
    "stack": "workflows.stacking",
}
#: Modules reachable as attributes of the package (``bs.plots``, ``from bayes_sloth import questions``): the
#: layers' folders, the command line, and each module by its short name, wherever its layer keeps it.
_SUBMODULES = {
    "core": "core", "workflows": "workflows", "cli": "cli",
    "config": "core.config", "data": "core.data", "diagnostics": "core.diagnostics", "errors": "core.errors",
    "estimator": "core.estimator", "inference": "core.inference", "io": "core.io", "metadata": "core.metadata",
    "model": "core.model", "prediction": "core.prediction", "progress": "core.progress",
    "programs": "core.programs", "rotation": "core.rotation", "conditioning": "core.conditioning",
    "conditional": "core.conditioning",
    "evaluation": "workflows.evaluation", "export": "workflows.export", "plots": "workflows.plots",
    "questions": "workflows.questions", "report": "workflows.report", "simulation": "workflows.simulation",
    "stacking": "workflows.stacking", "sweeps": "workflows.sweeps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _import_module(f".{_SUBMODULES[name]}", __name__)
    raise AttributeError(f"module 'bayes_sloth' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
