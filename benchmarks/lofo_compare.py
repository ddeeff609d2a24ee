"""Side by side: several laws' cached leave-family-out cells, against the paper's best Sloth.

Reads the cells ``lofo_table.py`` cached (``<tag>__<set>__n<n>.json`` and its
``.pairs.csv``) for each law named on the command line and prints one
markdown table: MAE per cell (of the predictive mean, or with ``--point median`` of the
predictive median, the Bayes point forecast under absolute error), the paper's learned-link Sloth d3 and its best
Sloth of any d, and per law the cells at or below each, pooled 90 % and
50 % coverage, CRPS, ELPD per pair (all pooled over the held-out pairs of
the cells, recomputed from the pairs files) and the folds' seconds. ::

    python benchmarks/lofo_compare.py K3=CACHE_A/K3_normal_instr_meff_mono_all_c2w200d200 \\
        K4=CACHE_B/K4_normal_instr_meff_mono_all_c2w200d200 stack=CACHE_C/stack1234_...
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from harness import BenchmarkParser, markdown_header, markdown_row, write_result
from lofo_table import cell_key, paper_numbers

from bayes_sloth.workflows.evaluation import summarize_pairs

CELLS = [("leaderboard_v1", 1), ("leaderboard_v2", 1), ("leaderboard_v1+v2", 1),
         ("leaderboard_v1", 2), ("leaderboard_v2", 2), ("leaderboard_v1+v2", 2)]


def load(prefix: str, s: str, n: int):
    folder, tag = Path(prefix).parent, Path(prefix).name
    key = cell_key(s, n, tag)
    js, pc = folder / f"{key}.json", folder / f"{key}.pairs.csv"
    if not js.is_file() or not pc.is_file():
        raise SystemExit(f"no cached cell {key} in {folder}: run lofo_table.py for it first")
    return json.loads(js.read_text()), pd.read_csv(pc)


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("laws", nargs="+", metavar="NAME=CACHE/TAG", help="a law's name and its cells' path prefix")
    ap.add_argument("--cells", default=None, help="comma list like leaderboard_v2:1 (default: the six cells)")
    ap.add_argument("--point", choices=("mean", "median"), default="mean",
                    help="the point forecast whose MAE is shown: the predictive mean (default, as evaluate's 'mae') "
                         "or median (evaluate's 'mae_median')")
    ap.add_out()
    args = ap.parse(argv)
    cells = CELLS if not args.cells else [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells.split(",")]
    paper = paper_numbers()
    laws = [law.rsplit("=", 1) for law in args.laws]  # a name may hold "=" (K=3); a path may not
    head = ["law"] + [f"{s.replace('leaderboard_', '')}/n{n}" for s, n in cells] + [
        "<= trainlink d3", "<= best any d", "cov90", "cov50", "CRPS", "ELPD/pair", "fold s"]
    lines = [markdown_header(head)]
    ref3 = [float(paper.loc[(s, n), "sloth_trainlink_d3"]) for s, n in cells]
    best = [float(paper.loc[(s, n), "best_sloth_any_d"]) for s, n in cells]
    lines.append("| paper trainlink d3 | " + " | ".join(f"{v:.4f}" for v in ref3) + " | | | | | | | |")
    lines.append("| paper best Sloth (any d) | " + " | ".join(
        f"{v:.4f} ({str(paper.loc[c, 'best_sloth_method']).replace('sloth_trainlink_', '')})"
        for v, c in zip(best, cells)) + " | | | | | | | |")
    # recomputed from the pairs, so that caches written before 'mae_median' existed are read alike
    key = "mae" if args.point == "mean" else "mae_median"
    for name, prefix in laws:
        got = [load(prefix, s, n) for s, n in cells]
        mae = [float(summarize_pairs(p)[key]) for _, p in got]
        pooled = summarize_pairs(pd.concat([p for _, p in got], ignore_index=True))
        secs = sum(float(j["seconds"]) for j, _ in got)
        row = [name] + [f"{m:.4f}" for m in mae] + [
            f"{sum(m <= r for m, r in zip(mae, ref3))}/{len(cells)}",
            f"{sum(m <= b for m, b in zip(mae, best))}/{len(cells)}",
            f"{pooled['coverage']['0.9']:.3f}", f"{pooled['coverage']['0.5']:.3f}", f"{pooled['crps']:.4f}",
            f"{pooled['elpd_per_pair']:.3f}", f"{secs:.0f}"]
        lines.append(markdown_row(row))
    print("\n".join(lines))
    if args.out:
        write_result("\n".join(lines) + "\n", args.out, args.command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
