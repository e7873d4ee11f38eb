"""Proxy and CA-bundle settings come from the environment as requests reads them, but once
per run and host instead of on every request."""

from __future__ import annotations

import http.client
import socket
import threading
import typing as t
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from tap_conversations.transport import GuardedSession
from tests.helpers import parse_messages, run_cli, sync

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sandbox import Sandbox

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy on 127.0.0.1 that records the URLs it forwarded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.forwarded: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: ForwardProxy
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _forward(self) -> None:
        target = urlsplit(self.path)  # a proxy receives the absolute URL
        self.server.forwarded.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in {"proxy-connection", "host"}
        }
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, body=body, headers=headers)
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    do_GET = _forward
    do_POST = _forward

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy setting from the machine running the tests."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.usefixtures("clean_proxy_environment")
def test_a_proxy_set_in_the_environment_is_used(
    sandbox: Sandbox, forward_proxy: ForwardProxy, tmp_path: Path
) -> None:
    config = sandbox.tap_config()
    completed = run_cli([], config, tmp_path, env={"HTTP_PROXY": forward_proxy.url})
    assert completed.returncode == 0, completed.stderr
    records = [m for m in parse_messages(completed.stdout) if m["type"] == "RECORD"]
    assert len(records) > 100
    requests_seen = len(sandbox.requests)
    assert len(forward_proxy.forwarded) == requests_seen
    providers = {urlsplit(url).path.split("/")[1] for url in forward_proxy.forwarded}
    assert providers == {"perform-engage", "onq", "respondent"}


@pytest.mark.usefixtures("clean_proxy_environment")
def test_no_proxy_in_the_environment_bypasses_the_proxy(
    sandbox: Sandbox, forward_proxy: ForwardProxy, tmp_path: Path
) -> None:
    env = {"HTTP_PROXY": forward_proxy.url, "NO_PROXY": "127.0.0.1"}
    completed = run_cli([], {"onq": sandbox.tap_config()["onq"]}, tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    assert len(sandbox.requests) > 0
    assert forward_proxy.forwarded == []


@pytest.mark.usefixtures("clean_proxy_environment")
def test_the_environment_is_read_once_per_host_not_per_request(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = urllib.request.getproxies_environment

    def counting() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(urllib.request, "getproxies_environment", counting)
    result = sync({**sandbox.tap_config(), "max_concurrency": 1})
    assert sum(result.counts().values()) > 100
    assert len(sandbox.requests) > 50
    # requests reads it up to 3 times per resolution; one resolution per host and provider.
    assert 0 < calls <= 3 * 3, calls


def test_a_ca_bundle_in_the_environment_is_what_requests_would_verify_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    reference = requests.Session().merge_environment_settings(
        "https://example.com/", {}, None, None, None
    )
    assert reference["verify"] == str(bundle)
    assert GuardedSession().verify == str(bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert GuardedSession().verify is True


@pytest.mark.usefixtures("clean_proxy_environment")
def test_proxies_match_what_requests_resolves_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    session = GuardedSession()
    for url in (
        "https://api.example/v1/x",
        "https://internal.example/api",
        "https://a.corp.example/",
        "http://api.example/v1/x",
    ):
        expected = requests.Session().merge_environment_settings(url, {}, None, None, None)
        prepared = requests.Request("GET", url).prepare()
        resolved = session.proxies_for(prepared)
        scheme = urlsplit(url).scheme
        assert resolved.get(scheme) == expected["proxies"].get(scheme), url
