"""What the benchmark scripts share: their arguments, the real table, a fit's numbers, tables and result files.

The scripts in this folder run as ``python benchmarks/<script>.py``, so this
folder is on ``sys.path`` and they import this module as
``from harness import ...``. From ``bayes_sloth`` they import public names only.

- **Arguments.** :class:`BenchmarkParser` is an ``argparse`` parser with the flags the
  scripts share: ``--data-dir``, ``--seed`` or ``--seeds``, ``--chains``, ``--warmup`` and
  ``--draws``, ``--out``, and ``--quick``. ``--quick`` sets the smallest settings that still
  run the script's whole path, to check that it works, not to measure. An explicit flag
  wins over ``--quick``. :meth:`BenchmarkParser.parse` also records the command line.
- **The real table.** :func:`load_table`.
- **A fit.** :func:`run_fit` fits a :class:`bayes_sloth.SkillsLaw` and returns it with
  :class:`FitNumbers`: wall and sampling seconds, gradient evaluations (leapfrog steps, one
  gradient each, warm-up included, summed over chains), min bulk and tail ESS, max R-hat,
  divergences, and gradient evaluations per effective sample.
- **Tables.** :func:`markdown_table` (a DataFrame), :func:`markdown_header` and
  :func:`markdown_row` (rows printed as they finish).
- **Result files.** :func:`write_result` writes atomically (``bayes_sloth.core.io.write_text``,
  so a killed run never leaves half a file) and adds the command that produced the result.
  :class:`Transcript` prints lines as they come and writes them all to ``--out`` at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

import bayes_sloth as bs
from bayes_sloth.core.io import write_text

#: The repository's root (the folder above this one).
REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ arguments
def int_list(text: str) -> list[int]:
    """``"1,2,4"`` or ``"0-4"`` (or a mix, ``"0-2,7"``) as a list of integers, for ``--skills`` and ``--seeds``."""
    out: list[int] = []
    try:
        for part in str(text).split(","):
            lo, dash, hi = part.strip().partition("-")
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,4 or 0-4, got {text!r}") from None
    return out


def quick_path(name: str) -> str:
    """A path in the temporary folder for what a ``--quick`` run writes (never ``benchmarks/results``)."""
    return os.path.join(tempfile.gettempdir(), f"bayes_sloth_quick_{name}")


def command_line(script: str | os.PathLike, argv: Sequence[str]) -> str:
    """The command that reruns a script with these arguments, from the repository's root."""
    return "python " + shlex.join([f"benchmarks/{Path(script).name}", *map(str, argv)])


class BenchmarkParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the benchmark scripts' common flags.

    ``BenchmarkParser(__doc__, __file__)`` takes its description from the first line of the
    script's docstring. Add the common flags with the ``add_*`` methods and the script's own
    with ``add_argument``, then call :meth:`parse`.
    """

    def __init__(self, doc: str | None, script: str | os.PathLike, **kwargs):
        super().__init__(description=(doc or "").strip().splitlines()[0] if doc else None, **kwargs)
        self.script = Path(script).name
        self._quick: dict | None = None

    def add_data_dir(self) -> None:
        self.add_argument("--data-dir", default=None,
                          help="folder holding sloth/data_v2.csv (default: $BAYES_SLOTH_DATA_DIR, else the table "
                               "shipped with the package)")

    def add_seed(self, default: int = 0, help: str = "seed of the fits") -> None:
        self.add_argument("--seed", type=int, default=default, help=help)

    def add_seeds(self, default: str = "0", help: str = "seeds, like 0,1,2 or 0-4") -> None:
        self.add_argument("--seeds", type=int_list, default=int_list(default), help=help)

    def add_sampler(self, chains: int = 4, warmup: int = 1000, draws: int | str = 1000, auto: bool = False) -> None:
        """``--chains``, ``--warmup``, ``--draws`` (with ``auto``, ``--draws`` also takes 'auto' and stays a string)."""
        self.add_argument("--chains", type=int, default=chains, help=f"NUTS chains (default {chains})")
        self.add_argument("--warmup", type=int, default=warmup, help=f"warm-up iterations per chain (default {warmup})")
        if auto:
            self.add_argument("--draws", default=str(draws),
                              help=f"draws per chain, or 'auto' (until R-hat <= 1.01, bulk and tail ESS >= the "
                                   f"target, no divergence; default {draws})")
        else:
            self.add_argument("--draws", type=int, default=draws, help=f"draws per chain (default {draws})")

    def add_out(self, default: str | None = None, help: str | None = None) -> None:
        self.add_argument("--out", default=default,
                          help=help or "also write the result here (markdown, atomically, with the command line)")

    def add_quick(self, **settings) -> None:
        """``--quick``: these settings (argument names as keys, values already typed) replace the defaults."""
        self._quick = settings
        shown = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in settings.items())
        self.add_argument("--quick", action="store_true",
                          help=f"the smallest run of the whole path, to check the script works, not to measure "
                               f"({shown}; an explicit flag wins)")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv`` (default: the command line), apply ``--quick``, and record the command in ``.command``."""
        argv = list(sys.argv[1:] if argv is None else argv)
        args = self.parse_args(argv)
        if self._quick and getattr(args, "quick", False):
            self.set_defaults(**self._quick)
            args = self.parse_args(argv)
        args.command = command_line(self.script, argv)
        args.argv = argv
        return args


