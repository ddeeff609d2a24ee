"""Reproducibility: same seed -> identical draws; save -> load -> predict identical; provenance recorded."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import h5py
import jax
import numpy as np
import numpyro
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth.core.fitfile import FIT_FORMAT

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
    with pytest.raises(bs.FitFileError, match=r"has format 99\.0 \(written by bayes_sloth 99\.0\.0\).*reads format "
                       + re.escape(FIT_FORMAT)):
        bs.SkillsLaw.load(bad)


def test_same_major_format_is_read(tiny_fit, tmp_path):
    """Minor format versions add fields only: a 2.x file loads and predicts."""
    ok = _with_format(tiny_fit[1], tmp_path / "minor.nc", "2.9")
    law = bs.SkillsLaw.load(ok)
    assert np.array_equal(law.predict(_new_rows()).predictions["score"].values,
                          tiny_fit[0].predict(_new_rows()).predictions["score"].values)


@pytest.mark.realdata
def test_real_table_is_the_pinned_file(real_data_dir):
    from bayes_sloth.core.datasets import _sha256_file
    from bayes_sloth.core.metadata import SLOTH_DATA

    path = bs.sloth_data_path(real_data_dir)
    assert _sha256_file(path) == SLOTH_DATA["sha256"]
    lb1, lb2 = bs.load_sloth(real_data_dir), bs.load_sloth(real_data_dir)
    assert lb1.sha256() == lb2.sha256()


def test_refits_of_the_same_shape_compile_nothing(tiny_fit):
    """One compilation per model structure: after a first fit, a refit with a
    cross-validation mask and a refit with new scores of the same shape run
    the variational start, the sampler, the log-likelihood and the
    replicated data without a single XLA compilation."""
    import jax.monitoring

    compiles = []

    def listen(name, secs, **kwargs):
        # an XLA compilation, or a program fetched from the on-disk cache instead:
        # either means the in-memory cache missed
        if name in ("/jax/core/compile/backend_compile_duration", "/jax/compilation_cache/cache_retrieval_time_sec"):
            compiles.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.jit(lambda x: x * 3.0 - 1.0)(np.arange(7.0))  # a program no test has run: the listener hears it
        assert compiles  # compiled, or read from the on-disk cache
        frame = make_tiny_frame()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the session's tiny fit (same structure and settings) may already have compiled what this needs
            first_fit = bs.SkillsLaw(**TINY_FIT).fit(frame)
            first = len(compiles)
            mask = np.ones(first_fit.leaderboard_.n_observed, dtype=bool)
            mask[:5] = False
            bs.SkillsLaw(**TINY_FIT).fit(frame, obs_weight=mask)
            scores = [c for c in frame.columns if c not in ("model", "family", "params", "tokens", "instruct")]
            bs.SkillsLaw(**dict(TINY_FIT, seed=1)).fit(frame.assign(**{c: frame[c] * 0.98 for c in scores}))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(compiles) == first, f"{len(compiles) - first} compilation(s) in refits of the same shape"


_NEW_PROCESS_FIT = """
import json, sys, warnings
import jax.monitoring
events = {"compiled": 0, "from_disk": 0, "missed": 0}
def count(name, **kw):
    if name == "/jax/compilation_cache/cache_misses":
        events["missed"] += 1
