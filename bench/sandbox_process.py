"""The sandbox in a process of its own, so its HTTP server never shares the tap's GIL or core.

`SandboxProcess` starts `sandbox.Sandbox` in a child process (spawned, not forked) and talks to
it over a pipe: the parent gets the tap config once the server listens, and can ask for the
sandbox's own request log, which is how the benchmark measures requests instead of assuming
them.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from types import TracebackType

START_TIMEOUT = 120.0
REPLY_TIMEOUT = 30.0


@dataclass(frozen=True)
class RequestTally:
    """What the sandbox answered since the last tally."""

    total: int
    by_status: dict[int, int]
    by_endpoint: dict[str, int]  # path with ids (segments holding ':') replaced by {id}
    span: float = 0.0  # seconds from the first request's arrival to the last's

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 400)


def endpoint(path: str) -> str:
    """`/a/b/580:xyz/` -> `/a/b/{id}/`: requests grouped by endpoint, not by record."""
    return "/".join("{id}" if ":" in part else part for part in path.split("/"))


def _serve(settings: dict[str, t.Any], conn: Connection) -> None:
    """Child process: run the sandbox until told to stop, answering tally requests."""
    from sandbox import Sandbox, SandboxSettings  # noqa: PLC0415 - imported in the child only

    sandbox = Sandbox(SandboxSettings(**settings)).start()
    try:
        conn.send(sandbox.tap_config())
        while True:
            command = conn.recv()
            if command == "tally":
                entries = sandbox.requests
                sandbox.reset_log()
                by_status = collections.Counter(entry.status for entry in entries)
                by_endpoint = collections.Counter(endpoint(entry.path) for entry in entries)
                arrivals = [entry.arrived for entry in entries] or [0.0]
                span = max(arrivals) - min(arrivals)
                conn.send(RequestTally(len(entries), dict(by_status), dict(by_endpoint), span))
            elif isinstance(command, tuple) and command[0] == "mutate":
                _, provider, changed, added = command
                result = sandbox.mutate(provider, changed=changed, added=added)
                conn.send([str(k) for k in (*result.changed_keys, *result.added_keys)])
            else:
                break
    finally:
        sandbox.stop()
        conn.close()


class SandboxProcess:
    """`with SandboxProcess(pe_conversations=..., latency_ms=...) as sandbox: ...`"""

    def __init__(self, **settings: t.Any) -> None:
        self._settings = settings
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(settings, child_conn), name="bench-sandbox", daemon=True
        )
        self._child_conn = child_conn
        self.tap_config: dict[str, dict[str, str]] = {}

    def __enter__(self) -> SandboxProcess:
        self._process.start()
        self._child_conn.close()
        self.tap_config = self._receive(START_TIMEOUT, "start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):  # the child may already be gone
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def tally(self) -> RequestTally:
        """Requests the sandbox answered since the previous tally (its log is then reset)."""
        self._conn.send("tally")
        return t.cast("RequestTally", self._receive(REPLY_TIMEOUT, "tally"))

    def mutate(self, provider: str, changed: int, added: int = 0) -> list[str]:
        """Change and add records upstream (`Sandbox.mutate`); returns their keys."""
        self._conn.send(("mutate", provider, changed, added))
        return t.cast("list[str]", self._receive(REPLY_TIMEOUT, "mutate"))

    def _receive(self, timeout: float, what: str) -> t.Any:
        if not self._conn.poll(timeout):
            msg = f"sandbox process ({self._settings}) did not answer '{what}' in {timeout} s"
            raise RuntimeError(msg)
        return self._conn.recv()
