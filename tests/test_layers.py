"""One library in layers: importing changes nothing, the core imports no workflow, ecosystem contracts hold.

- ``import bayes_sloth`` sets no JAX option and touches no cache; devices and
  the compile cache are an explicit ``bayes_sloth.configure()``;
- the import graph: core modules never import a workflow or the command line,
  and only ``cli.py`` builds argument parsers;
- scikit-learn's estimator contract (``clone``), ArviZ's sample statistics and
  group attributes, labelled skills, no warning from ``az.summary``;
- masked pairs stay out of log_likelihood / observed_data / PPC;
- predictions: Bambi's rule for new families, the extrapolation flag, and
  draws that depend on the row and the seed, not on the other rows asked for.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth._moved import MOVED
from bayes_sloth import cli

from .conftest import REPO_ROOT, TINY_FIT, make_tiny_frame

PACKAGE = REPO_ROOT / "bayes_sloth"
#: The layers, bottom up, as folders: a module may import its own layer and those below it, never above.
LAYERS = ("core", "workflows")
INTERFACE = {"cli"}
#: Old flat module paths kept for one release, each warning that it moved (and their helper).
DEPRECATED_SHIMS = (*MOVED, "_moved")


def _run(code: str, env=None, timeout=300):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env=env or dict(os.environ), cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ no side effects at import
def test_import_after_jax_changes_no_jax_option():
    out = _run("""
import json, os, jax
jax.numpy.ones(3)
names = [k for k in jax.config.values]
before = {k: repr(jax.config.values[k]) for k in names}
env = dict(os.environ)
import bayes_sloth as bs
bs.SkillsLaw, bs.evaluation, bs.report, bs.plots  # every module loaded
after = {k: repr(jax.config.values[k]) for k in names}
print(json.dumps({"changed": sorted(k for k in names if before[k] != after[k]),
                  "env": sorted(set(os.environ.items()) ^ set(env.items())), "devices": jax.local_device_count()}))
""")
    assert out == {"changed": [], "env": [], "devices": 1}


def test_import_then_unrelated_jit_writes_nothing_to_our_cache(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    env.pop("BAYES_SLOTH_XLA_CACHE", None)
    out = _run("""
import json, jax, jax.numpy as jnp
import bayes_sloth as bs
bs.SkillsLaw
f = jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)
f(jnp.arange(5.0)).block_until_ready()
print(json.dumps({"cache_dir": jax.config.jax_compilation_cache_dir}))
""", env=env)
    assert out["cache_dir"] in (None, "")
    assert not (tmp_path / "cache" / "bayes_sloth").exists()


def test_configure_sets_devices_and_cache_through_jax_options(tmp_path):
    out = _run(f"""
import json, warnings, jax
import bayes_sloth as bs
got = bs.configure(cpu_devices=2, compile_cache={str(tmp_path / 'xla')!r})
print(json.dumps({{"got": got, "devices": jax.local_device_count(),
                  "cache": jax.config.jax_compilation_cache_dir}}))
""")
    assert out["devices"] == 2 and out["got"]["cpu_devices"] == 2
    assert out["cache"] == out["got"]["compile_cache"] == str(tmp_path / "xla")


def test_configure_after_jax_started_says_what_to_do():
    out = _run("""
import json, warnings, jax
jax.numpy.ones(1)  # JAX has started with one CPU device
import bayes_sloth as bs
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    got = bs.configure(cpu_devices=2, compile_cache=False)
    bs.configure(cpu_devices=2, compile_cache=False)  # said once
print(json.dumps({"got": got, "warnings": [str(x.message) for x in w]}))
""")
    assert out["got"]["cpu_devices"] == 1
    assert len(out["warnings"]) == 1 and "configure() before anything uses JAX" in out["warnings"][0]


def test_sequential_chains_are_announced_once():
    out = _run("""
import json, warnings
import bayes_sloth as bs
import bayes_sloth.core.sampler as sampler
lb, _ = bs.simulate_leaderboard(n_families=4, n_benchmarks=3, n_skills=1, models_per_family=2, seed=0)

class Stop(Exception):
    pass

def stop(*a, **k):
    raise Stop
sampler.get_sampler = stop  # the announcement comes before any sampling; nothing need be sampled
msgs = []
for _ in range(2):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            bs.SkillsLaw(1, chains=2, warmup=5, draws=5).fit(lb)
        except Stop:
            pass
    msgs += [str(x.message) for x in w if "one after another" in str(x.message)]
