"""``SkillsLaw``: the estimator users work with (scikit-learn / Bambi style).

>>> law = SkillsLaw(n_skills=3, seed=0).fit(load_sloth())     # doctest: +SKIP
>>> law.diagnostics_                                            # doctest: +SKIP
>>> pred = law.predict(new_models)                              # doctest: +SKIP
>>> law.forecast(new_models, level=0.9)                         # doctest: +SKIP

Hyperparameters are set in ``__init__``; ``fit`` validates the data, samples
the posterior with NUTS and returns ``self`` with fitted state in attributes
ending in ``_``; ``predict`` returns labelled posterior predictive draws.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .data import Leaderboard, load_leaderboard
from .diagnostics import Diagnostics, diagnose
from .errors import InputError
from .inference import SamplerConfig, leaderboard_arrays, run_nuts, run_svi, to_inference_data
from .model import ModelSpec, Standardizer, default_anchors, log_compute
from .prediction import forecast_draws, forecast_table


def _as_leaderboard(data, benchmarks=None, columns=None, require_scores=True) -> Leaderboard:
    if isinstance(data, Leaderboard):
        return data.select(benchmarks=benchmarks) if benchmarks is not None else data
    return load_leaderboard(data, benchmarks=benchmarks, require_scores=require_scores, **(columns or {}))


class SkillsLaw:
    """Hierarchical Bayesian skills scaling law (see :mod:`bayes_sloth.model`).

    Parameters
    ----------
    n_skills : int
        Number of latent skills K (1 <= K < number of benchmarks).
    link : {"monotone", "sigmoid"}, default "monotone"
        Monotone link g from skill to score: a learned monotone link shared
        by all benchmarks (a Dirichlet-weighted mixture of logistic
        functions, see :func:`bayes_sloth.model.link_fn`), or the logistic
        sigmoid. On the paper's leave-family-out protocol the learned link
        lowered the error in five of six cells (``benchmarks/results/lofo_table.md``).
    loadings : {"positive", "real"}
        Sign constraint on the free loadings.
    noise : {"normal", "logistic"}
        Misfit around the law, truncated to [0, 1]: a Normal, or a logistic
        (heavier tails; cheaper to evaluate).
    instruct_shift : bool, default True
        Add a shift delta * instruct to the skills (instruction tuning moves
        some benchmarks, IFEval most, at every size).
    family_slopes : bool
        Give each family its own, partially pooled, slope in log parameters.
    model_effects : bool, default True
        Give each model its own, partially pooled, offset on the link scale
        (common to all benchmarks), so that a family seen through one or two
        models is not taken to be exactly like them. A fitted model passed to
        :meth:`predict` keeps its offset. With it and the instruct shift the
        paper's leave-family-out forecasts have 90 % intervals covering 86-87 %
        of held-out scores (78 % without); ``model_effects=False`` takes about
        2.5x fewer leapfrog steps (``benchmarks/results/lofo_table.md``, ``variants.md``).
    anchors : list of str, optional
        Anchor benchmark of each skill (unit loading, zero loadings on later
        skills). Default: chosen by :func:`bayes_sloth.model.default_anchors`.
    chains, warmup, draws : int
        NUTS chains, warm-up iterations and kept draws per chain.
    target_accept, max_tree_depth : NUTS settings.
    chain_method : {"parallel", "vectorized", "sequential"}, optional
        Default: parallel on CPU devices, vectorized on an accelerator.
    init : {"svi", "uniform"}
        Chain starting points: overdispersed draws from a short variational
        fit (default), or uniform in (-2, 2) on the unconstrained scale.
    method : {"nuts", "svi"}
        ``"svi"``: a fast mean-field variational approximation instead of
        NUTS, for leaderboards of thousands of models; warns that it has no
        convergence diagnostics and understates uncertainty.
    seed : int
        Seed of the sampler; the same seed on the same machine gives identical draws.
    progress : bool
        Print a line on stderr every 10 % of each chain's iterations.
    """

    def __init__(
        self,
        n_skills: int = 3,
        *,
        link: str = "monotone",
        loadings: str = "positive",
        noise: str = "normal",
        instruct_shift: bool = True,
        family_slopes: bool = False,
        model_effects: bool = True,
        anchors: Sequence[str] | None = None,
        chains: int = 4,
        warmup: int = 1000,
        draws: int = 1000,
        target_accept: float = 0.9,
        max_tree_depth: int = 10,
        chain_method: str | None = None,
        init: str = "svi",
        method: str = "nuts",
        seed: int = 0,
        progress: bool = False,
    ):
        self.n_skills = n_skills
        self.link = link
        self.loadings = loadings
        self.noise = noise
        self.instruct_shift = instruct_shift
        self.family_slopes = family_slopes
        self.model_effects = model_effects
        self.anchors = None if anchors is None else list(anchors)
        self.chains = chains
        self.warmup = warmup
        self.draws = draws
        self.target_accept = target_accept
        self.max_tree_depth = max_tree_depth
        self.chain_method = chain_method
        self.init = init
        self.method = method
        self.seed = seed
        self.progress = progress

    _PARAMS = ("n_skills", "link", "loadings", "noise", "instruct_shift", "family_slopes", "model_effects",
               "anchors", "chains", "warmup",
               "draws", "target_accept", "max_tree_depth", "chain_method", "init", "method", "seed", "progress")

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def __repr__(self) -> str:
        defaults = SkillsLaw().get_params()
        args = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k] or k == "n_skills"]
        fitted = "" if not hasattr(self, "idata_") else f"  # fitted: {self.leaderboard_!r}"
        return f"SkillsLaw({', '.join(args)}){fitted}"

    # ------------------------------------------------------------------ fit
    def _validate(self, lb: Leaderboard):
        J = len(lb.benchmarks)
        if not isinstance(self.n_skills, (int, np.integer)) or isinstance(self.n_skills, bool):
            raise InputError(f"n_skills must be an integer, got {self.n_skills!r}")
        if J < 2:
            raise InputError(f"need at least 2 benchmarks to fit skills, got {J}: {lb.benchmarks}")
        if not 1 <= self.n_skills < J:
            raise InputError(
                f"n_skills={self.n_skills} is invalid with {J} benchmarks: need 1 <= n_skills <= {J - 1}"
            )
        need = max(5, 2 * self.n_skills + 2)
        if len(lb) < need:
            raise InputError(
                f"only {len(lb)} models with parameters and tokens; a {self.n_skills}-skill law needs at least {need}"
            )
        for name in ("chains", "warmup", "draws"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")

    def _anchor_index(self, lb: Leaderboard) -> tuple[int, ...]:
        if self.anchors is None:
            return default_anchors(lb.scores, lb.floors, self.n_skills, log_compute=log_compute(lb.covariates))
        if len(self.anchors) != self.n_skills:
            raise InputError(f"anchors names {len(self.anchors)} benchmarks, need one per skill ({self.n_skills})")
        unknown = [a for a in self.anchors if a not in lb.benchmarks]
        if unknown:
            raise InputError(f"anchor benchmark {unknown[0]!r} is not among the fitted benchmarks {lb.benchmarks}")
        return tuple(lb.benchmarks.index(a) for a in self.anchors)

    def fit(self, data, benchmarks: Sequence[str] | None = None, *, columns: dict | None = None,
            obs_weight=None) -> "SkillsLaw":
        """Sample the posterior of the skills law given a leaderboard.

        Parameters
        ----------
        data : Leaderboard, DataFrame or CSV path
        benchmarks : list of str, optional
            Benchmarks to fit (default: all of the leaderboard's).
        columns : dict, optional
            Column names for a non-Sloth table (``model_col``, ``family_col``, ...).
        obs_weight : bool array over the observed pairs (``Leaderboard.long()``
            order), optional: pairs with False are left out of the likelihood.

        Models with missing parameters or tokens are dropped with a warning
        that counts them.
        """
        lb = _as_leaderboard(data, benchmarks, columns).complete_covariates()
        self._validate(lb)
        families = lb.families
        std = Standardizer.fit(lb.covariates["params"], lb.covariates["tokens"])
        spec = ModelSpec(
            n_skills=int(self.n_skills),
            n_benchmarks=len(lb.benchmarks),
            n_families=len(families),
            anchors=self._anchor_index(lb),
            link=self.link,
            loadings=self.loadings,
            noise=self.noise,
            instruct_shift=bool(self.instruct_shift),
            family_slopes=bool(self.family_slopes),
            model_effects=bool(self.model_effects),
        )
        arrays = leaderboard_arrays(lb, std, families, obs_weight)
        cfg = self._sampler_config()
        if self.method == "nuts":
            samples, extra, seconds = run_nuts(spec, arrays, cfg, int(self.seed))
        elif self.method == "svi":
            warnings.warn(
                "method='svi' gives a mean-field variational approximation, not posterior draws: no R-hat, "
                "ESS or divergences to check it by, and its intervals are usually too narrow; use it for "
                "leaderboards too large for NUTS and check a subset with NUTS",
                UserWarning,
                stacklevel=2,
            )
            samples, extra, seconds = run_svi(spec, arrays, cfg, int(self.seed))
        else:
            raise InputError(f"method must be 'nuts' or 'svi', got {self.method!r}")
        idata = to_inference_data(
            samples, extra, spec, arrays, models=lb.models, families=families, benchmarks=lb.benchmarks, seed=int(self.seed)
        )
        cd = idata.constant_data
        idata.constant_data = cd.assign(
            params=("model", lb.covariates["params"].to_numpy(dtype=float)),
            tokens=("model", lb.covariates["tokens"].to_numpy(dtype=float)),
            model_family=("model", lb.covariates["family"].to_numpy(dtype=str)),
            scores=(("model", "benchmark"), lb.scores.to_numpy(dtype=float)),
            floor=("benchmark", lb.floors.to_numpy(dtype=float)),
        )
        self.leaderboard_ = lb
        self.spec_ = spec
        self.standardizer_ = std
        self.families_ = families
        self.benchmarks_ = lb.benchmarks
        self.anchors_ = [lb.benchmarks[a] for a in spec.anchors]
        self.idata_ = idata
        self.fit_seconds_ = seconds
        self.diagnostics_ = diagnose(idata, self.max_tree_depth)
        self._stamp()
        return self

    def _sampler_config(self) -> SamplerConfig:
        return SamplerConfig(
            chains=int(self.chains), warmup=int(self.warmup), draws=int(self.draws),
            target_accept=float(self.target_accept), max_tree_depth=int(self.max_tree_depth),
            chain_method=self.chain_method, init=self.init, progress=bool(self.progress),
        )

    def _check_fitted(self):
        if not hasattr(self, "idata_"):
            raise InputError("this SkillsLaw is not fitted yet: call fit(data) or SkillsLaw.load(path)")

    # ------------------------------------------------------------- predict
    def predict(self, new, *, seed: int | None = None, columns: dict | None = None) -> az.InferenceData:
        """Posterior predictive draws for new models.

        Parameters
        ----------
        new : DataFrame, CSV path or Leaderboard
            Rows with model, family, params, tokens (and optional instruct);
            score columns are not needed. A family in the fit uses its fitted
            efficiency; any other family is a never-seen family whose
            efficiency is drawn from the population. With ``model_effects``,
            a row named like a fitted model of the same family keeps that
            model's posterior offset (a forecast of the benchmarks it was
            not scored on); any other row is a new model with a fresh one.
        seed : int, optional
            Seed of the predictive draws (default: the fit's seed).

        Returns
        -------
        InferenceData with group ``predictions``: ``score`` (predicted score,
        noise included), ``mu`` (the law's mean score), dims (chain, draw,
        model, benchmark), and ``skills`` (chain, draw, model, skill); the
        ``family`` and ``seen_family`` coordinates label each model.
        """
        self._check_fitted()
        lb = _as_leaderboard(new, None if isinstance(new, Leaderboard) else [], columns, require_scores=False)
        cov = lb.covariates
        bad = cov[["params", "tokens"]].isna().any(axis=1)
        if bad.any():
            m = cov.index[bad][0]
            col = "params" if np.isnan(cov.loc[m, "params"]) else "tokens"
            raise InputError(
                f"cannot forecast model {m!r}: its {col} value is missing ({int(bad.sum())} such model(s)); a "
                "forecast needs parameters and tokens: fill them in or remove the row"
            )
        fam_index = pd.Index(self.families_)
        fidx = fam_index.get_indexer(cov["family"])
        unseen = pd.Index(pd.unique(cov["family"][fidx < 0]))
        new_idx = unseen.get_indexer(cov["family"])
        seed = int(self.seed) if seed is None else int(seed)
        fitted = self.idata_.constant_data
        midx = pd.Index(fitted["model"].values).get_indexer(cov.index)
        same_family = fitted["model_family"].values[np.maximum(midx, 0)] == cov["family"].to_numpy(dtype=str)
        midx = np.where((midx >= 0) & same_family, midx, -1)  # a fitted model keeps its own offset
        mu, score, theta = forecast_draws(
            self.spec_, self.idata_.posterior,
            self.standardizer_.transform(cov["params"], cov["tokens"]),
            fidx, new_idx, cov["instruct"].to_numpy(dtype=float),
            fitted["floor"].values, seed, model_index=midx,
        )
        post = self.idata_.posterior
        coords = {
            "chain": post["chain"].values,
            "draw": post["draw"].values,
            "model": list(cov.index),
            "benchmark": list(self.benchmarks_),
            "skill": post["skill"].values,
        }
        ds = xr.Dataset(
            {
                "score": (("chain", "draw", "model", "benchmark"), score),
                "mu": (("chain", "draw", "model", "benchmark"), mu),
                "skills": (("chain", "draw", "model", "skill"), theta),
            },
            coords=coords,
        ).assign_coords(
            family=("model", cov["family"].to_numpy(dtype=str)),
            seen_family=("model", fidx >= 0),
        )
        const = xr.Dataset(
            {
                "params": ("model", cov["params"].to_numpy(dtype=float)),
                "tokens": ("model", cov["tokens"].to_numpy(dtype=float)),
                "instruct": ("model", cov["instruct"].to_numpy(dtype=bool)),
            },
            coords={"model": list(cov.index)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(predictions=ds, predictions_constant_data=const)

    def forecast(self, new, level: float = 0.9, *, seed: int | None = None, columns: dict | None = None) -> pd.DataFrame:
        """Tidy forecast table (model, family, benchmark, mean, median, lower, upper, ...).

        If ``new`` carries observed scores for the fitted benchmarks, they are
        added as an ``observed`` column.
        """
        lb = new if isinstance(new, Leaderboard) else None
        if lb is None:
            try:  # read the input once, with any observed scores of the fitted benchmarks
                lb = _as_leaderboard(new, list(self.benchmarks_), columns, require_scores=False)
            except InputError:  # unusable score columns: forecast from the covariates alone
                lb = None
        pred = self.predict(lb if lb is not None else new, seed=seed, columns=columns)
        observed = None if lb is None else lb.scores
        if observed is not None:
            observed = observed[[b for b in self.benchmarks_ if b in observed.columns]]
            if observed.shape[1] == 0:
                observed = None
        return forecast_table(pred.predictions, level, observed)

    # ---------------------------------------------------------- diagnostics
    def diagnose(self) -> Diagnostics:
        """Convergence diagnostics (also stored as ``diagnostics_`` after fit)."""
        self._check_fitted()
        return diagnose(self.idata_, self.max_tree_depth)

    def loo(self, **kwargs):
        """PSIS-LOO over the observed (model, benchmark) pairs (``az.loo``)."""
        self._check_fitted()
        return az.loo(self.idata_, **kwargs)

    # ------------------------------------------------------------ save/load
    def _stamp(self):
        from . import io

        self.idata_.posterior.attrs.update(io.stamp(self))

    def save(self, path: str | os.PathLike) -> None:
        """Save the fit to a netCDF file (never pickle); see :func:`bayes_sloth.io.save`."""
        from . import io

        self._check_fitted()
        io.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SkillsLaw":
        """Load a fit saved with :meth:`save`; predicts identically to the original."""
        from . import io

        return io.load(cls, path)
