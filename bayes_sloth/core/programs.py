"""Compiled programs that a long session does not pile up: ``jax.jit`` with a bound on what it keeps.

``jax.jit`` keeps the program it compiled for every new combination of
static arguments, input shapes and devices, for as long as the jitted
function lives. The package's programs live for the whole process (a module
function, or a sampler kept for the next fit of the same structure), and
each leave-family-out fold, each stacking member, each new leaderboard is a
new shape. XLA's CPU programs are not small: a NUTS sampler is some
thousands of machine-code kernels, each mapped into memory on its own
(about 1,700 memory maps per compiled chain program of the smallest law,
measured in ``/proc/self/maps``). Linux allows a process 65,530 maps
(``vm.max_map_count``), so about ten fits of different shapes in one
process (a notebook, an ``evaluate`` run, the test suite) ran out, and the
next compilation or cache read crashed the process with a segmentation
fault: the kernel, and everything in it, lost.

:func:`bounded_jit` is ``jax.jit`` that keeps at most ``keep`` compiled
specializations: a call that would make one more first releases all it
holds (``clear_cache``). A program needed again is compiled again, or read
back from the on-disk compile cache (:func:`bayes_sloth.configure`), which
takes a second where the fit takes tens.
"""

from __future__ import annotations

import threading

import jax

#: Specializations a module-level program keeps (a forecast program is ~150 memory maps; a loop over
#: families or folds compiles one per shape, and a ninth releases the eight).
KEEP = 8


def _signature(static: tuple, args: tuple, kwargs: dict):
    """What ``jax.jit`` specializes on, near enough: static values, the tree, each leaf's type, shape,
    dtype and (for JAX arrays) placement. Two calls with one signature share one compiled program."""
    dynamic = tuple(a for i, a in enumerate(args) if i not in static)
    leaves, tree = jax.tree.flatten((dynamic, kwargs))

    def leaf(v):
        shape = getattr(v, "shape", None)
        if shape is None:
            return (type(v),)
        sharding = getattr(v, "sharding", None) if isinstance(v, jax.Array) else None
        return (tuple(shape), str(getattr(v, "dtype", "")), sharding, getattr(v, "weak_type", False))

    return (tuple(args[i] for i in static if i < len(args)), tree, tuple(leaf(v) for v in leaves))


class BoundedJit:
    """``jax.jit(fun, static_argnums=...)`` keeping at most ``keep`` compiled specializations."""

    def __init__(self, fun, static_argnums=(), keep: int = KEEP):
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self._static = tuple(static_argnums)
        self._jit = jax.jit(fun, static_argnums=self._static)
        self._seen: set = set()  # signatures compiled since the last release
        self._lock = threading.RLock()  # parallel chains call one program from a host thread per device
        self.keep = keep
        self.__wrapped__ = fun
        self.__doc__ = getattr(fun, "__doc__", None)
        self.__name__ = getattr(fun, "__name__", "program")

    def __call__(self, *args, **kwargs):
        sig = _signature(self._static, args, kwargs)
        with self._lock:
            if sig not in self._seen:
                if len(self._seen) >= self.keep:
                    self.release()
                self._seen.add(sig)
        return self._jit(*args, **kwargs)

    def release(self) -> None:
        """Let go of every compiled specialization (they are compiled again, or read from disk, when next needed)."""
        with self._lock:
            self._jit.clear_cache()
            self._seen.clear()

    @property
    def n_kept(self) -> int:
        """Specializations held now."""
        return len(self._seen)


def bounded_jit(fun=None, *, static_argnums=(), keep: int = KEEP):
    """:class:`BoundedJit` as a decorator (``@bounded_jit(static_argnums=0)``) or a call (``bounded_jit(f)``)."""
    if fun is None:
        return lambda f: BoundedJit(f, static_argnums=static_argnums, keep=keep)
    return BoundedJit(fun, static_argnums=static_argnums, keep=keep)


def release(programs) -> None:
    """Release the compiled specializations of every :class:`BoundedJit` in a (nested) tuple or list."""
    for p in programs if isinstance(programs, (tuple, list)) else (programs,):
        if isinstance(p, (tuple, list)):
            release(p)
        elif isinstance(p, BoundedJit):
            p.release()
        elif hasattr(p, "programs"):
            release(p.programs)


#: Structures kept compiled at once in each :func:`cached` cache. A sampler structure holds a warm-up and a
#: drawing program per device (about 1,700 memory maps each); an evicted one is released at once.
CACHE_SIZE = 2


def cached(cache, key, build):
    """``cache[key]``, built by ``build()`` on a miss; the least recently used entry beyond :data:`CACHE_SIZE`
    is evicted and its programs released (``cache`` is an ``OrderedDict``)."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    while len(cache) >= CACHE_SIZE:
        release(cache.popitem(last=False)[1])
    cache[key] = build()
    return cache[key]
