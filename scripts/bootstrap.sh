#!/usr/bin/env bash
# Builds .venv/ (the tap, Meltano and the dev tools, pinned by uv.lock) with uv.
#
# Works on a stock Debian/Ubuntu Python 3.11+ (PEP 668 "externally managed", no uv): when uv is
# not on PATH it is installed into a private venv, .tools/, never into the system Python.
# Needs only `python3` with its `venv` module (Debian: `apt install python3-venv`).
# After it, `source .venv/bin/activate` puts tap-conversations, meltano and uv on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v uv >/dev/null 2>&1; then
    uv=uv
else
    uv=.tools/bin/uv
    if [ ! -x "$uv" ]; then
        python=${PYTHON:-python3}
        "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' 2>/dev/null || {
            echo "bootstrap: need Python 3.11+ as '$python' (set PYTHON=/path/to/python3.11)" >&2
            exit 1
        }
        "$python" -m venv .tools || {
            echo "bootstrap: '$python -m venv' failed; on Debian/Ubuntu: apt install python3-venv" >&2
            exit 1
        }
        .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.9,<1"
    fi
fi
# With PYTHON set, .venv is built on that interpreter too (CI: the stock /usr/bin/python3).
"$uv" sync --frozen --quiet ${PYTHON:+--python "$PYTHON"} "$@"
