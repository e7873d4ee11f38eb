#!/usr/bin/env bash
# Installs the project and its dev tools into .venv (with uv) and runs the whole test suite:
# lint, format check, type check, then pytest (unit, sandbox, standard SDK tap tests and the
# end-to-end Meltano pipelines). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.9,<1"
uv sync --frozen --quiet

uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
uv run --frozen pytest "$@"
