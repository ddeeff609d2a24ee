"""Leaderboard data, in one place to import it from: the table, its readers and the data that ships.

- :mod:`bayes_sloth.core.leaderboard`: :class:`Leaderboard`, :func:`split_family`, the rules of labels;
- :mod:`bayes_sloth.core.readers`: :func:`load_leaderboard` (a CSV file or a DataFrame, every value checked),
  :func:`read_new_models` (rows to forecast);
- :mod:`bayes_sloth.core.datasets`: the Sloth table, the paper's protocol and errors (:func:`load_sloth`,
  :func:`load_protocol`, :func:`paper_errors`, :func:`sloth_data_path`).
"""

from __future__ import annotations

from .datasets import DATA_DIR_ENV, load_protocol, load_sloth, paper_errors, protocol_path, sloth_data_path  # noqa: F401
from .leaderboard import (  # noqa: F401
    Leaderboard,
    did_you_mean,
    is_aggregate_column,
    label_key,
    nfc,
    same_but_spelling,
    spelling_clashes,
    split_family,
)
from .readers import FLOPS_TOKENS_FACTOR, _as_leaderboard, load_leaderboard, read_new_models  # noqa: F401
