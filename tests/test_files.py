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

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
    # the same file on the same machine before and after a failed save: untouched means byte for byte (nothing
    # is recomputed here, so no float rounding enters)
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
import contextlib, sys, time
import bayes_sloth as bs
from bayes_sloth import io

real = io.atomic_write

@contextlib.contextmanager
def slow_write(path, mode="w", **kw):  # a long write: half the bytes, then the process hangs
    with real(path, mode, **kw) as fh:
        fh.write(b"\\x89HDF" + b"x" * 100000)
        fh.flush()
        print("writing", flush=True)
        time.sleep(600)
        yield fh

io.atomic_write = slow_write
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


@contextlib.contextmanager
def _disk_full_while_writing(limit: int = 4096):
    """The disk fills up while a file is written: past ``limit`` bytes the process may not write (RLIMIT_FSIZE;
    Python ignores SIGXFSZ, so the write fails with EFBIG, as it would with ENOSPC on a full disk)."""
    resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is POSIX")
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


def test_save_on_a_full_disk_leaves_the_old_fit(tiny_fit, old_fit, monkeypatch):
    path, data, forecast = old_fit
    real = io.atomic_path

    @contextlib.contextmanager
    def full(target, what="file"):
        with real(target, what) as tmp, _disk_full_while_writing():
            yield tmp

    monkeypatch.setattr(io, "atomic_path", full)
    with pytest.raises(bs.FitFileError, match="File too large.*previous file there is unchanged"):
        tiny_fit[0].save(path)
    monkeypatch.undo()
    _intact(path, data, forecast)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fit.nc"]


_FULL_DISK = """
import contextlib, resource, sys
import bayes_sloth as bs
from bayes_sloth import cli, io

real = io.atomic_path

@contextlib.contextmanager
def full(path, what="file"):  # the disk fills up while the file is written: EFBIG past 256 bytes, as ENOSPC would
    with real(path, what) as tmp:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, resource.RLIM_INFINITY))
        yield tmp

io.atomic_path = full
fitted = bs.SkillsLaw.load(sys.argv[1])
bs.SkillsLaw.fit = lambda self, *a, **k: (self.__dict__.update(fitted.__dict__), self)[1]  # `fit`: no sampling
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("command", ["fit", "predict", "report"])
def test_a_full_disk_is_one_error_line_in_a_real_process(tiny_fit, tmp_path, command):
    """On a full disk `fit --out`, `predict --out` and `report --out` exit 2 with one error line that says the
    previous file is unchanged, leave it as it was and nothing else behind, and the process ends cleanly (libhdf5
    crashed at exit, status 139, closing a fit file it had failed to write; h5py's RuntimeError was an
    'unexpected' error)."""
    data = tmp_path / "board.csv"
    make_tiny_frame().to_csv(data, index=False)
    new = tmp_path / "new.csv"
    _new_rows().iloc[[0]].to_csv(new, index=False)
    out = tmp_path / {"fit": "fit.nc", "predict": "pred.csv", "report": "report.html"}[command]
    shutil.copy(tiny_fit[1], out) if command == "fit" else out.write_text("the previous file\n" * 1000)
    before = out.read_bytes()
    argv = {"fit": ["fit", "--data", str(data), "--skills", "1", "--out", str(out)],
            "predict": ["predict", str(tiny_fit[1]), "--data", str(new), "--out", str(out)],
            "report": ["report", "--fit", str(tiny_fit[1]), "--data", str(data), "--target-models", str(new),
                       "--out", str(out), "--quiet"]}[command]
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tiny_fit[1]), *argv], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(errors) == 1 and "File too large" in errors[0] and "previous file there is unchanged" in errors[0], \
        r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert all(ln.startswith(("warning:", "error:")) for ln in r.stderr.splitlines() if ln.strip()), r.stderr
    assert out.read_bytes() == before  # the file left in place, not a recomputation: exact bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["board.csv", "new.csv", out.name]), \
        "a temporary or lock file was left behind"


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
    import bayes_sloth.core.sampler as sampler

    def refuse(*a, **k):
        raise AssertionError("sampling started before the output path was checked")

    monkeypatch.setattr(sampler, "run_nuts", refuse)
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


# ------------------------------------------------------------------ paths that are not plain files
def test_out_through_a_symbolic_link_writes_its_target(tiny_fit, tmp_path, capsys):
    """`--out link.csv` writes the table the link points to (as `open` would) and keeps the link a link; the
    message's "wrote" is then true (a rename over the link replaced it and left the target's old table)."""
    target = tmp_path / "tables" / "forecasts.csv"
    target.parent.mkdir()
    target.write_text("old table\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    new = tmp_path / "new.csv"
    _new_rows().to_csv(new, index=False)
    assert cli.main(["predict", str(tiny_fit[1]), "--data", str(new), "--new-families", "allow",
                     "--out", str(link)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert link.is_symlink() and os.readlink(link) == str(target)
    table = pd.read_csv(target)
    assert set(table["model"]) == {"seen-7b", "unseen-1b"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["forecasts.csv"]
    fit_link = tmp_path / "fit-link.nc"
    fit_link.symlink_to(tmp_path / "tables" / "fit.nc")  # a link to a file not made yet
    tiny_fit[0].save(fit_link)
    assert fit_link.is_symlink() and (tmp_path / "tables" / "fit.nc").is_file()
    assert bs.SkillsLaw.load(fit_link).benchmarks_ == tiny_fit[0].benchmarks_


def _through_a_fifo(content: bytes, tmp_path: Path, name: str) -> Path:
    """A named pipe that a thread fills with ``content`` once: it can be read once, like ``<(...)``."""
    import threading

    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(content)

    threading.Thread(target=feed, daemon=True).start()
    return fifo


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_data_and_fits_read_from_a_pipe(tiny_fit, tmp_path):
    """A table or a fit file that can be read only once (a pipe, `--data <(...)`) is read whole, once."""
    frame = make_tiny_frame()
    lb = bs.load_leaderboard(_through_a_fifo(frame.to_csv(index=False).encode(), tmp_path, "board.csv"))
    assert lb.models == list(frame["model"]) and lb.n_observed == int(frame[["MMLU", "ARC", "GSM8K",
                                                                             "Winogrande"]].notna().sum().sum())
    law = bs.SkillsLaw.load(_through_a_fifo(Path(tiny_fit[1]).read_bytes(), tmp_path, "fit.nc"))
    assert law.families_ == tiny_fit[0].families_


@pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution is bash's")
def test_cli_reads_data_from_process_substitution(tiny_fit, tmp_path):
    new = tmp_path / "new.csv"
    _new_rows().to_csv(new, index=False)
    cmd = (f"{sys.executable} -m bayes_sloth.cli predict {tiny_fit[1]} --data <(cat {new}) --new-families allow "
           f"--out {tmp_path / 'pred.csv'}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert set(pd.read_csv(tmp_path / "pred.csv")["model"]) == {"seen-7b", "unseen-1b"}


_CORRUPT_ROOT = """
import shutil, sys
import h5py, numpy as np
from bayes_sloth import cli
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:  # a root attribute h5netcdf reads while opening, with a value it cannot take
    values = np.empty(1, dtype=object)
    values[0] = np.arange(3.0)
    f.attrs.create("_nc3_strict", data=values, dtype=h5py.vlen_dtype(np.dtype("float64")))
