"""Process-wide settings, made only when asked: CPU devices for parallel chains and the compile cache.

Importing :mod:`bayes_sloth` changes nothing in the process. Two settings
make it faster, and both are process-wide, so they are an explicit call
(as ``numpyro.set_host_device_count`` is), made first thing in a notebook or
script, and made by the ``bayes-sloth`` command line for its users::

    import bayes_sloth as bs
    bs.configure()                    # one CPU device per core, compile cache on disk

- ``cpu_devices``: JAX starts with one CPU device, so NUTS chains run one
  after another. With one device per core (JAX's public option
  ``jax_num_cpu_devices``) they run in parallel. It must be set before JAX
  runs its first computation; afterwards JAX refuses, and :func:`configure`
  says so (once) and carries on with what JAX has.
- ``compile_cache``: XLA's compiled programs kept on disk (JAX's public
  ``jax_compilation_cache_dir``), so a new process (each command, each
  notebook kernel) does not compile the sampler again. An unusable folder
  (read-only or missing home) turns the cache off with one warning: nothing
  fails for it.

Processes share the folder safely. JAX's own file cache writes an entry in
place, under its final name, and reads it without a lock: a process that
reads while another writes gets half an entry (measured with two processes
on one folder: 18 of 3,013 reads of 8 MB entries were torn). JAX's zlib
frames catch a torn entry (a warning, then a compilation), but XLA loads
whatever decompresses without checking it, and a damaged executable kills
the process with SIGSEGV or SIGILL (a notebook's "kernel died"): entries
compressed without a checksum (zstd, JAX's codec when ``zstandard`` is
installed or on Python 3.14), or damaged where the frame still checks out.
So :func:`configure` gives JAX a cache of its own (:func:`_safe_file_cache`):
an entry is written to a temporary file and renamed into place (a reader
sees a whole entry or none), carries the sha256 of its bytes (an entry that
does not match is a miss, compiled again and replaced), and lives in a
subfolder named after this machine's CPU (a home folder shared with a
machine of another CPU never hands over code built for that CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError, warn

#: Environment variable naming the compile-cache folder (``0``/``off`` turns it off).
CACHE_ENV = "BAYES_SLOTH_XLA_CACHE"
_OFF = ("0", "off", "false", "no")

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warn(message)


def default_cache_dir() -> Path | None:
    """``$BAYES_SLOTH_XLA_CACHE``, else the user cache (``~/.cache/bayes_sloth/xla`` on Linux); None if off."""
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() in _OFF:
        return None
    if setting:
        return Path(setting)
    import pooch

    return Path(pooch.os_cache("bayes_sloth")) / "xla"


#: First bytes of an entry of :func:`_safe_file_cache`: the format, then the sha256 of the payload.
_ENTRY_MAGIC = b"bayes_sloth-xla-entry-1\n"


def cpu_tag() -> str:
    """A short name for this machine's kind of CPU (architecture, model, feature flags): compiled code is
    kept per kind, since code built for one CPU may use instructions another lacks."""
    import hashlib
    import platform

    text = platform.machine() + "|" + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            info = fh.read()
        for key in ("model name", "flags", "Features", "CPU implementer", "CPU part"):
            line = next((ln for ln in info.splitlines() if ln.split(":")[0].strip() == key), "")
            text += "|" + line.partition(":")[2].strip()
    except OSError:
        pass
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _safe_file_cache(folder: Path):
    """JAX's persistent-cache interface over ``folder``, safe for many processes at once (see the module's
    docstring): atomic publication by rename, a sha256 per entry, nothing read that a writer did not finish."""
    import contextlib
    import hashlib
    import tempfile

    from jax._src.compilation_cache_interface import CacheInterface

    class SafeFileCache(CacheInterface):
        def __init__(self, path: Path):
            self._path = Path(path)
            self._path.mkdir(parents=True, exist_ok=True)

        def _file(self, key: str) -> Path:
            if not key or "/" in key or os.sep in key:
                raise ValueError(f"bad compile-cache key {key!r}")
            return self._path / f"{key}.entry"

        def get(self, key: str):
            try:
                raw = self._file(key).read_bytes()
            except FileNotFoundError:
                return None
            n = len(_ENTRY_MAGIC)
            if raw[:n] != _ENTRY_MAGIC or hashlib.sha256(raw[n + 32:]).digest() != raw[n:n + 32]:
                return None  # not whole or damaged: a miss; the program is compiled again and the entry replaced
            return raw[n + 32:]

        def put(self, key: str, value: bytes) -> None:
            target = self._file(key)
            if self.get(key) is not None:
                return
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:40]}.", suffix=".part", dir=self._path)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_ENTRY_MAGIC + hashlib.sha256(value).digest() + bytes(value))
                os.replace(tmp, target)  # atomic: readers see the old entry, or none, or this one whole
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

        def clear(self) -> None:
            for entry in self._path.glob("*.entry"):
                with contextlib.suppress(OSError):
                    entry.unlink()

    return SafeFileCache(folder)


def _install_safe_cache(folder: Path) -> bool:
    """Make :func:`_safe_file_cache` over ``folder / cpu_tag()`` JAX's persistent cache; False where this JAX
    does not have the cache hook it is plugged into (then nothing is changed)."""
    try:
        from jax._src import compilation_cache as cc
    except ImportError:
        return False
    if not all(hasattr(cc, name) for name in ("_cache", "_cache_initialized", "_cache_initialized_mutex")):
        return False
    try:
        cache = _safe_file_cache(folder / cpu_tag())
    except (ImportError, OSError):
        return False
    with cc._cache_initialized_mutex:
        cc._cache = cache
        cc._cache_initialized = True
    return True


def compile_cache():
    """The persistent-cache object JAX uses in this process (None when the cache is off)."""
    try:
        from jax._src import compilation_cache as cc
    except ImportError:
        return None
    return getattr(cc, "_cache", None)


def _usable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def configure(cpu_devices: int | str | None = "auto", compile_cache: str | os.PathLike | bool | None = True) -> dict:
    """Set JAX's CPU device count and compile cache for this process; returns what is in effect.

    Parameters
    ----------
    cpu_devices : int, "auto" or None
        CPU devices for parallel chains: "auto" one per core, an int that
        many, None leaves JAX's setting alone. A count the user already gave
        (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
        ``jax_num_cpu_devices``) is kept. Once JAX has run a computation the
        count is fixed: a warning then says how many devices chains get and
        how to change it (call this first, before anything uses JAX).
    compile_cache : True, False, None or a folder
        True: keep compiled programs in :func:`default_cache_dir`; a folder:
        there (in a subfolder per kind of CPU, :func:`cpu_tag`, written
        safely for processes that share it: see the module's docstring);
        False or None: leave JAX's setting alone (off unless the user set
        one). A cache folder the user already gave JAX is kept, with JAX's
        own cache. A folder that cannot be created or written turns the
        cache off with a warning.

    Returns
    -------
    dict with ``cpu_devices`` (devices JAX has or will have) and
    ``compile_cache`` (the folder in use, or None).
    """
    import jax

    out = {"cpu_devices": None, "compile_cache": None}
    if cpu_devices is not None:
        if cpu_devices == "auto":
            n = os.cpu_count() or 1
        elif isinstance(cpu_devices, (int,)) and not isinstance(cpu_devices, bool) and cpu_devices >= 1:
            n = int(cpu_devices)
        else:

            raise InputError(f"cpu_devices must be a positive integer, 'auto' or None, got {cpu_devices!r}")
        user_flag = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        if user_flag or jax.config.jax_num_cpu_devices not in (-1, None, n):
            out["cpu_devices"] = "user setting kept"
        else:
            try:
                jax.config.update("jax_num_cpu_devices", n)
                out["cpu_devices"] = n
            except RuntimeError:  # JAX has started its backends: the count is fixed for this process
                have = len(jax.devices("cpu"))
                out["cpu_devices"] = have
                if have < n:
                    _warn_once("devices", (
                        f"JAX started before bayes_sloth.configure() with {have} CPU device(s); chains run on "
                        f"{have} device(s), not {n}. Call bayes_sloth.configure() before anything uses JAX "
                        "(first thing in the notebook or script; restart the kernel) to run them in parallel."))
    if compile_cache not in (False, None):
        if jax.config.jax_compilation_cache_dir:
            out["compile_cache"] = jax.config.jax_compilation_cache_dir
        else:
            folder = default_cache_dir() if compile_cache is True else Path(compile_cache)
            if folder is not None:
                if _usable_folder(folder) and _usable_folder(folder / cpu_tag()):
                    if not _install_safe_cache(folder):
                        _warn_once("cache-hook", "this JAX has no persistent-cache hook that bayes_sloth knows; the "
                                                 "compile cache stays off (JAX's own file cache is not safe for "
                                                 "processes sharing a folder): programs are compiled in memory")
                        return out
                    jax.config.update("jax_compilation_cache_dir", str(folder))
                    # the small programs too (log-likelihood, forecasts): each is a second of compilation
                    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
                    out["compile_cache"] = str(folder)
                else:
                    _warn_once("cache", f"cannot use the compile cache folder {str(folder)!r} (not writable); "
                                        f"compiling in memory only (set ${CACHE_ENV} to a writable folder, or 0)")
    return out


def warn_sequential_chains(chains: int) -> None:
    """Say once per process when chains will run one after another on a multi-core CPU."""
    cores = os.cpu_count() or 1
    _warn_once("sequential", (
        f"{chains} chains will run one after another: JAX has 1 CPU device on this {cores}-core machine. "
        "Call bayes_sloth.configure() first thing in the session (before anything uses JAX) to run them in "
        "parallel, or pass chain_method='sequential' to silence this."))
