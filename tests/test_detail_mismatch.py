"""A detail endpoint that answers another record than the one asked for ends the provider with
one line naming stream, requested key and received key (issue 28 row 6)."""

from __future__ import annotations

import json
import typing as t

from tests.helpers import run_cli
from tests.hostile import Exchange, HostileServer

if t.TYPE_CHECKING:
    from pathlib import Path

WHEN = "2024-01-01T00:00:00Z"


def conversation(api_id: str) -> dict[str, t.Any]:
    return {"api_id": api_id, "updated_date": WHEN, "created_date": WHEN}


def test_a_detail_of_another_record_is_one_line(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        path = exchange.request.path
        if "/conversations/580%3A" in path:  # every detail answers B's body, A's too
            exchange.reply(200, json.dumps({**conversation("580:b"), "data": []}).encode())
        elif "/conversations/" in path:
            results = [conversation("580:a"), conversation("580:b")]
            body = {"count": 2, "next": None, "previous": None, "results": results}
            exchange.reply(200, json.dumps(body).encode())
        else:  # no plans
            body = {"count": 0, "next": None, "previous": None, "results": []}
            exchange.reply(200, json.dumps(body).encode())

    with HostileServer(script) as server:
        config = {
            "perform_engage": {"api_url": server.url, "username": "u", "api_key": "k-12345"},
            "max_concurrency": 1,
        }
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "RuntimeError" not in completed.stderr
    assert (
        "Perform & Engage 365 stream 'perform_engage_conversation_details': asked for the record "
        "with api_id '580:a' and got the one with api_id '580:b'; the API answered another record"
    ) in completed.stderr
