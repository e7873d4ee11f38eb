"""Reading a whole list first: the snapshot it goes into, and the watch that proves the read.

Lists change while they are paged: a record deleted or moved before the read position shifts
the ones after it, so an unchanged record can slip past a page boundary unseen (or come twice).
`ScanWatch` checks, page by page, that the list held still; `Snapshot` holds what was read,
merged over the scans of one run, in a temporary SQLite database (memory stays flat). How the
streams use them, and what goes into STATE, is in `replication`.
"""

from __future__ import annotations

import array
import datetime
import mmap
import os
import tempfile
import typing as t
from collections import deque
from itertools import accumulate, compress, islice, repeat
from operator import add, and_, floordiv, mul, sub

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
    """The records of one list, merged by key over its scans; bodies in a temporary file.

    Every read of a record is a *version*. Each version gets a few numbers in `array` columns
    (about 40 bytes with the key table, instead of ~180 for a dict entry and its objects): its
    key's hash, its *rank* (the replication value as microseconds since year 1, -1 when it has
    none), the last scan that read its key (0 once another version of the key won), the size
    and place of its MessagePack body (size 0: known, not to be sent) and the end of its key in
    a second file, to settle hash collisions exactly. `_table` maps each key (open addressing
    on its hash) to the version that wins it.

    Bodies are held until `RUN_BYTES` of them were read, then sorted by (rank, read order) and
    appended to the file as one *run*. Sending merges the runs by one sort of the small numbers,
    so each run is read front to back: the pages a window of records touches are few, and are
    dropped from the mapping after it (the file's pages count in RSS while mapped).

    Measured on 50,000 onQ records (add + rows): 2.x µs per record, against 6.8 for the SQLite
    table this replaces (its upsert and indexed sort); MessagePack itself is 2.0 of that.
    """

    #: Bodies held in memory before they are sorted and written as a run.
    RUN_BYTES = 2 << 20
    #: Records sent between two drops of the file's mapped pages.
    READ_WINDOW = 1024

    def __init__(self) -> None:
        self._bodies = tempfile.TemporaryFile(buffering=0, prefix="tap-conversations-")
        self._keys = tempfile.TemporaryFile(buffering=0, prefix="tap-conversations-")
        self._body_bytes = 0
        self._hashes = array.array("q")
        self._ranks = array.array("q")
        self._scans = array.array("B")
        self._sizes = array.array("I")
        self._offsets = array.array("q")  # set when the version's run is written
        self._key_ends = array.array("q")  # end of each version's key in `_keys`
        self._file_order = array.array("I")  # the versions whose bodies are written, in order
        self._table = array.array("i", [-1]) * 1024  # at most half full
        self._distinct_keys = 0
        self._sendable = 0
        self._run: list[bytes] = []  # bodies not written yet, from version `_run_first` on
        self._run_first = 0
        self._run_bytes = 0
        self._key_buffer = bytearray()  # keys not written yet, from byte `_keys_written` on
        self._keys_written = 0
        # MessagePack: the cheapest faithful round trip of a JSON record msgspec offers.
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder().decode

    def begin_scan(self) -> None:
        """Nothing to do: kept so that a scan is bracketed wherever the snapshot lives."""

    def end_scan(self) -> None:
        """Nothing to do (see `begin_scan`)."""

    def add(self, scan: int, versions: t.Sequence[tuple[str, str | None, Row | None]]) -> None:
        """Merge records read by scan number `scan` (1-255).

        A key read before keeps its newest version (by replication value, an ISO-8601
        timestamp; the latest read when equal; no value is older than any). A record without
        a body is known, but will not be sent.
        """
        if not versions:
            return
        keys, values, rows = zip(*versions, strict=True)
        first, count = len(self._hashes), len(keys)
        hashes = list(map(hash, keys))
        if None in rows:
            bodies = [b"" if row is None else self._encode(row) for row in rows]
        else:
            bodies = list(map(self._encode, rows))
        self._hashes.extend(hashes)
        self._ranks.extend(_ranks(values))
        self._scans.frombytes(bytes((scan,)) * count)
        self._sizes.extend(map(len, bodies))
        self._offsets.frombytes(bytes(8 * count))
        self._add_keys(keys)
        self._run += bodies
        self._run_bytes += sum(self._sizes[first:])
        self._sendable += count - bodies.count(b"")
        if (self._distinct_keys + count) * 2 > len(self._table):
            self._grow_table()
        table, mask, merged = self._table, len(self._table) - 1, 0
        for version, slot in enumerate(map(and_, hashes, repeat(mask)), first):
            if table[slot] < 0:
                table[slot] = version
            else:
                merged += self._place(slot, version, scan)
        self._distinct_keys += count - merged
        if self._run_bytes >= self.RUN_BYTES:
            self._write_run()

    def _place(self, slot: int, version: int, scan: int) -> int:
        """Put `version` in the key table, its home `slot` being taken; 1 if its key was known."""
        table, mask = self._table, len(self._table) - 1
        key_hash = self._hashes[version]
        while (winner := table[slot]) >= 0:
            if self._hashes[winner] == key_hash and self._key(winner) == self._key(version):
                self._merge(slot, winner, version, scan)
                return 1
            slot = (slot + 1) & mask
        table[slot] = version
        return 0

    def _merge(self, slot: int, old: int, new: int, scan: int) -> None:
        """Version `new` of a key already won by version `old`: one of them stops counting."""
        if self._ranks[new] >= self._ranks[old]:
            self._table[slot], loser = new, old
        else:
            self._scans[old], loser = scan, new
        self._scans[loser] = 0
        if self._sizes[loser]:
            self._sendable -= 1

    def new_version(self, key: str, value: str | None) -> bool:
        """Whether the version kept for `key` has another value (or there is none)."""
        if value is None:
            return True
        key_hash, encoded = hash(key), key.encode("utf-8", "surrogatepass")
        table = self._table
        mask = len(table) - 1
        slot = key_hash & mask
        while (winner := table[slot]) >= 0:
            if self._hashes[winner] == key_hash and self._key(winner) == encoded:
                return self._ranks[winner] != _rank(value)
            slot = (slot + 1) & mask
        return True

    def distinct(self, scan: int) -> int:
        """How many keys scan number `scan` read (and no later scan read again)."""
        return self._scans.count(scan)

    def __len__(self) -> int:
        return self._sendable

    def rows(self) -> Iterator[Row]:
        """The records to send, in replication-value order (records without one first), then
        in the order they were read."""
        self._write_run()
        order, sizes, scans = self._file_order, self._sizes, self._scans
        if self._sendable < len(order):  # some have no body, or lost to a newer version
            order = array.array("I", compress(order, map(mul, map(sizes.__getitem__, order), map(scans.__getitem__, order))))
        # The runs are sorted: this sort merges them, and each is then read front to back.
        sending = array.array("I", sorted(order, key=self._ranks.__getitem__))
        return self._read(sending)

    def _read(self, sending: array.array[int]) -> Iterator[Row]:
        if not sending:
            return
        starts = self._offsets
        ends = array.array("q", map(add, starts, self._sizes))
        with mmap.mmap(self._bodies.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                for window in range(0, len(sending), self.READ_WINDOW):
                    chunk = sending[window : window + self.READ_WINDOW]
                    spans = map(slice, map(starts.__getitem__, chunk), map(ends.__getitem__, chunk))
                    yield from map(self._decode, map(view.__getitem__, spans))
                    mapped.madvise(mmap.MADV_DONTNEED)
            finally:
                view.release()

    def close(self) -> None:
        self._bodies.close()
        self._keys.close()

    def _write_run(self) -> None:
        """Append the bodies held so far, sorted by (rank, read order), as one run."""
        first, end = self._run_first, len(self._hashes)
        if first == end:
            return
        order = array.array("I", sorted(range(first, end), key=self._ranks.__getitem__))
        starts = accumulate(map(self._sizes.__getitem__, order), initial=self._body_bytes)
        deque(map(self._offsets.__setitem__, order, starts), maxlen=0)
        self._body_bytes += _write(self._bodies, list(map(self._run.__getitem__, map(sub, order, repeat(first)))))
        self._file_order += order
        _write(self._keys, [self._key_buffer])
        self._keys_written += len(self._key_buffer)
        self._run, self._run_first, self._run_bytes, self._key_buffer = [], end, 0, bytearray()

    def _add_keys(self, keys: tuple[str, ...]) -> None:
        start = self._keys_written + len(self._key_buffer)
        text = "".join(keys)
        encoded = text.encode("utf-8", "surrogatepass")
        if len(encoded) == len(text):  # ASCII: one byte per character
            sizes: t.Iterable[int] = map(len, keys)
        else:
            sizes = [len(key.encode("utf-8", "surrogatepass")) for key in keys]
        self._key_ends.extend(islice(accumulate(sizes, initial=start), 1, None))
        self._key_buffer += encoded

    def _key(self, version: int) -> bytes:
        start = self._key_ends[version - 1] if version else 0
        end = self._key_ends[version]
        if start >= self._keys_written:
            return bytes(self._key_buffer[start - self._keys_written : end - self._keys_written])
        return os.pread(self._keys.fileno(), end - start, start)

    def _grow_table(self) -> None:
        old, self._table = self._table, array.array("i", [-1]) * (2 * len(self._table))
        mask = len(self._table) - 1
        for winner in old:
            if winner >= 0:
                slot = self._hashes[winner] & mask
                while self._table[slot] >= 0:
                    slot = (slot + 1) & mask
                self._table[slot] = winner
        if (self._distinct_keys + 500) * 2 > len(self._table):
            self._grow_table()


def _write(file: t.BinaryIO, chunks: list[bytes] | list[bytearray]) -> int:
    """Append `chunks` to an unbuffered file without joining them first; bytes written."""
    written = 0
    for start in range(0, len(chunks), 1024):  # IOV_MAX
        part = chunks[start : start + 1024]
        size, done = sum(map(len, part)), os.writev(file.fileno(), part)
        if done < size:  # a partial write (rare on a regular file): finish it plainly
            file.write(b"".join(part)[done:])
        written += size
    return written


_EPOCH = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _ranks(values: t.Sequence[str | None]) -> t.Iterable[int]:
    """Replication values as microseconds since year 1 (-1 for none): the same order as their
    text in the record layout, in an array column instead of a str object each."""
    if None in values:
        return [-1 if value is None else _rank(value) for value in values]
    parsed = map(datetime.datetime.fromisoformat, t.cast("t.Sequence[str]", values))
    return map(floordiv, map(sub, parsed, repeat(_EPOCH)), repeat(_MICROSECOND))


def _rank(value: str) -> int:
    return (datetime.datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND
