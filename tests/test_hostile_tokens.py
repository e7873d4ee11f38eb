"""The Perform & Engage token endpoint: retried like any request, found where it lives.

Issue 17 rows 17 and 22.
"""

from __future__ import annotations

import logging
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tests.helpers import assert_same_records, run_cli, sync
from tests.hostile import Exchange, HostileServer
from tests.waits import skip_waits

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

EMPTY_LIST = b'{"count": 0, "next": null, "previous": null, "results": []}'
BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def token_config(api_url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "perform_engage": {
            "api_url": api_url,
            "username": "token.user@example.com",
            "api_key": "pe-token-key-2718",
            "auth_method": "token",
            **extra,
        }
    }


def test_token_endpoint_faults_are_retried_like_any_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waits = skip_waits(monkeypatch)
    token_answers = iter(
        [
            (429, b'{"detail": "slow down"}', "application/json", {"Retry-After": "1"}),
            (502, BAD_GATEWAY, "text/html", {}),
            (200, BAD_GATEWAY, "text/html", {}),
            (200, b'{"token": "good-token-31a7"}', "application/json", {}),
        ]
    )

    def script(exchange: Exchange) -> None:
        if exchange.request.method == "POST":
            status, body, content_type, headers = next(token_answers)
            exchange.reply(status, body, content_type, headers)
        elif exchange.request.headers.get("authorization") == "Token good-token-31a7":
            exchange.reply(200, EMPTY_LIST)
        else:
            exchange.reply(401, b'{"detail": "Invalid token."}')

    with HostileServer(script) as server, caplog.at_level(logging.INFO):
        sync(token_config(f"{server.url}/api/v2"))
        posts = server.paths("POST")
    assert posts == ["/api/v2/obtainauthtoken/"] * 4
    for answer in (
        "answered HTTP 429 Too Many Requests, retrying in 1.0 s as its Retry-After asks",
        "answered HTTP 502 Bad Gateway, retrying in",
        "answered HTTP 200 OK with a body that is not JSON (content type text/html",
    ):
        assert f"Perform & Engage 365: POST /obtainauthtoken/ {answer}" in caplog.text
    assert len(waits.waits) == 3
    assert waits.waits[0] == 1.0


def test_a_token_endpoint_that_keeps_failing_ends_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_waits(monkeypatch)

    def script(exchange: Exchange) -> None:
        exchange.reply(503, b'{"detail": "down"}')

    with HostileServer(script) as server, pytest.raises(ProviderError) as failure:
        sync({**token_config(f"{server.url}/api/v2"), "max_retries": 1})
    assert len(server.requests) == 2
    assert str(failure.value) == (
        "Perform & Engage 365: gave up on /api/v2/obtainauthtoken/ after 2 attempts "
        "(last answer HTTP 503 Service Unavailable)"
    )


def test_token_endpoint_beside_the_api_root_is_found(sandbox: Sandbox) -> None:
    sandbox.settings.pe_token_at_root = True
    pe = {**sandbox.tap_config()["perform_engage"], "auth_method": "token"}
    result = sync({"perform_engage": pe})

    assert_same_records(
        result.records("perform_engage_conversations"),
        sandbox.data.pe_conversations,
        "api_id",
    )
    token_requests = [r for r in sandbox.requests if r.method == "POST"]
    assert [(r.path, r.status) for r in token_requests] == [
        ("/perform-engage/api/v2/obtainauthtoken/", 404),
        ("/perform-engage/obtainauthtoken/", 200),
    ]


def test_token_url_pins_the_token_endpoint(sandbox: Sandbox) -> None:
    sandbox.settings.pe_token_at_root = True
    pe = {
        **sandbox.tap_config()["perform_engage"],
        "auth_method": "token",
        "token_url": f"{sandbox.url}/perform-engage/obtainauthtoken/",
    }
    result = sync({"perform_engage": pe})
    assert result.records("perform_engage_conversation_plans")
    token_paths = [r.path for r in sandbox.requests if r.method == "POST"]
    assert token_paths == ["/perform-engage/obtainauthtoken/"]


def test_no_token_endpoint_names_every_place_tried(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(404, b'{"detail": "Not found."}')

    with HostileServer(script) as server:
        completed = run_cli([], token_config(f"{server.url}/api/v2"), tmp_path, timeout=60)
    assert completed.returncode == 1
    assert server.paths("POST") == ["/api/v2/obtainauthtoken/", "/obtainauthtoken/"]
    assert (
        f"Perform & Engage 365: no token endpoint found: POST {server.url}/api/v2/obtainauthtoken/"
        f" and POST {server.url}/obtainauthtoken/ both answered HTTP 404 — set "
        "perform_engage.token_url" in completed.stderr
    )
    assert "Traceback" not in completed.stderr
