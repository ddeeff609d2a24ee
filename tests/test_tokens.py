"""Models without a token count: tokens from FLOPs, latent tokens in the fit, imputed tokens in forecasts.

The fit and forecast tests use one small simulated leaderboard with known
truth (``bayes_sloth.workflows.simulation``), with the token counts of some models
blanked: they are fitted with latent tokens (``bayes_sloth.core.model``), and the
forecast of a model whose tokens are unknown must be wider than the same
model's with its tokens known.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.data import Leaderboard

from .conftest import TINY_BENCHMARKS

# ------------------------------------------------------------------ data: FLOPs


def test_tokens_from_flops_when_missing(tiny_frame):
    """T = C / (6 N) (C in 1e21 FLOPs, N in billions, T in trillions), with a warning naming the row."""
    df = tiny_frame.copy()
    df["flops"] = 6.0 * df["params"] * df["tokens"]
    df.loc[2, "tokens"] = np.nan
    df.loc[2, "flops"] = 6.0 * df.loc[2, "params"] * 1.7  # 1.7 trillion tokens
    df.loc[4, ["tokens", "flops"]] = np.nan  # neither: stays missing (a fit gives it latent tokens)
    with pytest.warns(UserWarning, match=rf"training tokens of 1 model\(s\) computed from column 'flops' as "
                                         rf"T = C / \(6 N\): {df.loc[2, 'model']!r}"):
        lb = bs.load_leaderboard(df)
    assert lb.covariates["tokens"].iloc[2] == pytest.approx(1.7, rel=1e-12)
    assert np.isnan(lb.covariates["tokens"].iloc[4])
    assert "flops" not in lb.benchmarks  # the FLOPs column is a covariate, never a benchmark


def test_flops_disagreeing_with_tokens_warn_naming_the_row(tiny_frame):
    df = tiny_frame.copy()
    df["flops"] = 6.0 * df["params"] * df["tokens"]
    df.loc[3, "flops"] *= 1000.0  # FLOPs off by a unit
    with pytest.warns(UserWarning, match=rf"FLOPs and tokens disagree for 1 model\(s\): C / \(6 N T\) = "
                                         rf"{df.loc[3, 'model']!r} \(1e\+03\)"):
        lb = bs.load_leaderboard(df)
    assert lb.covariates["tokens"].iloc[3] == df.loc[3, "tokens"]  # the reported tokens are kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mixture-of-experts ratio (0.28) is plausible: no warning
        df.loc[3, "flops"] = 0.28 * 6.0 * df.loc[3, "params"] * df.loc[3, "tokens"]
        bs.load_leaderboard(df)


def test_raw_flops_are_refused_with_the_row_and_column(tiny_frame):
    df = tiny_frame.copy()
    df["flops"] = np.nan
    df.loc[1, "tokens"] = np.nan
    df.loc[1, "flops"] = 6.0 * df.loc[1, "params"] * 1e9 * 2e12  # raw FLOPs, not units of 1e21
    with pytest.raises(bs.InputError, match=rf"model {df.loc[1, 'model']!r} \(row 1\) has no token count .* "
                                            r"FLOPs column 'flops'.*units of 1e21"):
        bs.load_leaderboard(df)
    with pytest.raises(bs.InputError, match="has no FLOPs column 'compute'"):
        bs.load_leaderboard(tiny_frame, flops_col="compute")


# ------------------------------------------------- fit with latent tokens
#: Models whose token counts are blanked (one per family, families of 3 or more models).
N_BLANK = 5
FIT = dict(n_skills=1, chains=2, warmup=150, draws=150, seed=0, progress=False)


@pytest.fixture(scope="module")
def blanked_fit():
    lb, truth = bs.simulate_leaderboard(n_families=14, n_benchmarks=6, n_skills=1, models_per_family=(3, 4),
                                        missing=0.1, seed=11)
    cov = lb.covariates.copy()
    big = cov.groupby("family").size()
    fams = [f for f in lb.families if big[f] >= 3][:N_BLANK + 1]
    # the largest model of N_BLANK families loses its tokens; the last family's largest is kept out of the fit
    blank = [cov.index[cov["family"] == f][-1] for f in fams[:N_BLANK]]
    new = cov.index[cov["family"] == fams[-1]][-1]
    cov.loc[blank, "tokens"] = np.nan
    keep = [m for m in lb.models if m != new]
    fitted = Leaderboard(cov.loc[keep], lb.scores.loc[keep], lb.floors)
    law = bs.SkillsLaw(anchors=truth["anchors"], **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.fit(fitted)
    return law, lb, truth, blank, new


@pytest.mark.slow  # one shared fit (14 families, 6 benchmarks): 287 s at load 15-20
def test_rows_without_tokens_enter_the_fit_with_latent_tokens(blanked_fit):
    law, lb, truth, blank, _ = blanked_fit
    assert law.spec_.n_latent_tokens == N_BLANK and len(law.leaderboard_) == len(lb) - 1  # nothing dropped
    post = law.idata_.posterior
    assert list(post["latent_model"].values) == blank
    imputed = post["imputed_tokens"].values.reshape(-1, N_BLANK)
    lo, hi = np.quantile(imputed, [0.05, 0.95], axis=0)
    true = lb.covariates.loc[blank, "tokens"].to_numpy()
    # calibrated 90 % intervals cover at least 3 of 5 true counts with probability 0.99 (binomial); the
    # scores inform the counts (through the slopes), so the intervals are narrower than the learned prior
    # but never a point (5 blanked, 6 benchmarks: measured x/ 1.5-2.4 with 4 of 5 covered on 5 benchmarks)
    assert ((lo <= true) & (true <= hi)).sum() >= 3, (lo, true, hi)
    assert np.all(hi / lo > 1.2)
    assert np.isfinite(law.idata_.log_likelihood["y"].values).all()
    # recovery: the law's mean for the models with latent tokens stays close to the truth's
    tab = law.forecast(law.leaderboard_.select(models=blank, benchmarks=[]), condition=False)
    assert tab["imputed_tokens"].all()
    true_mu = pd.DataFrame(truth["mu"], index=truth["models"], columns=truth["benchmarks"]).loc[blank]
    err = np.abs(tab.set_index(["model", "benchmark"])["law_mean"]
                 - true_mu.stack().rename_axis(["model", "benchmark"])).mean()
    assert err < 0.06, err  # a model seen in the fit, its scores observed: its law mean is recovered


@pytest.mark.slow  # one shared fit (14 families, 6 benchmarks): 287 s at load 15-20
def test_unknown_tokens_widen_the_forecast(blanked_fit):
    """The same new model forecast with its tokens known and unknown: the unknown one's 90 % interval is wider."""
    law, lb, _, _, new = blanked_fit
    row = lb.covariates.loc[[new]].reset_index()
    unknown = row.assign(tokens=np.nan)
    known_tab = law.forecast(row, condition=False, seed=3)
    unknown_tab = law.forecast(unknown, condition=False, seed=3)
    assert not known_tab["imputed_tokens"].any() and unknown_tab["imputed_tokens"].all()
    w_known = (known_tab["upper"] - known_tab["lower"]).to_numpy()
    w_unknown = (unknown_tab["upper"] - unknown_tab["lower"]).to_numpy()
    assert w_unknown.mean() > 1.1 * w_known.mean(), (w_known, w_unknown)
    # the same seed and row: the unknown forecast is reproducible
    again = law.forecast(unknown, condition=False, seed=3)
    np.testing.assert_array_equal(again["mean"].to_numpy(), unknown_tab["mean"].to_numpy())


