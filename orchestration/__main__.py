"""`python -m orchestration`: the partitions without Dagster (for Airflow, cron, a shell).

    python -m orchestration list           the partition names, one per line
    python -m orchestration run NAME       run one partition's Meltano job here and now

`run` uses the same runner as the Dagster asset (settings, state id, schema, system directory):
Meltano's log lines go to stderr, and a failure ends with the one-line reason and exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from orchestration.meltano_job import LogLine, from_environment
from orchestration.partitions import PartitionsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the partition names")
    run = commands.add_parser("run", help="run one partition's Meltano job")
    run.add_argument("name")
    args = parser.parse_args(argv)
    try:
        project, partitions = from_environment()
        if args.command == "list":
            print("\n".join(partitions.names))
            return 0
        partition = partitions.get(args.name)
    except PartitionsError as problem:
        print(problem, file=sys.stderr)
        return 2

    def show(line: LogLine) -> None:
        if not line.is_metric:
            print(f"[{line.source}] {line.text}", file=sys.stderr, flush=True)

    try:
        outcome = project.run(partition, partitions.target, show)
    except PartitionsError as problem:
        print(problem, file=sys.stderr)
        return 2
    if not outcome.succeeded:
        print(outcome.failure_reason(partitions.target), file=sys.stderr)
        return 1
    counts = ", ".join(f"{stream} {n}" for stream, n in sorted(outcome.records.items()))
    print(f"{partition.name}: {sum(outcome.records.values())} records ({counts})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
