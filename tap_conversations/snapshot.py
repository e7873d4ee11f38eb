"""Reading a whole list first: the snapshot it goes into, and the watch that proves the read.

Lists change while they are paged: a record deleted or moved before the read position shifts
the ones after it, so an unchanged record can slip past a page boundary unseen (or come twice).
`ScanWatch` checks, page by page, that the list held still; `Snapshot` holds what was read,
merged over the scans of one run, in a temporary SQLite database (memory stays flat). How the
streams use them, and what goes into STATE, is in `replication`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sqlite3
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import encoder as json_encoder

from tap_conversations.errors import ProviderError

if t.TYPE_CHECKING:
    from collections.abc import Iterator

Row = dict[str, t.Any]


def utc_now_text(now: datetime.datetime | None = None) -> str:
    """Now, in the record layout of `records.utc_timestamp` (string order is time order)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds")


# --- the scan ---------------------------------------------------------------------------------


class ScanWatch:
    """Checks, page by page, that a list held still while it was read.

    `page` is told where each page starts (0-based position), its keys and the total the API
    announced; it returns how many leading records repeat the previous page on purpose (an
    overlap), for the caller to drop. What looked like movement is kept in `moves`, in words.
    """

    def __init__(self, started: str) -> None:
        self.started = started
        self.moves: list[str] = []
        self.first_total: int | None = None
        self.last_total: int | None = None
        self.next_position = 0
        self.last_key: str | None = None

    @property
    def clean(self) -> bool:
        return not self.moves

    def moved(self, what: str) -> None:
        if len(self.moves) < 3:  # a few examples are enough to say what happened
            self.moves.append(what)

    def page(
        self,
        position: int | None,
        keys: t.Sequence[str],
        total: int | None,
    ) -> int:
        if total is not None:
            if self.first_total is None:
                self.first_total = total
            elif total != self.last_total:
                self.moved(f"the announced count went from {self.last_total} to {total}")
            self.last_total = total
        overlap = 0
        if position is not None and keys:
            if position == self.next_position - 1 and self.last_key is not None:
                overlap = 1
                if keys[0] != self.last_key:
                    self.moved(f"the record at position {position} changed between two pages")
            elif position != self.next_position:
                self.moved(f"a page started at position {position}, not {self.next_position}")
            self.next_position = position + len(keys)
        if keys:
            self.last_key = keys[-1]
        return overlap

    def finish(self, read: int, distinct: int) -> None:
        """The scan read `read` records, `distinct` of them with different keys."""
        if read > distinct:
            self.moved(f"{read - distinct} record(s) came twice")
        if self.last_total is not None and self.last_total != distinct:
            self.moved(f"the API announced {self.last_total} records but {distinct} were read")


# --- the snapshot -----------------------------------------------------------------------------

# One row per key: the version kept (its replication value as `rank`, its read number, its
# JSON, NULL when it is known but not to be sent) and the last scan that read the key.
_SCHEMA = """
CREATE TABLE versions (key BLOB PRIMARY KEY, rank INTEGER, read INTEGER, scan INTEGER, body BLOB);
CREATE INDEX sending ON versions (rank, read) WHERE body IS NOT NULL;
"""
# A key read before keeps its newest version by replication value (the latest read when equal;
# -1, no value, is older than any); every read of it counts for its scan. SQLite evaluates
# every right-hand side on the row as it was.
_MERGE = """
INSERT INTO versions VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET
    scan = excluded.scan,
    read = CASE WHEN excluded.rank >= rank THEN excluded.read ELSE read END,
    body = CASE WHEN excluded.rank >= rank THEN excluded.body ELSE body END,
    rank = max(rank, excluded.rank)
"""


class TemporaryDiskError(ProviderError):
    """The snapshot's temporary database cannot be written (a full or unusable directory)."""


def temporary_directory() -> str:
    """Where SQLite puts its temporary files, as a user would set it."""
    for variable in ("SQLITE_TMPDIR", "TMPDIR"):
        if directory := os.environ.get(variable):
            return f"{directory} (from {variable})"
    return "the system temporary directory (TMPDIR is not set)"


