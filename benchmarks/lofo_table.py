"""Leave-family-out results table: the Sloth paper's six cells, plus n_train 0.

Runs ``bayes_sloth.workflows.evaluation.evaluate`` on the three benchmark sets x
n_train in {1, 2} (the paper's protocol, its rows, groups and forecast pairs),
plus n_train 0 (whole families unseen, the n = 1 groups), and writes a
Markdown table beside the paper's own errors
(``../shared/reference/sloth_lofo_mae_summary.csv``).

Each finished cell is cached as JSON + pairs CSV in ``--cache-dir``, so an
interrupted run resumes, and ``--render-only`` rebuilds the table from the
cache.

``--jobs N`` runs every fold of every cell to compute in N worker processes
at once (``bayes_sloth.workflows.evaluation.evaluate_cells``; each worker gets
cores // N JAX devices); the numbers are the same as with ``--jobs 1``. A
cell's ``s`` column is then the sum of its folds' seconds in the workers, and
the header gives the elapsed wall time. ``--dask tcp://scheduler:8786`` sends
the folds to a Dask cluster instead (joblib's dask backend); ``--dask local``
starts a local Dask cluster of ``--jobs`` worker processes.

    python benchmarks/lofo_table.py --data-dir ../shared/data \
        --chains 2 --warmup 300 --draws 300 --out benchmarks/results/lofo_table.md

``--quick`` runs one cell (leaderboard_v2, n_train 2) at 2 x 20 x 20 into the temporary folder, to check
that the script works.

``--stack 1,2,3,4`` evaluates the Bayesian stack of the laws with those K
(``bayes_sloth.stack``, the other settings shared) in place of one law: in
each fold the candidates are fitted and weighted on the fold's training pairs
only; the table then gives each cell's stacking weights (mean over folds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from harness import BenchmarkParser, quick_path, with_command, write_result

import bayes_sloth
from bayes_sloth import SkillsLaw
from bayes_sloth.core.data import paper_errors
from bayes_sloth.core.io import write_csv, write_text
from bayes_sloth.workflows.evaluation import LEVELS, evaluate, evaluate_cells, summarize_pairs
from bayes_sloth.workflows.stacking import stack

SETS = ("leaderboard_v1", "leaderboard_v2", "leaderboard_v1+v2")
PAPER = ("sloth_sigmoid_d3", "sloth_trainlink_d3", "pca_d3", "logF_sigmoid")


def paper_numbers() -> pd.DataFrame:
    """Paper MAE per (set, n) for the reference methods, plus the best Sloth of any d (the packaged copy of
    the paper's published errors, ``bayes_sloth.core.data.paper_errors``)."""
    body = paper_errors().pivot_table(index="method", columns=["benchmark_set", "n_train"], values="mae")
    out = body.loc[list(PAPER)].T
    sloth = body.loc[[m for m in body.index if str(m).startswith("sloth_")]]
    out["best_sloth_any_d"] = sloth.min(axis=0)
    out["best_sloth_method"] = sloth.idxmin(axis=0)
    return out


def cell_key(s: str, n: int, tag: str) -> str:
    return f"{tag}__{s}__n{n}".replace("+", "p")


def cell_files(args, s, n, tag):
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = cell_key(s, n, tag)
    return cache / f"{key}.json", cache / f"{key}.pairs.csv"


def save_cell(args, s, n, tag, res):
    js, pc = cell_files(args, s, n, tag)
    write_csv(res.pairs, pc, index=False)
    write_text(res.to_json(), js)


def run_cell(args, s, n, tag, kwargs):
    js, pc = cell_files(args, s, n, tag)
    if js.is_file() and pc.is_file():
        return json.loads(js.read_text()), pd.read_csv(pc)
    if args.render_only:
        return None, None
    print(f"== {s} n_train={n} ({tag})", file=sys.stderr, flush=True)
    res = evaluate(args.data_dir and None, protocol="sloth", benchmark_set=s, n_train=n, n_skills=args.skills,
                   training_rows=args.training_rows, data_dir=args.data_dir,
                   on_fold=lambda m: print("  " + m, file=sys.stderr, flush=True), **stack_or(args, kwargs))
    save_cell(args, s, n, tag, res)
    return res.summary, res.pairs


def stack_or(args, kwargs) -> dict:
    """evaluate()'s law settings: the law's own, or with ``--stack`` a stack of laws over the listed K."""
    if not args.stack:
        return kwargs
    return {"law": stack([SkillsLaw(n_skills=k, **kwargs) for k in args.stack], seed=args.seed)}


def stack_weights(summary) -> dict:
    """Mean stacking weight of each candidate over a cell's folds (empty for a single law)."""
    ws = [g["weights"] for g in summary.get("groups", []) if "weights" in g]
    return {k: float(np.mean([w[k] for w in ws])) for k in ws[0]} if ws else {}


def run_cells_parallel(args, cells, tag, kwargs) -> float:
    """Every fold of the cells not in the cache, in ``--jobs`` workers (or on ``--dask``); each cell is
    cached as soon as its folds are done. Returns the elapsed seconds."""
    todo = [(s, n) for s, n in cells if not all(f.is_file() for f in cell_files(args, s, n, tag))]
    if not todo or args.render_only:
        return 0.0
    ctx = contextlib.ExitStack()
    if args.dask:
        import joblib
        from distributed import Client, LocalCluster

        if args.dask == "local":  # a cluster of --jobs worker processes on this machine (1 thread each)
            n = args.jobs if args.jobs > 0 else None
            address = ctx.enter_context(LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                     dashboard_address=None))
        else:
            address = args.dask
        ctx.enter_context(Client(address))
        ctx.enter_context(joblib.parallel_config(backend="dask"))
    t0 = time.perf_counter()
    with ctx:
        print(f"== {len(todo)} cells, {'dask ' + args.dask if args.dask else f'{args.jobs} jobs'} ({tag})",
              file=sys.stderr, flush=True)
        evaluate_cells(todo, args.jobs, data_dir=args.data_dir, protocol="sloth", n_skills=args.skills,
                       training_rows=args.training_rows,
                       on_fold=lambda m: print("  " + m, file=sys.stderr, flush=True),
                       on_cell=lambda c, r: save_cell(args, c[0], c[1], tag, r), **stack_or(args, kwargs))
    return time.perf_counter() - t0


