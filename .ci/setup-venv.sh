#!/usr/bin/env bash
# Create .venv with normia (editable) and its test tools, from nothing but python3.
# torch: a CPU build on machines without an NVIDIA GPU (never the multi-GB CUDA build), a CUDA build where
# nvidia-smi exists. A CPU wheel found in pip's find-links (as on these project machines) is used as it is;
# elsewhere the CPU build comes from PyTorch's CPU wheel index (NORMIA_TORCH_INDEX overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NORMIA_VENV:-.venv}
TORCH_VERSION=${NORMIA_TORCH_VERSION:-2.13.0}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip

if ! "$PY" -c "import torch" 2>/dev/null; then
  local_cpu_wheel=""
  for dir in ${PIP_FIND_LINKS:-}; do
    ls "$dir"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1 && local_cpu_wheel=yes
  done
  if command -v nvidia-smi >/dev/null 2>&1 || [ -n "$local_cpu_wheel" ]; then
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
  else
    "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "${NORMIA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"$PY" -m pip install -q -e ".[dev,search,hf]"  # the optional extras the tests exercise
"$PY" -c "import torch, normia; print(f'normia {normia.__version__} ready in $VENV (torch {torch.__version__})')"
