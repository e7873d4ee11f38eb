"""The pieces of `replication` and `snapshot` on their own: bookmark rules, the scan watch, and
the sandbox's churn between list pages."""

from __future__ import annotations

import datetime

import pytest

from sandbox import Churn, Sandbox, SandboxSettings
from tap_conversations.replication import Bookmark, in_the_future
from tap_conversations.snapshot import ScanWatch, Snapshot

T1 = "2024-01-01T00:00:00.000000+00:00"
T2 = "2024-01-02T00:00:00.000000+00:00"
T3 = "2024-01-03T00:00:00.000000+00:00"
CEILING = "2024-06-01T00:00:00.000000+00:00"


def test_a_bookmark_skips_exactly_the_versions_it_has_sent() -> None:
    bookmark = Bookmark.read(
        {"replication_key_value": "2024-01-02T00:00:00Z", "sent_since_bookmark": {"a": T2}},
        start=None,
    )
    assert bookmark.value == T2  # normalised, so it compares with records as text
    assert not bookmark.wants("old", T1)
    assert not bookmark.wants("a", T2)  # sent at the bookmark's exact timestamp
    assert bookmark.wants("b", T2)  # same timestamp, not sent yet
    assert bookmark.wants("a", T3)  # a newer version of a sent record
    assert bookmark.wants("nameless", None)


def test_a_bookmark_advances_below_the_ceiling_and_remembers_what_is_above() -> None:
    bookmark = Bookmark(value=T1, sent={"x": T1})
    bookmark.advance("a", T2, CEILING)
    assert (bookmark.value, bookmark.sent) == (T2, {"a": T2})  # older entries pruned
    fresh = "2024-07-01T00:00:00.000000+00:00"
    bookmark.advance("b", fresh, CEILING)
    assert bookmark.value == T2  # not past the ceiling
    assert bookmark.sent == {"a": T2, "b": fresh}
    assert not bookmark.wants("b", fresh)


def test_retry_keys_are_sent_whatever_their_value_until_delivered() -> None:
    bookmark = Bookmark(value=T3, retry={"r"})
    assert bookmark.wants("r", T1)
    bookmark.advance("r", T1, CEILING)
    assert bookmark.retry == set()
    state: dict[str, object] = {"retry_keys": ["stale"]}
    bookmark.write(state, "updated")
    assert "retry_keys" not in state
    assert state["replication_key_value"] == T3


def test_start_date_raises_the_bookmark() -> None:
    assert Bookmark.read({"replication_key_value": T1}, start=T2).value == T2
    assert Bookmark.read({"replication_key_value": T3}, start=T2).value == T3


def test_future_bookmarks() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert in_the_future("2099-01-01T00:00:00Z", now)
    assert not in_the_future("2025-12-31T23:59:00Z", now)
    assert not in_the_future("01/05/2024", now)  # not a timestamp: someone else's problem


def test_the_watch_sees_counts_move_positions_shift_and_keys_repeat() -> None:
    calm = ScanWatch(T1)
    assert calm.page(0, ["a", "b", "c"], 5) == 0
    assert calm.page(2, ["c", "d", "e"], 5) == 1  # one record of overlap, dropped
    calm.finish(read=5, distinct=5)
    assert calm.clean

    shifted = ScanWatch(T1)
    shifted.page(0, ["a", "b", "c"], 5)
    shifted.page(2, ["d", "e"], 4)  # `c`'s place now holds `d`: something before it went
    assert len(shifted.moves) == 2
    assert any("count went from 5 to 4" in m for m in shifted.moves)

    gap = ScanWatch(T1)
    gap.page(0, ["a", "b"], None)
    gap.page(5, ["f"], None)
    assert not gap.clean

    repeated = ScanWatch(T1)
    repeated.finish(read=6, distinct=5)
    assert repeated.moves == ["1 record(s) came twice"]


def test_the_snapshot_merges_scans_keeps_newest_versions_and_orders_by_value() -> None:
    snapshot = Snapshot()
    snapshot.add(1, [("b", T2, {"k": "b"}), ("a", T3, {"k": "a"})])
    snapshot.add(1, [("b", T2, {"k": "b"})])  # twice in one scan: still one record
    assert snapshot.distinct(1) == 2
    snapshot.add(2, [("a", T1, {"k": "stale a"}), ("c", None, {"k": "c"})])
    snapshot.add(2, [("d", T1, None)])  # read, not to be sent
    assert [row["k"] for row in snapshot.rows()] == ["c", "b", "a"]
    assert len(snapshot) == 3
    assert snapshot.distinct(2) == 3
    assert not snapshot.new_version("a", T3)
    assert snapshot.new_version("a", T2)
    snapshot.close()


@pytest.mark.parametrize("kind", ["delete", "insert", "move_to_end"])
def test_sandbox_churn_changes_the_list_between_pages(kind: str) -> None:
    with Sandbox(SandboxSettings(pe_conversations=12, pe_plans=1, pe_max_limit=5)) as sandbox:
        before = [c["api_id"] for c in sandbox.data.pe_conversations]
        log = sandbox.churn("perform_engage", Churn(kind, after_page=2, count=2))  # type: ignore[arg-type]
        assert not log.touched
        sandbox.data.list_page_served("perform_engage")
        assert not log.touched  # one page served, due after two
        sandbox.data.list_page_served("perform_engage")
        after = [c["api_id"] for c in sandbox.data.pe_conversations]
        if kind == "delete":
            assert log.deleted == before[:2]
            assert after == before[2:]
        elif kind == "insert":
            assert after[2:] == before
            assert log.inserted == after[:2]
        else:
            assert after == before[2:] + before[:2]
            assert log.moved == before[:2]
        sandbox.data.list_page_served("perform_engage")
        assert [c["api_id"] for c in sandbox.data.pe_conversations] == after  # once only
