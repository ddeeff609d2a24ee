"""Fit speed on the real Sloth table: a table per K.

Columns: K, compile seconds (first fit minus a second, same-shaped fit that
reuses the compiled sampler), sampling seconds, total, mean leapfrog steps
per iteration, leapfrog steps per second (all chains), the slowest
parameter's bulk ESS and bulk ESS per second, max R-hat, divergences, peak
resident memory of the process.

    python benchmarks/fit_speed.py --data-dir ../shared/data [--skills 1,2,3,4] [--chains 4 --warmup 1000 --draws 1000]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

warnings.simplefilter("ignore")

import bayes_sloth as bs  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skills", default="1,2,3,4")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--init", default="svi")
    args = ap.parse_args(argv)
    import jax

    lb = bs.load_sloth(data_dir=args.data_dir).complete_covariates(warn=False)
    print(f"# {lb!r}; backend {jax.default_backend()}, {jax.local_device_count()} device(s); "
          f"{args.chains} chains x ({args.warmup} warmup + {args.draws} draws), init={args.init}")
    print("| K | compile s | sampling s | total s | steps/iter | steps/s | min ESS bulk | ESS/s | max R-hat | div | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for K in [int(k) for k in args.skills.split(",")]:
        kw = dict(n_skills=K, chains=args.chains, warmup=args.warmup, draws=args.draws, init=args.init)
        t0 = time.perf_counter()
        bs.SkillsLaw(seed=100, **kw).fit(lb)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        law = bs.SkillsLaw(seed=0, **kw).fit(lb)
        total = time.perf_counter() - t0
        d = law.diagnostics_
        steps = law.idata_.sample_stats["n_steps"]
        sampling = law.fit_seconds_
        # steps recorded are for the kept draws; warm-up steps are not, so steps/s is a lower bound
        print(f"| {K} | {max(first - total, 0):.1f} | {sampling:.1f} | {total:.1f} | {float(steps.mean()):.0f} | "
              f"{float(steps.sum()) / sampling:.0f} | {d.min_ess_bulk:.0f} | {d.min_ess_bulk / sampling:.1f} | "
              f"{d.max_rhat:.4f} | {d.divergences} | {peak_rss_mib():.0f} |", flush=True)


if __name__ == "__main__":
    main()
