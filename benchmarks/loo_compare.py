"""PSIS-LOO of the model variants on the real table (issue 3's cross-check).

Fits the default skills law (per-model offsets and an instruct shift), the lean
law without either, the offsets without the shift, and the default plus
family-specific slopes to the whole Sloth table (all 12 benchmarks) and prints
each fit's elpd_loo, its
standard error, p_loo, the count of Pareto k > 0.7, R-hat and divergences,
then ``az.compare``.

    python benchmarks/loo_compare.py --data-dir ../shared/data [--skills 3 --chains 4 --warmup 500 --draws 500]
        [--out FILE] [--quick]
"""

from __future__ import annotations

import warnings

warnings.simplefilter("ignore")

import arviz as az  # noqa: E402
from harness import BenchmarkParser, Transcript, load_table, run_fit  # noqa: E402

import bayes_sloth as bs  # noqa: E402

VARIANTS = {
    "default": {},
    "lean": {"model_effects": False, "instruct_shift": False},
    "model_effects_only": {"instruct_shift": False},
    "default+family_slopes": {"family_slopes": True},
}


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    ap.add_argument("--skills", type=int, default=3)
    ap.add_sampler(chains=4, warmup=500, draws=500)
    ap.add_seed()
    ap.add_out()
    ap.add_quick(skills=1, chains=2, warmup=20, draws=20)
    args = ap.parse(argv)
    bs.configure()  # one CPU device per core (chains in parallel), compiled programs kept on disk
    lb = load_table(args.data_dir)
    fits = {}
    with Transcript(args.out, args.command) as out:
        for name, kw in VARIANTS.items():
            law, n = run_fit(lb, n_skills=args.skills, chains=args.chains, warmup=args.warmup, draws=args.draws,
                             seed=args.seed, **kw)
            loo = law.loo()
            out.print(f"{name}: {n.wall_s:.0f} s, elpd_loo {loo.elpd_loo:.1f} (se {loo.se:.1f}), "
                      f"p_loo {loo.p_loo:.1f}, Pareto k > 0.7: {int((loo.pareto_k > 0.7).sum())}, "
                      f"max R-hat {n.max_rhat:.3f}, divergences {n.divergences}")
            fits[name] = law.idata_
        out.print(az.compare(fits, ic="loo").to_string())


if __name__ == "__main__":
    main()
