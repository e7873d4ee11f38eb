"""The pieces of `replication` and `snapshot` on their own: bookmark rules, the scan watch, and
the sandbox's churn between list pages."""

from __future__ import annotations

import datetime
import os
import random
import tracemalloc
import typing as t

import pytest

from sandbox import Churn, Sandbox, SandboxSettings
from tap_conversations.replication import Bookmark, in_the_future
from tap_conversations.snapshot import ScanWatch, Snapshot

if t.TYPE_CHECKING:
    from pathlib import Path

T1 = "2024-01-01T00:00:00.000000+00:00"
T2 = "2024-01-02T00:00:00.000000+00:00"
T3 = "2024-01-03T00:00:00.000000+00:00"
CEILING = "2024-06-01T00:00:00.000000+00:00"


def add(
    snapshot: Snapshot, scan: int, versions: list[tuple[str, str | None, dict[str, t.Any] | None]]
) -> None:
    """`Snapshot.add` of records given as (key, replication value, row) each."""
    for key, value, row in versions:
        snapshot.add(scan, key, value, row)


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
    add(snapshot, 1, [("b", T2, {"k": "b"}), ("a", T3, {"k": "a"})])
    add(snapshot, 1, [("b", T2, {"k": "b"})])  # twice in one scan: still one record
    assert snapshot.distinct(1) == 2
    add(snapshot, 2, [("a", T1, {"k": "stale a"}), ("c", None, {"k": "c"})])
    add(snapshot, 2, [("d", T1, None)])  # read, not to be sent
    assert [row["k"] for row in snapshot.rows()] == ["c", "b", "a"]
    assert len(snapshot) == 3
    assert snapshot.distinct(2) == 3
    assert not snapshot.new_version("a", T3)
    assert snapshot.new_version("a", T2)
    snapshot.close()


# --- the snapshot's merge rules ---------------------------------------------------------------


@pytest.fixture
def snapshot() -> t.Iterator[Snapshot]:
    opened = Snapshot()
    yield opened
    opened.close()


def sent(snapshot: Snapshot) -> list[tuple[str, str]]:
    return [(row["k"], row["v"]) for row in snapshot.rows()]


def test_a_version_read_later_wins_only_when_its_value_is_not_older(snapshot: Snapshot) -> None:
    add(snapshot, 1, [("a", T2, {"k": "a", "v": "first"}), ("b", T2, {"k": "b", "v": "first"})])
    add(snapshot, 2, [("a", T2, {"k": "a", "v": "again"}), ("b", T1, {"k": "b", "v": "older"})])
    assert sent(snapshot) == [("b", "first"), ("a", "again")]  # same value: the latest read
    assert len(snapshot) == 2


def test_no_value_is_older_than_any_and_the_latest_of_two_without_one_wins(
    snapshot: Snapshot,
) -> None:
    add(snapshot, 1, [("a", None, {"k": "a", "v": "none"}), ("b", T1, {"k": "b", "v": "T1"})])
    add(snapshot, 1, [("c", None, {"k": "c", "v": "none"})])
    add(snapshot, 2, [("a", T1, {"k": "a", "v": "T1"}), ("b", None, {"k": "b", "v": "none"})])
    add(snapshot, 2, [("c", None, {"k": "c", "v": "none again"})])
    assert sent(snapshot) == [("c", "none again"), ("b", "T1"), ("a", "T1")]


def test_a_winner_without_a_body_is_known_but_not_sent(snapshot: Snapshot) -> None:
    add(snapshot, 1, [("a", T1, {"k": "a", "v": "T1"}), ("b", T3, None), ("c", T1, None)])
    add(
        snapshot,
        2,
        [("a", T2, None), ("b", T2, {"k": "b", "v": "T2"}), ("c", T3, {"k": "c", "v": "T3"})],
    )
    assert sent(snapshot) == [("c", "T3")]  # a: newer version without body; b: older one lost
    assert len(snapshot) == 1
    assert snapshot.distinct(2) == 3


def test_distinct_counts_the_keys_each_scan_read_last(snapshot: Snapshot) -> None:
    add(snapshot, 1, [("a", T1, {"k": "a"}), ("b", T1, {"k": "b"}), ("a", T1, {"k": "a"})])
    add(snapshot, 1, [("c", T1, None), ("b", T2, {"k": "b"})])
    assert snapshot.distinct(1) == 3  # a and b came twice: still three keys
    add(snapshot, 2, [("b", T1, {"k": "b"}), ("d", T1, {"k": "d"})])
    assert (snapshot.distinct(1), snapshot.distinct(2), snapshot.distinct(3)) == (2, 2, 0)
    assert len(snapshot) == 3  # a, b, d; c has no body