def fmt(x, d=4):
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def render(rows, pooled, paper, settings, wall, elapsed=None) -> str:
    L = []
    L.append("# Leave-family-out results (the Sloth paper's protocol)\n")
    par = "" if elapsed is None else f"; the cells computed now ran in parallel workers, {elapsed:.0f} s elapsed"
    L.append(f"Settings: {settings}. Total wall time of the runs in this table: {wall:.0f} s "
             f"(2-core CPU{par}).\n")
    L.append("MAE: absolute error of the posterior predictive mean, averaged per test group then over groups "
             "(the paper's); MAE med: the same for the predictive median, the Bayes point forecast under absolute "
             "error. Paper columns are the paper's published numbers "
             "(`../shared/reference/sloth_lofo_mae_summary.csv`). Coverage/width/IS/CRPS/ELPD pooled over forecast pairs "
             "(ELPD: mean log predictive density of a held-out score, higher is better).\n")
    L.append("| set | n_train | groups | pairs | **MAE (ours)** | MAE med | sloth_sigmoid_d3 | sloth_trainlink_d3 | best sloth (any d) "
             "| pca_d3 | logF_sigmoid | cov 50 | cov 80 | cov 90 | cov 95 | width 50 | width 90 | IS 90 | CRPS | ELPD/pair | s |")
    L.append("|" + "---|" * 21)
    for r in rows:
        s, n, sm = r["set"], r["n"], r["summary"]
        p = paper.loc[(s, n)] if n > 0 and (s, n) in paper.index else None
        pc = lambda k: "" if p is None else fmt(float(p[k]))  # noqa: E731
        best = "" if p is None else f"{float(p['best_sloth_any_d']):.4f} ({p['best_sloth_method']})"
        c, w = sm["coverage"], sm["mean_width"]
        L.append(f"| {s} | {n} | {sm['n_groups']} | {sm['n_pairs']} | **{fmt(sm['mae'])}** | {fmt(sm.get('mae_median'))} | "
                 f"{pc('sloth_sigmoid_d3')} | "
                 f"{pc('sloth_trainlink_d3')} | {best} | {pc('pca_d3')} | {pc('logF_sigmoid')} | "
                 f"{fmt(c['0.5'], 3)} | {fmt(c['0.8'], 3)} | {fmt(c['0.9'], 3)} | {fmt(c['0.95'], 3)} | "
                 f"{fmt(w['0.5'], 3)} | {fmt(w['0.9'], 3)} | {fmt(sm['interval_score_90'])} | {fmt(sm['crps'])} | "
                 f"{fmt(sm.get('elpd_per_pair'), 3)} | {sm['seconds']:.0f} |")
    L.append("")
    six = [r for r in rows if r["n"] > 0]
    if six:
        def at_or_below(key):  # cells whose MAE (key) is at or below each paper reference
            return [sum(r["summary"][key] <= paper.loc[(r["set"], r["n"]), ref] for r in six)
                    for ref in ("sloth_sigmoid_d3", "sloth_trainlink_d3", "best_sloth_any_d")]

        sig, tl, best_d = at_or_below("mae")
        L.append(f"Cells at or below the paper's sloth_sigmoid_d3: **{sig} of {len(six)}**; "
                 f"at or below sloth_trainlink_d3: **{tl} of {len(six)}**; at or below its best Sloth of any d: "
                 f"**{best_d} of {len(six)}**.\n")
        if all(r["summary"].get("mae_median") is not None for r in six):
            med = at_or_below("mae_median")
            L.append(f"With the predictive median as the point forecast: {med[0]}, {med[1]} and {med[2]} of "
                     f"{len(six)}.\n")
    weights = [(r, stack_weights(r["summary"])) for r in rows]
    if any(w for _, w in weights):
        names = list(next(w for _, w in weights if w))
        L.append("Stacking weights per cell (mean over the cell's folds; each fold's weights from its training "
                 "pairs only), with the range over folds:\n")
        L.append("| set | n_train | " + " | ".join(names) + " |")
        L.append("|" + "---|" * (2 + len(names)))
        for r, w in weights:
            if not w:
                continue
            per = [g["weights"] for g in r["summary"]["groups"]]
            L.append(f"| {r['set']} | {r['n']} | " + " | ".join(
                f"{w[k]:.3f} ({min(p[k] for p in per):.2f}-{max(p[k] for p in per):.2f})" for k in names) + " |")
        L.append("")
    L.append("Pooled calibration (all forecast pairs of the cells in each row):\n")
    L.append("| cells | pairs | cov 50 | cov 80 | cov 90 | cov 95 | width 50 | width 80 | width 90 | width 95 | IS 90 | CRPS "
             "| ELPD/pair |")
    L.append("|" + "---|" * 13)
    for name, sm in pooled:
        c, w = sm["coverage"], sm["mean_width"]
        L.append(f"| {name} | {sm['n_pairs']} | " + " | ".join(fmt(c[str(lv)], 3) for lv in LEVELS) + " | "
                 + " | ".join(fmt(w[str(lv)], 3) for lv in LEVELS)
                 + f" | {fmt(sm['interval_score_90'])} | {fmt(sm['crps'])} | {fmt(sm.get('elpd_per_pair'), 3)} |")
    L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    # the package's default law (SkillsLaw's defaults; before session 13 there were no slopes)
    ap.add_argument("--skills", type=int, default=3)
    ap.add_argument("--stack", default=None, metavar="K,K,...",
                    help="evaluate the Bayesian stack of the laws with these numbers of skills (e.g. 1,2,3,4) "
                         "instead of one law of --skills skills")
    ap.add_sampler(chains=2, warmup=300, draws=300)
    ap.add_argument("--noise", default="normal", choices=["normal", "logistic"])
    ap.add_argument("--link", default="monotone", choices=["monotone", "monotone-pooled", "sigmoid"])
    ap.add_argument("--instruct-shift", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--family-slopes", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--instruct-slope", action=argparse.BooleanOptionalAction, default=True,
                    help="the instruction-tuned models' skills get their own slope in log S")
    ap.add_argument("--model-effects", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--training-rows", default="all", choices=["all", "complete", "all+latent-tokens"])
    ap.add_seed()
    ap.add_argument("--cells", default="all", help="comma list like leaderboard_v2:1,leaderboard_v1:0 (default: six cells + n0 on every set)")
    ap.add_argument("--tag", default=None, help="cache name of this configuration")
    ap.add_argument("--cache-dir", default="/tmp/bayes_sloth_lofo")
    ap.add_argument("--render-only", action="store_true", help="only rebuild the table from cached cells")
    ap.add_out(default="benchmarks/results/lofo_table.md", help="the table, written atomically with the command line")
    ap.add_argument("--note", default=None,
                    help="a line of text added under the table's title (e.g. the machine's load)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="folds of all cells in this many worker processes at once (-1: one per core; default 1)")
    ap.add_argument("--dask", default=None, metavar="ADDRESS",
                    help="run the folds on this Dask scheduler (tcp://host:8786), or on a local Dask cluster of "
                         "--jobs processes ('local'), instead of a process pool")
    ap.add_quick(cells="leaderboard_v2:2", chains=2, warmup=20, draws=20, cache_dir=quick_path("lofo_cache"),
                 out=quick_path("lofo_table.md"))
    args = ap.parse(argv)
    if args.stack:
        try:
            args.stack = [int(k) for k in args.stack.split(",")]
        except ValueError:
            ap.error(f"--stack takes a comma list of numbers of skills like 1,2,3,4, got {args.stack!r}")
    if args.dask and args.jobs == 1:
        args.jobs = -1  # every worker thread of the cluster (a local one: one worker per core)

    bayes_sloth.configure()  # this process: one CPU device per core, compiled programs kept on disk (workers
    # configure themselves: bayes_sloth.workflows.sweeps)
    kwargs = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, noise=args.noise,
                  instruct_shift=args.instruct_shift, instruct_slope=args.instruct_slope,
                  family_slopes=args.family_slopes,
                  model_effects=args.model_effects, link=args.link, seed=args.seed)
    law_tag = "stack" + "".join(map(str, args.stack)) if args.stack else f"K{args.skills}"
    tag = args.tag or (f"{law_tag}_{args.noise}{'_instr' if args.instruct_shift else ''}"
                       f"{'_islope' if args.instruct_slope else ''}"
                       f"{'_fslopes' if args.family_slopes else ''}{'_meff' if args.model_effects else ''}"
                       f"{dict(monotone='_mono', sigmoid='').get(args.link, '_' + args.link)}"
                       f"_{args.training_rows}"
                       f"_c{args.chains}w{args.warmup}d{args.draws}")
    if args.cells == "all":
        cells = [(s, n) for n in (1, 2) for s in SETS] + [(s, 0) for s in SETS]
    else:
        cells = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells.split(",")]
    paper = paper_numbers()
    rows, all_pairs = [], {}
    t0 = time.perf_counter()
    elapsed = None
    if args.jobs != 1:
        elapsed = run_cells_parallel(args, cells, tag, kwargs) or None
    for s, n in cells:
        summary, pairs = run_cell(args, s, n, tag, kwargs)
        if summary is None:
            continue
        rows.append({"set": s, "n": n, "summary": summary})
        all_pairs[(s, n)] = pairs.assign(group=f"{s}/{n}/" + pairs["group"].astype(str))
        print(f"   {s} n={n}: MAE {summary['mae']:.4f}, cov90 {summary['coverage']['0.9']:.3f}, "
              f"{summary['seconds']:.0f} s", file=sys.stderr, flush=True)
    wall = sum(r["summary"]["seconds"] for r in rows)
    pooled = []
    for name, sel in (("all finished n_train 1 and 2 cells", lambda k: k[1] > 0), ("n_train 1", lambda k: k[1] == 1),
                      ("n_train 2", lambda k: k[1] == 2), ("n_train 0", lambda k: k[1] == 0)):
        ps = [p for k, p in all_pairs.items() if sel(k)]
        if ps:
            pooled.append((name, summarize_pairs(pd.concat(ps, ignore_index=True))))
    settings = ((f"stack of K in {args.stack}" if args.stack else f"K={args.skills}")
                + f", noise={args.noise}, instruct_shift={args.instruct_shift}, "
                + ("instruct_slope=True, " if args.instruct_slope else "")
                + f"family_slopes={args.family_slopes}, model_effects={args.model_effects}, "
                f"training_rows={args.training_rows}, link={args.link}, {args.chains} chains x {args.warmup} warmup x "
                f"{args.draws} draws, seed {args.seed}")
    md = render(rows, pooled, paper, settings, wall, elapsed)
    if args.note:
        md = md.replace("\n\n", f"\n\n{args.note}\n\n", 1)
    md = with_command(md, args.command)
    write_result(md, args.out)
    print(md)
    print(f"elapsed {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
