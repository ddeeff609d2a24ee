r"""Sweeps in parallel: folds, cells, K, link variants and seeds, through joblib.

Every piece of a sweep (a leave-family-out fold, a fit at one K, one seed) is
independent, so a sweep is a list of tasks handed to `joblib
<https://joblib.readthedocs.io>`_: its process pool (loky) on one machine,
or a Dask (or Ray) cluster through joblib's backends, with nothing of a
scheduler written here. :func:`run` is the one entry point; the package's
own sweeps (``evaluate(..., n_jobs=...)``, ``evaluate_cells``, the
benchmark scripts' ``--jobs``) go through it.

- ``n_jobs=1`` runs the tasks one after another in this process: nothing is
  started, nothing is configured (the process keeps what
  :func:`bayes_sloth.configure` set).
- Otherwise each task runs in a worker process, which first configures its
  own JAX (:func:`configure_worker`: ``bayes_sloth.configure(cpu_devices=d)``
  before JAX starts there) with ``d = cores // workers`` on its machine, at
  least 1 (:func:`worker_devices`), so that the workers of a machine share
  its cores instead of each taking all of them. In a process pool on this
  machine it also takes this process's compile-cache folder (a Dask worker
  uses its own default folder). JAX's 64-bit mode must be the same in the
  workers as here (set ``JAX_ENABLE_X64=1`` in the environment for both):
  a task refuses to run otherwise.
- Results come back in the order of the tasks, whatever order they finish in.

Results do not depend on how the work is spread: :func:`bayes_sloth.workflows.evaluation.evaluate`
pins the chain layout of its fold fits to one that is the same in every
process (see its docstring), so a fold gives the same numbers bit for bit
serially and in any worker.

On this machine (a process pool, ``loky``)::

    res = bayes_sloth.workflows.evaluation.evaluate(benchmark_set="leaderboard_v2", n_jobs=4)

On a cluster (Dask; joblib's ``"dask"`` backend sends each task to a worker)::

    from distributed import Client
    import joblib
    import bayes_sloth as bs
    from bayes_sloth.workflows.evaluation import evaluate_cells

    client = Client("tcp://scheduler:8786")          # the cluster's scheduler
    with joblib.parallel_config(backend="dask"):
        res = bs.evaluation.evaluate(benchmark_set="leaderboard_v2", n_jobs=-1)
        cells = evaluate_cells([("leaderboard_v1", 1), ("leaderboard_v2", 1)], n_jobs=-1)

Workers need the package and the data. The package: every worker's
environment has the same ``bayes_sloth``, JAX, NumPyro and NumPy versions as
this process (the same versions on the same kind of CPU give the same
numbers), e.g. ``pip install "bayes_sloth[cluster]"`` (from a wheel or the
source tree) in the image or virtual environment the workers start from,
then ``dask worker tcp://scheduler:8786 --nworkers 4 --nthreads 1`` on each
machine; workers import the package when a task arrives, and configure JAX
then. The data: the Sloth table ships inside the package, so the paper's
protocol reads nothing else; a table of your own is read in this process and
sent to the workers with each task (a leaderboard is a few hundred rows), so
no shared file system is needed. Each worker keeps compiled programs in its
own cache folder (``$BAYES_SLOTH_XLA_CACHE``, else the user cache; a folder
shared by the workers compiles once per device count). With several threads
per Dask worker the tasks of one worker share its devices; one thread per
worker process is the simple layout.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..core.config import configure
from ..core.errors import InputError


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says, else the CPU count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_devices(n_workers: int, cores: int | None = None) -> int:
    """JAX CPU devices for each of ``n_workers`` workers sharing ``cores`` cores: ``cores // n_workers``, at least 1."""
    cores = available_cores() if cores is None else int(cores)
    return max(1, cores // max(1, int(n_workers)))


_WORKER_STATE: dict = {}


def configure_worker(cpu_devices: int, compile_cache=True) -> dict:
    """Configure JAX in a worker process before anything there uses it: ``bayes_sloth.configure(cpu_devices=...)``.

    Called by :func:`run` in each worker before its task; once per process
    (later calls return the first call's result). Returns what
    :func:`bayes_sloth.configure` returned, with the pid.
    """
    key = "configured"
    if key not in _WORKER_STATE:

        _WORKER_STATE[key] = dict(configure(cpu_devices=int(cpu_devices), compile_cache=compile_cache),
                                  pid=os.getpid())
    return _WORKER_STATE[key]


@dataclass(frozen=True)
class _Setup:
    """What a worker needs to configure itself: passed with every task."""

    local_workers: int  # concurrent tasks on this machine (process pools)
    per_host: tuple = ()  # ((host, concurrent tasks), ...) for a Dask cluster
    devices: int | None = None  # the caller's fixed choice
    compile_cache: Any = True
    x64: bool = False

    def devices_here(self) -> int:
        if self.devices is not None:
            return int(self.devices)
        workers = self.local_workers
        if self.per_host:
            try:
                from distributed import get_worker
                from distributed.comm import get_address_host

                workers = dict(self.per_host).get(get_address_host(get_worker().address), workers)
            except (ImportError, ValueError):
                pass
        return worker_devices(workers)


def _call(func, item, setup: _Setup):
    """A task in a worker: configure JAX there, then run it."""
    configure_worker(setup.devices_here(), setup.compile_cache)
    import jax

    if bool(jax.config.jax_enable_x64) != setup.x64:
        # float32 here and float64 in the caller (or the reverse) would give other numbers, silently
        raise InputError(
            f"JAX's 64-bit mode is {'on' if setup.x64 else 'off'} in the calling process but "
            f"{'on' if not setup.x64 else 'off'} in worker {os.getpid()}: set it the same way in both, "
            "through the environment (JAX_ENABLE_X64=1) before the workers start")
    return func(item)


def _setup_for(backend, n_workers: int, devices, compile_cache) -> _Setup | None:
    """How workers configure themselves, or None when tasks run in this process (threads)."""
    if getattr(backend, "uses_threads", False):
        return None  # threads share this process's JAX and devices: nothing to configure
    import jax

    client = getattr(backend, "client", None)
    if compile_cache is True and client is None and jax.config.jax_compilation_cache_dir:
        compile_cache = jax.config.jax_compilation_cache_dir  # on this machine: the folder this process uses
    per_host = ()
    if client is not None:  # Dask: tasks at once on each machine = the threads of its workers
        counts = Counter()
        for w in client.scheduler_info(n_workers=-1)["workers"].values():
            counts[w["host"]] += int(w.get("nthreads", 1))
        per_host = tuple(sorted(counts.items()))
    return _Setup(local_workers=n_workers, per_host=per_host, devices=devices, compile_cache=compile_cache,
                  x64=bool(jax.config.jax_enable_x64))


def run(
    func: Callable[[Any], Any],
    items: Iterable,
    n_jobs: int | None = 1,
    *,
    devices: int | None = None,
    compile_cache=True,
    on_result: Callable[[int, Any], None] | None = None,
) -> list:
    """``[func(item) for item in items]``, the items in parallel workers through joblib.

    Parameters
    ----------
    func : callable
        A module-level function (workers import it by name) of one item.
    items : iterable
        The tasks; each is sent to a worker (pickled), and so is what ``func`` returns.
    n_jobs : int or None
        1: one after another in this process (nothing configured, no pool).
        Otherwise joblib's meaning with the active backend
        (``joblib.parallel_config``): -1 every core with the default
        process pool (loky); with the ``"dask"`` backend, every worker thread
        of the cluster whatever the number.
    devices : int, optional
        JAX CPU devices of each worker; default ``cores // workers`` on the
        worker's machine, at least 1 (:func:`worker_devices`).
    compile_cache : True, False or a folder
        Workers' compile cache (:func:`bayes_sloth.configure`); True: in a
        process pool, this process's folder if it has one; else (and on
        Dask) each worker's default.
    on_result : callable(index, result), optional
        Called in this process as each result arrives (in task order), e.g. for progress.

    Returns
    -------
    list of the results, in the order of ``items``.
    """
    items = list(items)
    if devices is not None and (not isinstance(devices, int) or isinstance(devices, bool) or devices < 1):
        raise InputError(f"devices must be a positive integer or None, got {devices!r}")
    if n_jobs is not None and (not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0):
        raise InputError(f"n_jobs must be a non-zero integer (1: serial, -1: every core) or None, got {n_jobs!r}")
    if n_jobs == 1 or len(items) == 0:
        return _serial(func, items, on_result)
    import joblib
    from joblib.parallel import get_active_backend

    backend, configured = get_active_backend()
    wanted = n_jobs if n_jobs is not None else configured
    if wanted is None:
        wanted = getattr(backend, "default_n_jobs", 1)
    dask = getattr(backend, "client", None) is not None
    if wanted == 1 and not dask:
        return _serial(func, items, on_result)
    workers = min(backend.effective_n_jobs(wanted), len(items))
    setup = _setup_for(backend, workers, devices, compile_cache)
    tasks = (joblib.delayed(func)(it) if setup is None else joblib.delayed(_call)(func, it, setup) for it in items)
    out = []
    for i, res in enumerate(joblib.Parallel(n_jobs=wanted, batch_size=1, return_as="generator")(tasks)):
        if on_result is not None:
            on_result(i, res)
        out.append(res)
    return out


def _serial(func, items, on_result):
    out = []
    for i, it in enumerate(items):
        res = func(it)
        if on_result is not None:
            on_result(i, res)
        out.append(res)
    return out


def __getattr__(name: str):
    # deprecated forwarding (not a dependency: evaluation builds on this module, never the reverse)
    if name == "evaluate_cells":
        import importlib
        import warnings

        warnings.warn("bayes_sloth.sweeps.evaluate_cells moved to bayes_sloth.evaluation.evaluate_cells",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("bayes_sloth.workflows.evaluation").evaluate_cells
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