class Snapshot:
    """The records of one list, merged by key over its scans, in a temporary SQLite database.

    Each read of a record is a *version*, numbered in read order. The database has no name:
    SQLite keeps its pages in a small cache and the rest in a file it deletes as it opens it,
    so nothing is left behind when the snapshot is closed or the process ends. Versions wait
    in `_pending` until `FLUSH_EVERY` came or the snapshot is asked something. A directory
    that is full or cannot be written ends the stream with one `TemporaryDiskError` line
    starting with `label`.
    """

    FLUSH_EVERY = 500

    def __init__(self, label: str = "the snapshot") -> None:
        self.label = label
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[bytes, int, int, int, bytes | None]] = []
        self._reads = 0
        # A body is the record's JSON in the SDK's own encoding (`singer_sdk.contrib.msgspec`).
        self._encode_json = json_encoder.encode

    def add(self, scan: int, key: str, value: str | None, row: Row | None) -> None:
        """A version read by scan number `scan`: the record's key, its replication value (an
        ISO-8601 timestamp, or None) and the record (None: known, but not to be sent)."""
        try:
            ranked = -1 if value is None else rank(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"a replication value is not an ISO-8601 timestamp: {value!r}"
            ) from None
        body = None if row is None else self._encode_json(row)
        self._reads += 1
        self._pending.append((_utf8(key), ranked, self._reads, scan, body))
        if len(self._pending) >= self.FLUSH_EVERY:
            self._flush()

    def new_version(self, key: str, value: str | None) -> bool:
        """Whether the version kept for `key` has another replication value (or there is none):
        called for the few records updated after their scan began."""
        if value is None:
            return True
        kept = self._one("SELECT rank FROM versions WHERE key = ?", _utf8(key))
        return kept is None or kept != rank(value)

    def distinct(self, scan: int) -> int:
        """How many keys scan number `scan` read (and no later scan read again)."""
        return t.cast("int", self._one("SELECT count(*) FROM versions WHERE scan = ?", scan))

    def __len__(self) -> int:
        """The records that will be sent."""
        return t.cast("int", self._one("SELECT count(*) FROM versions WHERE body IS NOT NULL"))

    def rows(self) -> Iterator[Row]:
        """The records to send, a version at a time, by replication value (none first), then in
        read order."""
        self._flush()
        decode = msgspec.json.decode
        query = "SELECT body FROM versions WHERE body IS NOT NULL ORDER BY rank, read"
        with self._disk():
            found = self._db.execute(query)
        while True:
            with self._disk():
                batch = found.fetchmany(100)
            if not batch:
                return
            for (body,) in batch:
                yield decode(body)

    def close(self) -> None:
        self._pending = []
        self._db.close()

    def _one(self, query: str, *parameters: t.Any) -> t.Any:
        self._flush()
        with self._disk():
            found = self._db.execute(query, parameters).fetchone()
        return None if found is None else found[0]

    def _flush(self) -> None:
        if self._pending:
            with self._disk(), self._db:  # one transaction
                self._db.execute("BEGIN")
                self._db.executemany(_MERGE, self._pending)
            self._pending = []

    @contextlib.contextmanager
    def _disk(self) -> Iterator[None]:
        """SQLite's disk errors as one line naming the directory and how to move it."""
        try:
            yield
        except (sqlite3.OperationalError, OSError) as error:
            if not isinstance(error, OSError) and not _DISK_PROBLEMS.search(str(error)):
                raise
            msg = (
                f"{self.label}: cannot write the temporary database the list is read into "
                f"({error}) in {temporary_directory()}; free space there, or point TMPDIR "
                "at a directory with room"
            )
            raise TemporaryDiskError(msg) from None


_DISK_PROBLEMS = re.compile(r"full|disk I/O|unable to open|readonly|read-only")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # any str a JSON string decodes to


_EPOCH = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def rank(value: str) -> int:
    """A replication value (a timestamp with its offset) as microseconds since year 1."""
    return (datetime.datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND
