"""The fit file: what a saved fit holds, and every check a loaded one passes before it is used.

A fit file is netCDF (never pickle), written whole or not at all
(:mod:`bayes_sloth.core.io`). It holds the sampled sites, the sampler's
statistics and the constant data, with metadata (JSON, in the posterior's
``bayes_sloth`` attribute): the fit format, package versions, the law's spec,
the estimator's parameters, the standardizer, the names of families and
benchmarks, the data's sha256 and a checksum of every stored array. On load
the metadata and the arrays are checked against each other (a field at fault
is named, never a backend traceback); the deterministic sites and the
observation groups are then recomputed from the sampled sites by the fit's own
code (:mod:`bayes_sloth.core.idata`), so a loaded fit predicts as the original.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import arviz as az
import numpy as np
import pandas as pd

from .. import __version__
from .errors import FitFileError
from .idata import (
    complete_posterior,
    latent_models,
    model_arrays,
    model_site_shapes,
    observation_groups,
    posterior_dataset,
)
from .leaderboard import Leaderboard
from .model import ModelSpec, Standardizer, standardization_array
from .options import _is_int

#: Version of the fit layout (metadata and groups). Fits of another major version are refused on load; a minor
#: version adds fields only (2.1: ``checksums``, one per stored array, checked on load when present).
FIT_FORMAT = "2.1"


#: Attribute of the posterior group that holds a fit's metadata, as JSON.
META_ATTR = "bayes_sloth"


def versions() -> dict:
    import jax
    import numpyro

    return {"bayes_sloth": __version__, "numpyro": numpyro.__version__, "jax": jax.__version__,
            "arviz": az.__version__}


def json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(np.asarray(o).tolist())
    raise TypeError(type(o).__name__)


def read_meta(idata, source: str) -> dict:
    if "posterior" not in idata.groups():
        raise FitFileError(f"{source} has no posterior group: not a bayes_sloth fit")
    raw = idata.posterior.attrs.get(META_ATTR)
    if raw is None:
        raise FitFileError(f"{source} is not a bayes_sloth fit (no bayes_sloth metadata in its posterior): "
                           "save fits with SkillsLaw.save or `bayes-sloth fit --out`")
    try:
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        raise FitFileError(f"{source}: its bayes_sloth metadata is not valid JSON: corrupted; refit") from None
    if not isinstance(meta, dict):
        raise FitFileError(f"{source}: its bayes_sloth metadata is not a mapping: corrupted; refit")
    fmt = str(meta.get("fit_format", "?"))
    if fmt.split(".")[0] != FIT_FORMAT.split(".")[0]:
        written = (meta.get("versions") or {}).get("bayes_sloth", "unknown")
        raise FitFileError(f"{source} has format {fmt} (written by bayes_sloth {written}); this version reads "
                           f"format {FIT_FORMAT}: refit with this version")
    for key, kind in (("spec", dict), ("params", dict), ("standardizer", dict), ("families", list),
                      ("benchmarks", list), ("sampled_sites", list)):
        if not isinstance(meta.get(key), kind):
            raise FitFileError(f"{source}: field {key!r} of its metadata is missing or not a {kind.__name__}; "
                               "corrupted or not written by bayes_sloth: refit")
    return meta


def canonical_bytes(values) -> bytes:
    """An array's content as bytes that survive a netCDF round trip: numbers (bool and int too) as
    little-endian float64 with one NaN, text as UTF-8; the shape first."""
    a = np.asarray(values)
    head = repr(a.shape).encode()
    if a.dtype.kind in "OUS":
        return head + "\x00".join(str(v.decode() if isinstance(v, bytes) else v) for v in a.ravel()).encode()
    a = a.astype(np.float64)
    return head + np.ascontiguousarray(np.where(np.isnan(a), np.nan, a), dtype="<f8").tobytes()


def array_checksums(groups: dict) -> dict:
    """sha256 of every data variable of ``groups`` (name -> Dataset), keyed ``"group.variable"``."""

    return {f"{g}.{v}": hashlib.sha256(canonical_bytes(ds[v].values)).hexdigest()
            for g, ds in groups.items() for v in ds.data_vars}


#: How far a stored covariate may be from the one recomputed from params and tokens: x is computed in float64
#: and stored in float32 (half a unit in the last place, 6e-8 of |x|, |x| < 10 on any real table); 1e-5 of
#: max(1, |x|) is a hundred times that, and far below what a changed standardization or covariate moves (the
#: issue's shifted mean moved x by 0.03 to 0.1).
X_TOLERANCE = 1e-5


def check_fit_parts(idata, meta: dict, source: str):
    """Check a fit's metadata and arrays against each other; returns (spec, standardizer, leaderboard, data)."""

    def bad(field, why):
        return FitFileError(f"{source}: field {field!r} {why}; the file is corrupted or was edited: refit")

    try:
        spec = ModelSpec.from_dict(meta["spec"])
    except (TypeError, ValueError, KeyError) as exc:
        raise bad("spec", f"is invalid ({exc})") from None
    families, benchmarks = [str(f) for f in meta["families"]], [str(b) for b in meta["benchmarks"]]
    if len(benchmarks) != spec.n_benchmarks or len(set(benchmarks)) != len(benchmarks):
        raise bad("benchmarks", f"lists {len(benchmarks)} names for {spec.n_benchmarks} benchmarks")
    if len(families) != spec.n_families or len(set(families)) != len(families):
        raise bad("families", f"lists {len(families)} names for {spec.n_families} families")
    if any(not _is_int(a) or not 0 <= a < spec.n_benchmarks for a in spec.anchors):
        raise bad("spec.anchors", f"holds an index outside 0..{spec.n_benchmarks - 1}: {list(spec.anchors)}")
    try:
        std = Standardizer.from_dict(meta["standardizer"])
    except (TypeError, ValueError, KeyError) as exc:
        raise bad("standardizer", f"is invalid ({exc})") from None
    if not (np.isfinite(std.center).all() and np.isfinite(std.mean).all() and np.isfinite(std.sd).all()
            and (std.sd > 0).all() and std.center.shape == (2,) and std.mean.shape == (3,) and std.sd.shape == (3,)):
        raise bad("standardizer", "is not finite, or has a non-positive sd")
    if "constant_data" not in idata.groups():
        raise FitFileError(f"{source} has no constant_data group: incomplete or corrupted; refit and save again")
    cd = idata.constant_data
    need = ("x", "family_index", "instruct", "floor", "obs_model_index", "obs_benchmark_index", "obs_weight",
            "params", "tokens", "model_family", "scores")
    for name in need:
        if name not in cd:
            raise bad(f"constant_data.{name}", "is missing")
    models = [str(m) for m in cd["model"].values]
    N, J = len(models), spec.n_benchmarks
    if list(map(str, cd["benchmark"].values)) != benchmarks:
        raise bad("constant_data.benchmark", "does not match the benchmarks of the metadata")
    if cd["scores"].shape != (N, J) or cd["x"].shape != (N, 3):
        raise bad("constant_data.scores", f"has shape {cd['scores'].shape}, expected {(N, J)}")
    fam_idx = np.asarray(cd["family_index"].values)
    if fam_idx.shape != (N,) or (len(fam_idx) and (fam_idx.min() < 0 or fam_idx.max() >= spec.n_families)):
        raise bad("constant_data.family_index", f"is not an index into the {spec.n_families} families")
    om, ob = np.asarray(cd["obs_model_index"].values), np.asarray(cd["obs_benchmark_index"].values)
    if om.shape != ob.shape or (len(om) and (om.min() < 0 or om.max() >= N or ob.min() < 0 or ob.max() >= J)):
        raise bad("constant_data.obs_model_index", "points outside the models or benchmarks")
    scores = np.asarray(cd["scores"].values, dtype=float)
    y = scores[om, ob]
    if not np.isfinite(y).all():
        raise bad("constant_data.scores", "is missing a score that the fit's observed pairs name")
    post = idata.posterior
    for site in meta["sampled_sites"]:
        if site not in post:
            raise bad(f"posterior.{site}", "is missing")
        v = np.asarray(post[site].values)
        if v.ndim < 2 or v.size == 0 or np.isnan(v).all():
            raise bad(f"posterior.{site}", "holds no draws (empty or all NaN)")
        if v.dtype.kind not in "fiu":
            raise bad(f"posterior.{site}", f"holds {v.dtype} values, not numbers")
        finite = np.isfinite(v)
        if not finite.all():
            n = int((~finite).sum())
            raise bad(f"posterior.{site}", f"holds {n} non-finite value(s) (NaN or infinite) among its {v.size} "
                      "draws; a sampler never keeps one")
        if v.shape[:2] != post[meta["sampled_sites"][0]].shape[:2]:
            raise bad(f"posterior.{site}", f"has {v.shape[:2]} (chain, draw), unlike the other sites")
    for dim, names in (("family", families), ("benchmark", benchmarks), ("model", models)):
        if dim in post.dims and list(map(str, post[dim].values)) != names:
            raise bad(f"posterior.{dim}", "does not match the constant data and metadata")
    if "sample_stats" in idata.groups():
        for name, v in idata.sample_stats.data_vars.items():
            for dim in ("chain", "draw"):
                if dim in v.dims and v.sizes[dim] != post.sizes[dim]:
                    raise bad(f"sample_stats.{name}", f"has {v.sizes[dim]} {dim}(s), the posterior {post.sizes[dim]}")
    check_checksums(idata, meta, source)
    cov = pd.DataFrame({"family": cd["model_family"].values.astype(str),
                        "params": cd["params"].values.astype(float), "tokens": cd["tokens"].values.astype(float),
                        "instruct": cd["instruct"].values.astype(bool)}, index=pd.Index(models, name="model"))
    floors = pd.Series(cd["floor"].values.astype(float), index=pd.Index(benchmarks, name="benchmark"), name="floor")
    lb = Leaderboard(cov, pd.DataFrame(scores, index=cov.index, columns=benchmarks), floors)
    no_tokens = ~np.isfinite(cov["tokens"].to_numpy())
    if int(no_tokens.sum()) != spec.n_latent_tokens:
        raise bad("spec.n_latent_tokens", f"is {spec.n_latent_tokens} but {int(no_tokens.sum())} fitted model(s) have "
                  "no token count in constant_data.tokens")
    recorded = meta.get("data_sha256")
    if isinstance(recorded, str) and recorded != lb.sha256():
        raise bad("constant_data", "(params, tokens, families, instruct flags, scores, floors) does not match the "
                  "data_sha256 recorded when the fit was made: the fitted data were changed")
    if [families[i] for i in fam_idx] != list(cov["family"]):
        raise bad("constant_data.family_index", "does not match constant_data.model_family")
    rows, cols = np.nonzero(np.isfinite(scores))
    if not (np.array_equal(om, rows) and np.array_equal(ob, cols)):
        raise bad("constant_data.obs_model_index", "does not list the observed scores of constant_data.scores")
    x = np.array(cd["x"].values, dtype=float)
    x[no_tokens, 1:] = np.nan  # the placeholders of latent token columns (inference.model_arrays)
    want = std.transform(cov["params"], cov["tokens"])
    known = np.isfinite(want)
    off = np.abs(x[known] - want[known]) > X_TOLERANCE * np.maximum(1.0, np.abs(want[known]))
    if off.any() or not np.isfinite(x[known]).all():
        worst = float(np.nanmax(np.abs(x[known] - want[known]))) if np.isfinite(x[known]).any() else float("nan")
        raise bad("constant_data.x", f"is not the standardized params and tokens of the fitted models (the "
                  f"metadata's standardizer gives values up to {worst:.3g} away): the standardizer or the "
                  "covariates were changed")
    data = model_arrays(x=x, family=fam_idx, instruct=cd["instruct"].values, floor=cd["floor"].values,
                        obs_model=om, obs_bench=ob, y=y, obs_weight=np.asarray(cd["obs_weight"].values, dtype=bool),
                        standardization=standardization_array(std))
    check_site_shapes(post, meta, spec, data, bad)
    return spec, std, lb, data


