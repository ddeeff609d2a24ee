"""The variational path against NUTS, on synthetic leaderboards both can fit (issue 17, item 4).

For each size (models x benchmarks) a leaderboard is simulated from the
default law (K=2, families of 1-7 models, 15 % missing scores, as
``scaling.py``); every tenth family is held out whole, as a never-seen
family. The rest is fitted twice with the same law:

- NUTS with ``draws="auto"`` (blocks of 100 draws until R-hat <= 1.01,
  bulk and tail ESS >= ``--target-ess`` and no divergence, or the cap of
  draws): its wall time and whether it passed is a row of the scaling table
  that counts (issue 17: "a size counts only if it converges");
- the variational path (``method="svi"``: mean-field, 5000 Adam steps).

Then, taking NUTS as the reference:

- parameters: for every scalar of the posterior (sampled and deterministic
  sites: slopes, family efficiencies, loadings, offsets, skills, ...), the
  share of NUTS draws inside SVI's central 90 % interval (0.90 if SVI had
  the posterior's spread; less when it is too narrow or misplaced),
  summarized per site (median over its scalars) and over all scalars;
- forecasts: the held-out families' models on every benchmark
  (``predict(..., condition=False)``), the share of NUTS's predictive draws
  inside SVI's 90 % predictive interval; the coverage of the true scores
  (drawn by the simulator, before masking) by each method's 90 % interval;
  and SVI's mean interval width over NUTS's.

    python benchmarks/variational.py --sizes 200x12,1000x12 [--seed 0] [--target-ess 400] [--max-draws 2000] [--out FILE]
        [--quick]

Each size runs in this process, one after another; the table is printed as
rows finish and, with ``--out``, written (atomically) when all are done.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from harness import BenchmarkParser, markdown_header, markdown_row, quick_path, run_fit, write_result

import bayes_sloth as bs

LEVEL = 0.90


def central(draws: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of each column of ``draws`` (draws on axis 0)."""
    a = (1.0 - level) / 2.0
    return np.quantile(draws, a, axis=0), np.quantile(draws, 1.0 - a, axis=0)


