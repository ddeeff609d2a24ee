"""Conditional forecasts (observed scores of new models) and the next-benchmark choice.

One small constructed board, fitted once per session (``constructed_fit``,
shared with ``test_questions``): 10 families x 3 models, 5 benchmarks, K = 2
skills with a known, simple structure (sigmoid law, no chance floors):

- bench_00 (anchor of skill 0) and bench_03 load on skill 0 only;
- bench_01 (anchor of skill 1), bench_02 and bench_04 load on skill 1 only
  (the other loading is 0.05, near zero: loadings are positive);
- family_09 is held out of the fit and is far above the population on
  skill 1 (its z is (0, 2.5), so alpha = 0.8 x (2.5 - mean z) ~ 2 on skill 1).

A forecast for family_09 from the fit alone is therefore badly low on the
skill-1 benchmarks (by 0.45-0.65 in the law's mean, measured) and fine on
the skill-0 ones; one observed skill-1 score tells the law where the family
is.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.conditioning import K_TRUST, information_gain

HELD_FAMILY = "family_09"
SKILL1 = ["bench_02", "bench_04"]  # load on skill 1 only, like the anchor bench_01


@functools.lru_cache(maxsize=None)
def constructed_fit():
    """(law, leaderboard, truth, held-out model names); built once per session (test_questions reuses it)."""
    F = 10
    z = np.random.default_rng(5).normal(size=(F, 2))
    z[-1] = (0.0, 2.5)
    truth = {"loadings_free": [0.05, 0.05, 1.2, 1.2, 0.05, 0.05, 1.0], "family_z": z, "tau": [0.8, 0.8],
             "model_sd": 0.15}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lb, tr = bs.simulate_leaderboard(n_families=F, n_benchmarks=5, n_skills=2, models_per_family=3,
                                         missing=0.0, link="sigmoid", floors=[0.0] * 5, truth=truth, seed=2)
        held = [m for m in lb.models if lb.covariates.loc[m, "family"] == HELD_FAMILY]
        train = lb.select(models=[m for m in lb.models if m not in held])
        law = bs.SkillsLaw(2, anchors=["bench_00", "bench_01"], link="sigmoid", chains=2, warmup=200, draws=200,
                           seed=0, progress=False).fit(train)
    return law, lb, tr, held


@pytest.fixture(scope="module")
def fit():
    return constructed_fit()


def _rows(lb, models):
    return lb.select(models=models).covariates.reset_index()


def _truth(tr, key):
    return pd.DataFrame(tr[key], index=tr["models"], columns=tr["benchmarks"])


def _predict(law, rows, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return law.predict(rows, new_families="allow", **kw).predictions


# ------------------------------------------------------------------ conditioning
@pytest.mark.slow
def test_one_observed_score_pulls_the_family_towards_the_truth(fit):
    """One skill-1 score of one model of a never-seen family moves the forecasts of the other skill-1
    benchmarks of all three of its models (the family's efficiency is shared) to the truth.

    Measured at seed 0: the fit alone is off by 0.45-0.65 on every skill-1 pair, conditioned by 0.03-0.11,
    and the skill-0 pairs stay within 0.03 either way. The bounds (conditioned error under a third of the
    unconditional one on every pair, the true mean inside the conditioned 90 % interval on 5 of 6 pairs)
    leave room for sampler noise and still fail if the observed score were ignored (error ratio 1) or
    moved only the observed model (two of the three models would keep their full error)."""
    law, lb, tr, held = fit
    y, mu = _truth(tr, "y").loc[held], _truth(tr, "mu").loc[held]
    rows = _rows(lb, held).assign(bench_01=[y.iloc[0]["bench_01"], np.nan, np.nan])
    cond, free = _predict(law, rows), _predict(law, rows, condition=False)
    err_c = (cond["score"].mean(("chain", "draw")).to_pandas() - mu).abs()[SKILL1]
    err_u = (free["score"].mean(("chain", "draw")).to_pandas() - mu).abs()[SKILL1]
    assert (err_u > 0.3).all().all(), err_u  # the case is as constructed: the fit alone is far off
    assert (err_c < err_u / 3).all().all(), (err_c, err_u)
    iv = bs.interval(cond["score"].sel(benchmark=SKILL1), 0.9)
    inside = (mu[SKILL1].values >= iv["lower"].values) & (mu[SKILL1].values <= iv["upper"].values)
    assert inside.sum() >= 5, inside
    # what was conditioned on, and how far it can be trusted, is in the output
    assert cond["conditioned"].sel(benchmark="bench_01").values.tolist() == [True, False, False]
    assert int(cond["conditioned"].sum()) == 1
    assert (cond["pareto_k"].values < K_TRUST).all() and (cond["importance_ess"].values > 50).all()
    assert cond["score"].dims == ("chain", "draw", "model", "benchmark")


@pytest.mark.slow
def test_conditioning_on_nothing_is_the_unconditional_forecast(fit):
    """Rows without scores, and rows of other families in a call that conditions one family, get exactly
    the draws of condition=False (and the same seed reproduces conditioned draws bit for bit)."""
    law, lb, tr, held = fit
    others = [m for m in lb.models if m.startswith("family_02")][:2]
    bare = _rows(lb, held + others)
    a = _predict(law, bare, seed=3)
    b = _predict(law, bare, seed=3, condition=False)
    np.testing.assert_array_equal(a["score"].values, b["score"].values)
    assert np.isnan(a["pareto_k"].values).all() and not a["conditioned"].values.any()
    y = _truth(tr, "y")
    mixed = bare.assign(bench_01=np.where(bare["model"] == held[0], y.loc[held[0], "bench_01"], np.nan))
    c = _predict(law, mixed, seed=3)
    np.testing.assert_array_equal(c["score"].sel(model=others).values, b["score"].sel(model=others).values)
    assert not np.array_equal(c["score"].sel(model=held).values, b["score"].sel(model=held).values)
    again = _predict(law, mixed, seed=3)
    np.testing.assert_array_equal(c["score"].values, again["score"].values)
    # a family's conditioned draws do not depend on the other families asked for
    alone = _predict(law, mixed[mixed["model"].isin(held)], seed=3)
    np.testing.assert_array_equal(alone["score"].values, c["score"].sel(model=held).values)


@pytest.mark.slow
def test_absurd_observed_scores_warn_that_conditioning_cannot_be_trusted(fit):
    """bench_00 and bench_03 measure the same skill: 0.999 on one and 0.001 on the other is far outside
    anything the fit expects, the draw-level weights degenerate (Pareto k > 0.7) and the user is told."""
    law, lb, tr, held = fit
    row = _rows(lb, [lb.models[0]]).assign(model="absurd-1", bench_00=0.999, bench_03=0.001)
    with pytest.warns(UserWarning, match="cannot be trusted for family 'family_00'.*refit"):
        pred = law.predict(row)
    assert float(pred.predictions["pareto_k"].values[0]) > K_TRUST
    sensible = row.assign(bench_00=float(_truth(tr, "y").iloc[0]["bench_00"]), bench_03=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a plausible score does not warn
        warnings.filterwarnings("ignore", message=".*convergence checks|no chance floor")
        ok = law.predict(sensible).predictions
    assert float(ok["pareto_k"].values[0]) < K_TRUST


@pytest.mark.slow
def test_forecast_table_marks_conditioned_pairs_and_fitted_models_are_not_conditioned(fit):
    law, lb, tr, held = fit
    y = _truth(tr, "y")
    fitted_model = lb.models[0]
    rows = _rows(lb, [held[0], fitted_model]).assign(bench_01=[y.loc[held[0], "bench_01"],
                                                               y.loc[fitted_model, "bench_01"]])
    with pytest.warns(UserWarning, match="fitted model.*not conditioned on"):
        tab = law.forecast(rows, new_families="allow")
    marked = tab.set_index(["model", "benchmark"])["conditioned"]
    assert marked[(held[0], "bench_01")] and marked.sum() == 1
    assert {"pareto_k", "importance_ess", "observed"} <= set(tab.columns)
    assert tab.loc[tab["model"] == fitted_model, "pareto_k"].isna().all()
    plain = law.forecast(rows.drop(columns=["bench_01"]), new_families="allow", condition=False)
    assert "conditioned" not in plain.columns  # condition=False: today's table
    with pytest.raises(bs.InputError, match="condition must be True .*'all'.* or False .*got 'yes'"):
        law.predict(rows, condition="yes")


@pytest.mark.slow
def test_a_pair_is_never_conditioned_on_its_own_score_unless_asked(fit):
    """condition=True forecasts a scored pair from the group's other scores (leave that score out): with one
    score it is the fit's own forecast, with two each comes from the other; condition="all" conditions it on
    its own score too (marked own_score_used), and the unscored pairs are the same in both modes."""
    law, lb, tr, held = fit
    y = _truth(tr, "y")
    one = _rows(lb, held).assign(bench_01=[y.loc[held[0], "bench_01"], np.nan, np.nan])
    free, cond, everything = (_predict(law, one, seed=3, condition=c) for c in (False, True, "all"))
    pair = dict(model=held[0], benchmark="bench_01")
    np.testing.assert_array_equal(cond["score"].sel(**pair).values, free["score"].sel(**pair).values)
    assert not np.array_equal(everything["score"].sel(**pair).values, free["score"].sel(**pair).values)
    others = [b for b in law.benchmarks_ if b != "bench_01"]
    np.testing.assert_array_equal(cond["score"].sel(benchmark=others).values,
                                  everything["score"].sel(benchmark=others).values)
    assert not cond["own_score_used"].values.any()
    assert everything["own_score_used"].values.tolist() == everything["conditioned"].values.tolist()
    # two scores of one model: bench_02 (skill 1) forecast from bench_01 alone has the distribution a row
    # carrying only bench_01 gets for it (the left-out run reweights the two-score run's latent draws, so the
    # draws differ by Monte Carlo error: 400 draws, resampled, leave an effective size of 100 or more each, a
    # standard error of the difference of means under 0.15 sd); the observed bench_02 does not pull its own
    # forecast, which conditioned on it too ("all") sits near the observed score with a fraction of the spread
    # (measured at seeds 3-5: means 0.01-0.13 sd apart, sd ratios 0.97-1.09; "all" 0.48-0.50 of the spread)
    two = one.assign(bench_02=[y.loc[held[0], "bench_02"], np.nan, np.nan])
    both = _predict(law, two, seed=3)
    pair2 = dict(model=held[0], benchmark="bench_02")
    loo, ref = (d["score"].sel(**pair2).values.ravel() for d in (both, cond))
    own = _predict(law, two, seed=3, condition="all")["score"].sel(**pair2).values.ravel()
    assert abs(loo.mean() - ref.mean()) < 0.45 * ref.std()
    assert 0.75 < loo.std() / ref.std() < 1.33
    assert own.std() < 0.65 * ref.std() and abs(own.mean() - y.loc[held[0], "bench_02"]) < 2 * own.std()
    assert both["conditioned"].sel(model=held[0]).values.sum() == 2
    tab = law.forecast(two, new_families="allow", condition="all")
    assert tab["own_score_used"].sum() == 2


@pytest.mark.slow
def test_padding_the_scores_and_runs_changes_nothing(fit, monkeypatch):
    """condition_runs pads the observed pairs and the runs to powers of two (so groups with other numbers of
    scores share compiled programs): a held-out row with 3 scores (3 pairs and 4 runs, padded to 4 and 4)
    gives what the unpadded program gives: the same weights' diagnostics and forecast draws, up to float32
    rounding of sums taken in another order. Resampling may move a draw whose weight sits on a boundary of
    the cumulative weights (at most 1 % of them); the draws that kept their source agree to 1e-4, far under
    the scores' spread of about 0.1."""
    from bayes_sloth.core import conditioning
    from bayes_sloth.core.prediction import flat_posterior, stream_code

    law, lb, tr, held = fit
    y = _truth(tr, "y").loc[[held[0]]].to_numpy()
    mask = np.zeros_like(y, dtype=bool)
    mask[0, :3] = True
    masks = [mask] + [mask & ~np.eye(1, y.shape[1], j, dtype=bool) for j in range(3)]
    cov = lb.covariates.loc[[held[0]]]
    kw = dict(x=law.standardizer_.transform(cov["params"], cov["tokens"]), instruct=cov["instruct"].to_numpy(float),
              floor=law.idata_.constant_data["floor"].values, y=y, masks=np.stack(masks), model_index=np.array([-1]),
              family=-1, family_code=stream_code(HELD_FAMILY), row_codes=[stream_code(held[0])], seed=1)
    flat = flat_posterior(law.spec_, law.idata_.posterior)
    padded = conditioning.condition_runs(law.spec_, flat, **kw)
    monkeypatch.setattr(conditioning, "_bucket", lambda k: int(k))
    plain = conditioning.condition_runs(law.spec_, flat, **kw)
    assert len(padded) == len(plain) == 4
    for a, b in zip(padded, plain):
        assert a.inner_ess == pytest.approx(b.inner_ess, abs=1e-4)
        assert a.importance_ess == pytest.approx(b.importance_ess, rel=1e-3)
        same = a.source == b.source
        assert same.mean() >= 0.99
        np.testing.assert_allclose(a.score[same], b.score[same], rtol=0, atol=1e-4)


# ------------------------------------------------------------------ which benchmark next
@pytest.mark.slow
def test_suggest_ranks_a_benchmark_on_the_targets_skill_first(fit):
    """For a never-seen family (its skills unknown), to learn about bench_02 (skill 1), bench_04 (skill 1)
    and the anchor bench_01 are worth far more than bench_00 and bench_03 (skill 0)."""
    law, lb, tr, held = fit
    row = _rows(lb, held[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = law.suggest_benchmarks(row, targets=["bench_02"], k=None, seed=1)
    order = tab["benchmark"].tolist()
    assert set(order[:2]) == {"bench_01", "bench_04"} and set(order[2:]) == {"bench_00", "bench_03"}, tab
    assert "bench_02" not in order  # given targets, the default candidates are the other benchmarks
    assert (tab["fraction"].iloc[:2] > 3 * tab["fraction"].iloc[2:].max()).all()
    # the numbers are the linear-Gaussian reduction computed from the same joint draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = law.predict(row, seed=1, new_families="allow").predictions["score"].isel(model=0)
    s = draws.stack(d=("chain", "draw")).transpose("d", "benchmark").to_pandas()
    c = s.cov()
    for b, got in zip(tab["benchmark"], tab["variance_reduction"]):
        assert got == pytest.approx(c.loc["bench_02", b] ** 2 / c.loc[b, b], rel=1e-6)
    # k and costs: the ranking is by gain per unit cost, so costs reorder it. The skill-0 benchmarks' gains
    # are near zero (bench_03's true loading on skill 1 is 0.05), so which of bench_03 and bench_01 is cheaper
    # per unit of variance removed depends on the draws: the top two are computed from the uncosted table itself.
    cost = {"bench_00": 1.0, "bench_01": 1000.0, "bench_03": 1.0, "bench_04": 1000.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cheap = law.suggest_benchmarks(row, targets=["bench_02"], k=2, seed=1, cost=cost)
    assert len(cheap) == 2 and cheap["gain_per_cost"].is_monotonic_decreasing
    per_cost = (tab.set_index("benchmark")["variance_reduction"] / pd.Series(cost)).sort_values(ascending=False)
    assert list(cheap["benchmark"]) == list(per_cost.index[:2]) and list(cheap["benchmark"]) != order[:2]
    np.testing.assert_allclose(cheap["gain_per_cost"], per_cost.iloc[:2], rtol=1e-9)


@pytest.mark.slow
def test_suggest_conditions_on_what_is_observed(fit):
    """Once bench_01 is observed it is no candidate, and bench_04 (also skill 1) tells less than before."""
    law, lb, tr, held = fit
    row = _rows(lb, held[:1])
    y = _truth(tr, "y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = law.suggest_benchmarks(row, targets=["bench_02"], k=None, seed=1).set_index("benchmark")
        after = law.suggest_benchmarks(row.assign(bench_01=y.loc[held[0], "bench_01"]), targets=["bench_02"],
                                       k=None, seed=1).set_index("benchmark")
    assert "bench_01" not in after.index
    assert after.loc["bench_04", "target_variance"] < 0.5 * before.loc["bench_04", "target_variance"]


def test_small_cholesky_solve_matches_numpy_and_flags_an_indefinite_matrix():
    """The Newton step's solver: P^-1 g for positive definite P of sizes 1 to 8 (the latent sizes of a group)
    to float32's accuracy (condition numbers here under 1e3: relative error under 1e-4), NaN where P is not
    positive definite (the Newton loop then takes the shifted step)."""
    import jax.numpy as jnp

    from bayes_sloth.core.conditioning import _cho_solve

    rng = np.random.default_rng(3)
    for d in range(1, 9):
        A = rng.normal(size=(d, d))
        P, g = A @ A.T + np.eye(d), rng.normal(size=d)
        want = np.linalg.solve(P, g)
        got = np.asarray(_cho_solve(jnp.asarray(P, jnp.float32), jnp.asarray(g, jnp.float32)), dtype=float)
        assert np.linalg.cond(P) < 1e3
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
    assert np.isnan(np.asarray(_cho_solve(jnp.asarray(np.diag([2.0, -1.0])), jnp.ones(2)))).all()


def test_condition_runs_rejects_masks_it_cannot_share():
    """Runs share the first mask's proposal: a later mask must be a subset of the first, and every run needs a
    score; the error says which."""
    from bayes_sloth.core.conditioning import condition_runs

    kw = dict(x=np.zeros((1, 3)), instruct=np.zeros(1), floor=np.zeros(2), y=np.full((1, 2), 0.5),
              model_index=np.array([-1]), family=-1, family_code=1, row_codes=[1], seed=0)
    with pytest.raises(bs.InputError, match="subset of the first"):
        condition_runs(None, {}, masks=np.array([[[True, False]], [[False, True]]]), **kw)
    with pytest.raises(bs.InputError, match="at least one observed pair"):
        condition_runs(None, {}, masks=np.array([[[True, False]], [[False, False]]]), **kw)


def test_information_gain_matches_gaussian_theory():
    """Joint draws of a known two-factor Gaussian: T and A load on factor 1, B on factor 0. The estimator
    recovers Cov(T, y)^2 / Var(y) (A: 0.64^2 / 1 = 0.4096, all variances 0.64 + 0.36 = 1; B: 0) within Monte
    Carlo error (50 000 draws: sd of the estimate about 0.005, bound 0.03)."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50_000, 2))
    e = rng.normal(size=(50_000, 3)) * 0.6
    T, A, B = 0.8 * f[:, 1] + e[:, 0], 0.8 * f[:, 1] + e[:, 1], 0.8 * f[:, 0] + e[:, 2]
    tab = information_gain(np.column_stack([T, A, B]), [1, 2], lambda b: [0]).set_index("index")
    assert tab.loc[1, "variance_reduction"] == pytest.approx(0.4096, abs=0.03)
    assert tab.loc[2, "variance_reduction"] == pytest.approx(0.0, abs=0.03)
    assert tab.loc[1, "information"] == pytest.approx(-0.5 * np.log(1 - 0.4096), abs=0.03)
    with pytest.raises(bs.InputError, match="criterion must be one of"):
        information_gain(np.zeros((10, 3)), [1], lambda b: [0], criterion="kl")


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, match", [
    (dict(targets=["bench_2"]), "targets names 'bench_2', not a fitted benchmark \\(did you mean 'bench_02'"),
    (dict(candidates=[]), "candidates is empty"),
    (dict(k=0), "k must be a positive integer or None, got 0"),
    (dict(cost={"bench_00": -1.0}), "cost of 'bench_00' must be a positive finite number, got -1.0"),
    (dict(cost={"bench_00": 1.0}), "cost has no entry for candidate benchmark 'bench_01'"),
    (dict(criterion="kl"), "criterion must be one of"),
])
def test_suggest_bad_input_names_the_value(fit, kwargs, match):
    law, lb, tr, held = fit
    with pytest.raises(bs.InputError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.suggest_benchmarks(_rows(lb, held[:1]), **kwargs)


# ------------------------------------------------------------------ command line
@pytest.mark.slow
def test_cli_predict_conditions_on_observed_scores(fit, tmp_path, capsys):
    from bayes_sloth.cli import main

    law, lb, tr, held = fit
    path = tmp_path / "fit.nc"
    law.save(path)
    y = _truth(tr, "y")
    new = tmp_path / "new.csv"
    _rows(lb, held).assign(bench_01=[y.loc[held[0], "bench_01"], np.nan, np.nan]).to_csv(new, index=False)
    out, out_free = tmp_path / "cond.csv", tmp_path / "free.csv"
    assert main(["predict", str(path), "--data", str(new), "--new-families", "allow", "--out", str(out)]) == 0
    assert main(["predict", str(path), "--data", str(new), "--new-families", "allow", "--no-condition",
                 "--out", str(out_free)]) == 0
    cond, free = pd.read_csv(out), pd.read_csv(out_free)
    assert cond.columns[:6].tolist() == ["model", "family", "seen_family", "extrapolation", "benchmark", "mean"]
    assert {"conditioned", "pareto_k", "importance_ess", "observed"} <= set(cond.columns)
    assert cond["conditioned"].sum() == 1 and "conditioned" not in free.columns
    mu = _truth(tr, "mu")
    key = cond.set_index(["model", "benchmark"])
    err_c = np.mean([abs(key.loc[(m, b), "mean"] - mu.loc[m, b]) for m in held for b in SKILL1])
    key_f = free.set_index(["model", "benchmark"])
    err_f = np.mean([abs(key_f.loc[(m, b), "mean"] - mu.loc[m, b]) for m in held for b in SKILL1])
    assert err_c < err_f / 3
    # the command line gives what the Python API gives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = law.forecast(str(new), new_families="allow")
    np.testing.assert_allclose(cond["lower"].to_numpy(), api["lower"].to_numpy(), atol=1e-6)
