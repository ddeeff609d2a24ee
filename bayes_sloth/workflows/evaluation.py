r"""Leave-family-out evaluation: the Sloth paper's protocol, and calibration.

Protocol (``protocol="sloth"``, Maia Polo et al. 2024, arXiv:2412.06540;
the copy shipped with the package, :func:`bayes_sloth.core.data.load_protocol`), for a benchmark set S and a
number n of training models per test family:

1. *Complete rows*: models with parameters, tokens, FLOPs and every score in S.
2. *Kept families*: families with at least n + 1 complete rows.
3. For each test group (a list of families, from the protocol file), each of
   the group's families is ordered by parameters; its n smallest complete
   models are trained on, together with every other kept family; the group's
   other complete models are forecast on every benchmark of S.
4. Error: mean absolute error of the forecast over a group's forecast pairs,
   then averaged over groups.

``n_train=0`` holds whole families out: nothing of the group's families is
trained on (the sloth protocol then uses the n = 1 groups and forecasts every
complete model of those families). ``protocol="leave-family-out"`` does the
same on any table, each family with at least n + 1 complete rows (over the
chosen benchmarks; FLOPs are not needed) held out in turn as its own group.

Training rows (``training_rows``): ``"complete"`` trains on the paper's rows
only; ``"all"`` also trains on the rows the paper dropped (models with
parameters and tokens but some scores missing, FLOPs missing, or from
families with fewer than n + 1 complete rows), their missing scores masked in
the likelihood; ``"all+latent-tokens"`` also trains on the models without a
token count, their tokens latent (learned from the other models' tokens,
:mod:`bayes_sloth.core.model`). That is not the default: tokens imputed from
parameters alone were too crude a guess for the Sloth table's 13 tokenless
models, and raised the error (``docs/decisions.md``). In every case the held-out families contribute exactly the
paper's n smallest complete models and nothing else, so the forecast pairs
are identical.

Cost: the folds of one cell are the same table with different masks over the
observed pairs (``SkillsLaw.fit(lb, obs_weight=mask)``), so all folds share
one compiled sampler. Anchors are chosen on each fold's training scores only
(test scores never influence a fold); when they agree across folds (the usual
case) no fold recompiles.

Metrics per forecast pair, from the posterior predictive draws of the score
(noise included), with ``y`` the observed score:

- point forecast: the predictive mean (MAE), median kept too;
- central intervals at 50/80/90/95 %: empirical coverage and mean width;
- interval score at 90 % (Gneiting and Raftery 2007, eq. 43), alpha = 0.1::

      IS = (u - l) + (2 / alpha) (l - y) 1{y < l} + (2 / alpha) (y - u) 1{y > u}

- CRPS from the draws x_1..x_D (Gneiting and Raftery 2007, eq. 21)::

      CRPS = mean_d |x_d - y| - 1/2 mean_{d,e} |x_d - x_e|

- log predictive density (``lpd``, the log score; higher is better), from
  the posterior draws s = 1..S of the law's mean ``mu_s`` and noise scale
  ``sigma_s`` of the pair, through the law's own noise distribution on
  [0, 1] (:func:`bayes_sloth.core.prediction.log_predictive_density`)::

      lpd = log (1/S) sum_s p(y | mu_s, sigma_s)

  and its mean over pairs, ``elpd_per_pair`` (the expected log predictive
  density per held-out pair). Unlike MAE and CRPS it punishes an interval
  that is too narrow hard: a score far in the tail of every draw's density
  costs its full log.

MAE is averaged per group then over groups (as the paper); coverage, width,
interval score, CRPS and ELPD are pooled over the forecast pairs.

The folds are independent: ``evaluate(..., n_jobs=...)`` runs them in
parallel workers (:mod:`bayes_sloth.workflows.sweeps`, through joblib: a process pool
or a Dask cluster), with the same numbers bit for bit as the serial loop
(:func:`fold_chain_method`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..core.data import Leaderboard, load_leaderboard, load_protocol, sloth_data_path, split_family
from ..core.errors import InputError
from ..core.estimator import SkillsLaw
from ..core.metadata import BENCHMARK_SETS, SLOTH_COLUMNS
from ..core.model import default_anchors, log_compute
from ..core.options import EVALUATION_SAMPLER, LawOptions
from ..core.prediction import log_predictive_density
from ..core.sampler import default_chain_method
from .stacking import StackedLaw
from .sweeps import run

LEVELS = (0.5, 0.8, 0.9, 0.95)
PROTOCOLS = ("sloth", "leave-family-out")
TRAINING_ROWS = ("all", "complete", "all+latent-tokens")
#: Default training rows, chosen by the leave-family-out errors (``docs/decisions.md``).
DEFAULT_TRAINING_ROWS = "all"
FLOPS_COLUMN = "FLOPs (1E21)"
PAIR_COLUMNS = [
    "group", "family", "model", "benchmark", "observed", "mean", "median",
    "lower_50", "upper_50", "lower_80", "upper_80", "lower_90", "upper_90", "lower_95", "upper_95", "crps",
    "lpd",
]


# ------------------------------------------------------------------ metrics
def crps_from_draws(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of the sample forecast ``draws`` (..., D) at observations ``y`` (...).

    Exact for the empirical distribution of the draws:
    ``mean|X - y| - 0.5 mean|X - X'|`` with the second term from the sorted
    draws, ``(2 / D^2) sum_i (2 i - D - 1) x_(i)``, in O(D log D).
    """
    x = np.sort(np.asarray(draws, dtype=float), axis=-1)
    y = np.asarray(y, dtype=float)
    D = x.shape[-1]
    e_xy = np.abs(x - y[..., None]).mean(axis=-1)
    w = 2.0 * np.arange(1, D + 1) - D - 1
    e_xx = 2.0 * (x * w).sum(axis=-1) / D**2
    return e_xy - 0.5 * e_xx


