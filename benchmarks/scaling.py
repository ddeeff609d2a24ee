"""Scaling on synthetic leaderboards: seconds and peak memory per size.

For each size (models x benchmarks) a leaderboard is simulated from the
skills law (families of 1-8 models, 15 % missing scores), then fitted with
NUTS (short chains, run in a child process with a wall-clock cap) and with
the variational path (method="svi"). Peak memory is the child's max RSS.

    python benchmarks/scaling.py [--sizes 200x12,1000x12,5000x12,200x40,1000x40,5000x40] [--cap 600] [--jobs N]

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
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import bayes_sloth as bs
n_models, n_bench, method, chains, warmup, draws, target_ess, max_draws, devices = sys.argv[1:10]
bs.configure(cpu_devices=int(devices))  # chains in parallel over this fit's share of the cores
n_models, n_bench, chains, warmup = int(n_models), int(n_bench), int(chains), int(warmup)
draws = draws if draws == "auto" else int(draws)
lb, truth = bs.simulate_leaderboard(n_families=max(2, n_models // 4), n_benchmarks=n_bench, n_skills=2,
                                    models_per_family=(1, 7), seed=0)
t0 = time.perf_counter()
law = bs.SkillsLaw(2, anchors=truth["anchors"], chains=chains, warmup=warmup, draws=draws, method=method,
                   target_ess=int(target_ess), max_draws=int(max_draws), progress=False).fit(lb)
sec = time.perf_counter() - t0
d = law.diagnostics_
passed = method == "nuts" and (d.max_rhat <= 1.01 and d.min_ess_bulk >= int(target_ess)
                               and d.min_ess_tail >= int(target_ess) and d.divergences == 0)
print(json.dumps({"models": len(lb), "benchmarks": n_bench, "observed": lb.n_observed, "method": method,
                  "seconds": sec, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
                  "divergences": d.divergences, "draws_per_chain": int(law.idata_.posterior.sizes["draw"]),
                  "passes": ("yes" if passed else "no") if method == "nuts" else "-"}))
"""


def run(n_models, n_bench, method, chains, warmup, draws, cap, target_ess=400, max_draws=4000, devices=None):
    devices = devices or os.cpu_count() or 1
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n_models), str(n_bench), method, str(chains),
                              str(warmup), str(draws), str(target_ess), str(max_draws), str(devices)],
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
    return (f"| {r['models']} | {r['benchmarks']} | {fmt(r.get('observed', '-'), '%d')} | {method} | "
            f"{fmt(r['seconds'], '%.1f')} | {fmt(r['peak_mib'], '%.0f')} | {fmt(r.get('max_rhat', '-'), '%.3f')} | "
            f"{fmt(r.get('min_ess_bulk', '-'), '%.0f')} | {fmt(r.get('min_ess_tail', '-'), '%.0f')} | "
            f"{r.get('divergences', '-')} | {r.get('draws_per_chain', '-')} | {r.get('passes', '-')} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200x12,1000x12,5000x12,200x40,1000x40,5000x40")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", default="500", help="draws per chain, or 'auto' (until R-hat <= 1.01, bulk and tail "
                                                    "ESS >= --target-ess, no divergence; or --max-draws)")
    ap.add_argument("--target-ess", type=int, default=400)
    ap.add_argument("--max-draws", type=int, default=4000)
    ap.add_argument("--cap", type=int, default=600, help="wall-clock cap per NUTS fit, seconds")
    ap.add_argument("--methods", default="nuts,svi")
    ap.add_argument("--jobs", type=int, default=1, help="fits at once (default 1: one after another)")
    args = ap.parse_args(argv)
    if args.draws != "auto":
        args.draws = int(args.draws)
    drawn = (f"draws='auto' (target ESS {args.target_ess}, at most {args.max_draws} per chain)" if args.draws == "auto"
             else f"{args.draws}")
    print(f"# NUTS: {args.chains} chains x ({args.warmup} + {drawn}), cap {args.cap} s; SVI: 5000 Adam steps, "
          f"{1000 if args.draws == 'auto' else args.draws} draws; 'passes': R-hat <= 1.01, bulk and tail ESS >= "
          f"{args.target_ess}, no divergence")
    print("| models | benchmarks | observed | method | seconds | peak MiB | max R-hat | min ESS bulk | min ESS tail "
          "| div | draws/chain | passes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    if args.jobs != 1:
        from bayes_sloth.workflows.sweeps import run as sweep

        tasks = [(int(n), int(j), method, args.chains if method == "nuts" else 1, args.warmup, args.draws, args.cap,
                  args.target_ess, args.max_draws, max(1, (os.cpu_count() or 1) // args.jobs))
                 for n, j in (size.split("x") for size in args.sizes.split(","))
                 for method in args.methods.split(",")]
        sweep(run_task, tasks, args.jobs, on_result=lambda i, r: print(row(tasks[i][0], tasks[i][1], tasks[i][2], r),
                                                                        flush=True))
        return
    over_cap = []  # (models, benchmarks) NUTS fits that did not finish within the cap
    for size in args.sizes.split(","):
        n, j = (int(v) for v in size.split("x"))
        for method in args.methods.split(","):
            if method == "nuts" and any(n >= n0 and j >= j0 for n0, j0 in over_cap):
                # a larger problem than one that already ran past the cap: it would too, skip its cost
                print(f"| {n} | {j} | - | nuts | not run (>{args.cap} s at a smaller size) | - | - | - | - | - | - | - |",
                      flush=True)
                continue
            r = run(n, j, method, args.chains if method == "nuts" else 1, args.warmup, args.draws, args.cap,
                    args.target_ess, args.max_draws, max(1, (os.cpu_count() or 1) // args.jobs))
            if method == "nuts" and str(r["seconds"]).startswith(">"):
                over_cap.append((n, j))
            print(row(n, j, method, r), flush=True)


if __name__ == "__main__":
    main()
