r"""Figures of a fitted skills law, returned as matplotlib Figures.

Every function takes a fitted :class:`~bayes_sloth.SkillsLaw` (or the pieces it
needs), draws on a new figure (or on ``ax`` where offered) and returns the
:class:`matplotlib.figure.Figure`; nothing is shown or saved, so the caller
decides (``fig.savefig("f.pdf")``, or ``display(fig)``). A figure made here is
detached from pyplot before it is returned, so in Jupyter it shows once, as
the cell's value (the inline backend would otherwise show it at the end of
the cell as well); ``plt.show()`` does not show it. Axis labels carry units;
intervals are central (equal-tailed) posterior intervals.

- :func:`plot_scaling`: score against parameters or compute, per family.
- :func:`plot_loadings`: loadings heatmap with intervals (optionally varimax-rotated).
- :func:`plot_skills`: each model's skills with intervals.
- :func:`plot_ppc`: posterior predictive checks per benchmark.
- :func:`plot_calibration`: nominal against empirical interval coverage.
- :func:`plot_diagnostics`: ArviZ trace / rank / energy plots with a sensible variable selection.
- :func:`plot_forecasts`: forecast intervals of new models against observed scores.
"""

from __future__ import annotations

import re
import warnings
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from ..core.data import read_new_models
from ..core.diagnostics import checked_names
from ..core.errors import InputError
from ..core.rotation import rotate_posterior

#: FLOPs per parameter per training token in the usual C = 6 N D approximation.
FLOPS_PER_PARAM_TOKEN = 6.0

_LEVELS = (0.5, 0.8, 0.9, 0.95)


def _check_fitted(law):
    if not hasattr(law, "idata_"):
        raise InputError("this SkillsLaw is not fitted yet: call fit(data) or SkillsLaw.load(path)")


def _grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    ncols = ncols or min(4, n)
    return int(np.ceil(n / ncols)), ncols


def _returned(fig: Figure) -> Figure:
    """Hand a figure this module made to the caller, detached from pyplot's list of open figures.

    Jupyter's inline backend shows every open pyplot figure at the end of a
    cell, and the cell's value once more: detached, a returned figure shows
    once (as the cell's value), is not kept alive by pyplot, and still
    draws and saves as usual (``fig.savefig``, ``display(fig)``).
    """
    plt.close(fig)
    return fig


def _new_figure(nrows: int, ncols: int, panel=(3.4, 2.8), **kw):
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False, **kw)
    return fig, axes


def _hide_unused(axes, n):
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)


def _q(da: xr.DataArray, level: float):
    lo, hi = (1 - level) / 2, (1 + level) / 2
    q = da.quantile([lo, hi], dim=("chain", "draw"))
    return q.isel(quantile=0, drop=True), q.isel(quantile=1, drop=True)


def _benchmarks(law, benchmarks):
    if benchmarks is None:
        return list(law.benchmarks_)
    if isinstance(benchmarks, str):
        benchmarks = [benchmarks]
    unknown = [b for b in benchmarks if b not in law.benchmarks_]
    if unknown:
        raise InputError(f"benchmark {unknown[0]!r} is not in the fit; fitted benchmarks: {law.benchmarks_}")
    return list(benchmarks)


def _xvalue(params, tokens, x: str):
    params = np.asarray(params, dtype=float)
    tokens = np.asarray(tokens, dtype=float)
    if x == "params":
        return params
    if x == "compute":
        return FLOPS_PER_PARAM_TOKEN * params * 1e9 * tokens * 1e12
    raise InputError(f"x must be 'params' or 'compute', got {x!r}")


_XLABEL = {
    "params": "parameters (billions, log scale)",
    "compute": "training compute (FLOPs = 6 N D, log scale)",
}


def _new_rows(law, new) -> pd.DataFrame:
    """New models as a DataFrame with canonical columns (model, family, params, tokens, instruct, scores...)."""
    if new is None:
        return pd.DataFrame(columns=["model", "family", "params", "tokens", "instruct"])

    return read_new_models(new, law.benchmarks_).to_frame().reset_index()


