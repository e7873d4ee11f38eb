"""`--test` (what `meltano config test` runs): a list stream sends what its first page gives,
without scanning its whole list first, and moves no bookmark."""

from __future__ import annotations

import json
import typing as t

from tests.helpers import run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

LISTS = {  # list stream: the path of its list pages
    "onq_conversations": "/onq/api/external/conversations",
    "perform_engage_conversations": "/perform-engage/api/v2/conversations/",
    "respondent_conversations": "/respondent/v1/messaging/conversations",
}


def test_test_mode_reads_one_page_per_list_however_long_the_lists(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(
        onq_conversations=3_000,  # 3 pages of 1,000
        pe_conversations=3_000,  # 30 pages of 100
        pe_plans=3,
        respondent_conversations=3_000,  # 15 pages of 100 per project
        respondent_projects=2,
        latency_ms=50,  # a whole scan of every list would take seconds
    )
    completed = run_cli(["--test"], sandbox.tap_config(), tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]

    messages = [json.loads(line) for line in completed.stdout.splitlines()]
    records = [m["stream"] for m in messages if m["type"] == "RECORD"]
    for stream, path in LISTS.items():
        assert records.count(stream) == 1, (stream, records)
        pages = [r for r in sandbox.requests if r.path == path]
        assert len(pages) == 1, (stream, [r.query for r in pages])
    bookmarks = [m["value"].get("bookmarks", {}) for m in messages if m["type"] == "STATE"]
    for bookmark in bookmarks:
        for stream in LISTS:
            assert "replication_key_value" not in bookmark.get(stream, {}), bookmark[stream]
