"""Command line: ``bayes-sloth fit | predict``.

Every user error exits non-zero with one line on stderr naming what is wrong
(set ``BAYES_SLOTH_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

from .errors import BayesSlothError, InputError


def _columns(args) -> dict:
    return {
        k: v
        for k, v in {
            "model_col": args.model_col,
            "family_col": args.family_col,
            "params_col": args.params_col,
            "tokens_col": args.tokens_col,
            "instruct_col": args.instruct_col,
        }.items()
        if v is not None
    }


def _benchmarks(args):
    if not args.benchmarks:
        return None
    from .metadata import BENCHMARK_SETS

    if args.benchmarks in BENCHMARK_SETS:
        return list(BENCHMARK_SETS[args.benchmarks])
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if not names:
        raise InputError(f"--benchmarks {args.benchmarks!r} names no benchmark")
    return names


def load_data(args):
    """The leaderboard named by --data (CSV) or else the downloaded Sloth table."""
    from .data import load_leaderboard, load_sloth

    scale = "percent" if getattr(args, "percent", False) else "unit"
    if args.data:
        return load_leaderboard(args.data, benchmarks=_benchmarks(args), score_scale=scale, **_columns(args))
    return load_sloth(data_dir=args.data_dir, benchmarks=_benchmarks(args))


def add_data_options(p: argparse.ArgumentParser, data_required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=data_required, help="leaderboard CSV (default: the Sloth table, downloaded and cached)")
    g.add_argument("--data-dir", help="local folder holding sloth/data_v2.csv (instead of downloading; or set $BAYES_SLOTH_DATA_DIR)")
    g.add_argument("--benchmarks", help="comma-separated score columns, or a set name (leaderboard_v1, leaderboard_v2, leaderboard_v1+v2)")
    g.add_argument("--percent", action="store_true", help="scores are on a 0-100 scale: divide by 100")
    for key, what in (("model", "model name"), ("family", "family"), ("params", "parameters in billions"),
                      ("tokens", "training tokens in trillions"), ("instruct", "instruct flag")):
        g.add_argument(f"--{key}-col", help=f"column with the {what}")


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and sampler")
    g.add_argument("--skills", type=int, default=3, help="number of latent skills K (default 3)")
    g.add_argument("--link", default="monotone", choices=["monotone", "sigmoid"],
                   help="link from skills to scores: a learned monotone link (default) or the sigmoid")
    g.add_argument("--noise", default="normal", choices=["normal", "logistic"], help="misfit distribution on [0, 1]: truncated normal or (heavier-tailed) truncated logistic")
    g.add_argument("--instruct-shift", action=argparse.BooleanOptionalAction, default=True,
                   help="shift the skills of instruction-tuned models (default on)")
    g.add_argument("--family-slopes", action="store_true",
                   help="give each family its own partially pooled slope in log parameters")
    g.add_argument("--model-effects", action=argparse.BooleanOptionalAction, default=True,
                   help="give each model its own partially pooled offset on the link scale, common to all "
                        "benchmarks (default on; --no-model-effects: the leaner law, about 2.5x faster, whose "
                        "intervals for families seen through one or two models are too narrow)")
    g.add_argument("--chains", type=int, default=4)
    g.add_argument("--warmup", type=int, default=1000)
    g.add_argument("--draws", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--progress", action="store_true", help="print the sampler's progress (every 10 %% of the iterations) on stderr")


def law_from_args(args):
    from .estimator import SkillsLaw

    return SkillsLaw(
        n_skills=args.skills, link=args.link, noise=args.noise, chains=args.chains, warmup=args.warmup,
        draws=args.draws, seed=args.seed, progress=args.progress, instruct_shift=bool(args.instruct_shift),
        family_slopes=bool(args.family_slopes), model_effects=bool(args.model_effects),
    )


def _finite(x):
    return x if isinstance(x, (int, str)) or (isinstance(x, float) and math.isfinite(x)) else None


def cmd_fit(args) -> int:
    lb = load_data(args)
    law = law_from_args(args)
    t0 = time.perf_counter()
    law.fit(lb)
    seconds = time.perf_counter() - t0
    d = law.diagnostics_
    if args.out:
        law.save(args.out)
    out = {
        "seconds": round(seconds, 3),
        "sampling_seconds": round(law.fit_seconds_, 3),
        "n_models": len(law.leaderboard_),
        "n_families": len(law.families_),
        "n_benchmarks": len(law.benchmarks_),
        "n_observed": law.leaderboard_.n_observed,
        "n_skills": law.spec_.n_skills,
        "anchors": law.anchors_,
        "max_rhat": _finite(d.max_rhat),
        "min_ess_bulk": _finite(d.min_ess_bulk),
        "min_ess_tail": _finite(d.min_ess_tail),
        "divergences": d.divergences,
        "converged": d.ok,
        "out": args.out,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"fitted {law!r} in {seconds:.1f} s; anchors {', '.join(law.anchors_)}")
        print(d)
        if args.out:
            print(f"saved to {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .estimator import SkillsLaw

    law = SkillsLaw.load(args.fit)
    table = law.forecast(args.data, level=args.interval, seed=args.seed, columns=_columns(args))
    cols = [c for c in ("model", "family", "benchmark", "mean", "median", "lower", "upper", "observed") if c in table]
    table = table[cols]
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} forecasts ({table['model'].nunique()} models x {len(law.benchmarks_)} benchmarks, "
              f"{args.interval:.0%} intervals) to {args.out}")
    else:
        print(table.to_csv(index=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="bayes-sloth", description="Bayesian skills scaling laws for LLM benchmarks.")
    parser.add_argument("--version", action="version", version=f"bayes_sloth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit the skills law to a leaderboard and report diagnostics")
    add_data_options(p)
    add_model_options(p)
    p.add_argument("--out", help="save the fit to this netCDF file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="forecast scores of new models from a saved fit")
    p.add_argument("fit", help="fit file written by `bayes-sloth fit --out`")
    p.add_argument("--data", required=True, help="CSV of new models (model, family, params, tokens[, instruct])")
    for key in ("model", "family", "params", "tokens", "instruct"):
        p.add_argument(f"--{key}-col")
    p.add_argument("--interval", type=float, default=0.9, help="central interval level (default 0.9)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", help="write the table to this CSV (default: stdout)")
    p.set_defaults(func=cmd_predict)

    for register in _EXTENSIONS:
        register(sub)
    return parser


#: Other modules add subcommands here (evaluate, report) without this file
#: knowing their options: each is a function taking the subparsers object.
_EXTENSIONS: list = []


def _load_extensions() -> None:
    for mod in ("bayes_sloth.evaluation", "bayes_sloth.report"):
        try:
            m = __import__(mod, fromlist=["register_cli"])
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        if hasattr(m, "register_cli") and m.register_cli not in _EXTENSIONS:
            _EXTENSIONS.append(m.register_cli)


def main(argv=None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("BAYES_SLOTH_DEBUG")
    # catch_warnings() restores the filters but not formatwarning: put it back
    # ourselves so that calling main() from Python leaves warnings as they were
    formatwarning = warnings.formatwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
            return int(args.func(args) or 0)
    except BayesSlothError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: still one line, never a traceback
        if debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set BAYES_SLOTH_DEBUG=1 for the traceback and please report it)", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
