#!/usr/bin/env bash
# From a fresh clone to a running tapdb: creates .venv, installs tapdb-core with
# the embedded PostgreSQL binaries (pgserver), starts a local cluster under
# ./postgres_data/dev, migrates, seeds the core template packs, and creates a
# 96-well plate to show its EUID, a few wells and the lineage. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[local]"
.venv/bin/tapdb --env dev bootstrap local --demo "$@"
