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
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro import handlers

from ..core import options
from ..core.data import Leaderboard
from ..core.errors import InputError
from ..core.idata import model_arrays, real_dtype
from ..core.io import atomic_write
from ..core.model import ModelSpec, Standardizer, skills_law
from ..core.programs import bounded_jit
from ..core.sites import sampled

#: The law the simulator draws from by default, and the lean law, as keyword arguments (the presets are
#: declared in :mod:`bayes_sloth.core.options`).
SIMULATED_LAW = options.SIMULATION_LAW.differences()
LEAN_LAW = options.LEAN_LAW.differences()

#: Realistic truth: default size of the optional effects when they are on and no size is given.
DEFAULT_MODEL_EFFECT_SD = 0.3
DEFAULT_FAMILY_SLOPE_SD = 0.3
DEFAULT_SIGMA = (0.01, 0.04)
#: Realistic truth: instruction tuning raises every skill by Normal(mean, sd) (per skill).
INSTRUCT_SHIFT_MEAN, INSTRUCT_SHIFT_SD = 0.3, 0.15
#: Realistic truth with ``instruct_slope``: what tuning adds grows by Normal(mean, sd) per unit of standardized log S.
INSTRUCT_SLOPE_MEAN, INSTRUCT_SLOPE_SD = 0.2, 0.1
#: Share of families whose models are all instruction-tuned.
INSTRUCT_SHARE = 0.25


def simulate_leaderboard(
    n_families: int = 40,
    n_benchmarks: int = 12,
    n_skills: int = options.SIMULATION_LAW.n_skills,
    *,
    models_per_family: int | tuple[int, int] = (1, 8),
    missing: float = 0.15,
    sigma: tuple[float, float] | None = None,
    floors=None,
    family_slope_sd: float | None = None,
    model_effect_sd: float | None = None,
    prior: bool = False,
    truth: dict | None = None,
    seed: int = 0,
    **law,
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
    anchors=(0..K-1), **law)``: ``law`` takes any option of the law
    (:class:`~bayes_sloth.core.options.LawOptions`: ``link``, ``loadings``,
    ``noise``, ``instruct_shift``, ...), and the defaults are
    :data:`~bayes_sloth.core.options.SIMULATION_LAW`: the fitted default law
    without the family and instruct slopes, which are off unless asked for;
    ``**LEAN_LAW`` gives the sigmoid law without any optional effect.

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
    ``link_sd`` ()            ``links.REALISTIC_LINK_SD`` (monotone-pooled)
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
    options.LawOptions.unknown(law)
    if "anchors" in law:
        raise InputError("anchors are the first n_skills benchmarks of a simulated leaderboard; no anchors= here")
    if not isinstance(prior, (bool, np.bool_)):
        raise InputError(f"prior must be True or False, got {prior!r}")
    law = options.SIMULATION_LAW.changed(n_skills=K, **law)  # checks every option, naming a bad one
    spec = ModelSpec(K, J, F, tuple(range(K)), options=law)
    law = law.distribution()  # the distribution's options: not K, anchors or the sampler's coordinates
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
    sites = draw_through_model(spec, jax.random.PRNGKey(seed), cond, args)

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


#: Realistic truth of each parameter site, in the order drawn (a site of the law not listed here, or not in
#: this law, is drawn by the model from its prior; the link's own sites come from the link, last).
_REALISTIC = {
    "slopes": lambda rng, c: _growing(rng.normal(0.0, 1.0, size=(3, c.K))),
    "tau": lambda rng, c: rng.uniform(0.3, 0.8, size=c.K),
    "family_z": lambda rng, c: rng.normal(size=(c.F, c.K)),
    "loadings_free": lambda rng, c: rng.uniform(0.3, 1.5, size=c.n_free),
    "intercept": lambda rng, c: rng.normal(0.0, 1.0, size=c.J),
    "sigma": lambda rng, c: rng.uniform(c.sigma[0], c.sigma[1], size=c.J),
    "family_slope_sd": lambda rng, c: np.full(c.K, c.family_slope_sd),
    "family_slope_z": lambda rng, c: rng.normal(size=(c.F, c.K)),
    "model_sd": lambda rng, c: np.asarray(c.model_effect_sd),
    "model_z": lambda rng, c: rng.normal(size=c.N),
    "instruct_shift": lambda rng, c: rng.normal(INSTRUCT_SHIFT_MEAN, INSTRUCT_SHIFT_SD, size=c.K),
    "instruct_slope": lambda rng, c: rng.normal(INSTRUCT_SLOPE_MEAN, INSTRUCT_SLOPE_SD, size=c.K),
}


def _growing(slopes: np.ndarray) -> np.ndarray:
    """Skills grow with size: the log-size row of the slopes made positive, at least 0.5."""
    slopes[0] = np.abs(slopes[0]) + 0.5
    return slopes


def _realistic_truth(rng, spec: ModelSpec, n_models: int, sigma, family_slope_sd: float,
                     model_effect_sd: float) -> dict:
    """A realistic value of every parameter site of ``spec``'s law that :data:`_REALISTIC` (or the link) knows."""
    ctx = SimpleNamespace(K=spec.n_skills, J=spec.n_benchmarks, F=spec.n_families, N=n_models,
                          n_free=len(spec.free_loading_index), sigma=sigma, family_slope_sd=family_slope_sd,
                          model_effect_sd=model_effect_sd)
    present = set(sampled(spec))
    t = {name: draw(rng, ctx) for name, draw in _REALISTIC.items() if name in present}
    t.update(spec.link_.realistic(rng, spec.n_benchmarks))
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
def draw_through_model(spec: ModelSpec, key, cond: dict, args: dict) -> dict:
    """Run ``skills_law`` forward, conditioned on ``cond``: every other site is
    drawn from the model (the parameters from their priors, ``y`` around the
    law). Returns the value of every sample and deterministic site, and ``mu``,
    the location of the scores' distribution (the law's mean of each pair).

    ``args`` are the model's data arrays (``x``, ``family``, ``instruct``,
    ``floor``, ``obs_model``, ``obs_bench``, as
    :func:`bayes_sloth.core.idata.model_arrays` builds them); ``spec`` is
    static (one compiled program per spec). SBC (``benchmarks/sbc.py``) draws
    its truths through it on a fixed design."""
    model = handlers.condition(partial(skills_law, spec), data=cond)
    tr = handlers.trace(handlers.seed(model, rng_seed=key)).get_trace(**args)
    out = {k: s["value"] for k, s in tr.items() if s["type"] in ("sample", "deterministic")}
    out["mu"] = tr["y"]["fn"].loc
    return out


#: Its name before it was public (kept so that code using it keeps working).
_draw_through_model = draw_through_model


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
