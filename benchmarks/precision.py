"""float32 (default) against float64 on the real table: same R-hat and ESS?

Each run is a separate process (JAX's 64-bit mode is set before anything is
traced): this script again, with a hidden ``--child``. Prints one Markdown row per (K, precision): seconds,
steps per iteration, max R-hat, min bulk ESS, divergences.

    python benchmarks/precision.py --data-dir ../shared/data [--skills 1,3] [--chains 4 --warmup 1000 --draws 1000]
        [--out FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings

import jax
from harness import BenchmarkParser, Transcript, int_list, load_table, markdown_header, markdown_row, run_fit

import bayes_sloth as bs

COLUMNS = ("K", "precision", "posterior dtype", "seconds", "steps/iter", "max R-hat", "min bulk ESS", "divergences")


def child(args) -> None:
    """One fit in this process, at ``args.precision``; prints its numbers as one JSON line."""
    warnings.simplefilter("ignore")
    if args.precision == "float64":
        jax.config.update("jax_enable_x64", True)  # before anything is traced (importing the package traces nothing)
    bs.configure()  # one CPU device per core (chains in parallel), as the command line runs them
    law, n = run_fit(load_table(args.data_dir), n_skills=args.skills[0], chains=args.chains, warmup=args.warmup,
                     draws=args.draws, seed=0)
    print(json.dumps({"dtype": str(law.idata_.posterior["tau"].dtype), "seconds": n.sampling_s,
                      "steps": float(law.idata_.sample_stats["n_steps"].mean()), "max_rhat": n.max_rhat,
                      "min_ess_bulk": n.min_ess_bulk, "divergences": n.divergences}))


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    ap.add_argument("--skills", type=int_list, default=int_list("1,3"), help="numbers of skills, like 1,3")
    ap.add_sampler(chains=4, warmup=1000, draws=1000)
    ap.add_out()
    ap.add_quick(skills=[1], chains=2, warmup=20, draws=20)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one fit, in a process main() starts
    ap.add_argument("--precision", choices=("float32", "float64"), default="float32", help=argparse.SUPPRESS)
    args = ap.parse(argv)
    if args.child:
        child(args)
        return
    with Transcript(args.out, args.command) as out:
        out.print(markdown_header(COLUMNS))
        for K in args.skills:
            for prec in ("float32", "float64"):
                cmd = [sys.executable, __file__, "--child", "--precision", prec, "--skills", str(K),
                       "--chains", str(args.chains), "--warmup", str(args.warmup), "--draws", str(args.draws)]
                if args.data_dir:
                    cmd += ["--data-dir", args.data_dir]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode:
                    out.print(f"| {K} | {prec} | failed: {run.stderr.strip().splitlines()[-1][:80]} |||||")
                    continue
                r = json.loads(run.stdout.strip().splitlines()[-1])
                out.print(markdown_row([K, prec, r["dtype"], f"{r['seconds']:.1f}", f"{r['steps']:.0f}",
                                        f"{r['max_rhat']:.4f}", f"{r['min_ess_bulk']:.0f}", r["divergences"]]))


if __name__ == "__main__":
    main()
