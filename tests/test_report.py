"""Forecast report (HTML structure), `bayes-sloth report` and `bayes-sloth predict`, on synthetic data."""

import matplotlib

matplotlib.use("Agg")

import os
import re
import shutil
import subprocess
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_report_reading_matches_the_numbers(report):
    rep, fam = report
    doc = rep.path.read_text()
    t = rep.forecasts.dropna(subset=["observed"])
    inside = int(((t["observed"] >= t["lower"]) & (t["observed"] <= t["upper"])).sum())
    assert f"{inside} of the {len(t)} forecast scores" in doc
    assert rep.target_models and not set(rep.target_models) & set(rep.law.leaderboard_.models)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_report_requires_exactly_one_target(synthetic, tmp_path):
    with pytest.raises(bs.InputError, match="exactly one"):
        forecast_report(synthetic, out=tmp_path / "r.html", log=None)


@pytest.mark.slow
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
    # progress was on (the command line's display object) and the data came from a local file: the report shows
    # the law's configuration without the display, and the file by its name only
    assert _html_problems(doc, forbidden=[str(tmp_path), "LineDisplay", "progress="]) == []
    assert csv.name in doc
    assert main(["report", "--data", str(csv), "--target-family", "nope", "--out", str(out), *SMALL]) == 2
    assert "not in the leaderboard" in capsys.readouterr().err


@pytest.mark.slow
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


@pytest.mark.slow
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


#: What a report must never show: a folder of the machine that wrote it, or a Python object's repr.
_LOCAL_PATH = re.compile(r"(?<![\w.:/])/(home|root|tmp|work|Users|var|private|mnt|opt)/")


def _html_problems(doc: str, forbidden=()) -> list:
    """What makes a report unfit to share or to read on a phone (checked on every report the tests write)."""
    out = []
    if '<meta name="viewport" content="width=device-width, initial-scale=1">' not in doc:
        out.append("no viewport meta tag: phones render it at desktop width")
    if " object at 0x" in doc or re.search(r"&lt;[\w.]+ object", doc):
        out.append("an object repr")
    if _LOCAL_PATH.search(doc):
        out.append(f"a local path: {_LOCAL_PATH.search(doc).group(0)}")
    for text in forbidden:
        if text in doc:
            out.append(f"{text!r}")
    tables = doc.count("<table")
    if tables != doc.count('<div class="scroll"><table'):
        out.append("a table outside a horizontally scrolling box")
    if "@media (max-width:600px)" not in doc or "max-width:100%" not in doc:
        out.append("no narrow-screen CSS")
    return out


@pytest.mark.slow
def test_report_html_fits_any_screen_and_shows_nothing_local(report):
    """A viewport meta tag, every table in a box that scrolls sideways (never the page), images no wider than
    the screen, no local path and no object repr; the loadings heatmap has its heading, and the back-test
    says that the forecast family's instruct sibling was in the fit."""
    rep, fam = report
    doc = rep.path.read_text()
    assert _html_problems(doc, forbidden=[str(rep.path.parent)]) == []
    assert doc.index('<h3 id="loadings">') < doc.index('alt="loadings heatmap"')
    reading = doc.split('id="reading"')[1].split("<h2")[0]
    assert "Caution for this back-test" in reading and f"{fam}-instruct" in reading, reading


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}: the report's layout is checked in a "
                                                          "headless browser only where one is installed")
@pytest.mark.parametrize("width", [390, 1280])
def test_report_fits_the_screen_in_a_browser(report, tmp_path, width):
    """Rendered by headless Chromium in a frame of a phone's width (390 px; a headless window is at least 500 px
    wide) and of a laptop's (1280 px): the page is no wider than the screen (tables scroll inside their box)
    and no image overflows it."""
    rep, fam = report
    shutil.copy(rep.path, tmp_path / "report.html")
    probe = ("<!DOCTYPE html><html><body style='margin:0'>"
             f"<iframe id='f' src='report.html' style='border:0;width:{width}px;height:900px'></iframe>"
             "<script>document.getElementById('f').addEventListener('load',function(){"
             "var d=this.contentDocument, w=d.documentElement.clientWidth;"
             "var imgs=[].slice.call(d.images).filter(function(i){return i.getBoundingClientRect().right>w+1;});"
             "var p=document.createElement('pre');p.textContent='PROBE '+d.documentElement.scrollWidth+' '+w+' '"
             "+imgs.length;document.body.appendChild(p);});</script></body></html>")
    page = tmp_path / "page.html"
    page.write_text(probe)
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--allow-file-access-from-files", "--window-size=1400,1000", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"PROBE (\d+) (\d+) (\d+)", run.stdout)
    assert found, run.stderr[-2000:]
    scroll, client, wide_images = map(int, found.groups())
    assert client == width, (client, width)
    assert scroll <= client and wide_images == 0, (scroll, client, wide_images)
