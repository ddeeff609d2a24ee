"""Execute every notebook top to bottom against the real leaderboard (skipped without it)."""

import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _data_dir():
    env = os.environ.get("BAYES_SLOTH_DATA_DIR")
    if env and (Path(env) / "sloth" / "data_v2.csv").exists():
        return Path(env)
    local = ROOT.parent / "shared" / "data"
    return local if (local / "sloth" / "data_v2.csv").exists() else None


def _run(nb, timeout=900):
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    return client.execute()


#: A stream output longer than this is cut by notebooks/run_all.py (characters, plus its note).
MAX_STREAM = 4000 + 200
#: What a notebook's outputs must never show.
_LOCAL_PATH = re.compile(r"(?<![\w.:/])/(home|root|tmp|work|Users)/(?!ipykernel_\d+/)")  # not a cell's own name


def output_problems(nb) -> list:
    """What makes an executed notebook's outputs unfit to commit or to read: an error, a stderr stream from a
    fit cell or a long one anywhere, a tqdm bar or its warning, more than one progress output in a fit cell,
    a figure that is not PNG or did not render (a Figure's text repr), a local path."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outs = cell.get("outputs", [])
        fits = ".fit(" in cell.source
        progress = 0
        for o in outs:
            kind = o.get("output_type")
            data = o.get("data", {})
            text = o.get("text", "") if kind == "stream" else "".join(str(v) for v in data.values())
            if kind == "error":
                out.append(f"cell {i}: error {o.get('ename')}")
            if kind == "stream" and o.get("name") == "stderr" and fits:
                out.append(f"cell {i}: a fit cell writes to stderr: {text[:200]!r}")
            if kind == "stream" and len(text) > MAX_STREAM:
                out.append(f"cell {i}: a stream of {len(text)} characters")
            if "TqdmWarning" in text or "IProgress not found" in text or "it/s]" in text:
                out.append(f"cell {i}: tqdm output")
            if "image/svg+xml" in data or "application/javascript" in data:
                out.append(f"cell {i}: a figure that is not PNG")
            if "<Figure size" in data.get("text/plain", "") and "image/png" not in data:
                out.append(f"cell {i}: a figure shown as text, not drawn")
            if data.get("text/plain", "").startswith("fit: "):
                progress += 1
            if _LOCAL_PATH.search(text):
                out.append(f"cell {i}: a local path {_LOCAL_PATH.search(text).group(0)!r}")
        if progress > 1:
            out.append(f"cell {i}: {progress} progress outputs")
    return out


def test_notebooks_are_committed_executed_with_small_readable_outputs():
    """The notebooks are committed as notebooks/run_all.py leaves them: executed top to bottom (execution counts
    1, 2, ...), every fit cell with exactly one progress output that ended, figures drawn as PNG, no stderr in
    a fit cell, nothing long, no local path; the whole folder stays small."""
    assert len(NOTEBOOKS) >= 6
    total = 0
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        total += path.stat().st_size
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1)), \
            f"{path.name} is not executed top to bottom: run notebooks/run_all.py"
        assert "BAYES_SLOTH_NOTEBOOKS=small" in "".join(c.source for c in nb.cells)
        assert output_problems(nb) == [], path.name
        for c in code:
            if ".fit(" in c.source and "progress=False" not in c.source and "SAMPLER = dict(" not in c.source:
                shown = [o for o in c.get("outputs", []) if o.get("data", {}).get("text/plain", "").startswith("fit: ")]
                assert len(shown) == 1 and shown[0]["data"]["text/plain"].startswith("fit: done"), (path.name, c.source)
                # committed outputs are a reader's run (defaults, draws="auto"), not CI's small draws
                assert ", converged" in shown[0]["data"]["text/plain"], (path.name, shown[0]["data"]["text/plain"])
        texts = [o.get("text", "") for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream"]
        assert not any("NOT converged" in t for t in texts), f"{path.name}: a committed fit did not converge"
        images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
        assert images >= 1, path.name
    assert total < 8e6, f"the notebooks take {total / 1e6:.1f} MB"


def test_kernel_is_this_python():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    out = _run(nb, timeout=120)
    assert out.cells[0].outputs[0]["text"].strip() == sys.prefix


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    data = _data_dir()
    if data is None:
        pytest.skip("real Sloth table not found: set BAYES_SLOTH_DATA_DIR or put it in ../shared/data")
    monkeypatch.setenv("BAYES_SLOTH_DATA_DIR", str(data))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BAYES_SLOTH_NOTEBOOKS", "small")  # CI's small draws; the committed outputs are a full run
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    out = _run(nb)
    assert output_problems(out) == []
    assert sum(bool(c.get("outputs")) for c in out.cells if c.cell_type == "code") >= 3
    print(f"{path.name}: {time.perf_counter() - t0:.0f} s")


def test_figures_show_once_inline(tiny_fit, monkeypatch):
    """With Jupyter's inline backend (no backend forced), each figure a cell returns shows exactly once."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    path = str(tiny_fit[1])
    cells = [
        "import warnings; warnings.simplefilter('ignore')\n"
        f"import bayes_sloth as bs\nfrom bayes_sloth import plots\nlaw = bs.SkillsLaw.load({path!r})",
        "plots.plot_loadings(law)",
        "plots.plot_ppc(law)",
        "plots.plot_diagnostics(law, 'trace')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    out = _run(nb, timeout=300)
    for cell in out.cells[1:]:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, (cell.source, [o.get("output_type") for o in cell.outputs])


def test_a_fit_cell_shows_one_progress_output(monkeypatch):
    """In a notebook a fit shows exactly one progress output, updated in place to its end (no bar per chain,
    no stderr, no TqdmWarning), and importing the package there imports neither tqdm nor JAX."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    tests = str(Path(__file__).resolve().parent)
    cells = [
        "import sys\nimport bayes_sloth as bs\n"
        "print(sorted(m for m in ('jax', 'tqdm', 'numpyro', 'arviz') if m in sys.modules))",
        "import warnings; warnings.filterwarnings('ignore', message='(the|this) fit did not pass')\n"
        f"sys.path.insert(0, {tests!r})\nfrom conftest import TINY_FIT, make_tiny_frame\nbs.configure();",
        "law = bs.SkillsLaw(**TINY_FIT).fit(make_tiny_frame())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    out = _run(nb, timeout=600)
    assert out.cells[0].outputs[0]["text"].strip() == "[]"
    fit = out.cells[2].outputs
    assert len(fit) == 1 and fit[0]["output_type"] == "display_data", fit
    text, page = fit[0]["data"]["text/plain"], fit[0]["data"]["text/html"]
    assert text.startswith("fit: done: 2 chain(s) x (100 warm-up + 100 draws)") and " elapsed" in text, text
    assert "<progress" in page
    assert output_problems(out) == []
