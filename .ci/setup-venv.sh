#!/usr/bin/env bash
# Create .venv with normia (editable) and its test tools, from nothing but python3, with the tested versions.
# One line per stage, with its time.
#
# Versions: .ci/constraints-py<X.Y>.txt is the set the whole suite passed with (written by .ci/refresh-lock.sh, never
# by hand); pip installs exactly those. Without a lock for this Python, or with NORMIA_CONSTRAINTS=none (what the
# refresh script uses), the newest versions pyproject.toml allows are installed, and this says so.
# torch: a CPU build on machines without an NVIDIA GPU (never the multi-GB CUDA build), a CUDA build where
# nvidia-smi exists. A CPU wheel found in pip's find-links (as on these project machines) is used as it is;
# elsewhere the CPU build comes from PyTorch's CPU wheel index (NORMIA_TORCH_INDEX overrides it). torch and the
# packages whose version a torch build fixes (triton, nvidia-*) are not in the lock: NORMIA_TORCH_VERSION is.
# AMD GPUs (rocm-smi exists, nvidia-smi does not, e.g. Austral's MI210 nodes): a ROCm build of torch from PyTorch's
# ROCm wheel index (NORMIA_TORCH_INDEX overrides it; pick the index of your ROCm release whose wheels include
# NORMIA_TORCH_VERSION), and Triton's ROCm build (pytorch-triton-rocm) kept over PyPI's triton.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NORMIA_VENV:-.venv}
TORCH_VERSION=${NORMIA_TORCH_VERSION:-2.13.0}

stage_start=$(date +%s%N)
stage() {  # stage NAME TEXT: one line, with the seconds since the previous stage ended
  local now ds
  now=$(date +%s%N)
  ds=$(((now - stage_start) / 100000000))  # tenths of a second
  printf 'setup: %-7s %4d.%d s  %s\n' "$1" $((ds / 10)) $((ds % 10)) "$2"
  stage_start=$now
}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
PYV=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
stage venv "$VENV (Python $PYV, pip $("$PY" -m pip --version | cut -d' ' -f2))"

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
TORCH_BUILT=$("$PY" -W ignore -c "import torch; print(torch.__version__, 'CUDA ' + torch.version.cuda if torch.version.cuda else 'ROCm ' + torch.version.hip if getattr(torch.version, 'hip', None) else 'CPU build')" 2>/dev/null)
stage torch "torch $TORCH_BUILT"

LOCK=.ci/constraints-py$PYV.txt
CONSTRAINT_ARGS=()
if [ "${NORMIA_CONSTRAINTS:-}" = none ]; then
  lock_note="no lock (NORMIA_CONSTRAINTS=none): the newest versions pyproject.toml allows"
elif [ -f "$LOCK" ]; then
  USED_LOCK="$LOCK"
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None and getattr(torch.version, 'hip', None) is None else 1)"; then
    # a GPU build of torch pins its own triton: keep the lock's other versions
    USED_LOCK=$(mktemp)
    grep -v '^triton==' "$LOCK" >"$USED_LOCK"
  fi
  CONSTRAINT_ARGS=(-c "$USED_LOCK")
  lock_note="versions locked by $LOCK ($(grep -c '==' "$LOCK") packages)"
else
  lock_note="WARNING: no tested lock for Python $PYV ($LOCK): the newest versions pyproject.toml allows"
fi
"$PY" -m pip install -q "${CONSTRAINT_ARGS[@]}" -e ".[dev,search,hf]"  # the optional extras the tests exercise
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
stage normia "normia and extras dev, search, hf; $lock_note"

"$PY" -m pip check >/dev/null || { "$PY" -m pip check; exit 1; }
"$PY" -c "
import importlib.metadata as m
import normia
from normia.versions import check_supported_versions
check_supported_versions()
names = ['torch', 'lightning', 'hydra-core', 'mlflow', 'transformers', 'kernels', 'optuna']
print(f'normia {normia.__version__} ready: ' + ', '.join(f'{n} {m.version(n)}' for n in names))
" | { read -r line; stage check "pip check clean, versions in range; $line"; }