# ------------------------------------------------------------------ the real table
def load_table(data_dir: str | os.PathLike | None = None, complete_covariates: bool = False) -> bs.Leaderboard:
    """The Sloth leaderboard (``bayes_sloth.load_sloth``) from ``data_dir``, else ``$BAYES_SLOTH_DATA_DIR``,
    else the copy shipped with the package. With ``complete_covariates``, only the models with both a
    parameter and a token count (no latent tokens), without the warning that names the others."""
    lb = bs.load_sloth(data_dir=data_dir or None)
    return lb.complete_covariates(warn=False) if complete_covariates else lb


# ------------------------------------------------------------------ a fit
@dataclass(frozen=True)
class FitNumbers:
    """What a benchmark reads off one fit.

    ``gradient_evaluations`` counts leapfrog steps, one gradient of the potential each: the sum of
    ``sample_stats.n_steps`` over every draw of every chain plus ``sample_stats.warmup_n_steps``
    (every warm-up iteration) of every chain. It is the sampler's cost whatever the machine.
    ``warmup_gradient_evaluations`` is the warm-up's part. A fit without them (``method="svi"``)
    has NaN.
    """

    wall_s: float  # the whole fit call: tracing or loading programs, the starts, sampling, diagnostics
    sampling_s: float  # the sampler's own seconds (SkillsLaw.fit_seconds_)
    gradient_evaluations: float
    warmup_gradient_evaluations: float
    min_ess_bulk: float
    min_ess_tail: float
    max_rhat: float
    divergences: int
    chains: int
    draws_per_chain: int

    @property
    def draw_gradient_evaluations(self) -> float:
        return self.gradient_evaluations - self.warmup_gradient_evaluations

    @property
    def min_ess(self) -> float:
        """The smaller of min bulk and min tail ESS (both must reach the target)."""
        return min(self.min_ess_bulk, self.min_ess_tail)

    @property
    def gradients_per_ess(self) -> float:
        """Gradient evaluations (warm-up included) per effective sample of the slowest scalar (:attr:`min_ess`)."""
        return self.gradient_evaluations / self.min_ess if self.min_ess > 0 else math.inf

    def passes(self, target_ess: int = 400, max_rhat: float = 1.01) -> bool:
        """The package's bars: R-hat <= 1.01, bulk and tail ESS >= ``target_ess``, no divergence."""
        return bool(self.max_rhat <= max_rhat and self.min_ess_bulk >= target_ess
                    and self.min_ess_tail >= target_ess and self.divergences == 0)

    def as_dict(self) -> dict:
        return {**self.__dict__, "min_ess": self.min_ess, "gradients_per_ess": self.gradients_per_ess}


