"""Fit speed on the real Sloth table: a table per K.

Each K is fitted twice with the same seed (so the same draws): the first fit
pays for tracing and compiling (or, with the on-disk XLA cache warm, for
tracing and loading), the second reuses the compiled programs. Columns: K,
first fit's wall time (compile included), compile seconds (first minus
second), the second fit's sampling and total seconds, leapfrog steps per
iteration in warm-up and in sampling, leapfrog steps per second (all chains,
warm-up included), the slowest parameter's bulk ESS and bulk ESS per second
of the second fit, max R-hat, divergences, peak resident memory.

    python benchmarks/fit_speed.py --data-dir ../shared/data [--skills 1,2,3,4] [--chains 4 --warmup 1000 --draws 1000]
        [--no-disk-cache]   # compile from scratch (BAYES_SLOTH_XLA_CACHE=0)
        [--jobs N]          # the K's in N worker processes at once (bayes_sloth.workflows.sweeps.run), each with
                            # cores // N JAX devices; rows print as they finish, in K order. The runs then
                            # share the cores: their seconds are not comparable with --jobs 1's
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

warnings.simplefilter("ignore")



def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(task):
    """One table row: fit K twice (first with compile, second reusing it) in this process."""
    K, args = task
    warnings.simplefilter("ignore")  # in a worker process too
    import bayes_sloth as bs

    lb = bs.load_sloth(data_dir=args["data_dir"]).complete_covariates(warn=False)
    kw = dict(n_skills=K, chains=args["chains"], warmup=args["warmup"], draws=args["draws"], init=args["init"],
              seed=args["seed"])
    t0 = time.perf_counter()
    bs.SkillsLaw(**kw).fit(lb)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    law = bs.SkillsLaw(**kw).fit(lb)
    total = time.perf_counter() - t0
    d = law.diagnostics_
    st = law.idata_.sample_stats
    warm, draws = float(st["warmup_n_steps"].sum()), float(st["n_steps"].sum())
    sampling = law.fit_seconds_
    return (f"| {K} | {first:.1f} | {max(first - total, 0):.1f} | {sampling:.1f} | {total:.1f} | "
            f"{warm / args['chains'] / args['warmup']:.0f} | {draws / args['chains'] / args['draws']:.0f} | "
            f"{(warm + draws) / sampling:.0f} | {d.min_ess_bulk:.0f} | {d.min_ess_bulk / sampling:.1f} | "
            f"{d.max_rhat:.4f} | {d.divergences} | {peak_rss_mib():.0f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skills", default="1,2,3,4")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--init", default="svi")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-disk-cache", action="store_true", help="compile everything (no on-disk XLA cache)")
    ap.add_argument("--jobs", type=int, default=1, help="the K's in this many worker processes at once (default 1)")
    args = ap.parse_args(argv)
    import os

    if args.no_disk_cache:
        os.environ["BAYES_SLOTH_XLA_CACHE"] = "0"
    import jax

    import bayes_sloth as bs

    skills = [int(k) for k in args.skills.split(",")]
    settings = {k: getattr(args, k) for k in ("data_dir", "chains", "warmup", "draws", "init", "seed")}
    lb = bs.load_sloth(data_dir=args.data_dir).complete_covariates(warn=False)
    if args.jobs == 1:
        where = f"backend {jax.default_backend()}, {jax.local_device_count()} device(s)"
    else:
        import joblib

        from bayes_sloth.workflows.sweeps import worker_devices

        n = min(joblib.effective_n_jobs(args.jobs), len(skills))
        where = f"{n} worker processes at once, {worker_devices(n)} CPU device(s) each"
    print(f"# {lb!r}; {where}; "
          f"{args.chains} chains x ({args.warmup} warmup + {args.draws} draws), init={args.init}, seed {args.seed}, "
          f"on-disk XLA cache {'off' if args.no_disk_cache else 'on'}")
    print("| K | first fit s | compile s | sampling s | total s | steps/iter warm-up | steps/iter draws | steps/s "
          "| min ESS bulk | ESS/s | max R-hat | div | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    tasks = [(K, settings) for K in skills]
    if args.jobs == 1:
        for t in tasks:
            print(measure(t), flush=True)
    else:
        from bayes_sloth.workflows.sweeps import run

        run(measure, tasks, args.jobs, compile_cache=not args.no_disk_cache,
            on_result=lambda i, row: print(row, flush=True))


if __name__ == "__main__":
    main()
