#!/usr/bin/env bash
# One script for a GPU machine: the GPU tests, then `normia bench kernels|train|scaling`, sized to finish in under
# 8 minutes on one H200, everything written into one results folder (default benchmarks/results/<device>-<date>/).
#
#   bash benchmarks/gpu/run_all.sh [RESULTS_DIR]
#   STEPS="train train-compile" bash benchmarks/gpu/run_all.sh DIR   # only these steps (a re-run after a fix)
#
# Needs only python3 with torch, triton and numpy (matplotlib for plots, nvidia-ml-py for energy): no install, no
# hydra/mlflow/lightning. Each step has a hard time limit; a benchmark stopped by it keeps the rows it measured
# (status "interrupted" in its JSON). When $OUT is set (the device tool's output folder), a tarball of the results
# folder and the log are copied there. Commit the folder afterwards: git add benchmarks/results/<device>-<date>.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SLUG=$($PY -c "from normia.bench.device import describe, resolve_device; print(describe(resolve_device('auto')).slug)")
RESULTS=${1:-benchmarks/results/$SLUG-$(date -u +%F)}
mkdir -p "$RESULTS"
LOG="$RESULTS/run_all.log"
: >>"$LOG"
START=$(date +%s)

STEPS=${STEPS:-gpu-tests kernels train train-compile scaling}
step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a hard limit, log its output, report its exit code
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: limit ${limit}s, started at +$(($(date +%s) - START))s" | tee -a "$LOG"
    timeout --signal=TERM --kill-after=15 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "== $name: exit $rc at +$(($(date +%s) - START))s" | tee -a "$LOG"
}

{
    nvidia-smi || true
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
    $PY -m pip list 2>/dev/null | grep -i -E '^(torch|triton|numpy|matplotlib|nvidia-ml-py|liger)' || true
} >"$RESULTS/environment.txt" 2>&1

# Sizes for one H200 (< 8 min in all). On a machine without a GPU the same steps run at tiny sizes, which checks
# the script itself (the GPU tests then skip).
if [ "$SLUG" = cpu ]; then
    KERNELS=(--kernels rms_norm swiglu --shapes 64x128 --min-time 0.02 --threads 1)
    TRAIN=(--sizes tiny --compile off --steps 3 --warmup 1 --threads 1 --dtype bf16)  # bf16 autocast, as on a GPU
    TRAIN_COMPILE=(--sizes tiny --compile on --steps 3 --warmup 1 --threads 1)
    SCALING=(--size tiny --ranks 1 2 --steps 3 --warmup 1)
else
    KERNELS=(--providers triton eager compile liger --min-time 0.1 --time-budget 90 --shapes
        rms_norm:4096x1024 rms_norm:16384x4096 rms_norm:32768x8192
        add_rms_norm:4096x1024 add_rms_norm:16384x4096 add_rms_norm:32768x8192
        layer_norm:4096x1024 layer_norm:32768x8192 swiglu:4096x4096 swiglu:16384x14336
        apply_rope:8x32x4096x128 cross_entropy:8192x32000 cross_entropy:16384x128256
        fused_linear_cross_entropy:8192x4096x128256)
    TRAIN=(--sizes 125m 350m 1b --compile off --steps 10 --warmup 3 --time-budget 45)
    TRAIN_COMPILE=(--sizes 1b --compile on --steps 10 --warmup 3)
    SCALING=(--size 125m --steps 10 --warmup 3)
fi

# GPU tests only (-m gpu). Modules that import hydra/mlflow fail to collect on a bare GPU machine: carry on.
step gpu-tests 150 $PY -m pytest -m gpu tests/ -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$RESULTS/gpu-tests.xml"

# Kernels: small to large shapes of each (the full default sweep is in kernel_specs.py), normia Triton vs eager,
# torch.compile and Liger (if installed).
step kernels 120 $PY -m normia.cli bench kernels "${KERNELS[@]}" --out "$RESULTS"

# Training, bf16 autocast, normia kernels: the size sweep eagerly, then the ~1B LLaMA (Llama-3.2-1B shape) compiled,
# the MFU target's configuration.
step train 60 $PY -m normia.cli bench train "${TRAIN[@]}" --out "$RESULTS"
step train-compile 110 $PY -m normia.cli bench train --name train_compile "${TRAIN_COMPILE[@]}" --out "$RESULTS"

# Scaling: every GPU of this node (one rank per GPU, nccl). With one GPU this is the single-rank baseline.
step scaling 30 $PY -m normia.cli bench scaling "${SCALING[@]}" --out "$RESULTS"

echo "== total $(($(date +%s) - START))s" | tee -a "$LOG"
$PY benchmarks/summarize.py "$RESULTS" >"$RESULTS/summary.md" 2>>"$LOG"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    tar czf "$OUT/results.tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
    cp "$LOG" "$RESULTS/summary.md" "$OUT/"
fi
cat "$RESULTS/summary.md"
