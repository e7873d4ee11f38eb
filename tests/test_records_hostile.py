"""Hostile records: no key, timestamps out of range, deep nesting, nested wrong types.

Each case ends in one line naming provider, stream, field and record, exit code 1, no
traceback and no keyless or unchecked record on stdout (issue 17, rows 6, 8, 9 and 11).
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tap_conversations.tap import TapConversations
from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ONQ = {
    "api_key": "ONQ-k",
    "api_secret": "secret-value-1234-abcdefghijklmnopqrstuvwxyz",
    "issuer": "https://a.example",
    "subject": "etl@a.example",
    "audience": "https://a.onq.io",
}
PE = {"username": "u@example.com", "api_key": "pe-secret-key-1234"}
RESPONDENT = {"api_key": "resp-key-1234", "api_secret": "resp-secret-1234"}
OFFLINE = {
    "onq": {**ONQ, "api_url": "http://127.0.0.1:9/onq"},
    "perform_engage": {**PE, "api_url": "http://127.0.0.1:9/pe"},
    "respondent": {**RESPONDENT, "api_url": "http://127.0.0.1:9/r"},
}


class CannedServer(http.server.ThreadingHTTPServer):
    """Answers every GET with `body` (raw bytes), on 127.0.0.1."""

    daemon_threads = True
    body = b"[]"


class CannedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CannedServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    server = CannedServer(("127.0.0.1", 0), CannedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def canned_config(server: CannedServer, provider: str) -> dict[str, t.Any]:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings = {"onq": ONQ, "perform_engage": PE, "respondent": RESPONDENT}[provider]
    return {provider: {**settings, "api_url": url}, "max_retries": 0}


def page(provider: str, records: list[t.Any]) -> bytes:
    """One complete page of `records` in the provider's envelope."""
    if provider == "onq":
        return json.dumps(records).encode()
    if provider == "perform_engage":
        return json.dumps({"count": len(records), "next": None, "results": records}).encode()
    body = {"page": 1, "pageSize": 100, "results": records, "totalResults": len(records)}
    return json.dumps(body).encode()


def assert_one_line_failure(stderr: str, stdout: str, *needles: str) -> None:
    errors = [line for line in stderr.splitlines() if all(n in line for n in needles)]
    assert len(errors) == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "Error:" not in stderr.replace(errors[0], "")  # no exception repr besides the line


KEYLESS = {
    "onq": ("onq_conversations", {"name": "Intro", "last_updated_on": "2025-01-02T03:04:05Z"}),
    # The canned server answers the plans list too, which syncs first.
    "perform_engage": ("Perform & Engage 365 stream 'perform_engage_conv", {"status": "final"}),
    "respondent": ("respondent_conversations", {"name": "Study", "messages": []}),
}


@pytest.mark.parametrize("provider", list(KEYLESS))
def test_a_record_without_its_key_stops_the_run_with_one_line(
    canned: CannedServer, tmp_path: Path, provider: str
) -> None:
    stream, record = KEYLESS[provider]
    key = {"onq": "id", "perform_engage": "api_id", "respondent": "uid"}[provider]
    canned.body = page(provider, [record])
    completed = run_cli([], canned_config(canned, provider), tmp_path)

    assert completed.returncode == 1
    assert_one_line_failure(completed.stderr, completed.stdout, stream, f"field '{key}'", "missing")
    assert not [m for m in parse_messages(completed.stdout) if m["type"] == "RECORD"]


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_timestamp_out_of_range_in_utc_is_the_timestamp_error(
    canned: CannedServer, tmp_path: Path, value: str
) -> None:
    canned.body = page(
        "onq", [{"id": 7, "last_updated_on": "2025-01-02T03:04:05Z", "end_on": value}]
    )
    completed = run_cli([], canned_config(canned, "onq"), tmp_path)

    assert completed.returncode == 1
    assert_one_line_failure(
        completed.stderr, completed.stdout, "onq_conversations", "field 'end_on'", "id='7'", value
    )


def test_a_body_nested_a_thousand_levels_deep_is_one_line(
    canned: CannedServer, tmp_path: Path
) -> None:
    depth = 1_000
    canned.body = b'[{"id": 1, "name": ' + b"[" * depth + b"]" * depth + b"}]"
    completed = run_cli([], canned_config(canned, "onq"), tmp_path)

    assert completed.returncode == 1
    assert_one_line_failure(completed.stderr, completed.stdout, "onq_conversations", "deep")


