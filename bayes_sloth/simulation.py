"""Synthetic leaderboards with known true parameters.

They are drawn from the skills law itself (:mod:`bayes_sloth.model`), with
realistic covariates: families of 1 to 8 models from 0.1B to 70B parameters,
a family-level token budget, a share of instruction-tuned models, and missing
scores at random. They are the backbone of parameter-recovery and calibration
tests. The anchors of the truth are the first K benchmarks, so a fit with
``anchors=truth["anchors"]`` is on the same scale and rotation as the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .data import Leaderboard
from .model import Standardizer


def simulate_leaderboard(
    n_families: int = 40,
    n_benchmarks: int = 12,
    n_skills: int = 2,
    *,
    models_per_family: int | tuple[int, int] = (1, 8),
    missing: float = 0.15,
    sigma: tuple[float, float] = (0.01, 0.04),
    floors: np.ndarray | None = None,
    family_slope_sd: float = 0.0,
    model_effect_sd: float = 0.0,
    seed: int = 0,
) -> tuple[Leaderboard, dict]:
    """Simulate a leaderboard from the skills law with known parameters.

    Returns ``(leaderboard, truth)``; ``truth`` holds ``slopes`` (3, K),
    ``tau`` (K,), ``alpha`` (F, K), ``loadings`` (J, K), ``intercept`` (J,),
    ``sigma`` (J,), ``skills`` (N, K), ``mu`` (N, J) as numpy arrays, plus
    ``anchors``, ``families``, ``benchmarks`` and ``models`` names.

    ``family_slope_sd > 0`` gives each family its own slope in log S
    (``truth["family_slope"]``, (F, K), summing to zero), the structure of
    ``SkillsLaw(family_slopes=True)``; its random numbers come from a separate
    stream, so everything else is the same as with 0.

    ``model_effect_sd > 0`` adds to each model's link-scale score on every
    benchmark its own offset ``truth["model_effect"]`` (N,) ~ Normal(0, model_effect_sd^2), the
    structure of ``SkillsLaw(model_effects=True)``; also from a separate
    stream.
    """
    if isinstance(models_per_family, (int, np.integer)):
        models_per_family = (int(models_per_family), int(models_per_family))
    try:
        lo, hi = (int(v) for v in models_per_family)
    except (TypeError, ValueError):
        raise InputError(f"models_per_family must be an int or a (min, max) pair of ints, got {models_per_family!r}") from None
    if not 1 <= lo <= hi:
        raise InputError(f"models_per_family must satisfy 1 <= min <= max, got {models_per_family!r}")
    models_per_family = (lo, hi)
    rng = np.random.default_rng(seed)
    K, J, F = n_skills, n_benchmarks, n_families
    benchmarks = [f"bench_{j:02d}" for j in range(J)]
    families = [f"family_{f:02d}" for f in range(F)]
    if floors is None:
        floors = rng.choice([0.0, 0.1, 0.25, 0.5], size=J, p=[0.4, 0.1, 0.35, 0.15])
    floors = np.asarray(floors, dtype=float)

    rows = []
    for f, fam in enumerate(families):
        n = int(rng.integers(models_per_family[0], models_per_family[1] + 1))
        sizes = np.sort(np.exp(rng.uniform(np.log(0.1), np.log(70.0), size=n)))
        budget = np.exp(rng.uniform(np.log(0.3), np.log(15.0)))
        instruct_family = rng.random() < 0.25
        for i, s in enumerate(sizes):
            tokens = budget * np.exp(rng.normal(0.0, 0.15))
            rows.append((f"{fam}-{s:.2f}b-{i}", fam, float(s), float(tokens), bool(instruct_family)))
    cov = pd.DataFrame(rows, columns=["model", "family", "params", "tokens", "instruct"]).set_index("model")

    std = Standardizer.fit(cov["params"], cov["tokens"])
    x = std.transform(cov["params"], cov["tokens"])
    slopes = rng.normal(0.0, 1.0, size=(3, K))
    slopes[0] = np.abs(slopes[0]) + 0.5  # skills grow with size
    tau = rng.uniform(0.3, 0.8, size=K)
    z = rng.normal(size=(F, K))
    alpha = tau * (z - z.mean(axis=0))  # the model's convention: efficiencies sum to zero
    loadings = rng.uniform(0.3, 1.5, size=(J, K))
    for k in range(K):
        loadings[k, k] = 1.0
        loadings[k, k + 1 :] = 0.0
    intercept = rng.normal(0.0, 1.0, size=J)
    sig = rng.uniform(sigma[0], sigma[1], size=J)

    fam_idx = pd.Index(families).get_indexer(cov["family"])
    theta = alpha[fam_idx] + x @ slopes
    family_slope = np.zeros((F, K))
    if family_slope_sd > 0:
        u = np.random.default_rng([seed, 1]).normal(size=(F, K))
        family_slope = family_slope_sd * (u - u.mean(axis=0))
        theta = theta + family_slope[fam_idx] * x[:, :1]
    model_effect = np.zeros(len(cov))
    if model_effect_sd > 0:
        model_effect = model_effect_sd * np.random.default_rng([seed, 2]).normal(size=len(cov))
    eta = theta @ loadings.T + intercept + model_effect[:, None]
    mu = floors + (1 - floors) / (1 + np.exp(-eta))
    y = _truncnorm(rng, mu, np.broadcast_to(sig, mu.shape))
    y = np.round(y, 4)
    y[rng.random(y.shape) < missing] = np.nan
    # every model keeps at least one score and every benchmark at least a few
    for i in np.flatnonzero(np.isnan(y).all(axis=1)):
        j = rng.integers(J)
        y[i, j] = np.round(mu[i, j], 4)
    scores = pd.DataFrame(y, index=cov.index, columns=benchmarks)
    lb = Leaderboard(cov, scores, pd.Series(floors, index=pd.Index(benchmarks, name="benchmark"), name="floor"))
    truth = {
        "slopes": slopes, "tau": tau, "alpha": alpha, "loadings": loadings, "intercept": intercept,
        "sigma": sig, "family_slope": family_slope, "model_effect": model_effect, "skills": theta, "mu": mu, "floors": floors,
        "anchors": benchmarks[:K], "families": families, "benchmarks": benchmarks,
        "models": list(cov.index), "seed": seed,
    }
    return lb, truth


def _truncnorm(rng, mu, sd):
    """Normal(mu, sd) draws truncated to [0, 1], by inversion."""
    from scipy.stats import truncnorm

    a, b = (0 - mu) / sd, (1 - mu) / sd
    return truncnorm.rvs(a, b, loc=mu, scale=sd, random_state=rng)


def write_synthetic(folder: str | Path, seed: int = 0, **kwargs) -> Path:
    """Write ``synthetic_leaderboard.csv`` and ``synthetic_truth.json`` to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lb, truth = simulate_leaderboard(seed=seed, **kwargs)
    lb.to_frame().reset_index().to_csv(folder / "synthetic_leaderboard.csv", index=False, float_format="%.6g")
    serial = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in truth.items()}
    serial["floors_by_benchmark"] = dict(zip(truth["benchmarks"], truth["floors"].tolist()))
    (folder / "synthetic_truth.json").write_text(json.dumps(serial, indent=1))
    return folder / "synthetic_leaderboard.csv"


if __name__ == "__main__":  # python -m bayes_sloth.synthetic data/
    import sys

    print(write_synthetic(sys.argv[1] if len(sys.argv) > 1 else "data"))
