"""A body is read whole, in one read (`transport.read_whole_body`), with what requests gives for
`Response.content`: the same bytes, the same errors, the connection kept for the next request."""

from __future__ import annotations

import gzip
import json
import threading
import typing as t

import pytest
import requests
import urllib3.response

from tap_conversations.transport import ProviderTransport
from tests.hostile import Exchange, HostileServer

BODY = json.dumps([{"id": i, "name": f"conversation {i}" * 20} for i in range(2_000)]).encode()


CLIENT_PORTS: list[int] = []  # the client's port of each request: one per connection


def serve(exchange: Exchange) -> None:
    path = exchange.request.path
    CLIENT_PORTS.append(exchange._handler.client_address[1])
    if path.startswith("/plain"):
        exchange.reply(200, BODY)
    elif path.startswith("/gzip"):
        exchange.reply(200, gzip.compress(BODY), headers={"Content-Encoding": "gzip"})
    elif path.startswith("/chunked"):
        handler = exchange._handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(BODY), 50_000):
            part = BODY[start : start + 50_000]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        handler.wfile.write(b"0\r\n\r\n")
    elif path.startswith("/short"):  # announces more than it sends, then hangs up
        exchange._handler.close_connection = True
        exchange.start(200, len(BODY))
        exchange._handler.wfile.write(BODY[:1000])


@pytest.fixture
def server() -> t.Iterator[HostileServer]:
    with HostileServer(serve) as running:
        yield running


def send(session: requests.Session, url: str) -> requests.Response:
    request = requests.Request("GET", url).prepare()
    return session.send(request, timeout=30)


@pytest.mark.parametrize("path", ["/plain", "/gzip", "/chunked"])
def test_a_body_read_whole_is_what_requests_reads(server: HostileServer, path: str) -> None:
    transport = ProviderTransport()
    ours = send(transport.session, server.url + path)
    theirs = requests.get(server.url + path, timeout=30)
    assert ours.content == theirs.content == BODY
    assert ours.text == theirs.text
    assert ours.json() == json.loads(BODY)
    transport.close()


def test_a_body_is_read_in_one_read_not_in_chunks(
    server: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int | None] = []
    original = urllib3.response.HTTPResponse.read

    def read(self: urllib3.response.HTTPResponse, amt: int | None = None, **kwargs: t.Any) -> t.Any:
        sizes.append(amt)
        return original(self, amt, **kwargs)

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read", read)
    transport = ProviderTransport()
    assert send(transport.session, server.url + "/plain").content == BODY
    assert sizes == [None]  # `Response.content` reads 10 KiB at a time: 46 reads here
    sizes.clear()
    assert requests.get(server.url + "/plain", timeout=30).content == BODY
    assert len(sizes) > 10  # (what the test would see without `read_whole_body`)
    transport.close()


def test_a_body_cut_short_raises_what_requests_raises(server: HostileServer) -> None:
    transport = ProviderTransport()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url + "/short", timeout=30)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        send(transport.session, server.url + "/short")
    transport.close()


def test_the_connection_serves_the_next_request(server: HostileServer) -> None:
    transport = ProviderTransport()
    CLIENT_PORTS.clear()
    for path in ("/plain", "/gzip", "/chunked", "/plain"):
        assert send(transport.session, server.url + path).content == BODY
    assert len(CLIENT_PORTS) == 4
    assert len(set(CLIENT_PORTS)) == 1  # one connection, kept alive
    transport.close()


def test_concurrent_bodies_stay_apart(server: HostileServer) -> None:
    transport = ProviderTransport()
    results: list[bytes] = []

    def fetch() -> None:
        results.append(send(transport.session, server.url + "/gzip").content)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [BODY] * 4
    transport.close()


def test_requests_still_keeps_a_read_body_where_read_whole_body_puts_it() -> None:
    """`read_whole_body` sets `Response._content` (private): a requests upgrade that moves
    the body elsewhere must fail here, not in production."""
    response = requests.Response()
    assert response._content is False  # type: ignore[comparison-overlap]  # "not read yet"
    assert "_content" in requests.Response.__attrs__
    response._content = b'{"ok": true}'
    response.status_code = 200
    assert response.content == b'{"ok": true}'
    assert response.json() == {"ok": True}