def share_inside(reference: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per column, the share of ``reference`` draws (axis 0) inside [lo, hi]."""
    return ((reference >= lo) & (reference <= hi)).mean(axis=0)


def flat_draws(posterior, name: str) -> np.ndarray:
    """A posterior variable as (draws, scalars): chains and draws pooled, every other dim flattened."""
    v = np.asarray(posterior[name].values, dtype=float)
    return v.reshape(v.shape[0] * v.shape[1], -1)


def parameter_coverage(nuts_post, svi_post) -> pd.DataFrame:
    """One row per posterior site present in both fits: its scalars, and the share of NUTS draws
    inside SVI's 90 % interval (median and minimum over the site's scalars). Scalars that are
    constant under both (structural zeros and ones of the loadings) carry no information and are left
    out of the counts."""
    rows = []
    for name in sorted(set(nuts_post.data_vars) & set(svi_post.data_vars)):
        ref, approx = flat_draws(nuts_post, name), flat_draws(svi_post, name)
        free = ~((np.ptp(ref, axis=0) == 0) & (np.ptp(approx, axis=0) == 0))
        if not free.any():
            continue
        lo, hi = central(approx[:, free])
        share = share_inside(ref[:, free], lo, hi)
        width = (hi - lo) / np.maximum(np.subtract(*central(ref[:, free])[::-1]), 1e-12)
        rows.append({"site": name, "scalars": int(free.sum()), "median_share": float(np.median(share)),
                     "min_share": float(share.min()), "median_width_ratio": float(np.median(width)),
                     "_shares": share})
    return pd.DataFrame(rows)


def forecast_coverage(nuts_law, svi_law, test: bs.Leaderboard, truth_y: pd.DataFrame, seed: int) -> dict:
    """Never-seen families' forecasts (every benchmark) by each fit, compared."""
    out = {}
    draws = {}
    for name, law in (("nuts", nuts_law), ("svi", svi_law)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # never-seen families, by design
            pred = law.predict(test.covariates.reset_index(), seed=seed, condition=False, new_families="allow")
        score = pred.predictions["score"].transpose("chain", "draw", "model", "benchmark").values
        draws[name] = score.reshape(-1, score.shape[2] * score.shape[3])
    y = truth_y.loc[list(test.covariates.index), list(test.benchmarks)].to_numpy(dtype=float).ravel()
    lo_s, hi_s = central(draws["svi"])
    lo_n, hi_n = central(draws["nuts"])
    out["pairs"] = int(y.size)
    out["nuts_draws_in_svi90"] = float(share_inside(draws["nuts"], lo_s, hi_s).mean())
    out["truth_cov90_nuts"] = float(((y >= lo_n) & (y <= hi_n)).mean())
    out["truth_cov90_svi"] = float(((y >= lo_s) & (y <= hi_s)).mean())
    out["width_ratio"] = float((hi_s - lo_s).mean() / (hi_n - lo_n).mean())
    return out


def one_size(n_models: int, n_bench: int, seed: int, target_ess: int, max_draws: int, chains: int,
             warmup: int) -> tuple[dict, pd.DataFrame]:
    lb, truth = bs.simulate_leaderboard(n_families=max(2, n_models // 4), n_benchmarks=n_bench, n_skills=2,
                                        models_per_family=(1, 7), seed=seed)
    fams = lb.families
    held = fams[::10]
    train, test = lb.select(families=[f for f in fams if f not in held]), lb.select(families=held)
    truth_y = pd.DataFrame(truth["y"], index=truth["models"], columns=truth["benchmarks"])
    common = dict(anchors=truth["anchors"], seed=seed, progress=False)
    nuts, d = run_fit(train, n_skills=2, draws="auto", target_ess=target_ess, max_draws=max_draws, chains=chains,
                      warmup=warmup, **common)
    t_nuts = d.wall_s
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no convergence diagnostics": known, it is what is measured here
        svi = bs.SkillsLaw(2, method="svi", draws=chains * 1000, **common).fit(train)
    t_svi = time.perf_counter() - t0
    passed = d.passes(target_ess)
    params = parameter_coverage(nuts.idata_.posterior, svi.idata_.posterior)
    every = np.concatenate(list(params["_shares"]))
    row = {"models": len(train), "benchmarks": n_bench, "observed": train.n_observed,
           "held_out_models": len(test), "nuts_s": t_nuts, "draws_per_chain": d.draws_per_chain,
           "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
           "divergences": d.divergences, "passed": passed, "stopped": nuts.sampling_.get("stopped", ""),
           "svi_s": t_svi, "scalars": int(every.size), "param_share_mean": float(every.mean()),
           "param_share_median": float(np.median(every)), "param_share_p10": float(np.quantile(every, 0.1)),
           **forecast_coverage(nuts, svi, test, truth_y, seed)}
    return row, params.drop(columns="_shares")


HEAD = markdown_header(["models (train)", "benchmarks", "observed", "NUTS s", "draws/chain", "max R-hat",
                        "min bulk / tail ESS", "div", "passes", "SVI s", "param scalars",
                        "NUTS draws in SVI 90 %: mean, median, 10th pct", "forecasts: NUTS draws in SVI 90 %",
                        "true scores in 90 %: NUTS / SVI", "SVI / NUTS width"])


def fmt_row(r: dict) -> str:
    return markdown_row([
        r["models"], r["benchmarks"], r["observed"], f"{r['nuts_s']:.1f}", r["draws_per_chain"],
        f"{r['max_rhat']:.4f}", f"{r['min_ess_bulk']:.0f} / {r['min_ess_tail']:.0f}", r["divergences"],
        "yes" if r["passed"] else "no", f"{r['svi_s']:.1f}", r["scalars"],
        f"{r['param_share_mean']:.3f}, {r['param_share_median']:.3f}, {r['param_share_p10']:.3f}",
        f"{r['nuts_draws_in_svi90']:.3f} ({r['pairs']} pairs)",
        f"{r['truth_cov90_nuts']:.3f} / {r['truth_cov90_svi']:.3f}", f"{r['width_ratio']:.2f}"])


def main(argv=None):
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("--sizes", default="200x12,1000x12")
    ap.add_seed()
    ap.add_argument("--target-ess", type=int, default=400)
    ap.add_argument("--max-draws", type=int, default=2000, help="cap of NUTS draws per chain (draws='auto')")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_out(help="write the tables here (markdown, atomically, with the command line) when every size is done")
    ap.add_quick(sizes="40x6", chains=2, warmup=50, target_ess=20, max_draws=100, out=quick_path("variational.md"))
    args = ap.parse(argv)
    bs.configure()  # one CPU device per core (chains in parallel), compiled programs kept on disk
    lines = [f"# SVI against NUTS: default law, K=2, seed {args.seed}; NUTS {args.chains} chains x {args.warmup} "
             f"warm-up, draws='auto' (target ESS {args.target_ess}, cap {args.max_draws} per chain); SVI 5000 Adam "
             f"steps, {args.chains * 1000} draws; every tenth family held out", "", HEAD]
    print("\n".join(lines), flush=True)
    sites = []
    for size in args.sizes.split(","):
        n, j = (int(v) for v in size.split("x"))
        row, params = one_size(n, j, args.seed, args.target_ess, args.max_draws, args.chains, args.warmup)
        lines.append(fmt_row(row))
        print(lines[-1], flush=True)
        sites.append(params.assign(size=size))
    per_site = pd.concat(sites)[["size", "site", "scalars", "median_share", "min_share", "median_width_ratio"]]
    tail = ["", "## Per site: share of NUTS draws inside SVI's 90 % interval (median and min over the site's "
                "scalars), and SVI's interval width over NUTS's (median)", "",
            "| size | site | scalars | median share | min share | median width ratio |", "|---" * 6 + "|"]
    tail += [f"| {r.size} | {r.site} | {r.scalars} | {r.median_share:.3f} | {r.min_share:.3f} | "
             f"{r.median_width_ratio:.2f} |" for r in per_site.itertuples()]
    print("\n".join(tail), flush=True)
    if args.out:
        write_result("\n".join(lines + tail) + "\n", args.out, args.command)


if __name__ == "__main__":
    main()
