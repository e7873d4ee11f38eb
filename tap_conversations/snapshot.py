"""Reading a whole list first: the snapshot it goes into, and the watch that proves the read.

Lists change while they are paged: a record deleted or moved before the read position shifts
the ones after it, so an unchanged record can slip past a page boundary unseen (or come twice).
`ScanWatch` checks, page by page, that the list held still; `Snapshot` holds what was read,
merged over the scans of one run, with the records' bodies in a temporary file (memory stays
flat). How the streams use them, and what goes into STATE, is in `replication`.
"""

from __future__ import annotations

import array
import datetime
import os
import tempfile
import typing as t
from itertools import accumulate, islice, repeat
from operator import and_, floordiv, mul, sub

import msgspec
from singer_sdk.contrib.msgspec import encoder as json_encoder

from tap_conversations.record_types import TypedRecord
from tap_conversations.spill import SpillFile

if t.TYPE_CHECKING:
    from collections.abc import Iterator

Row = dict[str, t.Any]
#: A record as read: a dict, or a `record_types.TypedRecord` (msgspec encodes it as one).
Record = Row | TypedRecord
#: A record to send, as the snapshot keeps it: key, replication value, JSON of the record.
Entry = tuple[str, t.Optional[str], bytes]  # noqa: UP045 (a runtime type, for msgspec)


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
    """The records of one list, merged by key over its scans; their bodies in a temporary file.

    Each read of a record is a *version*, numbered in read order. In memory a version is a few
    numbers in `array` columns, 37 bytes with those of `spill.SpillFile` (a dict of 50,000 keys
    to tuples took 9 MiB): its key's 32-bit hash, its *rank* (its replication value in
    microseconds since year 1, -1 for none), the last scan that read its key (0 once another
    version of the key won), the size of its MessagePack body (0: known, not to be sent) and
    the end of its key in a file of keys (equal hashes are settled by the keys). `_table`, open
    addressing at most half full, maps each key to its winning version. The bodies go to a
    `SpillFile`, which gives them back by rank.

    On the 50,000 onQ sandbox records, add + rows cost 3.5 µs a record, MessagePack's encode
    and decode 2.0 of it, against 6.5 for the SQLite table this replaces (an upsert per record,
    then an indexed sort); 50,000 such records hold 2.3 MiB more at peak than 2,000.
    """

    def __init__(self) -> None:
        self._hashes, self._ranks = array.array("I"), array.array("q")
        self._scans, self._sizes = array.array("B"), array.array("I")
        self._key_ends = array.array("q")
        self._table = array.array("i", [-1]) * 1024  # never more than half full
        self._keys_known = self._sendable = 0
        # Unbuffered, never named: the files vanish when closed, or when the process ends.
        self._keys = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self._bodies = SpillFile(self._ranks)
        # Each body is a MessagePack (key, value, JSON of the record): what `rows` decodes,
        # and what `entries` hands on as it is, for a record written without being decoded.
        # The JSON is the SDK's own encoding (`singer_sdk.contrib.msgspec`), byte for byte
        # what a RECORD message of the decoded record would hold.
        self._encode = msgspec.msgpack.Encoder().encode
        self._encode_json = json_encoder.encode
        self._decode_entry = msgspec.msgpack.Decoder(Entry).decode
        self._decode_json: t.Callable[[bytes], Row] = msgspec.json.Decoder().decode

    def add(self, scan: int, versions: t.Sequence[tuple[str, str | None, Record | None]]) -> None:
        """Merge records read by scan number `scan` (1 to 255): (key, replication value, row).

        A key read before keeps its newest version by replication value (an ISO-8601 timestamp;
        the latest read when equal; no value is older than any). A version without a row is
        known, but will not be sent.
        """
        if not 0 < scan < 256:
            raise ValueError(f"scan numbers go from 1 to 255, not {scan}")
        if not versions:
            return
        keys, values, _rows = zip(*versions, strict=True)
        try:
            ranks = array.array("q", _ranks(values))
        except (TypeError, ValueError):
            bad = next(v for v in values if v is not None and not _is_timestamp(v))
            raise ValueError(f"a replication value is not an ISO-8601 timestamp: {bad!r}") from None
        first, count = len(self._hashes), len(keys)
        encode, json = self._encode, self._encode_json
        bodies = [
            b"" if row is None else encode((key, value, json(row))) for key, value, row in versions
        ]
        hashes = list(map(and_, map(hash, keys), repeat(_HASH_BITS)))
        self._hashes.extend(hashes)
        self._ranks += ranks
        self._scans.frombytes(bytes((scan,)) * count)
        self._sizes.extend(map(len, bodies))
        self._add_keys(keys)
        self._sendable += count - bodies.count(b"")
        self._grow_table(self._keys_known + count)
        table, mask, merged = self._table, len(self._table) - 1, 0
        for version, slot in enumerate(map(and_, hashes, repeat(mask)), first):
            if table[slot] < 0:
                table[slot] = version
            else:
                merged += self._place(slot, version, keys[version - first], scan)
        self._keys_known += count - merged
        self._bodies.add(bodies)

    def new_version(self, key: str, value: str | None) -> bool:
        """Whether the version kept for `key` has another replication value (or there is none):
        called for the few records updated after their scan began."""
        if value is None:
            return True
        key_hash = hash(key) & _HASH_BITS
        winner, _ = self._find(key_hash, key, key_hash & (len(self._table) - 1))
        return winner < 0 or self._ranks[winner] != _rank(value)

    def distinct(self, scan: int) -> int:
        """How many keys scan number `scan` read (and no later scan read again)."""
        return self._scans.count(scan)

    def __len__(self) -> int:
        """The records that will be sent."""
        return self._sendable

    def rows(self) -> Iterator[Row]:
        """The records to send, by replication value (none first), then in read order."""
        decode_json = self._decode_json
        return (decode_json(entry[2]) for entry in self.entries())

    def entries(self) -> Iterator[Entry]:
        """What `rows` gives, as (key, replication value, the record's JSON)."""
        every_version_sent = self._sendable == len(self._hashes)
        return self._bodies.read(self._decode_entry, None if every_version_sent else self._sent)

    def close(self) -> None:
        self._bodies.close()
        self._keys.close()

    def _sent(self, versions: array.array[int]) -> list[int]:
        """Per version: whether it is sent (a body, and no newer version of its key)."""
        return list(
            map(mul, map(self._sizes.__getitem__, versions), map(self._scans.__getitem__, versions))
        )

    def _add_keys(self, keys: tuple[str, ...]) -> None:
        start = self._key_ends[-1] if self._key_ends else 0
        text = "".join(keys)
        encoded = _utf8(text)
        sizes: t.Iterable[int] = map(len, keys)
        if len(encoded) != len(text):  # not all ASCII: count bytes, not characters
            sizes = map(len, map(_utf8, keys))
        self._key_ends.extend(islice(accumulate(sizes, initial=start), 1, None))
        _append(self._keys, encoded)

    def _key(self, version: int) -> bytes:
        start = self._key_ends[version - 1] if version else 0
        return os.pread(self._keys.fileno(), self._key_ends[version] - start, start)

    def _find(self, key_hash: int, key: str, slot: int) -> tuple[int, int]:
        """The version winning `key` (-1: none), and its slot in the table (or the free one)."""
        mask = len(self._table) - 1
        while (winner := self._table[slot]) >= 0:
            if self._hashes[winner] == key_hash and self._key(winner) == _utf8(key):
                return winner, slot
            slot = (slot + 1) & mask
        return -1, slot

    def _place(self, slot: int, new: int, key: str, scan: int) -> bool:
        """Version `new`, whose home `slot` in the table is taken; whether its key was known."""
        old, slot = self._find(self._hashes[new], key, slot)
        if old < 0:
            self._table[slot] = new
            return False
        if self._ranks[new] >= self._ranks[old]:  # newer, or as new and read later
            self._table[slot], loser = new, old
        else:
            self._scans[old], loser = scan, new
        self._scans[loser] = 0
        self._sendable -= self._sizes[loser] > 0
        return True

    def _grow_table(self, keys: int) -> None:
        size = len(self._table)
        while keys * 2 > size:
            size *= 2
        if size == len(self._table):
            return
        old, table, mask = self._table, array.array("i", [-1]) * size, size - 1
        for winner in filter((0).__le__, old):
            slot = self._hashes[winner] & mask
            while table[slot] >= 0:
                slot = (slot + 1) & mask
            table[slot] = winner
        self._table = table


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # any str a JSON string decodes to


def _append(file: t.BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:  # an unbuffered write may be short
        view = view[file.write(view) :]


_HASH_BITS = 0xFFFFFFFF  # 4 bytes a version: equal hashes are settled by the keys themselves


_EPOCH = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _ranks(values: t.Sequence[str | None]) -> t.Iterable[int]:
    """Replication values as microseconds since year 1 (-1 for none): in the record layout,
    the same order as their text, and 8 bytes in an array instead of a 81-byte str each."""
    if None in values:
        return [-1 if value is None else _rank(value) for value in values]
    parsed = map(datetime.datetime.fromisoformat, t.cast("t.Sequence[str]", values))
    return map(floordiv, map(sub, parsed, repeat(_EPOCH)), repeat(_MICROSECOND))


def _rank(value: str) -> int:
    return (datetime.datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND


def _is_timestamp(value: t.Any) -> bool:
    try:
        _rank(value)
    except (TypeError, ValueError):
        return False
    return True