def test_new_version_asks_whether_the_kept_version_has_this_value(snapshot: Snapshot) -> None:
    assert snapshot.new_version("a", T1)  # nothing read yet
    add(snapshot, 1, [("a", T2, {"k": "a"}), ("b", None, {"k": "b"}), ("c", T1, None)])
    assert not snapshot.new_version("a", T2)
    assert snapshot.new_version("a", T3)
    assert snapshot.new_version("a", T1)  # an older value than the one kept
    assert snapshot.new_version("b", None)  # no value: never the same version
    assert not snapshot.new_version("c", T1)  # known without a body is still known
    assert snapshot.new_version("d", T2)


def test_a_snapshot_with_nothing_to_send_sends_nothing(snapshot: Snapshot) -> None:
    assert list(snapshot.rows()) == []
    add(snapshot, 1, [])
    add(snapshot, 1, [("a", T1, None), ("b", None, None)])
    assert (list(snapshot.rows()), len(snapshot), snapshot.distinct(1)) == ([], 0, 2)


def test_a_replication_value_that_is_no_timestamp_is_named(snapshot: Snapshot) -> None:
    with pytest.raises(ValueError, match=r"not an ISO-8601 timestamp: '2024-01-01T00:00:00'"):
        add(snapshot, 1, [("a", T1, {"k": "a", "v": ""}), ("b", "2024-01-01T00:00:00", {})])
    with pytest.raises(ValueError, match=r"not an ISO-8601 timestamp: 'soon'"):
        add(snapshot, 1, [("b", "soon", {})])
    add(snapshot, 1, [("c", T1, {"k": "c", "v": ""})])  # nothing of the refused versions kept
    assert (sent(snapshot), snapshot.distinct(1)) == ([("a", ""), ("c", "")], 2)


def test_equal_values_go_out_in_read_order(snapshot: Snapshot) -> None:
    add(snapshot, 1, [("z", T1, {"k": "z", "v": ""}), ("b", T1, {"k": "b", "v": ""})])
    add(snapshot, 1, [("m", T1, {"k": "m", "v": ""}), ("a", None, {"k": "a", "v": ""})])
    assert [key for key, _ in sent(snapshot)] == ["a", "z", "b", "m"]


def test_bodies_come_back_as_they_went_in(snapshot: Snapshot) -> None:
    row = {
        "text": "naïve ☃ \U0001f600",
        "numbers": [0, -1, 2**63 - 1, 1.5, -0.0, 1e300],
        "nested": {"list": [{"deep": None}], "empty": {}, "flags": [True, False]},
        "none": None,
    }
    add(snapshot, 1, [("k", T1, row), ("empty", T2, {})])
    assert list(snapshot.rows()) == [row, {}]


def test_keys_are_told_apart_exactly(snapshot: Snapshot) -> None:
    keys = ["580:a", "580:b", "ü", "u", "", "580:a "]
    add(snapshot, 1, [(key, T1, {"k": key, "v": "1"}) for key in keys])
    add(snapshot, 2, [(key, T2, {"k": key, "v": "2"}) for key in reversed(keys[:3])])
    assert snapshot.distinct(1) == 3
    assert snapshot.distinct(2) == 3
    add(snapshot, 3, [("\ud800", T1, None)])  # a lone surrogate (JSON allows it), not sent
    assert snapshot.distinct(3) == 1
    assert not snapshot.new_version("ü", T2)
    assert snapshot.new_version("u", T2)
    assert sorted(sent(snapshot)) == sorted(
        [(k, "1") for k in keys[3:]] + [(k, "2") for k in keys[:3]]
    )


VALUES = [
    f"2024-01-01T00:{minute:02d}:00.{micro:06d}+00:00" for minute in range(60) for micro in (0, 1)
]