def plot_scaling(
    law,
    families: str | Sequence[str] | None = None,
    *,
    new=None,
    benchmarks: Sequence[str] | None = None,
    x: str = "params",
    band: str = "predictive",
    levels: tuple[float, float] = (0.5, 0.9),
    n_grid: int = 40,
    seed: int | None = None,
    ncols: int | None = None,
) -> Figure:
    r"""Scaling curves: score against parameters (or compute) for some families.

    For each family f and each benchmark j the curve is the posterior of the
    law along a grid of sizes S (tokens T interpolated log-linearly between
    the family's known models)::

        m_j(S) = c_j + (1 - c_j) g(lambda_j' theta_f(S) + b_j),
        theta_f(S) = alpha_f + B' x(S, T(S))

    drawn as its posterior mean (line) with central 50 % and 90 % bands of the
    posterior predictive score (``band="predictive"``, noise included, the
    same quantity as the forecast intervals) or of the law's mean
    (``band="law"``). A family not in the fit is drawn as a never-seen family
    (its efficiency alpha from the population). Models the fit used are
    filled circles; ``new`` models (forecasts) are diamonds with their 90 %
    predictive interval, and their observed scores, if given, open circles.

    Parameters
    ----------
    law : fitted SkillsLaw
    families : str or list of str, optional
        Default: the families of ``new``, else the largest fitted family.
    new : DataFrame, CSV path or Leaderboard, optional
        Models to forecast (model, family, params, tokens[, instruct], and
        optional observed score columns).
    benchmarks : list of str, optional
        One panel per benchmark (default all fitted).
    x : {"params", "compute"}
        Horizontal axis: billions of parameters, or training FLOPs 6 N D.
    band : {"predictive", "law"}
    levels : (float, float)
        Inner and outer band levels.
    n_grid : int
        Points along each curve.
    seed : int, optional
        Seed of the predictive draws.
    """
    _check_fitted(law)
    if band not in ("predictive", "law"):
        raise InputError(f"band must be 'predictive' or 'law', got {band!r}")
    if x not in _XLABEL:
        raise InputError(f"x must be 'params' or 'compute', got {x!r}")
    benchmarks = _benchmarks(law, benchmarks)
    newdf = _new_rows(law, new)
    fit_cov = law.leaderboard_.covariates
    if families is None:
        families = list(pd.unique(newdf["family"])) if len(newdf) else [fit_cov["family"].value_counts().index[0]]
    elif isinstance(families, str):
        families = [families]
    known = set(fit_cov["family"]) | set(newdf["family"])
    unknown = [f for f in families if f not in known]
    if unknown:
        raise InputError(f"family {unknown[0]!r} is neither in the fit nor among the new models")

    # the curves: the law along a grid of sizes (law.predict_covariates), and the forecasts of the new
    # models (law.predict); a never-seen family's efficiency draws are keyed by its name and the seed,
    # so its curve, its forecasts here and a forecast table made with the same seed share them
    curves = {}
    for f in families:
        pts = pd.concat([fit_cov[fit_cov["family"] == f][["params", "tokens", "instruct"]],
                         newdf[newdf["family"] == f][["params", "tokens", "instruct"]]])
        pts = pts.dropna(subset=["params", "tokens"])
        if pts.empty:
            raise InputError(f"family {f!r} has no model with both parameters and tokens to draw a curve from")
        lp, lt = np.log(pts["params"].to_numpy(float)), np.log(pts["tokens"].to_numpy(float))
        order = np.argsort(lp)
        grid = np.linspace(lp.min() - 0.35, lp.max() + 0.35, n_grid)
        tok = np.exp(np.interp(grid, lp[order], lt[order]))
        instruct = bool(pts["instruct"].astype(bool).mean() >= 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # extrapolation and never-seen families are drawn as such
            curves[f] = law.predict_covariates(f, np.exp(grid), tok, instruct=instruct, seed=seed,
                                               new_families="allow")
    new_fc = newdf[newdf["family"].isin(families)] if len(newdf) else newdf
    fc = None
    if len(new_fc):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fc = law.predict(new_fc[["model", "family", "params", "tokens", "instruct"]], seed=seed,
                             new_families="allow").predictions

    nrows, ncols = _grid_shape(len(benchmarks), ncols)
    fig, axes = _new_figure(nrows, ncols, sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    scores = law.leaderboard_.scores
    floors = law.leaderboard_.floors
    for b_i, b in enumerate(benchmarks):
        ax = axes.ravel()[b_i]
        for f_i, f in enumerate(families):
            c = colors[f_i % len(colors)]
            cv = curves[f].sel(benchmark=b)
            var = cv["score"] if band == "predictive" else cv["mu"]
            gx = _xvalue(cv["params"].values, cv["tokens"].values, x)
            for lv, alpha in ((levels[1], 0.15), (levels[0], 0.3)):
                lo, hi = _q(var, lv)
                ax.fill_between(gx, lo, hi, color=c, alpha=alpha, lw=0)
            seen = f in law.families_
            ax.plot(gx, cv["mu"].mean(("chain", "draw")), color=c, lw=1.6, ls="-" if seen else "--",
                    label=f if seen else f"{f} (never seen)")
            fm = fit_cov.index[fit_cov["family"] == f]
            ax.scatter(_xvalue(fit_cov.loc[fm, "params"], fit_cov.loc[fm, "tokens"], x), scores.loc[fm, b],
                       color=c, s=22, zorder=3, edgecolor="white", linewidth=0.5)
            nm = new_fc[new_fc["family"] == f] if len(new_fc) else new_fc
            if len(nm):
                nx = _xvalue(nm["params"], nm["tokens"], x)
                sc = fc["score"].sel(model=list(nm["model"]), benchmark=b)
                mm = sc.mean(("chain", "draw")).values
                lo, hi = (q.values for q in _q(sc, 0.9))
                ax.errorbar(nx, mm, yerr=[mm - lo, hi - mm], fmt="D", color=c, ms=5, capsize=2, lw=1,
                            zorder=4, markeredgecolor="black", markeredgewidth=0.5)
                if b in nm.columns:
                    ax.scatter(nx, nm[b].astype(float), facecolor="none", edgecolor="black", s=36, zorder=5,
                               linewidth=1)
        ax.axhline(floors[b], color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_title(b)
        ax.set_ylim(-0.02, 1.02)
        if b_i % ncols == 0:
            ax.set_ylabel("score (fraction correct)")
        if b_i >= len(benchmarks) - ncols:
            ax.set_xlabel(_XLABEL[x])
        ax.grid(alpha=0.3, lw=0.5)
    _hide_unused(axes, len(benchmarks))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="o", color="0.3", ls="none", ms=5, label="observed, in the fit"),
        Patch(color="0.3", alpha=0.45, label=f"{levels[0]:.0%} / {levels[1]:.0%} {'predictive' if band == 'predictive' else 'law'} band"),
        Line2D([], [], color="0.6", ls=":", label="chance floor"),
    ]
    if len(new_fc):
        handles += [
            Line2D([], [], marker="D", color="0.3", ls="-", ms=5, label="forecast, 90% interval"),
            Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="black", ls="none", ms=6,
                   label="observed, not in the fit"),
        ]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, 0.0), fontsize="small")
    fig.suptitle("Scaling curves: posterior mean of the law with " + ("predictive" if band == "predictive" else "law")
                 + " bands")
    rows_legend = int(np.ceil(len(handles) / min(4, len(handles))))
    fig.tight_layout(rect=(0, 0.04 * rows_legend / max(1, nrows) + 0.02, 1, 1))
    return _returned(fig)


