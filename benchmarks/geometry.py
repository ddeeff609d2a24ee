"""The posterior's geometry on the real Sloth table: what each sampler coordinate system and mass matrix costs.

One row per (coordinates, adaptation, seed): the default law (with ``--skills K`` skills) fitted to the whole
table (every model, latent tokens where the table has none, as ``bayes-sloth fit`` does), with the package's
own sampler. Columns:
gradient evaluations (leapfrog steps of every chain, warm-up included: the machine-independent cost), leapfrog
steps per draw, min bulk and tail ESS, max R-hat, divergences, gradient evaluations per min ESS, whether the
fit passes every check (R-hat <= 1.01, bulk and tail ESS >= 400, no divergence), and the fit call's seconds
(compare these only between rows of one run on a quiet machine).

    python benchmarks/geometry.py --data-dir ../shared/data [--seeds 0-4]
        [--coordinates scaled,anchored] [--adaptation low-rank,diagonal] [--chains 4 --warmup 1000 --draws 1000]
        [--skills K]        # the number of skills (default: the law's)
        [--families N]      # only N families drawn at random (numpy seed --subset-seed, default 0), every
                            # model of each: how the coordinates fare when few families pin the skills' spread
        [--save DIR]        # keep each fit, for benchmarks/directions.py
        [--out FILE]        # also write the table there, with this command
        [--quick]           # 2 x 20 x 20, seed 0: checks that the script runs, measures nothing
"""

from __future__ import annotations

import statistics
import warnings
from pathlib import Path

import numpy as np

from harness import BenchmarkParser, Transcript, load_table, markdown_header, markdown_row, run_fit

import bayes_sloth as bs
from bayes_sloth.core.options import LawOptions, SamplerOptions

COLUMNS = ("coordinates", "adaptation", "seed", "gradient evals", "steps/draw", "min ESS bulk", "min ESS tail",
           "max R-hat", "div", "grads per min ESS", "passes", "fit s")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def family_subset(lb: bs.Leaderboard, n: int, seed: int) -> bs.Leaderboard:
    """Every model of ``n`` families drawn without replacement (``numpy.random.default_rng(seed)``)."""
    family = lb.covariates["family"]
    families = sorted(family.unique())
    if not 0 < n <= len(families):
        raise SystemExit(f"--families must be between 1 and {len(families)}, got {n}")
    keep = np.random.default_rng(seed).choice(families, size=n, replace=False)
    return lb.select(models=list(family.index[family.isin(keep)]))


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    ap.add_seeds(default="0")
    ap.add_sampler(chains=4, warmup=1000, draws=1000, auto=True)
    ap.add_argument("--coordinates", type=_names, default=_names("scaled,anchored"))
    ap.add_argument("--adaptation", type=_names, default=[SamplerOptions.adaptation])
    ap.add_argument("--skills", type=int, default=LawOptions.n_skills, help="the number of skills K")
    ap.add_argument("--families", type=int, default=0, help="fit only this many families, drawn at random (0: all)")
    ap.add_argument("--subset-seed", type=int, default=0, help="numpy seed of the families' draw")
    ap.add_argument("--save", metavar="DIR", help="also save each fit there (K<k>_<coordinates>_<adaptation>_"
                    "seed<s>.nc), for benchmarks/directions.py")
    ap.add_out()
    ap.add_quick(chains=2, warmup=20, draws=20, seeds=[0])
    args = ap.parse(argv)
    args.draws = args.draws if args.draws == "auto" else int(args.draws)
    bs.configure()
    warnings.simplefilter("ignore")
    lb = load_table(args.data_dir)
    if args.families:
        lb = family_subset(lb, args.families, args.subset_seed)
    with Transcript(args.out, args.command) as out:
        out.print(f"# {lb!r}; default law, K = {args.skills}; {args.chains} chains x ({args.warmup} warmup + "
                  f"{args.draws} draws)")
        out.print(markdown_header(COLUMNS))
        for coords in args.coordinates:
            for adaptation in args.adaptation:
                per_ess = []
                for seed in args.seeds:
                    law, n = run_fit(lb, n_skills=args.skills, coordinates=coords, adaptation=adaptation,
                                     chains=args.chains, warmup=args.warmup, draws=args.draws, seed=seed,
                                     progress=False)
                    if args.save:  # for benchmarks/directions.py
                        Path(args.save).mkdir(parents=True, exist_ok=True)
                        sub = f"_F{args.families}s{args.subset_seed}" if args.families else ""
                        law.save(Path(args.save) / f"K{args.skills}{sub}_{coords}_{adaptation}_seed{seed}.nc")
                    steps = n.draw_gradient_evaluations / (n.chains * n.draws_per_chain)
                    per_ess.append(n.gradients_per_ess)
                    out.print(markdown_row([
                        coords, adaptation, seed, f"{n.gradient_evaluations:,.0f}", f"{steps:.0f}",
                        f"{n.min_ess_bulk:.0f}", f"{n.min_ess_tail:.0f}", f"{n.max_rhat:.4f}", n.divergences,
                        f"{n.gradients_per_ess:,.0f}", "yes" if n.passes() else "no", f"{n.wall_s:.0f}"]))
                if len(per_ess) > 1:
                    out.print(markdown_row([coords, adaptation, "median", "", "", "", "", "", "",
                                            f"{statistics.median(per_ess):,.0f}", "", ""]))


if __name__ == "__main__":
    main()
