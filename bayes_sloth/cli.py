"""Command line: ``bayes-sloth fit | predict | evaluate | report``.

The only module that parses arguments, prints for a terminal, and configures
the process (CPU devices for parallel chains, the compile cache:
:func:`bayes_sloth.configure`). Every user error exits with status 2 and one
line on stderr naming what is wrong (set ``BAYES_SLOTH_DEBUG=1`` for the
traceback); output paths are checked before any sampling, and every file is
written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from dataclasses import fields

from . import __version__
from .core.config import configure
from .core.errors import BayesSlothError, InputError
from .core.metadata import BENCHMARK_SETS, SLOTH_DATA
from .core.options import EVALUATION_SAMPLER, LawOptions, SamplerOptions

# The package's modules that load JAX, ArviZ and matplotlib are imported by the commands that use them, not
# here: `--help` and `--version` answer at once, and main() points matplotlib's config folder somewhere
# writable before anything loads it (a home folder that cannot be written costs one warning, not three).


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ options
def _columns(args) -> dict:
    return {
        k: v
        for k, v in {
            "model_col": getattr(args, "model_col", None),
            "family_col": getattr(args, "family_col", None),
            "params_col": getattr(args, "params_col", None),
            "tokens_col": getattr(args, "tokens_col", None),
            "instruct_col": getattr(args, "instruct_col", None),
        }.items()
        if v is not None
    }


def _benchmarks(args):
    if not args.benchmarks:
        return None

    if args.benchmarks in BENCHMARK_SETS:
        return list(BENCHMARK_SETS[args.benchmarks])
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if not names:
        raise InputError(f"--benchmarks {args.benchmarks!r} names no benchmark")
    return names


def load_data(args):
    """The leaderboard named by --data (CSV) or else the Sloth table (shipped with the package)."""
    from .core.data import load_leaderboard, load_sloth


    scale = "percent" if getattr(args, "percent", False) else "unit"
    if args.data:
        return load_leaderboard(args.data, benchmarks=_benchmarks(args), score_scale=scale, **_columns(args))
    return load_sloth(data_dir=args.data_dir, benchmarks=_benchmarks(args))


def _data_source(args) -> str:
    from .core.data import sloth_data_path

    if args.data:
        return str(args.data)

    return f"{sloth_data_path(args.data_dir)} (Sloth table, {SLOTH_DATA['url']})"


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="leaderboard CSV (default: the Sloth table shipped with the package)")
    g.add_argument("--data-dir", help="local folder holding sloth/data_v2.csv (or set $BAYES_SLOTH_DATA_DIR)")
    g.add_argument("--benchmarks", help="comma-separated score columns, or a set name (leaderboard_v1, leaderboard_v2, leaderboard_v1+v2)")
    g.add_argument("--percent", action="store_true", help="scores are on a 0-100 scale: divide by 100")
    _column_options(g)


def _column_options(g) -> None:
    for key, what in (("model", "model name"), ("family", "family"), ("params", "parameters in billions"),
                      ("tokens", "training tokens in trillions"), ("instruct", "instruct flag")):
        g.add_argument(f"--{key}-col", help=f"column with the {what}")


def add_model_options(p: argparse.ArgumentParser, sampler: SamplerOptions = SamplerOptions()) -> None:
    """One flag per option of the law and of the sampler, with the records' help and defaults
    (:mod:`bayes_sloth.core.options`); ``sampler``: this command's sampler defaults."""
    g = p.add_argument_group("model and sampler")
    for record, defaults in ((LawOptions, LawOptions()), (SamplerOptions, sampler)):
        for f in fields(record):
            flag = f.metadata.get("flag", f.name.replace("_", "-"))
            if flag is None:
                continue
            default = getattr(defaults, f.name)
            check = f.metadata.get("check")
            kw = {"dest": f.name, "default": default}
            if check == "bool":
                kw["action"] = argparse.BooleanOptionalAction
            elif isinstance(check, tuple):
                kw["choices"] = [c for c in check if c is not None]
            else:
                kw["type"] = _FLAG_TYPES.get(check, str)
            shown = ",".join(default) if isinstance(default, tuple) else default
            g.add_argument(f"--{flag}", help=f"{f.metadata['doc']} (default {shown})".replace("%", "%%"), **kw)
    g.add_argument("--progress", action="store_true", help="print the fit's progress on stderr: a line at each stage and every 10 %% of the "
                        "iterations, with elapsed time, ETA and divergences")


