"""Credentials under attack: bad secret values, echoed headers, redirects elsewhere.

Issue 17 rows 14, 15 and 16.
"""

from __future__ import annotations

import base64
import json
import typing as t
from urllib.parse import quote, quote_plus

import pytest

from tap_conversations.settings import RedactSecrets
from tests.helpers import run_cli
from tests.hostile import Exchange, HostileServer, empty_respondent_page, respondent_config

if t.TYPE_CHECKING:
    from pathlib import Path

DEBUG = {"TAP_CONVERSATIONS_LOGLEVEL": "DEBUG"}


def every_form(secret: str) -> list[str]:
    """How a secret shows up when printed carelessly."""
    return [
        secret.strip(),
        repr(secret),
        repr(secret.encode()),
        json.dumps(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
    ]


def test_a_secret_with_a_trailing_newline_is_a_config_error_that_shows_no_secret(
    tmp_path: Path,
) -> None:
    secret = "RESP-SECRET-555\n"
    config = {"respondent": {"api_key": "hostile-key-5150", "api_secret": secret}}
    for env in ({}, DEBUG):
        completed = run_cli([], config, tmp_path, timeout=60, env=env)
        assert completed.returncode == 1
        assert "respondent.api_secret: a line break" in completed.stderr
        assert "line break" in completed.stderr
        assert "RESP-SECRET-555" not in completed.stdout + completed.stderr
        for form in every_form(secret):
            assert form not in completed.stderr


@pytest.mark.parametrize(
    "secret", ["RESP-SECRET-555\n", "p@ss word/with+signs", "tab\there", "quote\"'and\\slash"]
)
def test_log_redaction_covers_every_written_form(secret: str) -> None:
    redact = RedactSecrets([secret])
    forms = every_form(secret)
    text = redact.redact(" | ".join(forms))
    for form in forms:
        assert form.strip("'\"") not in text, form


def echo_headers(exchange: Exchange) -> None:
    """A 400 whose body repeats the request's headers, as some proxies and APIs do."""
    if exchange.request.path.endswith("/obtainauthtoken/"):
        exchange.reply(200, b'{"token": "issued-token-7a31c9e2f0"}')
        return
    # Credentials first, so that no truncation of the body hides them.
    headers = exchange.request.headers
    echoed = {"authorization": headers.get("authorization"), **headers}
    body = json.dumps({"received": echoed, "error": "bad request"}).encode()
    exchange.reply(400, body)


@pytest.mark.parametrize("auth_method", ["basic", "token"])
def test_perform_engage_credentials_echoed_by_a_server_are_redacted(
    tmp_path: Path, auth_method: str
) -> None:
    with HostileServer(echo_headers) as server:
        config = {
            "perform_engage": {
                "api_url": f"{server.url}/api/v2",
                "username": "hostile.user@example.com",
                "api_key": "pe-hostile-key-31337",
                "auth_method": auth_method,
            }
        }
        completed = run_cli([], config, tmp_path, timeout=60, env=DEBUG)
        sent = [r.headers["authorization"] for r in server.requests if "authorization" in r.headers]
    assert completed.returncode == 1
    assert "HTTP 400 Bad Request" in completed.stderr
    assert sent, "the server saw no credentials, so nothing was tested"
    for header in sent:
        credential = header.split(" ", 1)[1]
        assert credential not in completed.stderr
    assert "issued-token-7a31c9e2f0" not in completed.stderr
    assert "pe-hostile-key-31337" not in completed.stderr


def test_onq_jwt_echoed_by_a_server_is_redacted(tmp_path: Path) -> None:
    with HostileServer(echo_headers) as server:
        config = {
            "onq": {
                "api_url": server.url,
                "api_key": "onq-hostile-kid-77",
                "api_secret": "onq-hostile-secret-0123456789abcdef0123456789",
                "issuer": "https://issuer.example.com",
                "subject": "someone@example.com",
                "audience": "https://aud.example.com",
            }
        }
        completed = run_cli([], config, tmp_path, timeout=60, env=DEBUG)
        tokens = [r.headers["authorization"].split(" ", 1)[1] for r in server.requests]
    assert completed.returncode == 1
    assert "HTTP 400 Bad Request" in completed.stderr
    assert tokens
    for token in tokens:
        assert token not in completed.stderr
        _header, claims, signature = token.split(".")
        # Not even a part: a message quoting a body cuts it short, then a token would no
        # longer match a redaction made after the cut.
        assert claims[:40] not in completed.stderr
        assert signature not in completed.stderr


def test_a_redirect_to_another_origin_is_refused_and_credentials_stay_home(
    tmp_path: Path,
) -> None:
    def elsewhere(exchange: Exchange) -> None:
        empty_respondent_page(exchange)

    with HostileServer(elsewhere) as other:

        def redirect(exchange: Exchange) -> None:
            location = f"{other.url}/messaging/conversations?page=1"
            exchange.reply(302, b"", headers={"Location": location})

        with HostileServer(redirect) as server:
            completed = run_cli([], respondent_config(server.url), tmp_path, timeout=60)
        assert other.requests == []
    assert completed.returncode == 1
    assert (
        f"was redirected (HTTP 302) to another origin, {other.url}; credentials are only sent "
        f"to {server.url} (respondent.api_url), so the redirect was not followed"
    ) in completed.stderr
    assert "hs-8841" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_redirect_within_the_origin_is_followed(tmp_path: Path) -> None:
    def moved(exchange: Exchange) -> None:
        if exchange.request.path.startswith("/old/"):
            new = exchange.request.path.removeprefix("/old")
            exchange.reply(301, b"", headers={"Location": new})
        else:
            assert exchange.request.headers.get("x-api-secret") == "hs-8841"
            empty_respondent_page(exchange)

    with HostileServer(moved) as server:
        completed = run_cli([], respondent_config(f"{server.url}/old"), tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert [p.split("?")[0] for p in server.paths()] == [
        "/old/messaging/conversations",
        "/messaging/conversations",
    ]
