"""Snapshot, then emit: how a list stream replicates, and the part of STATE it owns.

None of the APIs filters by update time or says its list is sorted, so a list stream reads its
whole list first (`snapshot.Snapshot`, checked by `snapshot.ScanWatch`), then emits:

1. A scan that saw the list move is repeated, at most `MAX_SCANS` times, and merged by key;
   one clean scan proves the merge complete. If every scan saw movement, everything read is
   still sent but the bookmark stays where it was (one warning line), so the next run reads it
   all again: a record present and unchanged during a run is sent by that run or the next.
2. Records go out in replication-key order, so the bookmark advances as they are delivered;
   a STATE every `CHECKPOINT_SECONDS` (and after every parent's child sync, as the SDK does)
   lets a killed run resume where it stopped.
3. Beside the bookmark, STATE keeps the versions already sent at or after it
   (`sent_since_bookmark`: usually the few keys at the bookmark's exact timestamp) and the keys
   whose detail could not be read (`retry_keys`). A re-run with no upstream change sends
   nothing, a change is sent once, and a parent whose detail failed is sent again next run.

The bookmark never passes `start of the run - CLOCK_MARGIN`: a record updated during the run
(or stamped by a server whose clock is a little behind ours) is sent and remembered in
`sent_since_bookmark`, and the bookmark catches up with it in a later run.
"""

from __future__ import annotations

import datetime
import time
import typing as t
from dataclasses import dataclass, field

from tap_conversations.errors import prefix
from tap_conversations.records import utc_timestamp
from tap_conversations.snapshot import ScanWatch, Snapshot, utc_now_text

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context

Row = dict[str, t.Any]

MAX_SCANS = 3
CLOCK_MARGIN = datetime.timedelta(seconds=60)
CHECKPOINT_SECONDS = 1.0
SENT = "sent_since_bookmark"
RETRY = "retry_keys"
#: At most this many `retry_keys` are kept (see `Bookmark.bound`).
MAX_RETRY_KEYS = 10_000


