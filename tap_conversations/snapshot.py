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
from itertools import accumulate, compress, islice, repeat
from operator import and_, eq, floordiv, lshift, mul, or_, rshift, sub

import msgspec
from singer_sdk.contrib.msgspec import encoder as json_encoder

from tap_conversations.delivery import write_all
from tap_conversations.spill import SpillFile

if t.TYPE_CHECKING:
    from collections.abc import Iterator

Row = dict[str, t.Any]
#: A record as read.
Record = Row


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
    numbers in `array` columns, 38 bytes with those of `spill.SpillFile` (a dict of 50,000 keys
    to tuples took 9 MiB): its key's 32-bit hash, its *rank* (its replication value in
    microseconds since year 1, -1 for none), the scan that read it, the last scan that read its
    key (0 once another version of the key won), the size of its body (the record's JSON; 0:
    known, not to be sent) and the end of its key in a file of keys (equal hashes are settled by
    the keys). The bodies go to a `SpillFile`, which gives them back by rank.

    Which version of a key wins is worked out when it is asked (`distinct`, `windows`): the
    versions sorted by hash, keys that share one compared. Only `new_version`, asked for the
    few records updated while they were read, needs to look one key up: the first call builds
    `_table` (open addressing, at most half full, each key to its winning version), which then
    follows every version added. So adding versions takes a few operations on a whole batch.
    """

    def __init__(self) -> None:
        self._hashes, self._ranks = array.array("I"), array.array("q")
        self._read_in, self._scans = array.array("B"), array.array("B")
        self._sizes, self._key_ends = array.array("I"), array.array("q")
        self._table: array.array[int] | None = None  # built by the first `new_version`
        self._merged = 0  # versions whose merge `_scans` and `_sendable` hold
        self._keys_known = self._sendable = 0
        # Unbuffered, never named: the files vanish when closed, or when the process ends.
        self._keys = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self._bodies = SpillFile(self._ranks)
        # A body is the record's JSON in the SDK's own encoding (`singer_sdk.contrib.msgspec`):
        # byte for byte what a RECORD message of the decoded record holds.
        self._encode_json = json_encoder.encode
        self._decode_json: t.Callable[[memoryview], Row] = msgspec.json.Decoder().decode

    def add(
        self,
        scan: int,
        keys: t.Sequence[str],
        values: t.Sequence[str | None],
        rows: t.Sequence[Record | None],
    ) -> None:
        """Merge records read by scan number `scan` (1 to 255): per record its key, its
        replication value and the record (None: known, but not to be sent).

        A key read before keeps its newest version by replication value (an ISO-8601 timestamp;
        the latest read when equal; no value is older than any).
        """
        if not 0 < scan < 256:
            raise ValueError(f"scan numbers go from 1 to 255, not {scan}")
        count = len(keys)
        if not count:
            return
        try:
            ranks = array.array("q", _ranks(values))
        except (TypeError, ValueError):
            bad = next(v for v in values if v is not None and not _is_timestamp(v))
            raise ValueError(f"a replication value is not an ISO-8601 timestamp: {bad!r}") from None
        json = self._encode_json
        if None in rows:
            bodies = [b"" if row is None else json(row) for row in rows]
        else:
            bodies = list(map(json, rows))
        first = len(self._hashes)
        self._hashes.extend(map(and_, map(hash, keys), repeat(_HASH_BITS)))
        self._ranks += ranks
        self._read_in.frombytes(bytes((scan,)) * count)
        self._sizes.extend(map(len, bodies))
        self._add_keys(keys)
        self._bodies.add(bodies)
        if self._table is not None:
            self._index(first)

    def new_version(self, key: str, value: str | None) -> bool:
        """Whether the version kept for `key` has another replication value (or there is none):
        called for the few records updated after their scan began."""
        if value is None:
            return True
        if self._table is None:
            self._table = array.array("i", [-1]) * 1024
            self._index(0)
        key_hash = hash(key) & _HASH_BITS
        winner, _ = self._find(key_hash, _utf8(key), key_hash & (len(self._table) - 1))
        return winner < 0 or self._ranks[winner] != rank(value)

    def distinct(self, scan: int) -> int:
        """How many keys scan number `scan` read (and no later scan read again)."""
        self._merge()
        return self._scans.count(scan)

    def __len__(self) -> int:
        """The records that will be sent."""
        self._merge()
        return self._sendable

    def rows(self) -> Iterator[Row]:
        """The records to send, by replication value (none first), then in read order."""
        decode_json = self._decode_json
        return (decode_json(body) for _, bodies in self.windows() for body in bodies)

    def windows(self) -> Iterator[tuple[list[int], list[memoryview]]]:
        """What `rows` gives, a window at a time: its versions, and each one's JSON."""
        self._merge()
        every_version_sent = self._sendable == len(self._hashes)
        return self._bodies.windows(None if every_version_sent else self._sent)

    def key(self, version: int) -> str:
        """The key of a version."""
        return self._key(version).decode("utf-8", "surrogatepass")

    def keys_among(self, keys: t.Iterable[str], versions: list[int]) -> set[str]:
        """Which of `keys` (a few) are keys of these `versions` (many): hashes first."""
        hashes = set(map(self._hashes.__getitem__, versions))
        found = set()
        for key in keys:
            key_hash = hash(key) & _HASH_BITS
            if key_hash in hashes:
                encoded = _utf8(key)
                if any(self._key(v) == encoded for v in versions if self._hashes[v] == key_hash):
                    found.add(key)
        return found

    def ranks_of(self, versions: t.Iterable[int]) -> list[int]:
        """The replication values of these versions as `rank` gives them (-1: none)."""
        return list(map(self._ranks.__getitem__, versions))

    def close(self) -> None:
        self._bodies.close()
        self._keys.close()

    def _sent(self, versions: array.array[int]) -> list[int]:
        """Per version: whether it is sent (a body, and no newer version of its key)."""
        return list(
            map(mul, map(self._sizes.__getitem__, versions), map(self._scans.__getitem__, versions))
        )

    def _merge(self) -> None:
        """Work out which version of each key wins, if versions came since the last time.

        With `_table`, `_index` did as they came. Without, a set of the hashes (in C, about 60
        bytes a version for a moment) shows whether any key came twice (or two keys share 32
        bits); if so, the versions are sorted by hash and only equal hashes are looked at one
        by one.
        """
        total = len(self._hashes)
        if self._merged == total:
            return
        scans, sendable = array.array("B", self._read_in), total - self._sizes.count(0)
        if len(set(self._hashes)) == total:  # no key came twice (the usual scan): all win
            self._scans, self._sendable, self._merged = scans, sendable, total
            return
        packed = sorted(map(or_, map(lshift, self._hashes, repeat(32)), range(total)))
        hashes = list(map(rshift, packed, repeat(32)))
        same = list(compress(range(1, total), map(eq, islice(hashes, 1, None), hashes)))
        for index, end in _runs(same):
            by_key: dict[bytes, list[int]] = {}
            for place in packed[index - 1 : end]:
                version = place & 0xFFFFFFFF
                by_key.setdefault(self._key(version), []).append(version)
            for versions in by_key.values():  # in read order (the packed order)
                winner = max(versions, key=lambda v: (self._ranks[v], v))
                for loser in versions:
                    if loser != winner:
                        scans[loser] = 0
                        sendable -= self._sizes[loser] > 0
                scans[winner] = self._read_in[versions[-1]]  # the last scan that read the key
        self._scans, self._sendable, self._merged = scans, sendable, total

    def _index(self, first: int) -> None:
        """Put versions `first` on into `_table`, merging each as it comes (from 0: all of
        them, into a new table; else `_table` holds every version before `first`)."""
        if first == 0:
            self._scans, self._sendable, self._keys_known = array.array("B"), 0, 0
        total = len(self._hashes)
        self._scans += self._read_in[first:]
        self._sendable += total - first - self._sizes[first:].count(0)
        self._grow_table(self._keys_known + total - first)
        table = t.cast("array.array[int]", self._table)
        mask, merged = len(table) - 1, 0
        for version in range(first, total):
            slot = self._hashes[version] & mask
            if table[slot] < 0:
                table[slot] = version
            else:
                merged += self._place(slot, version)
        self._keys_known += total - first - merged
        self._merged = total

    def _key(self, version: int) -> bytes:
        start = self._key_ends[version - 1] if version else 0
        return os.pread(self._keys.fileno(), self._key_ends[version] - start, start)

    def _find(self, key_hash: int, key: bytes, slot: int) -> tuple[int, int]:
        """The version winning `key` (-1: none), and its slot in the table (or the free one)."""
        table = t.cast("array.array[int]", self._table)
        mask = len(table) - 1
        while (winner := table[slot]) >= 0:
            if self._hashes[winner] == key_hash and self._key(winner) == key:
                return winner, slot
            slot = (slot + 1) & mask
        return -1, slot

    def _place(self, slot: int, new: int) -> bool:
        """Version `new`, whose home `slot` in the table is taken; whether its key was known."""
        table = t.cast("array.array[int]", self._table)
        old, slot = self._find(self._hashes[new], self._key(new), slot)
        if old < 0:
            table[slot] = new
            return False
        if self._ranks[new] >= self._ranks[old]:  # newer, or as new and read later
            table[slot], loser = new, old
        else:
            self._scans[old], loser = self._read_in[new], new
        self._scans[loser] = 0
        self._sendable -= self._sizes[loser] > 0
        return True

    def _grow_table(self, keys: int) -> None:
        old = t.cast("array.array[int]", self._table)
        size = len(old)
        while keys * 2 > size:
            size *= 2
        if size == len(old):
            return
        table, mask = array.array("i", [-1]) * size, size - 1
        for winner in filter((0).__le__, old):
            slot = self._hashes[winner] & mask
            while table[slot] >= 0:
                slot = (slot + 1) & mask
            table[slot] = winner
        self._table = table

    def _add_keys(self, keys: t.Sequence[str]) -> None:
        start = self._key_ends[-1] if self._key_ends else 0
        text = "".join(keys)
        encoded = _utf8(text)
        sizes: t.Iterable[int] = map(len, keys)
        if len(encoded) != len(text):  # not all ASCII: count bytes, not characters
            sizes = map(len, map(_utf8, keys))
        self._key_ends.extend(islice(accumulate(sizes, initial=start), 1, None))
        write_all(self._keys, encoded)  # an unbuffered write may be short