def _fixed_loadings(law) -> np.ndarray:
    """J x K: 1 where fixed at one, 0 where fixed at zero, -1 where free."""
    return law.spec_.loading_structure


def plot_loadings(law, *, rotated: bool = False, level: float = 0.9, ax=None) -> Figure:
    r"""Heatmap of the loadings Lambda (benchmarks x skills) with uncertainty.

    Each cell shows the posterior mean of lambda_jk (colour and number) and
    its central ``level`` interval; anchor constraints (lambda = 1 on the
    anchor, 0 on earlier anchors for later skills) are marked "fixed".
    With ``rotated=True`` the loadings are varimax-rotated draw by draw and
    aligned across draws (:func:`bayes_sloth.core.rotation.rotate_posterior`);
    then nothing is fixed and the skills are no longer tied to anchors.
    """
    _check_fitted(law)
    if rotated:

        lam = rotate_posterior(law)["loadings"]
        fixed = np.full(lam.shape[-2:], -1)
    else:
        lam = law.loadings_
        fixed = _fixed_loadings(law)
    mean = lam.mean(("chain", "draw")).values
    lo, hi = (q.values for q in _q(lam, level))
    J, K = mean.shape
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(1.7 * K + 2.6, 0.48 * J + 1.4))
    else:
        fig = ax.figure
    vmax = float(np.nanmax(np.abs(mean))) or 1.0
    im = ax.imshow(mean, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for j in range(J):
        for k in range(K):
            if fixed[j, k] >= 0:
                txt = f"{fixed[j, k]:d}\n(fixed)"
            else:
                txt = f"{mean[j, k]:.2f}\n[{lo[j, k]:.2f}, {hi[j, k]:.2f}]"
            dark = abs(mean[j, k]) > 0.6 * vmax
            ax.text(k, j, txt, ha="center", va="center", fontsize=7.5, color="white" if dark else "black")
    ax.set_xticks(range(K), [f"skill {k + 1}" + ("" if rotated else f"\n({name})")
                             for k, name in enumerate(lam["skill"].values)])
    ax.set_yticks(range(J), list(lam["benchmark"].values))
    anchors = getattr(law, "anchors_", None)
    title = "Loadings: posterior mean [" + f"{level:.0%} interval]"
    if rotated:
        title += "\nvarimax-rotated, aligned across draws"
    elif anchors:
        title += "\nanchors: " + ", ".join(f"skill {k + 1} = {a}" for k, a in enumerate(anchors))
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="loading (score logit per unit skill)", shrink=0.8)
    fig.tight_layout()
    return _returned(fig) if own else fig