sys.exit(cli.main(["predict", sys.argv[2], "--data", sys.argv[3]]))
"""


def test_a_damaged_fit_file_is_one_line_until_the_process_ends(tiny_fit, tmp_path):
    """h5netcdf printed an 8-line 'Exception ignored' traceback after the error line, when the file object it
    had failed to open was freed (at exit, or whenever the error was)."""
    new = tmp_path / "new.csv"
    _new_rows().to_csv(new, index=False)
    r = subprocess.run([sys.executable, "-c", _CORRUPT_ROOT, str(tiny_fit[1]), str(tmp_path / "bad.nc"), str(new)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read fit file") and "corrupted" in lines[0], \
        r.stderr


def test_a_fit_file_of_an_earlier_version_loads(tiny_fit, tmp_path):
    """A genuine file of format 2.0 (no checksums; every array as this version writes it) passes the checks
    that need no checksum (data_sha256, x against params and tokens, finite draws, site shapes) and predicts
    exactly as the fit does."""
    old = tmp_path / "old.nc"
    shutil.copy(tiny_fit[1], old)
    with h5py.File(old, "r+") as f:
        meta = json.loads(f["posterior"].attrs["bayes_sloth"])
        del meta["checksums"]
        meta["fit_format"] = "2.0"
        f["posterior"].attrs["bayes_sloth"] = json.dumps(meta)
    assert np.array_equal(_forecast(bs.SkillsLaw.load(old)), _forecast(tiny_fit[0]))


def test_checksums_cover_every_array_written(tiny_fit):
    idata = io.read_idata(tiny_fit[1])
    meta = json.loads(idata.posterior.attrs["bayes_sloth"])
    assert meta["fit_format"] == "2.1"
    assert set(meta["checksums"]) == {f"{g}.{v}" for g in idata.groups() for v in idata[g].data_vars}


# ------------------------------------------------------------------ one compile cache, many processes
_CACHE_PAYLOADS = """
import hashlib, json, sys, time
import bayes_sloth as bs
bs.configure(cpu_devices=None, compile_cache=sys.argv[2])
cache = bs.config.compile_cache()
def payload(k):  # 4 MB, deterministic per key
    return hashlib.sha256(k.encode()).digest() * (4 * 2**20 // 32)
keys = [f"k{i}" for i in range(40)]
if sys.argv[1] == "write":
    for k in keys:
        cache.put(k, payload(k))
    print(json.dumps({"wrote": len(keys)}))
else:
    whole = torn = 0
    missing_at_start = sum(cache.get(k) is None for k in keys)
    t = time.time()
    while time.time() - t < 60:
        seen = [cache.get(k) for k in keys]
        whole += sum(v == payload(k) for k, v in zip(keys, seen) if v is not None)
        torn += sum(v != payload(k) for k, v in zip(keys, seen) if v is not None)
        if all(v is not None for v in seen):
            break
    print(json.dumps({"whole": whole, "torn": torn, "missing_at_start": missing_at_start}))
"""


def test_a_reader_never_sees_half_an_entry_of_the_compile_cache(tmp_path):
    """Two processes on one compile-cache folder, one writing 4 MB entries while the other reads them: every
    entry read is whole. (JAX's own file cache writes in place: the same two processes on it read 18 torn
    entries in 3,013; XLA runs whatever decompresses, and a damaged executable kills the process.)"""
    folder = tmp_path / "xla"
    reader = subprocess.Popen([sys.executable, "-c", _CACHE_PAYLOADS, "read", str(folder)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    writer = subprocess.run([sys.executable, "-c", _CACHE_PAYLOADS, "write", str(folder)], capture_output=True,
                            text=True, timeout=120)
    out, err = reader.communicate(timeout=120)
    assert writer.returncode == 0 and reader.returncode == 0, writer.stderr + err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["missing_at_start"] > 0, got  # the reader ran while entries were still being written
    assert got["whole"] >= 40 and got["torn"] == 0, got
    assert not list(folder.rglob("*.part")), "a temporary entry was left behind"


_JIT_PROGRAMS = """
import json, sys, warnings
warnings.simplefilter("always")
import jax.monitoring
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
import bayes_sloth as bs
bs.configure(cpu_devices=None, compile_cache=sys.argv[1])
import jax, jax.numpy as jnp
out = []
with warnings.catch_warnings(record=True) as caught:
    for n in range(8):  # eight programs, each with loops enough to take a moment to compile
        f = jax.jit(lambda x, n=n: jax.lax.fori_loop(0, 5 + n, lambda i, y: jnp.tanh(y @ y.T * 0.01) + 1.0, x).sum())
        out.append(float(f(jnp.ones((16 + n, 16 + n)))))
print(json.dumps({"values": out, "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "cache_warnings": [str(w.message)[:200] for w in caught if "cache" in str(w.message)]}))
"""


def test_two_processes_compiling_into_one_cache_at_once(tmp_path):
    """The notebook-kernel death: processes sharing the compile cache (the same home) compile the same programs
    at the same time, then a third reads them back, then a fourth reads entries damaged on disk. Every process
    ends cleanly with the same numbers; a damaged entry is compiled again, never run."""
    folder = tmp_path / "xla"
    run = lambda: subprocess.Popen([sys.executable, "-c", _JIT_PROGRAMS, str(folder)],  # noqa: E731
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = [run(), run()]
    results = []
    for proc in first:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (proc.returncode, err[-2000:])  # -11 / -4: SIGSEGV / SIGILL
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        assert r["cache_warnings"] == [], r
    # one machine, one program: the sums agree to float32 rounding (8 loops of 16-23 terms: 1e-5 relative)
    np.testing.assert_allclose(results[0]["values"], results[1]["values"], rtol=1e-5)
    third = run()
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err[-2000:]
    again = json.loads(out.strip().splitlines()[-1])
    assert again["hits"] >= 8, again  # read back from the cache the two wrote
    np.testing.assert_allclose(again["values"], results[0]["values"], rtol=1e-5)
    entries = list(folder.rglob("*.entry"))
    assert len(entries) >= 8
    for entry in entries:  # damage every executable in the middle (a torn or mixed write would do the same)
        raw = bytearray(entry.read_bytes())
        for i in range(len(raw) // 2, len(raw) // 2 + 64):
            raw[i] ^= 0xFF
        entry.write_bytes(bytes(raw))
    fourth = run()
    out, err = fourth.communicate(timeout=300)
    assert fourth.returncode == 0, (fourth.returncode, err[-2000:])
    damaged = json.loads(out.strip().splitlines()[-1])
    assert damaged["hits"] == 0 and damaged["cache_warnings"] == [], damaged
    np.testing.assert_allclose(damaged["values"], results[0]["values"], rtol=1e-5)
