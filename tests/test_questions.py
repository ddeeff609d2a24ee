"""The forecasters' questions (bayes_sloth.workflows.questions): each answer equals the direct computation from the
law's draws, and is monotone where it must be. Reuses the constructed fit of test_conditional."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth import questions as q

from .test_conditional import constructed_fit

FAM = "family_00"


@pytest.fixture(scope="module")
def fit():
    law, lb, tr, held = constructed_fit()
    return law, lb


@pytest.fixture(autouse=False)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _two(lb):
    """Two new models of a seen family, small and large."""
    return pd.DataFrame({"model": ["small", "large"], "family": [FAM, FAM], "params": [1.0, 30.0],
                         "tokens": [2.0, 2.0], "instruct": [False, False]})


@pytest.mark.slow
def test_exceedance_is_the_share_of_draws_above_and_falls_with_the_threshold(fit, quiet):
    law, lb = fit
    pred = law.predict(_two(lb), seed=4)
    tab = q.exceedance(law, _two(lb), 0.5, seed=4)
    direct = (pred.predictions["score"] > 0.5).mean(("chain", "draw")).to_pandas()
    got = tab.pivot(index="model", columns="benchmark", values="probability")
    pd.testing.assert_frame_equal(got.loc[direct.index, direct.columns], direct, check_names=False)
    assert (tab["mcse"] <= 0.5 / np.sqrt(400) + 1e-12).all()  # 2 chains x 200 draws
    # the draws of a prediction can be reused; larger thresholds are never more likely (draw by draw)
    ps = [q.exceedance(law, pred, t, benchmarks=["bench_02"])["probability"].to_numpy() for t in (0.2, 0.5, 0.8)]
    assert (ps[0] >= ps[1]).all() and (ps[1] >= ps[2]).all()
    per = q.exceedance(law, pred, {"bench_00": 0.3, "bench_03": 0.9})
    assert set(per["benchmark"]) == {"bench_00", "bench_03"}
    assert per.set_index(["model", "benchmark"]).loc[("large", "bench_03"), "threshold"] == 0.9
    with pytest.raises(bs.InputError, match="benchmark 'nope' is not fitted"):
        q.exceedance(law, pred, {"nope": 0.5})
    with pytest.raises(bs.InputError, match="threshold must be a finite number, got 'high'"):
        q.exceedance(law, pred, "high")


@pytest.mark.slow
def test_head_to_head_uses_joint_draws(fit, quiet):
    law, lb = fit
    pred = law.predict(_two(lb), seed=4)
    tab = q.head_to_head(law, pred, "large", "small").set_index("benchmark")
    s = pred.predictions["score"]
    d = (s.sel(model="large") - s.sel(model="small")).transpose("chain", "draw", "benchmark").values.reshape(-1, 5)
    np.testing.assert_allclose(tab["probability"].to_numpy(), (d > 0).mean(0) + 0.5 * (d == 0).mean(0))
    np.testing.assert_allclose(tab["difference"].to_numpy(), d.mean(0), rtol=1e-5)
    rev = q.head_to_head(law, pred, "small", "large").set_index("benchmark")
    np.testing.assert_allclose(tab["probability"] + rev["probability"], 1.0)
    # joint draws share the family and the law: the difference varies less than between independent draws
    perm = np.random.default_rng(0).permutation(len(d))
    sl, ss = (s.sel(model=m).transpose("chain", "draw", "benchmark").values.reshape(-1, 5) for m in ("large", "small"))
    assert (d.var(0) < (sl - ss[perm]).var(0)).all()
    assert (tab["shared_draws"] == 1.0).all()
    with pytest.raises(bs.InputError, match="'medium' is not among the forecast rows"):
        q.head_to_head(law, pred, "medium", "small")
    with pytest.raises(bs.InputError, match="two different models"):
        q.head_to_head(law, pred, "small", "small")


@pytest.mark.slow
def test_smallest_params_is_where_the_probability_first_reaches_p(fit, quiet):
    law, lb = fit
    ans = q.smallest_params(law, FAM, "bench_00", 0.6, 0.8, tokens=2.0, seed=2)
    assert ans.reached and not ans.at_lower_end, str(ans)
    # direct: at the answer the probability is reached; just below the bracket it is not
    p_at = float((q._point(law, FAM, ans.value, 2.0, False, 2, "warn")["score"].sel(benchmark="bench_00") > 0.6).mean())
    assert p_at >= 0.8 and p_at == pytest.approx(ans.probability)
    below = ans.grid[ans.grid["probability"] < 0.8]["params"]
    assert below.max() < ans.value and below.max() > ans.value / 1.2
    # monotone: a higher probability or threshold never needs a smaller model
    assert q.smallest_params(law, FAM, "bench_00", 0.6, 0.9, tokens=2.0, seed=2).value >= ans.value
    assert q.smallest_params(law, FAM, "bench_00", 0.65, 0.8, tokens=2.0, seed=2).value >= ans.value
    never = q.smallest_params(law, FAM, "bench_00", 0.9999, 0.99, tokens=2.0, seed=2, n_grid=4)
    assert not never.reached and np.isnan(never.value) and "not reached" in str(never)
    wide = q.smallest_params(law, FAM, "bench_00", 0.6, 0.8, tokens=2.0, seed=2, params_range=(1e-3, 1e4))
    fit = law.leaderboard_.covariates
    outside = [wide.value < fit["params"].min() or wide.value > fit["params"].max(),
               2.0 < fit["tokens"].min() or 2.0 > fit["tokens"].max(),
               2.0 * wide.value > (fit["params"] * fit["tokens"]).max() or
               2.0 * wide.value < (fit["params"] * fit["tokens"]).min()]
    assert wide.extrapolation == any(outside)
    with pytest.raises(bs.InputError, match="exactly one of tokens"):
        q.smallest_params(law, FAM, "bench_00", 0.6, 0.8)
    with pytest.raises(bs.InputError, match="prob must be strictly between 0 and 1, got 1.5"):
        q.smallest_params(law, FAM, "bench_00", 0.6, 1.5, tokens=2.0)


@pytest.mark.slow
def test_compute_budget_agrees_with_direct_draws(fit, quiet):
    law, lb = fit
    res = q.compute_budget(law, FAM, [1e22, 1e23], benchmarks=["bench_00", "bench_02"], n_params=6, seed=2)
    c = res.curve
    assert len(c) == 2 * 6 * 2 and c["extrapolation"].dtype == bool  # flops x sizes x benchmarks
    np.testing.assert_allclose(q.FLOPS_PER_BT * c["params"] * c["tokens"], c["flops"], rtol=1e-12)
    row = c[(c["flops"] == 1e23) & (c["benchmark"] == "bench_02")].iloc[2]
    pt = q._point(law, FAM, row["params"], row["tokens"], False, 2, "warn")["score"].sel(benchmark="bench_02")
    assert row["mean"] == pytest.approx(float(pt.mean()), rel=1e-6)
    assert row["lower"] <= row["median"] <= row["upper"]
    for (flops, b), g in c.groupby(["flops", "benchmark"]):
        best = res.best[(res.best["flops"] == flops) & (res.best["benchmark"] == b)].iloc[0]
        assert best["params"] == g.loc[g["mean"].idxmax(), "params"]
        assert best["params_lower"] <= best["params_upper"]
    thr = q.compute_budget(law, FAM, 1e23, benchmarks="bench_02", n_params=6, seed=2, threshold=0.5)
    g = thr.curve
    assert thr.best["params"].iloc[0] == g.loc[g["probability"].idxmax(), "params"]
    with pytest.raises(bs.InputError, match="flops must be positive"):
        q.compute_budget(law, FAM, [-1.0])


@pytest.mark.slow
def test_smallest_compute_at_a_fixed_ratio(fit, quiet):
    """At 20 tokens per parameter (T = 20 N) the budget is C = 6 N T; the probability at the answer, asked
    for directly, is reached; a higher probability needs at least as much compute."""
    law, lb = fit
    ans = q.smallest_compute(law, FAM, "bench_00", 0.6, 0.8, tokens_per_param=20.0, seed=2, n_grid=8)
    assert ans.reached and not ans.at_lower_end, str(ans)
    assert ans.tokens == pytest.approx(20.0 * ans.params * 1e-3, rel=1e-9)  # T = 20 N, in T and B units
    assert ans.value == pytest.approx(q.FLOPS_PER_BT * ans.params * ans.tokens, rel=1e-9)
    direct = q._point(law, FAM, ans.params, ans.tokens, False, 2, "warn")["score"].sel(benchmark="bench_00")
    assert float((direct > 0.6).mean()) >= 0.8
    harder = q.smallest_compute(law, FAM, "bench_00", 0.6, 0.9, tokens_per_param=20.0, seed=2, n_grid=8)
    assert harder.reached and harder.value >= ans.value
    assert ans.extrapolation == (not q._inside(law, ans.params, ans.tokens))


@pytest.mark.slow
def test_compute_budget_stays_where_the_data_are_and_says_why_an_optimum_is_at_an_edge(fit, quiet):
    """By default each budget's sizes train on token counts inside the fitted models' range (and are sizes
    inside theirs): every point of the curve is covered by the data. A preferred size at an end of that grid
    comes with a note saying what bounds the grid there; one inside has none."""
    law, lb = fit
    cov = law.leaderboard_.covariates
    res = q.compute_budget(law, FAM, [1e22, 1e23], n_params=6, seed=2)
    c = res.curve
    assert (c["tokens"] >= cov["tokens"].min() * (1 - 1e-9)).all() and (c["tokens"] <= cov["tokens"].max() * (1 + 1e-9)).all()
    assert (c["params"] >= cov["params"].min() * (1 - 1e-9)).all() and (c["params"] <= cov["params"].max() * (1 + 1e-9)).all()
    for _, b in res.best.iterrows():
        assert bool(b["note"]) == bool(b["at_edge"]), b.to_dict()
        if b["at_edge"]:
            assert "bounded by" in b["note"] and "not inside the grid" in b["note"]


@pytest.mark.slow
def test_each_warning_is_given_once_per_call_with_its_count(fit):
    """A question asks for many forecasts; each of their warnings (a never-seen family) comes once per call,
    counted, attributed to the caller, and again at the next call."""
    law, lb = fit
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ans = q.smallest_params(law, "acme", "bench_00", 0.6, 0.8, tokens=2.0, n_grid=6, seed=2)
        about = [w for w in caught if "'acme'" in str(w.message)]
        assert len(about) == 1, [str(w.message) for w in caught]
        assert f"(x {len(ans.grid)} in this call)" in str(about[0].message)
        assert about[0].filename == __file__
