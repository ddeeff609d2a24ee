"""Catalogue of bad inputs: each gets one clear line, through the API and the CLI.

Every case builds one bad input and is run twice:

- through the Python API: the expected exception type, and a message that
  names the column, row or value at fault (the ``expect`` substrings) and says
  what to do;
- through the command line (``bayes_sloth.cli.main``): exit code 2, exactly
  one line on stderr starting with ``error:``, no traceback, and no output file
  when ``--out`` was given.

Every case fails before any sampling (the CLI asks for a 1-chain, 5-draw fit
anyway, so a case that slipped through validation would fail fast on the
"nothing written" check instead of hanging).

Values the package handles rather than refuses (missing parameters or
tokens, missing scores) are tested at the end: documented behaviour, and a
warning that counts whatever is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth import cli
from bayes_sloth.core.data import DATA_DIR_ENV

from .conftest import TINY_BENCHMARKS, make_tiny_frame

FAST = ["--chains", "1", "--warmup", "5", "--draws", "5", "--seed", "0"]


class Ctx:
    """What a case needs to build its input: a temp folder, a good table, a fit file."""

    def __init__(self, tmp_path: Path, fit_path: Path, monkeypatch):
        self.tmp = tmp_path
        self.fit_path = fit_path
        self.monkeypatch = monkeypatch
        self.out_nc = tmp_path / "out" / "fit.nc"
        self.out_csv = tmp_path / "out" / "pred.csv"

    def frame(self) -> pd.DataFrame:
        return make_tiny_frame()

    def csv(self, df: pd.DataFrame, name: str = "bad.csv") -> Path:
        path = self.tmp / name
        df.to_csv(path, index=False)
        return path

    def raw(self, content: bytes | str, name: str) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    # the two ways in
    def fit_api(self, path, **kw):
        return lambda: bs.SkillsLaw(**{"n_skills": 1, "chains": 1, "warmup": 5, "draws": 5, **kw}).fit(path)

    def fit_argv(self, path, *extra):
        return ["fit", "--data", str(path), "--skills", "1", *FAST, "--out", str(self.out_nc), *extra]

    def predict_api(self, data, fit=None):
        return lambda: bs.SkillsLaw.load(fit or self.fit_path).predict(data)

    def predict_argv(self, data, fit=None):
        return ["predict", str(fit or self.fit_path), "--data", str(data), "--out", str(self.out_csv)]

    def new_models(self) -> pd.DataFrame:
        """Rows to forecast: one of a seen family, one of a new family."""
        return pd.DataFrame({"model": ["new-a", "new-b"], "family": ["family_00", "brand-new"],
                             "params": [7.0, 3.0], "tokens": [2.0, 1.0]})


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], tuple]  # -> (api callable, argv)
    exc: type
    expect: tuple[str, ...]  # substrings of the message (case-sensitive)


def _set(df, row, col, value):
    df = df.copy()
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    return df


def _scores_percent(c):
    df = c.frame()
    df["ARC"] = df["ARC"] * 100
    p = c.csv(df)
    return c.fit_api(p), c.fit_argv(p)


def _score_value(value, row=3, col="GSM8K"):
    def build(c):
        p = c.csv(_set(c.frame(), row, col, value))
        return c.fit_api(p), c.fit_argv(p)
    return build


def _cov_value(col, value, row=2):
    def build(c):
        p = c.csv(_set(c.frame(), row, col, value))
        return c.fit_api(p), c.fit_argv(p)
    return build


def _drop_col(col):
    def build(c):
        p = c.csv(c.frame().drop(columns=[col]))
        return c.fit_api(p), c.fit_argv(p)
    return build


def _scores_all(col, values):
    """Every observed score of ``col`` replaced (missing ones stay missing)."""
    def build(c):
        df = c.frame()
        obs = df[col].notna().to_numpy()
        vals = np.resize(np.asarray(values, dtype=float), len(df))
        df[col] = np.where(obs, vals, np.nan)
        p = c.csv(df)
        return c.fit_api(p), c.fit_argv(p)
    return build


def _duplicate_header(c):
    df = c.frame()
    df = pd.concat([df, df[["MMLU"]] * 0.9], axis=1)  # a second 'MMLU' column: pandas would read it as 'MMLU.1'
    p = c.csv(df)
    return c.fit_api(p), c.fit_argv(p)


def _predict_cov(col, value):
    def build(c):
        df = c.new_models()
        df.loc[1, col] = value
        p = c.csv(df, "new.csv")
        return c.predict_api(p), c.predict_argv(p)
    return build


def _duplicate_model(c):
    df = c.frame()
    df.loc[4, "model"] = df.loc[1, "model"]
    p = c.csv(df)
    return c.fit_api(p), c.fit_argv(p)


def _empty_benchmark(c):
    df = c.frame()
    df["GSM8K"] = np.nan
    p = c.csv(df)
    return c.fit_api(p), c.fit_argv(p)


def _unknown_benchmark(c):
    p = c.csv(c.frame())
    return (lambda: bs.SkillsLaw(n_skills=1).fit(p, benchmarks=["MMLU", "HumanEvil"]),
            c.fit_argv(p, "--benchmarks", "MMLU,HumanEvil"))


def _n_skills(k):
    def build(c):
        p = c.csv(c.frame())
        return c.fit_api(p, n_skills=k), c.fit_argv(p)[:-len(FAST) - 2 - 2] + ["--skills", str(k), *FAST, "--out", str(c.out_nc)]
    return build


def _too_few_models(c):
    df = c.frame().iloc[:4]
    p = c.csv(df)
    return c.fit_api(p), c.fit_argv(p)


def _bad_sampler(name, flag, value):
    def build(c):
        p = c.csv(c.frame())
        argv = ["fit", "--data", str(p), "--skills", "1", *FAST, flag, str(value), "--out", str(c.out_nc)]
        return c.fit_api(p, **{name: value}), argv
    return build


def _predict_missing(col):
    def build(c):
        df = c.new_models()
        df.loc[1, col] = np.nan
        p = c.csv(df, "new.csv")
        return c.predict_api(p), c.predict_argv(p)
    return build


def _predict_no_family_col(c):
    p = c.csv(c.new_models().drop(columns=["family"]), "new.csv")
    return c.predict_api(p), c.predict_argv(p)


def _predict_bad_level(c):
    p = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(c.fit_path).forecast(p, level=1.5),
            c.predict_argv(p) + ["--interval", "1.5"])


def _file(content, name):
    def build(c):
        p = c.raw(content, name)
        return c.fit_api(p), c.fit_argv(p)
    return build


def _missing_file(c):
    p = c.tmp / "nowhere.csv"
    return c.fit_api(p), c.fit_argv(p)


# -------- fit files
def _edit_fit(c, edit) -> Path:
    import shutil

    import h5py

    bad = c.tmp / "edited.nc"
    shutil.copy(c.fit_path, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    return bad


def _fit_other_version(c):
    def edit(f):
        meta = json.loads(f["posterior"].attrs["bayes_sloth"])
        meta["fit_format"] = "99.0"
        meta["versions"]["bayes_sloth"] = "99.1.0"
        f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
    bad = _edit_fit(c, edit)
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _fit_no_meta(c):
    def edit(f):
        del f["posterior"].attrs["bayes_sloth"]
    bad = _edit_fit(c, edit)
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _fit_missing_group(c):
    def edit(f):
        del f["constant_data"]
    bad = _edit_fit(c, edit)
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _fit_truncated(c):
    data = Path(c.fit_path).read_bytes()
    bad = c.raw(data[: len(data) // 2], "truncated.nc")
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _fit_is_csv(c):
    bad = c.csv(c.frame(), "not_a_fit.nc")
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _fit_missing(c):
    bad = c.tmp / "gone.nc"
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


def _edit_meta(edit, drop_checksums=False):
    """A fit file whose bayes_sloth metadata is edited; ``drop_checksums``: as an earlier version (format 2.0)
    wrote it, without the per-array checksums, so that only the checks that need none can catch the edit."""
    def build(c):
        def change(f):
            meta = json.loads(f["posterior"].attrs["bayes_sloth"])
            edit(meta)
            if drop_checksums:
                meta.pop("checksums", None)
                meta["fit_format"] = "2.0"
            f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
        bad = _edit_fit(c, change)
        new = c.csv(c.new_models(), "new.csv")
        return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)
    return build


def _edit_array(group, name, change, drop_checksums=False):
    """A fit file with one stored array changed in place (``change(values) -> values``)."""
    def build(c):
        def edit(f):
            ds = f[group][name]
            ds[...] = change(ds[...])
            if drop_checksums:
                meta = json.loads(f["posterior"].attrs["bayes_sloth"])
                meta.pop("checksums", None)
                meta["fit_format"] = "2.0"
                f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
        bad = _edit_fit(c, edit)
        new = c.csv(c.new_models(), "new.csv")
        return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)
    return build


def _first_nan(v):
    v = v.copy()
    v.flat[0] = np.nan
    return v


def _params_of_first_model_times_1000(v):
    v = v.copy()
    v[0] = v[0] * 1000
    return v


def _shift_mean(meta):
    meta["standardizer"]["mean"][0] += 0.11


def _two_skills(meta):
    meta["spec"]["n_skills"] = 2
    meta["spec"]["anchors"] = [meta["spec"]["anchors"][0], (meta["spec"]["anchors"][0] + 1) % 4]


def _fit_corrupt_root_attribute(c):
    """A root attribute h5netcdf reads while opening, with a value it cannot take (its open fails half-way)."""
    import h5py

    def edit(f):
        values = np.empty(1, dtype=object)
        values[0] = np.arange(3.0)
        f.attrs.create("_nc3_strict", data=values, dtype=h5py.vlen_dtype(np.dtype("float64")))
    bad = _edit_fit(c, edit)
    new = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(bad)), c.predict_argv(new, bad)


# -------- output paths that do not name a file
def _out_device(c):
    p = c.csv(c.frame())
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = os.devnull
    return (lambda: bs.SkillsLaw.load(c.fit_path).save(os.devnull)), argv


def _out_trailing_separator(c):
    p = c.csv(c.frame())
    folder = str(c.tmp / "fits") + os.sep  # does not exist: Path() would drop the separator and write a file 'fits'
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = folder
    return (lambda: bs.SkillsLaw.load(c.fit_path).save(folder)), argv


def _predict_out_trailing_separator(c):
    new = c.csv(c.new_models(), "new.csv")
    folder = str(c.tmp / "tables") + os.sep
    from bayes_sloth.workflows.export import write_forecasts

    return (lambda: write_forecasts(bs.SkillsLaw.load(c.fit_path).forecast(new), folder, format="csv"),
            ["predict", str(c.fit_path), "--data", str(new), "--out", folder])


def _out_symlink_loop(c):
    p = c.csv(c.frame())
    loop = c.tmp / "loop.nc"
    os.symlink(loop, loop)
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = str(loop)
    return (lambda: bs.SkillsLaw.load(c.fit_path).save(loop)), argv


# -------- a full disk while writing: the file system refuses the bytes (RLIMIT_FSIZE: EFBIG, as ENOSPC would)
def _full_disk(c, limit: int = 64):
    """Writes through atomic_path fail as on a full disk: the process may not write past ``limit`` bytes while
    the temporary file is written (Python ignores SIGXFSZ, so the write fails with an OSError)."""
    resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is POSIX")
    from bayes_sloth import io

    real = io.atomic_path

    @contextlib.contextmanager
    def full(path, what="file"):
        with real(path, what) as tmp:
            before = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
            try:
                yield tmp
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, before)

    c.monkeypatch.setattr(io, "atomic_path", full)


def _fit_out_disk_full(c):
    """``fit --out`` on a full disk: the fit itself is the session's tiny fit (no sampling here)."""
    p = c.csv(c.frame())
    fitted = bs.SkillsLaw.load(c.fit_path)

    def fake_fit(self, *args, **kwargs):
        self.__dict__.update(fitted.__dict__)
        return self

    c.monkeypatch.setattr(bs.SkillsLaw, "fit", fake_fit)
    _full_disk(c)
    return (lambda: fitted.save(c.out_nc)), c.fit_argv(p)


