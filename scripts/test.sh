#!/usr/bin/env bash
# Installs the project and its dev tools into .venv (see scripts/bootstrap.sh: no uv or
# writable system Python needed) and runs the whole test suite: lint, format check, type
# check, then pytest (unit, sandbox, standard SDK tap tests, the Meltano commands of the README
# and the end-to-end pipelines). Extra arguments go to pytest; pytest running no test at all
# (exit code 5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate

ruff check .
ruff format --check .
mypy
pytest "$@"
