#!/usr/bin/env bash
# Create .venv with normia (editable) and its test tools, from nothing but python3.
# torch: a CPU build on machines without an NVIDIA GPU (never the multi-GB CUDA build), a CUDA build where
# nvidia-smi exists. A CPU wheel found in pip's find-links (as on these project machines) is used as it is;
# elsewhere the CPU build comes from PyTorch's CPU wheel index (NORMIA_TORCH_INDEX overrides it).
# AMD GPUs (rocm-smi exists, nvidia-smi does not, e.g. Austral's MI210 nodes): a ROCm build of torch from PyTorch's
# ROCm wheel index (NORMIA_TORCH_INDEX overrides it; pick the index of your ROCm release whose wheels include
# NORMIA_TORCH_VERSION), and Triton's ROCm build (pytorch-triton-rocm) kept over PyPI's triton.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NORMIA_VENV:-.venv}
TORCH_VERSION=${NORMIA_TORCH_VERSION:-2.13.0}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip

ROCM=""
if command -v rocm-smi >/dev/null 2>&1 && ! command -v nvidia-smi >/dev/null 2>&1; then
  ROCM=yes
fi
ROCM_INDEX=${NORMIA_TORCH_INDEX:-https://download.pytorch.org/whl/rocm6.4}

if ! "$PY" -c "import torch" 2>/dev/null; then
  local_cpu_wheel=""
  for dir in ${PIP_FIND_LINKS:-}; do
    ls "$dir"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1 && local_cpu_wheel=yes
  done
  if [ -n "$ROCM" ]; then
    "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$ROCM_INDEX"
  elif command -v nvidia-smi >/dev/null 2>&1 || [ -n "$local_cpu_wheel" ]; then
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
  else
    "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "${NORMIA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"$PY" -m pip install -q -e ".[dev,search,hf]"  # the optional extras the tests exercise
# Not the float8 extra: torchao 0.18 prints C-extension load failures on import with this CPU torch, and peft
# imports it when present, so every LoRA error would come with 4 lines of noise. Its emulated conversion tests skip.
if [ -n "$ROCM" ]; then
  # normia's `triton` requirement brings PyPI's triton, which overwrites the ROCm torch's own Triton (same import
  # name, distribution pytorch-triton-rocm): put back the version that this torch build names.
  rocm_triton=$("$PY" -c "from importlib.metadata import requires
print(next((r.split(';')[0].replace(' ', '') for r in requires('torch') or [] if r.startswith('pytorch-triton-rocm')), ''))")
  if [ -n "$rocm_triton" ]; then
    "$PY" -m pip uninstall -q -y triton
    "$PY" -m pip install -q --force-reinstall --no-deps "$rocm_triton" --index-url "$ROCM_INDEX"
  fi
fi
"$PY" -c "import torch, normia; print(f'normia {normia.__version__} ready in $VENV (torch {torch.__version__})')"