def _predict_out_disk_full(c):
    new = c.csv(c.new_models(), "new.csv")
    from bayes_sloth.workflows.export import write_forecasts

    _full_disk(c)
    c.out_csv.parent.mkdir(exist_ok=True)  # the CLI makes it (check_output_path); write_forecasts writes into it
    return (lambda: write_forecasts(bs.SkillsLaw.load(c.fit_path).forecast(new, new_families="allow"), c.out_csv),
            c.predict_argv(new))


def _report_out_disk_full(c):
    new = c.csv(c.new_models(), "new.csv")
    out = c.tmp / "report.html"
    from bayes_sloth.workflows.report import forecast_report

    _full_disk(c)
    law = bs.SkillsLaw.load(c.fit_path)
    board = c.csv(c.frame(), "board.csv")
    return (lambda: forecast_report(law.leaderboard_, target_models=new, law=law, out=out),
            ["report", "--fit", str(c.fit_path), "--data", str(board), "--target-models", str(new), "--out", str(out),
             "--quiet"])


# -------- names spelled another way (case, spacing, Unicode normal form)
def _predict_frame(frame_of):
    def build(c):
        p = c.csv(frame_of(c), "new.csv")
        return c.predict_api(p), c.predict_argv(p)
    return build


def _fitted_model(c):
    """A model of the tiny fit, with its family, params and tokens (a row predict recognises as fitted)."""
    row = c.frame().iloc[[1]][["model", "family", "params", "tokens"]].reset_index(drop=True)
    return row


