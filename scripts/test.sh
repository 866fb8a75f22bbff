#!/usr/bin/env bash
# Sets up a virtualenv in .venv (if missing), installs tapdb-core with its dev
# and local extras, then runs the linters, the type checker and the test suite.
# The tests start their own throwaway PostgreSQL (or use $TAPDB_TEST_DSN).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k lineage -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,local]"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
