"""Files: fits as netCDF (never pickle), and whole-file writes that never destroy.

Everything the package writes (fit files, forecast tables, reports,
evaluation pairs) goes through :func:`atomic_write` / :func:`atomic_path`:
a temporary file in the target folder, flushed and fsync'ed, then renamed
over the target. A failed, interrupted or killed write leaves the previous
file as it was and nothing under the final name.

Every path is the file it names: a symbolic link is written through (its
target is replaced, the link stays a link), and a path that ends with a
separator, or names a folder, a device, a pipe or a socket, is refused before
anything is written. A write that fails (a full disk, no permission) is an
:class:`~bayes_sloth.core.errors.OutputError` (a :class:`~bayes_sloth.core.errors.FitFileError`
for a fit file) that says the previous file is unchanged.

A fit file is an InferenceData written with h5netcdf and zlib: what
:meth:`bayes_sloth.SkillsLaw.to_file_idata` gives (the sampled sites, the
sampler statistics, the constant data, and the metadata as JSON in the
posterior's attributes). It is built in memory and then written as bytes,
so HDF5 never holds a file on disk that a failed write leaves half-flushed
(libhdf5 crashed at exit closing one on a full disk). This module only moves bytes and attributes:
:func:`read_idata` reads a file whole into memory and closes it (a notebook
holding a loaded fit never blocks saving a new one), and the estimator
checks and rebuilds the fit (:meth:`bayes_sloth.SkillsLaw._from_idata`).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import stat
import sys
import tempfile
import warnings
from pathlib import Path

import arviz as az
import pandas as pd

from .errors import BayesSlothError, FitFileError, InputError, OutputError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", what: str = "file", **open_kwargs):
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` when the block succeeds.

    The temporary file lives in the target folder (so the rename is atomic on
    POSIX and Windows), is flushed and fsync'ed before the rename, and is
    removed if the block raises: a failed, interrupted or killed write never
    leaves a partial file under the final name and never destroys the file
    that was there before. ``mode`` is ``"w"`` (text) or ``"wb"``; yields the
    open file object; ``what`` names the file in errors (:func:`atomic_path`).
    Use :func:`atomic_path` for writers that need a path.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path, what) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "file"):
    """A temporary path beside ``path``; renamed over it when the block succeeds, removed if it fails.

    For writers that take a file name (netCDF, matplotlib): write to the
    yielded path, and the finished file replaces ``path`` in one rename.
    ``path`` is resolved as :func:`output_target` does (a symbolic link is
    written through; a folder, device, pipe or socket is refused). An
    ``OSError`` on the way (a full disk, no permission) is an
    :class:`~bayes_sloth.core.errors.OutputError` naming ``what`` and the path and
    saying that the previous file is unchanged.
    """
    shown = os.fspath(path)
    path = output_target(path, what)
    existed = path.exists()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
        os.close(fd)
        with contextlib.suppress(OSError):  # mkstemp makes 0600: give the file the mode a plain open() would
            os.chmod(tmp, path.stat().st_mode & 0o7777 if existed else 0o666 & ~_umask())
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BayesSlothError):
            raise OutputError(f"could not write {what} {shown!r} ({exc.strerror or exc}); "
                              + ("the previous file there is unchanged" if existed else "nothing was written")
                              ) from None
        raise


def _ends_with_separator(name: str) -> bool:
    return name.endswith(os.sep) or bool(os.altsep and name.endswith(os.altsep))


def output_target(path: str | os.PathLike, what: str = "output") -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or the final target of a symbolic link.

    A link is written through, as ``open(path, "w")`` would: its target gets
    the new content and the link stays (renaming over the link itself would
    leave the target with the old content). Refused with an InputError: a
    name that ends with a separator (``fits/`` names a folder, not a file
    called ``fits``), a folder, a link that leads nowhere (a loop), and an
    existing file that is not a regular file (a device such as ``/dev/null``,
    a pipe, a socket), which a rename would replace.
    """
    name = os.fsdecode(os.fspath(path))
    if name.strip() == "":
        raise InputError(f"the {what} path is empty")
    if _ends_with_separator(name):
        raise InputError(f"{what} {name!r} ends with {name[-1]!r}, so it names a folder: give a file name "
                         "(inside that folder, or without the trailing separator)")
    target = Path(name)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
        if target.is_symlink():
            raise InputError(f"{what} {name!r} is a symbolic link that leads nowhere (a loop): give a file name")
    if target.is_dir():
        raise InputError(f"{what} {name!r} is a folder: give a file name inside it")
    try:
        mode = target.stat().st_mode if target.exists() else None
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a named pipe" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        shown = name if str(target) == name else f"{name} (-> {target})"
        raise InputError(f"{what} {shown!r} is {kind}, not a regular file: files are written whole and renamed "
                         "into place, which would replace it; give the name of a regular file")
    return target


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
    """Check before any work that ``path`` can be written: it names a file (:func:`output_target`: not a folder,
    not a device, pipe or socket, no trailing separator; a symbolic link is checked at its target), its folder
    exists (it is created) and is writable, and it is not one of ``inputs``. Returns it as a Path."""
    target = output_target(path, what)
    path = Path(os.fspath(path))
    for inp in inputs:
        if inp is None:
            continue
        try:
            same = target.exists() and Path(inp).exists() and os.path.samefile(target, inp)
        except OSError:
            same = False
        if same or (not target.exists() and Path(inp).resolve() == target.resolve()):
            raise InputError(f"{what} {str(path)!r} is the input file {str(inp)!r}: writing it would destroy "
                             "the input; choose another name")
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {str(folder)!r} for {what} {str(path)!r} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder: cannot write {what} {str(path)!r} there")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InputError(f"cannot write {what} {str(path)!r}: permission denied")
    return path