@dataclass
class Bookmark:
    """What a stream (or one partition) has delivered.

    Every version whose replication value is below `value` was delivered; at or after it,
    exactly the versions in `sent` (key -> replication value). Keys in `retry` are sent again
    whatever their value; `retry` is a set, written to STATE (sorted) only when it changed.
    """

    value: str | None = None
    sent: dict[str, str] = field(default_factory=dict)
    retry: set[str] = field(default_factory=set)
    #: `retry` as last written, so that an unchanged set is not sorted again per record.
    _retry_written: tuple[int, list[str]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def read(cls, state: t.Mapping[str, t.Any], start: str | None) -> Bookmark:
        """The bookmark in `state`, raised to `start` (the `start_date`) when that is later."""
        value, sent, retry = state.get("replication_key_value"), state.get(SENT), state.get(RETRY)
        bookmark = cls(
            _normalised(value),
            {str(k): str(v) for k, v in sent.items()} if isinstance(sent, dict) else {},
            {str(k) for k in retry} if isinstance(retry, list) else set(),
        )
        if start is not None and (bookmark.value is None or start > bookmark.value):
            bookmark.value = start
        bookmark.prune()
        return bookmark

    def write(self, state: dict[str, t.Any], replication_key: str) -> None:
        """Into the stream's (or partition's) state dict; called after every record."""
        if self.value is not None:
            state["replication_key"] = replication_key
            state["replication_key_value"] = self.value
        if self.sent:
            state[SENT] = self.sent
        else:
            state.pop(SENT, None)
        if self.retry:
            # a delivery changes `retry` by its own key only (dropped, or added when its detail
            # failed), so its size tells a change; `keep_retry` resets what was written
            written = self._retry_written
            if written is None or written[0] != len(self.retry) or state.get(RETRY) is None:
                self._retry_written = written = (len(self.retry), sorted(self.retry))
            state[RETRY] = written[1]
        else:
            state.pop(RETRY, None)

    def wants(self, key: str, value: str | None) -> bool:
        """Whether this version of a record still has to be sent."""
        if key in self.retry or value is None or self.value is None:
            return True
        return value >= self.value and self.sent.get(key) != value

    def advance(self, key: str, value: str | None, ceiling: str) -> None:
        """This version was delivered, and every version ordered before it in the snapshot."""
        if self.retry:
            self.retry.discard(key)
        if value is None:
            return
        if value < ceiling and (self.value is None or value > self.value):
            self.value = value
            if self.sent:  # what is below the new bookmark is covered by it now
                self.sent = {k: v for k, v in self.sent.items() if v >= value}
        if self.value is None or value >= self.value:
            self.sent[key] = value

    def prune(self) -> None:
        if self.value is not None:
            self.sent = {k: v for k, v in self.sent.items() if v >= self.value}

    def bound(self) -> int:
        """Keep at most `MAX_RETRY_KEYS` retry keys (the smallest, so the choice is stable);
        how many were dropped. A dropped key's record is sent again only once it changes."""
        excess = len(self.retry) - MAX_RETRY_KEYS
        if excess > 0:
            self.keep_retry(sorted(self.retry)[:MAX_RETRY_KEYS])
        return max(excess, 0)

    def keep_retry(self, keys: Iterable[str]) -> None:
        self.retry = set(keys)
        self._retry_written = None


def _normalised(value: t.Any) -> str | None:
    """A bookmark in the record layout, so that it compares with records as text."""
    if not isinstance(value, str):
        return None
    try:
        return utc_timestamp(value)
    except ValueError:
        return value  # not a timestamp: reported where the state is validated


def bookmark_ceiling() -> str:
    """Now less the clock margin, in the record layout: no bookmark written in this run passes
    it (a record updated during the run is sent again, and the bookmark catches up later)."""
    return utc_now_text(datetime.datetime.now(datetime.UTC) - CLOCK_MARGIN)


def in_the_future(value: t.Any, now: datetime.datetime | None = None) -> bool:
    """Whether a bookmark lies ahead of now (by more than the clock margin)."""
    if not isinstance(value, str):
        return False
    try:
        normalised = utc_timestamp(value)
    except ValueError:
        return False  # not a timestamp: reported where the state is validated
    moment = now or datetime.datetime.now(datetime.UTC)
    return normalised > utc_now_text(moment + CLOCK_MARGIN)


class ReplicatedList(t.Protocol):
    """What a `ListReplication` needs of its stream."""

    provider_label: t.ClassVar[str]
    scan_watch: ScanWatch | None

    @property
    def name(self) -> str: ...

    @property
    def logger(self) -> logging.Logger: ...

    @property
    def config(self) -> t.Mapping[str, t.Any]: ...

    @property
    def primary_keys(self) -> t.Sequence[str] | None: ...

    @property
    def replication_key(self) -> str | None: ...

    @property
    def catalog_forces_full_table(self) -> bool: ...

    def get_context_state(self, context: Context | None) -> dict[str, t.Any]: ...

    def request_records(self, context: Context | None) -> Iterable[Row]: ...

    def checked_record(self, row: Row, context: Context | None = None) -> Row | None: ...


class ListReplication:
    """One list stream (or partition) in one run: scan, then emit in order, bookmark as it goes."""

    def __init__(self, stream: ReplicatedList, context: Context | None) -> None:
        self.stream = stream
        self.context = context
        self.key_field = (stream.primary_keys or ("id",))[0]
        self.replication_key = stream.replication_key
        self.state = stream.get_context_state(context)
        start = stream.config.get("start_date")
        start = utc_timestamp(str(start)) if start else None
        self.bookmark = Bookmark.read(self.state, start) if self.replication_key else Bookmark()
        self.started = self.bookmark.value
        #: FULL_TABLE forced by the catalog: every record is sent, whatever the bookmark (which
        #: still moves as usual, for the next incremental run).
        self.full_table = stream.catalog_forces_full_table
        #: The retry keys the scans met (the others are for records no longer in the list).
        self.retry_met: set[str] = set()
        self.ceiling = bookmark_ceiling()
        self.snapshot = Snapshot(prefix(stream))
        self.proven = False
        #: The record being handed to the SDK (its children synced, then it is written).
        self.current: Row | None = None
        self.failed: set[str] = set()
        self._last_checkpoint = time.monotonic()

    # The scan --------------------------------------------------------------------------------

    def scan(self, on_kept: t.Callable[[int], None] | None = None) -> None:
        """Read the whole list, again when it moved, until one read is clean or scans run out.

        `on_kept` hears, during the first read, how many records are kept to be sent.
        """
        label = prefix(self.stream)
        for attempt in range(1, MAX_SCANS + 1):
            watch = ScanWatch(utc_now_text())
            self.stream.scan_watch = watch
            try:
                self._read(attempt, watch, on_kept if attempt == 1 else None)
            finally:
                self.stream.scan_watch = None
            if watch.clean:
                self.proven = True
                self._forget_vanished_retries()
                return
            if attempt < MAX_SCANS:
                moves = "; ".join(watch.moves)
                self.stream.logger.info(
                    "%s: the list changed while it was read (%s); reading it again", label, moves
                )
        self._bound_retries()
        kept = f"keeping the bookmark at {self.started}" if self.replication_key else "full table"
        self.stream.logger.warning(
            "%s: the list kept changing over %d reads (%s); sending all %d records read and "
            "%s, so the next run reads them again",
            label,
            MAX_SCANS,
            "; ".join(watch.moves),
            len(self.snapshot),
            kept,
        )

    def _read(
        self, attempt: int, watch: ScanWatch, on_kept: t.Callable[[int], None] | None
    ) -> None:
        """One scan: the stream's records, checked, each kept in the snapshot as it comes."""
        read = 0
        stream, context, replication_key = self.stream, self.context, self.replication_key
        for raw in stream.request_records(context):
            row = stream.checked_record(raw, context)
            if row is None:
                continue
            key = str(row.get(self.key_field))
            value = row.get(replication_key) if replication_key else None
            if self._fresh(value, watch) and self.snapshot.new_version(key, value):
                # updated after the scan began, and not a version an earlier scan holds
                watch.moved(f"record {key} was updated while the list was read")
            retry = self.bookmark.retry
            if retry and key in retry:
                self.retry_met.add(key)
            wanted = self.full_table or self.bookmark.wants(key, value)
            if wanted and on_kept is not None:
                on_kept(1)
            self.snapshot.add(attempt, key, value, row if wanted else None)
            read += 1
        watch.finish(read, self.snapshot.distinct(attempt))

    def _forget_vanished_retries(self) -> None:
        """A proven scan read the whole list: retry keys it did not meet are records that no
        longer exist, so they are dropped."""
        retry = self.bookmark.retry
        if len(retry) > len(self.retry_met):
            gone = len(retry) - len(self.retry_met)
            self.bookmark.keep_retry(self.retry_met)
            self.stream.logger.info(
                "%s: dropping %d retry_keys of records no longer in the list",
                prefix(self.stream),
                gone,
            )
        self._bound_retries()

    def _bound_retries(self) -> None:
        if dropped := self.bookmark.bound():
            self.stream.logger.warning(
                "%s: more than %d retry_keys; dropping %d of them: their records are sent "
                "again only when they change",
                prefix(self.stream),
                MAX_RETRY_KEYS,
                dropped,
            )

    @staticmethod
    def _fresh(value: t.Any, watch: ScanWatch) -> bool:
        """Whether a version may have been made after the scan began.

        A whole-second value (an API that rounds to the second) counts from the second the
        scan began in.
        """
        if not isinstance(value, str):
            return False
        return value > watch.started or (value[19:26] == ".000000" and value > watch.started[:19])

    # The emission -----------------------------------------------------------------------------

    def rows(self) -> Iterator[Row]:
        """The records to send, in replication-key order."""
        return self.snapshot.rows()

    def retry_current(self) -> None:
        """A detail of the record being sent (`current`) could not be read: send it again
        next run."""
        if self.current is not None:
            self.failed.add(str(self.current.get(self.key_field)))

    def delivered(self, row: Row) -> None:
        """The SDK wrote `row` and synced its children: move the bookmark past it."""
        if not self.replication_key:
            return
        key, value = str(row.get(self.key_field)), row.get(self.replication_key)
        bookmark = self.bookmark
        if self.proven:
            bookmark.advance(key, value, self.ceiling)
        elif bookmark.retry:
            bookmark.retry.discard(key)
        if key in self.failed:
            bookmark.retry.add(key)
        bookmark.write(self.state, self.replication_key)

    def checkpoint_due(self) -> bool:
        """Whether a STATE is due: one every `CHECKPOINT_SECONDS`."""
        now = time.monotonic()
        if now - self._last_checkpoint >= CHECKPOINT_SECONDS:
            self._last_checkpoint = now
            return True
        return False

    def finish(self) -> None:
        """Every record was delivered. After a proven scan, every version below the ceiling has
        been sent (now or before), so the bookmark takes in the remembered versions below it."""
        below = [v for v in self.bookmark.sent.values() if v < self.ceiling]
        if (
            self.proven
            and below
            and (self.bookmark.value is None or max(below) > self.bookmark.value)
        ):
            self.bookmark.value = max(below)
            self.bookmark.prune()
        self._bound_retries()
        if self.replication_key:
            self.bookmark.write(self.state, self.replication_key)

    def close(self) -> None:
        self.snapshot.close()
