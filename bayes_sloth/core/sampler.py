"""NUTS: the package's sampler loop, compiled once per model structure.

Chains run in parallel on the CPU's devices (one per core after
:func:`bayes_sloth.configure`; JAX starts with one, and then chains run one
after another, with a warning) and vectorized on a single accelerator. The
chain is a pure function of (key, start, data) built from NumPyro's NUTS
kernel, so refits with new data of the same shape and cross-validation masks
reuse the compiled code (NumPyro's ``MCMC`` driver wraps every run in a fresh
``pmap`` with the data baked in as constants, so it recompiled on every fit).
Chains start from a short variational fit (:mod:`bayes_sloth.core.variational`).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import NUTS, init_to_uniform
from numpyro.infer.util import potential_energy

from .config import warn_sequential_chains
from .diagnostics import RHAT_MAX, rhat_ess
from .errors import InputError
from . import mass
from .mass import as_jax, estimate, rank, to_u, to_x
from .idata import complete_posterior, constrain_draws, model_site_shapes, real_dtype
from .model import OFFSET_FRAME_MAX_BENCHMARKS, ModelSpec, skills_law
from .options import AUTO_TARGET_ACCEPT, SamplerOptions
from .programs import bounded_jit, cached
from .progress import as_reporter
from .sites import checked, simplex_sites
from .variational import INIT_SPREAD, SVI_CACHE, fit_svi, svi_init_params, svi_run, svi_variances

_CHAIN_AXIS = "chains"


def default_chain_method(chains: int) -> str:
    """'vectorized' on an accelerator; 'parallel' over the CPU's devices, or 'sequential' with one device."""
    if jax.default_backend() != "cpu":
        return "vectorized"
    if chains > 1 and jax.local_device_count() > 1:
        return "parallel"
    return "sequential"


