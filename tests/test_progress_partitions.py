"""Progress keeps reporting across a stream's partitions (issue 17, row 20)."""

from __future__ import annotations

import re
import typing as t

from tests.helpers import run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def test_progress_covers_every_respondent_project(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(respondent_conversations=60, respondent_projects=2, latency_ms=60)
    first, second = sandbox.data.respondent_project_ids
    in_first = sum(
        c["metadata"]["projectId"] == first for c in sandbox.data.respondent_conversations
    )
    config = {
        "respondent": {**sandbox.tap_config()["respondent"], "project_ids": [first, second]},
        "progress_interval_seconds": 0.2,
    }
    config["respondent"]["page_size"] = 4
    completed = run_cli([], config, tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]

    lines = [
        line
        for line in completed.stderr.splitlines()
        if "Progress respondent_conversations:" in line
    ]
    counts = [
        int(re.search(r": ([\d,]+)(/[\d,]+)? records", line)[1].replace(",", "")) for line in lines
    ]  # type: ignore[index]
    # ~15 pages of 60 ms in two partitions: progress goes on into the second one.
    assert counts, completed.stderr[-2000:]
    assert max(counts) > in_first, (in_first, counts)