print(json.dumps({"msgs": msgs}))
""")
    assert len(out["msgs"]) == 1 and "bayes_sloth.configure()" in out["msgs"][0]


# ------------------------------------------------------------------ layers in the import graph
def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Fully qualified package modules a module imports (relative or absolute), at any depth in its code.

    ``from .x import name`` counts as an import of ``x``, and of ``x.name`` when that is a module itself."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "bayes_sloth":
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bayes_sloth"}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(p) if m in files and m != name} for name, p in files.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_every_module_sits_in_a_layer_folder():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top <= INTERFACE | set(DEPRECATED_SHIMS), f"modules outside the layer folders: {sorted(top - INTERFACE)}"
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file()


def test_old_flat_paths_warn_and_forward_and_nothing_inside_uses_them():
    """``from bayes_sloth.model import skills_law`` still works for one release, with a DeprecationWarning that
    names the new place; no module of the layers imports an old path."""
    import importlib
    import warnings

    for old, new in MOVED.items():
        sys.modules.pop(f"bayes_sloth.{old}", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shim = importlib.import_module(f"bayes_sloth.{old}")
        assert any(issubclass(w.category, DeprecationWarning) and f"bayes_sloth.{new}" in str(w.message)
                   for w in caught), old
        target = importlib.import_module(f"bayes_sloth.{new}")
        public = [n for n in vars(target) if not n.startswith("_")]
        assert public and all(getattr(shim, n) is getattr(target, n) for n in public), old
        sys.modules.pop(f"bayes_sloth.{old}", None)
        vars(bs).pop(old, None)  # bs.model is again the package's name for the new module
    for module, deps in _graph().items():
        if _layer(module) in LAYERS:
            assert not {d for d in deps if d.split(".")[-1] in MOVED and _layer(d) not in LAYERS}, module


def test_layers_import_only_downwards():
    order = {"core": 0, "workflows": 1, "cli": 2}
    graph = _graph()
    for module, deps in graph.items():
        mine = _layer(module)
        if mine not in order:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs in order:
                assert order[theirs] <= order[mine], f"{module} ({mine}) imports {dep} ({theirs}): arrows point down"


def test_no_import_cycles():
    graph = {m: {d for d in deps if _layer(d) != "root"} for m, deps in _graph().items() if _layer(m) != "root"}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d] if d in path else [m, d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_layer_check_sees_a_violation(tmp_path):
    core, wf = tmp_path / "bayes_sloth" / "core", tmp_path / "bayes_sloth" / "workflows"
    for d in (core, wf):
        d.mkdir(parents=True)
    (core / "a.py").write_text("def f():\n    from ..workflows.b import g\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "bayes_sloth"
    try:
        assert _graph()["bayes_sloth.core.a"] == set()  # b does not exist: not a package module
        (wf / "b.py").write_text("from ..core import a\n")
        assert _graph()["bayes_sloth.core.a"] == {"bayes_sloth.workflows.b"}
        with pytest.raises(AssertionError, match="arrows point down"):
            test_layers_import_only_downwards()
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycles()
    finally:
        PACKAGE = saved


def _configures_the_process(tree) -> list[str]:
    """Calls that change process-wide state: jax.config.update(...), os.environ[...] = ..., os.environ.update."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            text = ast.unparse(node.func)
            if text in ("jax.config.update", "os.environ.update", "os.environ.setdefault", "os.putenv"):
                hits.append(text)
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            hits += [ast.unparse(t) for t in targets if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ"]
    return hits


def test_only_the_cli_parses_arguments_or_configures_the_process():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        if path.stem != "cli":
            assert "argparse" not in imported, f"{path.name} parses arguments"
        if path.stem not in ("cli", "config"):
            assert not _configures_the_process(tree), f"{path.name} configures the process"
    assert _configures_the_process(ast.parse((PACKAGE / "core" / "config.py").read_text()))  # the check sees them


# ------------------------------------------------------------------ ecosystem contracts
def test_scikit_learn_clone_and_params():
    sklearn_base = pytest.importorskip("sklearn.base")
    law = bs.SkillsLaw(2, anchors=("MMLU", "GSM8K"), chains=3, seed=7)
    twin = sklearn_base.clone(law)
    assert twin is not law and twin.get_params(deep=True) == law.get_params()
    assert twin.anchors == law.anchors == ("MMLU", "GSM8K")  # stored unchanged (clone checks it too)
    assert law.set_params(draws=50, target_accept=0.95) is law and law.draws == 50
    with pytest.raises(bs.InputError, match="no parameter 'draw'.*did you mean 'draws'"):
        law.set_params(draw=10)


def test_sample_stats_attributes_and_labels(tiny_fit):
    law, _ = tiny_fit
    stats = law.idata_.sample_stats
    for name in ("lp", "acceptance_rate", "step_size", "tree_depth", "n_steps", "diverging", "energy"):
        assert stats[name].dims == ("chain", "draw"), name
    assert float(stats["acceptance_rate"].min()) >= 0 and float(stats["acceptance_rate"].max()) <= 1
    assert np.isfinite(stats["lp"].values).all() and (stats["step_size"].values > 0).all()
    for group in law.idata_.groups():
        attrs = law.idata_[group].attrs
        assert attrs.get("inference_library") == "numpyro" and "created_at" in attrs, group
    assert list(law.idata_.posterior["skill"].values) == law.anchors_
    assert list(law.loadings_["skill"].values) == law.anchors_


def test_az_summary_of_a_fit_does_not_warn(tiny_fit):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = az.summary(tiny_fit[0].idata_)
    assert {"loadings_free[0]", "tau[" + tiny_fit[0].anchors_[0] + "]"} <= set(table.index)


def test_masked_pairs_stay_out_of_the_fitted_groups(tiny_fit):
    """A fold's held-out scores are in no group that checks the fit: LOO and PPC see what was fitted."""
    lb = bs.load_leaderboard(make_tiny_frame())
    mask = np.ones(lb.n_observed, dtype=bool)
    mask[::5] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = bs.SkillsLaw(**TINY_FIT).fit(lb, obs_weight=mask)
    kept = int(mask.sum())
    idata = law.idata_
    assert idata.observed_data["y"].size == kept
    assert idata.log_likelihood["y"].sizes["obs"] == kept
    assert idata.posterior_predictive["y"].sizes["obs"] == kept
    assert list(idata.observed_data["obs"].values) == list(np.flatnonzero(mask))
    assert idata.constant_data["obs_weight"].values.tolist() == mask.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert law.loo().n_data_points == kept


# ------------------------------------------------------------------ predictions
def _rows(**override):
    base = {"model": ["seen-7b", "unseen-1b", "unseen-8b"], "family": ["family_00", "brand-new", "brand-new"],
            "params": [7.0, 1.0, 8.0], "tokens": [2.0, 1.5, 1.5], "instruct": [False, False, False]}
    base.update(override)
    return pd.DataFrame(base)


def test_new_families_follow_bambis_rule(tiny_fit):
    law, _ = tiny_fit
    typo = _rows(family=["family_00", "family_01x", "family_01x"])
    with pytest.warns(UserWarning, match=r"'family_01x' \(did you mean 'family_01'\?\) not in the fit"):
        law.predict(typo)
    with pytest.raises(bs.InputError, match="family_01x.*new_families='allow'"):
        law.predict(typo, new_families="error")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pred = law.predict(typo, new_families="allow").predictions
    assert not [x for x in w if "not in the fit" in str(x.message)]
    assert pred["seen_family"].values.tolist() == [True, False, False]


def test_extrapolation_is_flagged_and_warned(tiny_fit):
    law, _ = tiny_fit
    top = float(law.leaderboard_.covariates["params"].max())
    rows = _rows(params=[7.0, 1.0, 10 * top])
    with pytest.warns(UserWarning, match=r"extrapolating: params of 'unseen-8b' outside the fitted"):
        table = law.forecast(rows, new_families="allow")
    flags = table.groupby("model")["extrapolation"].first()
    assert flags.to_dict() == {"seen-7b": False, "unseen-1b": False, "unseen-8b": True}


def test_compute_beyond_the_fitted_models_is_extrapolation(tiny_fit):
    """Parameters and tokens each inside the fitted range, their product beyond it: the law's interaction
    term extrapolates there (the Sloth table's 70 B models at 15 T tokens), so the row is flagged."""
    law, _ = tiny_fit
    cov = law.leaderboard_.covariates
    p, t = float(cov["params"].max()), float(cov["tokens"].max())
    assert p * t > float((cov["params"] * cov["tokens"]).max())  # the premise: no fitted model has both maxima
    rows = _rows(params=[7.0, 1.0, p], tokens=[2.0, 1.5, t])
    with pytest.warns(UserWarning, match=r"extrapolating: compute of 'unseen-8b' outside the fitted .* B x T"):
        table = law.forecast(rows, new_families="allow")
    flags = table.groupby("model")["extrapolation"].first()
    assert flags.to_dict() == {"seen-7b": False, "unseen-1b": False, "unseen-8b": True}


def test_a_rows_draws_do_not_depend_on_the_other_rows(tiny_fit):
    law, _ = tiny_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = law.predict(_rows(), seed=3).predictions
        alone = law.predict(_rows().iloc[[2]], seed=3).predictions
        curve = law.predict_covariates("brand-new", [8.0], [1.5], seed=3, new_families="allow")
    for name in ("score", "mu", "skills"):
        np.testing.assert_allclose(both[name].sel(model="unseen-8b").values, alone[name].sel(model="unseen-8b").values,
                                   atol=1e-6)
    # a curve point of the same never-seen family at the same covariates has the same family draws
    np.testing.assert_allclose(curve["skills"].isel(point=0).values, both["skills"].sel(model="unseen-8b").values,
                               atol=1e-6)


def test_predict_says_when_the_fit_did_not_converge(tiny_fit):
    law, _ = tiny_fit
    assert not law.diagnostics_.ok  # 2 x 100 draws of a tiny board: the checks fail, as they should
    with pytest.warns(UserWarning, match="did not pass its convergence checks"):
        law.predict(_rows().iloc[[0]])


def test_report_from_a_saved_fit_samples_nothing(tiny_fit, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")

    def refuse(*a, **k):
        raise AssertionError("the report sampled")

    monkeypatch.setattr("bayes_sloth.core.estimator.run_nuts", refuse)
    data = tmp_path / "board.csv"
    make_tiny_frame().to_csv(data, index=False)
    new = tmp_path / "new.csv"
    _rows().to_csv(new, index=False)
    out = tmp_path / "r.html"
    assert cli.main(["report", "--fit", str(tiny_fit[1]), "--data", str(data), "--target-models", str(new),
                     "--out", str(out), "--quiet"]) == 0
    doc = out.read_text()
    assert "brand-new" in doc and "unseen-8b" in doc
