#!/usr/bin/env bash
# Move the tested set forward: build a scratch venv with the newest versions pyproject.toml allows, run the whole
# suite (ruff + pytest, as .ci/test.sh) in it, and only if it passes write .ci/constraints-py<X.Y>.txt from that
# venv, printing what moved. A failing suite leaves the lock as it was and prints what would have moved, so the
# upgrade that broke something is named. torch and what its build fixes (triton, nvidia-*) are not locked: the
# set-up's NORMIA_TORCH_VERSION is. Takes as long as the suite (~25 min on 2 cores).
#   bash .ci/refresh-lock.sh            # then commit .ci/constraints-py*.txt with the suite's result
# NORMIA_LOCK_VENV=DIR keeps the scratch venv there (default: a new temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
LOCK=.ci/constraints-py$PYV.txt
WORK=$(mktemp -d /tmp/normia-lock.XXXXXX)
SCRATCH=${NORMIA_LOCK_VENV:-$WORK/venv}
[ -n "${NORMIA_LOCK_VENV:-}" ] || trap 'rm -rf "$WORK"' EXIT

echo "refresh-lock: scratch venv $SCRATCH, newest allowed versions"
NORMIA_VENV=$SCRATCH NORMIA_CONSTRAINTS=none bash .ci/setup-venv.sh

"$SCRATCH/bin/python" - "$SCRATCH" "$PYV" >"$WORK/candidate.txt" <<'EOF'
"""The scratch venv's distributions as name==version lines, less normia and the torch build's own packages."""
import importlib.metadata as md
import sys
from datetime import date

import torch

NOT_LOCKED = ("torch", "triton", "pytorch-triton-rocm", "normia")
rows = {}
for dist in md.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    if not name or name in NOT_LOCKED or name.startswith(("nvidia-", "cuda-")):
        continue
    rows[name] = dist.version
print(f"# Tested set for Python {sys.argv[2]}, written by .ci/refresh-lock.sh on {date.today()} after the whole suite")
print(f"# passed with these versions and torch {torch.__version__} (NORMIA_TORCH_VERSION in .ci/setup-venv.sh).")
print("# .ci/setup-venv.sh installs exactly these. Do not edit by hand: run .ci/refresh-lock.sh.")
for name in sorted(rows):
    print(f"{name}=={rows[name]}")
EOF

moved() {  # what differs between the current lock and the candidate
  python3 - "$LOCK" "$WORK/candidate.txt" <<'EOF'
import sys
from pathlib import Path

def pins(path):
    p = Path(path)
    if not p.exists():
        return {}
    return dict(l.split("==", 1) for l in p.read_text().splitlines() if "==" in l and not l.startswith("#"))

old, new = pins(sys.argv[1]), pins(sys.argv[2])
lines = [f"  {n}: {old.get(n, '-')} -> {new.get(n, '-')}" for n in sorted(old.keys() | new.keys()) if old.get(n) != new.get(n)]
print("\n".join(lines) if lines else "  nothing moved")
EOF
}

echo "refresh-lock: running the suite in the scratch venv"
start=$(date +%s)
if NORMIA_VENV=$SCRATCH bash .ci/test.sh; then
  echo "refresh-lock: suite passed in $(($(date +%s) - start)) s; $LOCK now pins $(grep -c '==' "$WORK/candidate.txt") packages. Moved:"
  moved
  cp "$WORK/candidate.txt" "$LOCK"
else
  echo "refresh-lock: the suite FAILED with the newest allowed versions; $LOCK left as it was. What would have moved:"
  moved
  exit 1
fi
