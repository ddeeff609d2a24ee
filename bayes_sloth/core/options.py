"""Every option of the skills law and of its sampler, declared once: its default, allowed values and help.

:class:`LawOptions` holds what fixes the law (and its compiled programs):
K, the link, the loadings' sign, the noise law and the optional effects.
:class:`SamplerOptions` holds how it is sampled. Everything else reads them:
:class:`~bayes_sloth.SkillsLaw`'s constructor (its signature is built from
both records), :class:`~bayes_sloth.core.model.ModelSpec`, the command line's
flags (built from the same fields, with the same help), the simulator and the
evaluation. A new option is one field here and its use in the model.

A field's ``metadata``:

- ``doc``: one sentence or two, the help of the CLI flag and of the
  estimator's parameter (decisions and their measurements are in
  ``docs/decisions.md``, not here);
- ``check``: the allowed values, a tuple of choices or a name in :data:`CHECKS`;
- ``flag``: the CLI flag (default: the name with dashes), or None for no flag;
- ``absent``: for a law option, its value in a fit saved before the option
  existed (the law was then without it).

Named presets (:data:`SIMULATION_LAW`, :data:`LEAN_LAW`,
:data:`EVALUATION_SAMPLER`) are records too, so their values are also
written once.
"""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .errors import InputError

#: ``coordinates="auto"`` samples in the scaled coordinates on a leaderboard of at least this many families and
#: in the anchored ones on fewer (:func:`bayes_sloth.core.model.auto_coordinates` says why).
AUTO_SCALED_MIN_FAMILIES = 40

#: Links from skills to scores: the names a :class:`~bayes_sloth.core.links.Link` is registered under.
LINK_NAMES = ("monotone", "monotone-pooled", "sigmoid")


def _opt(default, doc: str, check=None, flag: Any = MISSING, absent: Any = MISSING, parametrization: bool = False):
    """One option: its default, one-line doc, named check, CLI flag, the value a fit file without it had
    (``absent``), and whether it only re-parametrizes the same posterior (``parametrization``: the sampler's
    coordinates, not the law; a simulated truth does not record it)."""
    meta = {"doc": doc, "check": check, "parametrization": parametrization}
    if flag is not MISSING:
        meta["flag"] = flag
    if absent is not MISSING:
        meta["absent"] = absent
    return field(default=default, metadata=meta)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _positive_int(v) -> bool:
    return _is_int(v) and v >= 1


def _draws(v) -> bool:
    return v == "auto" or _positive_int(v)


def _probability(v) -> bool:
    return v == "auto" or (isinstance(v, (int, float, np.floating)) and not _is_bool(v) and 0 < float(v) < 1)


def _tree_depth(v) -> bool:
    return _is_int(v) and 1 <= v <= 15


#: Largest seed: keys are PRNGKey(seed) and seed + 1, seed + 2 for the starts and replicates.
MAX_SEED = 2**31 - 3


def _seed(v) -> bool:
    return _is_int(v) and 0 <= v <= MAX_SEED


def _anchors(v) -> bool:
    return v is None or (not isinstance(v, str) and all(isinstance(a, str) for a in v))


def _progress(v) -> bool:
    return _is_bool(v) or callable(v)


#: Named checks: (test, what the value must be).
CHECKS = {
    "bool": (_is_bool, "True or False"),
    "positive_int": (_positive_int, "a positive integer"),
    "draws": (_draws, "a positive integer or 'auto'"),
    "probability": (_probability, "'auto' or a number strictly between 0 and 1"),
    "tree_depth": (_tree_depth, "an integer from 1 to 15"),
    "seed": (_seed, f"an integer from 0 to {MAX_SEED}"),
    "anchors": (_anchors, "a list of benchmark names, one per skill, or None"),
    "progress": (_progress, "True, False or a callable (chain, iteration, total, phase)"),
}