def test_a_value_nested_hundreds_of_levels_deep_is_one_line(
    canned: CannedServer, tmp_path: Path
) -> None:
    depth = 900  # decodes, and would still overflow a naive repr or a recursive check
    nested = b"[" * depth + b"]" * depth
    body = b'{"page": 1, "pageSize": 100, "totalResults": 1, "results": [{"uid": "c1", '
    body += b'"messages": [{"uid": "m1", "body": ' + nested + b"}]}]}"
    canned.body = body
    completed = run_cli([], canned_config(canned, "respondent"), tmp_path)

    assert completed.returncode == 1
    assert_one_line_failure(
        completed.stderr, completed.stdout, "respondent_conversations", "messages[0].body"
    )


def respondent_stream() -> t.Any:
    return TapConversations(config=OFFLINE).streams["respondent_conversations"]


def conversation(**message: t.Any) -> dict[str, t.Any]:
    return {
        "uid": "c1",
        "updatedAt": "2024-05-01T12:00:00.599Z",
        "messages": [{"uid": "m1", "createdAt": "2024-05-01T12:00:00.599Z", **message}],
        "participants": [{"uid": "p1", "read": True}],
        "metadata": {"projectId": "p"},
    }


def test_a_nested_value_of_the_wrong_type_names_its_path() -> None:
    with pytest.raises(ProviderError) as error:
        respondent_stream().checked_record(conversation(body=42))
    message = str(error.value)
    assert message.startswith("Respondent stream 'respondent_conversations': ")
    assert "field 'messages[0].body' of record uid='c1' is int 42, expected NoneType/str" in message


@pytest.mark.parametrize(
    ("path", "record"),
    [
        ("participants[0].read", {**conversation(), "participants": [{"uid": "p", "read": "yes"}]}),
        ("metadata.projectId", {**conversation(), "metadata": {"projectId": 5}}),
        ("messages[0].sender.uid", conversation(sender={"uid": ["x"]})),
        ("messages[1]", {**conversation(), "messages": [{"uid": "m1"}, "text"]}),
    ],
)
def test_every_nested_level_is_checked(path: str, record: dict[str, t.Any]) -> None:
    with pytest.raises(ProviderError, match=rf"field '{re.escape(path)}' of record"):
        respondent_stream().checked_record(record)


def test_nested_timestamps_are_normalised_like_top_level_ones() -> None:
    row = respondent_stream().checked_record(
        conversation(updatedAt="2024-05-01T13:00:00.599+01:00")
    )
    assert row["updatedAt"] == "2024-05-01T12:00:00.599000+00:00"
    assert row["messages"][0]["createdAt"] == "2024-05-01T12:00:00.599000+00:00"
    assert row["messages"][0]["updatedAt"] == "2024-05-01T12:00:00.599000+00:00"


def test_a_bad_nested_timestamp_is_the_timestamp_error() -> None:
    with pytest.raises(ProviderError, match=r"field 'messages\[0\].createdAt' .* not an ISO"):
        respondent_stream().checked_record(conversation(createdAt="yesterday"))


def test_unknown_nested_fields_are_dropped_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {**OFFLINE, "schema_evolution": "discard"}
    stream = TapConversations(config=config).streams["respondent_conversations"]
    with caplog.at_level(logging.WARNING):
        first = stream.checked_record(conversation(reactions=["+1"]))
        stream.checked_record(conversation(reactions=["-1"]))
    assert "reactions" not in first["messages"][0]
    reports = [r.getMessage() for r in caplog.records if "reactions" in r.getMessage()]
    assert reports == [
        "Respondent stream 'respondent_conversations': the API sent fields not in the schema, "
        "dropped: messages[].reactions"
    ]


@pytest.mark.parametrize(
    ("stream", "record", "field"),
    [
        ("perform_engage_conversation_details", {"api_id": None, "data": []}, "api_id"),
        (
            "perform_engage_conversation_elements",
            {"conversation_api_id": "c", "value": "1"},
            "position",
        ),
        ("perform_engage_conversation_plan_users", {"plan_api_id": "p", "name": "A"}, "api_id"),
        ("respondent_participants", {"conversation_uid": "c", "firstName": "A"}, "uid"),
        ("respondent_messages", {"conversation_uid": "c", "body": "hi"}, "uid"),
    ],
)
def test_every_stream_refuses_a_record_without_its_key(
    stream: str, record: dict[str, t.Any], field: str
) -> None:
    with pytest.raises(ProviderError, match=rf"field '{field}' of record .* is missing"):
        TapConversations(config=OFFLINE).streams[stream].checked_record(record)  # type: ignore[attr-defined]