def check_checksums(idata, meta: dict, source: str) -> None:
    """Every array the metadata has a checksum of (fits saved by format 2.1 on) still has that content."""
    sums = meta.get("checksums")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise FitFileError(f"{source}: field 'checksums' of its metadata is not a mapping: corrupted; refit")
    got = array_checksums({g: idata[g] for g in idata.groups()})
    for name, want in sums.items():
        if name not in got:
            raise FitFileError(f"{source}: field {name!r} is missing; the file is corrupted or was edited: refit")
        if got[name] != want:
            raise FitFileError(f"{source}: field {name!r} does not match the checksum recorded when the fit was "
                               "saved; the file is corrupted or was edited: refit")


def check_site_shapes(post, meta: dict, spec: ModelSpec, data: dict, bad) -> None:
    """The stored draws are those of the law the metadata describes: the same sites, each of its shape."""
    expected, _ = model_site_shapes(spec, data)
    stored = set(meta["sampled_sites"])
    if stored != set(expected):
        extra, lacking = sorted(stored - set(expected)), sorted(set(expected) - stored)
        raise bad("sampled_sites", f"lists {', '.join(extra) or 'nothing'} beyond and lacks "
                  f"{', '.join(lacking) or 'nothing'} of the sites of the law in field 'spec'")
    for site, shape in expected.items():
        got = tuple(post[site].shape[2:])
        if got != shape:
            raise bad(f"posterior.{site}", f"holds draws of shape {got}, but the law of field 'spec' "
                      f"({spec.n_skills} skill(s), {spec.n_benchmarks} benchmarks, {spec.n_families} families) "
                      f"has shape {shape}")



