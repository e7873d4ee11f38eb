"""Progress lines on stderr at a steady interval, a summary at the end, stdout untouched."""

from __future__ import annotations

import json
import logging
import re
import typing as t

from tap_conversations.progress import Progress
from tests.helpers import run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def test_progress_lines_and_summary(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(pe_conversations=60, pe_plans=2, pe_max_limit=10, latency_ms=40)
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "max_concurrency": 2,
        "progress_interval_seconds": 0.3,
    }
    completed = run_cli([], config, tmp_path)
    assert completed.returncode == 0, completed.stderr

    progress = [line for line in completed.stderr.splitlines() if "Progress " in line]
    details = [line for line in progress if "perform_engage_conversation_details:" in line]
    assert len(details) >= 2, "expected several progress lines during a ~1.5 s run"
    assert len(progress) < 60, "progress must not be logged per record"
    counts = [int(re.search(r": ([\d,]+)/60 records", line)[1]) for line in details]  # type: ignore[index]
    assert counts == sorted(counts)
    assert all(re.search(r"[\d,]+/s, [\d,]+ requests, \d+ retries", line) for line in details)

    summary = completed.stderr.split("Sync summary:")[1]
    row = next(line for line in summary.splitlines() if "perform_engage_conversations " in line)
    # records, requests (pages of 10, each after the first starting one record early), retries
    assert row.split()[1:4] == ["60", "7", "0"]

    for line in completed.stdout.splitlines():
        assert json.loads(line)["type"] in {"SCHEMA", "RECORD", "STATE"}


def test_a_records_counter_adds_to_the_same_stream_as_add() -> None:
    progress = Progress(logging.getLogger("tests.progress"), interval=0)
    count = progress.records_counter("s")
    count(3)
    progress.add("s", records=2, requests=1)
    count(1)
    summary = progress.summary().splitlines()
    assert summary[1].split()[:4] == ["s", "6", "1", "0"]
