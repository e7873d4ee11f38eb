"""Bodies a server should not send: trickled, not UTF-8, HTML with a 200. Issue 17 rows 5, 7, 10."""

from __future__ import annotations

import typing as t

from tests.helpers import run_cli
from tests.hostile import Exchange, HostileServer, respondent_config

if t.TYPE_CHECKING:
    from pathlib import Path

PAGE = b'{"results": [], "page": 1, "pageSize": 100, "totalResults": 0}'


def test_a_trickled_body_ends_each_attempt_at_the_timeout(tmp_path: Path) -> None:
    server: HostileServer

    def script(exchange: Exchange) -> None:
        # 64 bytes, one every 2 s: each read is quick, the whole answer takes two minutes.
        body = PAGE.ljust(64)
        exchange.start(200, len(body))
        exchange.trickle(body, every=2, stop=server.stopping)

    with HostileServer(script) as server:
        config = respondent_config(server.url, request_timeout_seconds=3, max_retries=1)
        # Two attempts that each waited for the whole body would take over four minutes.
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert len(server.requests) == 2
    host_port = server.url.removeprefix("http://")
    assert (
        "Respondent stream 'respondent_conversations': gave up on /messaging/conversations "
        f"after 2 attempts (last error: got no complete answer from {host_port} within "
        "request_timeout_seconds (3 s)) — raise request_timeout_seconds if the server is only "
        "slow" in completed.stderr
    )
    assert "Traceback" not in completed.stderr


def test_trickled_headers_end_each_attempt_at_the_timeout_too(tmp_path: Path) -> None:
    server: HostileServer

    def script(exchange: Exchange) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: "
        exchange.raw(head + b"." * 40, every=2, stop=server.stopping)

    with HostileServer(script) as server:
        config = respondent_config(server.url, request_timeout_seconds=3, max_retries=1)
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert len(server.requests) == 2
    assert "within request_timeout_seconds (3 s))" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_body_that_is_not_utf8_is_retried_then_one_line(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, b'{"results": [{"uid": "c1", "name": "caf\xe9"}], "page": 1}')

    with HostileServer(script) as server:
        config = respondent_config(server.url, max_retries=2)
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert len(server.requests) == 3
    assert (
        "gave up on /messaging/conversations after 3 attempts (last error: answered HTTP 200 OK "
        "with a body that is not UTF-8 (content type application/json" in completed.stderr
    )
    assert "UnicodeDecodeError" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_html_with_a_200_says_the_body_was_not_json_and_its_content_type(
    tmp_path: Path,
) -> None:
    def script(exchange: Exchange) -> None:
        html = b"<html><body>Scheduled maintenance</body></html>"
        exchange.reply(200, html, content_type="text/html; charset=utf-8")

    with HostileServer(script) as server:
        config = respondent_config(server.url, max_retries=1)
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert (
        "Respondent: GET /messaging/conversations answered HTTP 200 OK with a body that is not "
        "JSON (content type text/html; charset=utf-8, 47 bytes), retrying in" in completed.stderr
    )
    assert (
        "(last error: answered HTTP 200 OK with a body that is not JSON (content type "
        "text/html; charset=utf-8, 47 bytes))" in completed.stderr
    )
    assert "Scheduled maintenance" not in completed.stderr