def file_idata(idata: az.InferenceData) -> az.InferenceData:
    """What a fit file holds of a fit's InferenceData: the sampled sites, sampler statistics and constant data,
    with the metadata and a checksum of every array written (an edited or damaged array is refused on load).
    Deterministic sites, the log-likelihood, observed data and replicated scores are left out: :func:`rebuild`
    recomputes them from the sampled sites by the same code as the fit, bit for bit."""
    meta = json.loads(idata.posterior.attrs[META_ATTR])
    post = idata.posterior[meta["sampled_sites"]]
    groups = {"posterior": post, "constant_data": idata.constant_data}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    meta["fit_format"] = FIT_FORMAT
    meta["checksums"] = array_checksums(groups)
    post.attrs = dict(idata.posterior.attrs, **{META_ATTR: json.dumps(meta, default=json_default)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups)


def rebuild(idata: az.InferenceData, source: str):
    """A fit's complete InferenceData from a file's (or a fit's own) groups, every part checked first.

    Returns ``(idata, meta, leaderboard)``: the deterministic sites and observation groups recomputed from the
    sampled sites (:func:`~bayes_sloth.core.idata.complete_posterior`,
    :func:`~bayes_sloth.core.idata.observation_groups`)."""
    meta = read_meta(idata, source)
    spec, std, lb, data = check_fit_parts(idata, meta, source)
    post = idata.posterior
    sampled = {k: post[k].values for k in meta["sampled_sites"]}
    sites = complete_posterior(spec, sampled, data)
    groups = {"posterior": posterior_dataset(spec, sites, models=lb.models, families=meta["families"],
                                             benchmarks=meta["benchmarks"],
                                             latent_models=latent_models(data, lb.models)).assign_attrs(post.attrs),
              "constant_data": idata.constant_data}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    obs = observation_groups(spec, sites, data, int(meta["params"]["seed"]), models=lb.models,
                             benchmarks=meta["benchmarks"])
    attrs = {k: v for k, v in post.attrs.items() if k != META_ATTR}
    groups.update({name: ds.assign_attrs(attrs) for name, ds in obs.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups), meta, lb
