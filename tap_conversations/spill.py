"""The bodies of a snapshot (`snapshot.Snapshot`): sorted runs in a temporary file, read back
merged a window at a time, so that a list of any size holds little in memory.

Bodies come in read order, one per *version* (a read of a record), each with a *rank* kept by
the snapshot (a number, its replication value); they wait in memory until `RUN_BYTES` of them
came, then go to the file as one *run* sorted by (rank, version). Reading merges the runs a
window of about `READ_WINDOW` bodies at a time: a run's part of a window is one read of
consecutive bytes, into one buffer, and one small sort orders the window, which is handed on
whole (its versions and their bodies), so that a caller can write it with one call. Not a
mapping of the file: mapped pages count in RSS, and the kernel maps whole large folios (up to a
run) at once.
"""

from __future__ import annotations

import array
import os
import tempfile
import typing as t
from bisect import bisect_left, bisect_right
from itertools import accumulate, compress, islice, repeat
from operator import add, and_, lshift, or_, sub

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class SpillFile:
    """Bodies of versions numbered from 0, ranked by `ranks` (an array the caller extends)."""

    RUN_BYTES = 1 << 20
    READ_WINDOW = 1024

    def __init__(self, ranks: array.array[int]) -> None:
        # Unbuffered, never named: the file vanishes when closed, or when the process ends.
        self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self._ranks = ranks
        self._held: list[bytes] = []  # bodies not written yet, from version `_held_first` on
        self._held_first = self._held_bytes = 0
        # The versions written, in file order; where each starts (and the end); where each run
        # starts in that order: 8 + 4 bytes a version.
        self._placed, self._starts = array.array("I"), array.array("q", [0])
        self._run_firsts: list[int] = []

    def add(self, bodies: list[bytes]) -> None:
        """The bodies of the next versions (b"": none)."""
        self._held += bodies
        self._held_bytes += sum(map(len, bodies))
        if self._held_bytes >= self.RUN_BYTES:
            self.write_run()

    def write_run(self) -> None:
        """Append the bodies held, sorted by (rank, version), to the file."""
        first, end = self._held_first, self._held_first + len(self._held)
        if first == end:
            return
        order = array.array("I", sorted(range(first, end), key=self._ranks.__getitem__))
        held = list(map(self._held.__getitem__, map(sub, order, repeat(first))))
        self._run_firsts.append(len(self._placed))
        self._placed += order
        self._starts.extend(islice(accumulate(map(len, held), initial=self._starts[-1]), 1, None))
        _write(self._file, held)
        self._held, self._held_first, self._held_bytes = [], end, 0

    def windows(
        self, sent: Callable[[array.array[int]], list[int]] | None = None
    ) -> Iterator[tuple[list[int], list[memoryview]]]:
        """The bodies by (rank, version), a window at a time: its versions, and their bodies
        (views of one buffer), in that order. Only those of the versions `sent` keeps, if given
        (of some versions: per version, whether to send it)."""
        self.write_run()
        placed, ranks, starts = self._placed, self._ranks, self._starts
        cursors = list(self._run_firsts)  # per run: its next place; and where it ends
        ends = [*cursors[1:], len(placed)] if cursors else []
        step = max(1, self.READ_WINDOW // max(1, len(ends)))
        while True:
            parts, step = self._window(cursors, ends, step)
            if not parts:
                return
            window = memoryview(bytearray(sum(starts[high] - starts[low] for low, high in parts)))
            spans: list[slice] = []  # per place of the window, where its body is in `window`
            versions = array.array("I")  # per place of the window, its version
            order: list[int] = []  # (rank, index in `spans`) of each place sent, packed
            for low, high in parts:
                at, before = (spans[-1].stop if spans else 0), len(spans)
                _read_into(self._file, window[at : at + starts[high] - starts[low]], starts[low])
                shift = repeat(at - starts[low])
                firsts, lasts = starts[low:high], starts[low + 1 : high + 1]
                spans += map(slice, map(add, firsts, shift), map(add, lasts, shift))
                versions += placed[low:high]
                ranked = map(lshift, map(ranks.__getitem__, placed[low:high]), repeat(32))
                tagged = map(or_, ranked, range(before, len(spans)))
                order += tagged if sent is None else compress(tagged, sent(placed[low:high]))
            if not order:
                continue
            order.sort()
            indexes = list(map(and_, order, repeat(0xFFFFFFFF)))
            bodies = list(map(window.__getitem__, map(spans.__getitem__, indexes)))
            yield list(map(versions.__getitem__, indexes)), bodies

    def close(self) -> None:
        self._file.close()

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
        next_step = max(1, step * self.READ_WINDOW // taken)
        return [(low, high) for low, high in parts if high > low], next_step

    def _cut(self, low: int, end: int, bound: tuple[int, int] | None) -> int:
        """Where a run's places below `bound` end, from `low` (places rise with (rank, place))."""
        if bound is None:
            return end
        rank, place = bound
        if low <= place < end:  # the run the bound is from
            return place
        search = bisect_right if end <= place else bisect_left  # an earlier run wins ties
        return search(self._placed, rank, low, end, key=self._ranks.__getitem__)


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
        if (done := os.writev(file.fileno(), part)) < sum(map(len, part)):
            write_all(file, memoryview(b"".join(part))[done:])  # short: rare on a regular file


def write_all(out: t.BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """`out.write(data)`, all of it (an unbuffered file's write may be short)."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking raw stream that would block: never spin on it
            raise BlockingIOError(0, "the output would block", len(data) - len(view))
        view = view[written:]