class _Record:
    """What both records share: checks on construction, ``replace`` with a did-you-mean, and help."""

    def __post_init__(self):
        for f in fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if check is None:
                continue
            if isinstance(check, tuple):
                if value not in check:
                    raise InputError(f"{f.name} must be one of {check}, got {value!r}")
            else:
                test, what = CHECKS[check]
                if not test(value):
                    raise InputError(f"{f.name} must be {what}, got {value!r}")
        if "anchors" in self.names() and self.anchors is not None and not isinstance(self.anchors, tuple):
            object.__setattr__(self, "anchors", tuple(self.anchors))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def field(cls, name: str):
        return next(f for f in fields(cls) if f.name == name)

    @classmethod
    def unknown(cls, given, known=()) -> None:
        """Refuse names that are no option, with the closest known one."""
        allowed = tuple(known) + cls.names()
        for name in given:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise InputError(f"{name!r} is not an option{hint} (options: {', '.join(allowed)})")

    @classmethod
    def pick(cls, values: dict) -> "_Record":
        """The record of the entries of ``values`` that are its fields (defaults for the rest), checked."""
        return cls(**{k: v for k, v in values.items() if k in cls.names()})

    def changed(self, **values) -> "_Record":
        type(self).unknown(values)
        return replace(self, **values)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def differences(self) -> dict:
        """The options where this record differs from the defaults (a preset as keyword arguments)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class LawOptions(_Record):
    """The skills law's options: what the law is (see :mod:`bayes_sloth.core.model` for the math)."""

    n_skills: int = _opt(3, "number of latent skills K (1 <= K < number of benchmarks)", "positive_int",
                         flag="skills")
    link: str = _opt("monotone", "link from skills to scores: a learned monotone link shared by all benchmarks "
                     "(monotone), one per benchmark partially pooled toward a shared one (monotone-pooled), "
                     "or the logistic sigmoid", LINK_NAMES)
    loadings: str = _opt("positive", "sign of the free loadings: positive (more skill never lowers a score) "
                         "or real", ("positive", "real"))
    noise: str = _opt("normal", "misfit around the law on [0, 1]: truncated normal, or truncated logistic "
                      "(heavier tails)", ("normal", "logistic"))
    instruct_shift: bool = _opt(True, "shift the skills of instruction-tuned models", "bool")
    instruct_slope: bool = _opt(True, "let the instruct shift grow with log parameters (its own slope for "
                                "tuned models)", "bool", absent=False)
    family_slopes: bool = _opt(True, "give each family its own partially pooled slope in log parameters, so a "
                               "family seen through small models forecasts its large ones with the spread of "
                               "how families scale", "bool", absent=False)
    model_effects: bool = _opt(True, "give each model its own partially pooled offset on the link scale, common "
                               "to all its benchmarks, so a family seen through one or two models is not taken "
                               "to be exactly like them", "bool")
    coordinates: str = _opt("auto", "the sampler's coordinates for the same posterior: scaled (each skill in units of "
                             "its family spread, the instruct shift sheared off the family efficiencies and "
                             "intercepts, families on a sum-zero basis), anchored (each skill in its anchor's "
                             "units, as the law is written) or auto: scaled on leaderboards of at least "
                             f"{AUTO_SCALED_MIN_FAMILIES} families, anchored on fewer, where the families pin "
                             "each skill's spread too loosely to be its unit", ("auto", "scaled", "anchored"),
                             absent="anchored", parametrization=True)
    anchors: tuple | None = _opt(None, "anchor benchmark of each skill, comma-separated (unit loading, zero "
                                 "loadings on later skills); default: chosen from the data", "anchors")

    def distribution(self) -> dict:
        """The options that define the distribution (not its coordinates, not the anchors' names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.metadata.get("parametrization") and f.name not in ("n_skills", "anchors")}

    def structure(self) -> "LawOptions":
        """The options that fix the compiled law: anchors (names) are resolved to indices by the spec."""
        return replace(self, anchors=None)


@dataclass(frozen=True)
class SamplerOptions(_Record):
    """How the law's posterior is sampled (NUTS), or approximated (``method="svi"``)."""

    chains: int = _opt(4, "NUTS chains", "positive_int")
    warmup: int = _opt(500, "warm-up iterations per chain", "positive_int")
    draws: int | str = _opt("auto", "kept draws per chain, or 'auto': draw in blocks of 100 until R-hat <= 1.01 "
                            "and bulk and tail ESS >= target_ess with no divergence (or max_draws)", "draws")
    target_ess: int = _opt(400, "bulk and tail ESS that draws='auto' aims at", "positive_int")
    max_draws: int = _opt(4000, "cap of draws per chain with draws='auto'", "positive_int")
    target_accept: float | str = _opt("auto", "NUTS target acceptance rate, or 'auto': 0.99 on leaderboards of "
                                      "at most 5 benchmarks, 0.9 otherwise", "probability")
    max_tree_depth: int = _opt(10, "NUTS maximum tree depth", "tree_depth")
    chain_method: str | None = _opt(None, "how chains run: in parallel on CPU devices, vectorized (an "
                                    "accelerator) or one after another; default: parallel on a CPU with "
                                    "several devices, vectorized on an accelerator",
                                    (None, "parallel", "vectorized", "sequential"))
    adaptation: str = _opt("diagonal", "NUTS's mass matrix: diagonal, or diagonal plus a low-rank correction learned "
                           "from the warm-up's draws and gradients partway through it (low-rank; the link's knot "
                           "weights keep the diagonal; a warm-up under 200 iterations uses the diagonal alone)",
                           ("diagonal", "low-rank"))
    init: str = _opt("svi", "chain starts: overdispersed draws of a short variational fit, or uniform in "
                     "(-2, 2) on the unconstrained scale", ("svi", "uniform"))
    method: str = _opt("nuts", "nuts, or svi: a fast mean-field variational approximation (no convergence "
                       "checks; intervals too narrow) for leaderboards too large for NUTS", ("nuts", "svi"))
    seed: int = _opt(0, "seed of the sampler: the same seed gives the same draws", "seed")
    progress: Any = _opt(True, "True: a progress display per fit; False: none; a callable (chain, iteration, "
                         "total, phase): called about every 5 % of each chain's warm-up and draws", "progress",
                         flag=None)


