"""PSIS-LOO of the model variants on the real table (issue 3's cross-check).

Fits the default skills law (per-model offsets and an instruct shift), the lean
law without either, the offsets without the shift, and the default plus
family-specific slopes to the whole Sloth table (all 12 benchmarks) and prints
each fit's elpd_loo, its
standard error, p_loo, the count of Pareto k > 0.7, R-hat and divergences,
then ``az.compare``.

    python benchmarks/loo_compare.py --data-dir ../shared/data [--skills 3 --chains 4 --warmup 500 --draws 500]
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.simplefilter("ignore")

import arviz as az  # noqa: E402

import bayes_sloth as bs  # noqa: E402

VARIANTS = {
    "default": {},
    "lean": {"model_effects": False, "instruct_shift": False},
    "model_effects_only": {"instruct_shift": False},
    "default+family_slopes": {"family_slopes": True},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skills", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    lb = bs.load_sloth(data_dir=args.data_dir)
    fits = {}
    for name, kw in VARIANTS.items():
        t = time.perf_counter()
        law = bs.SkillsLaw(n_skills=args.skills, chains=args.chains, warmup=args.warmup, draws=args.draws,
                           seed=args.seed, **kw).fit(lb)
        loo = law.loo()
        d = law.diagnostics_
        print(f"{name}: {time.perf_counter() - t:.0f} s, elpd_loo {loo.elpd_loo:.1f} (se {loo.se:.1f}), "
              f"p_loo {loo.p_loo:.1f}, Pareto k > 0.7: {int((loo.pareto_k > 0.7).sum())}, "
              f"max R-hat {d.max_rhat:.3f}, divergences {d.divergences}", flush=True)
        fits[name] = law.idata_
    print(az.compare(fits, ic="loo").to_string())


if __name__ == "__main__":
    main()