def _devices_for(chains: int, method: str) -> int:
    """How many devices parallel chains are spread over: the most, up to one per chain, that divides ``chains``."""
    if method != "parallel":
        return chains
    d = min(chains, jax.local_device_count())
    while chains % d:
        d -= 1
    return d


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings. ``draws`` is kept draws per chain, or "auto": sample in blocks of
    ``block`` draws until the checks pass (R-hat <= 1.01, bulk and tail ESS >= ``target_ess``, no
    divergence) or ``max_draws`` per chain are reached. ``progress`` is None, a
    :class:`~bayes_sloth.core.progress.FitProgress` (told each stage too, and each piece's divergences) or a
    callable ``(chain, iteration, total, phase)``, called about every 5 % of a chain's warm-up and of its draws
    (between the pieces the chain runs in; never from inside a compiled program)."""

    chains: int = SamplerOptions.chains
    warmup: int = SamplerOptions.warmup
    draws: int | str = SamplerOptions.draws
    target_accept: float = AUTO_TARGET_ACCEPT[1]  # a number: 'auto' is resolved before
    max_tree_depth: int = SamplerOptions.max_tree_depth
    chain_method: str | None = SamplerOptions.chain_method
    progress: object = None
    init: str = SamplerOptions.init
    svi_steps: int = 2000
    target_ess: int = SamplerOptions.target_ess
    max_draws: int = SamplerOptions.max_draws
    block: int = 100
    adaptation: str = SamplerOptions.adaptation

    def resolved_chain_method(self) -> str:
        return self.chain_method or default_chain_method(self.chains)

    @property
    def auto(self) -> bool:
        return self.draws == "auto"

    @property
    def lowrank(self) -> bool:
        """Whether the low-rank mass matrix is used: asked for, and a warm-up long enough for both of its phases
        (:data:`LOWRANK_MIN_WARMUP`); a shorter one uses the diagonal."""
        return self.adaptation == "low-rank" and self.warmup >= LOWRANK_MIN_WARMUP


_SAMPLER_CACHE: "OrderedDict[tuple, object]" = OrderedDict()


#: The progress reporter of the sampler now running (host side), heard between pieces of each chain, and the
#: iterations per chain it reports against (the run's, not the compiled structure's: draws="auto" shares
#: its programs with a fit of ``block`` draws).
_PROGRESS: list = [None, 0]


#: A chain runs as pieces of about 1/PIECES of its warm-up or of its draws, one compiled program per
#: kind of piece; progress is reported from the host between pieces (see :func:`_chain_programs`).
PIECES = 20


def _piece(n: int, pieces: int = PIECES) -> int:
    """Iterations per piece of a run of ``n`` iterations: the largest divisor of ``n`` that is at most
    ``ceil(n / pieces)`` (every piece the same length, so one program runs them all; 0 for no run)."""
    if n <= 0:
        return 0
    cap = -(-n // pieces)
    return max(d for d in range(1, cap + 1) if n % d == 0)


def _chain_programs(spec: ModelSpec, cfg: SamplerConfig):
    """One NUTS chain as three pure functions: ``start(key, init, data) -> state``,
    ``warm(state, data, n) -> (state, leapfrog steps)`` (n warm-up iterations) and
    ``draw(state, data, n) -> (state, (z, stats))`` (n kept draws); ``n`` is static.

    Warm-up (step size and mass matrix adaptation, NumPyro's windowed scheme
    over ``cfg.warmup`` iterations) runs from the state ``start`` returns and
    can be cut into pieces: the adaptation's schedule lives in the kernel
    (set up for ``cfg.warmup`` iterations by ``kernel.init``) and its progress
    in the state, so ``warm`` twice for n/2 is ``warm`` once for n. Drawing
    continues from the state warm-up leaves, so draws can come in blocks
    (``draws="auto"``) or all at once. The data are an argument, not a
    constant baked into the program: refits with new data of the same shape
    and cross-validation masks reuse the compiled code.

    No program calls back to the host: a program with a host callback is
    never kept in XLA's on-disk cache, so a sampler that reported its
    progress from inside compiled every fit of every new process again (25 s
    of a small fit). The host runs the pieces and reports between them.

    ``init`` is None (start uniformly in (-2, 2), identity mass matrix) or
    ``{"z": start, "inverse_mass": diagonal}``, the diagonal in the order of
    ``jax.flatten_util.ravel_pytree(start)``. A diagonal taken from the
    variational fit's variances spares the first adaptation windows their
    longest trajectories: with the identity, the sampler starts with a step
    size fitted to the narrowest direction and needs hundreds of leapfrog
    steps per iteration to cross the widest.
    """

    def make_kernel(inverse_mass=None):
        return NUTS(
            partial(skills_law, spec),
            target_accept_prob=cfg.target_accept,
            max_tree_depth=cfg.max_tree_depth,
            init_strategy=init_to_uniform(radius=2.0),
            inverse_mass_matrix=inverse_mass,
        )

    def start(key, init, data):
        kernel = make_kernel(None if init is None else init["inverse_mass"])
        return kernel.init(key, cfg.warmup, None if init is None else init["z"], model_args=(), model_kwargs=data)

    def resumed(state, data):
        # a kernel whose transition function has the fit's settings and warm-up schedule (what
        # kernel.init sets up; its initial state is not used: the inverse mass matrix is in `state`)
        kernel = make_kernel()
        kernel.init(state.rng_key, cfg.warmup, state.z, model_args=(), model_kwargs=data)
        return kernel

    def warm(state, data, n):
        kernel = resumed(state, data)

        def one(state, _):
            state = kernel.sample(state, (), data)
            return state, state.num_steps

        state, steps = jax.lax.scan(one, state, None, length=n)
        return state, jnp.sum(steps)

    def draw(state, data, n):
        kernel = resumed(state, data)

        def one(state, _):
            state = kernel.sample(state, (), data)
            return state, (state.z, {"diverging": state.diverging, "num_steps": state.num_steps,
                                     "energy": state.energy, "lp": -state.potential_energy,
                                     "acceptance_rate": state.accept_prob,
                                     "step_size": state.adapt_state.step_size})

        return jax.lax.scan(one, state, None, length=n)

    return start, warm, draw


#: Share of the warm-up spent before the low-rank mass matrix is estimated (``adaptation="low-rank"``), and the
#: share of that first phase whose draws and gradients it is estimated from (its last iterations).
FIRST_PHASE, COLLECTED = 0.4, 0.5


#: Shortest warm-up with which ``adaptation="low-rank"`` estimates its correction (80 iterations before it, 40
#: of them collected per chain, and 120 after it to adapt the step size and the diagonal in the new
#: coordinates); a shorter warm-up uses the diagonal mass matrix alone.
LOWRANK_MIN_WARMUP = 200


def warmup_phases(warmup: int) -> tuple[int, int]:
    """Iterations of the two warm-up phases of ``adaptation="low-rank"`` (``warmup >= LOWRANK_MIN_WARMUP``):
    (before, after) the estimate."""
    w1 = min(max(int(round(FIRST_PHASE * warmup)), 60), warmup - 20)
    return w1, warmup - w1


def _lowrank_programs(spec: ModelSpec, cfg: SamplerConfig):
    """One NUTS chain in two warm-up phases and the preconditioned coordinates of :mod:`bayes_sloth.core.mass`.

    Phase 1 is the diagonal warm-up of :func:`_chain_programs` over its own schedule (``w1`` iterations) that
    also returns each iteration's position and potential gradient (flattened as ``ravel_pytree`` flattens the
    state); the host pools them over chains and estimates the preconditioner ``pre``. Phase 2 runs NUTS on
    u with ``x = to_x(pre, u)`` (the potential of u is that of x), warming up its step size and a diagonal
    over ``w2`` iterations; ``draw`` returns the draws mapped back to x, as the sites' unconstrained values.
    ``pre`` is an argument (shared by the chains), never a constant of the programs.
    """
    w1, w2 = warmup_phases(cfg.warmup)
    model = partial(skills_law, spec)
    settings = dict(target_accept_prob=cfg.target_accept, max_tree_depth=cfg.max_tree_depth)

    def model_kernel(inverse_mass=None):
        return NUTS(model, init_strategy=init_to_uniform(radius=2.0), inverse_mass_matrix=inverse_mass, **settings)

    def u_kernel(pre, data, template):
        _, unravel = ravel_pytree(template)

        def potential(u):
            return potential_energy(model, (), data, unravel(to_x(pre, ravel_pytree(u)[0])))

        return NUTS(potential_fn=potential, **settings)

    def start1(key, init, data):
        kernel = model_kernel(None if init is None else init["inverse_mass"])
        return kernel.init(key, w1, None if init is None else init["z"], model_args=(), model_kwargs=data)

    def warm1(state, data, n):
        kernel = model_kernel()
        kernel.init(state.rng_key, w1, state.z, model_args=(), model_kwargs=data)

        def one(state, _):
            state = kernel.sample(state, (), data)
            return state, (state.num_steps, ravel_pytree(state.z)[0], ravel_pytree(state.z_grad)[0])

        state, (steps, z, g) = jax.lax.scan(one, state, None, length=n)
        return state, (jnp.sum(steps), z, g)

    def start2(state, pre, data):
        flat, unravel = ravel_pytree(state.z)
        kernel = u_kernel(pre, data, state.z)
        return kernel.init(jax.random.fold_in(state.rng_key, 2), w2, unravel(to_u(pre, flat)), model_args=(),
                           model_kwargs=None)

    def resumed(state, pre, data):
        kernel = u_kernel(pre, data, state.z)
        kernel.init(state.rng_key, w2, state.z, model_args=(), model_kwargs=None)
        return kernel

    def warm2(state, pre, data, n):
        kernel = resumed(state, pre, data)

        def one(state, _):
            state = kernel.sample(state, (), None)
            return state, state.num_steps

        state, steps = jax.lax.scan(one, state, None, length=n)
        return state, jnp.sum(steps)

    def draw2(state, pre, data, n):
        kernel = resumed(state, pre, data)
        _, unravel = ravel_pytree(state.z)

        def one(state, _):
            state = kernel.sample(state, (), None)
            x = unravel(to_x(pre, ravel_pytree(state.z)[0]))
            return state, (x, {"diverging": state.diverging, "num_steps": state.num_steps,
                               "energy": state.energy, "lp": -state.potential_energy,
                               "acceptance_rate": state.accept_prob, "step_size": state.adapt_state.step_size})

        return jax.lax.scan(one, state, None, length=n)

    return start1, warm1, start2, warm2, draw2


def _report(progress, chains, states, total: int, warmup: int, diverging=None, offset: int = 0) -> None:
    """Tell ``progress`` where each chain is (``states.i`` + ``offset``, its iterations so far; waits for them)
    and how many of the draws of the piece just run diverged (``diverging``: the piece's flags, per chain)."""
    its = np.atleast_1d(np.asarray(jax.device_get(states.i))) + offset
    div = np.zeros(len(its), dtype=int) if diverging is None else \
        np.asarray(jax.device_get(diverging)).reshape(len(its), -1).sum(axis=1)
    for chain, i, d in zip(chains, its, div):
        progress(int(chain), int(i), int(total), "warm-up" if int(i) <= int(warmup) else "sampling",
                 divergences=int(d))


def _vmapped(fn, n_mapped: int):
    """``fn`` vectorized over the leading axis of its first ``n_mapped`` arguments (the others shared)."""
    def vectorized(*args):
        return jax.vmap(fn, in_axes=(0,) * n_mapped + (None,) * (len(args) - n_mapped))(*args)
    return vectorized


def _spread(programs: dict, run, method: str, n_devices: int, n_mapped: int):
    """Run ``run(programs, chains, *args)`` over a leading chain axis of the first ``n_mapped`` arguments
    (the rest are shared); ``programs`` maps a name to ``(fn, n_mapped_args)``, jitted here.

    "parallel": the chains placed on ``n_devices`` CPU devices, each device
    running its block of chains back to back, all devices at once;
    "vectorized": each program ``jax.vmap``-ed over the chains, ``run`` once
    for all (an accelerator); "sequential": one chain after another. "parallel"
    and "sequential" run the same compiled programs per chain, so they give
    the same draws bit for bit. ``chains`` is the list of chain numbers ``run``
    works on.
    """
    if method == "vectorized":
        vec = {k: bounded_jit(_vmapped(fn, m), keep=1) for k, (fn, m) in programs.items()}

        def vectorized(*args):
            C = jax.tree.leaves(args[0])[0].shape[0]
            return run(vec, list(range(C)), *args)

        vectorized.programs = tuple(vec.values())
        return vectorized
    # one shape at a time, on each device it runs on (a new leaderboard's shape releases the last one's)
    one = {k: bounded_jit(fn, keep=n_devices if method == "parallel" else 1) for k, (fn, _) in programs.items()}

    def chain_args(args, c):
        return (*[jax.tree.map(lambda v: v[c], a) for a in args[:n_mapped]], *args[n_mapped:])

    if method == "parallel":
        devices = jax.local_devices(backend="cpu")[:n_devices]

        def parallel(*args):
            # chain c runs on device c // (C / n_devices), through the very programs a lone chain runs
            # ("sequential"), so the draws are the sequential method's bit for bit however many devices
            # there are; one host thread per device works through that device's chains (XLA releases
            # the interpreter while it computes), so the devices run side by side
            from concurrent.futures import ThreadPoolExecutor

            C = jax.tree.leaves(args[0])[0].shape[0]
            per = C // len(devices)

            def run_device(d):
                return [jax.device_get(run(one, [c], *jax.device_put(chain_args(args, c), devices[d])))
                        for c in range(d * per, (d + 1) * per)]

            with ThreadPoolExecutor(len(devices)) as pool:
                outs = [o for device_outs in pool.map(run_device, range(len(devices))) for o in device_outs]
            return jax.tree.map(lambda *v: np.stack([np.asarray(x) for x in v]), *outs)

        parallel.programs = tuple(one.values())
        return parallel

    def sequential(*args):
        C = jax.tree.leaves(args[0])[0].shape[0]
        outs = [run(one, [c], *chain_args(args, c)) for c in range(C)]
        return jax.tree.map(lambda *v: jnp.stack(v), *outs)

    sequential.programs = tuple(one.values())
    return sequential


def get_sampler(spec: ModelSpec, cfg: SamplerConfig, method: str, n_devices: int = 1):
    """The warm-up and drawing runs for this structure and settings, built once and reused.

    Returns ``(warm, draw)``: ``warm(keys, inits, data) -> (states, warmup_steps)`` and
    ``draw(states, data) -> (states, (z, stats))``, each over a leading chain axis
    (see :func:`_spread` for ``method``; with "parallel", device d runs chains
    ``d * C / n_devices`` to ``(d + 1) * C / n_devices - 1``). ``draw`` keeps ``cfg.draws``
    draws, or ``cfg.block`` with ``draws="auto"``. Each runs in pieces of about 5 % (:func:`_piece`);
    ``cfg.progress``, if given, hears from each chain after every piece. The reporter is not part of
    the compiled programs: fits with and without one share them, and draw the same.
    """
    n_draws = cfg.block if cfg.auto else int(cfg.draws)
    w_piece, d_piece = _piece(cfg.warmup), _piece(n_draws)
    key = (spec, cfg.warmup, n_draws, cfg.target_accept, cfg.max_tree_depth, method, n_devices)

    def build():
        start, warm, draw = _chain_programs(spec, cfg)

        def warm_run(P, chains, keys, inits, data):
            progress, total = _PROGRESS
            state = P["start"](keys, inits, data)
            steps = jnp.zeros(jnp.shape(keys)[:-1], jnp.int32)
            for _ in range(cfg.warmup // w_piece if w_piece else 0):
                state, s = P["warm"](state, data)
                steps = steps + s
                if progress is not None:
                    _report(progress, chains, state, total, cfg.warmup)
            return state, steps

        def draw_run(P, chains, state, data):
            progress, total = _PROGRESS
            pieces = []
            for _ in range(n_draws // d_piece):
                state, out = P["draw"](state, data)
                pieces.append(out)
                if progress is not None:
                    _report(progress, chains, state, total, cfg.warmup, out[1]["diverging"])
            axis = 0 if method != "vectorized" else 1  # the draw axis (after the chain axis when vectorized)
            return state, jax.tree.map(lambda *v: jnp.concatenate(v, axis=axis), *pieces)

        return (_spread({"start": (start, 2), "warm": (partial(warm, n=w_piece), 1)}, warm_run, method, n_devices, 2),
                _spread({"draw": (partial(draw, n=d_piece), 1)}, draw_run, method, n_devices, 1))

    if cfg.lowrank:
        return cached(_SAMPLER_CACHE, key + ("low-rank",), lambda: _build_lowrank(spec, cfg, method, n_devices))
    return cached(_SAMPLER_CACHE, key, build)


def _build_lowrank(spec: ModelSpec, cfg: SamplerConfig, method: str, n_devices: int):
    """``(warm1, warm2, draw)`` runs of :func:`_lowrank_programs` over a leading chain axis (as :func:`get_sampler`):
    ``warm1(keys, inits, data) -> (states, steps, z, grad)`` with the positions and gradients of the collected
    iterations, ``warm2(states, pre, data) -> (states, steps)``, ``draw(states, pre, data) -> (states, (z, stats))``."""
    n_draws = cfg.block if cfg.auto else int(cfg.draws)
    total = cfg.warmup + (cfg.max_draws if cfg.auto else int(cfg.draws))
    w1, w2 = warmup_phases(cfg.warmup)
    p1, p2, d_piece = _piece(w1), _piece(w2), _piece(n_draws)
    keep_from = w1 - max(int(round(COLLECTED * w1)), 2)
    start1, warm1, start2, warm2, draw2 = _lowrank_programs(spec, cfg)
    axis = 0 if method != "vectorized" else 1  # the iteration axis (after the chain axis when vectorized)

    def warm1_run(P, chains, keys, inits, data):
        progress = _PROGRESS[0]
        state = P["start1"](keys, inits, data)
        steps = jnp.zeros(jnp.shape(keys)[:-1], jnp.int32)
        zs, gs = [], []
        for k in range(w1 // p1 if p1 else 0):
            state, (s, z, g) = P["warm1"](state, data)
            steps = steps + s
            if (k + 1) * p1 > keep_from:
                zs.append(z)
                gs.append(g)
            if progress is not None:
                _report(progress, chains, state, total, cfg.warmup)
        cat = (lambda v: jnp.concatenate(v, axis=axis))
        return state, steps, cat(zs), cat(gs)

    def warm2_run(P, chains, state, pre, data):
        progress = _PROGRESS[0]
        state = P["start2"](state, pre, data)
        steps = jnp.zeros(jnp.shape(state.i), jnp.int32)
        for _ in range(w2 // p2 if p2 else 0):
            state, s = P["warm2"](state, pre, data)
            steps = steps + s
            if progress is not None:
                _report(progress, chains, state, total, cfg.warmup, offset=w1)
        return state, steps

    def draw_run(P, chains, state, pre, data):
        progress = _PROGRESS[0]
        pieces = []
        for _ in range(n_draws // d_piece):
            state, out = P["draw"](state, pre, data)
            pieces.append(out)
            if progress is not None:
                _report(progress, chains, state, total, cfg.warmup, out[1]["diverging"], offset=w1)
        return state, jax.tree.map(lambda *v: jnp.concatenate(v, axis=axis), *pieces)

    return (_spread({"start1": (start1, 2), "warm1": (partial(warm1, n=p1), 1)}, warm1_run, method, n_devices, 2),
            _spread({"start2": (start2, 1), "warm2": (partial(warm2, n=p2), 1)}, warm2_run, method, n_devices, 1),
            _spread({"draw": (partial(draw2, n=d_piece), 1)}, draw_run, method, n_devices, 1))


def lowrank_mask(z: dict, diagonal: tuple[str, ...]) -> np.ndarray:
    """Per flattened coordinate of the chains' unconstrained state ``z`` (site -> (chain, ...)), in the order
    ``ravel_pytree`` flattens one chain's: False for the sites in ``diagonal``."""
    leaves = jax.tree_util.tree_flatten_with_path(z)[0]
    return np.concatenate([np.full(int(np.prod(np.shape(v)[1:], dtype=int)), path[0].key not in diagonal)
                           for path, v in leaves])


def lowrank_warmup(warm1, warm2, keys, init, data, dtype, diagonal: tuple[str, ...] = ()):
    """Both warm-up phases of ``adaptation="low-rank"``, the preconditioner estimated in between from every
    chain's collected draws and gradients, the sites in ``diagonal`` (on a simplex: :func:`simplex_sites`)
    left to the diagonal. Returns (states, warm-up leapfrog steps per chain, preconditioner)."""
    states, steps1, z, g = warm1(keys, init, data)
    z, g = (np.asarray(jax.device_get(a)) for a in (z, g))
    mask = lowrank_mask(states.z, diagonal) if diagonal else None
    pre = as_jax(estimate(z.reshape(-1, z.shape[-1]), g.reshape(-1, g.shape[-1]), max_rank=mass.MAX_RANK,
                          cutoff=mass.CUTOFF, mask=mask), dtype)
    states, steps2 = warm2(states, pre, data)
    return states, np.asarray(steps1) + np.asarray(steps2), pre


def run_nuts(spec: ModelSpec, data: dict, cfg: SamplerConfig, seed: int):
    """Sample the skills law with NUTS.

    Chains start either at overdispersed draws from a short variational fit
    (``cfg.init="svi"``, the default: warm-up then starts in the posterior's
    bulk instead of crossing the prior, and chains do not get trapped in
    poor local modes on the way) or uniformly in (-2, 2) on the unconstrained
    scale (``cfg.init="uniform"``, dispersed over the prior, the classic test
    of identification).

    With ``chain_method="parallel"`` and more chains than CPU devices, each
    device runs its share of the chains back to back in one program (4 chains
    on 2 cores: chains 0 and 1 on the first, 2 and 3 on the second), so a
    device whose first chain was quick starts its next at once. Chain c uses the key
    ``fold_in(PRNGKey(seed), c)``, whatever the chain method. Returns
    ``(samples, extra, seconds)`` with arrays of shape (chain, draw, ...).
    """
    method = cfg.resolved_chain_method()
    if method == "sequential" and cfg.chain_method is None and cfg.chains > 1 and (os.cpu_count() or 1) > 1:

        warn_sequential_chains(cfg.chains)
    n_dev = _devices_for(cfg.chains, method)
    runs = get_sampler(spec, cfg, method, n_dev)
    if not cfg.lowrank:
        warm, draw = runs
    # nothing run yet: compiled, or read from the compile cache, on first use
    fresh = not any(p.n_kept for p in getattr(runs[0], "programs", ()))
    base = jax.random.PRNGKey(seed)
    keys = jnp.stack([jax.random.fold_in(base, c) for c in range(cfg.chains)])
    t0 = time.perf_counter()
    progress = as_reporter(cfg.progress)
    if cfg.init == "svi":
        if progress is not None:
            progress.stage(f"variational start ({cfg.svi_steps} steps of a mean-field fit; its program is "
                           "compiled, or read from the compile cache, the first time)")
        params, _ = fit_svi(spec, data, steps=cfg.svi_steps, seed=seed)
        # chains start at draws from the variational fit with its scales doubled, and the mass matrix
        # starts at the same doubled scales (mean-field fits understate the spread; adaptation takes over)
        inverse_mass = INIT_SPREAD**2 * svi_variances(params)
        init = {"z": svi_init_params(params, cfg.chains, seed + 1, spread=INIT_SPREAD),
                "inverse_mass": jnp.broadcast_to(inverse_mass, (cfg.chains,) + inverse_mass.shape)}
    elif cfg.init == "uniform":
        init = None
    else:
        raise ValueError(f"init must be 'svi' or 'uniform', got {cfg.init!r}")
    if progress is not None:
        progress.stage(f"starting {cfg.chains} chain(s) ({method}): compiling the sampler, or reading it from "
                       "the compile cache" if fresh else f"starting {cfg.chains} chain(s) ({method})")
    if progress is not None and hasattr(progress, "running_at_once"):
        progress.running_at_once(cfg.chains if method == "vectorized" else n_dev if method == "parallel" else 1)
    _PROGRESS[:] = [progress, cfg.warmup + (cfg.max_draws if cfg.auto else int(cfg.draws))]
    try:
        if cfg.lowrank:
            warm1, warm2, draw_pre = runs
            states, warm_steps, pre = lowrank_warmup(warm1, warm2, keys, init, data, real_dtype(),
                                                     diagonal=simplex_sites(spec))
            draw = partial(_with_pre, draw_pre, pre)
        else:
            states, warm_steps = warm(keys, init, data)
            pre = None
        blocks, checked_sites, report, failing = [], [], {"draws": cfg.draws}, None
        while True:
            states, (z, stats) = draw(states, data)
            z, stats = jax.device_get((z, stats))
            C, S = cfg.chains, jax.tree.leaves(z)[0].shape[1]
            flat = jax.tree.map(lambda v: jnp.asarray(v.reshape((C * S,) + v.shape[2:])), z)
            sampled = jax.device_get(constrain_draws(spec, flat, data))
            blocks.append(({k: np.asarray(v).reshape((C, S) + v.shape[1:]) for k, v in sampled.items() if k != "y"},
                           {k: np.asarray(v) for k, v in stats.items()}))
            if not cfg.auto:
                break
            if progress is not None:
                progress.stage(f"checking convergence after {sum(b[1]['diverging'].shape[1] for b in blocks)} "
                               "draws per chain (draws='auto')")
            # this block's checked sites, computed once: a block has the same shape every time, so the program
            # that completes it compiles once, where the whole chain so far would compile at every block
            names = set(checked(spec))
            checked_sites.append({k: v for k, v in complete_posterior(spec, blocks[-1][0], data).items()
                                  if k in names})
            done, report, failing = _auto_verdict(spec, blocks, checked_sites, cfg, failing)
            if done:
                break
    finally:
        _PROGRESS[:] = [None, 0]
    samples = {k: np.concatenate([b[0][k] for b in blocks], axis=1) for k in blocks[0][0]}
    extra = {k: np.concatenate([b[1][k] for b in blocks], axis=1) for k in blocks[0][1]}
    extra["warmup_steps"] = np.asarray(warm_steps)
    extra["report"] = report
    if pre is not None:
        report["mass_matrix_rank"] = rank(pre)
    return samples, extra, time.perf_counter() - t0


def _with_pre(draw, pre, states, data):
    return draw(states, pre, data)


def run_nuts_masks(spec: ModelSpec, data: dict, masks, cfg: SamplerConfig, seed: int):
    """Sample the skills law for several masks of the same data in one batched program: ``B`` fits
    (cross-validation folds) x ``cfg.chains`` chains, vectorized on each device and spread over devices.

    The fits differ only by ``obs_weight`` (``masks``, shape (B, n_obs)): every fit has the same
    arrays, structure and compiled code, so their chains run side by side as lanes of one program
    (``jax.vmap`` over lanes inside ``jax.shard_map`` over the CPU's devices), and their variational
    starts as one vectorized variational fit. Fit b, chain c uses the key ``fold_in(PRNGKey(seed), c)``
    and the variational start of seed ``seed``, as :func:`run_nuts` would for that fit alone (the draws
    differ from a lone fit's in the last bits of floating point: a vectorized program rounds
    differently). ``draws="auto"`` is not available here. Returns a list of ``(samples, extra)`` per
    fit, as :func:`run_nuts`, and the seconds of the whole batch.
    """
    if cfg.auto:
        raise ValueError("draws='auto' fits one mask at a time; give a number of draws for batched fits")
    masks = np.asarray(masks, dtype=bool)
    B, C = masks.shape[0], cfg.chains
    L = B * C
    n_dev = max(d for d in range(1, min(L, jax.local_device_count()) + 1) if L % d == 0) \
        if jax.default_backend() == "cpu" else 1
    shared = {k: v for k, v in data.items() if k != "obs_weight"}
    t0 = time.perf_counter()
    # variational starts: one vectorized fit over the masks (same seed as a lone fit)
    run = svi_run(spec, cfg.svi_steps, 0.02)
    svi = cached(SVI_CACHE, ("masks", spec, cfg.svi_steps, 0.02), lambda: bounded_jit(jax.vmap(
        lambda key, w, d: run(key, dict(d, obs_weight=w)), in_axes=(None, 0, None)), keep=1))
    params, _ = svi(jax.random.PRNGKey(seed), jnp.asarray(masks), shared)
    starts, inv_mass = [], []
    for b in range(B):
        pb = jax.tree.map(lambda v: v[b], params)
        starts.append(svi_init_params(pb, C, seed + 1, spread=INIT_SPREAD))
        inv_mass.append(jnp.broadcast_to(INIT_SPREAD**2 * svi_variances(pb), (C,) + svi_variances(pb).shape))
    init = {"z": jax.tree.map(lambda *v: jnp.concatenate(v), *starts), "inverse_mass": jnp.concatenate(inv_mass)}
    base = jax.random.PRNGKey(seed)
    keys = jnp.tile(jnp.stack([jax.random.fold_in(base, c) for c in range(C)]), (B, 1))
    lane_masks = jnp.asarray(np.repeat(masks, C, axis=0))
    cfg_lanes = SamplerConfig(**{**cfg.__dict__, "progress": None})
    key = ("masks", spec, cfg.warmup, int(cfg.draws), cfg.target_accept, cfg.max_tree_depth, n_dev)

    def build():
        start, warm, draw = _chain_programs(spec, cfg_lanes)

        def lane_warm(k, i, w, d):
            d = dict(d, obs_weight=w)
            return warm(start(k, i, d), d, cfg.warmup)

        return (_lanes(lane_warm, n_dev, 3),
                _lanes(lambda s_, w, d: draw(s_, dict(d, obs_weight=w), int(cfg.draws)), n_dev, 2))

    warm, draw = cached(_SAMPLER_CACHE, key, build)
    states, warm_steps = warm(keys, init, lane_masks, shared)
    _, (z, stats) = draw(states, lane_masks, shared)
    z, stats, warm_steps = jax.device_get((z, stats, warm_steps))
    S = int(cfg.draws)
    flat = jax.tree.map(lambda v: jnp.asarray(v.reshape((L * S,) + v.shape[2:])), z)
    sampled = jax.device_get(constrain_draws(spec, flat, data))
    out = []
    for b in range(B):
        lanes = slice(b * C, (b + 1) * C)
        samples = {k: np.asarray(v).reshape((L, S) + v.shape[1:])[lanes] for k, v in sampled.items() if k != "y"}
        extra = {k: np.asarray(v)[lanes] for k, v in stats.items()}
        extra["warmup_steps"] = np.asarray(warm_steps)[lanes]
        extra["report"] = {"draws": S, "batched_with": B}
        out.append((samples, extra))
    return out, time.perf_counter() - t0


def _lanes(fn, n_devices: int, n_mapped: int):
    """``fn`` vectorized over a leading lane axis of its first ``n_mapped`` arguments, the lanes split
    evenly over ``n_devices`` CPU devices (each device runs its lanes as one vectorized program)."""
    vec = jax.vmap(fn, in_axes=(0,) * n_mapped + (None,))
    if n_devices == 1:
        return bounded_jit(vec, keep=1)
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.local_devices(backend="cpu")[:n_devices]), (_CHAIN_AXIS,))
    return bounded_jit(jax.shard_map(vec, mesh=mesh, in_specs=(P(_CHAIN_AXIS),) * n_mapped + (P(),),
                                     out_specs=P(_CHAIN_AXIS), check_vma=False), keep=1)


def _auto_verdict(spec: ModelSpec, blocks, checked_sites, cfg: SamplerConfig, failing=None):
    """After each block of ``draws="auto"``: (stop?, report, failing). Stops when every checked parameter has
    R-hat <= 1.01 and bulk and tail ESS >= ``cfg.target_ess`` with no divergence (converged), at a
    divergence (more draws cannot remove one), or at ``cfg.max_draws`` per chain (the cap).

    ``checked_sites``: per block, its checked sites (chain, draw, ...), as :func:`complete_posterior` gives
    them. ``failing``: the scalars (rows of the stacked draws) that failed the last full check, returned by it.
    While one of them still fails, the fit goes on whatever the others say, so only they are checked (the
    whole check grows with the draws: at 1,400 draws of the Sloth table it took several seconds per block);
    the others are checked again, all of them, once those pass, and at the cap."""

    n = sum(b[0][next(iter(b[0]))].shape[1] for b in blocks)
    divergences = int(sum(b[1]["diverging"].sum() for b in blocks))
    names = [k for k in checked(spec) if k in checked_sites[0]]
    if not names:
        draws = np.zeros((0, cfg.chains, n))
    else:
        draws = np.concatenate([np.moveaxis(np.concatenate([b[k] for b in checked_sites], axis=1).reshape(
            cfg.chains, n, -1), 2, 0) for k in names], axis=0)  # (scalar, chain, draw)
    report = {"draws": "auto", "draws_per_chain": n, "divergences": divergences,
              "target_ess": cfg.target_ess, "max_draws": cfg.max_draws}
    at_cap = n + cfg.block > cfg.max_draws
    if failing is not None and len(failing) and not divergences and not at_cap:
        rhat, bulk, tail = rhat_ess(draws[failing])
        bad = (rhat > RHAT_MAX) | (np.minimum(bulk, tail) < cfg.target_ess)  # NaN (a constant) never fails
        if bad.any():
            return False, dict(report, max_rhat=float(np.nanmax(rhat)),
                               min_ess=float(np.nanmin(np.minimum(bulk, tail)))), failing[bad]
    rhat, bulk, tail = rhat_ess(draws) if len(draws) else (np.full(1, np.nan),) * 3
    ess = np.minimum(bulk, tail)
    report.update(max_rhat=float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
                  min_ess=float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan"))
    failing = np.flatnonzero((rhat > RHAT_MAX) | (ess < cfg.target_ess))
    if divergences:
        return True, dict(report, stopped="divergences: more draws cannot remove a divergent transition"), failing
    if report["max_rhat"] <= RHAT_MAX and report["min_ess"] >= cfg.target_ess:
        return True, dict(report, stopped="converged"), failing
    if at_cap:
        return True, dict(report, stopped=f"cap: {n} draws per chain reached max_draws={cfg.max_draws} "
                                          f"before R-hat <= {RHAT_MAX} and ESS >= {cfg.target_ess}"), failing
    return False, report, failing


#: Copies of a fit's draws that exist at once while they are sampled and assembled (JAX's arrays, then NumPy's
#: and xarray's): the draws may take at most 1 / MEMORY_COPIES of the machine's memory.
MEMORY_COPIES = 2


def machine_memory_bytes() -> int | None:
    """Memory this process may use: the machine's physical memory, or the container's limit (cgroup) if lower;
    None where neither can be read."""
    sizes = []
    try:
        sizes.append(int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES")))
    except (ValueError, OSError, AttributeError):
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit) as fh:  # closed at once: the command line shows an unclosed file as a warning
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            sizes.append(int(text))
    sizes = [v for v in sizes if v > 0]
    return min(sizes) if sizes else None


def check_draws_fit_in_memory(spec: ModelSpec, data: dict, chains: int, draws: int, what: str = "draws",
                              memory: int | None = None) -> int:
    """Refuse, before any sampling, a number of draws whose posterior would not fit in memory.

    A fit keeps, per draw: every sampled and deterministic site of the law
    (each model's skills and offset among them) and, per fitted score, its
    log-likelihood and a replicated score, in float32 (float64 in JAX's 64-bit
    mode), times ``chains`` x ``draws``; assembling them makes
    :data:`MEMORY_COPIES` copies at once. Returns the bytes of one copy;
    raises an InputError naming ``what`` when the copies exceed ``memory``
    (default :func:`machine_memory_bytes`).
    """
    sampled, deterministic = model_site_shapes(spec, data)
    pairs = int(np.asarray(data["obs_weight"]).sum())
    per_draw = sum(int(np.prod(v)) for v in (*sampled.values(), *deterministic.values())) + 2 * pairs
    size = int(chains) * int(draws) * per_draw * np.dtype(real_dtype()).itemsize
    memory = machine_memory_bytes() if memory is None else memory
    if memory is not None and MEMORY_COPIES * size > memory:
        fits = max(1, memory // (MEMORY_COPIES * per_draw * np.dtype(real_dtype()).itemsize * int(chains)))
        raise InputError(
            f"{what}={draws} with {chains} chain(s) would hold {size / 1e9:.3g} GB of draws ({per_draw} numbers per "
            f"draw: the law's sites, each model's skills and offset, and the log-likelihood and a replicated score "
            f"of each of the {pairs} fitted scores), more than this machine's {memory / 1e9:.3g} GB of memory holds "
            f"with the {MEMORY_COPIES} copies made while assembling them: use at most {fits} {what} per chain "
            "(a few thousand draws in all are plenty for every diagnostic and interval)")
    return size


def auto_target_accept(n_benchmarks: int) -> float:
    """The target acceptance rate ``target_accept="auto"`` resolves to on a leaderboard of ``n_benchmarks``.

    0.99 on a leaderboard of at most
    :data:`~bayes_sloth.core.model.OFFSET_FRAME_MAX_BENCHMARKS` benchmarks, 0.9 on
    larger ones. With few benchmarks each model's offset e_i and each
    family's efficiency alpha_f are held by few scores, and their posterior
    width follows the noise sigma_j and the spreads s and tau: funnels whose
    necks a step size adapted in the bulk overshoots. On the SBC design
    (24 models, 4 benchmarks) 0.9 left divergences in 14 of 48 replications
    (``docs/decisions.md``); a higher target shortens the step there, and costs
    longer trajectories on boards that fit in seconds. On the 12-benchmark
    Sloth table 0.9 gives no divergences and a higher target would only
    slow it, so it stays.
    """

    return AUTO_TARGET_ACCEPT[0] if int(n_benchmarks) <= OFFSET_FRAME_MAX_BENCHMARKS else AUTO_TARGET_ACCEPT[1]
