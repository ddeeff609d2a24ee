"""Forecasts for families seen through two models, against a per-family point fit (issue #15, item 3).

With two models of a family in training (the paper's n_train = 2 cells), a
forecaster without this package would extrapolate the family's own trend:
for each benchmark, a straight line through the family's two models in
log compute (log params + log tokens), fitted

* ``family_logit``: on the floor-corrected logit of the score,
  ``logit((y - c) / (1 - c))`` with ``c`` the benchmark's chance floor (the
  per-family sigmoid scaling law, two points, two parameters), or
* ``family_linear``: on the raw score, clipped to [0, 1].

Partial pooling shrinks a family toward the others. That helps a family seen
once, and it must not hurt a family seen twice: here the law's forecasts
(a pairs CSV written by ``evaluate`` / ``lofo_table.py``) should be at least
as accurate as the point fits, and their 90 % intervals no wider than the
point fit's own errors would need (twice the 90th percentile of its absolute
errors, the half-width a symmetric interval around it would need to cover
90 % of the same pairs). The paper's own per-family variants (family
intercepts on log FLOPs or log params and log tokens, ``*_faminter``) are
listed with their published MAE.

The point fits use exactly the cell's design (``bayes_sloth.workflows.evaluation.build_design``):
the same training models of each held-out family, the same forecast pairs, and
the paper's error (mean absolute error within each test group, then averaged
over groups).

Usage::

    python benchmarks/family_fit.py --data-dir ../shared/data --set leaderboard_v1 \\
        --pairs leaderboard_v1:2@K3=CACHE/K3_...__leaderboard_v1__n2.pairs.csv \\
        --pairs leaderboard_v1:1@K3=CACHE/K3_...__leaderboard_v1__n1.pairs.csv
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from harness import BenchmarkParser, markdown_table, write_result

from bayes_sloth.core.data import paper_errors
from bayes_sloth.workflows.evaluation import build_design

#: A score within this fraction of its range from the floor or from 1 is moved to it before the logit.
EDGE = 0.005


def _logit_scale(y, c):
    u = np.clip((np.asarray(y, float) - c) / (1.0 - c), EDGE, 1.0 - EDGE)
    return np.log(u / (1.0 - u))


def _from_logit(z, c):
    return c + (1.0 - c) / (1.0 + np.exp(-np.asarray(z, float)))


def point_fits(design) -> pd.DataFrame:
    """Both per-family point forecasts for every forecast pair of ``design`` (columns of
    ``Design.forecast_pairs()`` plus ``family_logit`` and ``family_linear``)."""
    lb = design.leaderboard
    cov, sc, floors = lb.covariates, lb.scores, lb.floors
    x_all = np.log(cov["params"].astype(float)) + np.log(cov["tokens"].astype(float))
    pairs = design.forecast_pairs()
    out = {"family_logit": np.full(len(pairs), np.nan), "family_linear": np.full(len(pairs), np.nan)}
    for fold in design.folds:
        for fam in fold.families:
            seen = [m for m in fold.train_models if cov.at[m, "family"] == fam]
            rows = np.flatnonzero(((pairs["group"] == fold.group) & (pairs["family"] == fam)).to_numpy())
            if len(rows) == 0:
                continue
            if len(seen) < 2:
                raise ValueError(f"family {fam!r} has {len(seen)} training model(s): a line needs two (n_train >= 2)")
            xs = x_all[seen].to_numpy()
            for b, idx in pd.Series(rows).groupby(pairs["benchmark"].to_numpy()[rows]):
                c = float(floors[b])
                ys = sc.loc[seen, b].to_numpy(float)
                x = x_all[pairs["model"].to_numpy()[idx.to_numpy()]].to_numpy()
                for name, fwd, back in (("family_logit", lambda v: _logit_scale(v, c), lambda z: _from_logit(z, c)),
                                        ("family_linear", lambda v: v, lambda z: np.clip(z, 0.0, 1.0))):
                    zs = fwd(ys)  # one line per (family, benchmark), through its two training models
                    slope, icpt = np.polyfit(xs, zs, 1) if np.ptp(xs) > 0 else (0.0, zs.mean())
                    out[name][idx.to_numpy()] = back(icpt + slope * x)
    return pairs.assign(**out)


def group_mae(frame: pd.DataFrame, col: str) -> float:
    err = (frame[col] - frame["observed"]).abs()
    return float(err.groupby(frame["group"], sort=False).mean().mean())


def compare(fits: pd.DataFrame, laws: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per forecaster, MAE per family), on the pairs every forecaster has."""
    key = ["group", "model", "benchmark"]
    merged = fits.copy()
    for name, p in laws.items():
        p = p.rename(columns={"mean": name, "lower_90": f"{name}_lo", "upper_90": f"{name}_hi"})
        merged = merged.merge(p[key + [name, f"{name}_lo", f"{name}_hi"]], on=key, how="left", validate="1:1")
        missing = merged[name].isna()
        if missing.any():
            r = merged[missing].iloc[0]
            raise ValueError(f"the pairs of {name!r} lack ({r['model']!r}, {r['benchmark']!r}) of the cell's design")
    rows = []
    for col in ["family_logit", "family_linear", *laws]:
        err = (merged[col] - merged["observed"]).abs()
        row = {"forecaster": col, "mae": group_mae(merged, col), "mae_pooled": float(err.mean()),
               "abs_err_q90": float(err.quantile(0.9))}
        if col in laws:
            lo, hi = merged[f"{col}_lo"], merged[f"{col}_hi"]
            row["width_90"] = float((hi - lo).mean())
            row["coverage_90"] = float(((merged["observed"] >= lo) & (merged["observed"] <= hi)).mean())
        else:
            row["width_90"] = 2 * row["abs_err_q90"]  # the symmetric interval that would cover 90 % of these pairs
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("forecaster")
    per_family = pd.DataFrame({col: (merged[col] - merged["observed"]).abs().groupby(merged["family"]).mean()
                               for col in ["family_logit", "family_linear", *laws]})
    per_family["n_pairs"] = merged.groupby("family").size()
    return summary, per_family


