"""Networks in the way: a refused proxy, a self-signed certificate, a token revoked mid-run.

Issue 28 rows 11, 12 and 20.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import typing as t
from contextlib import suppress
from dataclasses import replace

import pytest

from sandbox.perform_engage import PerformEngage
from tests.helpers import run_cli, sync
from tests.hostile import Exchange, HostileServer, closed_port
from tests.waits import failure_line

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sandbox import Sandbox
    from sandbox.server import Request, Response

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
EMPTY_LIST = b'{"count": 0, "next": null, "previous": null, "results": []}'


def pe_config(api_url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "perform_engage": {"api_url": api_url, "username": "u@example.com", "api_key": "k-4242"},
        "max_retries": 1,
        **extra,
    }


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


# Row 11: a proxy that refuses -------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_environment")
def test_a_refused_proxy_is_named_with_its_variable_and_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:proxy-pw-9931@127.0.0.1:{port}")
    line = failure_line(pe_config("https://perform-engage.invalid/api/v2"), monkeypatch)
    assert line == (
        "Perform & Engage 365 stream 'perform_engage_conversation_plans': gave up on "
        "/api/v2/conversation_plans/ after 2 attempts (last error: could not reach the proxy "
        f"http://127.0.0.1:{port} (HTTPS_PROXY): connection refused) — check that proxy, or "
        "HTTPS_PROXY and NO_PROXY"
    )


@pytest.mark.usefixtures("no_proxy_environment")
def test_a_proxy_that_refuses_the_tunnel_says_what_it_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def script(exchange: Exchange) -> None:  # never called: CONNECT is not a method it serves
        exchange.reply(200, EMPTY_LIST)

    with HostileServer(script) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        line = failure_line(pe_config("https://perform-engage.invalid/api/v2"), monkeypatch)
    assert line.endswith(
        f"(last error: could not reach the proxy {proxy.url} (https_proxy): it answered 501 "
        "Unsupported method ('CONNECT')) — check that proxy, or https_proxy and NO_PROXY"
    )


@pytest.mark.usefixtures("no_proxy_environment")
def test_a_refused_proxy_through_the_cli_exits_1_without_credentials(tmp_path: Path) -> None:
    port = closed_port()
    env = {"http_proxy": f"http://proxyuser:proxy-pw-9931@127.0.0.1:{port}"}
    config = pe_config("http://perform-engage.invalid/api/v2", max_retries=0)
    completed = run_cli([], config, tmp_path, timeout=60, env=env)
    assert completed.returncode == 1
    assert (
        f"could not reach the proxy http://127.0.0.1:{port} (http_proxy): connection refused"
    ) in completed.stderr
    assert "perform-engage.invalid:80 (" not in completed.stderr  # the API host is not blamed
    assert "proxy-pw-9931" not in completed.stderr
    assert "proxyuser" not in completed.stderr
    assert "Traceback" not in completed.stderr


# Row 12: a self-signed certificate --------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate, and that certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def script(exchange: Exchange) -> None:
        exchange.reply(200, EMPTY_LIST)

    server = HostileServer(script)
    listener = server._server  # the test server's own socket, wrapped in TLS below
    listener.socket = context.wrap_socket(listener.socket, server_side=True)
    with server:
        yield server.url.replace("http://", "https://"), cert


@pytest.mark.usefixtures("no_proxy_environment")
def test_a_self_signed_certificate_says_how_to_trust_a_private_ca(
    self_signed: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = self_signed
    line = failure_line(pe_config(f"{url}/api/v2"), monkeypatch)
    assert line.endswith(
        f"(last error: could not reach {url.removeprefix('https://')} (TLS error: "
        "CERTIFICATE_VERIFY_FAILED; to trust a private CA, set REQUESTS_CA_BUNDLE to your CA's "
        "PEM file)) — check perform_engage.api_url"
    )


@pytest.mark.usefixtures("no_proxy_environment")
def test_requests_ca_bundle_trusts_that_certificate(
    self_signed: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = self_signed
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    result = sync(pe_config(f"{url}/api/v2"))
    assert result.counts() == {}
    assert result.states  # the run got through


# Row 20: a token revoked mid-run, every worker refused ------------------------------------


def test_one_renewal_serves_every_worker_a_revoked_token_refused(
    sandbox_factory: t.Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_factory(pe_conversations=60, pe_plans=3, onq_conversations=0)
    workers = 8
    held = threading.Barrier(workers, timeout=5)
    first_token: list[str] = []
    revoked = threading.Event()
    held_requests: list[str] = []
    lock = threading.Lock()
    handle = PerformEngage.handle

    def revoke_once(provider: PerformEngage, request: Request) -> Response:
        """The first token is revoked once the conversation details begin: the first detail
        requests carrying it are held until all 8 workers have sent one, then all are refused,
        and so is every later request carrying it."""
        token = request.header("Authorization") or ""
        detail = len(request.segments) == 3 and request.segments[0] == "conversations"
        with lock:
            if token and not first_token:
                first_token.append(token)
            old = token == first_token[0] if first_token else False
        if old and detail and not revoked.is_set():
            with lock:
                held_requests.append(request.path)
            with suppress(threading.BrokenBarrierError):
                held.wait()
            revoked.set()
        if old and revoked.is_set():
            request = replace(request, headers={**request.headers, "authorization": "Token no"})
        return handle(provider, request)

    monkeypatch.setattr(PerformEngage, "handle", revoke_once)
    provider = {**sandbox.tap_config()["perform_engage"], "auth_method": "token"}
    result = sync({"perform_engage": provider, "max_concurrency": workers})
    assert len(result.records("perform_engage_conversation_details")) == 60
    assert len(held_requests) == workers  # the revocation met 8 requests in flight
    assert sandbox.pe_tokens_issued == 2  # the first token and one renewal