def plot_skills(
    law,
    models: Sequence[str] | None = None,
    *,
    new=None,
    rotated: bool = False,
    levels: tuple[float, float] = (0.5, 0.9),
    sort_by: int | None = 0,
    seed: int | None = None,
) -> Figure:
    r"""Each model's skills theta_ik: posterior mean with 50 % and 90 % intervals.

    One panel per skill k, one row per model. Fitted models use their
    posterior skills theta_i = alpha_f(i) + B' x_i; ``new`` models (forecasts)
    use the skills drawn by :meth:`SkillsLaw.predict` (diamonds). Skills are on
    the scale fixed by the anchors (unit loading on the anchor benchmark),
    or varimax-rotated with ``rotated=True`` (fitted models only).

    Parameters
    ----------
    models : list of str, optional
        Fitted models to show (default all).
    sort_by : int or None
        Order rows by the posterior mean of this skill (0-based); None keeps
        table order.
    """
    _check_fitted(law)
    post = law.idata_.posterior
    if rotated:

        th = rotate_posterior(law)["skills"]
    else:
        th = post["skills"]
    th = th.transpose("chain", "draw", "model", "skill")
    if models is not None:
        models = list(models)
        unknown = [m for m in models if m not in th["model"].values]
        if unknown:
            raise InputError(f"model {unknown[0]!r} is not in the fit")
        th = th.sel(model=models)
    is_new = np.zeros(th.sizes["model"], dtype=bool)
    if new is not None:
        if rotated:
            raise InputError("rotated skills are available for fitted models only; drop new= or rotated=")
        pth = law.predict(new, seed=seed).predictions["skills"].transpose("chain", "draw", "model", "skill")
        pth = pth.drop_vars([c for c in pth.coords if c not in pth.dims])
        th = xr.concat([th.drop_vars([c for c in th.coords if c not in th.dims]), pth], dim="model")
        is_new = np.r_[is_new, np.ones(pth.sizes["model"], dtype=bool)]
    mean = th.mean(("chain", "draw")).values
    order = np.argsort(mean[:, sort_by]) if sort_by is not None else np.arange(len(mean))
    inner, outer = (tuple(q.values for q in _q(th, lv)) for lv in levels)
    names = np.asarray(th["model"].values)
    N, K = mean.shape
    fig, axes = plt.subplots(1, K, figsize=(2.8 * K + 1.8, 0.16 * N + 1.4), sharey=True, squeeze=False)
    y = np.arange(N)
    for k in range(K):
        ax = axes[0, k]
        o = order
        c = np.where(is_new[o], "C3", "C0")
        ax.hlines(y, outer[0][o, k], outer[1][o, k], color=c, lw=0.8)
        ax.hlines(y, inner[0][o, k], inner[1][o, k], color=c, lw=2.4)
        ax.scatter(mean[o, k], y, c=c, s=np.where(is_new[o], 22, 10), marker="o", zorder=3)
        if is_new.any():
            ax.scatter(mean[o, k][is_new[o]], y[is_new[o]], c="C3", s=26, marker="D", zorder=4)
        ax.set_xlabel(f"skill {k + 1} (anchor units)" if not rotated else f"rotated skill {k + 1}")
        ax.grid(axis="x", alpha=0.3, lw=0.5)
        ax.axvline(0, color="0.6", lw=0.7)
    axes[0, 0].set_yticks(y, names[order], fontsize=max(4.5, min(8, 400 / max(N, 1))))
    axes[0, 0].set_ylim(-1, N)
    title = f"Skills per model: posterior mean, {levels[0]:.0%} (thick) and {levels[1]:.0%} (thin) intervals"
    if is_new.any():
        title += "\nred diamonds: forecast models (skills from the law, not from scores)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _returned(fig)


