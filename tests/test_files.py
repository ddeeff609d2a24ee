"""Nothing lost: every write is whole or absent, a loaded fit holds no file, fit files check themselves.

- a save killed with SIGKILL half-way, or failing on a full disk, leaves the
  previous fit as it was (it loads and predicts exactly as before) and no
  partial file under the final name;
- two writers of one path: one file, whole; the other gets a clear error;
- a loaded fit keeps no file open, so saving over it works;
- a fit file whose parts disagree is a FitFileError naming the field;
- output paths are checked before any sampling; CSV cells that a spreadsheet
  would run as formulas are made inert; a home folder that cannot be written
  costs one warning, not a crash.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import bayes_sloth as bs
from bayes_sloth import cli, io

from .conftest import REPO_ROOT, make_tiny_frame


def _new_rows():
    return pd.DataFrame({"model": ["seen-7b", "unseen-1b"], "family": ["family_00", "brand-new"],
                         "params": [7.0, 1.0], "tokens": [2.0, 1.5], "instruct": [False, False]})


def _forecast(law):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return law.predict(_new_rows(), new_families="allow").predictions["score"].values


@pytest.fixture
def old_fit(tiny_fit, tmp_path):
    """A saved fit at a path, its bytes, and its forecasts: what must survive a failed save over it."""
    path = tmp_path / "fit.nc"
    shutil.copy(tiny_fit[1], path)
    return path, path.read_bytes(), _forecast(bs.SkillsLaw.load(path))


def _intact(path: Path, data: bytes, forecast: np.ndarray):
    assert path.read_bytes() == data, "the previous fit file was changed"
    assert np.array_equal(_forecast(bs.SkillsLaw.load(path)), forecast)


# ------------------------------------------------------------------ atomic writes
def test_atomic_write_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as fh:
            fh.write("half a new ta")
            raise RuntimeError("fails half-way")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # no temporary left behind


_KILLED_SAVE = """
import sys, time
import arviz as az
import bayes_sloth as bs

def slow_write(self, filename, **kw):  # a long write: half the bytes, then the process hangs
    with open(filename, "wb") as fh:
        fh.write(b"\\x89HDF" + b"x" * 100000)
        fh.flush()
    print("writing", flush=True)
    time.sleep(600)