#: What ``target_accept="auto"`` resolves to: (leaderboards of at most 5 benchmarks, larger ones); see
#: :func:`bayes_sloth.core.estimator.auto_target_accept`.
AUTO_TARGET_ACCEPT = (0.99, 0.9)

#: The law of :func:`~bayes_sloth.simulate_leaderboard` by default: the default law without the family and
#: instruct slopes. The fitted default contains it, and the synthetic leaderboards the tests were set on (and
#: ``data/synthetic_leaderboard.csv``) stay the same; a test of the slopes turns them on. A simulation draws the
#: law's own parameters (its truths are named as the law writes them), so its coordinates are "anchored".
SIMULATION_LAW = LawOptions(n_skills=2, instruct_slope=False, family_slopes=False, coordinates="anchored")
#: The lean law: sigmoid link, no offsets, no instruct shift or slopes.
LEAN_LAW = LawOptions(link="sigmoid", model_effects=False, instruct_shift=False, instruct_slope=False,
                      family_slopes=False)
#: The sampler of each fold of a leave-family-out evaluation (:func:`bayes_sloth.evaluation.evaluate` and
#: ``bayes-sloth evaluate``): a fold fit is one of dozens, scored on held-out pairs, not diagnosed alone.
EVALUATION_SAMPLER = SamplerOptions(chains=2, warmup=500, draws=500)


def absent_values(record=LawOptions) -> dict:
    """The value each law option had in a fit saved before the option existed."""
    return {f.name: f.metadata.get("absent", f.default) for f in fields(record)}


def law_and_sampler(values: dict, known=()) -> tuple[LawOptions, SamplerOptions]:
    """Both records from one mapping of option names (unknown names refused with a did-you-mean)."""
    LawOptions.unknown(values, tuple(known) + SamplerOptions.names())
    return LawOptions.pick(values), SamplerOptions.pick(values)


def _type_name(f) -> str:
    check = f.metadata.get("check")
    if isinstance(check, tuple):
        return "{" + ", ".join(repr(c) for c in check if c is not None) + "}" + (", optional" if None in check else "")
    return {"bool": "bool", "positive_int": "int", "draws": "int or 'auto'", "probability": "float or 'auto'",
            "tree_depth": "int", "seed": "int", "anchors": "list of str, optional",
            "progress": "bool or callable"}.get(check, "object")


def parameters_doc(records=(LawOptions, SamplerOptions), indent: str = "    ") -> str:
    """The numpydoc ``Parameters`` entries of every option of ``records``, from their declarations."""
    out = []
    for record in records:
        for f in fields(record):
            out.append(f"{indent}{f.name} : {_type_name(f)}, default {f.default!r}")
            doc = f.metadata["doc"]
            out.append(textwrap.fill(f"{doc[0].upper()}{doc[1:]}.", 110, initial_indent=indent + "    ",
                                     subsequent_indent=indent + "    "))
    return "\n".join(out)


def signature(records=(LawOptions, SamplerOptions), positional=("n_skills",)):
    """An ``inspect.Signature`` ``(self, n_skills=3, *, link='monotone', ...)`` of every option of ``records``:
    what ``help()``, a notebook's tooltip and scikit-learn's ``get_params`` read from a constructor."""
    import inspect

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for record in records:
        for f in fields(record):
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in positional else inspect.Parameter.KEYWORD_ONLY
            params.append(inspect.Parameter(f.name, kind, default=f.default))
    return inspect.Signature(params)