def _fit_frame(edit):
    def build(c):
        p = c.csv(edit(c.frame()))
        return c.fit_api(p), c.fit_argv(p)
    return build


def _model_twice_in_two_cases(df):
    df = df.copy()
    df.loc[3, "model"] = df.loc[1, "model"].upper()
    return df


def _family_in_two_cases(df):
    df = df.copy()
    df.loc[df["family"] == "family_01", "family"] = ["family_01", "Family_01"] + ["family_01"] * (
        int((df["family"] == "family_01").sum()) - 2)
    return df


def _benchmark_case(c):
    p = c.csv(c.frame())
    return (lambda: bs.SkillsLaw(n_skills=1).fit(p, benchmarks=["mmlu", "ARC", "GSM8K"]),
            c.fit_argv(p, "--benchmarks", "mmlu,ARC,GSM8K"))


# -------- the real table: local folder, packaged copy
# (downloading, refresh=True, has no command-line flag: its failures are tested in test_data.py)
def _packaged_damaged(c):
    """The copy shipped in the package no longer matches its sha256 (a damaged installation)."""
    from bayes_sloth.core import datasets as bsdata
    from bayes_sloth.core.metadata import SLOTH_DATA

    bad = c.tmp / "damaged" / "data_v2.csv"
    bad.parent.mkdir()
    bad.write_bytes(bsdata._packaged(SLOTH_DATA["packaged"]).read_bytes()[:-100])
    c.monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    c.monkeypatch.setattr(bsdata, "_packaged", lambda rel: bad)
    return (lambda: bs.load_sloth()), ["fit", "--skills", "1", *FAST, "--out", str(c.out_nc)]


def _data_dir_wrong_file(c):
    folder = c.tmp / "data"
    (folder / "sloth").mkdir(parents=True)
    c.frame().to_csv(folder / "sloth" / "data_v2.csv", index=False)
    return (lambda: bs.load_sloth(data_dir=folder)), ["fit", "--data-dir", str(folder), "--skills", "1", *FAST,
                                                     "--out", str(c.out_nc)]


def _data_dir_empty(c):
    folder = c.tmp / "empty_data"
    folder.mkdir()
    return (lambda: bs.load_sloth(data_dir=folder)), ["fit", "--data-dir", str(folder), "--skills", "1", *FAST,
                                                     "--out", str(c.out_nc)]


def _hyper(name, value, flag=None):
    """A bad SkillsLaw argument: refused at fit, before any data is read or sampled. With no CLI flag of
    its own, the CLI side gives the same bad value through the one flag that reaches the same check."""
    def build(c):
        p = c.csv(c.frame())
        argv = c.fit_argv(p)
        if flag is not None:
            argv = argv + [flag, str(value)]
        return c.fit_api(p, **{name: value}), argv
    return build


