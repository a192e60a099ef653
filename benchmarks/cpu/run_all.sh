#!/usr/bin/env bash
# The CPU figures committed under benchmarks/results/cpu-<date>/: kernels (reference, eager, compile), training and
# 2-process gloo scaling of small LLaMA models, normia train's framework overhead per step (at the quickstart's step
# and at a ~30 ms step), the whole quickstart process against a plain script (issue 15) and the CLI's start-up time
# (issue 2). About 25 minutes on 2 shared cores.
#
#   bash benchmarks/cpu/run_all.sh [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
R=${1:-benchmarks/results/cpu-$(date -u +%F)}
mkdir -p "$R"
$PY -m normia.cli bench kernels --providers reference eager compile --threads 1 --time-budget 600 --out "$R"
$PY -m normia.cli bench train --sizes tiny small --compile both --steps 10 --warmup 3 --threads 1 --out "$R"
$PY -m normia.cli bench scaling --size small --ranks 1 2 --steps 10 --warmup 3 --out "$R"
$PY benchmarks/train_overhead.py --out "$R"
$PY benchmarks/train_overhead.py --epochs 6 --repeats 4 --overrides 'model.hidden=[1536,1536]' data.batch_size=128 \
    --name train_overhead_step30ms --out "$R"
$PY benchmarks/whole_process.py --out "$R"
$PY benchmarks/startup.py --out "$R"