def _obs_table(idata) -> pd.DataFrame:
    y = idata.observed_data["y"]
    return pd.DataFrame({
        "model": y["obs_model"].values if "obs_model" in y.coords else None,
        "benchmark": y["obs_benchmark"].values,
        "observed": y.values,
    })


def plot_ppc(law, benchmarks: Sequence[str] | None = None, *, kind: str = "interval", level: float = 0.9,
             n_draws: int = 30, seed: int = 0, ncols: int | None = None) -> Figure:
    r"""Posterior predictive checks, one panel per benchmark.

    Replicated scores y_rep_ij ~ p(y | m_ij^(s), sigma_j^(s)) for every
    observed (model i, benchmark j) pair, one per posterior draw s, are
    compared with the observed y_ij.

    - ``kind="interval"``: observed score (x) against the predictive mean (y)
      with central ``level`` intervals; the title gives the share of observed
      scores inside their interval (should be near ``level``).
    - ``kind="hist"``: histogram of the observed scores (black) over
      histograms of ``n_draws`` replicated data sets (blue).
    """
    _check_fitted(law)
    if kind not in ("interval", "hist"):
        raise InputError(f"kind must be 'interval' or 'hist', got {kind!r}")
    benchmarks = _benchmarks(law, benchmarks)
    idata = law.idata_
    if "posterior_predictive" not in idata.groups():
        raise InputError("this fit has no posterior_predictive group")
    yrep = idata.posterior_predictive["y"]
    obs_b = idata.observed_data["y"]["obs_benchmark"].values
    yobs = idata.observed_data["y"].values
    nrows, ncols = _grid_shape(len(benchmarks), ncols)
    fig, axes = _new_figure(nrows, ncols)
    rng = np.random.default_rng(seed)
    for i, b in enumerate(benchmarks):
        ax = axes.ravel()[i]
        idx = np.flatnonzero(obs_b == b)
        r = yrep.isel(obs=idx)
        o = yobs[idx]
        if kind == "interval":
            m = r.mean(("chain", "draw")).values
            lo, hi = (q.values for q in _q(r, level))
            inside = (o >= lo) & (o <= hi)
            ax.errorbar(o, m, yerr=[m - lo, hi - m], fmt="none", ecolor="C0", alpha=0.35, lw=0.8)
            ax.scatter(o, m, s=9, c=np.where(inside, "C0", "C3"), zorder=3)
            ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{b}: {inside.mean():.0%} inside {level:.0%} (n={len(o)})", fontsize=9.5)
            if i % ncols == 0:
                ax.set_ylabel("predicted score (mean, interval)")
            if i >= len(benchmarks) - ncols:
                ax.set_xlabel("observed score")
        else:
            flat = r.stack(s=("chain", "draw")).transpose("s", "obs").values
            pick = rng.choice(flat.shape[0], size=min(n_draws, flat.shape[0]), replace=False)
            bins = np.linspace(0, 1, 26)
            for p in pick:
                ax.hist(flat[p], bins=bins, histtype="step", color="C0", alpha=0.25, lw=0.8, density=True)
            ax.hist(o, bins=bins, histtype="step", color="black", lw=1.6, density=True)
            ax.set_title(f"{b} (n={len(o)})", fontsize=9.5)
            if i % ncols == 0:
                ax.set_ylabel("density")
            if i >= len(benchmarks) - ncols:
                ax.set_xlabel("score (fraction correct)")
        ax.grid(alpha=0.3, lw=0.5)
    _hide_unused(axes, len(benchmarks))
    if kind == "interval":
        fig.suptitle(f"Posterior predictive check: observed vs replicated scores ({level:.0%} intervals; red = outside)")
    else:
        fig.suptitle(f"Posterior predictive check: observed (black) vs {n_draws} replicated data sets (blue)")
    fig.tight_layout()
    return _returned(fig)


