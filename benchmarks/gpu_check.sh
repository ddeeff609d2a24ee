#!/usr/bin/env bash
# Issue 17, item 6: the GPU checks, as one short script for a lent GPU machine (run from the repository root;
# $OUT is where results go). The machine has JAX with CUDA, NumPyro, pandas, xarray and matplotlib but no ArviZ:
# the missing pure-Python wheels travel in .whl/ (see the device tool's notes), installed to /tmp/site.
#   a. the real table, default law, K=3, draws="auto", seed 0, whole process: cold (compiles), then warm cache
#   b. the same with 16 chains (vectorized on the GPU: NumPyro's default there)
#   c. the largest-size question: scaling.py at 1000 x 12 with draws="auto" and a short cap
# Each step has its own timeout, so a slow one cannot take the others' time.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.txt" 2>&1 || { cat "$OUT/pip.txt"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BAYES_SLOTH_XLA_CACHE=/tmp/xc
now() { python3 -c 'import time; print(f"{time.time():.2f}")'; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, numpyro, arviz; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__, 'arviz', arviz.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
step() {  # name, timeout, command...
    local name=$1 limit=$2; shift 2
    local t0; t0=$(now)
    timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    local rc=$?
    echo "$name rc=$rc wall=$(python3 -c "print(round($(now) - $t0, 1))") s"
    tail -c 600 "$OUT/$name.out"; echo; tail -n 3 "$OUT/$name.err"
}
step fit_cold 180 python3 -m bayes_sloth.cli fit --json --draws auto --seed 0
step fit_warm 120 python3 -m bayes_sloth.cli fit --json --draws auto --seed 0
step fit_16chains 110 python3 -m bayes_sloth.cli fit --json --draws auto --chains 16 --seed 0
step scaling_1000x12 110 python3 benchmarks/scaling.py --sizes 1000x12 --methods nuts --draws auto --warmup 1000 --cap 100
