"""Files: fits as netCDF (never pickle), and whole-file writes that never destroy.

Everything the package writes (fit files, forecast tables, reports,
evaluation pairs) goes through :func:`atomic_write` / :func:`atomic_path`:
a temporary file in the target folder, flushed and fsync'ed, then renamed
over the target. A failed, interrupted or killed write leaves the previous
file as it was and nothing under the final name.

A fit file is an InferenceData written with h5netcdf and zlib: what
:meth:`bayes_sloth.SkillsLaw.to_file_idata` gives (the sampled sites, the
sampler statistics, the constant data, and the metadata as JSON in the
posterior's attributes). This module only moves bytes and attributes:
:func:`read_idata` reads a file whole into memory and closes it (a notebook
holding a loaded fit never blocks saving a new one), and the estimator
checks and rebuilds the fit (:meth:`bayes_sloth.SkillsLaw._from_idata`).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import tempfile
import warnings
from pathlib import Path

import arviz as az
import pandas as pd

from .errors import FitFileError, InputError


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


class SaveLockedError(FitFileError):
    """Another process is writing the same file right now."""


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an advisory lock on ``path``'s writes (POSIX ``flock``); another holder is an error, not a wait."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the rename still keeps every file whole
        yield
        return
    lock = path.parent / f".{path.name}.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SaveLockedError(f"another process is saving to {str(path)!r} right now; this save was not "
                                  "made (the other one's file will be whole): save again when it has finished, "
                                  "or to another path") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_output_path(path, *, inputs=(), what: str = "output") -> Path:
    """Check before any work that ``path`` can be written: its folder exists (it is created) and is
    writable, it is not a folder, and it is not one of ``inputs``. Returns it as a Path."""
    path = Path(path)
    if str(path).strip() == "":
        raise InputError(f"the {what} path is empty")
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder: give a file name inside it")
    for inp in inputs:
        if inp is None:
            continue
        try:
            same = path.exists() and Path(inp).exists() and os.path.samefile(path, inp)
        except OSError:
            same = False
        if same or (not path.exists() and Path(inp).resolve() == path.resolve()):
            raise InputError(f"{what} {str(path)!r} is the input file {str(inp)!r}: writing it would destroy "
                             "the input; choose another name")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {str(folder)!r} for {what} {str(path)!r} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder: cannot write {what} {str(path)!r} there")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write {what} {str(path)!r}: permission denied")
    return path


def write_idata(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write an InferenceData to netCDF (h5netcdf, zlib), atomically and under an exclusive lock."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path):
        try:
            with atomic_path(path) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                idata.to_netcdf(str(tmp), engine="h5netcdf", compress=True)
        except OSError as exc:
            raise FitFileError(f"could not write fit file {str(path)!r} ({exc.strerror or exc}); "
                               + ("the previous file there is unchanged" if path.exists() else "nothing was written")
                               ) from None
    return path


def read_idata(path: str | os.PathLike) -> az.InferenceData:
    """Read a netCDF InferenceData whole into memory; the file is closed before this returns.

    A missing file, or one that is not netCDF or is damaged, is a
    :class:`~bayes_sloth.core.errors.FitFileError` (never a backend traceback).
    """
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"fit file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FitFileError(f"cannot read fit file {str(path)!r} ({exc.strerror or exc})") from None
    try:
        import h5netcdf
        import xarray as xr

        with h5netcdf.File(_io.BytesIO(raw), "r") as f:
            names = list(f.groups)
        groups = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for g in names:
                with xr.open_dataset(_io.BytesIO(raw), group=g, engine="h5netcdf") as ds:
                    groups[g] = ds.load()
            return az.InferenceData(**groups)
    except Exception as exc:  # h5py/netCDF raise many types for a broken file
        raise FitFileError(f"cannot read fit file {str(path)!r}: not a netCDF fit or corrupted "
                           f"({type(exc).__name__})") from None


#: Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """A text cell that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, *, text_columns=None, **to_csv) -> Path:
    """Write a table to CSV atomically, with text cells in ``text_columns`` (default: every text column)
    escaped against spreadsheet formula injection (:func:`escape_formula`)."""
    out = frame.copy()
    cols = text_columns if text_columns is not None else [c for c in out.columns if out[c].dtype == object
                                                           or pd.api.types.is_string_dtype(out[c])]
    for c in cols:
        if c in out:
            out[c] = out[c].map(escape_formula)
    with atomic_write(path, "w", newline="") as fh:
        out.to_csv(fh, **to_csv)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (a report, a table) atomically, UTF-8."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)
