"""Singer messages on stdout: RECORDs are buffered, every other message flushes them out."""

from __future__ import annotations

import io
import json
import typing as t
from contextlib import redirect_stdout

from tap_conversations.tap import TapConversations

if t.TYPE_CHECKING:
    from sandbox import Sandbox


class FlushRecorder(io.TextIOWrapper):
    """A stdout whose `flush` notes the type of the last message written before it."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")
        self.flushed_after: list[str] = []

    def flush(self) -> None:
        super().flush()
        written = t.cast("io.BytesIO", self.buffer).getvalue().splitlines()
        if written:
            self.flushed_after.append(json.loads(written[-1])["type"])


def test_records_are_not_flushed_one_by_one_and_every_state_is(sandbox: Sandbox) -> None:
    out = FlushRecorder()
    with redirect_stdout(out):
        TapConversations(config={"onq": sandbox.tap_config()["onq"]}).sync_all()
    messages = [
        json.loads(line) for line in t.cast("io.BytesIO", out.buffer).getvalue().splitlines()
    ]
    kinds = [m["type"] for m in messages]
    assert kinds.count("RECORD") == 45
    assert "RECORD" not in out.flushed_after
    assert out.flushed_after.count("STATE") == kinds.count("STATE")
    assert kinds[-1] == "STATE"