@pytest.mark.parametrize(
    "read_order",
    [
        [VALUES[(index * 37) % len(VALUES)] for index in range(len(VALUES))],  # scrambled
        VALUES,  # as a list sorted by the API comes: the runs do not mix
        VALUES[::-1],
    ],
    ids=["scrambled", "ascending", "descending"],
)
def test_many_versions_merge_in_order(
    snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch, read_order: list[str]
) -> None:
    monkeypatch.setattr(Snapshot, "FLUSH_EVERY", 7)  # versions reach the database 7 at a time
    for scan in (1, 2):
        for start in range(0, len(read_order), 25):
            part = read_order[start : start + 25]
            add(snapshot, scan, [(v, v, {"k": v, "v": f"scan {scan}"}) for v in part])
    assert sent(snapshot) == [(value, "scan 2") for value in VALUES]  # read twice: the latest
    assert snapshot.distinct(2) == len(VALUES)


def test_many_versions_without_value_go_out_in_read_order(
    snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Snapshot, "FLUSH_EVERY", 5)
    keys = [f"{(index * 7919) % 1000:03d}" for index in range(1000)]
    for start in range(0, 1000, 30):
        batch = keys[start : start + 30]
        add(
            snapshot,
            1,
            [(key, None, None if int(key) % 3 else {"k": key, "v": ""}) for key in batch],
        )
    assert [key for key, _ in sent(snapshot)] == [key for key in keys if int(key) % 3 == 0]


def test_the_database_has_no_name_and_is_closed_with_the_snapshot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SQLITE_TMPDIR", str(tmp_path))  # where SQLite puts its file
    open_files = len(os.listdir("/proc/self/fd"))
    snapshot = Snapshot()
    filler = "x" * 1_000
    add(snapshot, 1, [(str(i), T1, {"k": str(i), "filler": filler}) for i in range(5_000)])
    assert len(list(snapshot.rows())) == 5_000
    assert len(os.listdir("/proc/self/fd")) > open_files  # 5 MB: part of it went to the file
    assert list(tmp_path.iterdir()) == []  # nothing to clean up, even after a crash
    snapshot.close()
    assert len(os.listdir("/proc/self/fd")) == open_files


def test_bodies_stay_out_of_memory(snapshot: Snapshot) -> None:
    """20,000 records of ~1 KiB: 20 MiB of bodies, while the snapshot holds a few MiB."""
    filler = "x" * 1_000
    tracemalloc.start()
    try:
        for i in range(20_000):
            snapshot.add(1, f"580:{i:032x}", T1, {"id": i, "filler": filler})
        count = sum(1 for _ in snapshot.rows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 8 * 2**20


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


# --- the merge rule on random scans -----------------------------------------------------------

STAMPS = [None, T1, T2, T3]


def random_scans(rng: random.Random) -> list[tuple[int, list[tuple[str, str | None, t.Any]]]]:
    """Batches of versions over three scans: keys that come back, values that go up and down,
    versions without a body."""
    batches = []
    serial = 0
    for scan in (1, 2, 3):
        for _ in range(rng.randrange(1, 4)):
            versions = []
            for _ in range(rng.randrange(0, 12)):
                serial += 1
                key, value = f"k{rng.randrange(15)}", rng.choice(STAMPS)
                row = None if rng.random() < 0.2 else {"k": key, "v": value, "serial": serial}
                versions.append((key, value, row))
            batches.append((scan, versions))
    return batches


@pytest.mark.parametrize("seed", range(40))
def test_each_key_goes_out_once_as_its_newest_version(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Snapshot, "FLUSH_EVERY", 4)
    rng = random.Random(seed)
    batches = random_scans(rng)
    snapshot = Snapshot()
    try:
        for scan, versions in batches:
            add(snapshot, scan, versions)
            snapshot.new_version("k1", T1)  # a look-up between batches changes nothing
        # each key goes out once, as its newest version, the latest read of equal ones
        newest: dict[str, tuple[int, int, t.Any]] = {}
        last_scan: dict[str, int] = {}
        order = {value: place for place, value in enumerate(STAMPS)}
        for read, (scan, versions) in enumerate(batches):
            for place, (key, value, row) in enumerate(versions):
                candidate = (order[value], read * 100 + place, row)
                if key not in newest or candidate[:2] >= newest[key][:2]:
                    newest[key] = candidate
                last_scan[key] = scan
        expected = sorted((v for v in newest.values() if v[2] is not None), key=lambda v: v[:2])
        assert list(snapshot.rows()) == [row for _, _, row in expected]
        assert len(snapshot) == len(expected)
        for scan in (1, 2, 3):
            assert snapshot.distinct(scan) == list(last_scan.values()).count(scan)
    finally:
        snapshot.close()
