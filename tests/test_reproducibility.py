"""Reproducibility: same seed -> identical draws; save -> load -> predict identical; provenance recorded."""

from __future__ import annotations

import json
import shutil
import warnings

import h5py
import jax
import numpy as np
import numpyro
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.estimator import FIT_FORMAT

from .conftest import TINY_FIT, make_tiny_frame


def _new_rows():
    """Forecast rows: a seen family, a never-seen family with two models, an instruct model."""
    return pd.DataFrame({
        "model": ["seen-7b", "unseen-1b", "unseen-8b", "seen-instruct"],
        "family": ["family_00", "brand-new", "brand-new", "family_02"],
        "params": [7.0, 1.0, 8.0, 3.0],
        "tokens": [2.0, 1.5, 1.5, 3.0],
        "instruct": [False, False, False, True],
    })


def _meta(path):
    with h5py.File(path, "r") as f:
        raw = f["posterior"].attrs["bayes_sloth"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def test_same_seed_identical_draws(tiny_fit):
    law, _ = tiny_fit
    again = bs.SkillsLaw(**TINY_FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again.fit(make_tiny_frame())
    for name in law.idata_.posterior.data_vars:
        assert np.array_equal(law.idata_.posterior[name].values, again.idata_.posterior[name].values), name
    for group in ("sample_stats", "posterior_predictive", "log_likelihood"):
        a, b = law.idata_[group], again.idata_[group]
        for name in a.data_vars:
            assert np.array_equal(a[name].values, b[name].values), f"{group}.{name}"
    # and the same seed forecasts identically
    p1, p2 = law.predict(_new_rows()), again.predict(_new_rows())
    assert np.array_equal(p1.predictions["score"].values, p2.predictions["score"].values)


def test_chains_are_distinct_streams(tiny_fit):
    """The seed is split per chain: chains are not copies of each other (a cheap no-refit check)."""
    slopes = tiny_fit[0].idata_.posterior["slopes"].values
    assert not np.array_equal(slopes[0], slopes[1])


def test_predict_seed_controls_draws(tiny_fit):
    law, _ = tiny_fit
    a = law.predict(_new_rows(), seed=5).predictions["score"].values
    b = law.predict(_new_rows(), seed=5).predictions["score"].values
    c = law.predict(_new_rows(), seed=6).predictions["score"].values
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_save_load_predict_identical(tiny_fit, tmp_path):
    law, path = tiny_fit
    loaded = bs.SkillsLaw.load(path)
    # the posterior survives the round trip bit for bit
    for name in law.idata_.posterior.data_vars:
        assert np.array_equal(law.idata_.posterior[name].values, loaded.idata_.posterior[name].values), name
    assert loaded.get_params() == law.get_params()
    assert loaded.families_ == law.families_ and loaded.benchmarks_ == law.benchmarks_
    assert loaded.anchors_ == law.anchors_
    assert loaded.spec_ == law.spec_
    np.testing.assert_array_equal(loaded.standardizer_.mean, law.standardizer_.mean)
    np.testing.assert_array_equal(loaded.standardizer_.sd, law.standardizer_.sd)
    # identical forecasts: every predictive array, and the tidy table
    p1, p2 = law.predict(_new_rows()), loaded.predict(_new_rows())
    for name in ("score", "mu", "skills"):
        assert np.array_equal(p1.predictions[name].values, p2.predictions[name].values), name
    assert list(p1.predictions["model"].values) == list(p2.predictions["model"].values)
    # the training leaderboard is rebuilt exactly (its hash is the recorded one)
    assert loaded.leaderboard_.sha256() == law.leaderboard_.sha256()
    pd.testing.assert_frame_equal(loaded.leaderboard_.scores, law.leaderboard_.scores)
    # saving the loaded fit again gives the same content
    again = tmp_path / "again.nc"
    loaded.save(again)
    reloaded = bs.SkillsLaw.load(again)
    assert np.array_equal(reloaded.predict(_new_rows()).predictions["score"].values, p1.predictions["score"].values)
    assert reloaded.diagnostics_.to_dict() == law.diagnostics_.to_dict()


def test_save_load_forecast_table_identical(tiny_fit):
    law, path = tiny_fit
    loaded = bs.SkillsLaw.load(path)
    pd.testing.assert_frame_equal(law.forecast(_new_rows(), level=0.8), loaded.forecast(_new_rows(), level=0.8))


def test_fit_file_records_versions_and_data_hash(tiny_fit):
    law, path = tiny_fit
    meta = _meta(path)
    assert meta["fit_format"] == FIT_FORMAT
    assert meta["versions"]["bayes_sloth"] == bs.__version__
    assert meta["versions"]["numpyro"] == numpyro.__version__
    assert meta["versions"]["jax"] == jax.__version__
    assert meta["data_sha256"] == law.leaderboard_.sha256() == bs.load_leaderboard(make_tiny_frame()).sha256()
    assert len(meta["data_sha256"]) == 64
    assert meta["params"]["seed"] == TINY_FIT["seed"]


def test_data_hash_changes_with_the_data():
    df = make_tiny_frame()
    h0 = bs.load_leaderboard(df).sha256()
    df.loc[0, "MMLU"] = 0.123456
    assert bs.load_leaderboard(df).sha256() != h0


def _with_format(src, dst, fmt, version=None):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        meta = json.loads(f["posterior"].attrs["bayes_sloth"])
        meta["fit_format"] = fmt
        if version:
            meta["versions"]["bayes_sloth"] = version
        f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
    return dst


def test_incompatible_version_is_refused(tiny_fit, tmp_path):
    bad = _with_format(tiny_fit[1], tmp_path / "future.nc", "99.0", "99.0.0")
    with pytest.raises(bs.FitFileError, match=r"has format 99\.0 \(written by bayes_sloth 99\.0\.0\).*reads format 2\.0"):
        bs.SkillsLaw.load(bad)


def test_same_major_format_is_read(tiny_fit, tmp_path):
    """Minor format versions add fields only: a 2.x file loads and predicts."""
    ok = _with_format(tiny_fit[1], tmp_path / "minor.nc", "2.9")
    law = bs.SkillsLaw.load(ok)
    assert np.array_equal(law.predict(_new_rows()).predictions["score"].values,
                          tiny_fit[0].predict(_new_rows()).predictions["score"].values)


@pytest.mark.realdata
def test_real_table_is_the_pinned_file(real_data_dir):
    from bayes_sloth.data import _sha256_file
    from bayes_sloth.metadata import SLOTH_DATA

    path = bs.sloth_data_path(real_data_dir)
    assert _sha256_file(path) == SLOTH_DATA["sha256"]
    lb1, lb2 = bs.load_sloth(real_data_dir), bs.load_sloth(real_data_dir)
    assert lb1.sha256() == lb2.sha256()


def test_refits_of_the_same_shape_compile_nothing():
    """One compilation per model structure: after a first fit, a refit with a
    cross-validation mask and a refit with new scores of the same shape run
    the variational start, the sampler, the log-likelihood and the
    replicated data without a single XLA compilation."""
    import jax.monitoring

    from bayes_sloth.data import Leaderboard

    compiles = []

    def listen(name, secs, **kwargs):
        # an XLA compilation, or a program fetched from the on-disk cache instead:
        # either means the in-memory cache missed
        if name in ("/jax/core/compile/backend_compile_duration", "/jax/compilation_cache/cache_retrieval_time_sec"):
            compiles.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listen)
    lb, _ = bs.simulate_leaderboard(n_families=6, n_benchmarks=3, n_skills=1, models_per_family=(2, 3),
                                    missing=0.0, seed=1)
    kw = dict(anchors=["bench_00"], chains=2, warmup=20, draws=20, max_tree_depth=4, seed=0)
    bs.SkillsLaw(1, **kw).fit(lb)
    first = len(compiles)
    assert first > 0  # the listener does see compilations
    mask = np.ones(lb.n_observed, dtype=bool)
    mask[:5] = False
    bs.SkillsLaw(1, **kw).fit(lb, obs_weight=mask)
    bs.SkillsLaw(1, **dict(kw, seed=1)).fit(Leaderboard(lb.covariates, lb.scores * 0.98, lb.floors))
    assert len(compiles) == first, f"{len(compiles) - first} compilation(s) in refits of the same shape"


_NEW_PROCESS_FIT = """
import hashlib, json, warnings
import jax.monitoring
compiles = []
jax.monitoring.register_event_listener(
    lambda name, **kw: compiles.append(name) if name == "/jax/compilation_cache/cache_misses" else None)
import numpy as np
import bayes_sloth as bs
bs.configure()  # the compile cache named by $BAYES_SLOTH_XLA_CACHE
warnings.simplefilter("ignore")
lb, _ = bs.simulate_leaderboard(n_families=5, n_benchmarks=3, n_skills=1, models_per_family=(2, 3), seed=2)
law = bs.SkillsLaw(1, chains=2, warmup=30, draws=30, seed=0).fit(lb)
h = hashlib.sha256()
for name in sorted(law.idata_.posterior.data_vars):
    h.update(np.ascontiguousarray(law.idata_.posterior[name].values).tobytes())
print(json.dumps({"compiles": len(compiles), "digest": h.hexdigest()}))
"""


def test_a_new_process_compiles_nothing_and_draws_the_same(tmp_path):
    """Two processes with different string hashing (PYTHONHASHSEED) fit the
    same data with the same seed: the second finds every program in the
    on-disk cache (nothing compiled; NumPyro's Trace_ELBO ordered its terms by
    hash, which changed the program in every process) and draws the same."""
    import os
    import subprocess
    import sys

    out = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, BAYES_SLOTH_XLA_CACHE=str(tmp_path / "xla"))
        run = subprocess.run([sys.executable, "-c", _NEW_PROCESS_FIT], env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        out.append(json.loads(run.stdout.strip().splitlines()[-1]))
    assert out[0]["compiles"] > 0
    assert out[1]["compiles"] == 0, f"{out[1]['compiles']} program(s) missed the on-disk cache in a new process"
    assert out[1]["digest"] == out[0]["digest"]


def test_progress_reports_each_chain_and_phase(capsys):
    """The sampler reports (chain, iteration, total, phase) about every 1 %; the command line's reporter
    prints a line per chain every 10 %, naming the chain; the default reporter draws a bar per chain."""
    from bayes_sloth.cli import ProgressLines

    lb, _ = bs.simulate_leaderboard(n_families=6, n_benchmarks=3, n_skills=1, models_per_family=(2, 3), seed=1)
    calls = []
    kw = dict(anchors=["bench_00"], chains=2, warmup=50, draws=50, max_tree_depth=4)
    bs.SkillsLaw(1, progress=lambda *a: calls.append(a), **kw).fit(lb)
    assert {c[0] for c in calls} == {0, 1}
    for chain in (0, 1):
        its = [c[1] for c in calls if c[0] == chain]
        assert its == sorted(its) and its[-1] == 100 and len(its) == 100
    assert {c[3] for c in calls if c[1] <= 50} == {"warm-up"} and {c[3] for c in calls if c[1] > 50} == {"sampling"}
    lines = ProgressLines()
    for c in calls:
        lines(*c)
    err = capsys.readouterr().err.splitlines()
    # parallel chains report from their own threads, so the two chains' lines interleave in any order;
    # each chain's own lines come in order, every 10 %
    assert len(err) == 20, err
    for chain in (0, 1):
        mine = [line for line in err if line.startswith(f"chain {chain}: ")]
        assert mine == [f"chain {chain}: iteration {i}/100 ({'warm-up' if i <= 50 else 'sampling'})"
                        for i in range(10, 101, 10)], mine
    bs.SkillsLaw(1, **kw).fit(lb)  # progress=True by default: tqdm bars on stderr
    assert "chain 1 sampling" in capsys.readouterr().err


def test_parallel_and_sequential_chains_draw_the_same(tiny_fit):
    """Chains spread over the CPU's devices run the very program a lone chain runs: the draws do not
    depend on how many devices there are (so a fold gives the same numbers in any worker)."""
    law, _ = tiny_fit
    assert law.idata_.posterior.sizes["chain"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = bs.SkillsLaw(**TINY_FIT, chain_method="sequential").fit(make_tiny_frame())
    for name in law.idata_.posterior.data_vars:
        assert np.array_equal(law.idata_.posterior[name].values, seq.idata_.posterior[name].values), name
