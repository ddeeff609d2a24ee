"""Shared fixtures of the test suite.

Only fixtures live here (no hooks, no autouse, no markers): any test module
can use them or define its own of the same name.

- ``real_data_dir``: folder holding ``sloth/data_v2.csv`` (``$BAYES_SLOTH_DATA_DIR``
  or ``../shared/data`` beside the repository); skips when absent.
- ``tiny_frame``: a small, valid leaderboard as a DataFrame (benchmarks with
  known chance floors, so loading it warns about nothing).
- ``tiny_fit``: one small fit of ``tiny_frame`` saved to a netCDF file, shared
  by the whole session (``(law, path)``); never modify either.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayes_sloth

# What a user does first thing in a session (importing the package changes nothing by itself):
# chains in parallel on the CPU's cores, compiled programs kept on disk across test runs.
bayes_sloth.configure()

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_SKIP = "real Sloth table not found: set BAYES_SLOTH_DATA_DIR or place ../shared beside the repo"

#: Benchmarks of the tiny tables: names with chance floors in the package metadata.
TINY_BENCHMARKS = ["MMLU", "ARC", "GSM8K", "Winogrande"]


def find_real_data_dir() -> Path | None:
    """``$BAYES_SLOTH_DATA_DIR`` or ``../shared/data`` if it holds the Sloth table, else None."""
    cands = []
    env = os.environ.get("BAYES_SLOTH_DATA_DIR")
    if env:
        cands.append(Path(env))
    cands.append(REPO_ROOT.parent / "shared" / "data")
    for folder in cands:
        if (folder / "sloth" / "data_v2.csv").is_file() or (folder / "data_v2.csv").is_file():
            return folder
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    folder = find_real_data_dir()
    if folder is None:
        pytest.skip(REAL_DATA_SKIP)
    return folder


def make_tiny_frame(n_families: int = 6, seed: int = 1):
    """A valid leaderboard DataFrame: columns model, family, params, tokens, instruct and 4 scores."""
    import bayes_sloth as bs
    from bayes_sloth.core.metadata import CHANCE_FLOOR

    floors = np.array([CHANCE_FLOOR[b] for b in TINY_BENCHMARKS])
    lb, _ = bs.simulate_leaderboard(n_families=n_families, n_benchmarks=len(TINY_BENCHMARKS), n_skills=1,
                                    models_per_family=(2, 3), missing=0.05, floors=floors, seed=seed)
    df = lb.to_frame().reset_index()
    return df.rename(columns=dict(zip(lb.benchmarks, TINY_BENCHMARKS)))


@pytest.fixture
def tiny_frame():
    return make_tiny_frame()


#: Sampler settings of the shared tiny fit: small, the point is the code path. target_accept is pinned at 0.9:
#: "auto" resolves to 0.99 on this 4-benchmark board, 2-3x the leapfrog steps, which buys reliability the tests
#: that use this fit do not measure (tests/test_sampler_defaults.py samples at "auto" itself).
TINY_FIT = dict(n_skills=1, chains=2, warmup=100, draws=100, seed=0, target_accept=0.9)


@pytest.fixture(scope="session")
def tiny_fit(tmp_path_factory):
    import bayes_sloth as bs

    law = bs.SkillsLaw(**TINY_FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.fit(make_tiny_frame())
    path = tmp_path_factory.mktemp("tiny_fit") / "tiny.nc"
    law.save(path)
    return law, path
