"""Evaluation: fold construction, metrics, and the sloth protocol's counts.

No test here runs a full evaluation: fold construction is checked without
fitting, metrics on hand-computable cases, and one tiny fit checks the
plumbing (pairs table, summary keys, one compile across folds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.data import Leaderboard
from bayes_sloth.workflows.evaluation import (
    LEVELS,
    PAIR_COLUMNS,
    build_design,
    crps_from_draws,
    interval_score,
    pair_summaries,
    summarize_pairs,
)


# ------------------------------------------------------------------ fixtures
def _toy_leaderboard() -> Leaderboard:
    """3 families: A (4 models), B (3 models, one incomplete), C (1 model)."""
    rows = [
        # model, family, params, tokens, b1, b2
        ("a-7", "A", 7.0, 1.0, 0.50, 0.40),
        ("a-1", "A", 1.0, 1.0, 0.30, 0.20),
        ("a-3", "A", 3.0, 1.0, 0.40, 0.30),
        ("a-13", "A", 13.0, 1.0, 0.60, 0.50),
        ("b-2", "B", 2.0, 2.0, 0.35, np.nan),  # incomplete: smallest B, never trained on as a B training model
        ("b-4", "B", 4.0, 2.0, 0.45, 0.35),
        ("b-8", "B", 8.0, 2.0, 0.55, 0.45),
        ("c-5", "C", 5.0, 3.0, 0.42, 0.33),
    ]
    df = pd.DataFrame(rows, columns=["model", "family", "params", "tokens", "b1", "b2"])
    return bs.load_leaderboard(df, floors={"b1": 0.0, "b2": 0.0})


def _mask_by_model(design, fold):
    long = design.leaderboard.long()
    return long.assign(w=fold.obs_weight).groupby("model")["w"].agg(["all", "any"])


# ------------------------------------------------------------ fold structure
def test_folds_n1_complete_rows():
    d = build_design(_toy_leaderboard(), "leave-family-out", None, 1, "complete")
    # C has one complete row (< n+1 = 2): dropped; B's incomplete row dropped
    assert set(d.leaderboard.models) == {"a-1", "a-3", "a-7", "a-13", "b-4", "b-8"}
    assert [f.group for f in d.folds] == ["A", "B"]
    fa, fb = d.folds
    assert fa.train_models == ["a-1"] and fa.forecast_models == ["a-3", "a-7", "a-13"]
    assert fb.train_models == ["b-4"] and fb.forecast_models == ["b-8"]
    m = _mask_by_model(d, fa)
    assert m.loc["a-1", "all"] and m.loc["b-4", "all"] and m.loc["b-8", "all"]
    assert not m.loc[["a-3", "a-7", "a-13"], "any"].any()
    pairs = d.forecast_pairs()
    assert len(pairs) == (3 + 1) * 2
    assert set(pairs.loc[pairs.group == "B", "model"]) == {"b-8"}


def test_folds_all_rows_train_on_incomplete_but_forecast_the_same():
    dc = build_design(_toy_leaderboard(), "leave-family-out", None, 1, "complete")
    da = build_design(_toy_leaderboard(), "leave-family-out", None, 1, "all")
    assert set(da.leaderboard.models) == set(_toy_leaderboard().models)  # all rows, C and b-2 too
    pd.testing.assert_frame_equal(dc.forecast_pairs(), da.forecast_pairs())
    fa, fb = da.folds
    ma, mb = _mask_by_model(da, fa), _mask_by_model(da, fb)
    # holding out A: B's incomplete row and C are trained on
    assert ma.loc["b-2", "all"] and ma.loc["c-5", "all"]
    # holding out B: its training model is the smallest COMPLETE one (b-4); b-2 is held out too
    assert fb.train_models == ["b-4"]
    assert not mb.loc["b-2", "any"] and not mb.loc["b-8", "any"] and mb.loc["b-4", "all"]
    # number of masked pairs = observed pairs of held-out models
    assert (~fb.obs_weight).sum() == 1 + 2


def test_folds_n0_hold_out_whole_families():
    d = build_design(_toy_leaderboard(), "leave-family-out", None, 0, "all")
    assert [f.group for f in d.folds] == ["A", "B", "C"]
    fa = d.folds[0]
    assert fa.train_models == [] and fa.forecast_models == ["a-1", "a-3", "a-7", "a-13"]
    m = _mask_by_model(d, fa)
    assert not m.loc[["a-1", "a-3", "a-7", "a-13"], "any"].any() and m.drop(["a-1", "a-3", "a-7", "a-13"])["all"].all()


def test_folds_n2():
    d = build_design(_toy_leaderboard(), "leave-family-out", None, 2, "complete")
    assert [f.group for f in d.folds] == ["A"]  # B has only 2 complete rows
    assert d.folds[0].train_models == ["a-1", "a-3"] and d.folds[0].forecast_models == ["a-7", "a-13"]


def test_bad_options_raise():
    with pytest.raises(bs.InputError, match="protocol"):
        build_design(_toy_leaderboard(), "kfold", None, 1)
    with pytest.raises(bs.InputError, match="training_rows"):
        build_design(_toy_leaderboard(), "leave-family-out", None, 1, "some")


# ------------------------------------------------------------------ metrics
def test_crps_hand_cases():
    # point mass: CRPS = |c - y|
    assert crps_from_draws(np.full(10, 0.3), np.array(0.7)) == pytest.approx(0.4)
    # two equally likely values {0, 1}, y = 0: E|X-y| = 0.5, E|X-X'| = 0.5 -> 0.25
    assert crps_from_draws(np.array([1.0, 0.0]), np.array(0.0)) == pytest.approx(0.25)
    # uniform(0,1) at y = 0.5: 1/4 - 1/6 = 1/12 (many draws)
    u = (np.arange(20000) + 0.5) / 20000
    assert crps_from_draws(u, np.array(0.5)) == pytest.approx(1 / 12, abs=1e-6)
    # vectorized over rows
    out = crps_from_draws(np.array([[0.0, 1.0], [0.2, 0.2]]), np.array([0.0, 0.5]))
    np.testing.assert_allclose(out, [0.25, 0.3])


def test_interval_score_hand_cases():
    assert interval_score(0.2, 0.4, 0.3, 0.1) == pytest.approx(0.2)  # inside: width only
    assert interval_score(0.2, 0.4, 0.5, 0.1) == pytest.approx(0.2 + 20 * 0.1)  # above
    assert interval_score(0.2, 0.4, 0.1, 0.1) == pytest.approx(0.2 + 20 * 0.1)  # below


def test_summaries_coverage_width_and_group_mae():
    rng = np.random.default_rng(0)
    draws = rng.uniform(0, 1, size=(4, 4001))
    y = np.array([0.5, 0.5, 0.995, 0.005])
    p = pair_summaries(draws, y)
    assert list(p.columns[:3]) == ["observed", "mean", "median"]
    np.testing.assert_allclose(p["lower_90"], 0.05, atol=0.02)
    np.testing.assert_allclose(p["upper_50"], 0.75, atol=0.02)
    p["group"] = ["g1", "g1", "g2", "g2"]
    s = summarize_pairs(p)
    assert s["coverage"]["0.5"] == 0.5 and s["coverage"]["0.9"] == 0.5 and s["coverage"]["0.95"] == 0.5
    assert s["mean_width"]["0.8"] == pytest.approx(0.8, abs=0.02)
    # group MAE: g1 errors ~0, g2 errors ~0.495 each -> mean over groups of the group means
    e = np.abs(p["mean"] - y)
    assert s["mae"] == pytest.approx((e[:2].mean() + e[2:].mean()) / 2)
    assert s["n_groups"] == 2 and s["n_pairs"] == 4
    # unequal group sizes make the per-group average differ from the pooled one
    p2 = p.assign(group=["g1", "g2", "g2", "g2"])
    s2 = summarize_pairs(p2)
    assert s2["mae"] == pytest.approx((e[0] + e[1:].mean()) / 2)
    assert s2["mae"] != pytest.approx(s2["mae_pooled"])


# ------------------------------------------------------- log predictive density
def _lpd(noise, mu, sigma, y):
    """log_predictive_density of one pair from draws ``mu``/``sigma`` (one chain)."""
    import xarray as xr

    from bayes_sloth.core.model import ModelSpec
    from bayes_sloth.core.prediction import log_predictive_density

    spec = ModelSpec(n_skills=1, n_benchmarks=1, n_families=1, anchors=(0,), noise=noise)
    m = xr.DataArray(np.asarray(mu, float).reshape(1, -1, 1, 1), dims=("chain", "draw", "model", "benchmark"),
                     coords={"model": ["m"], "benchmark": ["b"]})
    s = xr.DataArray(np.asarray(sigma, float).reshape(1, -1, 1), dims=("chain", "draw", "benchmark"),
                     coords={"benchmark": ["b"]})
    out = log_predictive_density(spec, m, s, np.array([[y]]))
    assert out.dims == ("model", "benchmark")
    return float(out.values[0, 0])


def test_log_predictive_density_hand_cases():
    from math import erf, exp, log, pi, sqrt

    # Normal(0.5, 0.25) truncated to [0, 1] at its mode: phi(0) / sigma / (2 Phi(2) - 1), 2 Phi(2) - 1 = erf(sqrt 2)
    want = -log(0.25) - 0.5 * log(2 * pi) - log(erf(sqrt(2)))
    assert _lpd("normal", [0.5], [0.25], 0.5) == pytest.approx(want, abs=1e-5)  # 0.51393
    # every draw the same: the mean over draws changes nothing
    assert _lpd("normal", [0.5] * 7, [0.25] * 7, 0.5) == pytest.approx(want, abs=1e-5)
    # a score at the bound (they occur): density 1/sigma phi(2) / mass, finite
    want0 = -log(0.25) - 0.5 * log(2 * pi) - 2.0 - log(erf(sqrt(2)))
    assert _lpd("normal", [0.5], [0.25], 0.0) == pytest.approx(want0, abs=1e-5)
    # logistic, scale 0.1, at its mode: 1 / (4 s) over the mass sigmoid(5) - sigmoid(-5) = tanh(2.5)
    from math import tanh

    assert _lpd("logistic", [0.5], [0.1], 0.5) == pytest.approx(log(2.5 / tanh(2.5)), abs=1e-5)
    # a mixture of two draws: the log of the MEAN density, not the mean of the log densities
    p1 = exp(want)  # draw 1: mu 0.5 at y 0.5
    # draw 2: mu 0.25, sigma 0.25, y 0.5 (z = 1): phi(1) / 0.25 over its mass Phi(3) - Phi(-1)
    p2 = exp(-0.5) / sqrt(2 * pi) / 0.25 / (0.5 * (erf(3 / sqrt(2)) + erf(1 / sqrt(2))))
    got = _lpd("normal", [0.5, 0.25], [0.25, 0.25], 0.5)
    assert got == pytest.approx(log((p1 + p2) / 2), abs=1e-5)
    assert got > (log(p1) + log(p2)) / 2 + 1e-3  # Jensen: strictly above the mean log density
    # far tails: stays finite where the densities underflow a naive mean (log-sum-exp)
    far = _lpd("normal", [0.05, 0.06], [0.01, 0.01], 0.95)
    assert np.isfinite(far) and far < -3000


def test_log_predictive_density_missing_score_is_nan():
    assert np.isnan(_lpd("normal", [0.5, 0.4], [0.1, 0.1], np.nan))


def test_summary_elpd_is_the_mean_lpd_over_pairs():
    rng = np.random.default_rng(3)
    p = pair_summaries(rng.uniform(0, 1, size=(3, 50)), np.array([0.2, 0.5, 0.9]))
    p["group"] = ["g1", "g2", "g2"]
    p["lpd"] = [0.3, -1.2, 0.6]
    assert summarize_pairs(p)["elpd_per_pair"] == pytest.approx(-0.1)
    assert summarize_pairs(p.drop(columns="lpd"))["elpd_per_pair"] is None  # a table from before the column


# ------------------------------------------------- one tiny end-to-end check
@pytest.mark.slow
def test_evaluate_small_synthetic_end_to_end():
    lb, _ = bs.simulate_leaderboard(n_families=6, n_benchmarks=3, n_skills=1, models_per_family=(2, 3),
                                    missing=0.0, seed=1)
    # fixed anchors and a shallow tree keep it to one cheap compile (CI budget)
    res = bs.evaluation.evaluate(lb, protocol="leave-family-out", benchmark_set=None, n_train=1, n_skills=1,
                                 anchors=["bench_00"], chains=1, warmup=50, draws=50, max_tree_depth=5, seed=0)
    p = res.pairs
    assert list(p.columns[: len(PAIR_COLUMNS)]) == PAIR_COLUMNS
    assert len(p) == res.summary["n_pairs"] == sum(f.n_test_models for f in res.design.folds) * 3
    assert (p["lower_50"] <= p["upper_50"]).all() and (p["lower_95"] <= p["lower_50"]).all()
    assert (p["upper_95"] >= p["upper_90"]).all() and (p["crps"] >= 0).all()
    s = res.summary
    for key in ("mae", "coverage", "mean_width", "interval_score_90", "crps", "n_groups", "n_pairs", "seconds", "groups"):
        assert key in s
    assert set(s["coverage"]) == {str(lv) for lv in LEVELS}
    assert s["n_groups"] == len(s["groups"]) == len(res.design.folds)
    # MAE as the paper defines it: per group, then over groups (not pooled over pairs)
    per_group = (p["mean"] - p["observed"]).abs().groupby(p["group"]).mean()
    assert s["mae"] == pytest.approx(per_group.mean(), rel=1e-12)
    for lv in LEVELS:
        inside = (p[f"lower_{round(lv * 100)}"] <= p["observed"]) & (p["observed"] <= p[f"upper_{round(lv * 100)}"])
        assert s["coverage"][str(lv)] == pytest.approx(inside.mean(), rel=1e-12)
    # the log score: one finite value per pair, its mean in the summary, and equal to the package's own
    # computation from the fold's fit (kept) at the observed scores
    assert np.isfinite(p["lpd"]).all() and s["elpd_per_pair"] == pytest.approx(p["lpd"].mean())
    json.loads(res.to_json())
    # the observed column is the data, not a forecast
    m, b = p.iloc[0][["model", "benchmark"]]
    assert p.iloc[0]["observed"] == lb.scores.loc[m, b]


# ------------------------------------------------------------- real data
def _data_dir():
    d = os.environ.get("BAYES_SLOTH_DATA_DIR")
    cands = [Path(d)] if d else []
    cands.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for c in cands:
        if (c / "sloth" / "data_v2.csv").is_file():
            return c
    return None


@pytest.mark.realdata
def test_sloth_protocol_counts_match_reference():
    data = _data_dir()
    ref_dir = None if data is None else data.parent / "reference"
    if data is None or not (ref_dir / "sloth_lofo_mae_by_group.csv").is_file():
        pytest.skip("real Sloth data or ../shared/reference not found (set BAYES_SLOTH_DATA_DIR)")
    ref = pd.read_csv(ref_dir / "sloth_lofo_mae_by_group.csv")
    ref = ref[ref["method"] == "sloth_trainlink_d3"]
    path = data / "sloth" / "data_v2.csv"
    for s in ("leaderboard_v1", "leaderboard_v2", "leaderboard_v1+v2"):
        for n in (1, 2):
            want = ref[(ref["benchmarks"] == s) & (ref["n_train_models"] == n)].set_index("test_group")["n_test_models"]
            for rows in ("complete", "all"):
                d = build_design(path, "sloth", s, n, rows, protocol_file=ref_dir / "sloth_protocol.json")
                got = pd.Series({f.group: f.n_test_models for f in d.folds})
                assert sorted(got.index) == sorted(want.index), (s, n)
                assert (got[want.index] == want).all(), (s, n, rows)
                assert len(d.forecast_pairs()) == want.sum() * len(d.benchmarks)
                for f in d.folds:
                    assert len(f.train_models) == n * len(f.families)
                    held = d.leaderboard.long()["model"].isin(f.forecast_models).to_numpy()
                    assert not f.obs_weight[held].any()
    # n_train 0 uses the n = 1 groups and forecasts every complete row of them
    d0 = build_design(path, "sloth", "leaderboard_v2", 0, "all", protocol_file=ref_dir / "sloth_protocol.json")
    d1 = build_design(path, "sloth", "leaderboard_v2", 1, "all", protocol_file=ref_dir / "sloth_protocol.json")
    assert [f.group for f in d0.folds] == [f.group for f in d1.folds]
    for f0, f1 in zip(d0.folds, d1.folds):
        assert f0.n_test_models == f1.n_test_models + len(f1.families) and f0.train_models == []
