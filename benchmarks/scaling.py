"""Scaling on synthetic leaderboards: seconds and peak memory per size.

For each size (models x benchmarks) a leaderboard is simulated from the
skills law (families of 1-8 models, 15 % missing scores), then fitted with
NUTS (short chains, run in a child process with a wall-clock cap) and with
the variational path (method="svi"). Peak memory is the child's max RSS.

    python benchmarks/scaling.py [--sizes 200x12,1000x12,5000x12,200x40,1000x40,5000x40] [--cap 600] [--jobs N]
        [--draws auto] [--out FILE] [--quick]

Each fit's child gives JAX one CPU device per core (chains in parallel, as
the command line runs them). ``--jobs N`` runs N of the (size, method) fits
at once (``bayes_sloth.workflows.sweeps.run`` over a process pool; each fit is still its
own child process, with cores // N devices, so the fits do not oversubscribe
the cores); rows print in the table's order. Every fit then
runs up to the cap: a size is not skipped because a smaller one ran past it,
and the fits share the cores, so their seconds are not comparable with
``--jobs 1``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

from harness import BenchmarkParser, Transcript, markdown_header, markdown_row, run_fit

import bayes_sloth as bs

#: This script: each fit runs in a child process of it (``--child``), with its own devices and memory.
SCRIPT = os.path.abspath(__file__)
COLUMNS = ("models", "benchmarks", "observed", "method", "seconds", "peak MiB", "max R-hat", "min ESS bulk",
           "min ESS tail", "div", "draws/chain", "passes")


def child(a) -> None:
    """One fit in this process (the child a run() starts); prints its numbers as one JSON line."""
    warnings.simplefilter("ignore")
    bs.configure(cpu_devices=a.devices)  # chains in parallel over this fit's share of the cores
    n_models, n_bench = (int(v) for v in a.sizes.split("x"))
    draws = a.draws if a.draws == "auto" else int(a.draws)
    lb, truth = bs.simulate_leaderboard(n_families=max(2, n_models // 4), n_benchmarks=n_bench, n_skills=2,
                                        models_per_family=(1, 7), seed=0)
    _, n = run_fit(lb, n_skills=2, anchors=truth["anchors"], chains=a.chains, warmup=a.warmup, draws=draws,
                     method=a.methods, target_ess=a.target_ess, max_draws=a.max_draws, progress=False)
    nuts = a.methods == "nuts"
    print(json.dumps({"models": len(lb), "benchmarks": n_bench, "observed": lb.n_observed, "method": a.methods,
                      "seconds": n.wall_s, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "max_rhat": n.max_rhat, "min_ess_bulk": n.min_ess_bulk, "min_ess_tail": n.min_ess_tail,
                      "divergences": n.divergences, "draws_per_chain": n.draws_per_chain,
                      "passes": ("yes" if n.passes(a.target_ess) else "no") if nuts else "-"}))


def run(n_models, n_bench, method, chains, warmup, draws, cap, target_ess=400, max_draws=4000, devices=None):
    devices = devices or os.cpu_count() or 1
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, SCRIPT, "--child", "--sizes", f"{n_models}x{n_bench}", "--methods",
                              method, "--chains", str(chains), "--warmup", str(warmup), "--draws", str(draws),
                              "--target-ess", str(target_ess), "--max-draws", str(max_draws), "--devices",
                              str(devices)],
                             capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"models": n_models, "benchmarks": n_bench, "method": method, "seconds": f">{cap}", "peak_mib": "-"}
    if out.returncode != 0:
        return {"models": n_models, "benchmarks": n_bench, "method": method,
                "seconds": f"failed after {time.perf_counter() - t0:.0f}", "peak_mib": out.stderr.strip().splitlines()[-1][:60]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_task(task):
    """One (size, method) fit in its child process (a module-level function: workers import it)."""
    return run(*task)


def row(n, j, method, r) -> str:
    fmt = lambda v, f: (f % v) if isinstance(v, (int, float)) else str(v)  # noqa: E731
    return markdown_row([r["models"], r["benchmarks"], fmt(r.get("observed", "-"), "%d"), method,
                         fmt(r["seconds"], "%.1f"), fmt(r["peak_mib"], "%.0f"), fmt(r.get("max_rhat", "-"), "%.3f"),
                         fmt(r.get("min_ess_bulk", "-"), "%.0f"), fmt(r.get("min_ess_tail", "-"), "%.0f"),
                         r.get("divergences", "-"), r.get("draws_per_chain", "-"), r.get("passes", "-")])


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("--sizes", default="200x12,1000x12,5000x12,200x40,1000x40,5000x40")
    ap.add_sampler(chains=4, warmup=500, draws=500, auto=True)
    ap.add_argument("--target-ess", type=int, default=400)
    ap.add_argument("--max-draws", type=int, default=4000)
    ap.add_argument("--cap", type=int, default=600, help="wall-clock cap per NUTS fit, seconds")
    ap.add_argument("--methods", default="nuts,svi")
    ap.add_argument("--jobs", type=int, default=1, help="fits at once (default 1: one after another)")
    ap.add_out()
    ap.add_quick(sizes="40x6", chains=2, warmup=20, draws="20", cap=300)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one fit (--sizes, --methods: one each)
    ap.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse(argv)
    if args.child:
        child(args)
        return
    if args.draws != "auto":
        args.draws = int(args.draws)
    drawn = (f"draws='auto' (target ESS {args.target_ess}, at most {args.max_draws} per chain)" if args.draws == "auto"
             else f"{args.draws}")
    out = Transcript(args.out, args.command)
    with out:
        out.print(f"# NUTS: {args.chains} chains x ({args.warmup} + {drawn}), cap {args.cap} s; SVI: 5000 Adam "
                  f"steps, {1000 if args.draws == 'auto' else args.draws} draws; 'passes': R-hat <= 1.01, bulk and "
                  f"tail ESS >= {args.target_ess}, no divergence")
        out.print(markdown_header(COLUMNS))
        if args.jobs != 1:
            from bayes_sloth.workflows.sweeps import run as sweep

            tasks = [(int(n), int(j), method, args.chains if method == "nuts" else 1, args.warmup, args.draws,
                      args.cap, args.target_ess, args.max_draws, max(1, (os.cpu_count() or 1) // args.jobs))
                     for n, j in (size.split("x") for size in args.sizes.split(","))
                     for method in args.methods.split(",")]
            sweep(run_task, tasks, args.jobs,
                  on_result=lambda i, r: out.print(row(tasks[i][0], tasks[i][1], tasks[i][2], r)))
            return
        over_cap = []  # (models, benchmarks) NUTS fits that did not finish within the cap
        for size in args.sizes.split(","):
            n, j = (int(v) for v in size.split("x"))
            for method in args.methods.split(","):
                if method == "nuts" and any(n >= n0 and j >= j0 for n0, j0 in over_cap):
                    # a larger problem than one that already ran past the cap: it would too, skip its cost
                    out.print(f"| {n} | {j} | - | nuts | not run (>{args.cap} s at a smaller size) | - | - | - | - "
                              f"| - | - | - |")
                    continue
                r = run(n, j, method, args.chains if method == "nuts" else 1, args.warmup, args.draws, args.cap,
                        args.target_ess, args.max_draws, max(1, (os.cpu_count() or 1) // args.jobs))
                if method == "nuts" and str(r["seconds"]).startswith(">"):
                    over_cap.append((n, j))
                out.print(row(n, j, method, r))


if __name__ == "__main__":
    main()
