"""Dagster code location: one partition of the `conversations` asset per vendor account.

    dagster asset materialize -m orchestration.definitions --select '*' --partition <name>
    dagster dev -m orchestration.definitions

Partitions come from the file named by `CONVERSATIONS_PARTITIONS` (default
`orchestration/partitions.yml`). Materializing a partition runs
`meltano run --state-id-suffix=<name> tap-conversations <target>` in the Meltano project
(`MELTANO_PROJECT_ROOT`, default this repository) with that partition's settings only, so each
partition has its own state and its own warehouse schema.
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation at runtime.
import sys

import dagster as dg

from orchestration.meltano_job import LogLine, from_environment
from orchestration.partitions import PartitionsError

PROJECT, PARTITIONS_FILE = from_environment()
PARTITIONS = dg.StaticPartitionsDefinition(PARTITIONS_FILE.names)


class LogForwarder:
    """Meltano's log lines into Dagster's: each distinct line once into the event log; METRIC
    lines and repeats (child streams log the same lines for every parent record) only to stderr,
    which Dagster keeps as the step's raw compute log, so the event log stays small."""

    def __init__(self, log: dg.DagsterLogManager) -> None:
        self._log = log
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, line: LogLine) -> None:
        message = f"[{line.source}] {line.text}"
        if line.is_metric or (line.source, line.text) in self._seen:
            print(message, file=sys.stderr, flush=True)
            return
        self._seen.add((line.source, line.text))
        if line.level in {"error", "critical"}:
            self._log.error(message)
        elif line.level == "warning":
            self._log.warning(message)
        else:
            self._log.info(message)


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="tap_conversations",
    kinds={"meltano", "postgres"},
    description="Conversation data of one vendor account (partition), loaded by Meltano.",
)
def conversations(context: dg.AssetExecutionContext) -> dg.MaterializeResult[None]:
    partition = PARTITIONS_FILE.get(context.partition_key)
    target = PARTITIONS_FILE.target
    try:
        outcome = PROJECT.run(partition, target, LogForwarder(context.log))
    except PartitionsError as problem:  # e.g. a `${VAR}` this run's environment lacks
        context.log.error(str(problem))
        raise dg.Failure(description=str(problem), allow_retries=False) from None
    about = {
        "provider": partition.provider,
        "schema": partition.schema,
        "state_id": outcome.state_id or "",
    }
    if not outcome.succeeded:
        reason = outcome.failure_reason(target)
        context.log.error(reason)
        raise dg.Failure(description=reason, metadata=about, allow_retries=False)
    records: dict[str, int] = dict(sorted(outcome.records.items()))
    return dg.MaterializeResult(
        metadata={
            **about,
            "records": dg.MetadataValue.json(records),
            "records_total": sum(records.values()),
            **{f"records/{stream}": count for stream, count in records.items()},
        }
    )


tap_conversations_job = dg.define_asset_job(
    "tap_conversations", selection=[conversations], partitions_def=PARTITIONS
)


@dg.schedule(
    job=tap_conversations_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    name="tap_conversations_daily",
)
def daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every partition once a day at 03:00 UTC, each its own run."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(run_key=f"{name}:{day}", partition_key=name) for name in PARTITIONS_FILE.names
    ]


defs = dg.Definitions(assets=[conversations], jobs=[tap_conversations_job], schedules=[daily])
