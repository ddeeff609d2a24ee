"""bayes_sloth: Bayesian skills scaling laws for LLM benchmarks.

A hierarchical Bayesian version of the Sloth skills law (Maia Polo et al.,
arXiv:2412.06540) in NumPyro: forecasts of benchmark scores for new models and
for model families seen once or never, with posterior predictive intervals.

Importing the package changes nothing in the process (no JAX option, no
environment variable, no file). Call :func:`configure` first thing in a
session for parallel chains on the CPU's cores and a compile cache on disk.
"""

from __future__ import annotations

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

from .config import configure  # noqa: E402
from .data import (Leaderboard, load_leaderboard, load_protocol, load_sloth, paper_errors,  # noqa: E402
                   sloth_data_path, split_family)
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
    "configure",
    "SkillsLaw",
    "diagnose",
    "forecast_table",
    "interval",
    "load_leaderboard",
    "load_protocol",
    "load_sloth",
    "paper_errors",
    "simulate_leaderboard",
    "sloth_data_path",
    "split_family",
]