def _seed_cli_only(value):
    def build(c):
        p = c.csv(c.frame())
        return c.fit_api(p, seed=value), c.fit_argv(p) + ["--seed", str(value)]
    return build


def _out_is_folder(c):
    p = c.csv(c.frame())
    folder = c.tmp / "a_folder"
    folder.mkdir()
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = str(folder)
    return (lambda: bs.SkillsLaw.load(c.fit_path).save(folder)), argv


def _out_is_the_input(c):
    """``fit --data x.csv --out x.csv`` would overwrite the input: refused before any sampling."""
    p = c.csv(c.frame(), "board.csv")
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = str(p)
    from bayes_sloth.core.io import check_output_path

    return (lambda: check_output_path(p, inputs=[p], what="fit file")), argv


def _predict_out_is_the_fit(c):
    """``predict fit.nc --data new.csv --out fit.nc`` would overwrite the fit: refused before loading it."""
    new = c.csv(c.new_models(), "new.csv")
    argv = ["predict", str(c.fit_path), "--data", str(new), "--out", str(c.fit_path)]
    from bayes_sloth.core.io import check_output_path

    return (lambda: check_output_path(c.fit_path, inputs=[c.fit_path, new], what="forecast table")), argv


def _out_folder_cannot_be_made(c):
    p = c.csv(c.frame())
    argv = c.fit_argv(p)
    argv[argv.index("--out") + 1] = "/proc/no_such_folder/fit.nc"
    return (lambda: bs.SkillsLaw.load(c.fit_path).save("/proc/no_such_folder/fit.nc")), argv


def _protocol_file(content):
    def build(c):
        path = c.tmp / "protocol.json"
        if content is not None:
            path.write_text(content)
        from bayes_sloth.workflows.evaluation import evaluate

        argv = ["evaluate", "--protocol-file", str(path), *FAST, "--skills", "1"]
        return (lambda: evaluate(protocol_file=path, n_skills=1, chains=1, warmup=5, draws=5)), argv
    return build


def _new_family_refused(c):
    p = c.csv(c.new_models(), "new.csv")
    return (lambda: bs.SkillsLaw.load(c.fit_path).forecast(p, new_families="error"),
            c.predict_argv(p) + ["--new-families", "error"])


I, F, D = bs.InputError, bs.FitFileError, bs.DataUnavailableError