def interval_score(lower, upper, y, alpha: float) -> np.ndarray:
    """Interval score of central (1 - alpha) intervals (Gneiting and Raftery 2007)."""
    lower, upper, y = (np.asarray(a, dtype=float) for a in (lower, upper, y))
    return (upper - lower) + (2.0 / alpha) * np.maximum(lower - y, 0.0) + (2.0 / alpha) * np.maximum(y - upper, 0.0)


def pair_summaries(draws: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Point forecasts, interval bounds and CRPS of each row of ``draws`` (P, D)."""
    draws = np.asarray(draws, dtype=float)
    out = {"observed": np.asarray(y, float), "mean": draws.mean(axis=1), "median": np.median(draws, axis=1)}
    for lv in LEVELS:
        lo, hi = np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=1)
        out[f"lower_{round(lv * 100)}"] = lo
        out[f"upper_{round(lv * 100)}"] = hi
    out["crps"] = crps_from_draws(draws, y)
    return pd.DataFrame(out)


def summarize_pairs(pairs: pd.DataFrame) -> dict:
    """Summary metrics of forecast pairs (one row each, columns of ``PAIR_COLUMNS``).

    ``mae``: absolute error of the mean averaged within each group then over
    groups (the paper's); ``mae_pooled``: over all pairs. Coverage, mean width,
    the 90 % interval score, CRPS and ``elpd_per_pair`` (the mean of the
    ``lpd`` column; None for a table without it) are averaged over pairs.
    """
    if len(pairs) == 0:
        raise InputError("no forecast pairs to summarise")
    y = pairs["observed"].to_numpy(float)
    err = np.abs(pairs["mean"].to_numpy(float) - y)
    by_group = pd.Series(err, index=pairs.index).groupby(pairs["group"], sort=False).mean()
    cov, width = {}, {}
    for lv in LEVELS:
        lo = pairs[f"lower_{round(lv * 100)}"].to_numpy(float)
        hi = pairs[f"upper_{round(lv * 100)}"].to_numpy(float)
        cov[str(lv)] = float(np.mean((y >= lo) & (y <= hi)))
        width[str(lv)] = float(np.mean(hi - lo))
    return {
        "mae": float(by_group.mean()),
        "mae_pooled": float(err.mean()),
        "mae_median": float(
            pd.Series(np.abs(pairs["median"].to_numpy(float) - y)).groupby(pairs["group"].to_numpy()).mean().mean()
        ),
        "coverage": cov,
        "mean_width": width,
        "interval_score_90": float(interval_score(pairs["lower_90"], pairs["upper_90"], y, 0.1).mean()),
        "crps": float(pairs["crps"].mean()),
        "elpd_per_pair": float(pairs["lpd"].mean()) if "lpd" in pairs else None,
        "n_groups": int(by_group.size),
        "n_pairs": int(len(pairs)),
    }


# ------------------------------------------------------------------- folds
@dataclass
class Fold:
    """One test group: what is trained on and what is forecast.

    ``obs_weight`` is a boolean mask over the observed pairs of the cell's
    leaderboard (``Leaderboard.long()`` order): False = left out of the
    likelihood (every pair of the group's families except their n smallest
    complete models).
    """

    group: str
    families: tuple[str, ...]
    train_models: list[str]
    forecast_models: list[str]
    obs_weight: np.ndarray

    @property
    def n_test_models(self) -> int:
        return len(self.forecast_models)


@dataclass
class Design:
    """The folds of one evaluation cell, built without fitting anything."""

    leaderboard: Leaderboard
    folds: list[Fold]
    protocol: str
    benchmark_set: str | None
    n_train: int
    training_rows: str
    complete_models: list[str] = field(default_factory=list)

    @property
    def benchmarks(self) -> list[str]:
        return self.leaderboard.benchmarks

    def forecast_pairs(self) -> pd.DataFrame:
        """One row per forecast (model, benchmark) pair: group, family, model, benchmark, observed."""
        rows = []
        sc = self.leaderboard.scores
        fam = self.leaderboard.covariates["family"]
        for f in self.folds:
            for m in f.forecast_models:
                for b in self.benchmarks:
                    rows.append((f.group, fam[m], m, b, float(sc.at[m, b])))
        return pd.DataFrame(rows, columns=["group", "family", "model", "benchmark", "observed"])

    def __repr__(self) -> str:
        n_pairs = sum(f.n_test_models for f in self.folds) * len(self.benchmarks)
        return (f"Design({self.protocol}, {self.benchmark_set or self.benchmarks}, n_train={self.n_train}, "
                f"training_rows={self.training_rows!r}: {len(self.folds)} groups, {n_pairs} forecast pairs, "
                f"{len(self.leaderboard)} models in the table)")


def _read_flops(path: str | os.PathLike) -> pd.Series:
    df = pd.read_csv(path)
    if FLOPS_COLUMN not in df.columns:
        raise InputError(f"{str(path)!r} has no {FLOPS_COLUMN!r} column: the sloth protocol needs it "
                         "(use --protocol leave-family-out for other tables)")
    names = df[SLOTH_COLUMNS["model"]].astype(str).str.strip()
    return pd.Series(pd.to_numeric(df[FLOPS_COLUMN], errors="coerce").to_numpy(), index=names)


def _resolve(data, benchmarks, protocol, data_dir=None, columns=None, flops=None):
    """(Leaderboard over ``benchmarks`` with every row, FLOPs series or None)."""
    if data is None:
        data = sloth_data_path(data_dir)
    if isinstance(data, Leaderboard):
        lb = data.select(benchmarks=benchmarks) if benchmarks is not None else data
        if protocol == "sloth" and flops is None:
            flops = _read_flops(sloth_data_path(data_dir))
    else:
        lb = load_leaderboard(data, benchmarks=benchmarks, **(columns or {}))
        if protocol == "sloth" and flops is None:
            if isinstance(data, pd.DataFrame):
                if FLOPS_COLUMN not in data.columns:
                    raise InputError(f"the DataFrame has no {FLOPS_COLUMN!r} column, needed by the sloth protocol")
                flops = pd.Series(pd.to_numeric(data[FLOPS_COLUMN], errors="coerce").to_numpy(),
                                  index=data[SLOTH_COLUMNS["model"]].astype(str).str.strip())
            else:
                flops = _read_flops(data)
    return lb, flops


def build_design(
    data=None,
    protocol: str = "sloth",
    benchmark_set: str | None = "leaderboard_v1",
    n_train: int = 1,
    training_rows: str = DEFAULT_TRAINING_ROWS,
    *,
    benchmarks: Sequence[str] | None = None,
    protocol_file: str | os.PathLike | None = None,
    data_dir=None,
    columns: dict | None = None,
    flops: pd.Series | None = None,
) -> Design:
    """Rows, test groups, training and forecast models of one evaluation cell.

    Nothing is fitted: this is the whole protocol, testable on its own.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if training_rows not in TRAINING_ROWS:
        raise InputError(f"training_rows must be one of {TRAINING_ROWS}, got {training_rows!r}")
    if n_train not in (0, 1, 2) and not (protocol == "leave-family-out" and isinstance(n_train, int) and n_train >= 0):
        raise InputError(f"n_train must be 0, 1 or 2 for the sloth protocol, got {n_train!r}")
    proto = None
    if protocol == "sloth":
        proto = load_protocol(protocol_file)
        if benchmark_set not in proto["benchmark_sets"]:
            raise InputError(f"benchmark set must be one of {list(proto['benchmark_sets'])}, got {benchmark_set!r}")
        benchmarks = list(proto["benchmark_sets"][benchmark_set])
    elif benchmarks is None and benchmark_set is not None:
        if benchmark_set not in BENCHMARK_SETS:
            raise InputError(f"unknown benchmark set {benchmark_set!r}; known: {list(BENCHMARK_SETS)}")
        benchmarks = list(BENCHMARK_SETS[benchmark_set])
    lb, flops = _resolve(data, benchmarks, protocol, data_dir, columns, flops)
    cov, sc = lb.covariates, lb.scores
    has_cov = cov[["params", "tokens"]].notna().all(axis=1)
    complete = has_cov & sc.notna().all(axis=1)
    if protocol == "sloth":
        fl = flops.reindex(cov.index)
        complete &= fl.notna().to_numpy()
    n_filter = max(n_train, 1) if protocol == "sloth" else n_train
    n_complete = complete.groupby(cov["family"]).sum()
    kept_fams = set(n_complete.index[n_complete >= n_filter + 1])
    paper_rows = complete & cov["family"].isin(kept_fams)
    if training_rows == "complete":
        rows = paper_rows
    elif training_rows == "all":
        rows = has_cov & sc.notna().any(axis=1)
    else:  # a model without a token count is trained on too (latent tokens, bayes_sloth.core.model)
        rows = cov["params"].notna() & sc.notna().any(axis=1)
    cell = lb.select(models=list(cov.index[rows.to_numpy()]))

    if protocol == "sloth":
        key = f"{benchmark_set}/n_train_models={max(n_train, 1)}"
        groups = [tuple(g) for g in proto["test_groups"][key]]
        missing = [f for g in groups for f in g if f not in kept_fams]
        if missing:
            raise InputError(f"test families {missing} of {key} have fewer than {n_filter + 1} complete rows here")
    else:
        groups = [(f,) for f in pd.unique(cov["family"]) if f in kept_fams]
        if not groups:
            raise InputError(f"no family has {n_train + 1} complete rows (params, tokens and every score)")

    long = cell.long()
    cfam = cell.covariates["family"]
    folds = []
    complete_models = list(cov.index[paper_rows.to_numpy()])
    for g in groups:
        train, test = [], []
        for f in g:
            tr, te = split_family(lb, f, n_train, among=complete_models)
            train += tr
            test += te
        in_group = cfam.isin(g).to_numpy()
        held = set(cell.covariates.index[in_group]) - set(train)
        weight = ~long["model"].isin(held).to_numpy()
        folds.append(Fold("+".join(g), g, train, test, weight))
    return Design(cell, folds, protocol, benchmark_set, n_train, training_rows, complete_models=complete_models)


# --------------------------------------------------------------- evaluation
@dataclass
class EvaluationResult:
    """``summary`` (dict of metrics, with a per-group list) and ``pairs`` (one row per forecast pair)."""

    summary: dict
    pairs: pd.DataFrame
    design: Design | None = None
    fits: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.summary, default=_json_default)

    def __repr__(self) -> str:
        s = self.summary
        cov = ", ".join(f"{k}: {v:.2f}" for k, v in s["coverage"].items())
        elpd = s.get("elpd_per_pair")
        elpd = "" if elpd is None else f", elpd/pair={elpd:.3f}"
        return (f"EvaluationResult(mae={s['mae']:.4f}, coverage {{{cov}}}, crps={s['crps']:.4f}{elpd}, "
                f"{s['n_groups']} groups, {s['n_pairs']} pairs, {s['seconds']:.0f} s)")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _fold_anchors(lb: Leaderboard, weight: np.ndarray, n_skills: int) -> list[str]:
    """Default anchors computed on the fold's training scores only."""

    long = lb.long()
    tr = long[weight]
    scores = tr.pivot(index="model", columns="benchmark", values="score").reindex(columns=lb.benchmarks)
    idx = default_anchors(scores, lb.floors, n_skills, log_compute=log_compute(lb.covariates.loc[scores.index]))
    return [lb.benchmarks[i] for i in idx]


def fold_chain_method() -> str:
    """The chain layout of fold fits: the process's default (:func:`bayes_sloth.core.inference.default_chain_method`).

    A fold's numbers do not depend on it: chains spread over a process's CPU
    devices ("parallel") run the very program a lone chain runs
    ("sequential"), one chain after another on each device, so the serial
    loop of a 2-device process and a 1-device worker give the same draws bit
    for bit (``tests/test_reproducibility.py``, ``tests/test_sweeps.py``).
    On an accelerator the chains of a fold are vectorized in one program.
    """

    return default_chain_method(2)


@dataclass
class FoldTask:
    """One fold to fit and score: everything a worker needs (sent to it pickled)."""

    leaderboard: Leaderboard
    fold: Fold
    n_skills: int
    anchors: list[str] | None
    law_kwargs: dict
    keep_fit: bool = False
    #: An unfitted :class:`bayes_sloth.workflows.stacking.StackedLaw` to fit in place of one SkillsLaw (None: a SkillsLaw).
    stack: object = None


@dataclass
class FoldResult:
    """A fold's forecast pairs (``pairs``), its summary line (``info``), fit seconds and the fit if kept."""

    group: str
    pairs: pd.DataFrame
    info: dict
    seconds: float
    fit: object = None

    def message(self) -> str:
        return (f"{self.group}: mae {self.info['mae']:.4f}, 90% coverage {self.info['coverage_90']:.2f} "
                f"({self.seconds:.1f} s)")


def run_fold(task: FoldTask) -> FoldResult:
    """Fit one fold and score its forecasts (a module-level function: workers import it by name).

    The fit uses :func:`fold_chain_method` unless ``chain_method`` is in the
    task's settings, and no progress display unless ``progress`` is.
    """

    lb, fold = task.leaderboard, task.fold
    if task.stack is not None:
        law, anchors = _fold_stack(task), None
    else:
        kw = dict(task.law_kwargs)
        if kw.get("chain_method") is None:
            kw["chain_method"] = fold_chain_method()
        kw.setdefault("progress", False)
        anchors = task.anchors or _fold_anchors(lb, fold.obs_weight, task.n_skills)
        law = SkillsLaw(n_skills=task.n_skills, anchors=anchors, **kw)
    tf = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.fit(lb, obs_weight=fold.obs_weight)  # a stack's weights: from the fold's training pairs only
        # the forecast rows without their scores: nothing of what is forecast reaches the forecast
        pred = law.predict(lb.select(models=fold.forecast_models, benchmarks=[])).predictions
    models, benchmarks = list(fold.forecast_models), list(lb.benchmarks)
    P = len(models) * len(benchmarks)
    score = pred["score"].sel(model=models, benchmark=benchmarks).transpose("model", "benchmark", "chain", "draw")
    draws = score.values.reshape(P, -1)
    observed = lb.scores.loc[models, benchmarks]
    summ = pair_summaries(draws, observed.to_numpy().reshape(P))
    import xarray as xr

    obs = xr.DataArray(observed.to_numpy(dtype=float), dims=("model", "benchmark"),
                       coords={"model": models, "benchmark": benchmarks})
    if task.stack is not None:  # the mixture's density: each draw through its own member's noise
        lpd = law.log_predictive_density(pred.sel(model=models, benchmark=benchmarks), obs)
    else:
        lpd = log_predictive_density(law.spec_, pred["mu"].sel(model=models, benchmark=benchmarks),
                                     law.idata_.posterior["sigma"].sel(benchmark=benchmarks), obs)
    summ["lpd"] = lpd.transpose("model", "benchmark").values.reshape(P)
    summ.insert(0, "benchmark", np.tile(benchmarks, len(models)))
    summ.insert(0, "model", np.repeat(models, len(benchmarks)))
    summ.insert(0, "family", lb.covariates.loc[summ["model"], "family"].to_numpy())
    summ.insert(0, "group", fold.group)
    g = summarize_pairs(summ)
    seconds = round(time.perf_counter() - tf, 2)
    info = {
        "group": fold.group, "families": list(fold.families), "train_models": fold.train_models,
        "n_test_models": fold.n_test_models, "n_pairs": g["n_pairs"], "mae": g["mae"],
        "coverage_90": g["coverage"]["0.9"], "coverage_50": g["coverage"]["0.5"], "crps": g["crps"],
        "elpd_per_pair": g["elpd_per_pair"],
    }
    if task.stack is not None:
        dm = [m.diagnostics_ for m in law.members_]
        info.update({"weights": {k: float(v) for k, v in law.weights_.items()},
                     "anchors": {n: list(m.anchors_) for n, m in zip(law.names_, law.members_)},
                     "max_rhat": _finite(max(d.max_rhat for d in dm)),
                     "divergences": int(sum(d.divergences for d in dm)),
                     "chain_method": law.members_[0].chain_method, "seconds": seconds})
    else:
        d = law.diagnostics_
        info.update({"anchors": list(anchors), "max_rhat": _finite(d.max_rhat), "divergences": int(d.divergences),
                     "chain_method": law.chain_method, "seconds": seconds})
    return FoldResult(fold.group, summ, info, seconds, law if task.keep_fit else None)


def _fold_stack(task: FoldTask):
    """A fold's copy of the task's stack: each candidate without anchors gets the fold's (training scores
    only), the fold's chain layout and no progress display; the leave-family-out densities see the fold's
    n_train smallest models of each family, as the cell's forecasts do (set by :func:`fold_tasks`)."""

    members = []
    for c in task.stack.candidates:
        p = c.get_params()
        if p.get("chain_method") is None:
            p["chain_method"] = fold_chain_method()
        p["progress"] = False
        if p.get("anchors") is None:
            p["anchors"] = _fold_anchors(task.leaderboard, task.fold.obs_weight, p["n_skills"])
        members.append(SkillsLaw(**p))
    st = task.stack
    return type(st)(members, names=st.candidate_labels(), n_seen=st.n_seen, seed=st.seed, n_draws=st.n_draws)


def evaluation_sampler_defaults() -> dict:
    """Where a fold's sampler differs from a fit's by default (:data:`~bayes_sloth.core.options.EVALUATION_SAMPLER`)."""
    return EVALUATION_SAMPLER.differences()


def fold_tasks(data, protocol, benchmark_set, n_train, n_skills, training_rows, *, benchmarks=None,
               protocol_file=None, data_dir=None, columns=None, groups=None, keep_fits=False,
               law_kwargs=None, law=None) -> tuple[Design, list[FoldTask], dict]:
    """The design of one cell, a :class:`FoldTask` per fold (``groups``: only those), and the law's settings.

    ``law``: an unfitted :class:`bayes_sloth.workflows.stacking.StackedLaw` evaluated in place of a SkillsLaw
    (``law_kwargs`` must then be empty: the candidates carry their settings); its ``n_seen`` is set to
    ``n_train``, so that its weights are chosen on the situation the cell forecasts.
    """

    design = build_design(data, protocol, benchmark_set, n_train, training_rows, benchmarks=benchmarks,
                          protocol_file=protocol_file, data_dir=data_dir, columns=columns)
    folds = design.folds
    if groups is not None:
        known = [f.group for f in folds]
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise InputError(f"test group {unknown[0]!r} is not in this cell; groups are: {known}")
        folds = [f for f in folds if f.group in set(groups)]
    if law is None:  # each fold's sampler: the evaluation's defaults (EVALUATION_SAMPLER), then the caller's
        law_kwargs = {**evaluation_sampler_defaults(), **(law_kwargs or {})}
    law_kwargs = dict(law_kwargs or {})
    if law is not None:

        if not isinstance(law, StackedLaw):
            raise InputError(f"law must be a StackedLaw (bayes_sloth.stack(...)) or None, got {law!r}")
        if law_kwargs:
            raise InputError(f"settings {sorted(law_kwargs)} cannot be combined with law=: set them on the "
                             "stack's candidate SkillsLaws")
        law = type(law)(**dict(law.get_params(), n_seen=int(n_train)))
        law.validate_params()
        settings = {"stack": law.candidate_labels(), "n_seen": int(n_train), "seed": law.seed,
                    "candidates": [{k: v for k, v in c.get_params().items() if k != "progress"}
                                   for c in law.candidates]}
        tasks = [FoldTask(design.leaderboard, f, n_skills, None, {}, keep_fits, law) for f in folds]
        return design, tasks, settings
    user_anchors = law_kwargs.pop("anchors", None)
    # every setting checked here, before any task leaves this process
    settings = SkillsLaw(n_skills=n_skills, **law_kwargs).get_params()
    settings = {k: v for k, v in settings.items() if k not in ("progress",)}
    tasks = [FoldTask(design.leaderboard, f, n_skills, list(user_anchors) if user_anchors else None, law_kwargs,
                      keep_fits) for f in folds]
    return design, tasks, settings


def assemble_result(design: Design, results: Sequence[FoldResult], *, n_skills: int, settings: dict,
                    seconds: float) -> EvaluationResult:
    """One cell's :class:`EvaluationResult` from its folds' results (in fold order)."""
    if not results:
        raise InputError("no fold to evaluate")
    pairs = pd.concat([r.pairs for r in results], ignore_index=True)
    summary = summarize_pairs(pairs)
    lb = design.leaderboard
    settings = dict(settings)
    if settings.get("chain_method") is None:
        settings["chain_method"] = results[0].info["chain_method"]
    summary.update({
        "seconds": round(seconds, 2),
        "protocol": design.protocol, "benchmark_set": design.benchmark_set, "benchmarks": lb.benchmarks,
        "n_train": design.n_train, "n_skills": n_skills, "training_rows": design.training_rows,
        "n_models_in_table": len(lb), "settings": settings,
        "groups": [r.info for r in results],
    })
    order = PAIR_COLUMNS + [c for c in pairs.columns if c not in PAIR_COLUMNS]
    return EvaluationResult(summary, pairs[order], design, [r.fit for r in results if r.fit is not None])


def evaluate(
    data=None,
    protocol: str = "sloth",
    benchmark_set: str | None = "leaderboard_v1",
    n_train: int = 1,
    n_skills: int = LawOptions.n_skills,
    training_rows: str = DEFAULT_TRAINING_ROWS,
    *,
    benchmarks: Sequence[str] | None = None,
    protocol_file=None,
    data_dir=None,
    columns: dict | None = None,
    keep_fits: bool = False,
    on_fold=None,
    groups: Sequence[str] | None = None,
    n_jobs: int | None = 1,
    law=None,
    **law_kwargs,
) -> EvaluationResult:
    """Leave-family-out evaluation of the skills law (see the module docstring).

    Parameters
    ----------
    data : Leaderboard, CSV path, DataFrame or None (the Sloth table)
    protocol : {"sloth", "leave-family-out"}
    benchmark_set : name in ``BENCHMARK_SETS`` (the sloth protocol's sets)
    n_train : 0, 1 or 2 training models per held-out family
    n_skills : number of skills K
    training_rows : {"all", "complete", "all+latent-tokens"}, see the module docstring
    on_fold : callable(str), optional, called with a line of progress after each fold
    groups : list of str, optional
        Evaluate only these test groups (names as in ``build_design(...).folds``),
        e.g. for a quick look; the paper's averages need every group.
    n_jobs : int or None, default 1
        1: the folds one after another in this process. Otherwise the folds
        run in parallel workers through joblib (:func:`bayes_sloth.workflows.sweeps.run`:
        a process pool, or a Dask cluster under
        ``joblib.parallel_config(backend="dask")``), each worker with
        ``cores // workers`` JAX devices; -1: every core. The numbers are the
        same bit for bit however the folds are spread (:func:`fold_chain_method`).
    law : StackedLaw, optional
        Evaluate a stack of candidate laws (``bayes_sloth.stack([...])``)
        instead of one SkillsLaw: in each fold every candidate is fitted on
        the fold's training pairs and the weights come from their
        leave-family-out densities on those pairs only (held-out families'
        forecast models never enter); ``n_skills`` and ``law_kwargs`` are
        then unused (the candidates carry their settings).
    **law_kwargs : passed to :class:`bayes_sloth.SkillsLaw` (chains, warmup,
        draws, noise, instruct_shift, link, seed, ...); the sampler's defaults are
        :data:`~bayes_sloth.core.options.EVALUATION_SAMPLER` (2 chains x 500 warm-up x 500 draws per fold)

    Returns
    -------
    EvaluationResult with ``summary`` and ``pairs``.
    """

    t0 = time.perf_counter()
    design, tasks, settings = fold_tasks(
        data, protocol, benchmark_set, n_train, n_skills, training_rows, benchmarks=benchmarks,
        protocol_file=protocol_file, data_dir=data_dir, columns=columns, groups=groups, keep_fits=keep_fits,
        law_kwargs=law_kwargs, law=law)

    def progress(i, res):
        if on_fold is not None:
            on_fold(f"[{i + 1}/{len(tasks)}] {res.message()}")

    results = run(run_fold, tasks, n_jobs, on_result=progress)
    return assemble_result(design, results, n_skills=n_skills if law is None else "stack", settings=settings,
                           seconds=time.perf_counter() - t0)


def _finite(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- several cells in one pool
def evaluate_cells(
    cells: Sequence[tuple],
    n_jobs: int | None = 1,
    *,
    data=None,
    protocol: str = "sloth",
    n_skills: int = LawOptions.n_skills,
    training_rows: str | None = None,
    data_dir=None,
    on_fold: Callable[[str], None] | None = None,
    on_cell: Callable[[tuple, Any], None] | None = None,
    devices: int | None = None,
    law=None,
    **law_kwargs,
) -> dict:
    """Leave-family-out evaluation of several cells, all their folds in one pool.

    ``cells`` are ``(benchmark_set, n_train)`` pairs (or ``(benchmark_set,
    n_train, n_skills)``, to sweep K too); every fold of every cell is one
    task, so a short cell does not leave workers idle. Each cell's result
    equals ``evaluate(...)`` of that cell alone (same folds, same seeds, the
    same numbers), except ``summary["seconds"]``, which is the sum of its
    folds' seconds in the workers. ``law``: a StackedLaw evaluated in place of
    a SkillsLaw (see :func:`bayes_sloth.workflows.evaluation.evaluate`). ``on_cell(cell, result)`` is called in
    this process as soon as a cell's folds are all done (in the order of
    ``cells``), e.g. to save it. Returns ``{cell: EvaluationResult}``.
    """
    rows = DEFAULT_TRAINING_ROWS if training_rows is None else training_rows
    prepared, tasks, owner = [], [], []
    for cell in cells:
        if len(cell) not in (2, 3):
            raise InputError(f"a cell is (benchmark_set, n_train) or (benchmark_set, n_train, n_skills), got {cell!r}")
        s, n = cell[0], cell[1]
        k = cell[2] if len(cell) == 3 else n_skills
        design, ts, settings = fold_tasks(data, protocol, s, n, k, rows, data_dir=data_dir, law_kwargs=law_kwargs,
                                          law=law)
        prepared.append((tuple(cell), design, settings, k if law is None else "stack", len(ts)))
        owner += [len(prepared) - 1] * len(ts)
        tasks += ts
    results: dict = {}
    done: list = [[] for _ in prepared]
    next_cell = [0]
    t0 = time.perf_counter()

    def arrived(i, res):
        c = owner[i]
        done[c].append(res)
        if on_fold is not None:
            cell = prepared[c][0]
            on_fold(f"{cell[0]} n_train={cell[1]} [{len(done[c])}/{prepared[c][4]}] {res.message()}")
        while next_cell[0] < len(prepared) and len(done[next_cell[0]]) == prepared[next_cell[0]][4]:
            cell, design, settings, k, _ = prepared[next_cell[0]]
            fr = done[next_cell[0]]
            r = assemble_result(design, fr, n_skills=k, settings=settings,
                                seconds=sum(f.seconds for f in fr))
            r.summary["sweep_elapsed"] = round(time.perf_counter() - t0, 2)
            results[cell] = r
            if on_cell is not None:
                on_cell(cell, r)
            next_cell[0] += 1

    for c, p in enumerate(prepared):  # a cell without folds is done at once
        if p[4] == 0:
            raise InputError(f"cell {p[0]!r} has no test group")
    run(run_fold, tasks, n_jobs, devices=devices, on_result=arrived)
    return results
