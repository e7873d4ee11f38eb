"""Reading a whole list first: the snapshot it goes into, and the watch that proves the read.

Lists change while they are paged: a record deleted or moved before the read position shifts
the ones after it, so an unchanged record can slip past a page boundary unseen (or come twice).
`ScanWatch` checks, page by page, that the list held still; `Snapshot` holds what was read,
merged over the scans of one run, in a temporary SQLite database (memory stays flat). How the
streams use them, and what goes into STATE, is in `replication`.
"""

from __future__ import annotations

import datetime
import sqlite3
import typing as t

import msgspec

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


class Snapshot:
    """The records of one list, merged over its scans, in a temporary SQLite database.

    SQLite keeps a private temporary database (empty file name) in its page cache and spills it
    to a file when it grows, so a list of any size costs a bounded amount of memory. Every key
    read is kept (to see repeats); bodies only of records that will be sent.
    """

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE snapshot (key TEXT PRIMARY KEY, rk TEXT, scan INTEGER, body BLOB)"
        )
        # MessagePack: the cheapest faithful round trip of a JSON record msgspec offers.
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(dict[str, t.Any]).decode

    def begin_scan(self) -> None:
        """One transaction per scan: SQLite then writes pages, not rows."""
        self._db.execute("BEGIN")

    def end_scan(self) -> None:
        self._db.execute("COMMIT")

    def add(self, scan: int, versions: t.Sequence[tuple[str, str | None, Row | None]]) -> None:
        """Merge records read by scan number `scan` (between `begin_scan` and `end_scan`).

        A key read before keeps its newest version (by replication value; the latest read
        when equal). A record without a body is known, but will not be sent.
        """
        self._db.executemany(
            "INSERT INTO snapshot (key, rk, scan, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET scan = excluded.scan, "
            "rk = CASE WHEN excluded.rk >= snapshot.rk OR snapshot.rk IS NULL "
            "THEN excluded.rk ELSE snapshot.rk END, "
            "body = CASE WHEN excluded.rk >= snapshot.rk OR snapshot.rk IS NULL "
            "THEN excluded.body ELSE snapshot.body END",
            [
                (key, value, scan, None if row is None else self._encode(row))
                for key, value, row in versions
            ],
        )

    def new_version(self, key: str, value: str | None) -> bool:
        """Whether no earlier read saw this version of the record (it may be a fresh change)."""
        found = self._db.execute(
            "SELECT 1 FROM snapshot WHERE key = ? AND rk = ?", (key, value)
        ).fetchone()
        return found is None

    def distinct(self, scan: int) -> int:
        """How many keys scan number `scan` read."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM snapshot WHERE scan = ?", (scan,)
        ).fetchone()
        return int(count)

    def __len__(self) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM snapshot WHERE body IS NOT NULL"
        ).fetchone()
        return int(count)

    def rows(self) -> Iterator[Row]:
        """The records to send, in replication-key order (records without one first)."""
        cursor = self._db.execute(
            "SELECT body FROM snapshot WHERE body IS NOT NULL ORDER BY rk, key"
        )
        while batch := cursor.fetchmany(500):
            for (body,) in batch:
                yield self._decode(body)

    def close(self) -> None:
        self._db.close()
