"""Execute every notebook of this folder top to bottom, in place, and keep what a reader needs.

    python notebooks/run_all.py                # all of them
    python notebooks/run_all.py 01 06          # those whose name starts with 01 or 06

Run it from the repository's virtual environment (its ``python3`` kernel is
this interpreter) after anything that changes the law's draws, and commit the
notebooks it writes: their outputs are what a reader sees on a code host
without running anything, so they are a reader's run (the package's defaults,
``draws="auto"``), never CI's small draws (``BAYES_SLOTH_NOTEBOOKS=small`` is
unset here). Each notebook runs in a fresh kernel (nbclient)
in this folder, with the Sloth table that ships with the package (or
``$BAYES_SLOTH_DATA_DIR``); a cell that fails stops that notebook, which is
then left as it was, and the script exits non-zero.

What is kept small: figures are PNG (the inline backend's default; no SVG,
no JavaScript), re-encoded with a 128-colour palette (a third of the bytes,
the same picture for line plots), widget state is not saved, per-cell timing metadata is not
recorded, and a stream output (stdout or stderr) longer than
:data:`MAX_STREAM` characters is cut to its head and tail with a note. Each
notebook is written to a temporary file beside it and renamed into place,
so an interrupted run never leaves half a notebook.

At the end it prints, per notebook, the seconds, the image outputs and the
stderr outputs, which ``tests/test_notebooks.py`` also checks on the
committed files.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import base64
import io

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
#: Longest stream output kept whole (characters); longer ones keep their head and tail.
MAX_STREAM = 4000
TIMEOUT = 1800


def _trim(nb) -> None:
    """Cut long stream outputs and drop what only a live kernel can use."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and len(out.get("text", "")) > MAX_STREAM:
                text = out["text"]
                half = MAX_STREAM // 2
                out["text"] = (text[:half] + f"\n[... {len(text) - 2 * half} characters cut by run_all.py ...]\n"
                               + text[-half:])
            data = out.get("data", {})
            data.pop("application/vnd.jupyter.widget-view+json", None)
            if "image/png" in data:
                data["image/png"] = _small_png(data["image/png"])
    nb.metadata.pop("widgets", None)


def _small_png(encoded: str) -> str:
    """A base64 PNG re-encoded with a 128-colour palette (Pillow, which matplotlib needs), if that is smaller."""
    try:
        from PIL import Image
    except ImportError:
        return encoded
    raw = base64.b64decode(encoded)
    img = Image.open(io.BytesIO(raw))
    buf = io.BytesIO()
    img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii") if buf.tell() < len(raw) else encoded


def _write(nb, path: Path) -> None:
    """Write ``nb`` to ``path`` whole or not at all (a temporary file beside it, renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            nbformat.write(nb, fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; a notebook is not
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def counts(nb) -> dict:
    """Image outputs and stderr outputs of an executed notebook."""
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return {"images": sum("image/png" in o.get("data", {}) for o in outs),
            "stderr": sum(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outs),
            "errors": sum(o.get("output_type") == "error" for o in outs)}


def run(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    nbformat.validator.normalize(nb)
    t0 = time.perf_counter()
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    _trim(nb)
    _write(nb, path)
    return dict(counts(nb), seconds=time.perf_counter() - t0)


def main(argv=None) -> int:
    prefixes = (argv if argv is not None else sys.argv[1:]) or [""]
    paths = [p for p in sorted(HERE.glob("*.ipynb")) if any(p.name.startswith(x) for x in prefixes)]
    if not paths:
        print(f"no notebook in {HERE} starts with {' or '.join(prefixes)}", file=sys.stderr)
        return 2
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures (as PNG)
    os.environ.pop("BAYES_SLOTH_NOTEBOOKS", None)  # a reader's run: the defaults, not CI's small draws
    failed = 0
    print("| notebook | seconds | image outputs | stderr outputs |")
    print("| --- | ---: | ---: | ---: |")
    for path in paths:
        try:
            res = run(path)
        except Exception as exc:  # the notebook is left as it was
            failed += 1
            print(f"| {path.name} | failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                  "| | |", flush=True)
            continue
        print(f"| {path.name} | {res['seconds']:.0f} | {res['images']} | {res['stderr']} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