def fit_numbers(law: bs.SkillsLaw, wall_s: float = math.nan) -> FitNumbers:
    """:class:`FitNumbers` of a fitted law (``wall_s``: the fit call's seconds, measured by the caller)."""
    stats = law.idata_.sample_stats if "sample_stats" in law.idata_.groups() else None
    if stats is not None and "n_steps" in stats and "warmup_n_steps" in stats:
        warm = float(stats["warmup_n_steps"].sum())
        grads = warm + float(stats["n_steps"].sum())
    else:
        warm = grads = math.nan
    d = law.diagnostics_
    post = law.idata_.posterior
    return FitNumbers(wall_s=float(wall_s), sampling_s=float(law.fit_seconds_), gradient_evaluations=grads,
                      warmup_gradient_evaluations=warm, min_ess_bulk=float(d.min_ess_bulk),
                      min_ess_tail=float(d.min_ess_tail), max_rhat=float(d.max_rhat), divergences=int(d.divergences),
                      chains=int(post.sizes["chain"]), draws_per_chain=int(post.sizes["draw"]))


def run_fit(data, **options) -> tuple[bs.SkillsLaw, FitNumbers]:
    """Fit ``SkillsLaw(**options)`` to ``data`` (a Leaderboard, a DataFrame or a CSV path); the fitted law and
    its :class:`FitNumbers`, with ``wall_s`` the whole ``fit`` call. ``obs_weight`` goes to ``fit``."""
    fit_kwargs = {k: options.pop(k) for k in ("obs_weight",) if k in options}
    t0 = time.perf_counter()
    law = bs.SkillsLaw(**options).fit(data, **fit_kwargs)
    return law, fit_numbers(law, time.perf_counter() - t0)


# ------------------------------------------------------------------ tables
def markdown_header(columns: Iterable) -> str:
    """A Markdown table's header and rule."""
    columns = [str(c) for c in columns]
    return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)


def markdown_row(cells: Iterable) -> str:
    """One Markdown table row of cells already formatted (anything else through ``str``)."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_cell(value, floatfmt: str = "{:.4g}", missing: str = "") -> str:
    """A float through ``floatfmt`` (``missing`` when not finite), anything else through ``str``."""
    if isinstance(value, (float, np.floating)):
        return floatfmt.format(value) if np.isfinite(value) else missing
    return str(value)


def markdown_table(frame: pd.DataFrame, floatfmt: str = "{:.4g}", index: bool = False, missing: str = "") -> str:
    """A DataFrame as a Markdown table (with ``index``, the index first), without the optional ``tabulate``.
    Floats go through ``floatfmt`` (``missing`` when NaN or infinite); integers and text as they are."""
    df = frame.reset_index() if index else frame
    body = [markdown_row(format_cell(v, floatfmt, missing) for v in row) for row in df.itertuples(index=False)]
    return "\n".join([markdown_header(df.columns)] + body)


# ------------------------------------------------------------------ result files
def with_command(text: str, command: str | None) -> str:
    """``text`` with a last line ``Command: `...``` (unless it already names that command)."""
    if not command or f"`{command}`" in text:
        return text
    return text + ("" if text.endswith("\n") else "\n") + f"\nCommand: `{command}`\n"


def write_result(text: str, path: str | os.PathLike, command: str | None = None) -> Path:
    """Write a result file atomically (its folder made if need be), with the command that produced it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text(with_command(text, command), path)


class Transcript:
    """Lines printed as they come (tables row by row) and, with ``out``, written to that file at the end.

    ``with Transcript(args.out, args.command) as t: t.print(...)``: the file is written (atomically, with the
    command) when the block ends without an error, so a failed run leaves the previous file as it was.
    """

    def __init__(self, out: str | os.PathLike | None = None, command: str | None = None):
        self.out, self.command, self.lines = out, command, []

    def print(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None and self.out:
            write_result("\n".join(self.lines) + "\n", self.out, self.command)
