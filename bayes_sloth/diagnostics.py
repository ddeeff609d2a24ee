"""Convergence diagnostics of a fit, with a verdict and plain-language hints.

Checks (thresholds of Vehtari et al. 2021 and the Stan manual):

- R-hat (rank-normalized, split) > 1.01 on any parameter;
- bulk or tail ESS < 400;
- any divergent transition;
- E-BFMI < 0.3 in any chain;
- trajectories that hit the maximum tree depth.

Fixed loadings (anchors, structural zeros) are constants and are skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3

#: Parameters whose convergence matters: every loading, skill and hyperparameter.
CHECKED = ("slopes", "tau", "alpha", "instruct_shift", "family_slope_sd", "family_slope", "loadings_free", "intercept", "sigma", "skills")


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail,
            "divergences": self.divergences,
            "min_bfmi": float(min(self.bfmi)) if self.bfmi else float("nan"),
            "max_tree_depth_hits": self.max_tree_depth_hits,
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        head = "converged: no problems found" if self.ok else f"NOT converged: {len(self.problems)} problem(s)"
        lines = [
            head,
            f"  max R-hat {self.max_rhat:.4f} (want <= {RHAT_MAX})",
            f"  min bulk ESS {self.min_ess_bulk:.0f}, min tail ESS {self.min_ess_tail:.0f} (want >= {ESS_MIN})",
            f"  divergences {self.divergences} of {self.n_draws} draws",
            f"  E-BFMI per chain {', '.join(f'{b:.2f}' for b in self.bfmi)} (want >= {BFMI_MIN})",
            f"  draws at max tree depth {self.max_tree_depth_hits}",
        ]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter
        return "<pre>" + str(self) + "</pre>"


def diagnose(idata: az.InferenceData, max_tree_depth: int = 10, var_names=CHECKED) -> Diagnostics:
    """Summarize convergence of a fit and say what to do about any problem."""
    post = idata.posterior
    names = [v for v in var_names if v in post]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
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

    max_rhat = float(np.nanmax(rhat)) if rhat.size else float("nan")
    min_b = float(np.nanmin(ess_b)) if ess_b.size else float("nan")
    min_t = float(np.nanmin(ess_t)) if ess_t.size else float("nan")
    problems = []
    n_chains = int(stats["diverging"].sizes["chain"])
    if n_chains < 2:
        problems.append("only one chain: R-hat cannot be computed and convergence cannot be judged; run >= 4 chains")
    elif not max_rhat <= RHAT_MAX:
        worst = table["r_hat"].astype(float).idxmax()
        problems.append(
            f"R-hat {max_rhat:.3f} > {RHAT_MAX} (worst: {worst}): chains disagree; run longer "
            "(more warmup and draws), or check that anchors give each skill a distinct benchmark"
        )
    if not min(min_b, min_t) >= ESS_MIN:
        worst = table[["ess_bulk", "ess_tail"]].astype(float).min(axis=1).idxmin()
        problems.append(
            f"effective sample size {min(min_b, min_t):.0f} < {ESS_MIN} (worst: {worst}): "
            "intervals are imprecise; draw more samples or chains"
        )
    if div:
        problems.append(
            f"{div} divergent transition(s): the posterior has regions NUTS cannot explore; "
            "raise target_accept (e.g. 0.95-0.99) or use fewer skills"
        )
    low = [i for i, b in enumerate(bfmi) if b < BFMI_MIN]
    if low:
        problems.append(
            f"E-BFMI below {BFMI_MIN} in chain(s) {low}: momentum resampling explores energy poorly; "
            "heavy tails or a funnel, consider fewer skills or stronger priors"
        )
    if depth_hits:
        problems.append(
            f"{depth_hits} draw(s) hit the maximum tree depth {max_tree_depth}: the sampler is "
            "inefficient, not necessarily wrong; raise max_tree_depth"
        )
    return Diagnostics(max_rhat, min_b, min_t, div, bfmi, depth_hits, n_draws, table, problems)