def markdown(df: pd.DataFrame) -> str:
    """The table in markdown, index first (floats to 4 decimals, integers as they are)."""
    return markdown_table(df, "{:.4f}", index=True)


def seen_once_and_twice(once: pd.DataFrame, twice: pd.DataFrame) -> pd.DataFrame:
    """A law's forecasts of the same (model, benchmark) pairs with its family seen through one and through two
    models (the n_train 1 and 2 cells): MAE, mean 90 % width and coverage of each."""
    key = ["model", "benchmark"]
    both = once.merge(twice, on=key, suffixes=("_1", "_2"), validate="1:1")
    rows = []
    for n in (1, 2):
        y = both[f"observed_{n}"]
        lo, hi = both[f"lower_90_{n}"], both[f"upper_90_{n}"]
        rows.append({"models seen": n, "pairs": len(both), "families": both["family_1"].nunique(),
                     "mae_pooled": float((both[f"mean_{n}"] - y).abs().mean()), "width_90": float((hi - lo).mean()),
                     "coverage_90": float(((y >= lo) & (y <= hi)).mean())})
    return pd.DataFrame(rows).set_index("models seen")


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_data_dir()
    ap.add_argument("--set", action="append", required=True, dest="sets", metavar="SET",
                    help="benchmark set whose n_train = 2 cell is compared, e.g. leaderboard_v1 (repeatable)")
    ap.add_argument("--pairs", action="append", default=[], metavar="SET:N@LABEL=PATH",
                    help="a law's forecast pairs CSV for one cell (n_train 2; with n_train 1 too, the same law is "
                         "also compared seen once against seen twice)")
    ap.add_out()
    a = ap.parse(argv)
    given = {}
    for spec in a.pairs:
        cell, sep, rest = spec.partition("@")
        label, eq, path = rest.partition("=")
        if not sep or not eq or ":" not in cell:
            ap.error(f"--pairs takes SET:N@LABEL=PATH, got {spec!r}")
        given[(cell, label)] = pd.read_csv(path)
    parts = ["# Per-family point fits against the law, families seen through two models", "",
             f"Command: `{a.command}`", ""]
    for bset in a.sets:
        design = build_design(None, "sloth", bset, 2, "all", data_dir=a.data_dir)
        laws = {label: p for (cell, label), p in given.items() if cell == f"{bset}:2"}
        summary, per_family = compare(point_fits(design), laws)
        paper = paper_errors().query("benchmark_set == @bset and n_train == 2 and method.str.contains('faminter')")
        summary = pd.concat([summary, pd.DataFrame({"mae": paper.set_index("method")["mae"]}).rename(
            index=lambda m: f"paper {m} (published)")]).rename_axis("forecaster")
        parts += [f"## {bset}, n_train = 2: {len(design.folds)} groups, {int(per_family['n_pairs'].sum())} pairs", "",
                  markdown(summary), "", "MAE per family:", "", markdown(per_family), ""]
        for label in laws:
            if (f"{bset}:1", label) in given:
                parts += [f"{label}, the same pairs with the family seen through one model and through two:", "",
                          markdown(seen_once_and_twice(given[(f"{bset}:1", label)], laws[label])), ""]
    text = "\n".join(parts)
    print(text)
    if a.out:
        write_result(text, a.out, a.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
