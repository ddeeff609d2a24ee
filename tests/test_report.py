"""Forecast report (HTML structure), `bayes-sloth report` and `bayes-sloth predict`, on synthetic data."""

import matplotlib

matplotlib.use("Agg")

import re
import warnings

import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.cli import main
from bayes_sloth.workflows.report import forecast_report, related_families, split_target_family
from bayes_sloth.workflows.simulation import write_synthetic

SMALL = ["--chains", "2", "--warmup", "100", "--draws", "100", "--skills", "2"]


@pytest.fixture(scope="module")
def synthetic():
    lb, truth = bs.simulate_leaderboard(n_families=12, n_benchmarks=6, n_skills=2, seed=0)
    return lb


def _family_with(lb, n):
    counts = lb.covariates["family"].value_counts()
    return counts[counts >= n].index[0]


@pytest.fixture(scope="module")
def report(synthetic, tmp_path_factory):
    fam = _family_with(synthetic, 3)
    out = tmp_path_factory.mktemp("rep") / "report.html"
    law = bs.SkillsLaw(n_skills=2, chains=2, warmup=100, draws=100, seed=0)
    # an instruct-tuned sibling of the forecast family, to be listed as related
    cov = synthetic.covariates.copy()
    sibling = cov.index[cov["family"] != fam][0]
    cov.loc[sibling, "family"] = f"{fam}-instruct"
    data = bs.Leaderboard(covariates=cov, scores=synthetic.scores, floors=synthetic.floors)
    terminal = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = forecast_report(data, target_family=fam, law=law, out=out, data_source="synthetic",
                              log=terminal.append)
    rep.terminal = terminal
    rep.sibling, rep.data = sibling, data
    return rep, fam


def test_split_target_family_keeps_the_smallest(synthetic):
    fam = _family_with(synthetic, 3)
    train, targets = split_target_family(synthetic, fam, n_train=1)
    members = synthetic.covariates[synthetic.covariates["family"] == fam].sort_values("params")
    assert list(train.covariates[train.covariates["family"] == fam].index) == [members.index[0]]
    assert list(targets["model"]) == list(members.index[1:])
    assert len(train) + len(targets) == len(synthetic)
    assert set(synthetic.benchmarks) <= set(targets.columns)  # observed scores come along for comparison
    with pytest.raises(bs.InputError, match="did you mean"):
        split_target_family(synthetic, fam[:-1] + "x")
    with pytest.raises(bs.InputError, match="needs at least"):
        split_target_family(synthetic, fam, n_train=len(members))


def test_report_html_is_self_contained_and_complete(report):
    rep, fam = report
    doc = rep.path.read_text()
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    for section in ("verdict", "reading", "forecasts", "figures", "diagnostics", "data", "model"):
        assert f'id="{section}"' in doc, section
    imgs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", doc)
    assert len(imgs) >= 6 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert not re.search(r"<(script|link)[^>]+(src|href)=", doc)  # nothing to fetch: opens offline
    assert "Diagnostics verdict: " + ("Converged" if rep.law.diagnostics_.ok else "NOT converged") in doc
    # one table row per forecast (model, benchmark) pair, with the observed score beside it
    body = doc.split('<table class="forecasts">')[1].split("</table>")[0]
    assert body.count("<tr") - 1 == len(rep.target_models) * len(rep.law.benchmarks_)
    assert len(rep.forecasts) == len(rep.target_models) * len(rep.law.benchmarks_)
    assert "arXiv:2412.06540" in doc and fam in doc


def test_report_reading_matches_the_numbers(report):
    rep, fam = report
    doc = rep.path.read_text()
    t = rep.forecasts.dropna(subset=["observed"])
    inside = int(((t["observed"] >= t["lower"]) & (t["observed"] <= t["upper"])).sum())
    assert f"{inside} of the {len(t)} forecast scores" in doc
    assert rep.target_models and not set(rep.target_models) & set(rep.law.leaderboard_.models)


