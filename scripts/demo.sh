#!/usr/bin/env bash
# The main job on the bundled sandbox, no credentials needed: installs everything, starts the
# sandbox (all three vendor APIs on 127.0.0.1), then runs
#     meltano run --full-refresh tap-conversations target-csv
# and leaves one CSV file per stream in output/csv/. Extra arguments go to the sandbox
# (`python -m sandbox --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
meltano install

workdir=$(mktemp -d)
trap 'kill "${sandbox_pid:-}" 2>/dev/null || true; rm -rf "$workdir"' EXIT
python -m sandbox --port 0 --env-file "$workdir/sandbox.env" "$@" &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$workdir/sandbox.env" ] && break; sleep 0.1; done
[ -s "$workdir/sandbox.env" ] || { echo "sandbox did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$workdir/sandbox.env"

rm -rf output/csv
meltano run --full-refresh tap-conversations target-csv

echo
echo "Rows written (header excluded):"
for f in output/csv/*.csv; do
    rows=$(python -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=""))) - 1)' "$f")
    printf '  %-45s %6d\n' "$(basename "$f")" "$rows"
done
