"""float32 (default) against float64 on the real table: same R-hat and ESS?

Each run is a separate process (JAX's 64-bit mode is set before anything is
traced). Prints one Markdown row per (K, precision): seconds, steps per
iteration, max R-hat, min bulk ESS, divergences.

    python benchmarks/precision.py --data-dir ../shared/data [--skills 1,3] [--chains 4 --warmup 1000 --draws 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import jax
if sys.argv[2] == "float64":
    jax.config.update("jax_enable_x64", True)
import bayes_sloth as bs
K, chains, warmup, draws = (int(v) for v in sys.argv[3:7])
lb = bs.load_sloth(data_dir=sys.argv[1] or None)
law = bs.SkillsLaw(n_skills=K, chains=chains, warmup=warmup, draws=draws, seed=0).fit(lb)
d = law.diagnostics_
print(json.dumps({"dtype": str(law.idata_.posterior["tau"].dtype), "seconds": law.fit_seconds_,
                  "steps": float(law.idata_.sample_stats["n_steps"].mean()), "max_rhat": d.max_rhat,
                  "min_ess_bulk": d.min_ess_bulk, "divergences": int(d.divergences)}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--skills", default="1,3")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args(argv)
    print("| K | precision | posterior dtype | seconds | steps/iter | max R-hat | min bulk ESS | divergences |")
    print("|---|---|---|---|---|---|---|---|")
    for K in args.skills.split(","):
        for prec in ("float32", "float64"):
            out = subprocess.run([sys.executable, "-c", CHILD, args.data_dir, prec, K, str(args.chains),
                                  str(args.warmup), str(args.draws)], capture_output=True, text=True)
            if out.returncode:
                print(f"| {K} | {prec} | failed: {out.stderr.strip().splitlines()[-1][:80]} |||||")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {K} | {prec} | {r['dtype']} | {r['seconds']:.1f} | {r['steps']:.0f} | {r['max_rhat']:.4f} | "
                  f"{r['min_ess_bulk']:.0f} | {r['divergences']} |", flush=True)


if __name__ == "__main__":
    main()
