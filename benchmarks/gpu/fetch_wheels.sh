#!/usr/bin/env bash
# Download, on a machine with a package index, the wheels `normia train` (and the float8 row of the GPU script) needs
# that the GPU machine lacks, into .whl/ (ignored by git). The GPU machine (device kind nvidia-h200: CPython 3.12,
# torch 2.11, lightning, numpy, matplotlib, nvidia-ml-py...; no package index) then installs them with
# benchmarks/gpu/run_all.sh's `pip install --target /tmp/site` line. Then checks the set:
#   - closure: every requirement of every wheel is on the GPU machine (its list in check_wheels.py) or shipped;
#   - `normia train` (tiny, CPU) in a process that refuses what the GPU machine would miss.
#
#   bash benchmarks/gpu/fetch_wheels.sh        # ~4 MiB; pass .whl in the device tool's carry list
#
# Not shipped: MLflow. Its closure (flask, sqlalchemy, alembic, cryptography, fastapi, pydantic, opentelemetry,
# databricks-sdk, docker, ...) is ~30 packages; the GPU script runs normia train with logger=none, whose done.json
# holds the throughput, and benchmarks/gpu/train_probe.py records the loss curve and peak memory.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .git/info .whl
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
PLATFORMS=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64)
# One version of each (two stop the whole install there): the versions run here with torch 2.13 / lightning 2.6.6.
$PY -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" -d .whl \
    hydra-core==1.3.8 omegaconf==2.3.1 submitit==1.5.4 torchao==0.18.0 2>&1 | grep -v 'is ignored' || true
# omegaconf needs antlr4-python3-runtime==4.9.*, published as a source archive only: build its (pure-Python) wheel.
ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 ||
    $PY -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 2>&1 | grep -v 'is ignored' || true
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" $PY benchmarks/gpu/check_wheels.py .whl --run >/tmp/check_wheels.log 2>&1 ||
    { tail -20 /tmp/check_wheels.log; exit 1; }
grep -E 'wheels,|closure|exit' /tmp/check_wheels.log
ls -1 .whl
du -sh .whl