def _or_auto(cast, what: str):
    """An argparse type: the word 'auto', or ``cast(text)``."""
    def parse(text: str):
        if text == "auto":
            return "auto"
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} or 'auto', got {text!r}") from None
    return parse


_draws = _or_auto(int, "a positive integer")
_target_accept = _or_auto(float, "a number between 0 and 1")


def _names(text: str) -> tuple:
    return tuple(n.strip() for n in text.split(",") if n.strip())


#: The argparse type of an option's flag, by the option's check.
_FLAG_TYPES = {"positive_int": int, "tree_depth": int, "seed": int, "draws": _draws, "probability": _target_accept,
               "anchors": _names}


def ProgressLines():
    """The terminal's progress: lines on stderr, one at each stage of a fit (variational start, compiling,
    warm-up, sampling, checks) and at every 10 % of its iterations, each with every chain's iterations,
    the divergences so far, the elapsed time and an ETA (:class:`bayes_sloth.core.progress.LineDisplay`)."""
    from .core.progress import LineDisplay

    return LineDisplay(inplace=False)


def law_from_args(args):
    """The estimator the options describe, its arguments checked at once (a bad seed fails here, in a line)."""
    from .core.estimator import SkillsLaw

    options = {name: getattr(args, name) for name in SkillsLaw._PARAMS if hasattr(args, name)}
    options["progress"] = ProgressLines() if args.progress else False
    law = SkillsLaw(**options)
    law.validate_params()
    return law


def _finite(x):
    return x if isinstance(x, (int, str)) or (isinstance(x, float) and math.isfinite(x)) else None


def _check_out(path, *inputs, what="output"):
    from .core.io import check_output_path


    return None if path is None else check_output_path(path, inputs=inputs, what=what)


