"""Compiled programs do not pile up in a long session (bayes_sloth.core.programs).

Every new leaderboard shape compiles the sampler again; plain ``jax.jit``
kept each shape's program for the life of the process, about 6,700 memory
maps per fit of the tiny law on two CPU devices, and Linux stops a process
at 65,530 (``vm.max_map_count``): the tenth fit of a new shape in one
process (a notebook, ``evaluate``, this test suite in CI) crashed it with a
segmentation fault. These tests count what is kept and what is mapped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from bayes_sloth.core.programs import BoundedJit, bounded_jit

MAPS = Path(f"/proc/{os.getpid()}/maps")


def test_bounded_jit_keeps_at_most_keep_programs_and_gives_the_same_answers():
    calls = []

    def f(n, x):
        calls.append(n)  # runs once per trace: one trace per new specialization
        return jnp.sum(x) * n

    g = bounded_jit(f, static_argnums=0, keep=2)
    assert isinstance(g, BoundedJit) and g.__name__ == "f"
    for size in (3, 4, 3, 5, 6):
        assert float(g(2, jnp.ones(size))) == 2.0 * size
        assert g.n_kept <= 2
    # 3, 4 compiled; 3 reused; 5 is a third: everything released, 5 compiled; 6 second of two
    assert calls == [2, 2, 2, 2]
    assert float(g(2, jnp.ones(3))) == 6.0 and calls == [2] * 5  # released before, so traced again
    g.release()
    assert g.n_kept == 0
    with pytest.raises(ValueError, match="keep must be at least 1"):
        BoundedJit(f, keep=0)


def test_placement_is_a_specialization():
    """Parallel chains call one program on each CPU device: each device's program is one of the kept."""
    devices = jax.local_devices(backend="cpu")
    g = bounded_jit(lambda x: x * 2, keep=len(devices))
    for d in devices:
        g(jax.device_put(jnp.ones(3), d))
    assert g.n_kept == len(devices)


FITS_OF_NEW_SHAPES = """
import json, os, sys, warnings
sys.path.insert(0, sys.argv[1])
import bayes_sloth as bs
bs.configure()
from conftest import make_tiny_frame
maps = lambda: sum(1 for _ in open(f"/proc/{os.getpid()}/maps"))
settings = dict(n_skills=1, chains=1, warmup=30, draws=30, seed=0, max_tree_depth=4, link="sigmoid",
                model_effects=False, instruct_shift=False, init="uniform", progress=False)
sizes = [maps()]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for i, fams in enumerate((4, 5, 6)):
        bs.SkillsLaw(**settings).fit(make_tiny_frame(n_families=fams, seed=10 + i))
        sizes.append(maps())
print(json.dumps(sizes))
"""


@pytest.mark.slow
@pytest.mark.skipif(not MAPS.exists(), reason="counts memory maps in /proc (Linux)")
def test_fits_of_new_shapes_do_not_pile_up_memory_maps():
    """Three fits of three leaderboard shapes in a fresh process map about what two do.

    Without the bound each new shape kept its sampler: the third fit added what the first did
    (several thousand maps: about 3,400 for one chain, 6,700 for two chains on two devices). With it, the programs of at most two
    shapes are held (the current and the one before), so the third fit adds nothing on balance;
    the tolerance is half of the first fit's growth. A fresh process, so that what earlier tests
    compiled (and release as these fits run) does not move the count.
    """
    out = subprocess.run([sys.executable, "-c", FITS_OF_NEW_SHAPES, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    before, *sizes = json.loads(out.stdout.strip().splitlines()[-1])
    first = sizes[0] - before
    assert first > 1000, f"a first fit mapped only {first} regions: the premise of this test changed"
    assert sizes[-1] - sizes[1] < 0.5 * first, (
        f"the third fit's shape added {sizes[-1] - sizes[1]} memory maps (first fit: {first}; after each: {sizes})")
