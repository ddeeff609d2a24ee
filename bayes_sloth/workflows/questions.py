r"""The questions forecasters ask, one call each, answered from the law's posterior predictive draws.

Built on :class:`~bayes_sloth.SkillsLaw`'s public methods only
(:meth:`~bayes_sloth.SkillsLaw.predict`, :meth:`~bayes_sloth.SkillsLaw.predict_covariates`,
``loadings_``); every probability is a share of joint draws (the same
posterior draw for every model, benchmark and point of one answer).

- :func:`exceedance`: P(score > t) per (model, benchmark);
- :func:`head_to_head`: P(model A beats model B) per benchmark;
- :func:`smallest_params`: the smallest parameter count (at given tokens, or
  at a tokens-per-parameter ratio) at which P(score > t) >= p;
- :func:`smallest_compute`: the smallest compute budget at which
  P(score > t) >= p, each budget spent as the law prefers (or at a ratio);
- :func:`compute_budget`: forecasts along a compute budget C (FLOPs, tokens
  = C / (6 N)) over a range of sizes N, and the allocation the law prefers.

Units: parameters in billions, tokens in trillions, compute in FLOPs, so
``C = 6 x (N x 1e9) x (T x 1e12) = 6e21 N T``.

Points along a grid are asked for one at a time (:meth:`predict_covariates`
with one point): every point then uses the same random streams (the same
fresh offset and noise quantile for each posterior draw), *common random
numbers*, so a curve is smooth and P(score > t) moves with the law alone,
not with Monte Carlo noise between points. For one posterior draw the law
is monotone in log N at fixed tokens (the skills are linear in log N and the
loadings positive), so P(score > t) along N is a mean of step functions, one
per draw, which is monotone whenever the draws agree on the direction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..core.errors import InputError, once_per_call
from ..core.prediction import outside_fitted_range

#: FLOPs per (billion parameters x trillion tokens): C = 6 N T.
FLOPS_PER_BT = 6e21


# ------------------------------------------------------------------ helpers
def _predictions(law, new, *, seed=None, condition=True, new_families="warn", columns=None) -> xr.Dataset:
    """The predictions Dataset of ``new``: rows to forecast, or the output of ``law.predict`` (reused as is)."""
    if hasattr(new, "groups") and "predictions" in new.groups():
        return new.predictions
    if isinstance(new, xr.Dataset):
        if "score" not in new:
            raise InputError("a Dataset passed as `new` must be law.predict(...).predictions (it has no 'score')")
        return new
    return law.predict(new, seed=seed, condition=condition, new_families=new_families, columns=columns).predictions


def _number(v, what: str, lo=None, hi=None) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise InputError(f"{what} must be a finite number, got {v!r}")
    if (lo is not None and v <= lo) or (hi is not None and v >= hi):
        raise InputError(f"{what} must be strictly between {lo} and {hi}, got {v!r}")
    return float(v)


def _benchmark(law, b) -> str:
    if b not in law.benchmarks_:
        raise InputError(f"benchmark {b!r} is not fitted; fitted: {', '.join(law.benchmarks_)}")
    return b


def _thresholds(law, threshold, benchmarks) -> dict:
    """Benchmark -> threshold, from a number (for ``benchmarks``, default all) or a mapping."""
    if hasattr(threshold, "items"):
        out = {_benchmark(law, b): _number(t, f"threshold of {b!r}") for b, t in threshold.items()}
        if benchmarks is not None:
            out = {b: out[b] for b in benchmarks if b in out}
        if not out:
            raise InputError("threshold names no benchmark to answer for")
        return out
    t = _number(threshold, "threshold")
    bench = law.benchmarks_ if benchmarks is None else [benchmarks] if isinstance(benchmarks, str) else benchmarks
    return {_benchmark(law, b): t for b in bench}


def _range(lo_hi, what: str, default) -> tuple[float, float]:
    lo, hi = default if lo_hi is None else lo_hi
    lo, hi = _number(lo, f"{what} lower end"), _number(hi, f"{what} upper end")
    if not 0 < lo < hi:
        raise InputError(f"{what} must be (low, high) with 0 < low < high, got {lo_hi!r}")
    return lo, hi


def _point(law, family, params, tokens, instruct, seed, new_families) -> xr.Dataset:
    """One point of the law (common random numbers: every single-point call uses the same streams)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="extrapolating")
        return law.predict_covariates(family, [float(params)], [float(tokens)], instruct=instruct, seed=seed,
                                      new_families=new_families).isel(point=0)


