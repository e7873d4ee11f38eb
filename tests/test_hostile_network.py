"""Unreachable servers: the line names host:port, the reason and the setting to check.

Issue 12 point 3. In-process, with the request gates' waits skipped (`tests.waits`); the
whole-answer deadline is checked on the session itself, and through the CLI in
tests/test_hostile_bodies.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import typing as t

import pytest
import requests

from tap_conversations.errors import ProviderError
from tap_conversations.transport import ProviderTransport
from tests.helpers import sync
from tests.hostile import Exchange, HostileServer, closed_port
from tests.waits import skip_waits

if t.TYPE_CHECKING:
    from collections.abc import Iterator


def pe_config(api_url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "perform_engage": {"api_url": api_url, "username": "u@example.com", "api_key": "k-4242"},
        "max_retries": 1,
        **extra,
    }


def gave_up(config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """The one line a run that cannot reach its server ends with."""
    skip_waits(monkeypatch)
    with pytest.raises(ProviderError) as failure:
        sync(config)
    (line,) = [line for line in str(failure.value).splitlines() if "gave up" in line]
    return line


def test_a_closed_port_names_host_port_refused_and_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    with caplog.at_level(logging.INFO):
        line = gave_up(pe_config(f"http://127.0.0.1:{port}/api/v2"), monkeypatch)
    assert (
        f"Perform & Engage 365: GET /conversation_plans/ could not reach 127.0.0.1:{port} "
        "(connection refused), retrying in"
    ) in caplog.text
    assert line.endswith(
        f"gave up on /api/v2/conversation_plans/ after 2 attempts (last error: could not reach "
        f"127.0.0.1:{port} (connection refused)) — check perform_engage.api_url"
    )


def test_a_name_that_does_not_resolve_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # `.invalid` never resolves (RFC 6761).
    line = gave_up(pe_config("http://perform-engage.invalid/api/v2"), monkeypatch)
    assert line.endswith(
        "(last error: could not reach perform-engage.invalid:80 (host name not resolved)) — "
        "check perform_engage.api_url"
    )


def test_tls_to_a_plain_http_server_says_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, b"{}")

    with HostileServer(script) as server:
        url = server.url.replace("http://", "https://") + "/api/v2"
        line = gave_up(pe_config(url), monkeypatch)
    host_port = server.url.removeprefix("http://")
    assert f"(last error: could not reach {host_port} (TLS error: " in line
    assert line.endswith("check perform_engage.api_url")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_timeout_names_the_setting_and_its_value(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pe_config(f"http://{silent_server}/api/v2", request_timeout_seconds=1)
    assert gave_up(config, monkeypatch).endswith(
        f"(last error: got no complete answer from {silent_server} within "
        "request_timeout_seconds (1 s)) — raise request_timeout_seconds if the server is only slow"
    )


@pytest.mark.parametrize("part", ["body", "status line and headers"])
def test_a_trickled_answer_is_cut_off_at_the_deadline(part: str) -> None:
    server: HostileServer

    def script(exchange: Exchange) -> None:  # a byte every 0.2 s, 40 of them
        if part == "body":
            exchange.start(200, 40)
            exchange.trickle(b"[" + b" " * 38 + b"]", every=0.2, stop=server.stopping)
        else:
            head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"." * 25
            exchange.raw(head, every=0.2, stop=server.stopping)

    transport = ProviderTransport()
    with HostileServer(script) as server:
        request = requests.Request("GET", f"{server.url}/slow").prepare()
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout, match=r"no complete answer within 1 s"):
            transport.session.send(request, timeout=1)
        took = time.monotonic() - started
    transport.close()
    # Each byte comes well within the timeout: only a deadline for the whole answer ends it.
    assert 1 <= took < 3, took
