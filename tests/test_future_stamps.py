"""A server whose clock runs ahead: every bookmark the tap writes is one it accepts next run
(issue 28 row 15). Parents were capped at the run's start already; children are now too."""

from __future__ import annotations

import json
import typing as t

from tests.helpers import parse_messages, run_cli
from tests.hostile import Exchange, HostileServer, respondent_config

if t.TYPE_CHECKING:
    from pathlib import Path

AHEAD = "2100-01-01T00:00:00.000Z"  # far ahead of any machine's clock
PAST = "2024-01-01T00:00:00.000Z"


def page(updated: str) -> bytes:
    message = {"uid": "m1", "body": "hi", "createdAt": PAST, "updatedAt": updated}
    participant = {"uid": "u1", "firstName": "A"}
    conversation = {
        "uid": "c1",
        "updatedAt": updated,
        "messages": [message],
        "participants": [participant],
    }
    body = {"results": [conversation], "page": 1, "pageSize": 100, "totalResults": 1}
    return json.dumps(body).encode()


def test_no_bookmark_is_written_ahead_of_the_clock(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, page(AHEAD))

    with HostileServer(script) as server:
        config = respondent_config(server.url)
        first = run_cli([], config, tmp_path, timeout=60)
        assert first.returncode == 0, first.stderr[-2000:]
        messages = parse_messages(first.stdout)
        records = {m["stream"] for m in messages if m["type"] == "RECORD"}
        assert records == {
            "respondent_conversations",
            "respondent_messages",
            "respondent_participants",
        }
        state = next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
        for stream, entry in state["bookmarks"].items():
            assert entry.get("replication_key_value", "") < "2100", (stream, entry)
        state_file = tmp_path / "state.json"
        state_file.write_text(json.dumps(state))
        second = run_cli(
            ["--state", str(state_file)],
            config,
            tmp_path,
            timeout=60,
            env={"TAP_CONVERSATIONS_LOGLEVEL": "INFO"},
        )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "lies in the future" not in second.stderr
