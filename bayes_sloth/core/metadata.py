"""Facts about public benchmarks and the Sloth leaderboard table.

Everything here is public metadata (chance levels, the benchmark groupings of
the Open LLM Leaderboard, the column names of the Sloth table). No scores.
"""

from __future__ import annotations

#: Chance floor of each benchmark: the score a model answering at random gets
#: (1 / number of choices; item-weighted over sub-tasks for BBH and MUSR;
#: TruthfulQA's is the 1st percentile of leaderboard scores, as in the Sloth
#: paper). Free-form benchmarks (GSM8K, MATH, IFEval, HumanEval) have floor 0.
CHANCE_FLOOR: dict[str, float] = {
    "MMLU": 0.25,
    "ARC": 0.25,
    "HellaSwag": 0.25,
    "Winogrande": 0.5,
    "TruthfulQA": 0.31,
    "GSM8K": 0.0,
    "IFEval": 0.0,
    "BBH": 0.288504,
    "MATH Lvl 5": 0.0,
    "GPQA": 0.25,
    "MUSR": 0.343298,
    "MMLU-PRO": 0.1,
    "HumanEval": 0.0,
}

#: The benchmark sets of the Sloth paper's leave-family-out evaluation.
BENCHMARK_SETS: dict[str, list[str]] = {
    "leaderboard_v1": ["MMLU", "ARC", "HellaSwag", "Winogrande", "TruthfulQA", "GSM8K"],
    "leaderboard_v2": ["IFEval", "BBH", "MATH Lvl 5", "GPQA", "MUSR", "MMLU-PRO"],
}
BENCHMARK_SETS["leaderboard_v1+v2"] = BENCHMARK_SETS["leaderboard_v1"] + BENCHMARK_SETS["leaderboard_v2"]

#: Default benchmarks of a fit on the Sloth table: all twelve of Leaderboard v1 and v2.
DEFAULT_BENCHMARKS: list[str] = list(BENCHMARK_SETS["leaderboard_v1+v2"])

#: Column names of the Sloth table (``data_v2.csv``) for each canonical field.
SLOTH_COLUMNS: dict[str, str] = {
    "model": "Model",
    "family": "Family2",
    "params": "#Params (B)",
    "tokens": "Pretraining Data Size (T)",
    "instruct": "Instruct",
}

#: Column of the Sloth table with training compute, in units of 1e21 FLOPs (6 N T there, exactly).
SLOTH_FLOPS_COLUMN = "FLOPs (1E21)"

#: Columns of leaderboard exports that summarise the other scores rather than measure a benchmark (the Open LLM
#: Leaderboard's "Average ⬆️", "Average", "avg", ...), by their name in lower case with everything but letters and
#: digits removed. Fitted as a benchmark, such a column counts every score a second time; it is refused unless named
#: in ``benchmarks=`` (``--benchmarks``) on purpose.
AGGREGATE_COLUMNS = frozenset({"average", "avg", "mean", "overall", "total", "aggregate", "averagescore", "avgscore",
                               "meanscore", "overallscore", "totalscore", "aggregatescore", "averageaccuracy",
                               "meanaccuracy", "avgacc", "averageacc", "meanacc", "sum"})

#: Pinned copy of the Sloth table (github.com/felipemaiapolo/sloth, MIT license).
#: The same bytes ship in ``bayes_sloth/datasets/sloth/`` (``packaged``, relative
#: to the package); the URL is only used to refresh it.
SLOTH_DATA = {
    "packaged": "datasets/sloth/data_v2.csv",
    "filename": "data_v2.csv",
    "subdir": "sloth",
    "url": (
        "https://raw.githubusercontent.com/felipemaiapolo/sloth/"
        "6dc6bb3efeefc7c1db01d60cba1f4b73e5d260d1/data/data_v2.csv"
    ),
    "sha256": "528d08d7bc04dc71a73d42ea0a1041396616505b53a140052828104afe0c6f39",
}

#: The paper's leave-family-out protocol and its published errors, shipped in
#: ``bayes_sloth/datasets/reference/`` and checked against these sha256.
SLOTH_REFERENCE = {
    "protocol": {
        "packaged": "datasets/reference/sloth_protocol.json",
        "sha256": "0371bb77932910ee4d23bb63fe01cdea24833488bbeb915c28352e1c9686c10e",
    },
    "mae_summary": {
        "packaged": "datasets/reference/sloth_lofo_mae_summary.csv",
        "sha256": "eb3941783c158067ed279c244a6c933d4e1e562d7d799b1523e4490af3417089",
    },
}

#: Parameters of the largest public models, in billions: about 2e3 for
#: mixture-of-experts totals (Switch-C 1.6e3, Kimi K2 1e3); dense models stop
#: near 5e2 (PaLM 540, Llama 3.1 405).
LARGEST_PARAMS_BILLIONS = 2e3

#: Tokens of the largest reported pretraining sets, in trillions: about 40
#: (Qwen3 36; Llama 4 "more than 30").
LARGEST_TOKENS_TRILLIONS = 40.0

#: Headroom above the largest public values before a covariate is called a
#: unit slip: generous, so the check outlives a few years of growth and never
#: refuses a real model, yet far below the slips it is for. A raw count is
#: 1e9 times too large for parameters (7e9 for a 7B model; even toy models
#: have about 1e6) and 1e12 times for tokens (15e12 for 15T; even tiny runs see
#: about 1e9); one unit too small (millions of parameters, billions of tokens)
#: is 1e3 times too large and is caught from 20B parameters or 0.4T tokens up.
UNIT_HEADROOM = 10.0

#: Values above these are refused by :func:`bayes_sloth.load_leaderboard`.
MAX_PARAMS_BILLIONS = UNIT_HEADROOM * LARGEST_PARAMS_BILLIONS
MAX_TOKENS_TRILLIONS = UNIT_HEADROOM * LARGEST_TOKENS_TRILLIONS