def timed(name, secs, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
        events["compiled"] += 1  # every program XLA had to produce, compiled or read from disk
    elif name == "/jax/compilation_cache/cache_retrieval_time_sec":
        events["from_disk"] += 1
jax.monitoring.register_event_listener(count)
jax.monitoring.register_event_duration_secs_listener(timed)
import numpy as np
import bayes_sloth as bs
bs.configure()  # the compile cache named by $BAYES_SLOTH_XLA_CACHE
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
from conftest import TINY_FIT, make_tiny_frame
heard = []
law = bs.SkillsLaw(**TINY_FIT, progress=lambda *a: heard.append(a)).fit(make_tiny_frame())
np.savez(sys.argv[2], **{name: law.idata_.posterior[name].values for name in law.idata_.posterior.data_vars})
print(json.dumps(dict(events, heard=len(heard))))
"""


def test_a_new_process_compiles_nothing_and_draws_the_same(tiny_fit, tmp_path):
    """A new process, with other string hashing (PYTHONHASHSEED) and a progress reporter, refits the
    session's tiny fit: every program it needs comes from the on-disk cache the session's fit filled
    (none compiled; NumPyro's Trace_ELBO ordered its terms by hash, which changed the program in every
    process, and a sampler reporting progress from inside its program was never cached at all), and
    it draws the same as the session's fit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cache = jax.config.jax_compilation_cache_dir
    if not cache:
        pytest.skip("the session runs without an on-disk compile cache ($BAYES_SLOTH_XLA_CACHE=0)")
    parent_seed = os.environ.get("PYTHONHASHSEED", "")
    hash_seed = str(int(parent_seed) + 1) if parent_seed.isdigit() else "12345"
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, BAYES_SLOTH_XLA_CACHE=str(cache))
    drawn = Path(tmp_path) / "draws.npz"
    run = subprocess.run([sys.executable, "-c", _NEW_PROCESS_FIT, str(Path(__file__).parent), str(drawn)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["heard"] > 0 and out["from_disk"] > 0, out  # the reporter ran; the listeners hear the cache
    assert out["missed"] == 0 and out["compiled"] == out["from_disk"], \
        f"{out['compiled'] - out['from_disk']} program(s) compiled in a new process: {out}"
    # the same program on the same data and seed: the same draws. Compared within float32 rounding, as numbers
    # from another process are (relative 1e-5: far above a last-bit difference, far below another chain's draws)
    with np.load(drawn) as got:
        post = tiny_fit[0].idata_.posterior
        assert sorted(got.files) == sorted(post.data_vars)
        for name in got.files:
            np.testing.assert_allclose(got[name], post[name].values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_progress_reports_each_chain_and_phase(capsys):
    """The sampler reports (chain, iteration, total, phase) after each piece of about 5 % of the warm-up
    and of the draws to any callable; the default display (progress=True) is one display per fit, here
    (stderr is no terminal) a line at each stage and every 10 %, saying what the fit is doing from its
    start (the variational start, starting the chains), with the elapsed time; a reporter changes no draw."""
    calls = []
    frame = make_tiny_frame()  # the session's tiny fit's data and settings: its compiled programs serve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heard = bs.SkillsLaw(**TINY_FIT, progress=lambda *a: calls.append(a)).fit(frame)
    assert TINY_FIT["warmup"] == TINY_FIT["draws"] == 100
    assert {c[0] for c in calls} == {0, 1}
    for chain in (0, 1):
        its = [c[1] for c in calls if c[0] == chain]
        # pieces of at most 5 % of each run (the low-rank warm-up is two runs, 60 + 40: pieces of 3 and 2;
        # the draws 20 pieces of 5), reported in order, through the end of the warm-up and of the draws
        assert its == sorted(set(its)) and 100 in its and its[-1] == 200, its
        assert max(np.diff([0, *its])) <= 5 and its[-20:] == list(range(105, 201, 5)), its
        assert {c[2] for c in calls if c[0] == chain} == {200}
    assert {c[3] for c in calls if c[1] <= 100} == {"warm-up"} and {c[3] for c in calls if c[1] > 100} == {"sampling"}
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        silent = bs.SkillsLaw(**TINY_FIT, progress=False).fit(frame)
        assert capsys.readouterr().err == ""
        bs.SkillsLaw(**TINY_FIT).fit(frame)  # progress=True by default: one display, lines on a non-terminal
    for name in heard.idata_.posterior.data_vars:
        assert np.array_equal(heard.idata_.posterior[name].values, silent.idata_.posterior[name].values), name
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("fit: ") and " elapsed" in line for line in err), err
    assert "variational start" in err[0] and "starting 2 chain(s)" in err[1], err[:2]
    assert any(line.startswith("fit: warm-up") and "chain 0: " in line and ", 1: " in line for line in err)
    assert any(line.startswith("fit: sampling") for line in err)
    assert err[-1].startswith("fit: done: 2 chain(s) x (100 warm-up + 100 draws)") and "divergence" in err[-1]
    assert len(err) <= 2 + 11 + 3, err  # stages, every 10 %, the checks and the end: a log stays short
    assert "it/s" not in "".join(err)  # no tqdm bar per chain


def test_the_progress_line_counts_divergences_and_times_from_the_chains_pace():
    """One line: stage, iterations, each chain, divergences, elapsed and an ETA measured only once every
    chain that runs at once has reported (before, one device may still be compiling); the command line's
    lines come at each stage and every 10 %."""
    import io

    from bayes_sloth.cli import ProgressLines
    from bayes_sloth.core.progress import LineDisplay, _clock

    now = [100.0]
    out = io.StringIO()
    p = LineDisplay(4, 100, 100, stream=out, inplace=False, clock=lambda: now[0])
    p.running_at_once(2)
    p.stage("variational start")
    assert out.getvalue().splitlines() == ["fit: variational start | 0:00 elapsed"]
    now[0] += 30
    p(0, 20, 200, "warm-up")
    assert "ETA" not in p.line() and " left" not in p.line()  # chain 2 has not reported yet: no pace
    assert "chain 0: warm-up 20/200, 1: waiting, 2: waiting, 3: waiting" in p.line()
    p(2, 20, 200, "warm-up")
    now[0] += 10
    p(0, 120, 200, "sampling", divergences=2)
    p(2, 120, 200, "sampling", divergences=1)
    # 200 iterations in 10 s since both running chains reported: 800 - 240 left at 20 per s = 28 s
    assert p.eta() == pytest.approx(28.0)
    line = p.line()
    assert line.startswith("fit: sampling | 30% of 800 iterations") and "3 divergences" in line, line
    assert "0:40 elapsed" in line and "about 0:28 left" in line, line
    assert _clock(3725) == "1:02:05"
    p.close()
    assert out.getvalue().splitlines()[-1].startswith("fit: done: 4 chain(s) x (100 warm-up + 20 draws)")
    assert ProgressLines().inplace is False  # the command line prints lines, never carriage returns
    tty = io.StringIO()
    tty.isatty = lambda: True
    q = LineDisplay(1, 10, 10, stream=tty)
    q.stage("a")
    q.stage("b")
    q.close()
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1


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


def test_a_fit_saved_before_the_law_was_declared_once_loads_and_forecasts_as_it_did():
    """tests/data/fit_format_2.0.nc was saved by the package before the options record, the named plates and
    the site table (commit 34225cd), with the forecast it then gave. The same file forecasts the same now: the
    draws are read, not recomputed, and every forecast number is a function of them (float32 rounding of a
    few dozen operations on values in [0, 1]: agreement to 1e-5, far below any printed digit)."""
    here = Path(__file__).parent / "data"
    law = bs.SkillsLaw.load(here / "fit_format_2.0.nc")
    rows = pd.read_csv(here / "fit_format_2.0_rows.csv")
    then = pd.read_csv(here / "fit_format_2.0_forecast.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        now = law.forecast(rows, seed=7)
    assert list(now["model"]) == list(then["model"]) and list(now["benchmark"]) == list(then["benchmark"])
    for col in ("mean", "median", "lower", "upper", "law_mean"):
        np.testing.assert_allclose(now[col].to_numpy(float), then[col].to_numpy(float), atol=1e-5, err_msg=col)
    assert law.spec_.family_slopes and law.spec_.instruct_slope