def netcdf_bytes(idata: az.InferenceData) -> bytes:
    """An InferenceData as the bytes of a netCDF file (h5netcdf, zlib on numeric variables, one group per
    InferenceData group, as ``InferenceData.to_netcdf(compress=True)`` writes it), built in memory."""
    import numpy as np

    buf = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, group in enumerate(idata.groups()):
            ds = idata[group]
            encoding = {name: {"zlib": True} for name, v in ds.variables.items()
                        if np.dtype(v.dtype).kind in "biufcS"}
            ds.to_netcdf(buf, mode="w" if i == 0 else "a", group=group, engine="h5netcdf", encoding=encoding)
    return buf.getvalue()


def write_idata(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write an InferenceData to netCDF (h5netcdf, zlib), atomically and under an exclusive lock.

    The file is built in memory (:func:`netcdf_bytes`) and written as bytes
    through :func:`atomic_write`: a full disk or a missing permission is a
    FitFileError that says the previous file is unchanged, and HDF5 never
    holds a half-written file on disk (closing one at exit crashed libhdf5).
    """
    shown = os.fspath(path)
    path = output_target(path, "fit file")
    data = netcdf_bytes(idata)
    existed = path.exists()
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(path), atomic_write(path, "wb", what="fit file") as fh:
            fh.write(data)
    except OutputError as exc:  # the write itself failed: atomic_write says so, and that the old file is kept
        raise FitFileError(str(exc)) from None
    except OSError as exc:  # the folder or the lock could not be made
        if isinstance(exc, BayesSlothError):
            raise
        raise FitFileError(f"could not write fit file {shown!r} ({exc.strerror or exc}); "
                           + ("the previous file there is unchanged" if existed else "nothing was written")) from None
    return Path(shown)


@contextlib.contextmanager
def _quiet_failed_opens():
    """Hold back what h5netcdf prints when a file it could not open is freed.

    ``h5netcdf.File`` whose constructor failed (a damaged root attribute)
    is closed by its ``__del__``, which fails again (no ``_writable`` yet)
    and Python prints "Exception ignored ..." and a traceback after the one
    line that says the fit file is damaged. Such errors from h5netcdf and
    h5py objects are dropped while this is active; any other goes to the
    usual hook.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        owner = getattr(unraisable.object, "__module__", None) or ""
        if owner.split(".")[0] in ("h5netcdf", "h5py"):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def read_idata(path: str | os.PathLike) -> az.InferenceData:
    """Read a netCDF InferenceData whole into memory; the file is closed before this returns.

    The file is read once, as bytes (so a pipe or ``<(...)`` works), and
    parsed from memory. A missing file, or one that is not netCDF or is
    damaged, is a :class:`~bayes_sloth.core.errors.FitFileError` (one line: never
    a backend traceback, then or at exit).
    """
    path = Path(path)
    if not path.exists() or path.is_dir():
        raise FitFileError(f"fit file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FitFileError(f"cannot read fit file {str(path)!r} ({exc.strerror or exc})") from None
    failure = None
    with _quiet_failed_opens():
        try:
            groups = _read_groups(raw)
        except Exception as exc:  # h5py/netCDF raise many types for a broken file
            failure = type(exc).__name__
        if failure is not None:
            import gc

            gc.collect()  # the half-opened file objects are freed here, while their complaints are held back
    if failure is not None:
        raise FitFileError(f"cannot read fit file {str(path)!r}: not a netCDF fit or corrupted ({failure})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups)


def _read_groups(raw: bytes) -> dict:
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
    return groups


#: Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """A text cell that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, *, text_columns=None, what: str = "table",
              **to_csv) -> Path:
    """Write a table to CSV atomically, with text cells in ``text_columns`` (default: every text column)
    escaped against spreadsheet formula injection (:func:`escape_formula`)."""
    out = frame.copy()
    cols = text_columns if text_columns is not None else [c for c in out.columns if out[c].dtype == object
                                                           or pd.api.types.is_string_dtype(out[c])]
    for c in cols:
        if c in out:
            out[c] = out[c].map(escape_formula)
    with atomic_write(path, "w", what=what, newline="") as fh:
        out.to_csv(fh, **to_csv)
    return Path(path)


def write_text(text: str, path: str | os.PathLike, what: str = "file") -> Path:
    """Write a text file (a report, a table) atomically, UTF-8."""
    with atomic_write(path, "w", what=what, encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)
