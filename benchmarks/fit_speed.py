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
        [--out FILE]        # also write the table there, with this command
        [--quick]           # K=1, 2 x 20 x 20: checks that the script runs, measures nothing
        [--no-disk-cache]   # compile from scratch (BAYES_SLOTH_XLA_CACHE=0)
        [--jobs N]          # the K's in N worker processes at once (bayes_sloth.workflows.sweeps.run), each with
                            # cores // N JAX devices; rows print as they finish, in K order. The runs then
                            # share the cores: their seconds are not comparable with --jobs 1's
"""

from __future__ import annotations

import resource
import warnings

import jax
from harness import BenchmarkParser, Transcript, int_list, load_table, markdown_header, markdown_row, run_fit

import bayes_sloth as bs
from bayes_sloth.workflows.sweeps import run, worker_devices

warnings.simplefilter("ignore")

COLUMNS = ("K", "first fit s", "compile s", "sampling s", "total s", "steps/iter warm-up", "steps/iter draws",
           "steps/s", "min ESS bulk", "ESS/s", "max R-hat", "div", "peak MiB")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(task):
    """One table row: fit K twice (first with compile, second reusing it) in this process."""
    K, args = task
    warnings.simplefilter("ignore")  # in a worker process too
    lb = load_table(args["data_dir"], complete_covariates=True)
    kw = dict(n_skills=K, chains=args["chains"], warmup=args["warmup"], draws=args["draws"], init=args["init"],
              seed=args["seed"])
    first = run_fit(lb, **kw)[1].wall_s
    _, n = run_fit(lb, **kw)
    total, sampling = n.wall_s, n.sampling_s
    warm, draws = n.warmup_gradient_evaluations, n.draw_gradient_evaluations
    return markdown_row([
        K, f"{first:.1f}", f"{max(first - total, 0):.1f}", f"{sampling:.1f}", f"{total:.1f}",
        f"{warm / args['chains'] / args['warmup']:.0f}", f"{draws / args['chains'] / args['draws']:.0f}",
        f"{(warm + draws) / sampling:.0f}", f"{n.min_ess_bulk:.0f}", f"{n.min_ess_bulk / sampling:.1f}",
        f"{n.max_rhat:.4f}", n.divergences, f"{peak_rss_mib():.0f}"])


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    ap.add_argument("--skills", type=int_list, default=int_list("1,2,3,4"), help="numbers of skills, like 1,2,3,4")
    ap.add_sampler(chains=4, warmup=1000, draws=1000)
    ap.add_argument("--init", default="svi")
    ap.add_seed()
    ap.add_argument("--no-disk-cache", action="store_true", help="compile everything (no on-disk XLA cache)")
    ap.add_argument("--jobs", type=int, default=1, help="the K's in this many worker processes at once (default 1)")
    ap.add_out()
    ap.add_quick(skills=[1], chains=2, warmup=20, draws=20)
    args = ap.parse(argv)
    # this process: one CPU device per core (chains in parallel), compiled programs on disk unless
    # --no-disk-cache (worker processes configure themselves: bayes_sloth.workflows.sweeps)
    bs.configure(compile_cache=not args.no_disk_cache)
    skills = args.skills
    settings = {k: getattr(args, k) for k in ("data_dir", "chains", "warmup", "draws", "init", "seed")}
    lb = load_table(args.data_dir, complete_covariates=True)
    if args.jobs == 1:
        where = f"backend {jax.default_backend()}, {jax.local_device_count()} device(s)"
    else:
        import joblib

        n = min(joblib.effective_n_jobs(args.jobs), len(skills))
        where = f"{n} worker processes at once, {worker_devices(n)} CPU device(s) each"
    with Transcript(args.out, args.command) as out:
        out.print(f"# {lb!r}; {where}; "
                  f"{args.chains} chains x ({args.warmup} warmup + {args.draws} draws), init={args.init}, seed "
                  f"{args.seed}, on-disk XLA cache {'off' if args.no_disk_cache else 'on'}")
        out.print(markdown_header(COLUMNS))
        tasks = [(K, settings) for K in skills]
        if args.jobs == 1:
            for t in tasks:
                out.print(measure(t))
        else:
            run(measure, tasks, args.jobs, compile_cache=not args.no_disk_cache,
                on_result=lambda i, row: out.print(row))


if __name__ == "__main__":
    main()