CASES = [
    # --- scores
    Case("scores-percent-scale", _scores_percent, I, ("'ARC'", "percent", "--percent")),
    Case("score-below-0", _score_value(-0.2), I, ("'GSM8K'", "-0.2", "row 3", "outside [0, 1]")),
    Case("score-above-1", _score_value(1.3, col="MMLU"), I, ("'MMLU'", "1.3", "row 3", "outside [0, 1]")),
    Case("score-far-above-100", _score_value(250.0), I, ("'GSM8K'", "250", "row 3", "outside [0, 1]")),
    Case("score-non-numeric", _score_value("n/a?"), I, ("'GSM8K'", "'n/a?'", "row 3", "empty")),
    Case("score-infinite", _score_value("inf"), I, ("'GSM8K'", "inf", "row 3")),
    # --- covariates
    Case("params-zero", _cov_value("params", 0.0), I, ("'params'", "row 2", "positive")),
    Case("params-negative", _cov_value("params", -7.0), I, ("'params'", "-7", "row 2", "positive")),
    Case("params-non-numeric", _cov_value("params", "7B"), I, ("'params'", "'7B'", "row 2")),
    Case("params-infinite", _cov_value("params", "inf"), I, ("'params'", "inf", "row 2", "finite")),
    Case("tokens-zero", _cov_value("tokens", 0.0), I, ("'tokens'", "row 2", "positive")),
    Case("tokens-negative", _cov_value("tokens", -1.5), I, ("'tokens'", "-1.5", "row 2", "positive")),
    Case("family-missing-value", _cov_value("family", np.nan), I, ("'family'", "every model needs a family")),
    Case("family-blank", _cov_value("family", "   ", row=3), I, ("'family'", "blank", "row(s) 3", "needs a family")),
    # --- covariates in the wrong unit (params are billions, tokens trillions)
    Case("params-raw-count", _cov_value("params", 7e9), I,
         ("'params'", "7e+09", "row 2", "must be in billions", "raw count", "divide the column by 1e9")),
    Case("params-in-millions", _cov_value("params", 70000.0), I,
         ("'params'", "70000", "row 2", "must be in billions", "millions", "divide the column by 1e3")),
    Case("tokens-raw-count", _cov_value("tokens", 15e12), I,
         ("'tokens'", "1.5e+13", "row 2", "must be in trillions", "raw count", "divide the column by 1e12")),
    Case("tokens-in-billions", _cov_value("tokens", 15000.0), I,
         ("'tokens'", "15000", "row 2", "must be in trillions", "billions", "divide the column by 1e3")),
    Case("predict-params-raw-count", _predict_cov("params", 3e9), I,
         ("'params'", "3e+09", "'new-b'", "row 1", "billions", "1e9")),
    Case("model-name-missing", _cov_value("model", np.nan), I, ("'model'", "row", "2")),
    Case("instruct-not-boolean", lambda c: (lambda p: (c.fit_api(p), c.fit_argv(p)))(
        c.csv(c.frame().assign(instruct=["maybe"] + [False] * (len(c.frame()) - 1)))), I,
        ("'instruct'", "'maybe'", "row 0", "true/false")),
    # --- columns and names
    Case("no-family-column", _drop_col("family"), I, ("family column 'family'", "--family-col")),
    Case("no-model-column", _drop_col("model"), I, ("model column 'model'", "--model-col")),
    Case("no-params-column", _drop_col("params"), I, ("params column 'params'", "--params-col")),
    Case("no-tokens-column", _drop_col("tokens"), I, ("tokens column 'tokens'", "--tokens-col")),
    Case("duplicate-model-names", _duplicate_model, I, ("duplicate model name", "one row")),
    Case("benchmark-no-observed-score", _empty_benchmark, I, ("'GSM8K'", "no observed score")),
    # --- benchmarks the law cannot learn from
    Case("benchmark-constant", _scores_all("GSM8K", [0.3]), I,
         ("'GSM8K'", "cannot be learned", "observed scores equal 0.3", "leave it out", "--benchmarks")),
    Case("benchmark-all-zero", _scores_all("GSM8K", [0.0]), I,
         ("'GSM8K'", "cannot be learned", "observed scores equal 0", "leave it out", "--benchmarks")),
    Case("benchmark-all-at-ceiling", _scores_all("ARC", [1.0]), I,
         ("'ARC'", "cannot be learned", "observed scores equal 1", "--benchmarks")),
    Case("benchmark-at-or-below-floor", _scores_all("MMLU", [0.2, 0.25, 0.22, 0.18]), I,
         ("'MMLU'", "cannot be learned", "at or below its chance floor 0.25", "highest", "--benchmarks")),
    Case("benchmark-zeros-and-ones", _scores_all("Winogrande", [0.0, 1.0, 1.0]), I,
         ("'Winogrande'", "cannot be learned", "exactly 0 or 1", "zeros", "ones", "--benchmarks")),
    Case("duplicate-csv-header", _duplicate_header, I, ("bad.csv", "column header 'MMLU' more than once", "rename")),
    Case("benchmark-not-in-table", _unknown_benchmark, I, ("'HumanEvil'", "not a column", "MMLU")),
    # --- model size and sampler settings
    Case("n-skills-zero", _n_skills(0), I, ("n_skills", "positive integer", "got 0")),
    Case("n-skills-too-many", _n_skills(4), I, ("n_skills=4", "4 benchmarks", "1 <= n_skills <= 3")),
    Case("too-few-models", _too_few_models, I, ("only 4 models", "at least 5")),
    Case("chains-zero", _bad_sampler("chains", "--chains", 0), I, ("chains", "positive integer", "0")),
    Case("draws-negative", _bad_sampler("draws", "--draws", -10), I, ("draws", "positive integer", "-10")),
    Case("draws-beyond-memory", _bad_sampler("draws", "--draws", 10**9), I,
         ("draws=1000000000", "GB of draws", "memory", "at most")),
    # --- files
    Case("empty-file", _file(b"", "empty.csv"), I, ("empty.csv", "is empty")),
    Case("header-only-file", _file("model,family,params,tokens,MMLU\n", "header.csv"), I, ("header.csv", "no rows")),
    Case("binary-not-csv", _file(bytes(range(256)) * 8, "scores.xlsx"), I, ("scores.xlsx", "not a readable CSV")),
    Case("json-not-csv", _file('{"model": "a", "MMLU": 0.5}\n', "scores.json"), I, ("scores.json", "CSV")),
    Case("missing-file", _missing_file, I, ("nowhere.csv", "does not exist")),
    # --- prediction inputs
    # a new row without tokens is not an error any more: its tokens are imputed, flagged (tests/test_tokens.py)
    Case("predict-missing-params", _predict_missing("params"), I, ("'new-b'", "params", "missing")),
    Case("predict-no-family-column", _predict_no_family_col, I, ("family column 'family'", "--family-col")),
    Case("predict-interval-level", _predict_bad_level, I, ("interval level", "1.5", "(0, 1)")),
    # --- sampler settings: checked before anything is read or sampled
    Case("target-accept-above-one", _hyper("target_accept", 1.5, "--target-accept"), I, ("target_accept", "between 0 and 1", "1.5")),
    Case("max-tree-depth-zero", _hyper("max_tree_depth", 0, "--max-tree-depth"), I, ("max_tree_depth", "1 to 15", "got 0")),
    Case("seed-too-large", _seed_cli_only(99999999999999999999999), I, ("seed", "99999999999999999999999")),
    Case("seed-negative", _seed_cli_only(-1), I, ("seed", "from 0", "got -1")),
    # --- output paths: checked before any sampling
    Case("out-is-a-folder", _out_is_folder, I, ("a_folder", "is a folder")),
    Case("out-is-the-input", _out_is_the_input, I, ("board.csv", "is the input file", "destroy")),
    Case("predict-out-is-the-fit", _predict_out_is_the_fit, I, ("is the input file", "destroy")),
    Case("out-folder-cannot-be-made", _out_folder_cannot_be_made, I, ("/proc/no_such_folder", "cannot")),
    Case("out-is-a-device", _out_device, I, (repr(os.devnull), "a device", "regular file")),
    Case("out-ends-with-a-separator", _out_trailing_separator, I, ("fits" + os.sep, "names a folder", "file name")),
    Case("predict-out-ends-with-a-separator", _predict_out_trailing_separator, I,
         ("tables" + os.sep, "names a folder")),
    Case("out-is-a-symlink-loop", _out_symlink_loop, I, ("loop.nc", "symbolic link", "loop")),
    # --- a full disk while writing: nothing written, the previous file kept (tests/test_files.py: kept whole)
    Case("fit-out-disk-full", _fit_out_disk_full, F, ("could not write fit file", "File too large", "nothing was written")),
    Case("predict-out-disk-full", _predict_out_disk_full, bs.OutputError,
         ("could not write", "pred.csv", "File too large", "nothing was written")),
    Case("report-out-disk-full", _report_out_disk_full, bs.OutputError,
         ("could not write report", "report.html", "File too large", "nothing was written")),
    # --- the protocol file of the evaluation
    Case("protocol-file-missing", _protocol_file(None), I, ("protocol.json",)),
    Case("protocol-file-not-json", _protocol_file("{not json"), I, ("protocol.json", "JSON")),
    Case("protocol-file-without-groups", _protocol_file('{"benchmark_sets": {}}'), I,
         ("protocol.json", "test_groups")),
    # --- families not in the fit, when the user asked to refuse them
    Case("predict-new-family-refused", _new_family_refused, I, ("'brand-new'", "not in the fit", "new_families")),
    # --- names spelled another way: never silently another name (refused, with the fitted spelling)
    Case("predict-benchmark-in-another-case", _predict_frame(lambda c: c.new_models().assign(mmlu=[0.6, None])), I,
         ("'MMLU'", "'mmlu'", "differ only in case or spacing", "rename the column")),
    Case("predict-benchmark-with-spaces", _predict_frame(lambda c: c.new_models().assign(**{" MMLU": [0.6, None]})),
         I, ("'MMLU'", "' MMLU'", "differ only in case or spacing")),
    Case("predict-family-in-another-case", _predict_frame(
        lambda c: c.new_models().assign(family=["FAMILY_00", "brand-new"])), I,
        ("'FAMILY_00'", "'family_00'", "not in the fit", "differ only in case or spacing")),
    Case("predict-family-with-inner-space", _predict_frame(
        lambda c: c.new_models().assign(family=["family _00", "brand-new"])), I,
        ("'family _00'", "'family_00'", "differ only in case or spacing")),
    Case("predict-model-in-another-case", _predict_frame(
        lambda c: _fitted_model(c).assign(model=lambda d: d["model"].str.upper())), I,
        ("is not a fitted model", "of the same family", "differ only in case or spacing", "own offset")),
    Case("fit-model-twice-in-two-cases", _fit_frame(_model_twice_in_two_cases), I,
         ("'model'", "differ only in case or spacing", "rows 1, 3", "the same model twice")),
    Case("fit-family-in-two-cases", _fit_frame(_family_in_two_cases), I,
         ("'family_01' and 'Family_01'", "differ only in case or spacing", "two families")),
    Case("fit-columns-in-two-cases", _fit_frame(lambda df: df.assign(mmlu=df["MMLU"])), I,
         ("'MMLU' and 'mmlu'", "differ only in case or spacing", "--benchmarks")),
    Case("fit-benchmark-asked-in-another-case", _benchmark_case, I,
         ("'mmlu'", "'MMLU' is", "differ only in case or spacing")),
    Case("fit-model-column-in-another-case", _fit_frame(lambda df: df.rename(columns={"model": "Model"})), I,
         ("no model column 'model'", "'Model'", "--model-col")),
    # --- a column that aggregates the others (leaderboard exports)
    Case("fit-average-column", _fit_frame(lambda df: df.assign(**{"Average ⬆️": df[TINY_BENCHMARKS].mean(axis=1)})), I,
         ("'Average ⬆️'", "aggregate of the other scores", "count every score twice", "--benchmarks")),
    Case("fit-avg-column", _fit_frame(lambda df: df.assign(avg=df[TINY_BENCHMARKS].mean(axis=1))), I,
         ("'avg'", "aggregate")),
    # --- fit files
    Case("fit-other-version", _fit_other_version, F, ("format 99.0", "99.1.0", "format 2.1", "refit")),
    Case("fit-no-metadata", _fit_no_meta, F, ("edited.nc", "not a bayes_sloth fit")),
    Case("fit-missing-group", _fit_missing_group, F, ("edited.nc", "constant_data", "refit")),
    Case("fit-truncated", _fit_truncated, F, ("truncated.nc", "corrupted")),
    Case("fit-is-a-csv", _fit_is_csv, F, ("not_a_fit.nc", "not a netCDF fit")),
    Case("fit-missing", _fit_missing, F, ("gone.nc", "does not exist")),
    # --- fit files checked against themselves: every array against its checksum (format 2.1), the data against
    # data_sha256, constant_data.x against params and tokens, no non-finite draw, draws of the law's shapes
    Case("fit-params-edited", _edit_array("constant_data", "params", _params_of_first_model_times_1000), F,
         ("edited.nc", "'constant_data.params'", "checksum", "refit")),
    Case("fit-params-edited-in-a-2.0-file", _edit_array("constant_data", "params", _params_of_first_model_times_1000,
                                                        drop_checksums=True), F,
         ("edited.nc", "'constant_data'", "data_sha256", "refit")),
    Case("fit-standardizer-shifted", _edit_meta(_shift_mean), F,
         ("edited.nc", "'constant_data.x'", "standardize", "refit")),
    Case("fit-standardizer-shifted-in-a-2.0-file", _edit_meta(_shift_mean, drop_checksums=True), F,
         ("edited.nc", "'constant_data.x'", "standardize")),
    Case("fit-one-nan-draw", _edit_array("posterior", "sigma", _first_nan), F,
         ("edited.nc", "'posterior.sigma'", "1 non-finite value")),
    Case("fit-one-nan-draw-in-a-2.0-file", _edit_array("posterior", "sigma", _first_nan, drop_checksums=True), F,
         ("'posterior.sigma'", "1 non-finite value")),
    Case("fit-sigma-scaled", _edit_array("posterior", "sigma", lambda v: v * 1e6), F,
         ("edited.nc", "'posterior.sigma'", "checksum", "refit")),
    Case("fit-skills-disagree-with-draws", _edit_meta(_two_skills), F,
         ("edited.nc", "'posterior.", "2 skill(s)", "refit")),
    Case("fit-corrupt-root-attribute", _fit_corrupt_root_attribute, F, ("edited.nc", "corrupted")),
    # --- the real table
    Case("packaged-table-damaged", _packaged_damaged, D, ("shipped with the package", "sha256", "reinstall",
                                                          "refresh=True", DATA_DIR_ENV)),
    Case("data-dir-wrong-file", _data_dir_wrong_file, D, ("data_v2.csv", "sha256", "pinned")),
    Case("data-dir-without-table", _data_dir_empty, D, ("empty_data", "sloth/data_v2.csv")),
]


