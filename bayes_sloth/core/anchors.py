"""Anchor benchmarks: which benchmark fixes each skill's scale and sign (unit loading, zero on later skills)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .rotation import varimax


def log_compute(covariates: pd.DataFrame) -> np.ndarray:
    """log(params x tokens) per model: the scale :func:`default_anchors` checks benchmarks against."""
    return np.log(covariates["params"].to_numpy(dtype=float) * covariates["tokens"].to_numpy(dtype=float))


def default_anchors(scores: pd.DataFrame, floors: pd.Series, n_skills: int, log_compute=None,
                    min_scaling: float = 0.6) -> tuple[int, ...]:
    """Anchor benchmarks: a general benchmark for the first skill, then the
    clearest marker of each other varimax-rotated factor, among the benchmarks
    that scale.

    Scores are put on the link scale (``logit((y - c) / (1 - c))``, clipped to
    (0.01, 0.99) before the logit), their pairwise correlation matrix is taken
    over the models that have both scores, its K leading eigenvectors scaled by
    the root eigenvalues give principal-factor loadings, and varimax rotates
    them towards simple structure. Factors are ordered by explained variance.

    The first skill's anchor is the benchmark with the largest loading on the
    first principal factor among those scored for at least 90 % as many models
    as the most-scored one: the first anchor carries only the first skill, so
    it sets that skill's scale for every model, and a general, widely scored
    benchmark pins it best. (On the Sloth table at K=3 the purest marker of the
    first varimax factor was HellaSwag, whose link-scale scores are the most
    compressed of the v1 set, sd 1.02 against MMLU's 1.96; with MMLU as first
    anchor the full fit's smallest bulk ESS went from 314 to 817 at seed 0, and
    was 432 at seed 1.) It stands in for the first (largest) factor's marker;
    each other factor, in order, takes the not-yet-chosen benchmark with the
    largest loading on it relative to its largest loading elsewhere (the
    purest strong marker).

    With ``log_compute`` (log(params x tokens) per model, aligned with
    ``scores``' rows) only benchmarks whose link-scale scores correlate with it
    at ``min_scaling`` or more can be anchors (the K best if fewer pass). An
    anchor fixes its skill's scale and the skill is driven by size and
    tokens: a benchmark that barely scales (TruthfulQA and MUSR on the Sloth
    table, correlation 0.44 and 0.43) makes a factor of its own, the purest
    marker, but anchors a skill the covariates hardly move, whose family
    spread and loadings the sampler then explores badly.
    """
    J = scores.shape[1]
    if not 1 <= n_skills < J:
        raise InputError(f"n_skills must be between 1 and {J - 1} (number of benchmarks - 1), got {n_skills}")
    c = floors.reindex(scores.columns).to_numpy()
    p = np.clip((scores.to_numpy() - c) / (1 - c), 0.01, 0.99)
    z = pd.DataFrame(np.log(p / (1 - p)), columns=scores.columns, index=scores.index)
    eligible = np.ones(J, dtype=bool)
    if log_compute is not None:
        r = z.corrwith(pd.Series(np.asarray(log_compute, dtype=float), index=z.index)).to_numpy()
        r = np.where(np.isfinite(r), r, -np.inf)
        eligible = r >= min_scaling
        if eligible.sum() < n_skills:
            eligible = np.zeros(J, dtype=bool)
            eligible[np.argsort(-r)[:n_skills]] = True
    R = z.corr(min_periods=3).to_numpy()
    R = np.where(np.isfinite(R), R, 0.0)
    np.fill_diagonal(R, 1.0)
    w, v = np.linalg.eigh(R)
    order = np.argsort(w)[::-1][:n_skills]
    L = v[:, order] * np.sqrt(np.maximum(w[order], 0.0))
    if n_skills > 1:
        L = varimax(L)[0]  # the package's one varimax (bayes_sloth.core.rotation)
    L = L * np.sign(L.sum(axis=0) + 1e-12)  # factors oriented so most benchmarks load positively
    L = L[:, np.argsort(-(L**2).sum(axis=0))]
    # the first skill: the benchmark that loads most on the general (first principal) factor,
    # among those scored for (nearly) every model
    pc1 = v[:, np.argmax(w)]
    general = pc1 * np.sign(pc1.sum() + 1e-12)
    n_obs = scores.notna().sum().to_numpy()
    wide = eligible & (n_obs >= 0.9 * n_obs[eligible].max())
    first = int(np.argmax(np.where(wide, general, -np.inf)))
    chosen: list[int] = [first]
    for k in range(1, n_skills):
        purity = L[:, k] - np.abs(np.delete(L, k, axis=1)).max(axis=1)
        purity[~eligible] = -np.inf
        purity[chosen] = -np.inf
        chosen.append(int(np.argmax(purity)))
    return tuple(chosen)
