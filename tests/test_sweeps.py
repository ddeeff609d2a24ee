"""Sweeps in parallel workers (joblib: loky here, Dask for a cluster) give the serial loop's numbers.

One tiny synthetic evaluation (4 families, 3 benchmarks, K = 1, the lean
law, 2 chains of 40 + 40 iterations) is run serially in this process (2 JAX devices after
conftest's ``configure()``), then with ``n_jobs=2`` in loky workers and on a
local Dask cluster of 2 worker processes (1 device each): the forecast pairs
must be equal (every column, every row; numbers within float32 rounding, as
numbers from another process are compared): the serial loop spreads a
fold's chains over its 2 devices, a worker runs them one after another on its
one device, and both run the very same compiled chain
(``sampler._spread``). Workers report the JAX devices they configured.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

import bayes_sloth as bs
import bayes_sloth.workflows.sweeps as sweeps
from bayes_sloth.workflows import evaluation
from bayes_sloth.workflows.evaluation import evaluate

# the lean law started uniformly: the fewest programs to compile in each process (CI time); the layouts
# compared are the sampler's, whatever the law
SETTINGS = dict(protocol="leave-family-out", benchmark_set=None, n_train=1, n_skills=1, anchors=["bench_00"],
                chains=2, warmup=40, draws=40, max_tree_depth=4, seed=0, link="sigmoid", model_effects=False,
                instruct_shift=False, init="uniform")


def _board():
    lb, _ = bs.simulate_leaderboard(n_families=4, n_benchmarks=3, n_skills=1, models_per_family=(2, 3),
                                    missing=0.0, seed=1)
    return lb


@pytest.fixture(scope="module")
def serial():
    return evaluate(_board(), n_jobs=1, **SETTINGS)


#: Numbers from another process are compared within float32 rounding, not bit for bit: the pairs come from
#: float32 draws (epsilon 1.2e-7) through means and quantiles of a few hundred of them, so last-bit differences
#: in any step move them by well under 1e-6 relative; 1e-5 leaves a margin of ten, and a fold fitted
#: differently (another chain, another seed) moves MAE and the quantiles by 1e-3 or more.
RTOL = 1e-5


def _same(a, b):
    """Equal forecasts: the pairs tables (names exactly, numbers within RTOL), and every metric of the summaries."""
    pd.testing.assert_frame_equal(a.pairs, b.pairs, check_exact=False, rtol=RTOL, atol=0.0)
    for k in ("mae", "mae_pooled", "coverage", "mean_width", "interval_score_90", "crps", "elpd_per_pair"):
        assert a.summary[k] == pytest.approx(b.summary[k], rel=RTOL, abs=0.0), k
    assert a.summary["n_pairs"] == b.summary["n_pairs"]
    # the time and the layout a fold ran with may differ (2 devices here, 1 in a worker); nothing else
    strip = lambda gs: [{k: v for k, v in g.items() if k not in ("seconds", "chain_method")} for g in gs]  # noqa: E731
    ga, gb = strip(a.summary["groups"]), strip(b.summary["groups"])
    assert len(ga) == len(gb)
    for x, y in zip(ga, gb):
        assert list(x) == list(y)
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], rel=RTOL, abs=0.0), k
            else:
                assert x[k] == y[k], k


def _probe(i):
    """What a worker sees: its pid, JAX's device count there, and how it was configured."""
    import jax

    return {"pid": os.getpid(), "devices": jax.local_device_count(), "configured": sweeps._WORKER_STATE.get("configured")}


def _fresh_loky_pool():
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # workers already configured elsewhere keep their devices


def test_worker_devices_share_the_cores():
    assert sweeps.worker_devices(2, cores=2) == 1
    assert sweeps.worker_devices(4, cores=16) == 4
    assert sweeps.worker_devices(3, cores=2) == 1  # at least one
    assert sweeps.worker_devices(1, cores=8) == 8
    with pytest.raises(bs.InputError):
        sweeps.run(_probe, [0], n_jobs=0)


def test_serial_run_configures_nothing_and_keeps_order():
    seen = []
    out = sweeps.run(abs, [-3, 1, -2], n_jobs=1, on_result=lambda i, r: seen.append((i, r)))
    assert out == [3, 1, 2] and seen == [(0, 3), (1, 1), (2, 2)]
    assert "configured" not in sweeps._WORKER_STATE  # this process keeps what configure() set


def test_loky_workers_configure_their_own_devices():
    import jax

    _fresh_loky_pool()
    got = sweeps.run(_probe, range(4), n_jobs=2, devices=2)
    assert {g["pid"] for g in got}.isdisjoint({os.getpid()})
    # JAX starts with one CPU device: two means the worker configured itself before JAX started there
    assert all(g["devices"] == 2 and g["configured"]["cpu_devices"] == 2 for g in got)
    _fresh_loky_pool()
    got = sweeps.run(_probe, range(2), n_jobs=2)  # default: cores // workers, at least 1
    want = max(1, sweeps.available_cores() // 2)
    assert all(g["devices"] == want for g in got) and jax.local_device_count() == 2  # this process: unchanged
    _fresh_loky_pool()


def test_loky_n_jobs_2_equals_serial(serial):
    lines = []
    par = evaluate(_board(), n_jobs=2, on_fold=lines.append, **SETTINGS)
    _same(serial, par)
    assert len(lines) == serial.summary["n_groups"]
    assert serial.summary["settings"]["chain_method"] == "parallel"  # 2 devices here; 1 in each worker
    _fresh_loky_pool()


def test_dask_local_cluster_equals_serial(serial):
    distributed = pytest.importorskip("distributed")
    import joblib

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            par = evaluate(_board(), n_jobs=-1, **SETTINGS)
            probes = sweeps.run(_probe, range(2), n_jobs=-1)
        workers = client.run(os.getpid)
    _same(serial, par)
    # the folds ran in the cluster's worker processes, each configured for its share of this machine's cores
    assert {p["pid"] for p in probes} <= set(workers.values())
    assert all(p["configured"]["cpu_devices"] == sweeps.worker_devices(2) == p["devices"] for p in probes)


def test_evaluate_cells_gives_each_cell_its_own_evaluation(serial):
    done = []
    kw = {k: v for k, v in SETTINGS.items() if k not in ("protocol", "benchmark_set", "n_train", "n_skills")}
    out = evaluation.evaluate_cells([(None, 1)], n_jobs=1, data=_board(), protocol="leave-family-out", n_skills=1,
                                on_cell=lambda c, r: done.append(c), **kw)
    assert list(out) == done == [(None, 1)]
    _same(serial, out[(None, 1)])
    with pytest.raises(bs.InputError, match="cell"):
        evaluation.evaluate_cells([("leaderboard_v2",)], data=_board())