az.InferenceData.to_netcdf = slow_write
bs.SkillsLaw.load(sys.argv[1]).save(sys.argv[2])
"""


def test_save_killed_with_sigkill_leaves_the_old_fit(tiny_fit, old_fit):
    path, data, forecast = old_fit
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(tiny_fit[1]), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    _intact(path, data, forecast)


def test_save_on_a_full_disk_leaves_the_old_fit(tiny_fit, old_fit, monkeypatch):
    path, data, forecast = old_fit
    import arviz as az

    def full_disk(self, filename, **kw):
        with open(filename, "wb") as fh:
            fh.write(b"\x89HDF" + b"x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(az.InferenceData, "to_netcdf", full_disk)
    with pytest.raises(bs.FitFileError, match="No space left on device.*previous file there is unchanged"):
        tiny_fit[0].save(path)
    monkeypatch.undo()
    _intact(path, data, forecast)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fit.nc"]


def test_a_second_writer_of_the_same_path_gets_a_clear_error(tiny_fit, old_fit):
    path, data, forecast = old_fit
    with io._exclusive(path):  # another process is saving there right now
        with pytest.raises(bs.FitFileError, match="another process is saving to .*fit.nc"):
            tiny_fit[0].save(path)
    _intact(path, data, forecast)
    tiny_fit[0].save(path)  # once the other writer is done, saving works and the lock is gone
    assert not (path.parent / ".fit.nc.lock").exists()


def test_a_loaded_fit_holds_no_file_open(tiny_fit, old_fit):
    path, _, forecast = old_fit
    law = bs.SkillsLaw.load(path)
    if Path("/proc/self/fd").is_dir():
        open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert str(path.resolve()) not in open_files
    tiny_fit[0].save(path)  # saving over the file the notebook holds a fit from
    assert np.array_equal(_forecast(law), forecast)  # the loaded fit is unaffected
    assert np.array_equal(_forecast(bs.SkillsLaw.load(path)), forecast)


def test_fit_file_holds_what_cannot_be_recomputed(tiny_fit):
    """Deterministic sites, log-likelihood, observed data and replicated scores are recomputed on load."""
    law, path = tiny_fit
    with h5py.File(path, "r") as f:
        groups = set(f.keys())
        stored = set(f["posterior"].keys()) - set(f["posterior"].dims) if hasattr(f["posterior"], "dims") else set()
    assert groups == {"posterior", "sample_stats", "constant_data"}
    meta = json.loads(h5py.File(path, "r")["posterior"].attrs["bayes_sloth"])
    assert not {"alpha", "skills", "model_effect"} & set(meta["sampled_sites"])
    assert {"alpha", "skills", "model_effect"} <= set(law.idata_.posterior.data_vars)
    assert stored is not None


# ------------------------------------------------------------------ self-checks on load
def _edit_meta(src, dst, change):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        meta = json.loads(f["posterior"].attrs["bayes_sloth"])
        change(meta)
        f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
    return dst


def _set_spec(key, value):
    return lambda m: m["spec"].__setitem__(key, value)


@pytest.mark.parametrize("name,change,fragment", [
    ("anchor-out-of-range", _set_spec("anchors", [9]), "spec.anchors"),
    ("k-disagrees", _set_spec("n_skills", 2), "spec"),
    ("families-disagree", lambda m: m["families"].pop(), "'families'"),
    ("benchmarks-disagree", lambda m: m["benchmarks"].__setitem__(0, "HumanEval"), "constant_data.benchmark"),
    ("standardizer-not-finite", lambda m: m["standardizer"]["sd"].__setitem__(0, float("nan")), "'standardizer'"),
    ("params-wrong-type", lambda m: m["params"].__setitem__("chains", "four"), "'params'"),
    ("sampled-site-unknown", lambda m: m["sampled_sites"].append("no_such_site"), "posterior.no_such_site"),
    ("metadata-not-a-mapping", lambda m: m.clear() or m.update({"fit_format": "2.0", "spec": []}), "'spec'"),
])
def test_inconsistent_fit_file_names_the_field(tiny_fit, tmp_path, name, change, fragment):
    bad = _edit_meta(tiny_fit[1], tmp_path / f"{name}.nc", change)
    with pytest.raises(bs.FitFileError) as info:
        bs.SkillsLaw.load(bad)
    msg = str(info.value)
    assert fragment in msg and f"{name}.nc" in msg and "\n" not in msg, msg


def test_all_nan_parameter_is_refused(tiny_fit, tmp_path):
    bad = tmp_path / "nan.nc"
    shutil.copy(tiny_fit[1], bad)
    with h5py.File(bad, "r+") as f:
        f["posterior"]["tau"][...] = np.nan
    with pytest.raises(bs.FitFileError, match=r"posterior\.tau.*no draws"):
        bs.SkillsLaw.load(bad)


def test_metadata_that_is_not_json_is_refused(tiny_fit, tmp_path):
    bad = tmp_path / "garbled.nc"
    shutil.copy(tiny_fit[1], bad)
    with h5py.File(bad, "r+") as f:
        f["posterior"].attrs["bayes_sloth"] = "{not json"
    with pytest.raises(bs.FitFileError, match="garbled.nc.*not valid JSON"):
        bs.SkillsLaw.load(bad)


# ------------------------------------------------------------------ output paths, before any sampling
@pytest.fixture
def no_sampling(monkeypatch):
    """Any attempt to sample fails the test: the check must come first."""
    import bayes_sloth.core.inference as inference

    def refuse(*a, **k):
        raise AssertionError("sampling started before the output path was checked")

    monkeypatch.setattr(inference, "run_nuts", refuse)
    monkeypatch.setattr("bayes_sloth.core.estimator.run_nuts", refuse)


def test_fit_out_same_as_input_fails_before_sampling(tmp_path, no_sampling, capsys):
    data = tmp_path / "board.csv"
    make_tiny_frame().to_csv(data, index=False)
    before = data.read_bytes()
    assert cli.main(["fit", "--data", str(data), "--skills", "1", "--out", str(data)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_fit_out_in_a_new_folder_is_created(tmp_path, tiny_fit):
    out = tmp_path / "new" / "deeper" / "fit.nc"
    tiny_fit[0].save(out)
    assert out.is_file()


def test_report_out_same_as_target_models_fails_first(tmp_path, no_sampling, capsys):
    data = tmp_path / "board.csv"
    make_tiny_frame().to_csv(data, index=False)
    new = tmp_path / "new.csv"
    _new_rows().to_csv(new, index=False)
    assert cli.main(["report", "--data", str(data), "--target-models", str(new), "--out", str(new)]) == 2
    assert "is the input file" in capsys.readouterr().err


# ------------------------------------------------------------------ CSV safe to open in a spreadsheet
def test_forecast_csv_escapes_formula_cells(tiny_fit, tmp_path):
    new = _new_rows()
    new.loc[1, "model"] = '=HYPERLINK("http://evil","click")'
    new.loc[1, "family"] = "@SUM(A1)"
    src = tmp_path / "new.csv"
    new.to_csv(src, index=False)
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", str(tiny_fit[1]), "--data", str(src), "--new-families", "allow", "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert set(got["model"]) == {"seen-7b", "'" + new.loc[1, "model"]}
    assert set(got["family"]) == {"family_00", "'@SUM(A1)"}
    assert io.escape_formula("-1+2") == "'-1+2" and io.escape_formula("llama-2") == "llama-2"


# ------------------------------------------------------------------ the environment cannot break it
def test_unwritable_home_costs_one_warning_not_a_crash(tiny_fit, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR",
                                                             "BAYES_SLOTH_XLA_CACHE")}
    env["HOME"] = "/proc/no_such_home"  # cannot be created, even by root
    env["TMPDIR"] = str(tmp_path / "tmp")  # matplotlib's config goes to a temporary folder there, removed at exit
    (tmp_path / "tmp").mkdir()
    exe = [sys.executable, "-m", "bayes_sloth.cli"]
    r = subprocess.run(exe + ["--version"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("bayes_sloth "), r.stderr
    assert r.stderr == ""
    new = tmp_path / "new.csv"
    _new_rows().to_csv(new, index=False)
    r = subprocess.run(exe + ["predict", str(tiny_fit[1]), "--data", str(new), "--new-families", "allow"],
                       env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(warned) == 2 and "compile cache" in warned[0] and "convergence" in warned[1], r.stderr
    assert not list((tmp_path / "tmp").glob("bayes-sloth-mpl-*")), "the temporary matplotlib folder was left behind"


def test_importing_writes_no_file(tmp_path):
    """A fresh process with an empty home: importing the package creates nothing; using its names
    creates nothing but matplotlib's own font cache (arviz draws with matplotlib)."""
    env = dict(os.environ, HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    env.pop("BAYES_SLOTH_XLA_CACHE", None)
    for code, allowed in (("import bayes_sloth", ()),
                          ("import bayes_sloth as bs; bs.SkillsLaw; bs.evaluation; bs.report", ("mpl",))):
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                           cwd=REPO_ROOT)
        assert r.returncode == 0, r.stderr
        made = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
        assert [m for m in made if m.split("/")[0] not in allowed] == [], (code, made)