# ------------------------------------------------------------------ fit
def cmd_fit(args) -> int:
    law = law_from_args(args)
    _check_out(args.out, args.data, what="fit file")
    lb = load_data(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the diagnostics are printed below, each problem with what to do
        warnings.filterwarnings("ignore", message="the fit did not pass its convergence checks")
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
        "max_tree_depth_hits": d.max_tree_depth_hits,
        "gradient_evaluations": d.gradient_evaluations,
        "gradient_evaluations_per_ess": _finite(round(d.gradient_evaluations_per_ess, 1)),
        "converged": d.ok,
        "problems": list(d.problems),
        "notes": list(d.notes),
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


# ------------------------------------------------------------------ predict
PREDICT_COLUMNS = ("model", "family", "seen_family", "extrapolation", "benchmark", "mean", "median", "lower",
                   "upper", "observed", "conditioned", "own_score_used", "pareto_k", "importance_ess",
                   "imputed_tokens")


def cmd_predict(args) -> int:
    from .core.estimator import SkillsLaw
    from .core.io import escape_formula
    from .workflows.export import FORMATS, write_forecasts


    _check_out(args.out, args.fit, args.data, what="forecast table")
    fmt = FORMATS.get(os.path.splitext(args.out)[1].lower()) if args.out else None
    if args.out and fmt is None:
        raise InputError(f"--out {args.out!r}: write the forecasts to a .csv (a tidy table) or a .tex file (LaTeX, "
                         "one row per model)")
    law = SkillsLaw.load(args.fit)
    full = law.forecast(args.data, level=args.interval, seed=args.seed, columns=_columns(args),
                        new_families=args.new_families, condition=args.condition)
    table = full[[c for c in PREDICT_COLUMNS if c in full]]
    if args.out:
        write_forecasts(full if fmt == "latex" else table, args.out, format=fmt)
        print(f"wrote {len(table)} forecasts ({table['model'].nunique()} models x {len(law.benchmarks_)} benchmarks, "
              f"{args.interval:.0%} intervals) to {args.out}")
    else:

        for c in ("model", "family", "benchmark"):
            table[c] = table[c].map(escape_formula)
        print(table.to_csv(index=False), end="")
    return 0


# ------------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    from .core.io import write_csv
    from .workflows.evaluation import evaluate


    law = law_from_args(args)
    _check_out(args.pairs_out, args.data, args.protocol_file, what="pairs table")
    kwargs = {k: v for k, v in law.get_params().items() if k not in ("n_skills", "anchors")}
    say = None if args.json else _say
    benchmarks = _benchmarks(args) if args.protocol == "leave-family-out" else None
    res = evaluate(
        args.data, protocol=args.protocol, benchmark_set=args.benchmark_set if benchmarks is None else None,
        n_train=args.n_train, n_skills=args.n_skills, training_rows=args.training_rows, benchmarks=benchmarks,
        protocol_file=args.protocol_file, data_dir=args.data_dir, columns=_columns(args), on_fold=say,
        n_jobs=args.jobs, **kwargs,
    )
    if args.pairs_out:
        write_csv(res.pairs, args.pairs_out, index=False, text_columns=["group", "family", "model", "benchmark"],
                  what="pairs table")
    if args.json:
        print(res.to_json())
    else:
        s = res.summary
        print(f"{s['protocol']} {s['benchmark_set'] or ','.join(s['benchmarks'])} n_train={s['n_train']} "
              f"K={s['n_skills']} training_rows={s['training_rows']}: {s['n_groups']} groups, {s['n_pairs']} pairs, "
              f"{s['seconds']:.0f} s")
        print(f"  MAE {s['mae']:.4f} (per group, then over groups)   CRPS {s['crps']:.4f}   "
              f"interval score 90% {s['interval_score_90']:.4f}   log score (ELPD per pair) {s['elpd_per_pair']:.3f}")
        for lv in s["coverage"]:
            print(f"  {float(lv):.0%} interval: coverage {s['coverage'][lv]:.3f}, mean width {s['mean_width'][lv]:.3f}")
    return 0


# ------------------------------------------------------------------ report
def cmd_report(args) -> int:
    from .core.estimator import SkillsLaw
    from .workflows.report import forecast_report

    log = None if args.quiet else _say
    law = law_from_args(args)
    _check_out(args.out, args.data, args.target_models, args.fit, what="report")
    if args.fit:
        law = SkillsLaw.load(args.fit)
    else:
        law.progress = False if args.quiet else ProgressLines()
    if log:
        log("[0/4] loading the leaderboard")
    lb = load_data(args)
    forecast_report(lb, target_family=args.target_family, target_models=args.target_models, n_train=args.n_train,
                    law=law, level=args.interval, out=args.out, data_source=_data_source(args), seed=args.seed,
                    log=log)
    if args.quiet:
        print(args.out)
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from .workflows.evaluation import DEFAULT_TRAINING_ROWS, PROTOCOLS, TRAINING_ROWS


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
    p.add_argument("--data", required=True, help="CSV of new models (model, family, params, tokens[, instruct]"
                                                 "[, observed scores, in columns named like fitted benchmarks])")
    _column_options(p)
    p.add_argument("--interval", type=float, default=0.9, help="central interval level (default 0.9)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--new-families", choices=["warn", "allow", "error"], default="warn",
                   help="families not in the fit: forecast as never-seen with a warning (default), silently, or refuse")
    p.add_argument("--condition", nargs="?", const="others", default="others", choices=["others", "all"],
                   help="condition each new model's forecast on the scores its row already has (columns named "
                        "like fitted benchmarks), without refitting; a scored benchmark's own forecast from the "
                        "other scores only (others, the default), or from every score, its own included (all)")
    p.add_argument("--no-condition", dest="condition", action="store_const", const="none",
                   help="the fit's own forecast, the scores shown beside it")
    p.add_argument("--out", help="write the table to this file: .csv (tidy, one row per model and benchmark) or .tex "
                                 "(LaTeX, one row per model, 'mean [lower, upper]'); default: CSV on stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="leave-family-out evaluation: MAE, coverage, CRPS (the Sloth paper's protocol)")
    add_data_options(p)
    add_model_options(p, EVALUATION_SAMPLER)
    g = p.add_argument_group("evaluation")
    g.add_argument("--protocol", choices=PROTOCOLS, default="sloth",
                   help="sloth: the paper's test groups and rows; leave-family-out: every family with "
                        "n+1 complete rows held out in turn (any table, with --benchmarks)")
    g.add_argument("--benchmark-set", default="leaderboard_v1", choices=list(BENCHMARK_SETS),
                   help="benchmark set of the sloth protocol (default leaderboard_v1)")
    g.add_argument("--n-train", type=int, default=1, choices=[0, 1, 2],
                   help="smallest models of each held-out family trained on (0: whole family unseen)")
    g.add_argument("--training-rows", choices=TRAINING_ROWS, default=DEFAULT_TRAINING_ROWS,
                   help=f"train on all rows, incomplete ones masked, or only the paper's complete rows "
                        f"(default {DEFAULT_TRAINING_ROWS}); forecast pairs are the same")
    g.add_argument("--protocol-file", help="the paper's protocol as JSON (default: the copy shipped with the package)")
    g.add_argument("--pairs-out", help="write the forecast pairs to this CSV")
    g.add_argument("--jobs", type=int, default=1,
                   help="folds in this many worker processes at once (-1: one per core; default 1); each worker "
                        "gets cores // jobs JAX devices, and the numbers are the same as with 1")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "report", help="fit (or load a fit), forecast and write a self-contained HTML forecast report",
        description="Write one self-contained HTML report (opens offline) with the data, the model, diagnostics, "
                    "forecasts with intervals, and figures, from a new fit or a saved one (--fit).")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target-family", help="forecast this family's larger models as if only its smallest "
                                           "(--n-train) were seen; their real scores are shown for comparison")
    g.add_argument("--target-models", help="CSV of new models to forecast (model, family, params, tokens"
                                           "[, instruct][, observed scores])")
    p.add_argument("--fit", help="reuse this saved fit (bayes-sloth fit --out) instead of fitting; with "
                                 "--target-family it must not contain the family's forecast models")
    p.add_argument("--n-train", type=int, default=1, help="with --target-family: how many of its smallest "
                                                          "models are fitted (default 1)")
    p.add_argument("--interval", type=float, default=0.9, help="central interval level (default 0.9)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--quiet", action="store_true", help="no progress or stage messages")
    add_data_options(p)
    add_model_options(p)
    p.set_defaults(func=cmd_report)
    return parser


def _quiet_unusable_home() -> None:
    """With a home folder that cannot be written, point matplotlib's config and cache at a temporary folder
    (it would otherwise warn on its own); the compile cache is turned off by configure(), which says so once."""
    if "MPLCONFIGDIR" in os.environ:
        return
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    folder = os.path.join(config, "matplotlib")  # where matplotlib itself would create it
    try:
        os.makedirs(folder, exist_ok=True)
        usable = os.access(folder, os.W_OK)
    except OSError:
        usable = False
    if not usable:
        import atexit
        import shutil
        import tempfile

        os.environ["MPLCONFIGDIR"] = folder = tempfile.mkdtemp(prefix="bayes-sloth-mpl-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # leave no folder behind in /tmp


def main(argv=None) -> int:
    _quiet_unusable_home()
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

            configure()  # parallel chains on this machine's cores, compiled programs kept on disk
            if args.command == "report":
                import matplotlib

                matplotlib.use("Agg")  # a terminal command draws to files only
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
