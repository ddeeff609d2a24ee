"""Convergence diagnostics of a fit, with a verdict and plain-language hints.

Checks (thresholds of Vehtari et al. 2021 and the Stan manual):

- R-hat (rank-normalized, split) > 1.01 on any parameter;
- bulk or tail ESS < 400;
- any divergent transition;
- E-BFMI < 0.3 in any chain.

Trajectories that hit the maximum tree depth are an efficiency note, shown
but not a failed check (as Stan's and PyMC's diagnostics treat them): the
draws are valid, they only cost more gradient evaluations each.
Every piece of advice names the option to change, in Python and on the
command line (``draws="auto"`` / ``--draws auto``).

Fixed loadings (anchors, structural zeros) are constants and are skipped.

R-hat and ESS are ArviZ's definitions (rank-normalized split R-hat, the
larger of the bulk and folded versions; bulk ESS of the rank-normalized split
chains; tail ESS, the smaller of the 5 % and 95 % quantile ESS, Geyer's initial
monotone sequence), computed here for all parameters at once in NumPy:
``az.summary`` loops in Python over scalars, which took 1.6 s of a 9 s
cross-validation fold. ``tests/test_diagnostics.py`` checks the numbers
against ``az.summary`` to 1e-8.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
from scipy import special, stats

from .options import SamplerOptions

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3

#: Attribute of a fit's posterior listing the sites whose convergence matters (every site but the raw
#: coordinates of non-centred effects; written from the model's site table, :mod:`bayes_sloth.core.sites`).
CHECKED_ATTR = "checked_sites"


def checked_names(posterior) -> list[str]:
    """The sites of ``posterior`` whose R-hat and ESS decide convergence: those its ``checked_sites``
    attribute lists, or every variable of a posterior without it (one not made by this package)."""
    names = posterior.attrs.get(CHECKED_ATTR)
    if names is None:
        return list(posterior.data_vars)
    return [n for n in np.atleast_1d(names).tolist() if n in posterior]


@dataclass
class Diagnostics:
    """Result of :func:`diagnose`. ``ok`` is True when no check fails."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    bfmi: list[float]
    max_tree_depth_hits: int
    n_draws: int
    table: pd.DataFrame = field(repr=False)
    problems: list[str] = field(default_factory=list)
    #: Efficiency notes (draws at the maximum tree depth): shown, never a reason for ``ok`` to be False.
    notes: list[str] = field(default_factory=list)
    #: Leapfrog steps of every chain, warm-up and sampling together: the gradient evaluations the fit cost
    #: (machine independent; 0 for a variational fit)
    gradient_evaluations: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def gradient_evaluations_per_ess(self) -> float:
        """Gradient evaluations per effective draw of the worst-mixing parameter (bulk or tail): the cost of
        the posterior's geometry, whatever the machine."""
        ess = min(self.min_ess_bulk, self.min_ess_tail)
        return float(self.gradient_evaluations / ess) if ess > 0 and self.gradient_evaluations else float("nan")

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail,
            "divergences": self.divergences,
            "min_bfmi": float(min(self.bfmi)) if self.bfmi else float("nan"),
            "max_tree_depth_hits": self.max_tree_depth_hits,
            "gradient_evaluations": self.gradient_evaluations,
            "gradient_evaluations_per_ess": self.gradient_evaluations_per_ess,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        head = "converged: no problems found" if self.ok else f"NOT converged: {len(self.problems)} problem(s)"
        lines = [
            head,
            f"  max R-hat {self.max_rhat:.4f} (want <= {RHAT_MAX})",
            f"  min bulk ESS {self.min_ess_bulk:.0f}, min tail ESS {self.min_ess_tail:.0f} (want >= {ESS_MIN})",
            f"  divergences {self.divergences} of {self.n_draws} draws",
            f"  E-BFMI per chain {', '.join(f'{b:.2f}' for b in self.bfmi)} (want >= {BFMI_MIN})",
            f"  draws at max tree depth {self.max_tree_depth_hits} (efficiency only, not a failed check)",
        ]
        if self.gradient_evaluations:
            lines.append(f"  gradient evaluations {self.gradient_evaluations:,} "
                         f"({self.gradient_evaluations_per_ess:,.0f} per effective draw)")
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


