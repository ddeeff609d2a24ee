"""A validated leaderboard of LLMs, and the rules its labels follow.

A :class:`Leaderboard` is one table: for each model its family, parameters
(billions), training tokens (trillions), instruct flag, and its scores on a
set of benchmarks in [0, 1], missing scores kept as ``NaN``. Labels are read in
Unicode NFC; two names that differ only in case or spacing are never taken
for one another (:func:`same_but_spelling`).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .metadata import AGGREGATE_COLUMNS


def fmt_rows(labels: Iterable, limit: int = 5) -> str:
    labels = [str(x) for x in labels]
    more = f" (and {len(labels) - limit} more)" if len(labels) > limit else ""
    return ", ".join(repr(x) for x in labels[:limit]) + more


def nfc(label):
    """A text label in Unicode normal form C (the form keyboards and most files use): the same name typed in
    another normal form (a composed or a decomposed accent) is the same name. Anything else is returned as is."""
    return unicodedata.normalize("NFC", label) if isinstance(label, str) else label


def label_key(label) -> str:
    """What two spellings of one name share: NFC, case folded, without whitespace ("MMLU-Pro", "mmlu-pro ",
    "MMLU- Pro"). Names with one key and different spellings are refused or matched with a "did you mean",
    never silently taken for two names."""
    return unicodedata.normalize("NFC", "".join(nfc(str(label)).casefold().split()))


def same_but_spelling(name, candidates) -> list:
    """The candidates that differ from ``name`` only in case, whitespace or Unicode normal form."""
    key = label_key(name)
    return [c for c in candidates if c != name and label_key(c) == key]


def spelling_clashes(labels) -> list[tuple]:
    """Groups of distinct labels (in order of first appearance) that differ only in case, whitespace or normal
    form."""
    groups: dict[str, list] = {}
    for lab in labels:
        members = groups.setdefault(label_key(lab), [])
        if lab not in members:
            members.append(lab)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def did_you_mean(name, candidates, cutoff: float = 0.6) -> str:
    """" (did you mean 'X'?)" for the closest candidate (case-insensitively), or ""."""
    cands = [str(c) for c in candidates]
    folded = {c.casefold(): c for c in cands}
    close = difflib.get_close_matches(str(name).casefold(), list(folded), n=1, cutoff=cutoff)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def is_aggregate_column(name) -> bool:
    """A column that summarises the other scores (:data:`bayes_sloth.core.metadata.AGGREGATE_COLUMNS`)."""
    return re.sub(r"[^0-9a-z]", "", label_key(name)) in AGGREGATE_COLUMNS


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """A validated leaderboard.

    Attributes
    ----------
    covariates : DataFrame
        Index ``model`` (unique names); columns ``family`` (str), ``params``
        (billions, > 0 or NaN), ``tokens`` (trillions, > 0 or NaN),
        ``instruct`` (bool).
    scores : DataFrame
        Index ``model`` (same order), one float column per benchmark, values in
        [0, 1] or NaN for a missing score.
    floors : Series
        Chance floor of each benchmark, in [0, 1).
    """

    covariates: pd.DataFrame
    scores: pd.DataFrame
    floors: pd.Series

    # ------------------------------------------------------------------ views
    @property
    def models(self) -> list[str]:
        return list(self.covariates.index)

    @property
    def benchmarks(self) -> list[str]:
        return list(self.scores.columns)

    @property
    def families(self) -> list[str]:
        """Families in order of first appearance."""
        return list(pd.unique(self.covariates["family"]))

    @property
    def n_observed(self) -> int:
        return int(self.scores.notna().to_numpy().sum())

    def __len__(self) -> int:
        return len(self.covariates)

    def __repr__(self) -> str:
        return (
            f"Leaderboard({len(self)} models, {len(self.families)} families, "
            f"{len(self.benchmarks)} benchmarks, {self.n_observed} observed scores)"
        )

    def to_frame(self) -> pd.DataFrame:
        """One flat table: covariates then scores, index ``model``."""
        return pd.concat([self.covariates, self.scores], axis=1)

    def sha256(self) -> str:
        """Hash of the table's content (covariates, scores, floors).

        Computed on one canonical layout (family as text, params and tokens as
        floats, the instruct flag as a bool, scores and floors as floats, in
        this order), so a table rebuilt from a fit file hashes as the table
        that was fitted, whatever types the fitted one was built with.
        """
        cov = self.covariates
        frame = pd.concat([pd.DataFrame({"family": cov["family"].astype(str).to_numpy(),
                                         "params": cov["params"].to_numpy(dtype=float),
                                         "tokens": cov["tokens"].to_numpy(dtype=float),
                                         "instruct": cov["instruct"].to_numpy(dtype=bool)},
                                        index=pd.Index(cov.index.astype(str), name="model")),
                           pd.DataFrame(self.scores.to_numpy(dtype=float), index=pd.Index(cov.index.astype(str),
                                        name="model"), columns=[str(b) for b in self.scores.columns])], axis=1)
        floors = pd.Series(self.floors.to_numpy(dtype=float), name="floor",
                           index=pd.Index([str(b) for b in self.floors.index], name="benchmark"))
        h = hashlib.sha256()
        h.update(frame.to_csv(float_format="%.17g").encode())
        h.update(floors.to_csv(float_format="%.17g").encode())
        return h.hexdigest()

    # ------------------------------------------------------------ selection
    def select(
        self,
        benchmarks: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        families: Sequence[str] | None = None,
    ) -> "Leaderboard":
        """A new leaderboard restricted to some benchmarks, models or families.

        Unknown names raise :class:`InputError`; order follows the arguments
        for benchmarks and the table for models.
        """
        cov, sc = self.covariates, self.scores
        if benchmarks is not None:
            benchmarks = list(benchmarks)
            unknown = [b for b in benchmarks if b not in sc.columns]
            if unknown:
                raise InputError(
                    f"benchmark {fmt_rows(unknown)} is not in the table; "
                    f"available: {fmt_rows(sc.columns, 20)}"
                )
            sc = sc[benchmarks]
        keep = pd.Series(True, index=cov.index)
        if models is not None:
            models = list(models)
            unknown = [m for m in models if m not in cov.index]
            if unknown:
                raise InputError(f"model {fmt_rows(unknown)} is not in the table")
            keep &= cov.index.isin(models)
        if families is not None:
            families = list(families)
            unknown = [f for f in families if f not in set(cov["family"])]
            if unknown:
                raise InputError(f"family {fmt_rows(unknown)} is not in the table")
            keep &= cov["family"].isin(families)
        return Leaderboard(cov[keep.to_numpy()], sc[keep.to_numpy()], self.floors[sc.columns])

    def complete_covariates(self, warn: bool = True, columns: Sequence[str] = ("params", "tokens")) -> "Leaderboard":
        """Drop models with a missing value in ``columns`` (default parameters or tokens), with a warning.

        :meth:`SkillsLaw.fit` needs only the parameters (``columns=("params",)``):
        a model without a token count gets latent tokens. The warning counts
        and names the dropped models, so nothing goes silently.
        """
        columns = list(columns)
        missing = self.covariates[columns].isna().any(axis=1)
        if not missing.any():
            return self
        if warn:
            names = list(self.covariates.index[missing])
            what = " or ".join("parameters" if c == "params" else c for c in columns)
            warnings.warn(
                f"dropped {len(names)} of {len(self)} models with missing {what}: {fmt_rows(names, 8)}",
                UserWarning,
                stacklevel=2,
            )
        return self.select(models=list(self.covariates.index[~missing]))

    def long(self) -> pd.DataFrame:
        """Observed scores as a long table (model, benchmark, score), table order."""
        sc = self.scores
        rows, cols = np.nonzero(sc.notna().to_numpy())
        return pd.DataFrame(
            {
                "model": sc.index.to_numpy()[rows],
                "benchmark": sc.columns.to_numpy()[cols],
                "score": sc.to_numpy()[rows, cols],
            }
        )


# ------------------------------------------------------------ families
def split_family(lb: Leaderboard, family: str, n_train: int, among: Sequence[str] | None = None) -> tuple[list, list]:
    """The one rule for "a family seen through its n smallest models" (the report and the evaluation use it).

    The family's models with parameters and tokens (only those in ``among``,
    when given: the evaluation passes the protocol's complete rows) are
    ordered by parameters, ties kept in table order; the first ``n_train``
    are the training models, the rest are held out. Returns
    ``(train_models, held_out_models)``; an unknown family (with a "did you
    mean"), a bad ``n_train``, or too few models is an :class:`InputError`.
    """
    cov = lb.covariates
    fams = set(cov["family"])
    if family not in fams:
        close = same_but_spelling(family, sorted(fams)) or [
            {f.casefold(): f for f in fams}[c] for c in difflib.get_close_matches(
                str(family).casefold(), sorted(f.casefold() for f in fams), n=3)]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(f"family {family!r} is not in the leaderboard{hint}")
    if not isinstance(n_train, (int, np.integer)) or isinstance(n_train, bool) or n_train < 0:
        raise InputError(f"n_train must be a non-negative integer, got {n_train!r}")
    members = cov[(cov["family"] == family).to_numpy() & cov[["params", "tokens"]].notna().all(axis=1).to_numpy()]
    if among is not None:
        members = members[members.index.isin(list(among))]
    order = list(members.sort_values("params", kind="mergesort").index)
    if len(order) < n_train + 1:
        raise InputError(
            f"family {family!r} has {len(order)} usable model(s) (parameters and tokens"
            f"{', complete scores' if among is not None else ''}); forecasting it from its {n_train} smallest "
            f"needs at least {n_train + 1}"
        )
    return order[:n_train], order[n_train:]
