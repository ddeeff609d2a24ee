r"""A forecast report: one self-contained HTML file (images embedded, opens offline).

Two ways to say what to forecast:

- ``target_family="qwen2"``: the Sloth paper's protocol. The family's
  ``n_train`` smallest models (by parameters) are fitted together with every
  other family; its larger models are forecast as if never seen, and their
  observed scores are shown next to the forecasts (observed vs forecast).
- ``target_models=DataFrame or CSV``: new models (model, family, params,
  tokens[, instruct][, observed scores]); the law is fitted to the whole
  leaderboard except models of the same names, and they are forecast. A
  family not in the leaderboard is forecast as a never-seen family.

The report has: the data used (source, sha256, counts), the model and its
settings, convergence diagnostics with a verdict, forecasts as a table and as
figures (scaling curves, intervals), posterior checks, and a short
plain-language reading of the uncertainty. From Python::

    >>> rep = forecast_report(load_sloth(), target_family="qwen2", out="report.html")  # doctest: +SKIP

and from the command line: ``bayes-sloth report --target-family qwen2 --out report.html``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import __version__
from ..core.data import read_new_models, split_family
from ..core.diagnostics import BFMI_MIN, ESS_MIN, RHAT_MAX
from ..core.errors import InputError
from ..core.estimator import SkillsLaw
from ..core.io import check_output_path, write_text
from ..core.model import describe
from . import plots


@dataclass
class ForecastReport:
    """Result of :func:`forecast_report`: where the file is, the fit, the forecasts."""

    path: Path
    law: object
    forecasts: pd.DataFrame
    train_models: list
    target_models: list


def split_target_family(lb, family: str, n_train: int = 1):
    r"""Split a leaderboard for forecasting a family from its smallest models.

    The rule is :func:`bayes_sloth.core.data.split_family` (the evaluation's too):
    the family's models with parameters and tokens, ordered by parameters;
    the ``n_train`` smallest stay in the training leaderboard with every
    other family, the rest become targets.

    Returns
    -------
    train : Leaderboard
        All models except the family's larger ones.
    targets : DataFrame
        The larger models: model, family, params, tokens, instruct and their
        observed scores (for comparison, never used in the fit).
    """

    _, targets = split_family(lb, family, n_train)
    train = lb.select(models=[m for m in lb.models if m not in set(targets)])
    frame = lb.to_frame().loc[targets].reset_index()
    return train, frame


#: Words in a family's name that mark a tuned variant of a base family (``qwen2-instruct`` of ``qwen2``).
TUNING_WORDS = frozenset({"instruct", "chat", "it", "sft", "dpo", "rlhf", "base", "hf"})


def _base_words(family: str) -> tuple:
    words = [w for w in re.split(r"[-_\s]+", str(family).lower()) if w]
    return tuple(w for w in words if w not in TUNING_WORDS)


def _contains(words: tuple, part: tuple) -> bool:
    return bool(part) and any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def related_families(family: str, families) -> list:
    r"""Other families whose names share ``family``'s base: tuned variants and fine-tunes of the same base.

    A name is split into words at ``-``, ``_`` and spaces, and the tuning
    words (:data:`TUNING_WORDS`: instruct, chat, it, ...) are dropped; two
    families are related when one's remaining words appear, in order and
    together, in the other's: ``qwen2``, ``qwen2-instruct`` and
    ``dolphin-2.9.2-qwen2`` are related; ``gemma`` and ``recurrentgemma`` are
    not. A naming heuristic, said as such in the report: the law itself gives
    every family its own efficiency and does not tie related ones.
    """
    base = _base_words(family)
    out = []
    for f in families:
        if f == family:
            continue
        other = _base_words(f)
        if other == base or _contains(other, base) or _contains(base, other):
            out.append(f)
    return out


def _related_rows(fit_cov: pd.DataFrame, family: str, target_params) -> str:
    """Related families of the fit with their models' sizes; * marks the sizes of forecast models."""
    sizes = {round(float(p), 3) for p in target_params}
    parts = []
    for f in related_families(family, pd.unique(fit_cov["family"])):
        ps = sorted(fit_cov.loc[fit_cov["family"] == f, "params"].astype(float))
        parts.append(f"{f} ({', '.join(f'{p:g}B' + ('*' if round(p, 3) in sizes else '') for p in ps)})")
    return "; ".join(parts)


def _read_targets(target_models, benchmarks) -> pd.DataFrame:

    return read_new_models(target_models, benchmarks).to_frame().reset_index()


def _fig_to_img(fig, alt: str, dpi: int = 110) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>'


def _pts(x: float) -> str:
    """A score difference in percentage points."""
    return f"{100 * x:.1f} pts"


def reading(table: pd.DataFrame, diagnostics, *, level: float, unseen: list, target_family: str | None,
            train_of_family: list, related: str = "") -> list[str]:
    r"""A short plain-language reading of the forecasts' uncertainty (list of sentences/paragraphs).

    Everything in it is computed from the forecast table: interval widths
    ``upper - lower`` per benchmark, and where observed scores exist, the
    share inside the interval and the mean absolute error of the forecast
    mean.
    """
    out = []
    w = (table["upper"] - table["lower"])
    by_b = w.groupby(table["benchmark"]).median().sort_values()
    out.append(
        f"Each forecast is a posterior predictive distribution: it counts uncertainty about the law itself and the "
        f"spread of real models around the law. A {level:.0%} interval should contain the actual score "
        f"{level:.0%} of the time if the model is right."
    )
    out.append(
        f"The typical (median) width of the {level:.0%} intervals is {_pts(float(w.median()))} of score; they are "
        f"narrowest on {by_b.index[0]} ({_pts(float(by_b.iloc[0]))}) and widest on {by_b.index[-1]} "
        f"({_pts(float(by_b.iloc[-1]))})."
    )
    if target_family is not None:
        seen = ", ".join(train_of_family) if train_of_family else "none of its models"
        out.append(
            f"The family {target_family} was seen only through {seen}; its efficiency is learned from "
            f"{'that' if len(train_of_family) == 1 else 'those'} and pooled toward the other families, "
            "so the forecasts for its larger models lean on how other families scale."
        )
        if related:
            out.append(
                f"Caution for this back-test: the fit contains related families of {target_family}: {related} "
                "(* marks a model of the same size as a forecast one, such as its instruction-tuned sibling). The "
                "law gives each family its own efficiency and does not tie them, but their scores still inform "
                "the slopes and the instruct shift it shares across families at these sizes, so this check is "
                "easier than forecasting a family with no relatives in the data."
            )
    if unseen:
        out.append(
            f"Never-seen famil{'y' if len(unseen) == 1 else 'ies'} ({', '.join(unseen)}): the efficiency is "
            "drawn from the population of families, which is why these intervals are wide; they are honest "
            "about not knowing how good the recipe is."
        )
    if "observed" in table and table["observed"].notna().any():
        t = table[table["observed"].notna()]
        inside = ((t["observed"] >= t["lower"]) & (t["observed"] <= t["upper"]))
        err = (t["mean"] - t["observed"]).abs()
        bias = float((t["mean"] - t["observed"]).mean())
        out.append(
            f"{int(inside.sum())} of the {len(t)} forecast scores that have actually been observed "
            f"({inside.mean():.0%}) fall inside their {level:.0%} interval; the mean absolute error of the "
            f"forecast mean is {_pts(float(err.mean()))}, and on average the forecasts are "
            f"{'below' if bias < 0 else 'above'} the observed scores by {_pts(abs(bias))}. "
            "These are few, correlated checks (scores of one model move together): a rough sign, not a proof "
            "of calibration."
        )
    if not diagnostics.ok:
        out.append(
            "The sampler reported problems (see Diagnostics): treat these numbers as provisional and refit "
            "with more warm-up and draws before relying on them."
        )
    return out


_CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45;overflow-wrap:break-word}
.scroll{max-width:100%;overflow-x:auto}
code{overflow-wrap:anywhere}
@media (max-width:600px){body{margin:1em auto;padding:0 .6em}table{font-size:.78em}th,td{padding:2px 4px}
h1{font-size:1.3em}nav a{display:inline-block;margin:.2em .8em .2em 0}}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.sub{color:#666;margin-top:0}
.verdict{padding:.8em 1em;border-radius:6px;margin:1em 0;font-weight:600}
.ok{background:#e6f4ea;border:1px solid #34a853}.bad{background:#fde8e6;border:1px solid #d93025}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f4f4f4}
td.l,th.l{text-align:left}
tr.out td{background:#fff4e5}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}
.kv td{text-align:left} .kv td:first-child{color:#555;white-space:nowrap}
.legend{font-size:.85em;color:#555}
nav a{margin-right:1em}
"""


def _kv(rows) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="scroll"><table class="kv">{cells}</table></div>'


def _forecast_table_html(table: pd.DataFrame, level: float) -> str:
    has_obs = "observed" in table and table["observed"].notna().any()
    head = ["model", "family", "benchmark", "forecast mean", f"{level:.0%} interval"]
    if has_obs:
        head += ["observed", "inside?"]
    rows = []
    for _, r in table.iterrows():
        note = " <small>(tokens imputed)</small>" if bool(r.get("imputed_tokens", False)) else ""
        cells = [f'<td class="l">{html.escape(str(r["model"]))}{note}</td>',
                 f'<td class="l">{html.escape(str(r.get("family", "")))}</td>',
                 f'<td class="l">{html.escape(str(r["benchmark"]))}</td>',
                 f"<td>{r['mean']:.3f}</td>", f"<td>[{r['lower']:.3f}, {r['upper']:.3f}]</td>"]
        cls = ""
        if has_obs:
            o = r.get("observed")
            if pd.notna(o):
                inside = r["lower"] <= o <= r["upper"]
                cells += [f"<td>{o:.3f}</td>", f"<td>{'yes' if inside else 'NO'}</td>"]
                cls = "" if inside else ' class="out"'
            else:
                cells += ["<td>not observed</td>", "<td></td>"]
        rows.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    th = "".join(f'<th class="l">{h}</th>' if i < 3 else f"<th>{h}</th>" for i, h in enumerate(head))
    return (f'<div class="scroll"><table class="forecasts"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table></div>")


def _draws_text(law) -> str:
    """The draws a fitted law kept per chain: with ``draws="auto"``, how many it drew before it stopped (checks
    passed, a divergence or the cap; the diagnostics say which)."""
    n = int(law.idata_.posterior.sizes["draw"])
    return (f"{n} draws; draws='auto': until the checks pass, at most {law.max_draws}" if law.draws == "auto"
            else f"{n} draws")


def _law_repr(law) -> str:
    """The law's configuration as code (what differs from the defaults), without the progress display: how a
    fit was watched is not part of the model."""
    defaults = type(law)().get_params()
    args = [f"{k}={v!r}" for k, v in law.get_params().items()
            if k != "progress" and (k == "n_skills" or _differs(v, defaults[k]))]
    return f"{type(law).__name__}({', '.join(args)})"


def _differs(a, b) -> bool:
    try:
        return bool(a != b)
    except Exception:
        return True


_ABS_PATH = re.compile(r"(?<![\w.:/])(?:/|~/|[A-Za-z]:[\\/])[^\s()<>\"']+")


def shown_source(text: str) -> str:
    """A data source as the report shows it: a local file by its name only (a report is shared; the folders of
    the machine that wrote it are not its business), URLs as they are."""
    return _ABS_PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1] or m.group(0), str(text))


def render_html(law, table: pd.DataFrame, targets: pd.DataFrame, *, level: float, title: str,
                data_source: str, target_family: str | None = None, train_of_family: list | None = None,
                n_train: int | None = None, dropped: list | None = None, seed: int | None = None) -> str:
    """Build the report's HTML (a string) from a fitted law and its forecast table."""

    lb = law.leaderboard_
    d = law.diagnostics_
    unseen = sorted(set(targets["family"]) - set(law.families_))
    verdict_cls = "ok" if d.ok else "bad"
    verdict = ("Converged: every check passed (R-hat, effective sample size, divergences, E-BFMI)."
               if d.ok else f"NOT converged: {len(d.problems)} problem(s). Forecasts below are provisional.")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="sub">bayes_sloth {html.escape(__version__)}, '
             f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
             '<nav><a href="#reading">Reading</a><a href="#forecasts">Forecasts</a><a href="#figures">Intervals</a>'
             '<a href="#diagnostics">Diagnostics</a><a href="#data">Data</a><a href="#model">Model</a></nav>',
             f'<div class="verdict {verdict_cls}" id="verdict">Diagnostics verdict: {html.escape(verdict)}</div>']

    parts.append('<h2 id="reading">What the forecasts say, in plain words</h2>')
    related = "" if target_family is None else _related_rows(lb.covariates, target_family, targets["params"])
    for p in reading(table, d, level=level, unseen=unseen, target_family=target_family,
                     train_of_family=train_of_family or [], related=related):
        parts.append(f"<p>{html.escape(p)}</p>")

    parts.append('<h2 id="forecasts">Forecasts</h2>')
    parts.append(f'<p class="legend">{len(targets)} model(s) x {len(law.benchmarks_)} benchmarks. '
                 f"Forecast mean and central {level:.0%} posterior predictive interval of each score (a fraction in "
                 "[0, 1]). Observed scores, where they exist, were NOT used in the fit; rows outside their interval "
                 "are shaded.</p>")
    fams = list(pd.unique(targets["family"]))
    parts.append("<h3>Scaling curves</h3>")
    parts.append('<p class="legend">Score against parameters for the forecast famil'
                 f"{'y' if len(fams) == 1 else 'ies'}: posterior mean of the law (line), 50 % and 90 % predictive "
                 "bands; filled circles are models in the fit, diamonds the forecasts with 90 % intervals, open "
                 "circles the observed scores of forecast models (not in the fit).</p>")
    parts.append(_fig_to_img(plots.plot_scaling(law, fams, new=targets, seed=seed), "scaling curves"))
    parts.append("<h3>Forecast table</h3>")
    parts.append(_forecast_table_html(table, level))
    parts.append('<h3 id="figures">Forecast intervals</h3>')
    parts.append(_fig_to_img(plots.plot_forecasts(table), "forecast intervals"))

    parts.append('<h2 id="diagnostics">Diagnostics</h2>')
    parts.append(f"<pre>{html.escape(str(d))}</pre>")
    parts.append(f'<p class="legend">Thresholds: R-hat &le; {RHAT_MAX}, bulk and tail ESS &ge; {ESS_MIN}, no '
                 f"divergent transitions, E-BFMI &ge; {BFMI_MIN} (Vehtari et al. 2021).</p>")
    parts.append("<h3>Posterior predictive check</h3>")
    parts.append('<p class="legend">Every observed score in the fit against its replicated 90 % interval. '
                 "About 90 % of the points should lie inside (blue); the title of each panel gives the share.</p>")
    parts.append(_fig_to_img(plots.plot_ppc(law), "posterior predictive check"))
    parts.append("<h3>Traces and energy</h3>")
    parts.append('<p class="legend">Population-level parameters and the three parameters with the highest R-hat; '
                 "chains should overlap and look like noise.</p>")
    parts.append(_fig_to_img(plots.plot_diagnostics(law, "trace"), "trace plot", dpi=80))
    parts.append(_fig_to_img(plots.plot_diagnostics(law, "energy"), "energy plot", dpi=90))

    parts.append('<h2 id="data">Data used</h2>')
    cov = lb.covariates
    rows = [("source", html.escape(shown_source(data_source))),
            ("table sha256 (content)", f"<code>{lb.sha256()}</code>"),
            ("models in the fit", f"{len(lb)} models of {cov['family'].nunique()} families"),
            ("benchmarks", html.escape(", ".join(law.benchmarks_))),
            ("observed scores in the fit", f"{lb.n_observed} of {lb.scores.size} (missing ones are left out "
             "of the likelihood, not imputed)"),
            ("parameters", f"{cov['params'].min():.2g} to {cov['params'].max():.3g} billion"),
            ("training tokens", f"{cov['tokens'].min():.2g} to {cov['tokens'].max():.3g} trillion")]
    if target_family is not None:
        rows.append(("forecast family", f"{html.escape(target_family)}: fitted on its {n_train} smallest "
                     f"({html.escape(', '.join(train_of_family or []))}); forecast: "
                     f"{html.escape(', '.join(targets['model']))}"))
    else:
        rows.append(("forecast models", html.escape(", ".join(targets["model"]))))
    for fam in (pd.unique(targets["family"]) if len(targets) else []):
        rel = _related_rows(cov, fam, targets.loc[targets["family"] == fam, "params"])
        if rel:
            rows.append((f"related families in the fit ({html.escape(str(fam))})",
                         html.escape(rel) + '<br><span class="legend">by name: tuned variants and fine-tunes of the '
                         "same base; * the size of a forecast model. The law gives each family its own efficiency; "
                         "their scores are not used as this family's.</span>"))
    if dropped:
        rows.append(("left out", html.escape(f"{len(dropped)} model(s) without parameters: "
                                             + ", ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else ""))))
    parts.append(_kv(rows))

    parts.append('<h2 id="model">Model and settings</h2>')
    spec = law.spec_
    parts.append(_kv([
        ("estimator", f"<code>{html.escape(_law_repr(law))}</code>"),
        ("skills K", spec.n_skills),
        ("anchors", html.escape(", ".join(f"skill {k + 1}: {a}" for k, a in enumerate(law.anchors_)))),
        ("link / noise / loadings", html.escape(f"{spec.link} / {spec.noise} / {spec.loadings}")),
        ("sampler", html.escape(f"NUTS, {law.chains} chains x ({law.warmup} warm-up + {_draws_text(law)}), "
                                f"target_accept {law.target_accept_:g}"
                                + (" (auto)" if law.target_accept == "auto" else "") + f", seed {law.seed}")),
        ("sampling time", f"{law.fit_seconds_:.1f} s"),
    ]))

    parts.append(
        f"<pre>{html.escape(describe(spec))}</pre>"
        '<p class="legend">The law as fitted, generated from its structure (<code>bayes_sloth.core.model.describe</code>; '
        "the math with its reasons is in <code>bayes_sloth/core/model.py</code>).</p>"
        "<p>A Bayesian version of the Sloth skills scaling law (Maia Polo, Somerstep, Choshen, Sun, Yurochkin, "
        "<i>Sloth: scaling laws for LLM skills to predict multi-benchmark performance across families</i>, "
        "arXiv:2412.06540).</p>")
    parts.append('<h3 id="loadings">Loadings: which benchmarks each skill drives</h3>')
    parts.append('<p class="legend">Posterior mean loading of each benchmark (rows) on each skill (columns, named by '
                 "their anchor benchmark, which has loading 1); larger means the benchmark's score rises faster "
                 "with that skill.</p>")
    parts.append(_fig_to_img(plots.plot_loadings(law), "loadings heatmap", dpi=90))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def forecast_report(
    lb,
    *,
    target_family: str | None = None,
    target_models=None,
    n_train: int = 1,
    law=None,
    level: float = 0.9,
    out: str | Path = "report.html",
    data_source: str = "",
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ForecastReport:
    r"""Forecast the targets with a skills law (fitting it first if it is not fitted) and write the HTML report.

    Exactly one of ``target_family`` (forecast the family's larger models from
    its ``n_train`` smallest) or ``target_models`` (DataFrame, CSV path or
    Leaderboard of new models) is required. ``law`` is a
    :class:`~bayes_sloth.SkillsLaw`: unfitted (default ``SkillsLaw()``), it is
    fitted to the training rows; fitted (e.g. ``SkillsLaw.load(path)``), it
    is used as it is, and must not contain the models it is asked to
    forecast as held out. Rendering itself never samples: the forecast table
    and the figures come from the fitted law's draws. Stage messages go to
    ``log`` (None: silent). The file is written atomically.
    """

    say = log or (lambda m: None)
    if (target_family is None) == (target_models is None):
        raise InputError("give exactly one of target_family or target_models")
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    out = check_output_path(out, inputs=[target_models if isinstance(target_models, (str, Path)) else None],
                            what="report")
    t0 = time.perf_counter()
    law = SkillsLaw() if law is None else law
    fitted = hasattr(law, "idata_")
    train_of_family: list = []
    if target_family is not None:
        train, targets = split_target_family(lb, target_family, n_train)
        if fitted:
            inside = sorted(set(targets["model"]) & set(law.leaderboard_.models))
            if inside:
                raise InputError(
                    f"the fit already contains {len(inside)} of the models of {target_family!r} to forecast "
                    f"({', '.join(inside[:3])}{' ...' if len(inside) > 3 else ''}): fit without them (e.g. drop "
                    "--fit to fit here), or forecast other models")
            in_fit = law.leaderboard_.covariates
            train_of_family = list(in_fit.index[in_fit["family"] == target_family])
        else:
            fam_cov = train.covariates[train.covariates["family"] == target_family]
            train_of_family = list(fam_cov.dropna(subset=["params", "tokens"]).index)
        title = f"Forecast report: {target_family} from its {n_train} smallest model{'s' if n_train != 1 else ''}"
    else:
        targets = _read_targets(target_models, law.benchmarks_ if fitted else lb.benchmarks)
        same = [m for m in targets["model"] if m in set(lb.models)]
        train = lb.select(models=[m for m in lb.models if m not in set(same)]) if same else lb
        if same and not fitted:
            say(f"note: {len(same)} target model(s) are in the leaderboard; they are left out of the fit: "
                + ", ".join(same[:5]) + (" ..." if len(same) > 5 else ""))
        title = f"Forecast report: {len(targets)} new model(s)"
    bad = targets[targets["params"].isna()]
    if len(bad):
        raise InputError(f"cannot forecast model {bad['model'].iloc[0]!r}: its parameter count is missing "
                         "(a missing token count is imputed, a missing parameter count is not)")
    n_imputed = int(targets["tokens"].isna().sum())
    if fitted:
        say(f"[1/4] data: using the saved fit ({len(law.leaderboard_)} models); {len(targets)} model(s) to forecast")
    else:
        n_all = len(train)
        cov = train.covariates
        n_fit = int(cov["params"].notna().sum())  # a model without tokens is fitted with latent tokens
        n_latent = int((cov["params"].notna() & cov["tokens"].isna()).sum())
        say(f"[1/4] data: {n_fit} models in the fit ({n_all - n_fit} without parameters left out, {n_latent} with "
            "latent tokens), "
            f"{len(train.benchmarks)} benchmarks; {len(targets)} model(s) to forecast")
        drawn = (f"draws until the checks pass, at most {law.max_draws}" if law.draws == "auto"
                 else f"{law.draws} draws")
        say(f"[2/4] sampling: {law.chains} chains x ({law.warmup} warm-up + {drawn}) of NUTS; "
            "this is the long step")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            law.fit(train)
        say(f"      done in {law.fit_seconds_:.0f} s; {'converged' if law.diagnostics_.ok else 'NOT converged'}"
            + ("" if law.diagnostics_.ok else f" ({len(law.diagnostics_.problems)} problem(s), see the report)"))
    fit_cov = law.leaderboard_.covariates
    dropped = [m for m in train.models if m not in set(fit_cov.index)] if not fitted else []
    say(f"[3/4] forecasting {len(targets)} model(s) at {level:.0%}"
        + (f"; {n_imputed} without a token count, forecast with imputed tokens" if n_imputed else ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the report states never-seen families and extrapolation itself
        # the targets' observed scores are there to be compared with, never conditioned on
        table = law.forecast(targets, level=level, seed=seed, new_families="allow", condition=False)
    say("[4/4] drawing figures and writing the report")
    doc = render_html(law, table, targets, level=level, title=title, data_source=data_source or "DataFrame",
                      target_family=target_family, train_of_family=train_of_family, n_train=n_train,
                      dropped=dropped, seed=seed)
    write_text(doc, out, what="report")
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return ForecastReport(out, law, table, list(fit_cov.index), list(targets["model"]))


__all__ = ["ForecastReport", "forecast_report", "reading", "related_families", "render_html", "split_target_family"]
