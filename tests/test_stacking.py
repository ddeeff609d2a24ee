"""Bayesian stacking of candidate laws (``bayes_sloth.workflows.stacking``).

- the weights' optimizer against answers known in closed form (one candidate
  dominating, identical candidates, a 2:1 split of units each explained by one
  candidate only), and its refusals;
- a stack over K in {1, 2} fitted to a simulated leaderboard whose truth is
  clearly two skills (the lean law, small chains): most weight on K = 2, the
  weights a probability vector, the mixture reproducible from its seed, its
  interval bounds between the members' bounds, save/load predicting the same;
- ``evaluate`` accepts a stack and checks its arguments.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.errors import InputError
from bayes_sloth.workflows.stacking import (
    StackedLaw,
    allocate_draws,
    candidate_names,
    mixture_lpd,
    stacking_weights,
    unconverged_weight,
)

# the lean law started uniformly: few programs to compile (CI time); what is tested is the stacking
LEAN = dict(chains=2, warmup=150, draws=100, max_tree_depth=6, link="sigmoid", model_effects=False,
            instruct_shift=False, instruct_slope=False, family_slopes=False, init="uniform", progress=False)


# ------------------------------------------------------------------ the optimizer
def test_weights_one_candidate_dominating_gets_all_the_weight():
    rng = np.random.default_rng(0)
    good = rng.normal(1.0, 0.3, 200)
    lpd = np.column_stack([good, good - 3.0, good - 5.0])  # candidate 0 better at every unit
    w = stacking_weights(lpd)
    assert w.shape == (3,) and np.isclose(w.sum(), 1.0)
    assert w[0] > 0.999


def test_weights_identical_candidates_split_equally():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 100)
    w = stacking_weights(np.column_stack([a, a]))
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-8)


def test_weights_known_optimum_of_two_to_one_units():
    # units explained by one candidate only: maximise 2 log w + log(1 - w)  ->  w = 2/3
    eps = np.log(1e-12)
    lpd = np.array([[0.0, eps], [0.0, eps], [eps, 0.0]])
    w = stacking_weights(lpd)
    np.testing.assert_allclose(w, [2 / 3, 1 / 3], atol=1e-5)
    # the stacked density is the log of the mixture, computed stably
    np.testing.assert_allclose(mixture_lpd(lpd, w), np.log([2 / 3 + 1e-12 / 3, 2 / 3 + 1e-12 / 3, 1 / 3 + 2e-12 / 3]))


def test_weights_refuse_non_finite_and_bad_shapes():
    with pytest.raises(InputError, match="K=2"):
        stacking_weights(np.array([[0.0, -np.inf]]), names=["K=1", "K=2"])
    with pytest.raises(InputError, match="shape"):
        stacking_weights(np.zeros(3))


def test_allocate_draws_largest_remainders():
    n = allocate_draws([0.333, 0.333, 0.334], 10)
    assert n.sum() == 10 and list(n) == [3, 3, 4]
    assert list(allocate_draws([1.0, 0.0], 7)) == [7, 0]


def test_unconverged_members_with_weight_are_named():
    diag = pd.DataFrame({"weight": [0.0, 0.3, 0.7], "converged": [False, False, True],
                         "max_rhat": [1.5, 1.04, 1.004], "divergences": [12, 3, 0]},
                        index=pd.Index(["K=1", "K=2", "K=3"], name="candidate"))
    msg = unconverged_weight(diag)
    # K=2 carries weight and failed: named with its numbers; K=1 failed with no weight, K=3 passed: not named
    assert msg is not None and "K=2 (weight 0.30, max R-hat 1.040, 3 divergent)" in msg
    assert "K=1" not in msg and "K=3" not in msg
    assert unconverged_weight(diag.assign(converged=True)) is None
    assert unconverged_weight(diag.assign(weight=[0.995, 0.005, 0.0])) is not None  # K=1 now has the weight
    assert unconverged_weight(diag.assign(weight=[0.0, 0.005, 0.995])) is None  # below min_weight


def test_candidate_names_and_bad_arguments():
    names = candidate_names([bs.SkillsLaw(n_skills=1), bs.SkillsLaw(n_skills=2, link="sigmoid")])
    assert names == ["K=1, link=monotone", "K=2, link=sigmoid"]
    assert candidate_names([bs.SkillsLaw(n_skills=k) for k in (1, 2)]) == ["K=1", "K=2"]
    board = pd.DataFrame()
    for bad, match in (([], "empty"), (["K=1"], "not a SkillsLaw"), ([bs.SkillsLaw(n_skills=0)], "n_skills")):
        with pytest.raises(InputError, match=match):
            bs.stack(bad).fit(board)
    with pytest.raises(InputError, match="n_seen"):
        bs.stack([bs.SkillsLaw(n_skills=1)], n_seen=-1).fit(board)
    with pytest.raises(InputError, match="names"):
        bs.stack([bs.SkillsLaw(n_skills=1)], names=["a", "b"]).fit(board)
    with pytest.raises(InputError, match="not fitted"):
        bs.stack([bs.SkillsLaw(n_skills=1)]).forecast(board)


def test_evaluate_refuses_law_settings_beside_a_stack():
    lb, _ = bs.simulate_leaderboard(n_families=4, n_benchmarks=3, n_skills=1, models_per_family=(2, 3),
                                    missing=0.0, seed=1)
    st = bs.stack([bs.SkillsLaw(n_skills=1)])
    with pytest.raises(InputError, match="candidate SkillsLaws"):
        bs.evaluation.evaluate(lb, protocol="leave-family-out", benchmark_set=None, law=st, chains=2)
    with pytest.raises(InputError, match="StackedLaw"):
        bs.evaluation.evaluate(lb, protocol="leave-family-out", benchmark_set=None, law=bs.SkillsLaw(n_skills=1))


# ------------------------------------------------------------------ the mixture, on stand-in members
class _Member:
    """A stand-in fitted law: Normal draws around ``loc`` for 2 models x 2 benchmarks, 2 chains x 300 draws."""

    def __init__(self, loc, n_skills):
        import xarray as xr

        self.n_skills = n_skills
        rng = np.random.default_rng(int(loc * 100))
        self.score = rng.normal(loc, 0.05, (2, 300, 2, 2))
        coords = {"chain": [0, 1], "draw": np.arange(300), "benchmark": ["b0", "b1"]}
        self.idata_ = type("Idata", (), {"posterior": xr.Dataset(
            {"sigma": (("chain", "draw", "benchmark"), np.full((2, 300, 2), 0.05))}, coords=coords)})()

    def predict(self, new, seed=None, **kw):
        import xarray as xr

        ds = xr.Dataset({"score": (("chain", "draw", "model", "benchmark"), self.score),
                         "mu": (("chain", "draw", "model", "benchmark"), self.score)},
                        coords={"chain": [0, 1], "draw": np.arange(300), "model": ["m0", "m1"],
                                "benchmark": ["b0", "b1"]})
        ds = ds.assign_coords(family=("model", ["f", "f"]), pareto_k=("model", [0.1 * self.n_skills, 0.0]),
                              conditioned=(("model", "benchmark"), np.zeros((2, 2), bool)))
        return type("Pred", (), {"predictions": ds})()


def _stand_in_stack(weights):
    st = StackedLaw([bs.SkillsLaw(n_skills=1), bs.SkillsLaw(n_skills=2)], seed=5)
    st.members_ = [_Member(0.3, 1), _Member(0.6, 2)]
    st.names_ = ["K=1", "K=2"]
    st.weights_ = pd.Series(weights, index=pd.Index(st.names_, name="candidate"), name="weight")
    return st


def test_mixture_draws_follow_the_weights_reproducibly_between_the_members():
    from bayes_sloth.core.prediction import forecast_table

    st = _stand_in_stack([0.25, 0.75])
    a = st.predict(None, seed=3).predictions
    b = st.predict(None, seed=3).predictions
    assert a.equals(b) and not a.equals(st.predict(None, seed=4).predictions)
    cand = a["candidate"].values.ravel()
    assert cand.size == 600 and (cand == "K=1").sum() == 150 and (cand == "K=2").sum() == 450
    assert float(a["pareto_k"].sel(model="m0")) == pytest.approx(0.2)  # the worst member's
    assert "conditioned" in a.coords and list(a["family"].values) == ["f", "f"]
    mix = forecast_table(a, 0.9).set_index(["model", "benchmark"])
    m1, m2 = (forecast_table(m.predict(None).predictions, 0.9).set_index(["model", "benchmark"])
              for m in st.members_)
    assert list(mix.columns) == list(m1.columns)
    for col in ("lower", "upper", "mean"):
        assert ((mix[col] >= np.minimum(m1[col], m2[col])) & (mix[col] <= np.maximum(m1[col], m2[col]))).all()
    # the mixture's range covers both members' draws
    assert float(a["score"].min()) <= min(m.score.min() for m in st.members_) + 0.1
    assert float(a["score"].max()) >= max(m.score.max() for m in st.members_) - 0.1


# ------------------------------------------------------------------ a fitted stack
def _two_skill_board():
    """Two skills, clearly: families spread widely on both, low noise, six benchmarks."""
    lb, _ = bs.simulate_leaderboard(n_families=14, n_benchmarks=6, n_skills=2, models_per_family=(2, 4),
                                    missing=0.0, sigma=(0.005, 0.01), truth={"tau": [0.8, 0.8]},
                                    link="sigmoid", model_effects=False, instruct_shift=False, seed=3)
    return lb


@pytest.fixture(scope="module")
def fitted():
    lb = _two_skill_board()
    st = bs.stack([bs.SkillsLaw(n_skills=k, seed=0, **LEAN) for k in (1, 2)], seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st.fit(lb)
    return st, lb


@pytest.mark.slow
def test_stack_puts_the_weight_on_the_true_number_of_skills(fitted):
    st, _ = fitted
    w = st.weights_
    assert list(w.index) == ["K=1", "K=2"]
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
    # the 2-skill truth is clear (6 benchmarks, noise <= 0.01, families spread 0.8 on both skills): a one-skill
    # law misses the second skill's benchmarks by several noise scales at every held-out family, so nearly all
    # the weight goes to K = 2; 0.8 leaves room for sampling noise in the short chains
    assert w["K=2"] > 0.8, w
    d = st.diagnostics_
    assert d.loc["K=2", "elpd_lfo"] > d.loc["K=1", "elpd_lfo"]
    # the leave-family-out densities cover every fitted pair of every family, for each candidate
    assert len(st.lfo_pairs_) == st.members_[0].leaderboard_.n_observed
    assert set(st.lfo_families_["candidate"]) == {"K=1", "K=2"}
    assert "psis_k" in st.lfo_families_ and "StackedLaw(weights" in repr(st)


@pytest.mark.slow
def test_stack_mixture_reproducible_and_between_its_members(fitted, tmp_path):
    st, lb = fitted
    new = lb.select(models=lb.models[:4], benchmarks=[])
    a = st.forecast(new, seed=11)
    b = st.forecast(new, seed=11)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    member = st.members_[0].forecast(new, seed=11)
    assert set(a.columns) == set(member.columns)
    # equal weights so that both members draw: the mixture's quantiles lie between the members' quantiles
    half = StackedLaw(st.candidates, seed=5)
    half.members_, half.names_ = st.members_, st.names_
    half.weights_ = pd.Series([0.5, 0.5], index=st.weights_.index, name="weight")
    mix = half.forecast(new, seed=11).set_index(["model", "benchmark"])
    m1, m2 = (m.forecast(new, seed=11).set_index(["model", "benchmark"]) for m in st.members_)
    tol = 0.01  # quantiles of a few hundred draws
    for col in ("lower", "upper"):
        lo = np.minimum(m1[col], m2[col]) - tol
        hi = np.maximum(m1[col], m2[col]) + tol
        assert ((mix[col] >= lo) & (mix[col] <= hi)).all(), col
    pred = half.predict(new, seed=11).predictions
    assert set(np.unique(pred["candidate"].values)) == {"K=1", "K=2"}
    # save / load: the same weights and the same forecast
    st.save(tmp_path / "stack")
    back = bs.StackedLaw.load(tmp_path / "stack")
    pd.testing.assert_series_equal(back.weights_, st.weights_)
    pd.testing.assert_frame_equal(back.forecast(new, seed=11), a, check_exact=True)


@pytest.mark.slow
def test_evaluate_a_stack_weights_from_training_pairs_only():
    lb, _ = bs.simulate_leaderboard(n_families=5, n_benchmarks=4, n_skills=1, models_per_family=(2, 3),
                                    missing=0.0, seed=1)
    st = bs.stack([bs.SkillsLaw(n_skills=k, seed=0, **dict(LEAN, warmup=40, draws=40, max_tree_depth=4))
                   for k in (1, 2)])
    res = bs.evaluation.evaluate(lb, protocol="leave-family-out", benchmark_set=None, n_train=1, law=st,
                                 groups=["family_01"], keep_fits=True)
    assert res.summary["n_skills"] == "stack" and res.summary["settings"]["n_seen"] == 1
    for g, fit in zip(res.summary["groups"], res.fits):
        assert np.isclose(sum(g["weights"].values()), 1.0)
        # the fold's weights saw none of the held-out family's forecast models
        assert not set(fit.lfo_pairs_["model"]) & set(
            m for f in res.design.folds if f.group == g["group"] for m in f.forecast_models)
    assert np.isfinite(res.pairs["lpd"]).all()