def _points(law, family, params, tokens, instruct, seed, new_families) -> xr.Dataset:
    """Points asked for one at a time, stacked along ``point`` (common random numbers)."""
    pts = [_point(law, family, p, t, instruct, seed, new_families) for p, t in zip(params, tokens)]
    per_point = [c for c in pts[0].coords if c not in pts[0].dims]  # point, params, tokens, family, flags: scalars
    out = xr.concat([p.drop_vars(per_point) for p in pts], dim="point", coords="minimal", compat="override",
                    join="exact")
    return out.assign_coords(point=np.arange(len(pts)),
                             **{c: ("point", [p[c].item() for p in pts]) for c in per_point if c != "point"})


def _draws(da: xr.DataArray) -> np.ndarray:
    """(chain, draw, ...) -> (n_draws, ...)."""
    v = da.transpose("chain", "draw", ...).values
    return v.reshape((-1,) + v.shape[2:])


# ------------------------------------------------------------------ exceedance
@once_per_call
def exceedance(law, new, threshold, *, benchmarks=None, seed: int | None = None, condition: bool = True,
               new_families: str = "warn", columns: dict | None = None) -> pd.DataFrame:
    """P(score > t) for every model of ``new`` and benchmark.

    ``new``: rows to forecast (as :meth:`SkillsLaw.predict` takes them, with
    observed scores conditioned on when ``condition``), or the InferenceData
    ``law.predict`` returned (its draws are reused). ``threshold``: one
    number for ``benchmarks`` (default: all fitted), or a mapping benchmark
    -> threshold. The probability is the share of posterior predictive draws
    of the score (noise included) above the threshold; ``mcse`` is its Monte
    Carlo standard error as if the draws were independent.

    Returns a DataFrame: model, family, benchmark, threshold, probability, mcse.
    """
    th = _thresholds(law, threshold, benchmarks)
    pred = _predictions(law, new, seed=seed, condition=condition, new_families=new_families, columns=columns)
    rows = []
    n = pred.sizes["chain"] * pred.sizes["draw"]
    for b, t in th.items():
        p = (pred["score"].sel(benchmark=b) > t).mean(("chain", "draw"))
        for m, pm in zip(pred["model"].values, p.values):
            rows.append((m, str(pred["family"].sel(model=m).values), b, t, float(pm)))
    out = pd.DataFrame(rows, columns=["model", "family", "benchmark", "threshold", "probability"])
    out["mcse"] = np.sqrt(out["probability"] * (1 - out["probability"]) / n)
    return out


