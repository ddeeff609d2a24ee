"""``SkillsLaw``: the estimator users work with (scikit-learn / Bambi style).

>>> law = SkillsLaw(seed=0).fit(load_sloth())                  # doctest: +SKIP
>>> law.diagnostics_                                            # doctest: +SKIP
>>> pred = law.predict(new_models)                              # doctest: +SKIP
>>> law.forecast(new_models, level=0.9)                         # doctest: +SKIP

Hyperparameters are set in ``__init__``; ``fit`` validates the data, samples
the posterior with NUTS and returns ``self`` with fitted state in attributes
ending in ``_``; ``predict`` returns labelled posterior predictive draws.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from typing import Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from . import io
from .conditioning import CRITERIA, N_LATENT, condition_runs, information_gain, trust_problems
from .diagnostics import Diagnostics, diagnose
from .errors import FitFileError, InputError, once_per_call, warn
from .fitfile import FIT_FORMAT, META_ATTR, file_idata, json_default, read_meta, rebuild, versions  # noqa: F401
from .idata import leaderboard_arrays, to_inference_data
from .leaderboard import Leaderboard, did_you_mean, label_key, nfc, same_but_spelling
from .model import (
    ModelSpec,
    Standardizer,
    assemble_loadings,
    default_anchors,
    latent_log_tokens,
    log_compute,
    standardization_array,
    token_covariates,
)
from .options import MAX_SEED, LawOptions, SamplerOptions, law_and_sampler, parameters_doc
from .options import signature as options_signature
from .prediction import (  # noqa: F401  (public here before)
    EXTRAPOLATION_CHECKS,
    flat_posterior,
    forecast_draws,
    forecast_table,
    outside_fitted_range,
    stream_code,
)
from .progress import FitProgress, display_for
from .readers import _as_leaderboard, read_new_models
from .sampler import SamplerConfig, auto_target_accept, check_draws_fit_in_memory, run_nuts
from .variational import run_svi

#: Fixed code of the random stream of imputed token counts (mixed into the seed's key and generator).
TOKEN_STREAM = 0x70C5
NEW_FAMILIES = ("allow", "warn", "error")






def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


#: Default number of latent skills (declared in :class:`~bayes_sloth.core.options.LawOptions`).
DEFAULT_N_SKILLS = LawOptions.n_skills















class SkillsLaw:
    """Hierarchical Bayesian skills scaling law, fitted with NUTS (see :mod:`bayes_sloth.core.model` for the math).

    Configured in the constructor (every option of :class:`~bayes_sloth.core.options.LawOptions` and
    :class:`~bayes_sloth.core.options.SamplerOptions`, with their defaults); :meth:`fit` returns the fitted
    law, whose learned state ends in ``_`` (``idata_``: the InferenceData, ``diagnostics_``, ``spec_``,
    ``anchors_``, ``loadings_``); :meth:`predict` and :meth:`forecast` take new rows. Why each default is
    what it is, with its measurement: ``docs/decisions.md``.

    Parameters
    ----------
{parameters}
    """

    def __init__(self, n_skills: int = LawOptions.n_skills, **options):
        unknown = [k for k in options if k not in self._PARAMS]
        if unknown:  # as Python says it for any function, with the nearest option
            close = difflib.get_close_matches(unknown[0], self._PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"SkillsLaw() got an unexpected keyword argument {unknown[0]!r}{hint}")
        self.n_skills = n_skills
        for name, default in _DEFAULTS.items():
            if name != "n_skills":
                setattr(self, name, options.get(name, default))

    #: The constructor's arguments: every law option, then every sampler option (declared once, in options).
    _PARAMS = LawOptions.names() + SamplerOptions.names()

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments as given (scikit-learn's estimator contract; nothing nested)."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> "SkillsLaw":
        """Set constructor arguments (scikit-learn's contract); returns self. Takes effect at the next fit."""
        unknown = [k for k in params if k not in self._PARAMS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], self._PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"SkillsLaw has no parameter {unknown[0]!r}{hint} (parameters: {', '.join(self._PARAMS)})")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = SkillsLaw().get_params()
        args = [f"{k}={_shown(v)}" for k, v in self.get_params().items() if _differs(v, defaults[k]) or k == "n_skills"]
        fitted = "" if not hasattr(self, "idata_") else f"  # fitted: {self.leaderboard_!r}"
        return f"SkillsLaw({', '.join(args)}){fitted}"

    # ------------------------------------------------------------------ fit
    def validate_params(self) -> None:
        """Every constructor argument checked before any work: a bad one is an InputError naming it."""
        self.options()

    def options(self) -> tuple[LawOptions, SamplerOptions]:
        """The constructor's arguments as the two checked records (a bad value is an InputError naming it)."""
        law, sampler = law_and_sampler(self.get_params())
        if sampler.draws == "auto" and sampler.max_draws < 100:
            raise InputError(f"max_draws must be at least 100 (one block of draws) with draws='auto', "
                             f"got {sampler.max_draws}")
        return law, sampler

    def _validate(self, lb: Leaderboard):
        J = len(lb.benchmarks)
        if J < 2:
            raise InputError(f"need at least 2 benchmarks to fit skills, got {J}: {lb.benchmarks}")
        default = " (the default)" if self.n_skills == LawOptions.n_skills else ""
        if not 1 <= self.n_skills < J:
            raise InputError(
                f"n_skills={self.n_skills}{default} is invalid with {J} benchmarks: need 1 <= n_skills <= {J - 1}; "
                f"pass SkillsLaw(n_skills={max(1, J - 1)}) or fewer"
            )
        need = max(5, 2 * self.n_skills + 2)
        if len(lb) < need:
            fewer = max(1, (len(lb) - 2) // 2)
            hint = f"; pass SkillsLaw(n_skills={fewer}) or fewer" if len(lb) >= 5 else ""
            raise InputError(
                f"only {len(lb)} models with parameters; a {self.n_skills}-skill law{default} needs at least "
                f"{need}{hint}"
            )

    def _anchor_index(self, lb: Leaderboard) -> tuple[int, ...]:
        if self.anchors is None:
            return default_anchors(lb.scores, lb.floors, self.n_skills, log_compute=log_compute(lb.covariates))
        if len(self.anchors) != self.n_skills:
            raise InputError(f"anchors names {len(self.anchors)} benchmarks, need one per skill ({self.n_skills})")
        unknown = [a for a in self.anchors if a not in lb.benchmarks]
        if unknown:
            raise InputError(f"anchor benchmark {unknown[0]!r} is not among the fitted benchmarks"
                             f"{did_you_mean(unknown[0], lb.benchmarks)}: {lb.benchmarks}")
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
            order), optional: pairs with False are left out of the likelihood
            (and out of ``log_likelihood``, ``observed_data`` and
            ``posterior_predictive``).

        Models with missing parameters are dropped with a warning that
        counts and names them. A model without a token count is kept: its
        log tokens are latent, with a prior learned from the models that
        have tokens (a regression on log parameters, fitted in the same
        model, :mod:`bayes_sloth.core.model`); ``spec_.n_latent_tokens`` counts
        them and the posterior's ``imputed_tokens`` holds their draws.
        """
        lb, families, std, spec, arrays = self._design(data, benchmarks, columns, obs_weight)
        if self.method == "nuts":
            chains, kept = int(self.chains), int(self.max_draws) if self.draws == "auto" else int(self.draws)
        else:  # one pseudo-chain of draws from the approximation (run_svi)
            chains, kept = 1, 1000 if self.draws == "auto" else int(self.draws)
        check_draws_fit_in_memory(spec, arrays, chains, kept, "max_draws" if self.draws == "auto" else "draws")
        display = None
        if self.method == "nuts" and (self.progress is True or isinstance(self.progress, FitProgress)):
            size = (int(self.chains), int(self.warmup), int(self.max_draws) if self.draws == "auto" else int(self.draws))
            if self.progress is True:  # one display per fit: a notebook's output, or a line on stderr
                display = display_for(*size, auto=self.draws == "auto")
            else:  # a display of the caller's (the command line's lines), started over for this fit
                display = self.progress
                display.begin(*size, auto=self.draws == "auto")
        target_accept = (auto_target_accept(spec.n_benchmarks) if isinstance(self.target_accept, str)
                         else float(self.target_accept))
        cfg = self._sampler_config(display, target_accept)
        diagnosed = None
        try:
            if self.method == "nuts":
                samples, extra, seconds = run_nuts(spec, arrays, cfg, int(self.seed))
            else:
                warnings.warn(
                    "method='svi' gives a mean-field variational approximation, not posterior draws: no R-hat, "
                    "ESS or divergences to check it by. Its intervals are too narrow: far too narrow for the law's "
                    "global parameters (slopes, loadings, link weights), somewhat for forecasts; use it for "
                    "forecasts on leaderboards too large for NUTS, not to read parameter uncertainty, and check a "
                    "subset with NUTS",
                    UserWarning,
                    stacklevel=2,
                )
                samples, extra, seconds = run_svi(spec, arrays, cfg, int(self.seed))
            if display is not None:
                display.stage("assembling the InferenceData and checking convergence")
            idata, meta = self._fitted_idata(samples, extra, spec, arrays, lb, families, std, seconds, target_accept)
            self._adopt(idata, meta, lb)
            diagnosed = self.diagnostics_
        finally:
            if display is not None:
                d = diagnosed
                display.close("stopped" if d is None else
                              f"done: {self.chains} chain(s) x ({self.warmup} warm-up + {display.done_draws()} "
                              f"draws), {'converged' if d.ok else f'NOT converged ({len(d.problems)} problem(s))'}")
        if not self.diagnostics_.ok and self.method == "nuts":
            d = self.diagnostics_
            warn(f"the fit did not pass its convergence checks ({len(d.problems)} problem(s)): {d.problems[0]}"
                 + (f"; and {len(d.problems) - 1} more" if len(d.problems) > 1 else "")
                 + "; print(law.diagnostics_) for all of them and what to do; forecasts from this fit are "
                 "provisional")
        return self

    def _design(self, data, benchmarks=None, columns=None, obs_weight=None):
        """What a fit of ``data`` samples on, checked: (leaderboard, families, standardizer, spec, arrays)."""
        law, sampler = self.options()
        lb = _as_leaderboard(data, benchmarks, columns).complete_covariates(columns=("params",))
        self._validate(lb)
        if obs_weight is not None:
            obs_weight = np.asarray(obs_weight)
            if obs_weight.shape != (lb.n_observed,) or obs_weight.dtype != bool:
                raise InputError(f"obs_weight must be a boolean array with one entry per observed score "
                                 f"({lb.n_observed}), got shape {obs_weight.shape} and dtype {obs_weight.dtype}")
        families = lb.families
        known = lb.covariates["tokens"].notna().to_numpy()
        if known.sum() < 3:
            raise InputError(f"only {int(known.sum())} of {len(lb)} models have a token count: the tokens of the "
                             "others are learned from those that have one, which needs at least 3")
        # standardized with the models that have tokens; the others get latent tokens (bayes_sloth.core.model)
        std = Standardizer.fit(lb.covariates["params"][known], lb.covariates["tokens"][known])
        spec = ModelSpec(int(law.n_skills), len(lb.benchmarks), len(families), self._anchor_index(lb),
                         n_latent_tokens=int((~known).sum()), options=law)
        arrays = leaderboard_arrays(lb, std, families, obs_weight)
        return lb, families, std, spec, arrays

    def sample_prior_predictive(self, samples: int = 500, data=None, *, seed: int | None = None,
                                benchmarks: Sequence[str] | None = None, columns: dict | None = None
                                ) -> az.InferenceData:
        """Draws from the law's prior and prior predictive, made by the model itself (PyMC's
        ``pm.sample_prior_predictive``, Bambi's ``model.prior_predictive``): every parameter from its prior,
        then each scored pair's score around the law those parameters give.

        ``data``: the leaderboard whose design (its models, families, covariates and which pairs are scored)
        the draws are made on, checked as :meth:`fit` checks it; default, the fitted one (the law must be
        fitted). The law's options are this estimator's. ``seed``: default, the estimator's.

        Returns an InferenceData with ``prior`` (every site, with the posterior's names, dims and
        coordinates: ``az.summary(prior_idata, group="prior")``), ``prior_predictive`` (``y`` over the
        scored pairs, coordinates as in ``posterior_predictive``), ``observed_data`` and ``constant_data``;
        ``az.plot_ppc(idata, group="prior")`` compares the prior's scores with the observed ones.
        """
        import jax
        from functools import partial

        from numpyro.infer import Predictive

        from .idata import constant_dataset, group_attrs, latent_models, posterior_dataset
        from .model import skills_law

        if not _is_int(samples) or samples < 1:
            raise InputError(f"samples must be a positive integer, got {samples!r}")
        seed = int(self.seed) if seed is None else seed
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
        if data is None:
            self._check_fitted()
            data = self.leaderboard_
        lb, families, std, spec, arrays = self._design(data, benchmarks, columns)
        args = {k: v for k, v in arrays.items() if k != "y"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpyro's note that the model has no observed value is the point
            sample = Predictive(partial(skills_law, spec), num_samples=int(samples))
            drawn = jax.jit(lambda key, a: sample(key, **a))(jax.random.PRNGKey(seed), args)
        drawn = {k: np.asarray(v)[None] for k, v in drawn.items()}  # one chain
        y = drawn.pop("y")
        prior = posterior_dataset(spec, drawn, models=lb.models, families=families, benchmarks=lb.benchmarks,
                                  latent_models=latent_models(arrays, lb.models))
        keep = np.flatnonzero(np.asarray(arrays["obs_weight"]))
        om, ob = np.asarray(arrays["obs_model"])[keep], np.asarray(arrays["obs_bench"])[keep]
        coords = {"obs": keep, "obs_model": ("obs", np.asarray(lb.models)[om]),
                  "obs_benchmark": ("obs", np.asarray(lb.benchmarks)[ob])}
        groups = {
            "prior": prior,
            "prior_predictive": xr.Dataset({"y": (["chain", "draw", "obs"], y[..., keep])},
                                           coords={"chain": [0], "draw": np.arange(int(samples))}).assign_coords(coords),
            "observed_data": xr.Dataset({"y": (["obs"], np.asarray(arrays["y"])[keep])}, coords=coords),
            "constant_data": constant_dataset(arrays, models=lb.models, benchmarks=lb.benchmarks),
        }
        for ds in groups.values():
            ds.attrs.update(group_attrs())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(**groups)

    def _fitted_idata(self, samples, extra, spec, arrays, lb, families, std, seconds, target_accept):
        """The fit's InferenceData, with its data and the metadata a fit file keeps."""
        idata = to_inference_data(samples, extra, spec, arrays, models=lb.models, families=families,
                                  benchmarks=lb.benchmarks, seed=int(self.seed))
        idata.constant_data = idata.constant_data.assign(
            params=("model", lb.covariates["params"].to_numpy(dtype=float)),
            tokens=("model", lb.covariates["tokens"].to_numpy(dtype=float)),
            model_family=("model", lb.covariates["family"].to_numpy(dtype=str)),
            scores=(("model", "benchmark"), lb.scores.to_numpy(dtype=float)),
            floor=("benchmark", lb.floors.to_numpy(dtype=float)),
        )
        meta = {
            "fit_format": FIT_FORMAT,
            "versions": versions(),
            "spec": spec.to_dict(),
            "params": dict(self.get_params(), progress=bool(self.progress)),  # a callable is not kept
            "standardizer": std.to_dict(),
            "families": list(families),
            "benchmarks": list(lb.benchmarks),
            "sampled_sites": sorted(samples),
            "data_sha256": lb.sha256(),
            "fit_seconds": float(seconds),
            "target_accept": target_accept,  # as resolved ("auto" -> a number)
            "sampling": extra.get("report", {"draws": "svi"}) if extra else {"draws": "svi"},
        }
        idata.posterior.attrs[META_ATTR] = json.dumps(meta, default=json_default)
        return idata, meta

    def _adopt(self, idata, meta: dict, lb: Leaderboard) -> None:
        """Set the fitted state from a complete InferenceData and its metadata."""
        self.leaderboard_ = lb
        self.spec_ = ModelSpec.from_dict(meta["spec"])
        self.standardizer_ = Standardizer.from_dict(meta["standardizer"])
        self.families_ = list(meta["families"])
        self.benchmarks_ = list(meta["benchmarks"])
        self.anchors_ = [self.benchmarks_[a] for a in self.spec_.anchors]
        self.idata_ = idata
        self.fit_seconds_ = float(meta.get("fit_seconds", float("nan")))
        self.sampling_ = dict(meta.get("sampling") or {})
        ta = meta.get("target_accept", meta["params"].get("target_accept"))  # fits saved before "auto": the param
        self.target_accept_ = (auto_target_accept(self.spec_.n_benchmarks) if isinstance(ta, str) else float(ta))
        self.diagnostics_ = diagnose(idata, int(self.max_tree_depth), target_accept=self.target_accept_,
                                     sampling=self.sampling_)

    def _sampler_config(self, display, target_accept: float) -> SamplerConfig:
        progress = display if display is not None else (self.progress if callable(self.progress) else None)
        return SamplerConfig(
            chains=int(self.chains), warmup=int(self.warmup),
            draws="auto" if self.draws == "auto" else int(self.draws),
            target_accept=float(target_accept), max_tree_depth=int(self.max_tree_depth),
            chain_method=self.chain_method, init=self.init, progress=progress,
            target_ess=int(self.target_ess), max_draws=int(self.max_draws), adaptation=self.adaptation,
        )

    def _check_fitted(self):
        if not hasattr(self, "idata_"):
            raise InputError("this SkillsLaw is not fitted yet: call fit(data) or SkillsLaw.load(path)")

    @property
    def loadings_(self) -> xr.DataArray:
        """The loading matrix Lambda (chain, draw, benchmark, skill): the free loadings of the posterior
        with the anchor constraints (1 on a skill's anchor, 0 on later skills' anchors) filled in."""
        self._check_fitted()

        free = self.idata_.posterior["loadings_free"]
        full = np.asarray(assemble_loadings(self.spec_, np.asarray(free.values)))
        post = self.idata_.posterior
        return xr.DataArray(full, dims=("chain", "draw", "benchmark", "skill"), name="loadings",
                            coords={"chain": post["chain"].values, "draw": post["draw"].values,
                                    "benchmark": list(self.benchmarks_), "skill": post["skill"].values})

    # ------------------------------------------------------------- predict
    def _families_of(self, families: pd.Series, new_families: str) -> np.ndarray:
        """Index of each row's family among the fitted ones (-1: never seen), applying ``new_families``."""
        if new_families not in NEW_FAMILIES:
            raise InputError(f"new_families must be one of {NEW_FAMILIES}, got {new_families!r}")
        families = pd.Series([nfc(str(f)) for f in families])
        fidx = pd.Index([nfc(f) for f in self.families_]).get_indexer(families)
        unseen = list(pd.unique(families[fidx < 0]))
        for f in unseen:  # one family spelled another way is not a never-seen family, whatever new_families says
            near = same_but_spelling(f, self.families_)
            if near:
                raise InputError(f"family {f!r} is not in the fit, but {near[0]!r} is (they differ only in case or "
                                 f"spacing): write {near[0]!r} to forecast it as that fitted family; a new family "
                                 "needs a name that differs otherwise")
        if unseen and new_families != "allow":
            hints = []
            for f in unseen:
                close = difflib.get_close_matches(str(f), self.families_, n=1, cutoff=0.75)
                hints.append(f"{f!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            msg = (f"famil{'y' if len(unseen) == 1 else 'ies'} {', '.join(hints)} not in the fit: forecast as "
                   "never-seen (efficiency drawn from the population of families, wide intervals)")
            if new_families == "error":
                raise InputError(msg + "; pass new_families='allow' to forecast them")
            warn(msg + "; new_families='allow' silences this")
        return fidx

    def _extrapolation(self, cov: pd.DataFrame) -> np.ndarray:
        """Rows whose parameters, tokens or compute (params x tokens) lie outside the range of the fitted models
        (flagged, and warned; :func:`outside_fitted_range`)."""
        checks = outside_fitted_range(self.leaderboard_.covariates, cov["params"], cov["tokens"])
        flags = np.zeros(len(cov), dtype=bool)
        parts = []
        for col, unit in EXTRAPOLATION_CHECKS:
            out, lo, hi = checks[col]
            flags |= out
            if out.any():
                names = ", ".join(repr(m) for m in cov.index[out][:4]) + (" ..." if out.sum() > 4 else "")
                parts.append(f"{col} of {names} outside the fitted {lo:g}-{hi:g} {unit}")
        if parts:
            warn("extrapolating: " + "; ".join(parts) + " (flagged in the 'extrapolation' column): the "
                 "law is assumed to hold beyond the data it was fitted to")
        return flags

    def _warn_if_unconverged(self) -> None:
        if not self.diagnostics_.ok:
            warn(f"this fit did not pass its convergence checks ({len(self.diagnostics_.problems)} "
                 f"problem(s): {self.diagnostics_.problems[0]}); forecasts from it are provisional")

    def _draw_rows(self, cov: pd.DataFrame, row_names, seed, new_families, model_index=None):
        """Posterior predictive draws at the rows of ``cov`` (family, params, tokens, instruct)."""
        fidx = self._families_of(cov["family"], new_families)
        seed = int(self.seed) if seed is None else seed
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
        fitted = self.idata_.constant_data
        mu, score, theta = forecast_draws(
            self.spec_, self.idata_.posterior,
            self._row_covariates(cov, row_names, int(seed), model_index),
            fidx, np.array([stream_code(f) for f in cov["family"]]), cov["instruct"].to_numpy(dtype=float),
            fitted["floor"].values, int(seed), row_codes=np.array([stream_code(m) for m in row_names]),
            model_index=model_index,
        )
        return mu, score, theta, fidx

    def _token_regression_draws(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Draws (D, 2) of (a, b) and (D,) of s of the token regression x_T = a + b x_S + s e.

        The posterior's ``token_coef`` and ``token_sd`` when the fit had models
        without tokens. Otherwise the regression is independent of everything
        else in the posterior (all its data are observed), and its exact
        posterior under the flat prior on (a, b, log s) is drawn here, one
        draw per posterior draw, from the fitted models' covariates
        (standardized units, n models, X = [1, x_S])::

            s^2 = RSS / chi2_{n-2},   (a, b) | s ~ Normal(beta_hat, s^2 (X'X)^-1)

        with a generator keyed by the seed (the same draws every call).
        """
        post = self.idata_.posterior
        D = post.sizes["chain"] * post.sizes["draw"]
        if "token_coef" in post:
            return (post["token_coef"].values.reshape(D, 2).astype(float),
                    post["token_sd"].values.reshape(D).astype(float))
        x = np.asarray(self.idata_.constant_data["x"].values, dtype=float)
        X, y = np.column_stack([np.ones(len(x)), x[:, 0]]), x[:, 1]
        xtx_inv = np.linalg.inv(X.T @ X)
        beta = xtx_inv @ X.T @ y
        rss = float(np.sum((y - X @ beta) ** 2))
        rng = np.random.default_rng([int(seed), TOKEN_STREAM])
        s2 = rss / rng.chisquare(len(x) - 2, size=D)
        z = rng.standard_normal((D, 2)) @ np.linalg.cholesky(xtx_inv).T
        return beta[None, :] + np.sqrt(s2)[:, None] * z, np.sqrt(s2)

    def _row_covariates(self, cov: pd.DataFrame, row_names, seed: int, model_index=None) -> np.ndarray:
        """Standardized covariates of rows to forecast: (N, 3), or (D, N, 3) when some row has no tokens.

        A row without tokens gets draws of its standardized log tokens: a
        fitted model with latent tokens keeps its posterior draws; any other
        row draws x_T = a + b x_S + s e per posterior draw, e ~ Normal(0, 1)
        from a stream keyed by the row's name (:meth:`_token_regression_draws`),
        so the forecast carries the uncertainty of the token count.
        """
        import jax

        x = self.standardizer_.transform(cov["params"], cov["tokens"])
        rows = np.flatnonzero(~np.isfinite(cov["tokens"].to_numpy(dtype=float)))
        if not len(rows):
            return x
        post = self.idata_.posterior
        D = post.sizes["chain"] * post.sizes["draw"]
        coef, sd = self._token_regression_draws(seed)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), TOKEN_STREAM)
        eps = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(key, stream_code(row_names[r])), (D,)),
                                   dtype=float) for r in rows], axis=1)
        x_t = coef[:, 0:1] + coef[:, 1:2] * x[rows, 0][None, :] + sd[:, None] * eps  # (D, n)
        if self.spec_.n_latent_tokens and model_index is not None:
            fitted = [str(m) for m in post["latent_model"].values]
            x_fit = np.asarray(self.idata_.constant_data["x"].values, dtype=float)
            latent = np.asarray([list(map(str, self.idata_.constant_data["model"].values)).index(m) for m in fitted])
            flat = {k: post[k].values.reshape((D,) + post[k].shape[2:]) for k in ("token_coef", "token_sd", "token_z")}
            own = np.asarray(latent_log_tokens(flat, x_fit, latent), dtype=float)  # (D, n_latent)
            for k, r in enumerate(rows):
                if model_index[r] >= 0 and str(cov.index[r]) in fitted:
                    x_t[:, k] = own[:, fitted.index(str(cov.index[r]))]
        x = np.where(np.isfinite(x), x, 0.0)
        return np.asarray(token_covariates(x, rows, standardization_array(self.standardizer_), x_t), dtype=float)

    def _labelled(self, mu, score, theta, row_dim, rows, cov, fidx, extrapolation) -> xr.Dataset:
        post = self.idata_.posterior
        coords = {"chain": post["chain"].values, "draw": post["draw"].values, row_dim: rows,
                  "benchmark": list(self.benchmarks_), "skill": post["skill"].values}
        return xr.Dataset(
            {
                "score": (("chain", "draw", row_dim, "benchmark"), score),
                "mu": (("chain", "draw", row_dim, "benchmark"), mu),
                "skills": (("chain", "draw", row_dim, "skill"), theta),
            },
            coords=coords,
        ).assign_coords(
            family=(row_dim, cov["family"].to_numpy(dtype=str)),
            seen_family=(row_dim, fidx >= 0),
            extrapolation=(row_dim, extrapolation),
            imputed_tokens=(row_dim, ~np.isfinite(cov["tokens"].to_numpy(dtype=float))),
        )

    @once_per_call
    def predict(self, new, *, seed: int | None = None, columns: dict | None = None,
                new_families: str = "warn", condition: bool | str = True) -> az.InferenceData:
        """Posterior predictive draws for new models, conditioned on the scores they already have.

        Parameters
        ----------
        new : DataFrame, CSV path or Leaderboard
            Rows with model, family, params, tokens (and optional instruct);
            score columns are optional. A family in the fit uses its fitted
            efficiency; any other family is a never-seen family whose
            efficiency is drawn from the population. With ``model_effects``,
            a row named like a fitted model of the same family keeps that
            model's posterior offset (a forecast of the benchmarks it was
            not scored on); any other row is a new model with a fresh one.
            Columns named like fitted benchmarks are the new models' observed
            scores.
        seed : int, optional
            Seed of the predictive draws (default: the fit's seed). A row's
            draws depend on the fit, the row and the seed only (and, when
            conditioned, on its family's observed scores), not on the other
            rows asked for.
        new_families : {"warn", "allow", "error"}
            What to do about families not in the fit (Bambi's rule): forecast
            them as never-seen with a warning (default; it suggests a close
            fitted name, "did you mean"), silently, or refuse.
        condition : True, "all" or False; default True
            Condition the forecasts of each family's new rows on the observed
            scores of those rows, without refitting (nested importance
            sampling over the posterior draws, :mod:`bayes_sloth.core.conditioning`):
            the rows' own offsets, a never-seen family's efficiency and,
            through reweighted posterior draws, a seen family's efficiency
            are updated. A pair is never conditioned on its own score unless
            asked: with ``True`` (or ``"others"``) a benchmark a row has a
            score for is forecast from the group's *other* scores (leave that
            score out; the fit's own forecast when it is the group's only
            one), so the forecast can be compared with the score, and every
            unscored pair from all the scores. ``"all"``: every pair from
            every score, its own included (the forecast of a re-run of that
            benchmark; ``own_score_used`` marks those pairs). Scores of rows
            that are fitted models are never conditioned on (they are in the
            fit, or were held out of it on purpose). ``False``: the scores are
            ignored (the forecast the fit alone makes).

        Returns
        -------
        InferenceData with group ``predictions``: ``score`` (predicted score,
        noise included), ``mu`` (the law's mean score), dims (chain, draw,
        model, benchmark), and ``skills`` (chain, draw, model, skill); the
        ``family``, ``seen_family``, ``extrapolation`` (params or tokens
        outside the fitted range) and ``imputed_tokens`` coordinates label
        each model. A row without a token count (tokens NaN) is forecast
        with imputed tokens (``imputed_tokens`` True): a fitted model keeps
        its posterior latent tokens, a new one draws its log tokens per
        posterior draw from the token regression learned in the fit, given
        its parameters (:meth:`_row_covariates`), so its interval carries
        the unknown count. With
        ``condition=True`` also: ``conditioned`` (model, benchmark), the
        pairs conditioned on; per model ``pareto_k`` and ``importance_ess``
        (of its family group's draw-level weights) and ``inner_ess`` (mean
        share of effective latent draws), NaN where nothing was conditioned;
        ``own_score_used`` (model, benchmark), the pairs forecast from their
        own score too (``condition="all"`` only); and ``source_draw`` (chain,
        draw, model), the flat index (chain x draw) of the fitted posterior
        draw each output draw was made from (with ``condition=True``, a
        scored pair's draws come from its own leave-one-out conditioning).
        A warning names the groups whose conditioning cannot be trusted
        (Pareto k > 0.7: the observed scores are far from what the fit
        expects; refit with the model included).
        """
        self._check_fitted()
        lb = read_new_models(new, self.benchmarks_, columns)
        return self._predict_leaderboard(lb, seed, new_families, condition)

    def _predict_leaderboard(self, lb: Leaderboard, seed, new_families, condition: bool = False, *,
                             draw_weights: bool = True, n_latent: int | None = None,
                             proposal: str = "laplace") -> az.InferenceData:
        condition = condition_mode(condition)
        cov = lb.covariates
        bad = cov["params"].isna()
        if bad.any():
            m = cov.index[bad][0]
            raise InputError(
                f"cannot forecast model {m!r}: its params value is missing ({int(bad.sum())} such model(s)); a "
                "forecast needs the parameter count (a missing token count is imputed, not parameters): fill it "
                "in or remove the row"
            )
        self._warn_if_unconverged()
        fitted = self.idata_.constant_data
        fitted_models = [nfc(str(m)) for m in fitted["model"].values]
        fitted_families = np.array([nfc(str(f)) for f in fitted["model_family"].values], dtype=object)
        midx = pd.Index(fitted_models).get_indexer([nfc(str(m)) for m in cov.index])
        same_family = fitted_families[np.maximum(midx, 0)] == np.array([nfc(str(f)) for f in cov["family"]], dtype=object)
        midx = np.where((midx >= 0) & same_family, midx, -1)  # a fitted model keeps its own offset
        if (midx < 0).any():  # a fitted model spelled another way would silently be a new model, with a new offset
            keys: dict = {}
            for m, f in zip(fitted_models, fitted_families):
                keys.setdefault((label_key(m), f), m)
            for m, f in zip(cov.index[midx < 0], cov["family"].to_numpy(dtype=str)[midx < 0]):
                near = keys.get((label_key(m), nfc(f)))
                if near is not None and near != nfc(str(m)):
                    raise InputError(f"model {m!r} (family {f!r}) is not a fitted model, but {near!r} of the same "
                                     "family is (they differ only in case or spacing): write "
                                     f"{near!r} to forecast that fitted model (it keeps its own offset), or give "
                                     "a new model a name that differs otherwise")
        mu, score, theta, fidx = self._draw_rows(cov, list(cov.index), seed, new_families, model_index=midx)
        ds = self._labelled(mu, score, theta, "model", list(cov.index), cov, fidx, self._extrapolation(cov))
        if condition != "none":
            ds = self._condition(ds, lb, midx, fidx, seed, draw_weights, n_latent, proposal,
                                 own_score=condition == "all")
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

    def _condition(self, ds: xr.Dataset, lb: Leaderboard, midx, fidx, seed, draw_weights=True,
                   n_latent=None, proposal="laplace", own_score: bool = False) -> xr.Dataset:
        """Replace the draws of every family group with observed scores by draws conditioned on them.

        Without ``own_score`` (``condition=True``) a pair that has a score is forecast from the group's other
        scores only: its draws come from the group conditioned without that one score (leave one score
        out), or are the fit's own forecast when it is the group's only score. With ``own_score``
        (``condition="all"``) every pair is conditioned on every score, its own included.

        ``draw_weights``, ``n_latent`` and ``proposal`` are switches for measurements
        (``benchmarks/conditional.py``), see :func:`bayes_sloth.core.conditioning.condition_group`."""

        seed = int(self.seed) if seed is None else seed
        cov = lb.covariates
        N, J = len(cov), len(self.benchmarks_)
        y = lb.scores.reindex(columns=self.benchmarks_).to_numpy(dtype=float) if len(lb.scores.columns) \
            else np.full((N, J), np.nan)
        mask = np.isfinite(y) & (midx < 0)[:, None]  # a fitted model's scores are never conditioned on
        fitted_obs = np.isfinite(y) & (midx >= 0)[:, None]
        if fitted_obs.any():
            names = ", ".join(repr(m) for m in cov.index[fitted_obs.any(axis=1)][:3])
            warn(f"scores of fitted model(s) {names} are not conditioned on: a fitted model's scores are in the "
                 "fit or were held out of it on purpose")
        C, S = ds.sizes["chain"], ds.sizes["draw"]
        D = C * S
        mu, score, theta = (ds[v].values.reshape((D,) + ds[v].shape[2:]).copy() for v in ("mu", "score", "skills"))
        source = np.broadcast_to(np.arange(D)[:, None], (D, N)).copy()
        diag = {k: np.full(N, np.nan) for k in ("pareto_k", "importance_ess", "inner_ess")}
        families = cov["family"].to_numpy(dtype=str)
        groups = [f for f in pd.unique(families[mask.any(axis=1)])]
        no_tokens = [m for m, f, t in zip(cov.index, families, cov["tokens"].to_numpy(dtype=float))
                     if f in set(groups) and not np.isfinite(t)]
        if no_tokens:
            raise InputError(f"model(s) {', '.join(repr(m) for m in no_tokens[:4])} have no token count and are "
                             "in a family group conditioned on observed scores: conditioning with imputed tokens is "
                             "not available; give their tokens (or FLOPs), or predict with condition=False")
        flat = flat_posterior(self.spec_, self.idata_.posterior) if groups else None
        x = self.standardizer_.transform(cov["params"], cov["tokens"])
        floor = self.idata_.constant_data["floor"].values
        untrusted = []
        fit_mu, fit_score = mu.copy(), score.copy()  # the fit's own forecast: a lone score's pair keeps it
        for f in groups:
            rows = np.flatnonzero(families == f)

            loo = [(r, j) for r, j in zip(*np.nonzero(mask[rows]))] if not own_score else []
            masks = [mask[rows]]
            for r, j in loo:  # each scored pair from the other scores only (if the group has others)
                others = mask[rows].copy()
                others[r, j] = False
                if others.any():
                    masks.append(others)
            runs = condition_runs(
                self.spec_, flat, x=x[rows], instruct=cov["instruct"].to_numpy(dtype=float)[rows], floor=floor,
                y=y[rows], masks=np.stack(masks), model_index=midx[rows], family=int(fidx[rows[0]]),
                family_code=stream_code(f), row_codes=[stream_code(m) for m in cov.index[rows]], seed=int(seed),
                n_latent=N_LATENT if n_latent is None else n_latent, draw_weights=draw_weights, proposal=proposal)
            res = runs[0]
            mu[:, rows], score[:, rows], theta[:, rows] = res.mu, res.score, res.theta
            for (r, j), run in zip(loo, runs[1:] if len(runs) > 1 else [None] * len(loo)):
                if run is None:  # the group's only score: the fit's own forecast
                    mu[:, rows[r], j], score[:, rows[r], j] = fit_mu[:, rows[r], j], fit_score[:, rows[r], j]
                else:
                    mu[:, rows[r], j], score[:, rows[r], j] = run.mu[:, r, j], run.score[:, r, j]
            source[:, rows] = res.source[:, None]
            for k in diag:
                diag[k][rows] = getattr(res, k)
            bad = [(run, trust_problems(run, D)) for run in runs]
            bad = [(run, why) for run, why in bad if why]
            if bad:
                k = max(run.pareto_k for run, _ in bad)
                many = f"; {len(bad)} of its {len(runs)} conditionings (one per left-out score)" if len(runs) > 1 else ""
                untrusted.append(f"family {str(f)!r} ({bad[0][1][0]}" + (f", Pareto k up to {k:.2f}" if len(bad) > 1
                                                                        and np.isfinite(k) else "") + f"{many})")
        if untrusted:
            warn("conditioning on the observed scores cannot be trusted for " + "; ".join(untrusted)
                 + ": the scores are far from what the fit expects, so reweighting its draws does not reach the "
                 "conditional forecast; refit with these models included (or predict with condition=False)")
        shape4 = (C, S) + ds["mu"].shape[2:]
        out = ds.copy()
        out["mu"] = (ds["mu"].dims, mu.reshape(shape4))
        out["score"] = (ds["score"].dims, score.reshape(shape4))
        out["skills"] = (ds["skills"].dims, theta.reshape((C, S) + ds["skills"].shape[2:]))
        out["source_draw"] = (("chain", "draw", "model"), source.reshape(C, S, N))
        return out.assign_coords(conditioned=(("model", "benchmark"), mask),
                                 own_score_used=(("model", "benchmark"), mask & bool(own_score)),
                                 **{k: ("model", v) for k, v in diag.items()})

    @once_per_call
    def predict_covariates(self, family, params, tokens, *, instruct=False, seed: int | None = None,
                           new_families: str = "warn") -> xr.Dataset:
        """Posterior predictive draws of the law at arbitrary covariates, for curves and grids.

        ``family`` (one name, or one per point), ``params`` (billions) and
        ``tokens`` (trillions; NaN: unknown, imputed as in :meth:`predict`),
        broadcast against each other, give the points; each point is a new
        model of that family (a fresh offset).
        Returns a Dataset like :meth:`predict`'s ``predictions``, with a
        ``point`` dim (coordinates ``params``, ``tokens``, ``family``) in
        place of ``model``. A never-seen family's efficiency draws are the
        same as in :meth:`predict` with the same seed.
        """
        self._check_fitted()
        fam, p, t, ins = np.broadcast_arrays(np.asarray(family, dtype=object), np.asarray(params, dtype=float),
                                             np.asarray(tokens, dtype=float), np.asarray(instruct, dtype=bool))
        if p.ndim != 1:
            fam, p, t, ins = (np.atleast_1d(a).ravel() for a in (fam, p, t, ins))
        for name, v in (("params", p), ("tokens", t)):
            if name == "tokens":  # NaN: an unknown token count, imputed from the token regression
                v = v[~np.isnan(v)]
            if not (np.isfinite(v) & (v > 0)).all():
                raise InputError(f"{name} must be finite positive numbers, got {v[~(np.isfinite(v) & (v > 0))][0]!r}")
        cov = pd.DataFrame({"family": [nfc(str(f)) for f in fam], "params": p, "tokens": t, "instruct": ins})
        names = [f"\x00point:{f}:{i}" for i, f in enumerate(cov["family"])]  # streams of points, not of models
        mu, score, theta, fidx = self._draw_rows(cov, names, seed, new_families)
        flags = self._extrapolation(cov.set_index(pd.Index([f"point {i}" for i in range(len(cov))])))
        ds = self._labelled(mu, score, theta, "point", np.arange(len(cov)), cov, fidx, flags)
        return ds.assign_coords(params=("point", p), tokens=("point", t), instruct=("point", ins))

    @once_per_call
    def forecast(self, new, level: float = 0.9, *, seed: int | None = None, columns: dict | None = None,
                 new_families: str = "warn", condition: bool | str = True) -> pd.DataFrame:
        """Tidy forecast table (model, family, seen_family, extrapolation, benchmark, mean, median, lower, upper, ...).

        If ``new`` carries observed scores for the fitted benchmarks, they are
        added as an ``observed`` column, and with ``condition=True`` (default)
        the forecasts are conditioned on them (see :meth:`predict`; a scored
        pair's forecast uses the other scores only, so ``mean`` beside
        ``observed`` is a real check; ``condition="all"`` uses its own too): the
        ``conditioned`` column marks the scores conditioned on, ``pareto_k``,
        ``importance_ess`` and ``inner_ess`` say how far the conditioning can
        be trusted (NaN for models with nothing conditioned). With
        ``condition=False`` the table is the fit's own forecast, the observed
        scores only shown beside it (for comparison).
        """
        self._check_fitted()
        if not isinstance(level, (int, float, np.floating)) or isinstance(level, bool) or not 0 < level < 1:
            raise InputError(f"interval level must be in (0, 1), got {level}")
        lb = read_new_models(new, self.benchmarks_, columns)
        pred = self._predict_leaderboard(lb, seed, new_families, condition)
        observed = lb.scores if lb.scores.shape[1] else None
        return forecast_table(pred.predictions, level, observed)

    @once_per_call
    def suggest_benchmarks(self, new, targets: Sequence[str] | None = None, k: int | None = 3,
                           cost: dict | None = None, *, candidates: Sequence[str] | None = None,
                           criterion: str = "variance", seed: int | None = None, columns: dict | None = None,
                           new_families: str = "warn", condition: bool = True) -> pd.DataFrame:
        """Which benchmark to run next: each new model's unobserved benchmarks ranked by what they tell about the targets.

        For every model of ``new`` (rows as in :meth:`predict`, with the
        scores already observed, if any), each candidate benchmark b (by
        default every benchmark the model has no score for) is ranked by the
        expected reduction of the predictive variance of the targets (by
        default every other unobserved benchmark; a candidate is never its
        own target) from observing b, given what the model has observed
        (the forecast is conditioned on it, see :meth:`predict`). The
        estimate uses the joint predictive draws (the same posterior draw
        for every benchmark): ``sum_t Cov(y_t, y_b)^2 / Var(y_b)``, the
        reduction the best linear predictor of the targets from y_b achieves
        (exact for a Gaussian predictive; in general a lower bound on the
        expected reduction Var(T) - E[Var(T | y_b)]; estimated instead by
        simulating y_b and conditioning on it, the two ranked the candidates
        alike).
        ``criterion="entropy"`` ranks by the Gaussian mutual information
        between the targets and y_b instead (it discounts information
        shared between targets).

        Parameters
        ----------
        targets : list of str, optional
            Benchmarks whose forecast matters (those the model has a score
            for are left out).
        k : int or None
            How many candidates to keep per model (None: all).
        cost : mapping benchmark -> positive number, optional
            Cost of running each candidate; the ranking is then by gain per
            unit cost (``gain_per_cost``), and every candidate needs a cost.
        candidates : list of str, optional
            Benchmarks that could be run (default: every unobserved one that
            is not a given target; candidates named here may be targets too,
            each then ranked by what it tells about the other targets).

        Returns
        -------
        DataFrame, one row per (model, candidate) kept: ``model``, ``rank``,
        ``benchmark``, ``variance_reduction``, ``target_variance``,
        ``fraction`` (of the targets' variance removed), ``information``
        (nats), ``n_targets``, and with ``cost`` also ``cost`` and
        ``gain_per_cost``.
        """

        self._check_fitted()
        if criterion not in CRITERIA:
            raise InputError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if k is not None and (not _is_int(k) or k < 1):
            raise InputError(f"k must be a positive integer or None, got {k!r}")
        names = {}
        for what, given in (("targets", targets), ("candidates", candidates)):
            if given is None:
                continue
            if isinstance(given, str):
                given = [given]
            given = list(given)
            for b in given:
                if b not in self.benchmarks_:
                    raise InputError(f"{what} names {b!r}, not a fitted benchmark{did_you_mean(b, self.benchmarks_)}"
                                     f"; fitted: {', '.join(self.benchmarks_)}")
            if not given:
                raise InputError(f"{what} is empty: name at least one fitted benchmark, or pass None")
            names[what] = given
        if cost is not None:
            if not hasattr(cost, "items"):
                raise InputError(f"cost must be a mapping benchmark -> cost, got {type(cost).__name__}")
            for b, c in cost.items():
                if b not in self.benchmarks_:
                    raise InputError(f"cost names {b!r}, not a fitted benchmark{did_you_mean(b, self.benchmarks_)}; "
                                     f"fitted: {', '.join(self.benchmarks_)}")
                if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, float, np.integer, np.floating)) \
                        or not np.isfinite(c) or c <= 0:
                    raise InputError(f"cost of {b!r} must be a positive finite number, got {c!r}")
        lb = read_new_models(new, self.benchmarks_, columns)
        # only unscored benchmarks are ranked and targeted: their forecast is the same in both conditioning
        # modes, and "all" spares the leave-one-out conditionings of the scored ones
        mode = "all" if condition_mode(condition) != "none" else "none"
        pred = self._predict_leaderboard(lb, seed, new_families, mode).predictions
        J = len(self.benchmarks_)
        y = lb.scores.reindex(columns=self.benchmarks_).to_numpy(dtype=float) if len(lb.scores.columns) \
            else np.full((len(lb), J), np.nan)
        score = pred["score"].transpose("chain", "draw", "model", "benchmark").values
        score = score.reshape((-1,) + score.shape[2:])
        col = {b: j for j, b in enumerate(self.benchmarks_)}
        out = []
        for i, m in enumerate(lb.models):
            unobserved = [b for b in self.benchmarks_ if not np.isfinite(y[i, col[b]])]
            default = [b for b in unobserved if b not in set(names.get("targets", ()))]  # given targets: the others
            cands = [b for b in (names.get("candidates") or default) if b in unobserved]
            tgts = [col[b] for b in (names.get("targets") or unobserved) if b in unobserved]
            if cost is not None:
                missing = [b for b in cands if b not in cost]
                if missing:
                    raise InputError(f"cost has no entry for candidate benchmark {missing[0]!r} (model {m!r}); "
                                     "give every candidate a cost, or restrict candidates")
            if not cands:
                continue
            tab = information_gain(score[:, i, :], [col[b] for b in cands],
                                   lambda b: [t for t in tgts if t != b], criterion)
            tab.insert(0, "benchmark", [self.benchmarks_[j] for j in tab.pop("index")])
            tab.insert(0, "model", m)
            tab["n_targets"] = [len([t for t in tgts if t != col[b]]) for b in tab["benchmark"]]
            key = "score"
            if cost is not None:
                tab["cost"] = [float(cost[b]) for b in tab["benchmark"]]
                tab["gain_per_cost"] = tab["score"] / tab["cost"]
                key = "gain_per_cost"
            tab = tab.sort_values(key, ascending=False, kind="stable").reset_index(drop=True)
            tab.insert(1, "rank", np.arange(1, len(tab) + 1))
            out.append(tab.head(k) if k is not None else tab)
        cols = ["model", "rank", "benchmark", "variance_reduction", "target_variance", "fraction", "information",
                "n_targets"] + (["cost", "gain_per_cost"] if cost is not None else [])
        if not out:
            return pd.DataFrame(columns=cols)
        return pd.concat(out, ignore_index=True)[cols]

    # ---------------------------------------------------------- diagnostics
    def diagnose(self) -> Diagnostics:
        """Convergence diagnostics (also stored as ``diagnostics_`` after fit)."""
        self._check_fitted()
        return diagnose(self.idata_, self.max_tree_depth, target_accept=self.target_accept_, sampling=self.sampling_)

    def loo(self, **kwargs):
        """PSIS-LOO over the fitted (model, benchmark) pairs (``az.loo``)."""
        self._check_fitted()
        return az.loo(self.idata_, **kwargs)

    # ------------------------------------------------------------ save/load
    def to_file_idata(self) -> az.InferenceData:
        """What a fit file holds (:func:`bayes_sloth.core.fitfile.file_idata`)."""
        self._check_fitted()
        return file_idata(self.idata_)

    def save(self, path: str | os.PathLike) -> None:
        """Save the fit to a netCDF file (never pickle), atomically; see :func:`bayes_sloth.core.io.write_idata`."""

        io.check_output_path(path, what="fit file")
        io.write_idata(self.to_file_idata(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SkillsLaw":
        """Load a fit saved with :meth:`save`; predicts identically to the original.

        The file is read whole and closed before this returns; a file that
        is not a fit, or whose parts disagree, is a :class:`FitFileError`
        naming the field at fault.
        """

        return cls._from_idata(io.read_idata(path), source=f"fit file {str(path)!r}")

    @classmethod
    def _from_idata(cls, idata: az.InferenceData, source: str = "InferenceData") -> "SkillsLaw":
        """A fitted law from an InferenceData made by :meth:`fit` or read from a fit file.

        The metadata and every array are checked against each other first;
        then the deterministic sites and the observation groups are
        recomputed from the sampled sites (:func:`~bayes_sloth.core.inference.complete_posterior`,
        :func:`~bayes_sloth.core.inference.observation_groups`).
        """
        meta = read_meta(idata, source)
        try:
            law = cls(**meta["params"])
            law.validate_params()
        except (TypeError, InputError) as exc:
            raise FitFileError(f"{source}: field 'params' is invalid ({exc})") from None
        full, meta, lb = rebuild(idata, source)
        law._adopt(full, meta, lb)
        return law


#: Every constructor argument's default (declared in :mod:`bayes_sloth.core.options`).
_DEFAULTS = {**LawOptions.defaults(), **SamplerOptions.defaults()}
SkillsLaw.__init__.__signature__ = options_signature()
SkillsLaw.__doc__ = SkillsLaw.__doc__.replace("{parameters}", parameters_doc())






#: What ``condition=`` accepts, by the mode it means (see :meth:`SkillsLaw.predict`).
CONDITION_MODES = {True: "others", "others": "others", "all": "all", False: "none", "none": "none"}


def condition_mode(condition) -> str:
    """``condition`` as one of "others" (True, the default), "all" or "none" (False); anything else is an
    InputError naming it."""
    if isinstance(condition, (bool, np.bool_)):
        return CONDITION_MODES[bool(condition)]
    if isinstance(condition, str) and condition in CONDITION_MODES:
        return CONDITION_MODES[condition]
    raise InputError(f"condition must be True (each pair from the other scores), 'all' (every pair from every "
                     f"score, its own included) or False (none), got {condition!r}")


def _shown(v) -> str:
    """A constructor argument as the repr shows it: a callable (a progress reporter) by its name, never as
    ``<object at 0x...>``."""
    if callable(v) and not isinstance(v, (bool, np.bool_)):
        return getattr(v, "__qualname__", None) or type(v).__name__
    return repr(v)


def _differs(a, b) -> bool:
    try:
        return bool(a != b)
    except Exception:
        return True














