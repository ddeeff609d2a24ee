"""Is a law's MAE really above or below the paper's? Paired, per test group, with the paper's d chosen honestly.

``lofo_compare.py`` compares a cell's MAE with the paper's. Two things that
table cannot say:

- **How sure the difference is.** A cell's MAE is a mean over its test
  groups (7 to 19 of them), and the paper's per-group errors are published
  (``sloth_lofo_mae_by_group.csv``). So the difference is paired by group:
  its mean, its standard error and a 90 % bootstrap interval over groups
  (2,000 resamples, seed (0, cell), fixed before running: the same resamples
  for every law and reference), and the groups where the law is better
  ("wins").
- **What the paper's "best Sloth of any d" costs to know.** It is the lowest
  of 16 Sloth variants (sigmoid or learned link, shared or not, d = 1..4),
  chosen on the very test groups it is scored on. A forecaster has to choose
  d before seeing them. Two honest choices are shown: the variant that is best
  on the other n_train of the same benchmark set ("other n"), and the one
  variant best on average over the six cells ("one for all").
- **All test groups at once.** The row "all N groups" pools the six cells' test groups (73 on the Sloth
  table), each group weighing the same, with its own bootstrap interval (seed (0, 6)).

``--against NAME=CACHE/TAG`` also pairs each law with another law's cached cells, group by group: the
difference in MAE (with its interval), CRPS and log score per cell and pooled over all test groups.

::

    python benchmarks/lofo_paired.py K4=CACHE/K4_normal_instr_meff_mono_all_c2w200d200 \\
        --paper-groups ../shared/reference/sloth_lofo_mae_by_group.csv [--against K3=CACHE/K3_...]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from harness import BenchmarkParser, Transcript
from lofo_compare import CELLS, load

N_BOOT, SEED = 2000, 0


def paper_by_group(path) -> pd.DataFrame:
    """The paper's per-group MAE of its Sloth variants: index (set, n_train, group), one column per method."""
    g = pd.read_csv(path)
    need = {"benchmarks", "n_train_models", "test_group", "method", "mae"}
    if not need <= set(g.columns):
        raise SystemExit(f"{path}: expected columns {sorted(need)}, got {list(g.columns)}")
    g = g[g["method"].str.startswith("sloth_")]
    return g.pivot_table(index=["benchmarks", "n_train_models", "test_group"], columns="method", values="mae")


def honest_choices(paper: pd.DataFrame) -> dict:
    """Per cell, the paper's variant chosen without the cell's own test groups."""
    by_cell = paper.groupby(level=[0, 1]).mean()  # the six cells are the paper's: n_train 1 and 2 of each set
    one_for_all = by_cell.loc[CELLS].mean().idxmin()
    return {(s, n): {"best any d": by_cell.loc[(s, n)].idxmin(), "other n": by_cell.loc[(s, 3 - n)].idxmin(),
                     "one for all": one_for_all} for s, n in CELLS}


def paired(ours: pd.Series, theirs: pd.Series, rng) -> dict:
    if set(ours.index) != set(theirs.index):
        raise SystemExit(f"test groups differ: only ours {sorted(set(ours.index) - set(theirs.index))}, "
                         f"only the paper's {sorted(set(theirs.index) - set(ours.index))}")
    d = (ours - theirs.loc[ours.index]).to_numpy()
    boot = d[rng.integers(0, len(d), size=(N_BOOT, len(d)))].mean(axis=1)
    return {"diff": d.mean(), "se": d.std(ddof=1) / np.sqrt(len(d)), "lo": np.quantile(boot, 0.05),
            "hi": np.quantile(boot, 0.95), "wins": int((d < 0).sum()), "groups": len(d)}


def _cell(p: dict) -> str:
    return f"{p['diff']:+.4f} ± {p['se']:.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] {p['wins']}/{p['groups']}"


def group_scores(prefix: str, s: str, n: int, point: str) -> pd.DataFrame:
    """Per test group of one cached cell: the MAE of the point forecast, the mean CRPS and the mean log score."""
    _, pairs = load(prefix, s, n)
    pairs = pairs.assign(err=(pairs[point] - pairs["observed"]).abs())
    return pairs.groupby("group")[["err", "crps", "lpd"]].mean()


