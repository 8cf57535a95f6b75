#!/usr/bin/env bash
# The GPU check: everything cogmeta claims about CUDA, run in one time box (under 10 minutes) on a CUDA
# machine with a fresh install, written to one results folder.
#
#     bash benchmarks/gpu_check.sh [RESULTS_DIR]      # default: benchmarks/results/gpu-check
#
# Stages (each in its own time limit, so one failure or hang costs only its own stage):
#   environment    GPU, driver, framework versions and the devices each framework sees
#   parity         the parity suite with JAX on the GPU (PyTorch stays the CPU reference), TF32 off
#   parity-report  worst normalized JAX-vs-PyTorch error per layer, TF32 off ('highest') and on
#   cuda-graph     PyTorch's captured CUDA-graph step vs its eager step on the GPU vs the CPU
#   suite          benchmarks/suite.py --preset gpu-check: seeds 1 -> 2048 in one JAX program at the tutorial's
#                  size (H 32, B 8, T 7) and 1 -> 256 at H 64, B 128, T 64, PyTorch one seed on CUDA with graphs,
#                  larger widths; its table ends with the GPU goals and the most the device's float32 peak allows
#   add-jump       a short JAX run of Lake (2019)'s add-jump paper config (100 episodes: its first call compiles for
#                  about a minute), with its episodes per second
#   executable-store  `cogmeta train --until-kl` twice on a fresh cache: the second run loads its training program
#                  from the executable store (jax_impl/executable_store.py) and writes the same weights, bit for bit;
#                  its held-out checks run inside the training call on the GPU (a lax.while_loop, Trainer.run_checked)
# summary.txt lists each stage's exit status and seconds. Python: $PYTHON, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-benchmarks/results/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$RESULTS"
: > "$RESULTS/summary.txt"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SCRATCH=$(mktemp -d)

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to RESULTS/NAME.log
  local name=$1 limit=$2 began rc
  shift 2
  began=$(date +%s)
  echo "== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc, $(( $(date +%s) - began )) s" | tee -a "$RESULTS/summary.txt"
  tail -n 25 "$RESULTS/$name.log"
}

stage environment 30 bash -c "nvidia-smi; $PY - <<'EOF'
import platform, jax, torch, flax, optax
print('python', platform.python_version(), 'torch', torch.__version__, 'jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__)
print('jax devices', jax.devices(), 'torch cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
EOF"

# JAX's float32 matmuls on the GPU: 'highest' is true float32 (TF32 off), 'tensorfloat32' allows TF32
WORKERS=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")  # pytest-xdist where installed
# the whole suite, not -x: one failure must not hide the others (the bitwise claims are CPU's only since 2026-12-08:
# parity_tests/_compare.py::assert_bitwise_on_cpu; the 2026-12-04 run needed a second call to see all of its 9 failures)
stage parity 100 env JAX_DEFAULT_MATMUL_PRECISION=highest $PY -m pytest parity_tests -q $WORKERS -p no:cacheprovider
stage parity-report-tf32-off 75 env JAX_DEFAULT_MATMUL_PRECISION=highest $PY parity_tests/report.py
stage parity-report-tf32-on 75 env JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32 $PY parity_tests/report.py
stage cuda-graph 45 $PY benchmarks/cuda_graph_check.py --out "$RESULTS" --steps 300
stage suite 240 $PY benchmarks/suite.py --preset gpu-check --repeats 3 --torch-threads 1 --out "$RESULTS"
stage add-jump 90 $PY -m cogmeta train --preset seq2seq-add-jump-paper --backend jax --steps 100 \
  --summary-tasks 0 --no-progress --out "$SCRATCH/add-jump"
# XLA's deterministic GPU reductions, so that two processes can be compared bit for bit (the flag is in the key of both)
stage executable-store 60 bash -c "
export COGMETA_JAX_CACHE=$SCRATCH/cache XLA_FLAGS=--xla_gpu_deterministic_ops=true
for run in first second; do
  $PY -m cogmeta train --task gaussian --backend jax --until-kl 0.001 --no-figures --no-progress --summary-tasks 0 \
    --out $SCRATCH/store-\$run | grep -A1 'time to quality' || exit 1
done
ls -l $SCRATCH/cache/executables
$PY - <<'EOF'
import sys
from safetensors.numpy import load_file
first, second = (load_file(f'$SCRATCH/store-{run}/weights.safetensors') for run in ('first', 'second'))
differ = [name for name in first if (first[name] != second[name]).any()]
print('weights bit for bit the same' if not differ else f'weights differ: {differ}')
sys.exit(1 if differ else 0)
EOF"
rm -rf "$SCRATCH"
echo "results in $RESULTS"; cat "$RESULTS/summary.txt"