def _runs(same: list[int]) -> Iterator[tuple[int, int]]:
    """The runs of equal neighbours in a sorted list, given the places `same` whose value
    equals the one before: (first such place, end of the run)."""
    index = 0
    while index < len(same):
        first = end = same[index]
        while index + 1 < len(same) and same[index + 1] == end + 1:
            index, end = index + 1, end + 1
        yield first, end + 1
        index += 1


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # any str a JSON string decodes to


_HASH_BITS = 0xFFFFFFFF  # 4 bytes a version: equal hashes are settled by the keys themselves


_EPOCH = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _ranks(values: t.Sequence[str | None]) -> t.Iterable[int]:
    """Replication values as microseconds since year 1 (-1 for none): in the record layout,
    the same order as their text, and 8 bytes in an array instead of a 81-byte str each."""
    if None in values:
        return [-1 if value is None else rank(value) for value in values]
    parsed = map(datetime.datetime.fromisoformat, t.cast("t.Sequence[str]", values))
    return map(floordiv, map(sub, parsed, repeat(_EPOCH)), repeat(_MICROSECOND))


def rank(value: str) -> int:
    """A replication value (a timestamp) as microseconds since year 1: `value_of` gives back
    the text of a value in the record layout (`records.utc_timestamp`)."""
    return (datetime.datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND


def value_of(microseconds: int) -> str | None:
    """The replication value a `rank` stands for, in the record layout (-1: None)."""
    if microseconds < 0:
        return None
    moment = _EPOCH + datetime.timedelta(microseconds=microseconds)
    return moment.isoformat(timespec="microseconds")


def _is_timestamp(value: t.Any) -> bool:
    try:
        rank(value)
    except (TypeError, ValueError):
        return False
    return True