def test_catalogue_is_big_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture
def ctx(tmp_path, tiny_fit, monkeypatch):
    return Ctx(tmp_path, tiny_fit[1], monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_api(case, ctx):
    api, _ = case.build(ctx)
    with pytest.raises(case.exc) as info:
        api()
    msg = str(info.value)
    assert "\n" not in msg, f"message spans lines: {msg!r}"
    for s in case.expect:
        assert s in msg, f"{s!r} not in message {msg!r}"
    assert not ctx.out_nc.exists() and not ctx.out_csv.exists()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli(case, ctx, capsys):
    _, argv = case.build(ctx)
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr not one error line: {err!r}"
    assert "Traceback" not in err + out
    for s in case.expect:
        assert s in lines[0], f"{s!r} not in {lines[0]!r}"
    assert not ctx.out_nc.exists(), "a fit file was written"
    assert not ctx.out_csv.exists(), "a forecast file was written"


def test_cli_main_leaves_warning_format_as_it_was(ctx):
    """main() formats warnings as one line while it runs, then puts Python's formatter back."""
    import warnings

    before = warnings.formatwarning
    cli.main(CASES[0].build(ctx)[1])
    assert warnings.formatwarning is before


def test_cli_subprocess_no_traceback(tmp_path):
    """A real process: one line on stderr, exit 2, for an empty file and a future fit file."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "bayes_sloth.cli", "fit", "--data", str(empty), "--out",
                        str(tmp_path / "x.nc")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: "), r.stderr
    assert "is empty" in r.stderr and not (tmp_path / "x.nc").exists()


# ------------------------------------------------- DataFrames only (the CLI reads CSV files)
@pytest.mark.parametrize("col", ["model", "family", "params", "tokens", "instruct", "MMLU"])
def test_dataframe_with_a_duplicated_column_names_it(tiny_frame, col):
    """``df[col]`` would be a DataFrame: refused with the column's name, not a pandas exception."""
    df = pd.concat([tiny_frame, tiny_frame[[col]]], axis=1)
    with pytest.raises(bs.InputError) as info:
        bs.load_leaderboard(df)
    msg = str(info.value)
    assert "\n" not in msg and f"column {col!r} more than once" in msg and "rename or drop" in msg


def test_dataframe_blank_family_is_refused(tiny_frame):
    df = tiny_frame.copy()
    df.loc[4, "family"] = " \t"
    with pytest.raises(bs.InputError, match=r"'family' \(family\) is blank for model\(s\) .* \(row\(s\) 4\)"):
        bs.load_leaderboard(df)


# ------------------------------------------------- handled, with a warning
def test_missing_covariates_dropped_with_counting_warning(tiny_frame):
    """Documented: fit drops models with missing params or tokens and says how many and which."""
    df = tiny_frame.copy()
    df.loc[[1, 5], "tokens"] = np.nan
    df.loc[7, "params"] = np.nan
    lb = bs.load_leaderboard(df)  # loading keeps them (a forecast table may use them)
    assert len(lb) == len(df) and lb.covariates["tokens"].isna().sum() == 2
    with pytest.warns(UserWarning, match=rf"dropped 3 of {len(df)} models with missing parameters or tokens") as rec:
        kept = lb.complete_covariates()
    assert len(kept) == len(df) - 3
    msg = str(rec[0].message)
    for i in (1, 5, 7):
        assert repr(df.loc[i, "model"]) in msg


def test_missing_scores_are_kept_not_dropped(tiny_frame):
    """Documented: a missing score is NaN, masked in the likelihood; the model stays."""
    df = tiny_frame.copy()
    df.loc[0, ["MMLU", "ARC", "GSM8K"]] = np.nan
    lb = bs.load_leaderboard(df)
    assert len(lb) == len(df)
    assert lb.scores.loc[df.loc[0, "model"]].notna().sum() == 1
    assert lb.n_observed == int(df[TINY_BENCHMARKS].notna().to_numpy().sum())


def test_unknown_floor_warns_and_uses_zero(tiny_frame):
    df = tiny_frame.rename(columns={"GSM8K": "MyBench"})
    with pytest.warns(UserWarning, match="no chance floor known for benchmark.*'MyBench'.*using 0"):
        lb = bs.load_leaderboard(df)
    assert lb.floors["MyBench"] == 0.0


def test_percent_option_rescales(tiny_frame):
    df = tiny_frame.copy()
    df[TINY_BENCHMARKS] = df[TINY_BENCHMARKS] * 100
    lb = bs.load_leaderboard(df, score_scale="percent")
    np.testing.assert_allclose(lb.scores.to_numpy(), tiny_frame[TINY_BENCHMARKS].to_numpy(), equal_nan=True)


def test_unlearnable_benchmark_is_fine_in_prediction_inputs(tiny_frame):
    """Constant, at-floor or 0/1 scores are refused only for fitting: forecast rows may carry anything observed."""
    df = tiny_frame.copy()
    df["GSM8K"], df["MMLU"] = 0.0, 0.25
    df["ARC"] = np.arange(len(df)) % 2
    lb = bs.load_leaderboard(df, require_scores=False)
    assert (lb.scores["GSM8K"] == 0).all() and set(lb.scores["ARC"]) == {0.0, 1.0}
    with pytest.raises(bs.InputError, match="cannot be learned"):
        bs.load_leaderboard(df)


def test_one_observed_score_at_the_floor_is_kept(tiny_frame):
    """A new benchmark's first data point is not 'all at the floor' yet: one score is allowed."""
    df = tiny_frame.copy()
    df["GSM8K"] = np.nan
    df.loc[0, "GSM8K"] = 0.0
    assert bs.load_leaderboard(df).scores["GSM8K"].notna().sum() == 1


@pytest.mark.parametrize("col,value", [("params", 2000.0), ("params", 20000.0), ("tokens", 40.0), ("tokens", 400.0)])
def test_largest_plausible_covariates_are_kept(tiny_frame, col, value):
    """The unit check has headroom: the largest public models and training sets, and 10x them, still load."""
    df = tiny_frame.copy()
    df.loc[0, col] = value
    assert bs.load_leaderboard(df).covariates[col].iloc[0] == value


def test_exact_zero_and_one_scores_are_kept(tiny_frame):
    df = tiny_frame.copy()
    df.loc[0, "GSM8K"] = 0.0
    df.loc[1, "MMLU"] = 1.0
    lb = bs.load_leaderboard(df)
    assert lb.scores.iloc[0]["GSM8K"] == 0.0 and lb.scores.iloc[1]["MMLU"] == 1.0


@pytest.mark.parametrize("value,fragment", [((0, 3), "1 <= min <= max"), ((4, 2), "1 <= min <= max"),
                                            ("many", "int or a (min, max) pair")])
def test_simulator_names_a_bad_models_per_family(value, fragment):
    with pytest.raises(bs.InputError, match=re.escape(fragment)):
        bs.simulate_leaderboard(n_families=3, n_benchmarks=3, n_skills=1, models_per_family=value)


def test_simulator_takes_a_single_models_per_family():
    lb, _ = bs.simulate_leaderboard(n_families=3, n_benchmarks=3, n_skills=1, models_per_family=2, missing=0.0)
    assert lb.covariates.groupby("family").size().tolist() == [2, 2, 2]


# ------------------------------------------------- names: one name, one thing
def test_a_family_in_another_unicode_form_is_the_same_family(tiny_fit):
    """A name typed with a decomposed accent (NFD) is the fitted family written with a composed one (NFC): the
    same family, the same draws, no "did you mean" that looks identical to the user."""
    law = tiny_fit[0]
    frame = make_tiny_frame()
    frame["family"] = frame["family"].where(frame["family"] != "family_00", "famille_\u00e9t\u00e9")
    row = pd.DataFrame({"model": ["x-7b"], "family": ["famille_\u00e9t\u00e9"], "params": [7.0], "tokens": [2.0]})
    decomposed = row.assign(family=[unicodedata.normalize("NFD", "famille_\u00e9t\u00e9")])
    assert decomposed["family"][0] != row["family"][0]
    lb = bs.load_leaderboard(frame.assign(family=frame["family"].map(lambda f: unicodedata.normalize("NFD", f))))
    assert "famille_\u00e9t\u00e9" in lb.families  # read in NFC
    got = bs.read_new_models(decomposed, law.benchmarks_)
    assert got.covariates["family"].iloc[0] == "famille_\u00e9t\u00e9"


def test_a_fitted_family_typed_in_another_form_forecasts_as_that_family(tiny_fit):
    import warnings

    law = tiny_fit[0]
    fam = law.families_[0]
    nfd_name = unicodedata.normalize("NFD", "caf\u00e9")
    assert law._families_of(pd.Series([fam]), "error").tolist() == [0]
    # a fitted name that was itself in NFD (an older fit): an NFC row still finds it
    law_nfd = bs.SkillsLaw.load(tiny_fit[1])
    law_nfd.families_ = [nfd_name] + law.families_[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert law_nfd._families_of(pd.Series(["caf\u00e9"]), "error").tolist() == [0]


def test_a_column_close_to_a_fitted_benchmark_is_named_in_a_warning(tiny_fit):
    new = pd.DataFrame({"model": ["x-7b"], "family": ["family_00"], "params": [7.0], "tokens": [2.0],
                        "MMLU_": [0.6], "date": ["2024-01-01"]})
    with pytest.warns(UserWarning, match=r"not used as scores: 'MMLU_' \(did you mean 'MMLU'\?\)") as rec:
        lb = bs.read_new_models(new, tiny_fit[0].benchmarks_)
    assert lb.scores.shape[1] == 0 and not any("date" in str(w.message) for w in rec)


def test_an_aggregate_column_named_on_purpose_is_a_benchmark(tiny_frame):
    df = tiny_frame.assign(Average=tiny_frame[TINY_BENCHMARKS].mean(axis=1))
    lb = bs.load_leaderboard(df, benchmarks=[*TINY_BENCHMARKS, "Average"], floors={"Average": 0.0})
    assert "Average" in lb.benchmarks
    with pytest.raises(bs.InputError, match="'Average'.*aggregate"):
        bs.load_leaderboard(df)
