#!/usr/bin/env bash
# One script for a GPU machine, sized to finish in under 8 minutes of command on one H200, everything written into
# one results folder (default benchmarks/results/<device>-<date>/), ending with one screen: each target of issue 15,
# its figure and PASS / MISS / NOT MEASURED (also the top of summary.md).
#
#   bash benchmarks/gpu/run_all.sh [RESULTS_DIR]
#   STEPS="train float8" bash benchmarks/gpu/run_all.sh DIR   # only these steps (a re-run after a fix)
#
# Steps, most valuable figures first (hard time limit each; all limits together stay under BUDGET_S = 480 s, and a
# step never gets more than what is left of it):
#   kernels       normia's Triton kernels vs eager and torch.compile, small to large shapes: % of copy bandwidth,
#                 speed-up over eager, fused linear cross-entropy memory and time at vocab 128k
#   train         plain PyTorch loop, bf16, 125M/350M/1B: MFU, tokens/s, peak memory, syncs per step, Wh per Mtok
#   normia-train  `normia train` itself, ~125M preset: kernels=triton vs torch (loss curves), Ctrl-C + resume,
#                 trainer=fsdp on one GPU (benchmarks/gpu/normia_train.py)
#   float8        1B, bf16 vs float8 (torchao), each transformer block compiled (torch kernels)
#   gpu-tests     pytest -m gpu
#   (train-compile and scaling: only when named in STEPS, or scaling on a machine with several GPUs)
#
# Needs python3 with torch, triton, numpy, lightning (matplotlib for plots, nvidia-ml-py for energy). What the GPU
# machine lacks (hydra-core, omegaconf, antlr4, submitit, torchao) comes as wheels in .whl/, made by
# benchmarks/gpu/fetch_wheels.sh and installed below into /tmp/site. A benchmark stopped by its limit keeps the
# rows it measured (status "interrupted"). When $OUT is set (the device tool's output folder), a tarball of the
# results folder, the log and summary.md are copied there. Commit the folder afterwards.
#
# On a machine without a GPU every step runs at tiny sizes (the GPU tests skip): `bash benchmarks/gpu/run_all.sh
# /tmp/x` checks the script itself end to end.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then  # the device README's line; a failure here is said, not fatal
    SITE=${NORMIA_SITE:-/tmp/site}
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl &&
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" || echo "warning: installing .whl/ failed" >&2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
read -r SLUG GPUS < <($PY -c "import torch; from normia.bench.device import describe, resolve_device
print(describe(resolve_device('auto')).slug, torch.cuda.device_count())")
if [ -z "${SLUG:-}" ] || [ -z "${GPUS:-}" ]; then
    echo "error: $PY cannot import torch and normia; set PYTHON=/path/to/a/python with torch (e.g. .venv/bin/python)" >&2
    exit 2
fi
RESULTS=${1:-benchmarks/results/$SLUG-$(date -u +%F)}
mkdir -p "$RESULTS"
LOG="$RESULTS/run_all.log"
: >>"$LOG"
START=$(date +%s)

if [ "$SLUG" = cpu ]; then
    BUDGET_S=${BUDGET_S:-1200}  # a 2-core CPU compiles slowly; nothing is timed against a target here
    DEFAULT_STEPS="kernels train normia-train float8 gpu-tests scaling checkpoint"
else
    BUDGET_S=${BUDGET_S:-480}
    DEFAULT_STEPS="kernels train normia-train float8 gpu-tests"
    [ "$GPUS" -gt 1 ] && DEFAULT_STEPS="$DEFAULT_STEPS scaling"
    DEFAULT_STEPS="$DEFAULT_STEPS checkpoint"
fi
STEPS=${STEPS:-$DEFAULT_STEPS}

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a hard limit (capped by what is left of BUDGET_S), log it
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    local left=$((BUDGET_S - ($(date +%s) - START) - 10))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "== $name: not run, the ${BUDGET_S}s budget is spent" | tee -a "$LOG"
        return 0
    fi
    echo "== $name: limit ${limit}s, started at +$(($(date +%s) - START))s" | tee -a "$LOG"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "== $name: exit $rc at +$(($(date +%s) - START))s" | tee -a "$LOG"
}