def versus(out, name: str, prefix: str, other: str, other_prefix: str, point: str) -> None:
    """Print ``name`` minus ``other`` per test group: each cell and all groups pooled (resamples fixed as above)."""
    out.print(f"\n**{name} minus {other}**, paired by test group (negative MAE and CRPS, positive log score: "
              f"{name} is better); MAE with its 90 % bootstrap interval over groups and the groups where it is "
              f"lower.\n")
    out.print("| cell | MAE difference | groups better | CRPS difference | log score difference |")
    out.print("|---|---|---|---|---|")
    diffs = []
    for c, (s, n) in enumerate(CELLS):
        a, b = group_scores(prefix, s, n, point), group_scores(other_prefix, s, n, point)
        p = paired(a["err"], b["err"], np.random.default_rng([SEED, c]))
        d = a - b.loc[a.index]
        diffs.append(d)
        out.print(f"| {s.replace('leaderboard_', '')}/n{n} | {p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] | "
                  f"{p['wins']}/{p['groups']} | {d['crps'].mean():+.4f} | {d['lpd'].mean():+.3f} |")
    d = pd.concat(diffs)
    rng = np.random.default_rng([SEED, len(CELLS)])
    boot = d.to_numpy()[rng.integers(0, len(d), size=(N_BOOT, len(d)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.05, 0.95], axis=0)
    cols = {c: i for i, c in enumerate(d.columns)}
    out.print(f"| all {len(d)} groups | {d['err'].mean():+.4f} [{lo[cols['err']]:+.4f}, {hi[cols['err']]:+.4f}] | "
              f"{int((d['err'] < 0).sum())}/{len(d)} | {d['crps'].mean():+.4f} [{lo[cols['crps']]:+.4f}, "
              f"{hi[cols['crps']]:+.4f}] | {d['lpd'].mean():+.3f} [{lo[cols['lpd']]:+.3f}, {hi[cols['lpd']]:+.3f}] |")


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("laws", nargs="+", metavar="NAME=CACHE/TAG", help="a law's name and its cells' path prefix")
    ap.add_argument("--paper-groups", default="../shared/reference/sloth_lofo_mae_by_group.csv",
                    help="the paper's per-group errors (sloth_lofo_mae_by_group.csv)")
    ap.add_argument("--point", choices=("mean", "median"), default="mean")
    ap.add_argument("--against", metavar="NAME=CACHE/TAG", help="another law's cells to pair each law with")
    ap.add_out()
    args = ap.parse(argv)
    paper = paper_by_group(args.paper_groups)
    choice = honest_choices(paper)
    refs = ("sloth_trainlink_d3", "best any d", "other n", "one for all")

    with Transcript(args.out, args.command) as out:
        out.print("Paper's variant per cell (MAE over its test groups):\n")
        out.print("| cell | trainlink d3 | best any d (chosen on the test groups) | other n | one for all |")
        out.print("|---|---|---|---|---|")
        for s, n in CELLS:
            cell = paper.loc[(s, n)].mean()
            picks = [f"{cell[m]:.4f} ({m.replace('sloth_', '')})" for m in
                     (choice[(s, n)]["best any d"], choice[(s, n)]["other n"], choice[(s, n)]["one for all"])]
            out.print(f"| {s.replace('leaderboard_', '')}/n{n} | {cell['sloth_trainlink_d3']:.4f} | "
                      + " | ".join(picks) + " |")

        for name, prefix in (law.rsplit("=", 1) for law in args.laws):
            out.print(f"\n**{name}**: law minus paper, per test group (negative: the law is better); mean, se, "
                      f"90 % bootstrap interval, groups where the law is better.\n")
            out.print("| cell | MAE | " + " | ".join(f"vs {r}" for r in refs) + " |")
            out.print("|---|---|" + "---|" * len(refs))
            at_or_below = dict.fromkeys(refs, 0)
            ours_parts, theirs_parts = [], {r: [] for r in refs}  # per group, every cell
            for c, (s, n) in enumerate(CELLS):
                ours = group_scores(prefix, s, n, args.point)["err"]
                key = [f"{s}/{n}/{g}" for g in ours.index]  # a group's name is unique only within its cell
                ours_parts.append(pd.Series(ours.to_numpy(), index=key))
                cells = []
                for r in refs:
                    method = r if r.startswith("sloth_") else choice[(s, n)][r]
                    theirs = paper.loc[(s, n)][method]
                    p = paired(ours, theirs, np.random.default_rng([SEED, c]))
                    at_or_below[r] += p["diff"] <= 0
                    cells.append(_cell(p))
                    theirs_parts[r].append(pd.Series(theirs.loc[ours.index].to_numpy(), index=key))
                out.print(f"| {s.replace('leaderboard_', '')}/n{n} | {ours.mean():.4f} | "
                          + " | ".join(cells) + " |")
            # all test groups of the six cells at once, each group weighing the same (resamples seeded apart)
            ours_all = pd.concat(ours_parts)
            every = {r: paired(ours_all, pd.concat(parts), np.random.default_rng([SEED, len(CELLS)]))
                     for r, parts in theirs_parts.items()}
            out.print(f"| all {len(ours_all)} groups | {ours_all.mean():.4f} | "
                      + " | ".join(_cell(every[r]) for r in refs) + " |")
            out.print("| at or below | | " + " | ".join(f"{at_or_below[r]}/{len(CELLS)}" for r in refs) + " |")
            if args.against:
                versus(out, name, prefix, *args.against.rsplit("=", 1), args.point)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
