"""Every option of the law and the sampler is declared once (``bayes_sloth.core.options``) and read everywhere."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields
from pathlib import Path

import pytest

import bayes_sloth as bs
from bayes_sloth.cli import build_parser, law_from_args
from bayes_sloth.core.model import ModelSpec, auto_coordinates
from bayes_sloth.core.options import (
    EVALUATION_SAMPLER,
    LEAN_LAW,
    SIMULATION_LAW,
    LawOptions,
    SamplerOptions,
    absent_values,
    law_and_sampler,
)
from bayes_sloth.core.sampler import SamplerConfig
from bayes_sloth.workflows import evaluation, simulation

from .conftest import REPO_ROOT

LAW, SAMPLER = LawOptions(), SamplerOptions()


def test_the_estimator_takes_every_option_with_the_records_defaults():
    params = inspect.signature(bs.SkillsLaw).parameters
    assert list(params) == [*LawOptions.names(), *SamplerOptions.names()]
    for name, p in params.items():
        record = LawOptions if name in LawOptions.names() else SamplerOptions
        assert p.default == record.field(name).default, name
    assert bs.SkillsLaw().get_params() == {**LAW.to_dict(), **SAMPLER.to_dict()}
    assert all(f.name in bs.SkillsLaw.__doc__ for r in (LawOptions, SamplerOptions) for f in fields(r))


def test_the_spec_the_cli_the_evaluation_and_the_simulator_read_the_same_defaults():
    spec = ModelSpec(LAW.n_skills, 5, 4, tuple(range(LAW.n_skills)))
    # the spec resolves coordinates="auto" for its 4 families; every other option is the default
    assert spec.options == LAW.structure().changed(coordinates=auto_coordinates(4))
    assert spec.link == LAW.link and spec.family_slopes == LAW.family_slopes
    fit = law_from_args(build_parser().parse_args(["fit"])).get_params()
    assert {k: v for k, v in fit.items() if k != "progress"} == {
        k: v for k, v in {**LAW.to_dict(), **SAMPLER.to_dict()}.items() if k != "progress"}
    ev = law_from_args(build_parser().parse_args(["evaluate"])).get_params()
    assert {k: ev[k] for k in SamplerOptions.names() if k != "progress"} == {
        k: v for k, v in EVALUATION_SAMPLER.to_dict().items() if k != "progress"}
    for fn in (evaluation.evaluate, evaluation.evaluate_cells):
        assert inspect.signature(fn).parameters["n_skills"].default == LAW.n_skills, fn.__name__
    cfg = SamplerConfig()
    assert (cfg.chains, cfg.warmup, cfg.draws, cfg.max_tree_depth, cfg.init) == (
        SAMPLER.chains, SAMPLER.warmup, SAMPLER.draws, SAMPLER.max_tree_depth, SAMPLER.init)
    _, truth = bs.simulate_leaderboard(n_families=3, n_benchmarks=3, models_per_family=2, seed=0)
    assert truth["law"] == SIMULATION_LAW.distribution()  # the law drawn from, not its sampling coordinates
    assert inspect.signature(bs.simulate_leaderboard).parameters["n_skills"].default == SIMULATION_LAW.n_skills
    assert simulation.LEAN_LAW == LEAN_LAW.differences()


def test_evaluation_folds_sample_with_the_evaluation_sampler():
    lb, _ = bs.simulate_leaderboard(n_families=6, n_benchmarks=3, n_skills=1, models_per_family=(2, 3), seed=0)
    _, tasks, settings = evaluation.fold_tasks(lb, "leave-family-out", None, 1, 1, "all",
                                               benchmarks=lb.benchmarks, law_kwargs={"seed": 3})
    assert {k: settings[k] for k in ("chains", "warmup", "draws", "seed")} == {
        "chains": EVALUATION_SAMPLER.chains, "warmup": EVALUATION_SAMPLER.warmup,
        "draws": EVALUATION_SAMPLER.draws, "seed": 3}


def _literal_option_defaults(path: Path) -> list[str]:
    """Function parameters and dataclass fields named like an option, with a literal default other than None."""
    names = set(LawOptions.names()) | set(SamplerOptions.names()) - {"seed", "progress"}
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
            hits += [f"{node.name}({arg.arg}={ast.unparse(d)})" for arg, d in pairs
                     if arg.arg in names and isinstance(d, ast.Constant) and d.value is not None]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in names \
                and isinstance(node.value, ast.Constant) and node.value.value is not None:
            hits.append(f"{node.target.id} = {ast.unparse(node.value)}")
    return hits


def test_no_default_is_written_outside_the_options_module(tmp_path):
    offenders = {str(p.relative_to(REPO_ROOT)): hits for p in (REPO_ROOT / "bayes_sloth").rglob("*.py")
                 if p.name != "options.py" and (hits := _literal_option_defaults(p))}
    assert not offenders
    planted = tmp_path / "m.py"  # the check sees one
    planted.write_text("def f(data, link='monotone', chains=4, seed=0, anchors=None):\n    pass\n")
    assert _literal_option_defaults(planted) == ["f(link='monotone')", "f(chains=4)"]


def test_bad_options_name_the_option():
    with pytest.raises(bs.InputError, match="link must be one of"):
        bs.SkillsLaw(link="probit").validate_params()
    with pytest.raises(bs.InputError, match="instruct_slope must be True or False, got 'yes'"):
        bs.SkillsLaw(instruct_slope="yes").validate_params()
    with pytest.raises(TypeError, match="unexpected keyword argument 'familly_slopes'; did you mean 'family_slopes'"):
        bs.SkillsLaw(familly_slopes=False)
    with pytest.raises(bs.InputError, match="'drawz' is not an option; did you mean 'draws'"):
        law_and_sampler({"drawz": 10})
    with pytest.raises(bs.InputError, match="'lnk' is not an option; did you mean 'link'"):
        bs.simulate_leaderboard(lnk="sigmoid")


def test_a_saved_spec_without_a_later_option_is_the_law_before_it():
    old = {"n_skills": 1, "n_benchmarks": 3, "n_families": 2, "anchors": [0], "link": "monotone",
           "loadings": "positive", "noise": "normal", "instruct_shift": True, "model_effects": True}
    spec = ModelSpec.from_dict(old)
    absent = absent_values()
    assert spec.instruct_slope is absent["instruct_slope"] is False
    assert spec.family_slopes is absent["family_slopes"] is False
    assert ModelSpec.from_dict(spec.to_dict()) == spec
