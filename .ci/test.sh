#!/usr/bin/env bash
# The test command of the README: ruff (lint + format check), then pytest on the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NORMIA_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
ruff check .
ruff format --check .
python -m pytest "$@"
