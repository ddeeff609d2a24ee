"""Figures and rotation, on a small synthetic fit (no real data needed)."""

import matplotlib

matplotlib.use("Agg")

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import bayes_sloth as bs
from bayes_sloth import plots
from bayes_sloth.core.rotation import align, rotate_posterior, varimax


@pytest.fixture(scope="module")
def fitted():
    lb, truth = bs.simulate_leaderboard(n_families=12, n_benchmarks=6, n_skills=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = bs.SkillsLaw(n_skills=2, chains=2, warmup=100, draws=100, seed=0).fit(lb)
    return law, lb


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.mark.slow
def test_scaling_curves_mark_fitted_and_forecast_models(fitted):
    law, lb = fitted
    fam = lb.covariates["family"].value_counts().index[0]
    new = pd.DataFrame({"model": ["big-new", "other-new"], "family": [fam, "never_seen_family"],
                        "params": [120.0, 3.0], "tokens": [5.0, 2.0], "instruct": [False, False],
                        lb.benchmarks[0]: [0.8, 0.5]})
    fig = plots.plot_scaling(law, [fam, "never_seen_family"], new=new, seed=1)
    assert isinstance(fig, Figure)
    axes = [ax for ax in _visible(fig) if ax.get_title()]
    assert [ax.get_title() for ax in axes] == lb.benchmarks
    assert all(ax.get_xscale() == "log" for ax in axes)
    assert "parameters (billions" in axes[-1].get_xlabel()
    assert "score" in axes[0].get_ylabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("never seen" in t for t in legend)
    assert any("forecast" in t for t in legend)
    fig2 = plots.plot_scaling(law, fam, x="compute", benchmarks=lb.benchmarks[:2])
    assert "FLOPs" in _visible(fig2)[-1].get_xlabel() and len([a for a in _visible(fig2) if a.get_title()]) == 2


@pytest.mark.slow
def test_scaling_rejects_bad_options(fitted):
    law, lb = fitted
    with pytest.raises(bs.InputError, match="x must be"):
        plots.plot_scaling(law, lb.families[0], x="flops")
    with pytest.raises(bs.InputError, match="not in the fit"):
        plots.plot_scaling(law, lb.families[0], benchmarks=["nope"])
    with pytest.raises(bs.InputError, match="neither in the fit"):
        plots.plot_scaling(law, "ghost")


@pytest.mark.slow
def test_loadings_heatmap_marks_fixed_cells(fitted):
    law, _ = fitted
    fig = plots.plot_loadings(law)
    texts = [t.get_text() for t in fig.axes[0].texts]
    n_fixed = int((law.spec_.loading_structure >= 0).sum())
    assert sum("fixed" in t for t in texts) == n_fixed
    assert len(texts) == law.spec_.n_benchmarks * law.spec_.n_skills
    fig_r = plots.plot_loadings(law, rotated=True)
    assert not any("fixed" in t.get_text() for t in fig_r.axes[0].texts)
    assert "varimax" in fig_r.axes[0].get_title()


@pytest.mark.slow
def test_skills_forest_includes_forecast_models(fitted):
    law, lb = fitted
    models = lb.models[:5]
    new = pd.DataFrame({"model": ["n1"], "family": [lb.families[0]], "params": [10.0], "tokens": [3.0]})
    fig = plots.plot_skills(law, models, new=new)
    assert len(fig.axes) == law.spec_.n_skills
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sorted(labels) == sorted(models + ["n1"])
    with pytest.raises(bs.InputError):
        plots.plot_skills(law, ["not-a-model"])


@pytest.mark.slow
def test_ppc_titles_report_coverage(fitted):
    law, lb = fitted
    fig = plots.plot_ppc(law)
    titles = [ax.get_title() for ax in _visible(fig)]
    assert len(titles) == len(lb.benchmarks) and all("inside 90%" in t for t in titles)
    fig = plots.plot_ppc(law, lb.benchmarks[:2], kind="hist", n_draws=5)
    assert len(_visible(fig)) == 2


def test_coverage_from_pairs_counts_correctly():
    pairs = pd.DataFrame({"observed": [0.1, 0.5, 0.9, np.nan],
                          "lower_50": [0.0, 0.6, 0.8, 0.0], "upper_50": [0.2, 0.7, 0.95, 1.0],
                          "lower_90": [0.0, 0.4, 0.8, 0.0], "upper_90": [0.3, 0.8, 0.95, 1.0]})
    cov = plots.coverage_from_pairs(pairs)
    assert list(cov["nominal"]) == [0.5, 0.9]
    assert cov["empirical"].tolist() == pytest.approx([2 / 3, 1.0])
    assert cov["n"].tolist() == [3, 3]
    with pytest.raises(bs.InputError):
        plots.coverage_from_pairs(pairs, levels=[0.8])


def test_calibration_from_pairs_and_from_dict():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=200)
    pairs = pd.DataFrame({"observed": y})
    for q in (0.5, 0.8, 0.9, 0.95):
        pairs[f"lower_{int(q * 100)}"] = 0.5 - q / 2
        pairs[f"upper_{int(q * 100)}"] = 0.5 + q / 2
    fig = plots.plot_calibration(pairs, label="uniform")
    ax = fig.axes[0]
    line = [ln for ln in ax.get_lines() if ln.get_label() != "perfect calibration" and len(ln.get_xdata()) == 4][0]
    assert np.allclose(line.get_ydata(), [np.mean(np.abs(y - 0.5) <= q / 2) for q in (0.5, 0.8, 0.9, 0.95)])
    assert "nominal" in ax.get_xlabel() and "empirical" in ax.get_ylabel()

    class Result:  # the shape of bayes_sloth.workflows.evaluation's EvaluationResult
        summary = {"coverage": {"0.5": 0.4, "0.9": 0.8}}

    fig2 = plots.plot_calibration(Result(), label="run")
    pts = [ln for ln in fig2.axes[0].get_lines() if len(ln.get_xdata()) == 2 and ln.get_label() != "perfect calibration"]
    assert np.allclose(pts[0].get_ydata(), [0.4, 0.8])
    with pytest.raises(bs.InputError):
        plots.plot_calibration([1, 2, 3])


