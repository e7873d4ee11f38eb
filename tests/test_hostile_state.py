"""State that grew, or that asks for less than a catalog forces: `retry_keys` by the hundred
thousand, and FULL_TABLE forced on an incremental stream that has a bookmark.

The replication runs here on a small stand-in stream (`ListReplication` needs only what its
`ReplicatedList` protocol names); the forced FULL_TABLE runs the whole tap against the sandbox.
"""

from __future__ import annotations

import logging
import time
import typing as t

import pytest

from tap_conversations.records import utc_timestamp
from tap_conversations.replication import MAX_RETRY_KEYS, ListReplication
from tap_conversations.tap import TapConversations
from tests.helpers import sync

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox import Sandbox

BOOKMARK = "2024-06-01T00:00:00.000000+00:00"
OLD = "2024-01-01T00:00:00.000000+00:00"


class ListStream:
    """A list of records `r0`, `r1`, ...: the first `old` stamped before the bookmark."""

    provider_label: t.ClassVar[str] = "Test"

    def __init__(self, count: int, old: int, state: dict[str, t.Any], method: str = "") -> None:
        self.rows = [
            {"id": f"r{n}", "updated": OLD if n < old else f"2024-07-01T00:00:{n % 60:02d}+00:00"}
            for n in range(count)
        ]
        self.state = state
        self.scan_watch = None
        self.name = "things"
        self.logger = logging.getLogger("test-hostile-state")
        self.config: dict[str, t.Any] = {}
        self.primary_keys = ("id",)
        self.replication_key = "updated"
        self.catalog_forces_full_table = method == "FULL_TABLE"

    def get_context_state(self, context: t.Any) -> dict[str, t.Any]:
        return self.state

    def request_records(self, context: t.Any) -> Iterator[dict[str, t.Any]]:
        yield from self.rows

    def checked_record(self, row: dict[str, t.Any], context: t.Any = None) -> dict[str, t.Any]:
        return {**row, "updated": utc_timestamp(row["updated"])}


def replicate(
    stream: ListStream, fail: t.Collection[str] = (), on_state: t.Any = None
) -> list[str]:
    """One run: the keys sent, in order; `fail` are keys whose detail fails."""
    run = ListReplication(stream, None)
    sent = []
    try:
        run.scan()
        for row in run.rows():
            run.current = row
            sent.append(row["id"])
            if row["id"] in fail:
                run.retry_current()
            run.delivered(row)
            if on_state is not None:
                on_state(stream.state)
        run.finish()
    finally:
        run.close()
    return sent


def test_100000_retry_keys_of_vanished_records_cost_no_time_and_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vanished = [f"gone{n}" for n in range(100_000)]
    state = {"replication_key_value": BOOKMARK, "retry_keys": [*vanished, "r3", "r5"]}
    stream = ListStream(1001, old=10, state=state)
    sizes: list[int] = []
    began = time.perf_counter()
    with caplog.at_level(logging.INFO):
        sent = replicate(stream, on_state=lambda s: sizes.append(len(s.get("retry_keys", []))))
    elapsed = time.perf_counter() - began
    # The records older than the bookmark go out only when a retry key asks for them.
    assert sorted(sent) == sorted(["r3", "r5", *(f"r{n}" for n in range(10, 1001))])
    # Every STATE after the scan is free of the vanished keys; none is left at the end.
    assert max(sizes) <= 2
    assert "retry_keys" not in state
    assert "dropping 100000 retry_keys of records no longer in the list" in caplog.text
    assert elapsed < 10, elapsed  # 40 s when every STATE re-sorted all 100,000 keys


def test_retry_keys_are_bounded_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    count = MAX_RETRY_KEYS + 500
    stream = ListStream(count, old=0, state={})
    fail = {row["id"] for row in stream.rows}
    with caplog.at_level(logging.WARNING):
        replicate(stream, fail=fail)
    assert len(stream.state["retry_keys"]) == MAX_RETRY_KEYS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"more than {MAX_RETRY_KEYS} retry_keys; dropping 500" in warnings[0].getMessage()


def test_retry_keys_survive_a_scan_that_proves_nothing() -> None:
    """Only a clean scan proves a record gone: a list that keeps moving keeps every key."""
    state = {"replication_key_value": BOOKMARK, "retry_keys": ["gone1", "gone2"]}
    stream = ListStream(5, old=0, state=state)
    original = stream.request_records

    def moving(context: t.Any) -> Iterator[dict[str, t.Any]]:
        if stream.scan_watch is not None:
            stream.scan_watch.moved("the list moved")
        yield from original(context)

    stream.request_records = moving  # type: ignore[method-assign]
    replicate(stream)
    assert state["retry_keys"] == ["gone1", "gone2"]


def test_forced_full_table_sends_every_record_and_keeps_a_usable_bookmark() -> None:
    state = {"replication_key_value": BOOKMARK}
    stream = ListStream(20, old=8, state=state, method="FULL_TABLE")
    assert len(replicate(stream)) == 20
    assert state["replication_key_value"] >= BOOKMARK
    incremental = ListStream(20, old=8, state=state)
    assert replicate(incremental) == []  # the next incremental run starts from it


# --- the whole tap, with a Singer catalog forcing FULL_TABLE ------------------------------------

ONQ = "onq_conversations"


def forced_full_table(catalog: dict[str, t.Any], stream: str, how: str) -> dict[str, t.Any]:
    for entry in catalog["streams"]:
        selected = entry["tap_stream_id"] == stream
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = selected
                if selected and how == "metadata":
                    item["metadata"]["forced-replication-method"] = "FULL_TABLE"
        if selected and how == "entry":
            entry["replication_method"] = "FULL_TABLE"
    return catalog


@pytest.mark.parametrize("how", ["metadata", "entry"])
def test_a_catalog_forcing_full_table_gets_every_record(sandbox: Sandbox, how: str) -> None:
    config = {"onq": sandbox.tap_config()["onq"]}
    first = sync(config)
    every = len(sandbox.data.onq_conversations)
    assert len(first.records(ONQ)) == every
    bookmark = first.final_state["bookmarks"][ONQ]["replication_key_value"]

    catalog = forced_full_table(TapConversations(config=config).catalog_dict, ONQ, how)
    full = sync(config, state=first.final_state, catalog=catalog)
    assert len(full.records(ONQ)) == every
    assert full.final_state["bookmarks"][ONQ]["replication_key_value"] >= bookmark
    assert sync(config, state=full.final_state).records(ONQ) == []
