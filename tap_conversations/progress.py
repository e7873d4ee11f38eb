"""Progress of a long run on stderr, and a summary table at its end.

Counters are bumped by the streams (records, requests, retries, the total an API announces);
a background thread logs one line per active stream every `progress_interval_seconds`, never
per record. Singer messages on stdout are untouched: this only writes log lines.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from dataclasses import dataclass, field


@dataclass
class StreamProgress:
    records: int = 0
    requests: int = 0
    retries: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    failed: bool = False

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def line(self, name: str) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        done = f"{self.records:,}" + (f"/{self.total:,}" if self.total is not None else "")
        eta = ""
        if self.total is not None and rate > 0 and self.total > self.records:
            eta = f", ETA {_duration((self.total - self.records) / rate)}"
        return (
            f"{name}: {done} records, {rate:,.0f}/s, {_count(self.requests, 'request')}, "
            f"{_count(self.retries, 'retry', 'retries')}{eta}"
        )


def _count(number: int, singular: str, plural: str | None = None) -> str:
    """`1 request`, `2 requests`, `1,000 requests`."""
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class RateSource(t.Protocol):
    """A provider's request gate (`gate.RequestGate`), as progress reports it."""

    def holding_back(self) -> str | None: ...

    def found(self) -> str | None: ...


class Progress:
    """Thread-safe counters per stream, reported at a steady interval, and for each provider
    whose API limited its rate, how fast it allows (only then: a run without one is quiet)."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._interval = interval
        self._streams: dict[str, StreamProgress] = {}
        self._rates: dict[str, RateSource] = {}  # by provider label
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _get(self, stream: str) -> StreamProgress:
        if stream not in self._streams:
            self._streams[stream] = StreamProgress()
        return self._streams[stream]

    def add(self, stream: str, *, records: int = 0, requests: int = 0, retries: int = 0) -> None:
        with self._lock:
            entry = self._get(stream)
            entry.records += records
            entry.requests += requests
            entry.retries += retries

    def records_counter(self, stream: str) -> t.Callable[[int], None]:
        """A lock-free `add(stream, records=n)`, for the one thread that counts this stream's
        records (a list scan, once per record). Safe beside `add` from other threads: they only
        bump its requests and retries, and `+=` on an attribute no other thread writes loses
        nothing."""
        with self._lock:
            entry = self._get(stream)

        def count(records: int) -> None:
            entry.records += records

        return count

    def watch(self, provider_label: str, rates: RateSource) -> None:
        """Report the rate limit `rates` meets, in progress lines and the summary."""
        with self._lock:
            self._rates[provider_label] = rates

    def set_total(self, stream: str, total: int) -> None:
        with self._lock:
            self._get(stream).total = total

    def finish(self, stream: str, *, failed: bool = False) -> None:
        with self._lock:
            entry = self._get(stream)
            if entry.finished is None:
                entry.finished = time.monotonic()
            entry.failed = entry.failed or failed

    def start(self) -> None:
        if self._interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._report, name="progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _report(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                lines = [e.line(n) for n, e in self._streams.items() if e.finished is None]
                rates = list(self._rates.items())
            lines += [f"{label}: {note}" for label, r in rates if (note := r.holding_back())]
            for line in lines:
                self._logger.info("Progress %s", line)

    def summary(self) -> str:
        with self._lock:
            rows = [
                (name, e.records, e.requests, e.retries, e.seconds, "FAILED" if e.failed else "ok")
                for name, e in self._streams.items()
            ]
            rates = list(self._rates.items())
        width = max([len("stream"), *(len(r[0]) for r in rows)])
        lines = [
            f"{'stream':<{width}}  {'records':>9}  {'requests':>8}  {'retries':>7}  {'seconds':>8}"
            "  status"
        ]
        lines += [
            f"{name:<{width}}  {records:>9,}  {requests:>8,}  {retries:>7,}  {seconds:>8.1f}"
            f"  {status}"
            for name, records, requests, retries, seconds, status in rows
        ]
        lines += [f"{label}: {found}" for label, r in rates if (found := r.found())]
        return "\n".join(lines)