# ------------------------------------------------------------------ head to head
@once_per_call
def head_to_head(law, new, a: str, b: str, *, benchmarks=None, level: float = 0.9, seed: int | None = None,
                 condition: bool = True, new_families: str = "warn", columns: dict | None = None) -> pd.DataFrame:
    """P(model ``a`` beats model ``b``) on each benchmark, from joint draws.

    Both models come from the same call (``new`` holds both rows, or is the
    InferenceData of a ``law.predict`` that does), so draw d of each uses
    posterior draw d of the law: the probability counts what the two
    forecasts share (the law, a common family's efficiency). ``probability``
    compares the scores (noise included; ties count half), ``law_probability``
    the law's means. ``difference``/``lower``/``upper``: mean and central
    ``level`` interval of score(a) - score(b). ``shared_draws``: the share of
    draws at which both models use the same posterior draw (1 unless they
    were conditioned on scores in different families; see
    :mod:`bayes_sloth.core.conditioning`).
    """
    if a == b:
        raise InputError(f"head_to_head needs two different models, got {a!r} twice")
    level = _number(level, "level", 0, 1)
    pred = _predictions(law, new, seed=seed, condition=condition, new_families=new_families, columns=columns)
    names = [str(m) for m in pred["model"].values]
    for m in (a, b):
        if m not in names:
            raise InputError(f"model {m!r} is not among the forecast rows: {', '.join(names[:8])}")
    bench = law.benchmarks_ if benchmarks is None else [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    for j in bench:
        _benchmark(law, j)
    sa, sb = (_draws(pred["score"].sel(model=m, benchmark=bench)) for m in (a, b))
    ma, mb = (_draws(pred["mu"].sel(model=m, benchmark=bench)) for m in (a, b))
    shared = 1.0
    if "source_draw" in pred:
        shared = float((_draws(pred["source_draw"].sel(model=a)) == _draws(pred["source_draw"].sel(model=b))).mean())
    d = sa - sb
    q = np.quantile(d, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return pd.DataFrame({
        "benchmark": bench, "model_a": a, "model_b": b,
        "probability": (d > 0).mean(axis=0) + 0.5 * (d == 0).mean(axis=0),
        "law_probability": (ma > mb).mean(axis=0) + 0.5 * (ma == mb).mean(axis=0),
        "difference": d.mean(axis=0), "lower": q[0], "upper": q[1], "level": level, "shared_draws": shared,
    })


# ------------------------------------------------------------------ inverse questions
@dataclass
class InverseAnswer:
    """The smallest size (or compute) at which P(score > threshold) >= prob, and how it was found.

    ``value`` is NaN when the probability is not reached in the searched
    range (``reached`` False; ``best_probability`` is the largest seen).
    ``at_lower_end``: reached already at the low end of the range (the true
    answer may be smaller). ``extrapolation``: the answer lies outside the
    fitted models' parameters, tokens or compute (params x tokens). ``grid``: the probabilities along
    the search grid and the refinement steps.
    """

    question: str
    value: float
    reached: bool
    probability: float
    best_probability: float
    at_lower_end: bool
    extrapolation: bool
    params: float
    tokens: float
    search_range: tuple[float, float]
    grid: pd.DataFrame = field(repr=False)

    def __str__(self) -> str:
        if not self.reached:
            g = self.grid.iloc[int(np.argmax(self.grid["probability"].to_numpy()))] if len(self.grid) else None
            where = "" if g is None else f" at {g.iloc[0]:.3g}"
            beyond = ""
            if g is not None and "extrapolation" in self.grid and bool(g["extrapolation"]):
                beyond = ", already beyond the fitted models there"
            return (f"{self.question}: not reached in {self.search_range[0]:.3g}-{self.search_range[1]:.3g}: the "
                    f"probability is at most {self.best_probability:.3f}{where}{beyond}; a wider range extrapolates "
                    "further from the data, a lower threshold or probability may be within reach")
        extra = " (at the low end of the range: it may be smaller)" if self.at_lower_end else ""
        ext = "; EXTRAPOLATION beyond the fitted models" if self.extrapolation else ""
        return (f"{self.question}: {self.value:.4g} ({self.params:.3g}B parameters, {self.tokens:.3g}T tokens), "
                f"probability {self.probability:.3f}{extra}{ext}")


def _bisect(f, lo: float, hi: float, prob: float, rtol: float, steps: list):
    """Smallest x in (lo, hi] with f(x) >= prob, by bisection in log x (f(lo) < prob <= f(hi))."""
    phi = None
    while hi / lo > 1 + rtol:
        mid = np.sqrt(lo * hi)
        pm = f(mid)
        steps.append((mid, pm, "refine"))
        if pm >= prob:
            hi, phi = mid, pm
        else:
            lo = mid
    return hi, phi


def _search(f, lo, hi, prob, n_grid, rtol):
    """Grid over log [lo, hi], then bisection between the last point below and the first at or above ``prob``."""
    xs = np.exp(np.linspace(np.log(lo), np.log(hi), n_grid))
    steps = []
    ps = []
    for x in xs:
        ps.append(f(x))
        steps.append((x, ps[-1], "grid"))
    ps = np.asarray(ps)
    hit = np.flatnonzero(ps >= prob)
    if not len(hit):
        return float("nan"), float("nan"), float(ps.max()), False, False, steps
    i = int(hit[0])
    if i == 0:
        return float(xs[0]), float(ps[0]), float(ps.max()), True, True, steps
    x, p = _bisect(f, float(xs[i - 1]), float(xs[i]), prob, rtol, steps)
    return float(x), float(ps[i] if p is None else p), float(ps.max()), True, False, steps


def _inside(law, params, tokens) -> bool:
    return not any(bool(out[0]) for out in outside_fitted_range(law.leaderboard_.covariates, params, tokens).values())


@once_per_call
def smallest_params(law, family: str, benchmark: str, threshold: float, prob: float = 0.5, *,
                    tokens: float | None = None, tokens_per_param: float | None = None, params_range=None,
                    instruct: bool = False, n_grid: int = 16, rtol: float = 0.01, seed: int | None = None,
                    new_families: str = "warn") -> InverseAnswer:
    """The smallest parameter count (billions) of a new ``family`` model with P(score > threshold) >= prob.

    Tokens are fixed (``tokens``, trillions) or grow with the size
    (``tokens_per_param``, e.g. 20: T = 20 N). The search covers
    ``params_range`` (default: the fitted models' range) on a log grid of
    ``n_grid`` points, then bisects (in log N) between the last point below
    and the first at or above ``prob`` until the bracket is within ``rtol``.
    Each point is one :meth:`predict_covariates` call (common random numbers
    across points).
    """
    _benchmark(law, benchmark)
    threshold, prob = _number(threshold, "threshold"), _number(prob, "prob", 0, 1)
    if (tokens is None) == (tokens_per_param is None):
        raise InputError("give exactly one of tokens (trillions, fixed) or tokens_per_param (tokens grow with size)")
    ratio = None
    if tokens is not None:
        tokens = _number(tokens, "tokens", 0)
    else:
        ratio = _number(tokens_per_param, "tokens_per_param", 0)
    fit_cov = law.leaderboard_.covariates
    lo, hi = _range(params_range, "params_range", (float(fit_cov["params"].min()), float(fit_cov["params"].max())))
    n_grid, rtol = _grid_args(n_grid, rtol)

    def tok(n):
        return tokens if ratio is None else ratio * n * 1e-3  # N billion params x ratio tokens = ratio N / 1000 T

    def f(n):
        s = _point(law, family, n, tok(n), instruct, seed, new_families)["score"].sel(benchmark=benchmark)
        return float((s > threshold).mean())

    x, p, best, reached, at_lo, steps = _search(f, lo, hi, prob, n_grid, rtol)
    grid = pd.DataFrame(steps, columns=["params", "probability", "step"])
    grid["tokens"] = [tok(n) for n in grid["params"]]
    grid["extrapolation"] = [not _inside(law, n, t) for n, t in zip(grid["params"], grid["tokens"])]
    q = (f"smallest params of a {family} model with P({benchmark} > {threshold:g}) >= {prob:g} at "
         + (f"{tokens:g}T tokens" if ratio is None else f"{ratio:g} tokens per parameter"))
    t = tok(x) if reached else float("nan")
    return InverseAnswer(q, x, reached, p, best, at_lo, bool(reached and not _inside(law, x, t)), x, t, (lo, hi), grid)


def _grid_args(n_grid, rtol):
    if isinstance(n_grid, (bool, np.bool_)) or not isinstance(n_grid, (int, np.integer)) or n_grid < 2:
        raise InputError(f"n_grid must be an integer of at least 2, got {n_grid!r}")
    return int(n_grid), _number(rtol, "rtol", 0, 1)


@once_per_call
def smallest_compute(law, family: str, benchmark: str, threshold: float, prob: float = 0.5, *,
                     flops_range=None, tokens_per_param: float | None = None, params_range=None,
                     n_params: int = 15, instruct: bool = False, n_grid: int = 12, rtol: float = 0.02,
                     seed: int | None = None, new_families: str = "warn") -> InverseAnswer:
    """The smallest compute budget (FLOPs) at which a new ``family`` model reaches P(score > threshold) >= prob.

    Each budget C is spent either at a fixed ``tokens_per_param`` ratio r
    (N = sqrt(C / (6 r))), or (default) as the law prefers: the size N on a
    log grid of ``n_params`` points over ``params_range`` (default: the
    fitted range) with tokens C / (6 N) that maximizes the probability.
    ``flops_range`` defaults to the fitted models' range of 6 N T.
    """
    _benchmark(law, benchmark)
    threshold, prob = _number(threshold, "threshold"), _number(prob, "prob", 0, 1)
    fit_cov = law.leaderboard_.covariates
    c_fit = FLOPS_PER_BT * fit_cov["params"] * fit_cov["tokens"]
    lo, hi = _range(flops_range, "flops_range", (float(c_fit.min()), float(c_fit.max())))
    plo, phi = _range(params_range, "params_range", (float(fit_cov["params"].min()), float(fit_cov["params"].max())))
    n_grid, rtol = _grid_args(n_grid, rtol)
    ratio = None if tokens_per_param is None else _number(tokens_per_param, "tokens_per_param", 0)
    sizes = np.exp(np.linspace(np.log(plo), np.log(phi), int(n_params)))
    chosen = {}

    def f(c):
        if ratio is not None:
            n = np.sqrt(c / (6.0 * ratio)) / 1e9
            cands = [n]
        else:
            cands = sizes
        best = (-1.0, None)
        for n in cands:
            s = _point(law, family, n, c / (FLOPS_PER_BT * n), instruct, seed, new_families)["score"].sel(
                benchmark=benchmark)
            p = float((s > threshold).mean())
            if p > best[0]:
                best = (p, n)
        chosen[c] = best[1]
        return best[0]

    x, p, best, reached, at_lo, steps = _search(f, lo, hi, prob, n_grid, rtol)
    grid = pd.DataFrame(steps, columns=["flops", "probability", "step"])
    grid["params"] = [chosen[c] for c in grid["flops"]]
    grid["tokens"] = grid["flops"] / (FLOPS_PER_BT * grid["params"])
    n = chosen.get(x, float("nan")) if reached else float("nan")
    t = x / (FLOPS_PER_BT * n) if reached else float("nan")
    how = f"{ratio:g} tokens per parameter" if ratio is not None else "the law's preferred size"
    q = f"smallest compute (FLOPs) for a {family} model with P({benchmark} > {threshold:g}) >= {prob:g}, at {how}"
    return InverseAnswer(q, x, reached, p, best, at_lo, bool(reached and not _inside(law, n, t)), n, t, (lo, hi), grid)


# ------------------------------------------------------------------ compute budget
@dataclass
class BudgetForecast:
    """Forecasts along compute budgets and the allocation the law prefers.

    ``curve``: one row per (flops, params, benchmark): tokens, mean, median,
    lower, upper (central ``level`` predictive interval), law_mean,
    probability (P(score > threshold), with a threshold), extrapolation.
    ``best``: one row per (flops, benchmark): the preferred size and its
    forecast (the size maximizing the expected score, or with a threshold
    the probability), ``params_lower``/``params_upper`` (the central
    ``level`` interval, over posterior draws, of the size at which the law's
    mean peaks), and ``at_edge`` when the preferred size is at an end of the
    size grid (the optimum may lie outside it).
    """

    curve: pd.DataFrame
    best: pd.DataFrame


@once_per_call
def compute_budget(law, family: str, flops, *, benchmarks=None, params=None, n_params: int = 15,
                   threshold: float | None = None, level: float = 0.9, instruct: bool = False,
                   seed: int | None = None, new_families: str = "warn") -> BudgetForecast:
    """Forecasts of a new ``family`` model along compute budgets C (FLOPs), tokens = C / (6 N), over sizes N.

    ``flops``: one budget or several; ``params``: the sizes (billions) to
    try (default, per budget: ``n_params`` on a log grid over the sizes
    whose tokens C / (6 N) lie inside the fitted models' tokens and whose
    size lies inside their sizes, so that every point is covered by the
    data; where no size is, the fitted size range, with a note). The
    preferred allocation of each budget is the size with the largest
    expected score (or, with ``threshold``, the largest P(score >
    threshold)); its uncertainty is the spread over posterior draws of the
    size at which each draw's law peaks (for one draw the law's mean is
    increasing in lambda_j' theta, so the peak is that of the skills'
    projection, free of the model's offset and the noise).
    """
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    if not (np.isfinite(flops) & (flops > 0)).all() or flops.ndim != 1:
        raise InputError(f"flops must be positive finite numbers, got {flops!r}")
    level = _number(level, "level", 0, 1)
    if threshold is not None:
        threshold = _number(threshold, "threshold")
    bench = law.benchmarks_ if benchmarks is None else [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    for j in bench:
        _benchmark(law, j)
    fit_cov = law.leaderboard_.covariates
    n_lo, n_hi = float(fit_cov["params"].min()), float(fit_cov["params"].max())
    t_lo, t_hi = float(fit_cov["tokens"].min()), float(fit_cov["tokens"].max())
    if params is not None:
        given = np.atleast_1d(np.asarray(params, dtype=float))
        if not (np.isfinite(given) & (given > 0)).all() or given.ndim != 1 or len(given) < 2:
            raise InputError(f"params must be at least two positive sizes (billions), got {params!r}")
        given = np.sort(given)
    loadings = law.loadings_.sel(benchmark=bench)
    curve, best = [], []
    qlo, qhi = (1 - level) / 2, (1 + level) / 2
    for c in flops:
        # the sizes: given, or (default) those whose tokens C / (6 N) stay inside the fitted tokens and whose size
        # stays inside the fitted sizes, so every point is one the data cover; what bounds the grid is said
        lo_why, hi_why = "the smallest fitted model", "the largest fitted model"
        covered = True
        if params is not None:
            sizes = given
            lo_why = hi_why = "the sizes given"
        else:
            lo, hi = n_lo, n_hi
            if c / (FLOPS_PER_BT * t_hi) > lo:
                lo, lo_why = c / (FLOPS_PER_BT * t_hi), f"the most tokens any fitted model trained on, {t_hi:g} T"
            if c / (FLOPS_PER_BT * t_lo) < hi:
                hi, hi_why = c / (FLOPS_PER_BT * t_lo), f"the fewest tokens any fitted model trained on, {t_lo:g} T"
            if not lo < hi:  # no size trains on a fitted token count at this budget: the whole fitted size range
                covered, (lo, hi) = False, (n_lo, n_hi)
            # ends pulled in by a rounding's width, so tokens C / (6 N) at an end is not a hair beyond the data
            sizes = np.exp(np.linspace(np.log(lo) + 1e-9, np.log(hi) - 1e-9, int(n_params)))
        toks = c / (FLOPS_PER_BT * sizes)
        pts = _points(law, family, sizes, toks, instruct, seed, new_families)
        score = pts["score"].sel(benchmark=bench)
        q = score.quantile([qlo, 0.5, qhi], dim=("chain", "draw"))
        mean = score.mean(("chain", "draw"))
        tab = pd.DataFrame({
            "flops": c, "params": np.repeat(sizes, len(bench)), "tokens": np.repeat(toks, len(bench)),
            "benchmark": np.tile(bench, len(sizes)),
            "mean": mean.transpose("point", "benchmark").values.ravel(),
            "median": q.sel(quantile=0.5).transpose("point", "benchmark").values.ravel(),
            "lower": q.sel(quantile=qlo).transpose("point", "benchmark").values.ravel(),
            "upper": q.sel(quantile=qhi).transpose("point", "benchmark").values.ravel(),
            "law_mean": pts["mu"].sel(benchmark=bench).mean(("chain", "draw")).transpose("point", "benchmark").values.ravel(),
            "extrapolation": np.repeat(pts["extrapolation"].values, len(bench)),
        })
        if threshold is not None:
            tab["probability"] = (score > threshold).mean(("chain", "draw")).transpose("point", "benchmark").values.ravel()
        curve.append(tab)
        # per draw: the size at which the law peaks (argmax over the grid of lambda_j' theta)
        proj = (pts["skills"] * loadings).sum("skill").transpose("chain", "draw", "point", "benchmark").values
        peak = sizes[np.argmax(proj.reshape((-1,) + proj.shape[2:]), axis=1)]  # (n_draws, benchmark)
        key = "probability" if threshold is not None else "mean"
        for j, b in enumerate(bench):
            rows = tab[tab["benchmark"] == b].reset_index(drop=True)
            i = int(np.argmax(rows[key].to_numpy()))
            r = rows.iloc[i]
            if not covered:
                note = (f"no size between {n_lo:g} and {n_hi:g} B trains on a fitted token count ({t_lo:g}-{t_hi:g} T) "
                        f"at {c:.3g} FLOPs: every point is an extrapolation")
            elif i == len(sizes) - 1:
                note = (f"the {key} still rises at the largest size tried ({sizes[-1]:.3g} B, bounded by {hi_why}): "
                        "the law prefers a larger model than the data cover at this budget, so the optimum is not "
                        "inside the grid")
            elif i == 0:
                note = (f"the {key} still rises toward the smallest size tried ({sizes[0]:.3g} B, bounded by "
                        f"{lo_why}): the law prefers a smaller model (more tokens) than the data cover at this "
                        "budget, so the optimum is not inside the grid")
            else:
                note = ""
            best.append({
                "flops": c, "benchmark": b, "params": r["params"], "tokens": r["tokens"], "mean": r["mean"],
                "lower": r["lower"], "upper": r["upper"],
                **({"probability": r["probability"]} if threshold is not None else {}),
                "params_lower": float(np.exp(np.quantile(np.log(peak[:, j]), qlo))),
                "params_upper": float(np.exp(np.quantile(np.log(peak[:, j]), qhi))),
                "at_edge": bool(i in (0, len(sizes) - 1)), "extrapolation": bool(r["extrapolation"]),
                "criterion": "probability" if threshold is not None else "mean", "note": note,
            })
    curve = pd.concat(curve, ignore_index=True)
    curve["level"] = level
    best = pd.DataFrame(best)
    best["level"] = level
    return BudgetForecast(curve, best)


__all__ = ["BudgetForecast", "FLOPS_PER_BT", "InverseAnswer", "compute_budget", "exceedance", "head_to_head",
           "smallest_compute", "smallest_params"]
