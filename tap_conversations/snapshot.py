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
from bisect import bisect_left, bisect_right
from itertools import accumulate, compress, islice, repeat
from operator import add, and_, floordiv, lshift, mul, or_, sub

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
    """The records of one list, merged by key over its scans; their bodies in a temporary file.

    Each read of a record is a *version*, numbered in read order, and kept in memory as a few
    numbers in `array` columns, 37 bytes (a dict of 50,000 keys to tuples took 9 MiB): its key's
    32-bit hash, its *rank* (its replication value in microseconds since year 1, -1 for none),
    the last scan that read its key (0 once another version of the key won), the size of its
    MessagePack body (0: known, not to be sent), the end of its key in a second file (equal
    hashes are settled by the keys) and, once written, its place in the file and where it
    starts. `_table`, open addressing at most half full, maps each key to its winning version.

    Bodies wait in memory until `RUN_BYTES` of them were read, then are appended to the file as
    a *run* sorted by (rank, version). `rows` merges the runs a window at a time: a run's part
    of a window is one read of consecutive bytes, and only one window's bodies are in memory.
    (Not a mapping of the file: mapped pages count in RSS, and the kernel maps whole large
    folios, up to a run each, at once.)

    On the 50,000 onQ sandbox records, add + rows cost 3.4 µs a record, MessagePack's encode
    and decode 2.0 of it, against 6.5 for the SQLite table this replaces (an upsert per record,
    then an indexed sort); 50,000 such records hold 2.3 MiB more at peak than 2,000.
    """

    RUN_BYTES = 1 << 20
    READ_WINDOW = 1024

    def __init__(self) -> None:
        # Unbuffered, never named: the files vanish when closed, or when the process ends.
        self._bodies = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self._keys = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
        self._hashes, self._ranks = array.array("I"), array.array("q")
        self._scans, self._sizes = array.array("B"), array.array("I")
        self._key_ends = array.array("q")
        self._table = array.array("i", [-1]) * 1024  # never more than half full
        self._keys_known = self._sendable = 0
        self._run: list[bytes] = []  # bodies of the versions from `_run_first` on
        self._run_first = self._run_bytes = 0
        # The versions in the file, in file order, where each starts (and the end), where each
        # run starts.
        self._placed, self._starts = array.array("I"), array.array("q", [0])
        self._run_firsts: list[int] = []
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode: t.Callable[[t.Any], Row] = msgspec.msgpack.Decoder().decode

    def add(self, scan: int, versions: t.Sequence[tuple[str, str | None, Row | None]]) -> None:
        """Merge records read by scan number `scan` (1 to 255): (key, replication value, row).

        A key read before keeps its newest version by replication value (an ISO-8601 timestamp;
        the latest read when equal; no value is older than any). A version without a row is
        known, but will not be sent.
        """
        if not 0 < scan < 256:
            raise ValueError(f"scan numbers go from 1 to 255, not {scan}")
        if not versions:
            return
        keys, values, rows = zip(*versions, strict=True)
        try:
            ranks = array.array("q", _ranks(values))
        except (TypeError, ValueError):
            bad = next(v for v in values if v is not None and not _is_timestamp(v))
            raise ValueError(f"a replication value is not an ISO-8601 timestamp: {bad!r}") from None
        first, count = len(self._hashes), len(keys)
        if None in rows:
            bodies = [b"" if row is None else self._encode(row) for row in rows]
        else:
            bodies = list(map(self._encode, rows))
        hashes = list(map(and_, map(hash, keys), repeat(_HASH_BITS)))
        self._hashes.extend(hashes)
        self._ranks += ranks
        self._scans.frombytes(bytes((scan,)) * count)
        self._sizes.extend(map(len, bodies))
        self._add_keys(keys)
        self._run += bodies
        self._run_bytes += sum(self._sizes[first:])
        self._sendable += count - bodies.count(b"")
        self._grow_table(self._keys_known + count)
        table, mask, merged = self._table, len(self._table) - 1, 0
        for version, slot in enumerate(map(and_, hashes, repeat(mask)), first):
            if table[slot] < 0:
                table[slot] = version
            else:
                merged += self._place(slot, version, keys[version - first], scan)
        self._keys_known += count - merged
        if self._run_bytes >= self.RUN_BYTES:
            self._write_run()

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
        self._write_run()
        return self._read()

    def close(self) -> None:
        self._bodies.close()
        self._keys.close()

    def _read(self) -> Iterator[Row]:
        """Merge the sorted runs a window at a time (see `_window`); each run's part of a window
        is read from the file at once, and one small sort orders the window."""
        placed, ranks, starts = self._placed, self._ranks, self._starts
        cursors = list(self._run_firsts)  # per run: its next place; and where it ends
        ends = [*cursors[1:], len(placed)] if cursors else []
        everything = self._sendable == len(placed)  # no version without body, none lost
        step = max(1, self.READ_WINDOW // max(1, len(ends)))
        while True:
            parts, step = self._window(cursors, ends, step)
            if not parts:
                return
            # The window's parts, each read at once into one buffer; per place its body's slice.
            window = memoryview(bytearray(sum(starts[high] - starts[low] for low, high in parts)))
            spans: list[slice] = []
            order: list[int] = []  # (rank, index in `spans`) of each place sent, packed
            for low, high in parts:
                at, before = (spans[-1].stop if spans else 0), len(spans)
                _read_into(self._bodies, window[at : at + starts[high] - starts[low]], starts[low])
                shift = repeat(at - starts[low])
                firsts, lasts = starts[low:high], starts[low + 1 : high + 1]
                spans += map(slice, map(add, firsts, shift), map(add, lasts, shift))
                ranked = map(lshift, map(ranks.__getitem__, placed[low:high]), repeat(32))
                tagged = map(or_, ranked, range(before, len(spans)))
                order += tagged if everything else compress(tagged, self._sent(placed[low:high]))
            order.sort()
            indexes = map(and_, order, repeat(0xFFFFFFFF))
            yield from map(self._decode, map(window.__getitem__, map(spans.__getitem__, indexes)))

    def _window(
        self, cursors: list[int], ends: list[int], step: int
    ) -> tuple[list[tuple[int, int]], int]:
        """The next window, per run the places from its cursor on whose (rank, place) lies below
        a bound; and the next `step`. The bound is the least (rank, place) among the runs'
        `step`-th next places: what lies below it goes before whatever is left. A window over
        two `READ_WINDOW`s halves `step`; then `step` is set for the next to hold one."""
        placed, rank_of = self._placed, self._ranks.__getitem__
        live = [run for run, end in enumerate(ends) if cursors[run] < end]
        if not live:
            return [], step
        while True:
            ahead = [cursors[run] + step for run in live if cursors[run] + step < ends[run]]
            bound = min(((rank_of(placed[place]), place) for place in ahead), default=None)
            highs = [self._cut(cursors[run], ends[run], bound) for run in live]
            taken = sum(highs) - sum(cursors[run] for run in live)
            if taken <= 2 * self.READ_WINDOW or step == 1:
                break
            step //= 2
        parts = [(cursors[run], high) for run, high in zip(live, highs, strict=True)]
        for run, high in zip(live, highs, strict=True):
            cursors[run] = high
        return [part for part in parts if part[1] > part[0]], max(
            1, step * self.READ_WINDOW // taken
        )

    def _cut(self, low: int, end: int, bound: tuple[int, int] | None) -> int:
        """Where a run's places below `bound` end, from `low` (places rise with (rank, place))."""
        if bound is None:
            return end
        rank, place = bound
        if low <= place < end:  # the run the bound is from
            return place
        search = bisect_right if end <= place else bisect_left  # an earlier run wins ties
        return search(self._placed, rank, low, end, key=self._ranks.__getitem__)

    def _sent(self, versions: array.array[int]) -> list[int]:
        """Per version: whether it is sent (a body, and no newer version of its key)."""
        return list(
            map(mul, map(self._sizes.__getitem__, versions), map(self._scans.__getitem__, versions))
        )

    def _write_run(self) -> None:
        """Append the bodies held, sorted by (rank, version), to the file."""
        first, end = self._run_first, len(self._hashes)
        if first == end:
            return
        order = array.array("I", sorted(range(first, end), key=self._ranks.__getitem__))
        self._run_firsts.append(len(self._placed))
        self._placed += order
        sizes = map(self._sizes.__getitem__, order)
        self._starts.extend(islice(accumulate(sizes, initial=self._starts[-1]), 1, None))
        _write(self._bodies, list(map(self._run.__getitem__, map(sub, order, repeat(first)))))
        self._run, self._run_first, self._run_bytes = [], end, 0

    def _add_keys(self, keys: tuple[str, ...]) -> None:
        start = self._key_ends[-1] if self._key_ends else 0
        text = "".join(keys)
        encoded = _utf8(text)
        sizes: t.Iterable[int] = map(len, keys)
        if len(encoded) != len(text):  # not all ASCII: count bytes, not characters
            sizes = map(len, map(_utf8, keys))
        self._key_ends.extend(islice(accumulate(sizes, initial=start), 1, None))
        _write(self._keys, [encoded])

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


def _read_into(file: t.BinaryIO, into: memoryview, start: int) -> None:
    """Fill `into` with the file's bytes from `start` on."""
    while into:
        if hasattr(os, "preadv"):  # Linux, the BSDs: straight into the buffer
            done = os.preadv(file.fileno(), [into], start)
        else:
            data = os.pread(file.fileno(), len(into), start)
            into[: (done := len(data))] = data
        if not done:
            raise EOFError(f"the snapshot's file ends before byte {start}")
        into, start = into[done:], start + done


def _write(file: t.BinaryIO, chunks: list[bytes]) -> None:
    """Append `chunks` to an unbuffered file, without joining them in memory first."""
    for start in range(0, len(chunks), 1024):  # IOV_MAX
        part = chunks[start : start + 1024]
        rest = memoryview(b"")
        if (done := os.writev(file.fileno(), part)) < sum(map(len, part)):
            rest = memoryview(b"".join(part))[done:]  # a short write: rare on a regular file
        while rest:
            rest = rest[file.write(rest) :]


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
