"""Saving and loading fits as netCDF (never pickle).

A fit file is the fit's ``InferenceData`` (posterior, sample_stats,
log_likelihood, observed_data, posterior_predictive, constant_data) written
with h5netcdf. The posterior's attributes carry everything else a fit needs
to predict again, as JSON: the model structure, sampler settings, the
covariate standardization, family and benchmark names, and provenance (file
format, package, NumPyro, JAX and ArviZ versions, the data's sha256). Loading
checks the format version and says so when a file comes from an incompatible
version or is not a fit at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import arviz as az
import pandas as pd

from .data import Leaderboard
from .errors import FitFileError
from .model import ModelSpec, Standardizer

@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs):
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` when the block succeeds.

    The temporary file lives in the target folder (so the rename is atomic on
    POSIX and Windows), is flushed and fsync'ed before the rename, and is
    removed if the block raises: a failed, interrupted or killed write never
    leaves a partial file under the final name and never destroys the file
    that was there before. ``mode`` is ``"w"`` (text) or ``"wb"``; yields the
    open file object. Use :func:`atomic_path` for writers that need a path.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary path beside ``path``; renamed over it when the block succeeds, removed if it fails.

    For writers that take a file name (netCDF, matplotlib): write to the
    yielded path, and the finished file replaces ``path`` in one rename.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    os.close(fd)
    with contextlib.suppress(OSError):  # mkstemp makes 0600: give the file the mode a plain open() would
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_file(name) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(str(folder or "."), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: Version of the fit-file layout. Files of another major version are refused.
FIT_FORMAT = "1.0"
_ATTR = "bayes_sloth"


def _versions() -> dict:
    import jax
    import numpyro

    from . import __version__

    return {"bayes_sloth": __version__, "numpyro": numpyro.__version__, "jax": jax.__version__,
            "arviz": az.__version__}


def stamp(law) -> dict:
    """Attributes that make a fit file self-describing."""
    meta = {
        "fit_format": FIT_FORMAT,
        "versions": _versions(),
        "spec": law.spec_.to_dict(),
        "params": law.get_params(),
        "standardizer": law.standardizer_.to_dict(),
        "families": list(law.families_),
        "benchmarks": list(law.benchmarks_),
        "data_sha256": law.leaderboard_.sha256(),
        "fit_seconds": float(law.fit_seconds_),
    }
    return {_ATTR: json.dumps(meta)}


def read_meta(idata, path=None) -> dict:
    where = "file" if path is None else f"fit file {str(path)!r}"
    try:
        return json.loads(idata.posterior.attrs[_ATTR])
    except (KeyError, AttributeError, TypeError, ValueError):
        raise FitFileError(
            f"{where} is not a bayes_sloth fit (no bayes_sloth metadata in its posterior): "
            "save fits with SkillsLaw.save or `bayes-sloth fit --out`"
        ) from None


def save(law, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    law.idata_.posterior.attrs.update(stamp(law))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law.idata_.to_netcdf(str(path), engine="h5netcdf")
    return path


def load(cls, path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"fit file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_netcdf(str(path), engine="h5netcdf")
            idata.load() if hasattr(idata, "load") else None
    except Exception as exc:  # h5py/netCDF raise many types for a broken file
        raise FitFileError(f"cannot read fit file {str(path)!r}: not a netCDF fit or corrupted ({type(exc).__name__})") from None
    if "posterior" not in idata.groups():
        raise FitFileError(f"fit file {str(path)!r} has no posterior group: not a bayes_sloth fit")
    meta = read_meta(idata, path)
    fmt = str(meta.get("fit_format", "?"))
    if fmt.split(".")[0] != FIT_FORMAT.split(".")[0]:
        written = meta.get("versions", {}).get("bayes_sloth", "unknown")
        raise FitFileError(
            f"fit file {str(path)!r} has format {fmt} (written by bayes_sloth {written}); this version reads "
            f"format {FIT_FORMAT}: refit with this version"
        )
    missing = [g for g in ("constant_data",) if g not in idata.groups()]
    if missing:
        raise FitFileError(
            f"fit file {str(path)!r} has no {missing[0]} group: incomplete or corrupted; refit and save again"
        )
    try:
        law = cls(**meta["params"])
        law.spec_ = ModelSpec.from_dict(meta["spec"])
        law.standardizer_ = Standardizer.from_dict(meta["standardizer"])
        law.families_ = list(meta["families"])
        law.benchmarks_ = list(meta["benchmarks"])
        law.anchors_ = [law.benchmarks_[a] for a in law.spec_.anchors]
        law.fit_seconds_ = float(meta.get("fit_seconds", float("nan")))
        cd = idata.constant_data
        models = [str(m) for m in cd["model"].values]
        cov = pd.DataFrame(
            {
                "family": cd["model_family"].values.astype(str),
                "params": cd["params"].values.astype(float),
                "tokens": cd["tokens"].values.astype(float),
                "instruct": cd["instruct"].values.astype(bool),
            },
            index=pd.Index(models, name="model"),
        )
        scores = pd.DataFrame(cd["scores"].values.astype(float), index=cov.index, columns=law.benchmarks_)
        floors = pd.Series(cd["floor"].values.astype(float), index=pd.Index(law.benchmarks_, name="benchmark"), name="floor")
        law.leaderboard_ = Leaderboard(cov, scores, floors)
    except (KeyError, TypeError, ValueError) as exc:
        raise FitFileError(
            f"fit file {str(path)!r} is incomplete or corrupted ({type(exc).__name__}: {exc}); refit and save again"
        ) from None
    law.idata_ = idata
    from .diagnostics import diagnose

    law.diagnostics_ = diagnose(idata, law.max_tree_depth)
    return law