def coverage_from_pairs(pairs: pd.DataFrame, levels: Sequence[float] | None = None) -> pd.DataFrame:
    r"""Empirical coverage of central intervals from a table of forecast pairs.

    ``pairs`` has an ``observed`` column and ``lower_XX`` / ``upper_XX``
    columns (XX = level in percent, e.g. ``lower_90``), one row per
    forecast (model, benchmark) pair, as in ``EvaluationResult.pairs``.
    Coverage at level q is ``mean_i 1[lower_q,i <= y_i <= upper_q,i]``.

    Returns a DataFrame with columns nominal, empirical, n, mean_width.
    """
    if "observed" not in pairs:
        raise InputError("pairs needs an 'observed' column")
    found = sorted(int(m.group(1)) for c in pairs.columns if (m := re.fullmatch(r"lower_(\d+)", c))
                   and f"upper_{m.group(1)}" in pairs)
    if levels is not None:
        want = [int(round(100 * lv)) for lv in levels]
        missing = [w for w in want if w not in found]
        if missing:
            raise InputError(f"pairs has no lower_{missing[0]}/upper_{missing[0]} columns")
        found = want
    if not found:
        raise InputError("pairs has no interval columns (lower_90, upper_90, ...)")
    y = pairs["observed"].to_numpy(dtype=float)
    ok = np.isfinite(y)
    rows = []
    for pc in found:
        lo = pairs[f"lower_{pc}"].to_numpy(dtype=float)[ok]
        hi = pairs[f"upper_{pc}"].to_numpy(dtype=float)[ok]
        rows.append({"nominal": pc / 100, "empirical": float(np.mean((y[ok] >= lo) & (y[ok] <= hi))),
                     "n": int(ok.sum()), "mean_width": float(np.mean(hi - lo))})
    return pd.DataFrame(rows)


def _coverage(result) -> pd.DataFrame:
    if hasattr(result, "pairs") and isinstance(getattr(result, "pairs"), pd.DataFrame):
        return coverage_from_pairs(result.pairs)
    if isinstance(result, pd.DataFrame):
        if {"nominal", "empirical"} <= set(result.columns):
            return result
        return coverage_from_pairs(result)
    if hasattr(result, "summary") and isinstance(result.summary, Mapping):
        result = result.summary.get("coverage", result.summary)
    if isinstance(result, Mapping):
        rows = [{"nominal": float(k), "empirical": float(v), "n": np.nan, "mean_width": np.nan}
                for k, v in result.items()]
        if not rows:
            raise InputError("empty coverage mapping")
        return pd.DataFrame(rows).sort_values("nominal")
    raise InputError("plot_calibration takes an evaluation result, its .pairs DataFrame, "
                     "or a mapping of nominal level -> empirical coverage")


