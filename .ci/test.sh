#!/usr/bin/env bash
# The test command of the README: ruff (lint + format check), then pytest on the whole suite.
# `python -m pytest` on purpose: the repository root is first on sys.path, as for anyone who starts Python in a
# checkout, so the suite also proves that nothing at the root shadows an installed distribution (issue 21).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NORMIA_VENV:-.venv}
case $VENV in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"
ruff check .
ruff format --check .
python -m pytest "$@"
