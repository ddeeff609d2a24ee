"""Simulated leaderboards with known true parameters, drawn through the model itself.

The scores are drawn by the NumPyro model :func:`bayes_sloth.core.model.skills_law`
(with :mod:`numpyro.handlers`): the simulator builds a design (models,
families, covariates, chance floors), chooses the true parameters, and lets
the model compute the skills, the law's mean of every (model, benchmark) pair
and draw a score for it. The law is written once, in
:mod:`bayes_sloth.core.model`; whatever the model can fit, this module can
simulate (learned link, per-model offsets, instruct shift, family slopes,
logistic noise, real loadings), and a change to the model changes the
simulations with it.

Two ways to set the truth:

- the default, a *realistic* truth (skills grow with size, moderate family
  spread, loadings in (0.3, 1.5), small misfit; see
  :func:`simulate_leaderboard` for every distribution), given to the model by
  conditioning (``numpyro.handlers.condition``) on every parameter site;
- ``prior=True``: every parameter from the model's own prior (what
  simulation-based calibration needs).

Either way ``truth=`` fixes individual sites. Simulations are reproducible
from the seed. The anchors of the truth are the first K benchmarks, so a fit
with ``anchors=truth["anchors"]`` is on the same scale and rotation as the
truth. They are the backbone of the parameter-recovery, identification,
robustness and calibration tests.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro import handlers

from ..core.data import Leaderboard
from ..core.errors import InputError
from ..core.inference import model_arrays, real_dtype
from ..core.io import atomic_write
from ..core.model import LINK_KNOTS, ModelSpec, Standardizer, skills_law
from ..core.programs import bounded_jit

#: Options of the law, with the package's defaults (those of ``SkillsLaw``).
LAW_DEFAULTS = dict(link="monotone", loadings="positive", noise="normal", instruct_shift=True,
                    instruct_slope=True, family_slopes=True, model_effects=True)
#: The law :func:`simulate_leaderboard` draws from by default: the default law without the family and
#: instruct slopes (at zero). The fitted default contains it, and the tests' synthetic leaderboards (and the
#: shipped ``data/synthetic_leaderboard.csv``) stay the ones their tolerances were set on; a test of the slopes
#: turns them on.
SIMULATED_LAW = dict(LAW_DEFAULTS, instruct_slope=False, family_slopes=False)
#: The lean law (sigmoid link, no offsets, no instruct shift or slopes), for callers that want it by name.
LEAN_LAW = dict(link="sigmoid", model_effects=False, instruct_shift=False, instruct_slope=False,
                family_slopes=False)

#: Realistic truth: default size of the optional effects when they are on and no size is given.
DEFAULT_MODEL_EFFECT_SD = 0.3
DEFAULT_FAMILY_SLOPE_SD = 0.3
DEFAULT_SIGMA = (0.01, 0.04)
#: Realistic truth: instruction tuning raises every skill by Normal(mean, sd) (per skill).
INSTRUCT_SHIFT_MEAN, INSTRUCT_SHIFT_SD = 0.3, 0.15
#: Realistic truth with ``instruct_slope``: what tuning adds grows by Normal(mean, sd) per unit of standardized log S.
INSTRUCT_SLOPE_MEAN, INSTRUCT_SLOPE_SD = 0.2, 0.1
#: Realistic truth of the per-benchmark links (``link="monotone-pooled"``): spread of their log weights.
REALISTIC_LINK_SD = 0.5
#: Share of families whose models are all instruction-tuned.
INSTRUCT_SHARE = 0.25


def simulate_leaderboard(
    n_families: int = 40,
    n_benchmarks: int = 12,
    n_skills: int = 2,
    *,
    models_per_family: int | tuple[int, int] = (1, 8),
    missing: float = 0.15,
    sigma: tuple[float, float] | None = None,
    floors=None,
    family_slope_sd: float | None = None,
    model_effect_sd: float | None = None,
    link: str = SIMULATED_LAW["link"],
    model_effects: bool = SIMULATED_LAW["model_effects"],
    instruct_shift: bool = SIMULATED_LAW["instruct_shift"],
    instruct_slope: bool = SIMULATED_LAW["instruct_slope"],
    family_slopes: bool = SIMULATED_LAW["family_slopes"],
    noise: str = SIMULATED_LAW["noise"],
    loadings: str = SIMULATED_LAW["loadings"],
    prior: bool = False,
    truth: dict | None = None,
    seed: int = 0,
) -> tuple[Leaderboard, dict]:
    """Simulate a leaderboard through the skills law, with known parameters.

    Design (from ``seed``): ``n_families`` families of ``models_per_family``
    models (an int, or a (min, max) range drawn uniformly per family), sizes
    log-uniform on 0.1B-70B parameters, a family token budget log-uniform on
    0.3T-15T with 15 % jitter per model, whole families instruction-tuned
    with probability 0.25; ``n_benchmarks`` benchmarks ``bench_00``, ... with
    chance floors ``floors`` (default: drawn from {0, 0.1, 0.25, 0.5});
    covariates standardized over all models, as a fit of the whole table does.
    The law is ``ModelSpec(n_skills, n_benchmarks, n_families,
    anchors=(0..K-1), link, loadings, noise, instruct_shift, instruct_slope,
    family_slopes, model_effects)``: the keyword options are :class:`~bayes_sloth.SkillsLaw`'s
    and default to its defaults (learned monotone link, per-model offsets,
    instruct shift), except the family and instruct slopes, off unless asked
    for (:data:`SIMULATED_LAW`); ``**LEAN_LAW`` gives the sigmoid law without
    any of them.

    Truth. By default a realistic one, drawn with NumPy from ``seed`` and
    passed to the model by conditioning on every parameter site:

    ========================  ====================================================
    ``slopes`` (3, K)         Normal(0, 1); the log-size row is ``|.| + 0.5``
                              (skills grow with size)
    ``tau`` (K,)              Uniform(0.3, 0.8)
    ``family_z`` (F, K)       Normal(0, 1) (the prior's law)
    ``loadings_free``         Uniform(0.3, 1.5) (anchors: 1 and 0 by structure)
    ``intercept`` (J,)        Normal(0, 1)
    ``sigma`` (J,)            Uniform(``sigma``), default (0.01, 0.04)
    ``model_sd`` ()           ``model_effect_sd``, default 0.3
    ``model_z`` (N,)          Normal(0, 1) (the prior's law)
    ``instruct_shift`` (K,)   Normal(0.3, 0.15)
    ``instruct_slope`` (K,)   Normal(0.2, 0.1)
    ``family_slope_sd`` (K,)  ``family_slope_sd``, default 0.3
    ``family_slope_z``        Normal(0, 1) (the prior's law)
    ``link_weights`` (M,)     Dirichlet(1, ..., 1) (the prior's law)
    ``link_sd`` ()            ``REALISTIC_LINK_SD`` (``link="monotone-pooled"``)
    ``link_z`` (J, M)         Normal(0, 1) (the prior's law)
    ========================  ====================================================

    With ``prior=True`` every parameter is drawn by the model from its own
    prior instead (``sigma``, ``family_slope_sd`` and ``model_effect_sd`` must
    then be left unset). ``truth`` maps parameter site names to values that
    override either (e.g. ``{"tau": [0.5, 0.5], "model_sd": 0.1}``); unknown
    names, wrong shapes and values outside the support of a site's prior
    are refused (the sites, shapes and supports are read off the model).

    Scores: the model draws one for every (model, benchmark) pair (its ``y``
    site, noise truncated to [0, 1]); each pair is then missing with
    probability ``missing``, except the first anchor (skill 1's), which
    stays observed on every model, so every model keeps a score; a benchmark
    left with no score gets one back.

    Returns ``(leaderboard, truth)``. ``truth`` holds, as numpy arrays, the
    value of every sample and deterministic site of the model (``slopes``,
    ``tau``, ``family_z``, ``alpha``, ``loadings_free``, ``loadings``,
    ``intercept``, ``sigma``, ``skills`` (N, K) and, as the law has them,
    ``model_sd``, ``model_z``, ``model_effect``, ``instruct_shift``,
    ``instruct_slope``, ``link_weights``, ``link_sd``, ``link_z``,
    ``benchmark_link_weights``, ``family_slope_sd``, ``family_slope_z``,
    ``family_slope``); ``model_effect`` (N,), ``instruct_shift`` and
    ``instruct_slope`` (K,) and ``family_slope`` (F, K) are zeros when the law lacks them (the law
    without an effect is the law with it at zero). Also ``mu`` (N, J), the
    law's mean of every pair (the location the model drew the score around),
    ``y`` (N, J) the drawn scores before masking, ``x`` (N, 3) the
    standardized covariates, and ``anchors``, ``families``, ``benchmarks``,
    ``models`` (names), ``floors``, ``seed``, ``prior`` and ``law`` (the law's
    options).
    """
    F, J, K = _positive_int(n_families, "n_families"), _positive_int(n_benchmarks, "n_benchmarks"), \
        _positive_int(n_skills, "n_skills")
    if K > J:
        raise InputError(f"n_skills must be at most n_benchmarks ({J}): each skill needs an anchor benchmark, "
                         f"got {n_skills}")
    lo, hi = _models_per_family(models_per_family)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0 (simulations are reproducible from it), got {seed!r}")
    if not (isinstance(missing, (int, float, np.floating)) and 0.0 <= float(missing) < 1.0):
        raise InputError(f"missing must be a share in [0, 1), got {missing!r}")
    law = dict(link=link, loadings=loadings, noise=noise, instruct_shift=instruct_shift,
               instruct_slope=instruct_slope, family_slopes=family_slopes, model_effects=model_effects)
    for name in ("instruct_shift", "instruct_slope", "family_slopes", "model_effects", "prior"):
        value = prior if name == "prior" else law[name]
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {value!r}")
    law = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else v) for k, v in law.items()}
    spec = ModelSpec(n_skills=K, n_benchmarks=J, n_families=F, anchors=tuple(range(K)), **law)  # names a bad option
    if prior:
        given = [n for n, v in (("sigma", sigma), ("family_slope_sd", family_slope_sd),
                                ("model_effect_sd", model_effect_sd)) if v is not None]
        if given:
            raise InputError(f"with prior=True every parameter comes from the model's prior: {', '.join(given)} "
                             "would be ignored; fix a site with truth={...} instead")
    sig_range = _sigma_range(DEFAULT_SIGMA if sigma is None else sigma)
    family_slope_sd = _effect_sd(family_slope_sd, "family_slope_sd", "family_slopes", spec.family_slopes,
                                 DEFAULT_FAMILY_SLOPE_SD)
    model_effect_sd = _effect_sd(model_effect_sd, "model_effect_sd", "model_effects", spec.model_effects,
                                 DEFAULT_MODEL_EFFECT_SD)

    rng = np.random.default_rng(seed)
    benchmarks = [f"bench_{j:02d}" for j in range(J)]
    families = [f"family_{f:02d}" for f in range(F)]
    floors = _floors(rng.choice([0.0, 0.1, 0.25, 0.5], size=J, p=[0.4, 0.1, 0.35, 0.15]) if floors is None
                     else floors, J)
    cov = _design(rng, families, lo, hi)
    N = len(cov)
    std = Standardizer.fit(cov["params"], cov["tokens"])
    x = std.transform(cov["params"], cov["tokens"])
    fam_idx = pd.Index(families).get_indexer(cov["family"])
    instruct = cov["instruct"].to_numpy(dtype=float)

    every_pair = np.divmod(np.arange(N * J), J)  # row-major: pair n is (n // J, n % J)
    args = model_arrays(x, fam_idx, instruct, floors, every_pair[0], every_pair[1], np.zeros(N * J))
    args = {k: v for k, v in args.items() if k in ("x", "family", "instruct", "floor", "obs_model", "obs_bench")}
    fixed = {} if prior else _realistic_truth(rng, spec, N, sig_range, family_slope_sd, model_effect_sd)
    if truth is not None:
        fixed.update(_overrides(truth, _parameter_sites(spec, args)))
    real = real_dtype()
    cond = {k: jnp.asarray(v, dtype=real) for k, v in fixed.items()}
    sites = _draw_through_model(spec, jax.random.PRNGKey(seed), cond, args)

    out = {k: np.asarray(v, dtype=float) for k, v in sites.items()}
    y = out.pop("y").reshape(N, J)
    mu = out.pop("mu").reshape(N, J)
    observed = rng.random((N, J)) >= missing
    observed[:, 0] = True  # the first anchor: every model keeps a score on it
    for j in np.flatnonzero(~observed.any(axis=0)):
        observed[rng.integers(N), j] = True
    scores = pd.DataFrame(np.where(observed, y, np.nan), index=cov.index, columns=benchmarks)
    lb = Leaderboard(cov, scores, pd.Series(floors, index=pd.Index(benchmarks, name="benchmark"), name="floor"))

    out.setdefault("model_effect", np.zeros(N))
    out.setdefault("instruct_shift", np.zeros(K))
    out.setdefault("instruct_slope", np.zeros(K))
    out.setdefault("family_slope", np.zeros((F, K)))
    out.update(mu=mu, y=y, x=np.asarray(x, dtype=float), floors=floors, anchors=benchmarks[:K], families=families,
               benchmarks=benchmarks, models=list(cov.index), seed=seed, prior=bool(prior), law=law)
    return lb, out


# ------------------------------------------------------------------ checks
def _positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _models_per_family(value) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"models_per_family must be an int or a (min, max) pair of ints, got {value!r}") from None
    if not 1 <= lo <= hi:
        raise InputError(f"models_per_family must satisfy 1 <= min <= max, got {value!r}")
    return lo, hi


def _sigma_range(value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"sigma must be a (min, max) pair of noise scales, got {value!r}") from None
    if not 0.0 < lo <= hi:
        raise InputError(f"sigma must satisfy 0 < min <= max, got {value!r}")
    return lo, hi


def _effect_sd(value, name: str, option: str, on: bool, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if value > 0 and not on:
        raise InputError(f"{name}={value!r} needs {option}=True: the law has no such effect without it")
    return float(value)


def _floors(value, J: int) -> np.ndarray:
    c = np.asarray(value, dtype=float)
    if c.shape != (J,):
        raise InputError(f"floors must hold one chance floor per benchmark ({J}), got shape {c.shape}")
    if not np.all((c >= 0.0) & (c < 1.0)):
        raise InputError(f"floors must lie in [0, 1), got {c.tolist()}")
    return c


# ------------------------------------------------------------------ design
def _design(rng, families, lo: int, hi: int) -> pd.DataFrame:
    rows = []
    for fam in families:
        n = int(rng.integers(lo, hi + 1))
        sizes = np.sort(np.exp(rng.uniform(np.log(0.1), np.log(70.0), size=n)))
        budget = np.exp(rng.uniform(np.log(0.3), np.log(15.0)))
        instruct_family = bool(rng.random() < INSTRUCT_SHARE)
        for i, s in enumerate(sizes):
            tokens = budget * np.exp(rng.normal(0.0, 0.15))
            rows.append((f"{fam}-{s:.2f}b-{i}", fam, float(s), float(tokens), instruct_family))
    return pd.DataFrame(rows, columns=["model", "family", "params", "tokens", "instruct"]).set_index("model")


# ------------------------------------------------------------------- truth
def _parameter_sites(spec: ModelSpec, args: dict) -> dict:
    """The law's parameter sites, read off the model itself: name -> (shape, support).

    An abstract trace (``jax.eval_shape``: nothing is computed or compiled)
    of ``skills_law`` for this spec and design; every sample site but the
    scores ``y``.
    """
    supports = {}

    def trace(key):
        tr = handlers.trace(handlers.seed(partial(skills_law, spec), rng_seed=key)).get_trace(**args)
        sites = {k: s for k, s in tr.items() if s["type"] == "sample" and k != "y"}
        supports.update({k: s["fn"].support for k, s in sites.items()})
        return {k: s["value"] for k, s in sites.items()}

    shapes = jax.eval_shape(trace, jax.random.PRNGKey(0))
    return {k: (tuple(v.shape), supports[k]) for k, v in shapes.items()}


def _realistic_truth(rng, spec: ModelSpec, n_models: int, sigma, family_slope_sd: float,
                     model_effect_sd: float) -> dict:
    K, J, F = spec.n_skills, spec.n_benchmarks, spec.n_families
    slopes = rng.normal(0.0, 1.0, size=(3, K))
    slopes[0] = np.abs(slopes[0]) + 0.5  # skills grow with size
    t = {
        "slopes": slopes,
        "tau": rng.uniform(0.3, 0.8, size=K),
        "family_z": rng.normal(size=(F, K)),
        "loadings_free": rng.uniform(0.3, 1.5, size=len(spec.free_loading_index)),
        "intercept": rng.normal(0.0, 1.0, size=J),
        "sigma": rng.uniform(sigma[0], sigma[1], size=J),
    }
    if spec.family_slopes:
        t["family_slope_sd"] = np.full(K, family_slope_sd)
        t["family_slope_z"] = rng.normal(size=(F, K))
    if spec.model_effects:
        t["model_sd"] = np.asarray(model_effect_sd)
        t["model_z"] = rng.normal(size=n_models)
    if spec.instruct_shift:
        t["instruct_shift"] = rng.normal(INSTRUCT_SHIFT_MEAN, INSTRUCT_SHIFT_SD, size=K)
    if spec.instruct_slope:
        t["instruct_slope"] = rng.normal(INSTRUCT_SLOPE_MEAN, INSTRUCT_SLOPE_SD, size=K)
    if spec.link in ("monotone", "monotone-pooled"):
        t["link_weights"] = rng.dirichlet(np.ones(len(LINK_KNOTS)))
    if spec.link == "monotone-pooled":
        t["link_sd"] = np.asarray(REALISTIC_LINK_SD)
        t["link_z"] = rng.normal(size=(J, len(LINK_KNOTS)))
    return t


def _overrides(truth, sites: dict) -> dict:
    """``truth``'s values, checked against the law's parameter sites (names, shapes, supports)."""
    if not isinstance(truth, dict):
        raise InputError(f"truth must be a dict of parameter site values, got {type(truth).__name__}")
    out = {}
    for name, value in truth.items():
        if name not in sites:
            raise InputError(f"truth names {name!r}, not a parameter site of this law; its sites are "
                             f"{', '.join(sorted(sites))}")
        shape, support = sites[name]
        try:
            v = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"truth[{name!r}] must be numbers, got {value!r}") from None
        if v.shape != shape:
            raise InputError(f"truth[{name!r}] must have shape {shape}, got {v.shape}")
        if not (np.all(np.isfinite(v)) and bool(np.all(support.check(jnp.asarray(v))))):
            raise InputError(f"truth[{name!r}] = {v.tolist()} is outside the support of the site's prior")
        out[name] = v
    return out


@bounded_jit(static_argnums=0)
def _draw_through_model(spec: ModelSpec, key, cond: dict, args: dict) -> dict:
    """Run ``skills_law`` forward, conditioned on ``cond``: every other site is
    drawn from the model (the parameters from their priors, ``y`` around the
    law). Returns the value of every sample and deterministic site, and ``mu``,
    the location of the scores' distribution (the law's mean of each pair)."""
    model = handlers.condition(partial(skills_law, spec), data=cond)
    tr = handlers.trace(handlers.seed(model, rng_seed=key)).get_trace(**args)
    out = {k: s["value"] for k, s in tr.items() if s["type"] in ("sample", "deterministic")}
    out["mu"] = tr["y"]["fn"].loc
    return out


# ------------------------------------------------------------------- files
def _rounded(v, digits: int = 7):
    """JSON-ready value: arrays as nested lists, floats to ``digits`` significant digits (float32 precision)."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return [_rounded(u, digits) for u in v] if v.ndim else float(f"{float(v):.{digits}g}")
        return v.tolist()
    if isinstance(v, (float, np.floating)):
        return float(f"{float(v):.{digits}g}")
    if isinstance(v, dict):
        return {k: _rounded(u, digits) for k, u in v.items()}
    return v


def write_synthetic(folder: str | Path, seed: int = 0, **kwargs) -> Path:
    """Simulate with :func:`simulate_leaderboard` and write ``synthetic_leaderboard.csv``
    (scores to 6 significant digits) and ``synthetic_truth.json`` (the truth,
    to 7 significant digits, plus ``floors_by_benchmark``) to ``folder``.

    Each file is written to a temporary name and renamed into place
    (:func:`bayes_sloth.core.io.atomic_write`). Returns the CSV's path.
    """

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lb, truth = simulate_leaderboard(seed=seed, **kwargs)
    serial = {k: _rounded(v) for k, v in truth.items()}
    serial["floors_by_benchmark"] = dict(zip(truth["benchmarks"], truth["floors"].tolist()))
    csv = folder / "synthetic_leaderboard.csv"
    with atomic_write(csv, newline="") as fh:
        lb.to_frame().reset_index().to_csv(fh, index=False, float_format="%.6g")
    with atomic_write(folder / "synthetic_truth.json") as fh:
        fh.write(_json_text(serial))
    return csv


def _json_text(d: dict) -> str:
    """JSON with one line per key, and per row of a matrix: readable and diffable, not one number a line."""
    parts = []
    for k, v in d.items():
        if isinstance(v, list) and v and isinstance(v[0], list):
            rows = ",\n  ".join(json.dumps(r) for r in v)
            parts.append(f" {json.dumps(k)}: [\n  {rows}\n ]")
        else:
            parts.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


if __name__ == "__main__":  # python -m bayes_sloth.workflows.simulation data
    import sys

    print(write_synthetic(sys.argv[1] if len(sys.argv) > 1 else "data"))
