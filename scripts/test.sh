#!/usr/bin/env bash
# Installs the project and every dependency group into .venv (see scripts/bootstrap.sh: no uv
# or writable system Python needed) and runs the whole test suite: lint, format check, type
# check, then pytest on every core (unit, sandbox, standard SDK tap tests, the Meltano commands
# of the README and docs, the end-to-end pipelines; a module's tests stay on one worker).
# Extra arguments go to pytest; pytest running no test at all (exit code 5) fails too.
# The developer's fast loop, once this has run: `.venv/bin/pytest -n auto -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh --all-groups
# shellcheck disable=SC1091
source .venv/bin/activate

ruff check .
ruff format --check .
mypy
pytest -n auto --dist loadfile "$@"