@pytest.mark.slow  # one shared fit (14 families, 6 benchmarks): 287 s at load 15-20
def test_latent_token_fit_saves_and_loads_bit_for_bit(blanked_fit, tmp_path):
    law, lb, _, blank, new = blanked_fit
    path = tmp_path / "latent.nc"
    law.save(path)
    back = bs.SkillsLaw.load(path)
    assert back.spec_.n_latent_tokens == N_BLANK
    for name in law.idata_.posterior.data_vars:
        np.testing.assert_array_equal(back.idata_.posterior[name].values, law.idata_.posterior[name].values)
    for group in ("log_likelihood", "posterior_predictive"):
        np.testing.assert_array_equal(back.idata_[group]["y"].values, law.idata_[group]["y"].values)
    rows = pd.concat([lb.covariates.loc[[blank[0]]], lb.covariates.loc[[new]].assign(tokens=np.nan)])
    a = law.predict(rows.reset_index(), condition=False).predictions["score"].values
    b = back.predict(rows.reset_index(), condition=False).predictions["score"].values
    np.testing.assert_array_equal(a, b)


def test_fit_without_latent_tokens_forecasts_a_model_without_tokens(tiny_fit):
    """A fit whose models all have tokens draws the token regression from its exact posterior (flat prior)."""
    law, _ = tiny_fit
    row = law.leaderboard_.covariates.iloc[[0]].reset_index().assign(model="brand-new")
    known = law.forecast(row, condition=False, seed=1)
    unknown = law.forecast(row.assign(tokens=np.nan), condition=False, seed=1)
    assert unknown["imputed_tokens"].all() and np.isfinite(unknown[["lower", "upper"]].to_numpy()).all()
    assert (unknown["upper"] - unknown["lower"]).mean() > (known["upper"] - known["lower"]).mean()
    # the points of predict_covariates may leave tokens unknown too (NaN)
    pts = law.predict_covariates(row["family"][0], [1.0, 2.0], np.nan, new_families="allow")
    assert pts["imputed_tokens"].values.all() and np.isfinite(pts["score"].values).all()


def test_conditioning_with_imputed_tokens_is_refused_clearly(tiny_fit):
    law, _ = tiny_fit
    row = law.leaderboard_.covariates.iloc[[0]].reset_index().assign(model="brand-new", tokens=np.nan)
    row[TINY_BENCHMARKS[0]] = 0.5
    with pytest.raises(bs.InputError, match=r"'brand-new' have no token count .* condition=False"):
        law.forecast(row)
