r"""Choosing among laws by their forecasts: Bayesian stacking of candidate laws.

A user should not have to guess the number of skills K (or the link). Fit
several candidate laws (any list of :class:`~bayes_sloth.SkillsLaw`
configurations, e.g. K = 1..4) and combine their predictive distributions
with weights chosen for how well each predicts families it has not seen
(Yao, Vehtari, Simpson and Gelman 2018, "Using stacking to average Bayesian
predictive distributions", Bayesian Analysis 13(3)):

.. math::

    \hat w = \arg\max_{w \in \Delta_{K}} \sum_{i=1}^{n} \log \sum_{k=1}^{K} w_k\, p_k(y_i \mid y_{-F(i)})

where i runs over the fitted (model, benchmark) pairs, F(i) is the family of
pair i and :math:`p_k(y_i \mid y_{-F(i)})` is candidate k's predictive
density of the score y_i with its family left out: the leave-*family*-out
density, the situation the package's forecasts are judged in, never the
in-sample fit. The stacked predictive distribution is the mixture
:math:`\sum_k \hat w_k p_k(\cdot \mid y)` of the candidates' full-data
predictive distributions.

Leave-family-out densities (:func:`leave_family_out_lpd`). Two standard
routes were measured:

(a) family-grouped PSIS-LOO from each candidate's one fit, importance ratios
    :math:`r_s = 1 / p(y_F \mid \theta_s) = \exp(-\sum_{i \in F} \log p(y_i \mid \theta_s))`,
    Pareto-smoothed (Vehtari et al. 2024). With a family's own efficiency
    and its models' offsets in theta, removing a family moves these latents
    from their posterior back to the population: the ratios have Pareto
    k > 0.7 for most families of the real table (the estimate is then not
    reliable). :func:`family_psis_k` reports these k values for every fit
    (``diagnostics_``), as evidence of this;
(b) exact leave-family-out refits: one more fit per family and candidate,
    tens of fits per candidate: too slow for the leave-family-out table.

What is used instead is the *integrated* leave-family-out density (the
group-level analogue of integrated importance sampling, Vehtari et al.
2016, JMLR 17(103)): the family's latents are integrated out against their
population distribution given the global parameters phi (loadings,
intercepts, slopes, link, noise, the families' spread tau), exactly as the
law forecasts a family it has never seen:

.. math::

    p_k(y_i \mid y_{-F}) \approx \frac{1}{S} \sum_{s=1}^{S}
        \int p(y_i \mid \phi_s, \alpha, e)\, p(\alpha, e \mid \phi_s)\, d\alpha\, de

(one population draw of the latents per posterior draw s, through the law's
own forecast code, :meth:`SkillsLaw.predict` with the family renamed as a
never-seen one). With ``n_seen = n > 0`` the family's n smallest models are
*seen*: the density of its other pairs is then the forecast conditioned on
those n models' scores (nested importance sampling over the family's
latents, :mod:`bayes_sloth.core.conditioning`), the paper's protocol with n
training models per family. What is not removed is the family's share of
the information about phi (one family among tens): the densities are
slightly optimistic, by about the same for every candidate.

Weights (:func:`stacking_weights`): the objective is concave in w; it is
maximised over the softmax parameterisation :math:`w = \mathrm{softmax}(z)`,
:math:`z_K = 0`, by L-BFGS with the analytic gradient
:math:`\partial L / \partial z_k = w_k (g_k - \sum_j w_j g_j)`,
:math:`g_k = \sum_i p_{ik} / \sum_j w_j p_{ij}`, starting from equal weights
(so identical candidates keep equal weights).

Mixture draws (:meth:`StackedLaw.predict`): D output draws, candidate k
contributing :math:`n_k \approx D \hat w_k` of them (largest remainders),
each one whole posterior predictive draw of candidate k (all rows and
benchmarks of a draw come from the same member and the same posterior draw,
so joint statements stay coherent), picked and ordered by a NumPy generator
seeded with the seed: the same seed gives the same mixture.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import io
from ..core.data import Leaderboard, read_new_models
from ..core.errors import FitFileError, InputError, warn
from ..core.estimator import SkillsLaw
from ..core.options import MAX_SEED
from ..core.prediction import forecast_table, log_predictive_density

#: Pareto k above which an importance-sampling estimate is not reliable (Vehtari et al. 2024).
K_TRUST = 0.7
#: Prefix of the names a family and its models get when they are forecast as never seen.
_LFO_PREFIX = "lfo::"
#: File of a saved stack holding its weights and settings (beside one fit file per member).
STACK_FILE = "stack.json"
STACK_FORMAT = "1.0"


# ------------------------------------------------------------------ weights
def stacking_weights(lpd, *, names: Sequence[str] | None = None) -> np.ndarray:
    r"""Stacking weights: ``argmax_{w in simplex} sum_i log sum_k w_k exp(lpd[i, k])``.

    ``lpd`` (n, K): log predictive density of unit i (a held-out pair) under
    candidate k. Solved on the softmax parameterisation (K - 1 free values)
    by ``scipy.optimize.minimize`` (L-BFGS-B) with the analytic gradient,
    from equal weights. Returns the K weights (non-negative, sum 1).
    """
    from scipy.optimize import minimize

    a = np.asarray(lpd, dtype=float)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"lpd must be a 2-d array (units x candidates) with at least one of each, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        who = names[k] if names is not None else f"candidate {k}"
        raise InputError(f"lpd holds a non-finite value ({a[i, k]!r}) at unit {i} of {who}: every candidate needs a "
                         "finite log density at every unit")
    K = a.shape[1]
    if K == 1:
        return np.ones(1)
    top = a.max(axis=1, keepdims=True)
    p = np.exp(a - top)  # rows scaled by exp(-top): the argmax is unchanged

    def negloglik(z):
        zz = np.append(z, 0.0)
        w = np.exp(zz - zz.max())
        w /= w.sum()
        mix = p @ w
        g = (p / mix[:, None]).sum(axis=0)
        grad = w * (g - w @ g)
        return -np.log(mix).sum(), -grad[:-1]

    res = minimize(negloglik, np.zeros(K - 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    zz = np.append(res.x, 0.0)
    w = np.exp(zz - zz.max())
    return w / w.sum()


def mixture_lpd(lpd, weights) -> np.ndarray:
    """``log sum_k w_k exp(lpd[:, k])`` of each unit (the stacked density), computed stably."""
    a = np.asarray(lpd, dtype=float)
    w = np.asarray(weights, dtype=float)
    with np.errstate(divide="ignore"):
        t = a + np.log(w)[None, :]
    top = np.max(t, axis=1, keepdims=True)
    return (top + np.log(np.exp(t - top).sum(axis=1, keepdims=True)))[:, 0]


def allocate_draws(weights, n_draws: int) -> np.ndarray:
    """Draws each member contributes to a mixture of ``n_draws``: ``n_draws * w`` rounded by largest remainders."""
    w = np.asarray(weights, dtype=float)
    raw = w * n_draws
    n = np.floor(raw).astype(int)
    short = int(n_draws - n.sum())
    if short > 0:
        n[np.argsort(-(raw - n), kind="stable")[:short]] += 1
    return n


# ------------------------------------------------------- leave-family-out densities
def unconverged_weight(diagnostics: pd.DataFrame, min_weight: float = 0.01) -> str | None:
    """A warning naming the candidates that carry stacking weight (at least ``min_weight``) but whose posterior
    failed its checks (``diagnostics``: :attr:`StackedLaw.diagnostics_`), or None when there are none.

    The weights judge each candidate by its forecasts, not by its sampler: an
    unconverged member can still win weight, and its share of the mixture then
    rests on draws that do not represent its posterior.
    """
    bad = diagnostics[~diagnostics["converged"].astype(bool) & (diagnostics["weight"] >= min_weight)]
    if not len(bad):
        return None
    which = "; ".join(f"{name} (weight {r['weight']:.2f}, max R-hat {r['max_rhat']:.3f}, "
                      f"{int(r['divergences'])} divergent)" for name, r in bad.iterrows())
    return (f"the stack gives weight to candidate(s) whose posterior failed its checks: {which}. Their part of "
            "the mixture rests on unconverged draws: sample them longer (warmup, draws) or leave them out")


def _training_pairs(law) -> pd.DataFrame:
    """The fitted (model, benchmark, score) pairs of a fit: those in its likelihood only (masked pairs left out)."""
    od = law.idata_.observed_data
    return pd.DataFrame({"model": np.asarray(od["obs_model"].values, dtype=str),
                         "benchmark": np.asarray(od["obs_benchmark"].values, dtype=str),
                         "observed": np.asarray(od["y"].values, dtype=float)})


def family_psis_k(law) -> pd.Series:
    """Pareto k of family-grouped PSIS-LOO on a fit (route (a) of the module docstring), one per family.

    For family F the log importance ratio of draw s is ``-sum_{i in F} log
    p(y_i | theta_s)`` over the fit's pointwise log-likelihood (masked
    pairs excluded); ``az.psislw`` smooths them and returns k. k > 0.7: the
    fit's posterior does not cover the family-left-out one (the estimate is
    unreliable).
    """
    import arviz as az

    ll = law.idata_.log_likelihood["y"]
    C, S = ll.sizes["chain"], ll.sizes["draw"]
    flat = ll.transpose("chain", "draw", "obs").values.reshape(C * S, -1)
    fam = law.leaderboard_.covariates["family"]
    obs_fam = fam.loc[np.asarray(ll["obs_model"].values, dtype=str)].to_numpy()
    out = {}
    for f in pd.unique(obs_fam):
        lr = -flat[:, obs_fam == f].sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, k = az.psislw(lr)
        out[str(f)] = float(np.asarray(k).reshape(-1)[0])
    return pd.Series(out, name="psis_k").rename_axis("family")


def leave_family_out_lpd(law, n_seen: int = 0, *, seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Integrated leave-family-out log predictive density of every fitted pair of a fitted law.

    Each family F of the fit (its models with fitted pairs, ordered by
    parameters then name) is forecast as a family never seen: its n_seen
    smallest models are conditioned on (their fitted scores), the other
    models' pairs are scored by ``log (1/S) sum_s p(y | mu_s, sigma_s)``
    (:func:`bayes_sloth.core.prediction.log_predictive_density`) with the family's
    latents drawn from the population (see the module docstring). Only pairs
    in the fit's likelihood are used, seen or scored: a cross-validation
    fold's masked pairs never enter.

    Returns ``(pairs, families)``: ``pairs`` has one row per scored pair
    (family, model, benchmark, observed, lpd); ``families`` one row per
    family (n_models, n_scored_pairs, and with ``n_seen > 0`` the
    conditioning's ``pareto_k``, NaN otherwise).
    """

    if not isinstance(n_seen, (int, np.integer)) or isinstance(n_seen, bool) or n_seen < 0:
        raise InputError(f"n_seen must be a non-negative integer, got {n_seen!r}")
    law._check_fitted()
    seed = int(law.seed) if seed is None else int(seed)
    pairs = _training_pairs(law)
    benchmarks = list(law.benchmarks_)
    Y = pairs.pivot(index="model", columns="benchmark", values="observed").reindex(columns=benchmarks)
    cov = law.leaderboard_.covariates.loc[Y.index]
    order = cov.assign(_name=cov.index).sort_values(["family", "params", "_name"], kind="stable")
    rank = order.groupby("family", sort=False).cumcount()
    seen = (rank < n_seen).reindex(cov.index)
    n_models = cov.groupby("family", sort=False).size()
    fams = pd.DataFrame({"n_models": n_models})
    scored_fams = n_models.index[n_models > n_seen]
    fams["n_scored_pairs"] = 0
    fams["pareto_k"] = np.nan
    rows = cov.index[cov["family"].isin(scored_fams).to_numpy()]
    if len(rows) == 0:
        raise InputError(f"no family of the fit has more than n_seen={n_seen} models: nothing to score")
    new_cov = cov.loc[rows].copy()
    new_cov["family"] = _LFO_PREFIX + new_cov["family"].astype(str)
    new_scores = Y.loc[rows].where(np.broadcast_to(seen.loc[rows].to_numpy()[:, None], (len(rows), len(benchmarks))))
    names = pd.Index([_LFO_PREFIX + str(m) for m in rows], name="model")
    new_cov.index, new_scores.index = names, names
    new_lb = Leaderboard(new_cov[["family", "params", "tokens", "instruct"]], new_scores,
                         law.leaderboard_.floors.reindex(benchmarks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's own warnings were given at fit; conditioning trust is returned
        pred = law.predict(new_lb, seed=seed, new_families="allow",  # only unseen rows are scored:
                           condition="all" if n_seen > 0 else False).predictions  # no leave-one-out needed
    scored_rows = [n for n, r in zip(names, rows) if not seen.loc[r]]
    scored_y = Y.loc[[r for r in rows if not seen.loc[r]]]
    scored_y.index = pd.Index(scored_rows, name="model")
    lpd = log_predictive_density(law.spec_, pred["mu"].sel(model=scored_rows),
                                 law.idata_.posterior["sigma"].sel(benchmark=benchmarks),
                                 scored_y.to_numpy(dtype=float))
    long = lpd.to_dataframe().reset_index()
    long["observed"] = scored_y.to_numpy(dtype=float).reshape(-1)
    long = long[np.isfinite(long["observed"].to_numpy())].copy()
    long["model"] = long["model"].str.slice(len(_LFO_PREFIX))
    long.insert(0, "family", cov.loc[long["model"], "family"].to_numpy())
    out = long[["family", "model", "benchmark", "observed", "lpd"]].reset_index(drop=True)
    fams["n_scored_pairs"] = out.groupby("family").size().reindex(fams.index).fillna(0).astype(int)
    if n_seen > 0 and "pareto_k" in pred.coords:
        pk = pd.Series(pred["pareto_k"].values, index=[str(f)[len(_LFO_PREFIX):] for f in pred["family"].values])
        fams["pareto_k"] = pk.groupby(level=0).max().reindex(fams.index)
    return out, fams.rename_axis("family")


# ------------------------------------------------------------------ the stack
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def candidate_names(candidates) -> list[str]:
    """Readable unique names: ``K=k``, plus every setting in which the candidates differ (seed aside)."""
    params = [c.get_params() for c in candidates]
    skip = {"n_skills", "progress", "seed"}
    differ = [k for k in params[0] if k not in skip and any(_neq(p[k], params[0][k]) for p in params)]
    names = [", ".join([f"K={p['n_skills']}"] + [f"{k}={p[k]}" for k in differ]) for p in params]
    seen: dict = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n} #{seen[n]}")
    return out


def _neq(a, b) -> bool:
    try:
        return bool(a != b)
    except Exception:
        return True


class StackedLaw:
    """Several candidate laws, combined by Bayesian stacking of their leave-family-out predictions.

    Parameters
    ----------
    candidates : list of SkillsLaw
        Unfitted configurations (they are cloned at fit: the list given is
        not changed), e.g. ``[SkillsLaw(n_skills=k) for k in (1, 2, 3, 4)]``.
    names : list of str, optional
        One per candidate (default: :func:`candidate_names`, e.g. ``"K=2"``).
    n_seen : int, default 0
        Models of each family seen when its other pairs are scored (0: whole
        families left out; 1 or 2: the paper's protocol, see
        :func:`leave_family_out_lpd`). ``evaluate`` sets it to the cell's
        ``n_train``.
    seed : int, default 0
        Seed of the leave-family-out forecasts and of the mixture's draws.
    n_draws : int, optional
        Draws of the mixture (default: the largest member's chains x draws).

    Fitted attributes: ``members_`` (the fitted SkillsLaws), ``weights_``
    (Series over the names), ``lfo_pairs_`` (the leave-family-out log
    densities, one column per candidate), ``lfo_families_``,
    ``diagnostics_`` (one row per candidate: weight, elpd of the
    leave-family-out pairs, convergence, family-grouped PSIS k summary, fit
    seconds), ``fit_seconds_``.
    """

    _PARAMS = ("candidates", "names", "n_seen", "seed", "n_draws")

    def __init__(self, candidates, *, names: Sequence[str] | None = None, n_seen: int = 0, seed: int = 0,
                 n_draws: int | None = None):
        self.candidates = candidates
        self.names = names
        self.n_seen = n_seen
        self.seed = seed
        self.n_draws = n_draws

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> "StackedLaw":
        unknown = [k for k in params if k not in self._PARAMS]
        if unknown:
            raise InputError(f"StackedLaw has no parameter {unknown[0]!r} (parameters: {', '.join(self._PARAMS)})")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        names = self.candidate_labels() if self._candidates_ok() else self.candidates
        if hasattr(self, "weights_"):
            body = ", ".join(f"{n}: {w:.3f}" for n, w in self.weights_.items())
            return f"StackedLaw(weights {{{body}}}, n_seen={self.n_seen})"
        return f"StackedLaw({names}, n_seen={self.n_seen}, seed={self.seed})"

    def _candidates_ok(self) -> bool:

        try:
            return len(self.candidates) > 0 and all(isinstance(c, SkillsLaw) for c in self.candidates)
        except TypeError:
            return False

    def candidate_labels(self) -> list[str]:
        """The candidates' names: ``names`` if given, else "K=1", "K=2", ... (with what else differs)."""
        return list(self.names) if self.names is not None else candidate_names(self.candidates)

    def validate_params(self) -> None:
        """Every argument, and each candidate's, checked before any work: a bad one is an InputError naming it."""

        if isinstance(self.candidates, (str, bytes)) or not hasattr(self.candidates, "__len__"):
            raise InputError(f"candidates must be a list of SkillsLaw, got {self.candidates!r}")
        if len(self.candidates) == 0:
            raise InputError("candidates is empty: give at least one SkillsLaw")
        for i, c in enumerate(self.candidates):
            if not isinstance(c, SkillsLaw):
                raise InputError(f"candidate {i} is {c!r}, not a SkillsLaw")
            c.validate_params()
        if self.names is not None:
            names = list(self.names)
            if len(names) != len(self.candidates) or len(set(names)) != len(names) \
                    or not all(isinstance(n, str) for n in names):
                raise InputError(f"names must be {len(self.candidates)} distinct strings, one per candidate, "
                                 f"got {self.names!r}")
        if not _is_int(self.n_seen) or self.n_seen < 0:
            raise InputError(f"n_seen must be a non-negative integer, got {self.n_seen!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.n_draws is not None and (not _is_int(self.n_draws) or self.n_draws < 1):
            raise InputError(f"n_draws must be a positive integer or None, got {self.n_draws!r}")

    # ------------------------------------------------------------------ fit
    def fit(self, data, benchmarks: Sequence[str] | None = None, *, columns: dict | None = None,
            obs_weight=None, on_member=None) -> "StackedLaw":
        """Fit every candidate on the same data (and mask), then the stacking weights.

        ``data``, ``benchmarks``, ``columns`` and ``obs_weight`` as in
        :meth:`SkillsLaw.fit` (with ``obs_weight``, the weights use only
        the pairs left in the likelihood). ``on_member(name, law)`` is called
        after each candidate's fit and leave-family-out forecast.
        """

        self.validate_params()
        names = self.candidate_labels()
        t0 = time.perf_counter()
        members, lfo, fams, rows = [], [], [], []
        for name, cand in zip(names, self.candidates):
            law = SkillsLaw(**cand.get_params())
            law.fit(data, benchmarks, columns=columns, obs_weight=obs_weight)
            pairs, fam = leave_family_out_lpd(law, int(self.n_seen), seed=int(self.seed))
            psis_k = family_psis_k(law)
            members.append(law)
            lfo.append(pairs)
            fams.append(fam.assign(candidate=name, psis_k=psis_k.reindex(fam.index)))
            d = law.diagnostics_
            rows.append({"candidate": name, "n_skills": int(law.n_skills), "elpd_lfo": float(pairs["lpd"].sum()),
                         "elpd_lfo_per_pair": float(pairs["lpd"].mean()),
                         "max_rhat": float(d.max_rhat), "divergences": int(d.divergences),
                         "converged": bool(d.ok), "psis_k_max": float(psis_k.max()),
                         "share_psis_k_over_0.7": float((psis_k > K_TRUST).mean()),
                         "fit_seconds": float(law.fit_seconds_)})
            if on_member is not None:
                on_member(name, law)
        key = ["family", "model", "benchmark"]
        table = lfo[0][key + ["observed"]].copy()
        for name, p in zip(names, lfo):
            if not p[key].equals(lfo[0][key]):
                raise InputError(f"candidate {name!r} was fitted on other pairs than {names[0]!r}: the candidates "
                                 "must see the same data (same benchmarks, rows and mask)")
            table[name] = p["lpd"].to_numpy()
        w = stacking_weights(table[names].to_numpy(), names=names)
        self.members_ = members
        self.names_ = names
        self.weights_ = pd.Series(w, index=pd.Index(names, name="candidate"), name="weight")
        self.lfo_pairs_ = table
        self.lfo_families_ = pd.concat(fams).reset_index()
        diag = pd.DataFrame(rows).set_index("candidate")
        diag.insert(0, "weight", w)
        diag["elpd_lfo_stacked"] = float(mixture_lpd(table[names].to_numpy(), w).sum())
        self.diagnostics_ = diag
        self.fit_seconds_ = time.perf_counter() - t0
        message = unconverged_weight(diag)
        if message:
            warn(message)
        bad = self.lfo_families_[self.lfo_families_["pareto_k"] > K_TRUST]
        if len(bad):
            warn(f"conditioning on each family's {self.n_seen} smallest model(s) has Pareto k > {K_TRUST} for "
                 f"{bad['family'].nunique()} famil(ies) (e.g. {bad['family'].iloc[0]!r} under "
                 f"{bad['candidate'].iloc[0]!r}): their leave-family-out densities are rough")
        return self

    def _check_fitted(self):
        if not hasattr(self, "weights_"):
            raise InputError("this StackedLaw is not fitted yet: call fit(data) or StackedLaw.load(folder)")

    @property
    def benchmarks_(self) -> list[str]:
        self._check_fitted()
        return list(self.members_[0].benchmarks_)

    @property
    def leaderboard_(self):
        self._check_fitted()
        return self.members_[0].leaderboard_

    # ------------------------------------------------------------- predict
    def _mixture_plan(self, seed: int) -> list[tuple[int, np.ndarray]]:
        """(member, flat posterior draw) of each output draw, from a generator seeded with ``seed``."""
        sizes = [m.idata_.posterior.sizes["chain"] * m.idata_.posterior.sizes["draw"] for m in self.members_]
        D = int(self.n_draws) if self.n_draws is not None else max(sizes)
        counts = allocate_draws(self.weights_.to_numpy(), D)
        rng = np.random.default_rng([int(seed), 0x57AC])
        member = np.repeat(np.arange(len(counts)), counts)
        rng.shuffle(member)
        which = np.empty(D, dtype=int)
        for k, n in enumerate(counts):
            if n:
                which[member == k] = rng.choice(sizes[k], size=n, replace=n > sizes[k])
        return member, which

    def predict(self, new, *, seed: int | None = None, columns: dict | None = None, new_families: str = "warn",
                condition: bool = True):
        """Draws of the stacked predictive distribution for new models (as :meth:`SkillsLaw.predict`).

        Each member predicts (with the same seed and options); output draw d
        is one whole draw of member ``candidate[d]`` (see the module
        docstring). Returns InferenceData with group ``predictions``:
        ``score`` and ``mu`` (chain, draw, model, benchmark), with one chain
        of D draws, ``sigma`` (chain, draw, benchmark: the member's noise
        scale of that draw), ``candidate`` (chain, draw: the member's name)
        and ``source_draw`` (chain, draw: the member's flat posterior
        draw); the ``family``, ``seen_family`` and ``extrapolation``
        coordinates as a law's; with ``condition``, the conditioning's
        ``conditioned``, and per model the worst member's ``pareto_k`` (max),
        ``importance_ess`` and ``inner_ess`` (min). Skills are not returned (their number
        differs across members).
        """
        import arviz as az
        import xarray as xr

        self._check_fitted()
        seed = int(self.seed) if seed is None else seed

        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise InputError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
        member, which = self._mixture_plan(seed)
        used = sorted(set(member.tolist()))
        preds = {}
        for k in used:
            preds[k] = self.members_[k].predict(new, seed=seed, columns=columns, new_families=new_families,
                                                condition=condition).predictions
        first = preds[used[0]]
        M, J = first.sizes["model"], first.sizes["benchmark"]
        D = len(member)
        score = np.empty((D, M, J))
        mu = np.empty((D, M, J))
        sigma = np.empty((D, J))
        for k in used:
            sel = member == k
            p = preds[k]
            flat = lambda v: v.transpose("chain", "draw", "model", "benchmark").values.reshape(-1, M, J)  # noqa: E731
            score[sel] = flat(p["score"])[which[sel]]
            mu[sel] = flat(p["mu"])[which[sel]]
            sig = self.members_[k].idata_.posterior["sigma"].sel(benchmark=list(first["benchmark"].values))
            sigma[sel] = sig.transpose("chain", "draw", "benchmark").values.reshape(-1, J)[which[sel]]
        coords = {"chain": [0], "draw": np.arange(D), "model": first["model"].values,
                  "benchmark": first["benchmark"].values}
        ds = xr.Dataset(
            {"score": (("chain", "draw", "model", "benchmark"), score[None]),
             "mu": (("chain", "draw", "model", "benchmark"), mu[None]),
             "sigma": (("chain", "draw", "benchmark"), sigma[None]),
             "candidate": (("chain", "draw"), np.asarray(self.names_, dtype=object)[member][None].astype(str)),
             "source_draw": (("chain", "draw"), which[None])},
            coords=coords)
        keep = {}
        for c, v in first.coords.items():  # the rows' labels, and the conditioning's checks: the worst member's
            if c in ds.coords or not set(v.dims) <= {"model", "benchmark"} or not v.dims:
                continue
            if c == "pareto_k":
                v = xr.concat([preds[k].coords[c] for k in used], "member").max("member")
            elif c in ("importance_ess", "inner_ess"):
                v = xr.concat([preds[k].coords[c] for k in used], "member").min("member")
            keep[c] = (v.dims, np.asarray(v.values))
        ds = ds.assign_coords(keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(predictions=ds)

    def forecast(self, new, level: float = 0.9, *, seed: int | None = None, columns: dict | None = None,
                 new_families: str = "warn", condition: bool = True) -> pd.DataFrame:
        """Tidy forecast table of the stacked predictive distribution (the columns of :meth:`SkillsLaw.forecast`)."""

        self._check_fitted()
        if not isinstance(level, (int, float, np.floating)) or isinstance(level, bool) or not 0 < level < 1:
            raise InputError(f"interval level must be in (0, 1), got {level}")
        lb = read_new_models(new, self.benchmarks_, columns)
        pred = self.predict(lb, seed=seed, new_families=new_families, condition=condition)
        observed = lb.scores if lb.scores.shape[1] else None
        return forecast_table(pred.predictions, level, observed)

    def log_predictive_density(self, predictions, observed):
        """Log density of observed scores under the stacked predictive: ``log (1/D) sum_d p(y | mu_d, sigma_d)``.

        ``predictions`` is the ``predictions`` group of :meth:`predict`
        (optionally selected to some models and benchmarks), ``observed``
        the scores over its (model, benchmark) dims; each draw's density is
        its own member's noise distribution. Returns a DataArray (model,
        benchmark); NaN where a score is missing.
        """
        import xarray as xr

        self._check_fitted()
        cand = predictions["candidate"].values.reshape(-1)
        D = cand.size
        parts = []
        for k, name in enumerate(self.names_):
            sel = np.flatnonzero(cand == name)
            if sel.size == 0:
                continue
            mu = predictions["mu"].stack(sample=("chain", "draw")).isel(sample=sel)
            sig = predictions["sigma"].stack(sample=("chain", "draw")).isel(sample=sel)
            mu = mu.drop_vars(["sample", "chain", "draw"], errors="ignore").rename(sample="s").expand_dims(c=1)
            sig = sig.drop_vars(["sample", "chain", "draw"], errors="ignore").rename(sample="s").expand_dims(c=1)
            lp = log_predictive_density(self.members_[k].spec_, mu, sig, observed, sample_dims=("c", "s"))
            parts.append(lp + np.log(sel.size / D))
        stacked = xr.concat(parts, dim="part")
        top = stacked.max("part")
        return top + np.log(np.exp(stacked - top).sum("part"))

    # ------------------------------------------------------------ save/load
    def save(self, folder: str | os.PathLike) -> None:
        """Save the stack to a folder: one fit file per member (``member_<i>.nc``, :meth:`SkillsLaw.save`)
        and ``stack.json`` (weights, names, settings, the leave-family-out densities' summary)."""

        self._check_fitted()
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{str(folder)!r} exists and is not a folder: a stack is saved as a folder of fit files")
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for i, m in enumerate(self.members_):
            name = f"member_{i}.nc"
            m.save(folder / name)
            files.append(name)
        meta = {"stack_format": STACK_FORMAT, "names": list(self.names_),
                "weights": [float(w) for w in self.weights_.to_numpy()], "members": files,
                "n_seen": int(self.n_seen), "seed": int(self.seed),
                "n_draws": None if self.n_draws is None else int(self.n_draws),
                "diagnostics": json.loads(self.diagnostics_.reset_index().to_json(orient="records"))}
        io.write_text(json.dumps(meta, indent=1), folder / STACK_FILE, what="stack file")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "StackedLaw":
        """Load a stack saved with :meth:`save`: its members' fits and its weights (predicts identically)."""

        folder = Path(folder)
        path = folder / STACK_FILE
        if not path.is_file():
            raise FitFileError(f"{str(folder)!r} holds no {STACK_FILE}: not a folder written by StackedLaw.save")
        try:
            meta = json.loads(path.read_text())
            names, weights, files = list(meta["names"]), np.asarray(meta["weights"], float), list(meta["members"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FitFileError(f"{str(path)!r} is not a valid stack file ({exc}): corrupted; save the stack again") \
                from None
        if str(meta.get("stack_format", "?")).split(".")[0] != STACK_FORMAT.split(".")[0]:
            raise FitFileError(f"{str(path)!r} has stack format {meta.get('stack_format')!r}; this version reads "
                               f"{STACK_FORMAT}")
        if not (len(names) == len(weights) == len(files)) or not np.isclose(weights.sum(), 1.0) or (weights < 0).any():
            raise FitFileError(f"{str(path)!r}: field 'weights' ({weights.tolist()}) does not match its {len(names)} "
                               "names or is not a probability vector: corrupted; save the stack again")
        members = [SkillsLaw.load(folder / f) for f in files]
        stack = cls([SkillsLaw(**m.get_params()) for m in members], names=names, n_seen=int(meta["n_seen"]),
                    seed=int(meta["seed"]), n_draws=meta.get("n_draws"))
        stack.members_ = members
        stack.names_ = names
        stack.weights_ = pd.Series(weights, index=pd.Index(names, name="candidate"), name="weight")
        stack.diagnostics_ = pd.DataFrame(meta.get("diagnostics") or []).set_index("candidate") \
            if meta.get("diagnostics") else pd.DataFrame()
        return stack


def stack(candidates, *, names: Sequence[str] | None = None, n_seen: int = 0, seed: int = 0,
          n_draws: int | None = None) -> StackedLaw:
    """A :class:`StackedLaw` of ``candidates`` (unfitted SkillsLaws); call ``.fit(data)`` on it.

    >>> law = stack([SkillsLaw(n_skills=k) for k in (1, 2, 3, 4)]).fit(load_sloth())   # doctest: +SKIP
    >>> law.weights_                                                                   # doctest: +SKIP
    >>> law.forecast(new_models, level=0.9)                                            # doctest: +SKIP
    """
    return StackedLaw(candidates, names=names, n_seen=n_seen, seed=seed, n_draws=n_draws)