def test_report_counts_match_the_terminal_and_forecasts_are_unconditioned(report):
    rep, fam = report
    doc = rep.path.read_text()
    n_fit = len(rep.law.leaderboard_)
    assert any(line.startswith(f"[1/4] data: {n_fit} models in the fit") for line in rep.terminal), rep.terminal
    assert f"{n_fit} models of " in doc and f"{len(rep.target_models)} model(s) to forecast" in rep.terminal[0]
    # observed scores of the targets are shown beside the forecast, never conditioned on: the report's table is
    # the unconditional forecast, which conditioning on those scores would change
    _, targets = split_target_family(rep.data, fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = rep.law.forecast(targets, condition=False)
        cond = rep.law.forecast(targets, condition=True)
    assert list(rep.forecasts["mean"]) == list(free["mean"])
    assert (cond["mean"] - free["mean"]).abs().max() > 1e-3


def test_report_lists_related_families_with_sizes(report):
    rep, fam = report
    doc = rep.path.read_text()
    row = doc.split(f"related families in the fit ({fam})")[1].split("</tr>")[0]
    params = rep.law.leaderboard_.covariates.loc[rep.sibling, "params"]
    assert f"{fam}-instruct ({params:g}B" in row


def test_related_families_by_base_name():
    fams = ["qwen2", "qwen2-instruct", "dolphin-2.9.2-qwen2", "qwen1.5", "gemma", "recurrentgemma", "gemma-it",
            "sauerkrautlm-gemma", "mixtral-8x-v0.1", "mixtral-8x-instruct-v0.1"]
    assert related_families("qwen2", fams) == ["qwen2-instruct", "dolphin-2.9.2-qwen2"]
    assert related_families("gemma", fams) == ["gemma-it", "sauerkrautlm-gemma"]
    assert related_families("mixtral-8x-instruct-v0.1", fams) == ["mixtral-8x-v0.1"]
    assert related_families("recurrentgemma", fams) == []


def test_report_requires_exactly_one_target(synthetic, tmp_path):
    with pytest.raises(bs.InputError, match="exactly one"):
        forecast_report(synthetic, out=tmp_path / "r.html", log=None)


def test_cli_report_with_new_models_of_an_unseen_family(tmp_path, capsys):
    csv = write_synthetic(tmp_path, seed=1, n_families=10, n_benchmarks=5, n_skills=2)
    new = tmp_path / "new.csv"
    pd.DataFrame({"model": ["brand-new-7b"], "family": ["brand_new"], "params": [7.0], "tokens": [2.0],
                  "instruct": [False]}).to_csv(new, index=False)
    out = tmp_path / "r.html"
    rc = main(["report", "--data", str(csv), "--target-models", str(new), "--out", str(out), *SMALL])
    assert rc == 0 and out.exists()
    err = capsys.readouterr().err
    assert "[2/4] sampling" in err and "wrote" in err
    doc = out.read_text()
    assert "Never-seen family (brand_new)" in doc
    assert main(["report", "--data", str(csv), "--target-family", "nope", "--out", str(out), *SMALL]) == 2
    assert "not in the leaderboard" in capsys.readouterr().err


def test_cli_predict_seen_and_unseen_families(report, tmp_path, capsys):
    rep, fam = report
    fit = tmp_path / "fit.nc"
    rep.law.save(fit)
    new = tmp_path / "new.csv"
    pd.DataFrame({"model": ["seen-30b", "unseen-30b"], "family": [fam, "some_new_family"],
                  "params": [30.0, 30.0], "tokens": [3.0, 3.0], "instruct": [False, False]}).to_csv(new, index=False)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(fit), "--data", str(new), "--interval", "0.8", "--out", str(out)]) == 0
    preds = pd.read_csv(out)
    J = len(rep.law.benchmarks_)
    assert len(preds) == 2 * J and set(preds["model"]) == {"seen-30b", "unseen-30b"}
    assert ((preds["lower"] <= preds["mean"]) & (preds["mean"] <= preds["upper"])).all()
    # the command line gives exactly what the Python API gives for the same fit and seed
    api = rep.law.forecast(str(new), level=0.8)
    merged = preds.merge(api, on=["model", "benchmark"], suffixes=("", "_api"))
    assert len(merged) == 2 * J
    assert (merged["lower"] - merged["lower_api"]).abs().max() < 1e-5
    assert (merged["family"] == merged["family_api"]).all()
    # every prediction output says which families were seen, and which rows extrapolate
    assert preds.groupby("model")["seen_family"].first().to_dict() == {"seen-30b": True, "unseen-30b": False}
    assert preds["extrapolation"].dtype == bool
    capsys.readouterr()
    assert main(["predict", str(fit), "--data", str(new)]) == 0  # to stdout
    assert capsys.readouterr().out.startswith("model,family,seen_family,extrapolation,benchmark,mean")


def test_report_forecasts_a_model_without_tokens_and_refuses_one_without_parameters(report, tmp_path):
    """A target without a token count is forecast with imputed tokens (as SkillsLaw.forecast does) and marked
    so in the table; a target without a parameter count is refused, naming it."""
    rep, fam = report
    new = pd.DataFrame({"model": ["with-tokens-30b", "no-tokens-30b"], "family": [fam, fam],
                        "params": [30.0, 30.0], "tokens": [3.0, float("nan")], "instruct": [False, False]})
    terminal = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = forecast_report(rep.data, target_models=new, law=rep.law, out=tmp_path / "r.html", log=terminal.append)
    imputed = out.forecasts.groupby("model")["imputed_tokens"].first().to_dict()
    assert imputed == {"with-tokens-30b": False, "no-tokens-30b": True}
    doc = out.path.read_text()
    assert doc.count("no-tokens-30b <small>(tokens imputed)</small>") == len(rep.law.benchmarks_)
    assert "with-tokens-30b <small>" not in doc
    assert any("1 without a token count" in line for line in terminal)
    # the unknown token count widens the interval of the same model
    width = (out.forecasts["upper"] - out.forecasts["lower"]).groupby(out.forecasts["model"]).mean()
    assert width["no-tokens-30b"] > width["with-tokens-30b"]
    with pytest.raises(bs.InputError, match="'no-params-30b'.*parameter count is missing"):
        forecast_report(rep.data, target_models=new.assign(model=["a", "no-params-30b"], params=[30.0, None]),
                        law=rep.law, out=tmp_path / "r2.html", log=None)
    assert not (tmp_path / "r2.html").exists()
