"""What a new process pays before its first draw: the first fit, cold and warm on-disk compile cache.

Runs the test suite's tiny fit (``tests/conftest.py``: ``TINY_FIT`` on
``make_tiny_frame()``) in fresh processes, each the first fit of its
process, in this order: cold cache with a progress reporter, then warm cache
with a reporter, then warm without one. Prints one row per process: the
fit's seconds, the programs XLA produced and how many of them were read
from disk (the rest were compiled). ::

    python benchmarks/compile_cache.py [--cache-dir DIR] [--out FILE]

A program read from disk is cheap; one compiled again costs seconds. Every
program of the second and third rows should come from disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO_ROOT, BenchmarkParser, Transcript, markdown_header, markdown_row

COLUMNS = ("process", "cache", "progress", "first fit s", "programs", "read from disk")

# Run with ``python -c`` from the repository's root, so ``tests`` (a package) is importable from there.
_CHILD = """
import json, sys, time, warnings
import jax.monitoring
seen = {"programs": 0, "from_disk": 0}
def timed(name, secs, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
        seen["programs"] += 1
    elif name == "/jax/compilation_cache/cache_retrieval_time_sec":
        seen["from_disk"] += 1
jax.monitoring.register_event_duration_secs_listener(timed)
import bayes_sloth as bs
bs.configure()
from tests.conftest import TINY_FIT, make_tiny_frame
progress = (lambda *a: None) if sys.argv[1] == "on" else False
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bs.SkillsLaw(**TINY_FIT, progress=progress).fit(make_tiny_frame())
print(json.dumps(dict(seen, seconds=time.perf_counter() - t0)))
"""


def main(argv=None) -> int:
    ap = BenchmarkParser(__doc__, __file__)
    ap.add_argument("--cache-dir", default=None, help="an empty folder for the cache (default: a new temporary one)")
    ap.add_out()
    args = ap.parse(argv)
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="bayes-sloth-xla-"))
    if cache.exists() and any(cache.iterdir()):
        raise SystemExit(f"{cache} is not empty: the first row must start from a cold cache")
    env = dict(os.environ, BAYES_SLOTH_XLA_CACHE=str(cache))
    with Transcript(args.out, args.command) as out:
        out.print(markdown_header(COLUMNS))
        for i, (state, progress) in enumerate([("cold", "on"), ("warm", "on"), ("warm", "off")], 1):
            run = subprocess.run([sys.executable, "-c", _CHILD, progress], env=env, cwd=REPO_ROOT,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(run.stderr[-2000:])
            r = json.loads(run.stdout.strip().splitlines()[-1])
            out.print(markdown_row([i, state, progress, f"{r['seconds']:.1f}", r["programs"], r["from_disk"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