@pytest.mark.slow
def test_diagnostics_plots_select_worst_parameters(fitted):
    law, _ = fitted
    fig = plots.plot_diagnostics(law, "trace")
    titles = {ax.get_title() for ax in fig.axes}
    assert {"tau", "slopes", "sigma"} <= titles
    assert sum("[" in t for t in titles) >= 1  # worst R-hat parameters are added
    assert isinstance(plots.plot_diagnostics(law, "rank"), Figure)
    assert isinstance(plots.plot_diagnostics(law, "energy"), Figure)
    with pytest.raises(bs.InputError):
        plots.plot_diagnostics(law, "pair")


@pytest.mark.slow
def test_forecast_interval_figure(fitted):
    law, lb = fitted
    new = lb.to_frame().reset_index().head(3)
    tab = law.forecast(new, level=0.8)
    fig = plots.plot_forecasts(tab)
    assert [ax.get_title() for ax in _visible(fig)] == lb.benchmarks
    assert "80%" in fig._suptitle.get_text()


# ------------------------------------------------------------- rotation
def test_varimax_recovers_simple_structure():
    simple = np.array([[1.0, 0], [0.9, 0], [0.8, 0], [0, 1.0], [0, 0.7], [0, 0.9]])
    a = 0.6
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rot, Q = varimax(simple @ R)
    assert np.allclose(Q @ Q.T, np.eye(2), atol=1e-8)
    P = align(rot, simple)
    assert np.allclose(rot @ P, simple, atol=1e-6)


def test_align_undoes_signed_permutations():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(7, 3))
    perm = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)
    noisy = np.stack([ref @ perm + 0.01 * rng.normal(size=ref.shape), ref + 0.01 * rng.normal(size=ref.shape)])
    P = align(noisy, ref)
    assert np.allclose(P[0], perm.T) and np.allclose(P[1], np.eye(3))


@pytest.mark.slow
def test_rotate_posterior_keeps_the_law_and_aligns_draws(fitted):
    law, _ = fitted
    post = law.idata_.posterior
    rot = rotate_posterior(law)
    L = law.loadings_.transpose("chain", "draw", "benchmark", "skill").values
    T = post["skills"].transpose("chain", "draw", "model", "skill").values
    Lr, Tr = rot["loadings"].values, rot["skills"].values
    assert np.allclose(np.einsum("csnk,csjk->csnj", T, L), np.einsum("csnk,csjk->csnj", Tr, Lr), atol=1e-4)
    Q = rot["rotation"].values
    assert np.allclose(np.einsum("cski,cskj->csij", Q, Q), np.eye(L.shape[-1]), atol=1e-6)
    # aligned: every draw is closer to the mean rotated loadings than any signed permutation of itself
    mean = Lr.mean(axis=(0, 1))
    flat = Lr.reshape(-1, *Lr.shape[2:])
    assert np.allclose(align(flat, mean), np.eye(L.shape[-1]))
    assert (mean.sum(axis=0) > 0).all()