def plot_calibration(result, *, label: str | None = None, ax=None, color=None) -> Figure:
    r"""Calibration of predictive intervals: nominal against empirical coverage.

    For each nominal level q (50, 80, 90, 95 %), the empirical coverage is the
    share of held-out scores inside their central q interval. Points on the
    diagonal are calibrated; below it the intervals are too narrow
    (overconfident), above it too wide. With pairs available, error bars are
    binomial standard errors sqrt(q (1 - q) / n); pairs of one model are
    correlated, so read them as a lower bound on the uncertainty.

    Parameters
    ----------
    result : EvaluationResult, DataFrame or mapping
        An evaluation result (``.pairs`` with ``observed``, ``lower_XX``,
        ``upper_XX`` columns, or ``.summary["coverage"]``), such a pairs
        DataFrame, or a mapping ``{0.5: 0.47, 0.9: 0.86, ...}``.
    label : str, optional
        Legend label (call again with ``ax=`` to overlay several runs).
    """
    cov = _coverage(result)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
        ax.set_xlim(0.4, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("nominal coverage of central interval")
        ax.set_ylabel("empirical coverage (share of held-out scores inside)")
        ax.set_title("Interval calibration")
        ax.grid(alpha=0.3, lw=0.5)
    else:
        fig = ax.figure
    q = cov["nominal"].to_numpy(float)
    e = cov["empirical"].to_numpy(float)
    n = cov["n"].to_numpy(float) if "n" in cov else np.full_like(q, np.nan)
    err = np.sqrt(q * (1 - q) / n) if np.all(np.isfinite(n)) else None
    n_txt = f" (n={int(n[0])} pairs)" if np.all(np.isfinite(n)) else ""
    ax.errorbar(q, e, yerr=err, fmt="o-", color=color, capsize=3, ms=5, label=(label or "forecasts") + n_txt)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _returned(fig) if own else fig


#: Default variables for trace and rank plots: the population-level parameters.
DIAGNOSTIC_VARS = ("tau", "slopes", "sigma", "intercept")


def _worst_parameters(idata, n: int) -> xr.Dataset:
    """The n scalar parameters with the highest R-hat, as a Dataset of (chain, draw) variables."""
    import arviz as az

    post = idata.posterior
    names = checked_names(post)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rh = az.rhat(post[names])
    cands = []
    for v in names:
        r = rh[v]
        if r.ndim == 0:
            cands.append((float(r), v, {}))
            continue
        flat = r.stack(p=r.dims)
        vals = flat.values
        for i in np.argsort(-np.nan_to_num(vals, nan=-1))[:n]:
            sel = {d: flat["p"].values[i][k] for k, d in enumerate(r.dims)}
            cands.append((float(vals[i]), v, sel))
    cands.sort(key=lambda t: -np.nan_to_num(t[0], nan=-1))
    out = {}
    for r, v, sel in cands[:n]:
        label = v + ("[" + ", ".join(str(s) for s in sel.values()) + "]" if sel else "")
        out[label] = post[v].sel(sel).drop_vars(list(sel), errors="ignore")
    return xr.Dataset(out)


def plot_diagnostics(law, kind: str = "trace", var_names: Sequence[str] | None = None, *, worst: int = 3,
                     figsize=None) -> Figure:
    r"""ArviZ's trace, rank or energy plot of a fit, with a sensible choice of variables.

    By default the trace and rank plots show the population-level
    parameters (tau, B, sigma, b) plus the ``worst`` scalar parameters with
    the highest R-hat (rank-normalised split R-hat, Vehtari et al. 2021),
    wherever they sit (a loading, a family efficiency, a model's skill): that
    is where a convergence problem shows. ``kind="energy"`` is
    ``az.plot_energy`` (marginal energy against energy transitions; E-BFMI
    in the legend).

    Parameters
    ----------
    law : fitted SkillsLaw or InferenceData
    kind : {"trace", "rank", "energy"}
    var_names : list of str, optional
        Posterior variables to show instead of the default selection.
    worst : int
        How many highest-R-hat parameters to add to the default selection.
    """
    import arviz as az

    idata = law.idata_ if hasattr(law, "idata_") else law
    if not hasattr(idata, "posterior"):
        raise InputError("plot_diagnostics takes a fitted SkillsLaw or an InferenceData")
    if kind not in ("trace", "rank", "energy"):
        raise InputError(f"kind must be 'trace', 'rank' or 'energy', got {kind!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "energy":
            ax = az.plot_energy(idata, figsize=figsize or (5, 3.5))
            fig = ax.figure
            ax.set_xlabel("energy (centred)")
            fig.suptitle("Energy: marginal vs transition (similar widths = good exploration)", fontsize=10)
            fig.tight_layout()
            return _returned(fig)
        post = idata.posterior
        if var_names is None:
            ds = post[[v for v in DIAGNOSTIC_VARS if v in post]]
            if kind == "rank":  # one panel per scalar: keep it short
                ds = post[[v for v in ("tau",) if v in post]]
            if worst:
                ds = xr.merge([ds, _worst_parameters(idata, worst)], compat="override")
        else:
            missing = [v for v in var_names if v not in post]
            if missing:
                raise InputError(f"no variable {missing[0]!r} in the posterior; have {list(post.data_vars)}")
            ds = post[list(var_names)]
        data = az.convert_to_inference_data(ds)
        if kind == "trace":
            axes = az.plot_trace(data, compact=True, figsize=figsize, legend=False)
        else:
            axes = az.plot_rank(data, figsize=figsize)
    fig = np.atleast_1d(axes).ravel()[0].figure
    fig.tight_layout()
    return _returned(fig)


def plot_forecasts(table: pd.DataFrame, *, ncols: int | None = None, by: str = "benchmark") -> Figure:
    r"""Forecast intervals of new models, one panel per benchmark.

    ``table`` is a forecast table (:meth:`SkillsLaw.forecast`): per model a
    point at the predictive mean with its central interval (``lower``,
    ``upper``; level in column ``level``) and, where known, the observed
    score (open circle, red when outside the interval).
    """
    need = {"model", "benchmark", "mean", "lower", "upper"}
    if not need <= set(table.columns):
        raise InputError(f"forecast table needs columns {sorted(need)}")
    level = float(table["level"].iloc[0]) if "level" in table else None
    benchmarks = list(pd.unique(table["benchmark"]))
    models = list(pd.unique(table["model"]))
    nrows, ncols = _grid_shape(len(benchmarks), ncols)
    fig, axes = _new_figure(nrows, ncols, panel=(3.4, 0.35 * len(models) + 1.2), sharey=True)
    y = np.arange(len(models))
    for i, b in enumerate(benchmarks):
        ax = axes.ravel()[i]
        t = table[table["benchmark"] == b].set_index("model").reindex(models)
        ax.hlines(y, t["lower"], t["upper"], color="C0", lw=2)
        ax.scatter(t["mean"], y, color="C0", marker="D", s=20, zorder=3, label="forecast mean")
        if "observed" in t and t["observed"].notna().any():
            inside = (t["observed"] >= t["lower"]) & (t["observed"] <= t["upper"])
            ax.scatter(t["observed"], y, facecolor="none", edgecolor=np.where(inside, "black", "C3"), s=40,
                       zorder=4, linewidth=1.2, label="observed")
        ax.set_title(b, fontsize=10)
        ax.set_xlim(-0.02, 1.02)
        ax.grid(axis="x", alpha=0.3, lw=0.5)
        ax.set_xlabel("score (fraction correct)")
    axes[0, 0].set_yticks(y, models, fontsize=8)
    axes[0, 0].set_ylim(len(models) - 0.5, -0.5)
    _hide_unused(axes, len(benchmarks))
    lv = f"{level:.0%} " if level else ""
    fig.suptitle(f"Forecasts: mean (diamond) and {lv}predictive interval; observed score (circle, red if outside)",
                 fontsize=10)
    fig.tight_layout()
    return _returned(fig)


__all__ = [
    "coverage_from_pairs",
    "plot_calibration",
    "plot_diagnostics",
    "plot_forecasts",
    "plot_loadings",
    "plot_ppc",
    "plot_scaling",
    "plot_skills",
]