{
    nvidia-smi || true
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
    $PY -m pip list 2>/dev/null | grep -i -E '^(torch|triton|numpy|matplotlib|nvidia-ml-py|liger|lightning)' || true
    $PY -c "import hydra, omegaconf; print('hydra', hydra.__version__, 'omegaconf', omegaconf.__version__)" || true
    $PY -c "import torchao; print('torchao', torchao.__version__)" 2>&1 | tail -1 || true
} >"$RESULTS/environment.txt" 2>&1

# Sizes for one H200. On a machine without a GPU the same steps run at tiny sizes, which checks the script itself.
if [ "$SLUG" = cpu ]; then
    KERNELS=(--kernels rms_norm swiglu --shapes 64x128 --min-time 0.02 --threads 1)
    TRAIN=(--sizes tiny --compile off --steps 3 --warmup 1 --threads 1 --dtype bf16)  # bf16 autocast, as on a GPU
    FLOAT8=(--sizes tiny --float8 both --kernels-backend torch --steps 2 --warmup 1 --threads 1 --dtype bf16)
    NORMIA_TRAIN=(--tiny --budget 400)
    TRAIN_COMPILE=(--sizes tiny --compile on --steps 3 --warmup 1 --threads 1)
    SCALING=(--size tiny --ranks 1 2 --steps 3 --warmup 1)
    CHECKPOINT=(--presets tiny --repeats 1 --world 2 --backend gloo)
else
    KERNELS=(--providers triton eager compile liger --min-time 0.1 --time-budget 70 --shapes
        rms_norm:4096x1024 rms_norm:16384x4096 rms_norm:32768x8192
        add_rms_norm:4096x1024 add_rms_norm:16384x4096 add_rms_norm:32768x8192
        layer_norm:4096x1024 layer_norm:32768x8192 swiglu:4096x4096 swiglu:16384x14336
        apply_rope:8x32x4096x128 cross_entropy:8192x32000 cross_entropy:16384x128256
        fused_linear_cross_entropy:8192x4096x128256)
    TRAIN=(--sizes 1b 125m 350m --compile off --steps 10 --warmup 3 --time-budget 30)
    FLOAT8=(--sizes 1b --compile blocks --float8 both --kernels-backend torch --steps 8 --warmup 3)
    NORMIA_TRAIN=(--budget 125)
    TRAIN_COMPILE=(--sizes 1b --compile on --steps 10 --warmup 3)
    SCALING=(--size 125m --steps 10 --warmup 3)
    CHECKPOINT=(--presets 1b --repeats 1 --world 1 --backend nccl)  # one GPU lent: sync vs async on one rank
fi

step kernels 90 $PY -m normia.cli bench kernels "${KERNELS[@]}" --out "$RESULTS"
step train 55 $PY -m normia.cli bench train "${TRAIN[@]}" --out "$RESULTS"
step normia-train 140 $PY benchmarks/gpu/normia_train.py "${NORMIA_TRAIN[@]}" --out "$RESULTS"
step float8 100 $PY -m normia.cli bench train --name train_float8 "${FLOAT8[@]}" --out "$RESULTS"
# Modules that import what the GPU machine lacks fail to collect there: carry on.
step gpu-tests 55 $PY -m pytest -m gpu tests/ -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$RESULTS/gpu-tests.xml"
step train-compile 110 $PY -m normia.cli bench train --name train_compile "${TRAIN_COMPILE[@]}" --out "$RESULTS"
step scaling 30 $PY -m normia.cli bench scaling "${SCALING[@]}" --out "$RESULTS"
# Last: it is the newest step, so a run short of time loses only it (1B: ~15 GB of weights and AdamW state).
step checkpoint 90 $PY benchmarks/checkpoint.py "${CHECKPOINT[@]}" --out "$RESULTS"

echo "== total $(($(date +%s) - START))s" | tee -a "$LOG"
$PY benchmarks/summarize.py "$RESULTS" >"$RESULTS/summary.md" 2>>"$LOG"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    tar czf "$OUT/results.tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
    cp "$LOG" "$RESULTS/summary.md" "$OUT/"
fi
$PY benchmarks/summarize.py "$RESULTS" --targets