# ------------------------------------------------- vectorized R-hat and ESS
def _split(a):
    """(P, C, D) -> (P, 2C, D // 2): each chain cut in two halves (middle draw dropped if D is odd)."""
    half = a.shape[2] // 2
    return np.concatenate([a[:, :, :half], a[:, :, a.shape[2] - half:]], axis=1)


def _z_scale(a):
    """Rank-normalize each parameter's draws (Blom's offset 3/8)."""
    P = a.shape[0]
    r = stats.rankdata(a.reshape(P, -1), method="average", axis=1)
    n = r.shape[1]
    return special.ndtri((r - 0.375) / (n - 0.75 + 1)).reshape(a.shape)  # the normal quantile, unchecked


def _rhat(a):
    n = a.shape[2]
    between = n * np.var(a.mean(axis=2), axis=1, ddof=1)
    within = np.var(a, axis=2, ddof=1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess(a):
    """ESS of (P, M, N) chains: Geyer's initial monotone sequence, as ArviZ's ``_ess``."""
    P, M, N = a.shape
    constant = (a.max(axis=(1, 2)) - a.min(axis=(1, 2))) < np.finfo(float).resolution
    m = 1 << int(np.ceil(np.log2(2 * N)))
    c = a - a.mean(axis=2, keepdims=True)
    f = np.fft.rfft(c, n=m, axis=2)
    acov = np.fft.irfft(f * np.conjugate(f), n=m, axis=2)[:, :, :N] / N
    mean_var = acov[:, :, 0].mean(axis=1) * N / (N - 1.0)
    var_plus = mean_var * (N - 1.0) / N
    if M > 1:
        var_plus = var_plus + np.var(a.mean(axis=2), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    n_pairs = N // 2
    pairs = rho[:, : 2 * n_pairs].reshape(P, n_pairs, 2)
    psum = pairs.sum(axis=2)
    # the sequence is cut at the first pair k >= 1 whose sum is <= 0, or where the draws run out
    k_bound = max(-(-(N - 2) // 2) - 1, 0)  # the largest k with 2k - 1 < N - 3
    ks = np.arange(n_pairs)
    stop = (psum <= 0) & (ks >= 1) & (ks <= k_bound)
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), k_bound)
    k_last = np.where(psum[:, 0] > 0, first, 0)
    mono = np.minimum.accumulate(psum, axis=1)
    head = np.where(ks[None, :] < k_last[:, None], mono, 0.0).sum(axis=1)
    even = np.where(k_last == 0, 1.0, pairs[np.arange(P), k_last, 0])
    last_kept = (k_last == 0) | (psum[np.arange(P), k_last] >= 0)
    extra = np.where((even > 0) | last_kept, even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * head + extra, 1.0 / np.log10(M * N))
    ess = M * N / tau
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, ess)
    return np.where(constant, float(M * N), ess)


def rhat_ess(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalized split R-hat, bulk ESS and tail ESS of draws shaped (P, chain, draw)."""
    a = np.asarray(draws, dtype=float)
    s = _split(a)
    flat = a.reshape(len(a), -1)
    z = _z_scale(s)
    folded = _split(np.abs(a - np.median(flat, axis=1)[:, None, None]))
    if a.shape[1] < 2:  # R-hat needs two chains
        rhat = np.full(len(a), np.nan)
    else:
        rhat = np.maximum(_rhat(z), _rhat(_z_scale(folded)))
    bulk = _ess(z)
    tail = np.minimum(*[_ess(_split((a <= np.quantile(flat, q, axis=1)[:, None, None]).astype(float)))
                        for q in (0.05, 0.95)])
    return rhat, bulk, tail


def summary_table(posterior, var_names) -> pd.DataFrame:
    """``ess_bulk``, ``ess_tail`` and ``r_hat`` of every scalar in ``var_names``,
    indexed like ``az.summary`` (``name[coord, coord]``)."""
    labels, blocks = [], []
    for name in var_names:
        da = posterior[name].transpose("chain", "draw", ...)
        C, D = da.shape[:2]
        extra = da.dims[2:]
        vals = da.values.reshape(C, D, -1)
        blocks.append(np.moveaxis(vals, 2, 0))
        if not extra:
            labels.append(name)
        else:
            idx = pd.MultiIndex.from_product([da[d].values for d in extra])
            labels += [f"{name}[{', '.join(str(v) for v in t)}]" for t in idx]
    if not blocks:
        return pd.DataFrame(columns=["ess_bulk", "ess_tail", "r_hat"])
    rhat, bulk, tail = rhat_ess(np.concatenate(blocks, axis=0))
    return pd.DataFrame({"ess_bulk": bulk, "ess_tail": tail, "r_hat": rhat}, index=labels)


def diagnose(idata: az.InferenceData, max_tree_depth: int = SamplerOptions.max_tree_depth, var_names=None,
             target_accept: float | None = None, sampling: dict | None = None) -> Diagnostics:
    """Summarize convergence of a fit and say what to do about any problem.

    ``var_names``: the sites to check (default :func:`checked_names`). ``target_accept``: the NUTS target the
    fit used, if known; advice to raise it is given only below 0.99. ``sampling``: the fit's record of how it
    drew (``SkillsLaw.sampling_``), if known; when ``draws="auto"`` already ran to its cap, the advice for too few
    draws is to raise ``max_draws``, not to use ``draws="auto"``.
    """
    post = idata.posterior
    names = [v for v in (checked_names(post) if var_names is None else var_names) if v in post]
    table = summary_table(post, names)
    rhat = table["r_hat"].to_numpy(dtype=float)
    ess_b = table["ess_bulk"].to_numpy(dtype=float)
    ess_t = table["ess_tail"].to_numpy(dtype=float)
    if "sample_stats" not in idata.groups():
        return Diagnostics(float("nan"), float("nan"), float("nan"), 0, [], 0, int(post.sizes["draw"]), table,
                           ["no sampler statistics: this is a variational approximation (method='svi'), "
                            "not MCMC; its intervals are not checked by any diagnostic, refit with NUTS to trust them"])
    stats = idata.sample_stats
    div = int(stats["diverging"].sum())
    n_draws = int(stats["diverging"].size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bfmi = [float(b) for b in np.atleast_1d(az.bfmi(idata))]
    depth_hits = int((stats["tree_depth"] >= max_tree_depth).sum()) if "tree_depth" in stats else 0

    max_rhat = float(np.nanmax(rhat)) if rhat.size and np.isfinite(rhat).any() else float("nan")
    min_b = float(np.nanmin(ess_b)) if ess_b.size else float("nan")
    min_t = float(np.nanmin(ess_t)) if ess_t.size else float("nan")
    problems = []
    n_chains = int(stats["diverging"].sizes["chain"])
    weak = weak_benchmarks(idata)
    if n_chains < 2:
        problems.append("only one chain: R-hat cannot be computed and convergence cannot be judged; run >= 4 chains "
                        "(chains=4, --chains 4)")
    elif np.isnan(max_rhat):  # every R-hat undefined
        problems.append("R-hat undefined: no chain moved (every draw of every parameter the same): the sampler was "
                        "stuck where it started; run a longer warm-up (warmup=, --warmup)")
    elif not max_rhat <= RHAT_MAX:
        worst = table["r_hat"].astype(float).idxmax()
        problems.append(f"R-hat {max_rhat:.3f} > {RHAT_MAX} (worst: {worst}): chains disagree; "
                        + _rhat_cause(post, worst, weak, _auto_stop_advice(sampling)))
    if not min(min_b, min_t) >= ESS_MIN:
        worst = table[["ess_bulk", "ess_tail"]].astype(float).min(axis=1).idxmin()
        problems.append(
            f"effective sample size {min(min_b, min_t):.0f} < {ESS_MIN} (worst: {worst}): "
            f"intervals are imprecise; draw more: "
            + (_auto_stop_advice(sampling) or 'draws="auto" (--draws auto) samples until R-hat and ESS pass, '
               f"or raise draws (--draws, now {n_draws // max(n_chains, 1)} per chain) or chains (--chains)")
        )
    if div:
        problems.append(f"{div} divergent transition(s): the posterior has regions NUTS cannot explore; "
                        + _divergence_cause(idata, weak, target_accept))
    low = [i for i, b in enumerate(bfmi) if b < BFMI_MIN]
    if low:
        problems.append(
            f"E-BFMI below {BFMI_MIN} in chain(s) {low}: momentum resampling explores energy poorly; "
            "heavy tails or a funnel: a longer warm-up (warmup=, --warmup) may help; else fewer skills "
            "(n_skills=, --skills)"
        )
    notes = []
    if depth_hits:
        notes.append(
            f"{depth_hits} of {n_draws} draws ({depth_hits / max(n_draws, 1):.0%}) hit the maximum tree depth "
            f"{max_tree_depth}: an efficiency note, not a failed check (the draws are valid; each cost "
            f"{2 ** max_tree_depth - 1} gradient evaluations); max_tree_depth={max_tree_depth + 2} "
            f"(--max-tree-depth {max_tree_depth + 2}) lets those trajectories run longer")
    grads = int(stats["n_steps"].sum()) if "n_steps" in stats else 0
    grads += int(stats["warmup_n_steps"].sum()) if "warmup_n_steps" in stats else 0
    return Diagnostics(max_rhat, min_b, min_t, div, bfmi, depth_hits, n_draws, table, problems, notes, grads)


#: Scale parameters whose small values make funnels (site, what it scales).
_SCALES = (("sigma", "the misfit of benchmark"), ("model_sd", "the models' own offsets"),
           ("tau", "the families' efficiencies"), ("family_slope_sd", "the families' slopes"))


def weak_benchmarks(idata, min_scores: int = 8) -> dict:
    """Benchmarks the data say little about, with the reason: few scores, or scores that barely vary
    or sit at the chance floor. A higher target_accept does not help with these; data or a smaller model do."""
    if "constant_data" not in idata.groups() or "scores" not in idata.constant_data:
        return {}
    cd = idata.constant_data
    scores = np.asarray(cd["scores"].values, dtype=float)
    if "obs_weight" in cd and "obs_model_index" in cd:  # only what was fitted counts
        fitted = np.full(scores.shape, False)
        w = np.asarray(cd["obs_weight"].values, dtype=bool)
        fitted[np.asarray(cd["obs_model_index"].values)[w], np.asarray(cd["obs_benchmark_index"].values)[w]] = True
        scores = np.where(fitted, scores, np.nan)
    floors = np.asarray(cd["floor"].values, dtype=float)
    out = {}
    for j, b in enumerate(map(str, cd["benchmark"].values)):
        y = scores[:, j][np.isfinite(scores[:, j])]
        if len(y) < min_scores:
            out[b] = f"only {len(y)} score(s)"
        elif np.std(y) < 0.01:
            out[b] = f"its scores barely vary (sd {np.std(y):.3f})"
        elif np.mean(y <= floors[j] + 0.02) > 0.8:
            out[b] = f"{np.mean(y <= floors[j] + 0.02):.0%} of its scores are at its chance floor"
    return out


def _auto_stop_advice(sampling: dict | None) -> str | None:
    """How to get more draws when ``draws="auto"`` already stopped short of the checks (at its cap or a
    divergence; ``sampling`` is the fit's ``sampling_`` record), else None (the general advice applies)."""
    sampling = sampling or {}
    if sampling.get("draws") != "auto":
        return None
    stopped = str(sampling.get("stopped", ""))
    if stopped.startswith("cap"):
        cap = int(sampling.get("max_draws", sampling.get("draws_per_chain", 0)))
        return (f"draws='auto' ran to its cap of {cap} draws per chain before the checks passed: raise it "
                f"(max_draws={2 * cap}, --max-draws {2 * cap}) or run more chains (--chains)")
    if stopped.startswith("divergences"):
        return (f"draws='auto' stopped at a divergence after {sampling.get('draws_per_chain')} draws per chain, "
                "since more draws cannot remove one: deal with the divergences first (below)")
    return None


def _rhat_cause(post, worst: str, weak: dict, auto_advice: str | None = None) -> str:
    name = worst.split("[")[0]
    bench = worst[len(name) + 1:-1] if name in ("sigma", "intercept") else None  # sites with a benchmark dim
    if bench in weak:
        return (f"benchmark {bench!r} carries it and {weak[bench]}: leave it out or add scores (more draws "
                "or a higher target_accept will not fix that)")
    if name in post and post.sizes.get("chain", 1) > 1:
        v = post[name]
        flat = v.stack(p=[d for d in v.dims if d not in ("chain", "draw")]) if v.ndim > 2 else v
        if flat.ndim == 3:
            sd = flat.std(("chain", "draw"))
            flat = flat.isel(p=int(np.nanargmax(sd.values)))
        means = flat.mean("draw").values
        within = float(flat.std("draw").mean())
        if within > 0 and np.ptp(means) > 3 * within:
            return ("the chains sit in different modes (their means are apart by more than 3 within-chain sd): "
                    "check that each skill's anchor benchmark is distinct and scales with size (anchors=, --anchors), "
                    "or use fewer skills (n_skills=, --skills)")
    return "they mix slowly: run longer: " + (auto_advice or "draws=\"auto\" (--draws auto) samples until the "
                                              "checks pass, or more warm-up and draws (warmup=, draws=; --warmup, --draws)")


def _raise_target_accept(target_accept: float | None) -> str:
    """The advice on the NUTS target: raise it, unless the fit already used 0.99 or more."""
    if target_accept is not None and target_accept >= 0.99:
        return f"target_accept is already {target_accept:g}, so a higher one will not help"
    return "raise target_accept to 0.95-0.99 (target_accept=0.95, --target-accept 0.95)"


def _divergence_cause(idata, weak: dict, target_accept: float | None = None) -> str:
    """Which scale parameter the divergent draws sit low on (a funnel), or which benchmark is to blame."""
    post, div = idata.posterior, np.asarray(idata.sample_stats["diverging"].values, dtype=bool)
    best, best_gap = None, 1.0
    for site, what in _SCALES:
        if site not in post or div.all():
            continue
        v = np.log(np.maximum(np.asarray(post[site].values, dtype=float), 1e-12))
        v = v.reshape(v.shape[0], v.shape[1], -1)
        for k in range(v.shape[2]):
            x = v[:, :, k]
            gap = (x[~div].mean() - x[div].mean()) / (x[~div].std() + 1e-12)
            if gap > best_gap:
                label = site
                if site == "sigma" and "benchmark" in post[site].dims:
                    label = f"sigma[{post[site]['benchmark'].values[k]}]"
                    what = f"{what} {post[site]['benchmark'].values[k]}"
                best, best_gap = (label, what), gap
    if best is not None:
        label, what = best
        bench = label[6:-1] if label.startswith("sigma[") else None
        if bench in weak:
            return (f"they sit at small {label} ({what}), and benchmark {bench!r}: {weak[bench]}; leave it out or "
                    "add scores (a higher target_accept will not fix that)")
        return (f"they sit at small {label} ({what}): a funnel, where the data say little about that scale; "
                f"{_raise_target_accept(target_accept)}, and with few models per family or benchmark, use fewer skills "
                "(n_skills=, --skills)")
    if weak:
        b = next(iter(weak))
        return f"benchmark {b!r}: {weak[b]}; leave it out or add scores"
    return f"{_raise_target_accept(target_accept)}; or use fewer skills (n_skills=, --skills)"
