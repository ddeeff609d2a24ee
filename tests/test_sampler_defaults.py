"""target_accept="auto": a higher NUTS target on small leaderboards (NOTES.md, "Small leaderboards")."""

from __future__ import annotations

import numpy as np
import pytest

import bayes_sloth as bs
from bayes_sloth.cli import build_parser
from bayes_sloth.core.errors import InputError
from bayes_sloth.core.model import OFFSET_FRAME_MAX_BENCHMARKS
from bayes_sloth.core.options import AUTO_TARGET_ACCEPT
from bayes_sloth.core.sampler import auto_target_accept


def test_auto_resolves_by_the_number_of_benchmarks():
    small, large = AUTO_TARGET_ACCEPT
    assert small > large
    assert auto_target_accept(4) == small == 0.99
    assert auto_target_accept(OFFSET_FRAME_MAX_BENCHMARKS) == small
    assert auto_target_accept(OFFSET_FRAME_MAX_BENCHMARKS + 1) == large == 0.9
    assert auto_target_accept(12) == large  # the Sloth table keeps 0.9


def test_auto_is_the_default_and_anything_else_must_be_a_rate():
    law = bs.SkillsLaw()
    assert law.get_params()["target_accept"] == "auto"
    assert "target_accept" not in repr(law)  # a default is not shown
    law.validate_params()
    for bad in ("fast", 1.5, 0.0, True, None):
        with pytest.raises(InputError, match="target_accept must be 'auto' or a number"):
            bs.SkillsLaw(target_accept=bad).validate_params()
    bs.SkillsLaw(target_accept=0.95).validate_params()


def test_the_command_line_takes_auto_or_a_number():
    fit = ["fit", "--data", "x.csv"]
    assert build_parser().parse_args(fit).target_accept == "auto"
    assert build_parser().parse_args(fit + ["--target-accept", "0.95"]).target_accept == 0.95
    with pytest.raises(SystemExit):
        build_parser().parse_args(fit + ["--target-accept", "high"])


def test_a_fit_on_four_benchmarks_samples_at_the_small_board_target(tmp_path):
    # its own fit: the shared tiny fit pins 0.9 to keep the suite fast (conftest.TINY_FIT)
    import warnings

    from .conftest import make_tiny_frame

    law = bs.SkillsLaw(n_skills=1, chains=1, warmup=100, draws=100, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.fit(make_tiny_frame())
    path = tmp_path / "auto.nc"
    law.save(path)
    assert len(law.benchmarks_) == 4 and law.target_accept == "auto"
    assert law.target_accept_ == 0.99
    # the sampler adapted its step to that target, not to 0.9: the draws' mean acceptance is near it
    acc = float(np.mean(law.idata_.sample_stats["acceptance_rate"].values))
    assert acc > 0.95, acc
    loaded = bs.SkillsLaw.load(path)
    assert loaded.target_accept == "auto" and loaded.target_accept_ == 0.99


def test_the_default_k_on_a_small_board_says_what_to_pass():
    lb, _ = bs.simulate_leaderboard(n_families=6, n_benchmarks=3, n_skills=1, models_per_family=(2, 3), seed=0)
    with pytest.raises(InputError, match=r"n_skills=3 \(the default\) is invalid with 3 benchmarks.*n_skills=2"):
        bs.SkillsLaw().fit(lb)
