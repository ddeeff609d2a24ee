"""Execute every notebook top to bottom against the real leaderboard (skipped without it)."""

import os
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


def test_notebooks_exist_and_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 5
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs: clear them"
        assert "Small draws for CI" in "".join(c.source for c in nb.cells)


def test_kernel_is_this_python():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    out = _run(nb, timeout=120)
    assert out.cells[0].outputs[0]["text"].strip() == sys.prefix


@pytest.mark.realdata
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    data = _data_dir()
    if data is None:
        pytest.skip("real Sloth table not found: set BAYES_SLOTH_DATA_DIR or put it in ../shared/data")
    monkeypatch.setenv("BAYES_SLOTH_DATA_DIR", str(data))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    out = _run(nb)
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
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
