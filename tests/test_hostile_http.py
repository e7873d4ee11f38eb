"""Answers no API should send: a gzip bomb, a redirect loop, headers that never end.

Issue 28 rows 3, 7 and 8. Each ends with one line naming the provider, the path and what to
change; a CLI run of each kind exits 1 without a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
import zlib

import pytest

from tests.helpers import TAP_EXECUTABLE, run_cli, sync
from tests.hostile import Exchange, HostileServer
from tests.waits import failure_line, skip_waits

if t.TYPE_CHECKING:
    from pathlib import Path

PE = "Perform & Engage 365"
PLANS = "/api/v2/conversation_plans/"


def pe_config(api_url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "perform_engage": {"api_url": api_url, "username": "u@example.com", "api_key": "k-4242"},
        "max_retries": 1,
        **extra,
    }


def gzip_of_zeros(megabytes: int) -> bytes:
    """A gzip body that inflates to `megabytes` MB of zero bytes (about 1/1000 of that)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = bytes(1024 * 1024)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


def gzip_bomb(body: bytes) -> t.Callable[[Exchange], None]:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, body, headers={"Content-Encoding": "gzip"})

    return script


def test_a_gzip_bomb_ends_with_one_line_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileServer(gzip_bomb(gzip_of_zeros(40))) as server:
        config = pe_config(f"{server.url}/api/v2", max_response_mb=2)
        line = failure_line(config, monkeypatch)
        requests_seen = len(server.requests)
    assert line == (
        f"{PE}: GET {PLANS} answered more than 2 MB once decompressed, the limit "
        "max_response_mb sets; the answer was not read. Raise max_response_mb if the API "
        "really sends answers this large"
    )
    assert requests_seen == 1  # not retried: the same answer would come again


def test_a_gzip_bomb_in_a_redirect_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = gzip_of_zeros(40)

    def script(exchange: Exchange) -> None:  # requests reads a redirect's body to drop it
        headers = {"Content-Encoding": "gzip", "Location": "/api/v2/elsewhere/"}
        exchange.reply(302, bomb, headers=headers)

    with HostileServer(script) as server:
        line = failure_line(pe_config(f"{server.url}/api/v2", max_response_mb=2), monkeypatch)
    assert line.startswith(f"{PE}: GET {PLANS} answered more than 2 MB once decompressed")


def test_an_answer_within_the_limit_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    empty = b'{"count": 0, "next": null, "previous": null, "results": []}'
    body = packer.compress(empty + b" " * (1024 * 1024 - len(empty))) + packer.flush()
    skip_waits(monkeypatch)
    with HostileServer(gzip_bomb(body)) as server:
        result = sync(pe_config(f"{server.url}/api/v2", max_response_mb=2))
    assert result.counts() == {}
    assert server.paths()[0].startswith(PLANS)


def test_a_gigabyte_bomb_through_the_cli_stays_small(tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    stderr_file = tmp_path / "stderr.txt"
    with HostileServer(gzip_bomb(gzip_of_zeros(1024))) as server:
        config_file.write_text(json.dumps(pe_config(f"{server.url}/api/v2")))
        with stderr_file.open("wb") as stderr:
            tap = subprocess.Popen(
                [TAP_EXECUTABLE, "--config", str(config_file)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            _, status, usage = os.wait4(tap.pid, 0)  # this run's own peak memory
            tap.returncode = os.waitstatus_to_exitcode(status)
    errors = stderr_file.read_text()
    assert tap.returncode == 1
    assert f"{PE}: GET {PLANS} answered more than 256 MB once decompressed" in errors
    assert "Traceback" not in errors
    peak_mb = usage.ru_maxrss / 1024  # Linux: KiB
    assert peak_mb < 700, peak_mb  # the body is 1 GB decoded; reading it unbounded holds it all


def test_a_redirect_loop_ends_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(302, headers={"Location": exchange.request.path})

    with HostileServer(script) as server:
        line = failure_line(pe_config(f"{server.url}/api/v2"), monkeypatch)
        requests_seen = len(server.requests)
    assert line == (
        f"{PE}: GET {PLANS} was redirected more than 30 times within its origin (a redirect "
        "loop), so it was given up; check perform_engage.api_url and the server's redirects"
    )
    assert requests_seen == 31


def test_a_redirect_loop_through_the_cli_exits_1_without_a_traceback(tmp_path: Path) -> None:
    def script(exchange: Exchange) -> None:
        other = "/a" if exchange.request.path.endswith("/b") else "/b"
        exchange.reply(301, headers={"Location": f"/api/v2{other}"})

    with HostileServer(script) as server:
        completed = run_cli([], pe_config(f"{server.url}/api/v2"), tmp_path, timeout=60)
    assert completed.returncode == 1
    assert "(a redirect loop), so it was given up" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "TooManyRedirects" not in completed.stderr


def test_header_bytes_trickled_past_the_deadline_say_no_complete_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: HostileServer

    def script(exchange: Exchange) -> None:  # a header byte every 0.2 s, never a blank line
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"." * 200
        exchange.raw(head, every=0.2, stop=server.stopping)

    with HostileServer(script) as server:
        host_port = server.url.removeprefix("http://")
        config = pe_config(f"{server.url}/api/v2", request_timeout_seconds=1, max_retries=0)
        line = failure_line(config, monkeypatch)
    assert line.endswith(
        f"gave up on {PLANS} after 1 attempts (last error: got no complete answer from "
        f"{host_port} within request_timeout_seconds (1 s)) — raise request_timeout_seconds if "
        "the server is only slow"
    )
    assert "not JSON" not in line


def test_endless_header_lines_say_the_answer_is_not_valid_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: HostileServer

    def script(exchange: Exchange) -> None:
        lines = b"".join(b"X-%d: x\r\n" % n for n in range(150))
        exchange.raw(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n", every=0, stop=server.stopping)

    with HostileServer(script) as server:
        host_port = server.url.removeprefix("http://")
        line = failure_line(pe_config(f"{server.url}/api/v2"), monkeypatch)
    assert line.endswith(
        f"gave up on {PLANS} after 2 attempts (last error: sent an answer that is not valid "
        f"HTTP ({host_port}: got more than 100 headers)) — check perform_engage.api_url"
    )
