"""Unreachable servers: the line names host:port, the reason and the setting to check.

Issue 12 point 3.
"""

from __future__ import annotations

import socket
import threading
import typing as t

import pytest

from tests.helpers import run_cli
from tests.hostile import Exchange, HostileServer, closed_port

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def pe_config(api_url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "perform_engage": {"api_url": api_url, "username": "u@example.com", "api_key": "k-4242"},
        "max_retries": 1,
        **extra,
    }


def last_error(stderr: str) -> str:
    return [line for line in stderr.splitlines() if "gave up" in line][-1]


def test_a_closed_port_names_host_port_refused_and_the_setting(tmp_path: Path) -> None:
    port = closed_port()
    completed = run_cli([], pe_config(f"http://127.0.0.1:{port}/api/v2"), tmp_path, timeout=60)
    assert completed.returncode == 1
    assert (
        f"Perform & Engage 365: GET /conversation_plans/ could not reach 127.0.0.1:{port} "
        "(connection refused), retrying in" in completed.stderr
    )
    assert last_error(completed.stderr).endswith(
        f"gave up on /api/v2/conversation_plans/ after 2 attempts (last error: could not reach "
        f"127.0.0.1:{port} (connection refused)) — check perform_engage.api_url"
    )
    assert "Traceback" not in completed.stderr


def test_a_name_that_does_not_resolve_says_so(tmp_path: Path) -> None:
    # `.invalid` never resolves (RFC 6761).
    completed = run_cli([], pe_config("http://perform-engage.invalid/api/v2"), tmp_path, timeout=90)
    assert completed.returncode == 1
    assert last_error(completed.stderr).endswith(
        "(last error: could not reach perform-engage.invalid:80 (host name not resolved)) — "
        "check perform_engage.api_url"
    )


def test_tls_to_a_plain_http_server_says_tls(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, b"{}")

    with HostileServer(script) as server:
        url = server.url.replace("http://", "https://") + "/api/v2"
        completed = run_cli([], pe_config(url), tmp_path, timeout=60)
    assert completed.returncode == 1
    host_port = server.url.removeprefix("http://")
    assert f"(last error: could not reach {host_port} (TLS error: " in completed.stderr
    assert "check perform_engage.api_url" in completed.stderr


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


def test_a_timeout_names_the_setting_and_its_value(tmp_path: Path, silent_server: str) -> None:
    config = pe_config(f"http://{silent_server}/api/v2", request_timeout_seconds=1)
    completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert last_error(completed.stderr).endswith(
        f"(last error: got no complete answer from {silent_server} within "
        "request_timeout_seconds (1 s)) — raise request_timeout_seconds if the server is only slow"
    )
