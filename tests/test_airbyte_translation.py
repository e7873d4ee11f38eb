"""The Airbyte adapter's translations and its hold on SIGTERM, in-process."""

from __future__ import annotations

import io
import json
import signal
import typing as t

import msgspec
import pytest
from singer_sdk.singerlib import StateMessage

from tap_conversations.airbyte import catalog as translate
from tap_conversations.airbyte.cancellation import Cancellation, ReadCancelled
from tap_conversations.airbyte.cli import Source
from tap_conversations.airbyte.logs import AirbyteLogHandler
from tap_conversations.airbyte.protocol import (
    MessageOutput,
    record_line_prefix,
    record_lines,
    record_message,
    record_payload,
    to_builtins,
)
from tap_conversations.airbyte.writer import AirbyteMessageWriter
from tests.airbyte_messages import validate

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox import Sandbox

PARENTS = {
    "perform_engage_conversations": None,
    "perform_engage_conversation_details": "perform_engage_conversations",
    "onq_conversations": None,
}


def stream_state(name: str, value: dict[str, t.Any]) -> dict[str, t.Any]:
    stream = {"stream_descriptor": {"name": name}, "stream_state": value}
    return {"type": "STREAM", "stream": stream}


def test_stream_states_become_singer_bookmarks_except_full_refresh_ones() -> None:
    incoming = [
        stream_state("onq_conversations", {"replication_key_value": "2026-01-01"}),
        stream_state("perform_engage_conversations", {"replication_key_value": "2026-02-02"}),
    ]
    state, dropped = translate.singer_state(incoming, {"perform_engage_conversations"})
    assert state == {"bookmarks": {"onq_conversations": {"replication_key_value": "2026-01-01"}}}
    assert dropped == ["perform_engage_conversations"]
    for empty in (None, [], {}):
        assert translate.singer_state(empty, set()) == ({}, [])


def test_legacy_state_is_read_and_global_state_refused() -> None:
    legacy = {"bookmarks": {"onq_conversations": {"replication_key_value": "x"}}}
    assert translate.singer_state(legacy, set())[0] == legacy
    with pytest.raises(translate.AirbyteInputError, match="GLOBAL"):
        translate.singer_state([{"type": "GLOBAL", "global": {"stream_states": []}}], set())
    with pytest.raises(translate.AirbyteInputError, match="no stream name"):
        translate.singer_state([{"type": "STREAM", "stream": {"stream_state": {}}}], set())


def test_a_full_refresh_child_takes_its_parent_along_but_not_other_families() -> None:
    configured = [
        translate.ConfiguredStream("perform_engage_conversations", incremental=True, columns=None),
        translate.ConfiguredStream(
            "perform_engage_conversation_details", incremental=False, columns=None
        ),
        translate.ConfiguredStream("onq_conversations", incremental=True, columns=None),
    ]
    assert translate.full_refresh_streams(configured, PARENTS) == {
        "perform_engage_conversations",
        "perform_engage_conversation_details",
    }


def test_only_changed_bookmarks_of_configured_streams_are_sent() -> None:
    sent: dict[str, t.Any] = {}
    state = {"bookmarks": {"a": {"v": 1}, "b": {"v": 1}, "unconfigured": {"v": 1}}}
    first = translate.stream_state_changes(state, sent, {"a", "b"})
    assert first == [("a", {"v": 1}), ("b", {"v": 1})]
    state["bookmarks"]["a"]["v"] = 2  # the SDK mutates its state in place
    assert translate.stream_state_changes(state, sent, {"a", "b"}) == [("a", {"v": 2})]
    assert translate.stream_state_changes(state, sent, {"a", "b"}) == []


def test_malformed_configured_catalogs_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(translate.AirbyteInputError, match="'streams'"):
        translate.configured_streams({})
    with pytest.raises(translate.AirbyteInputError, match="malformed"):
        translate.configured_streams({"streams": [{"stream": {"name": "x"}, "sync_mode": "daily"}]})


@pytest.fixture
def restored_signal_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restored_signal_handlers")
def test_a_signal_during_a_delivery_cancels_the_read_when_the_delivery_ends() -> None:
    output = MessageOutput(io.BytesIO())
    cancellation = Cancellation(output)
    source = Source(output, AirbyteLogHandler(output), cancellation)
    tap = source.tap(config={}, validate_config=False)
    steps: list[str] = []

    def deliver() -> None:
        with tap.delivery():
            steps.append("written")
            cancellation._handle(signal.SIGTERM, None)  # held: nothing raised here
            steps.append("bookmark moved")

    with pytest.raises(ReadCancelled):
        deliver()
    assert steps == ["written", "bookmark moved"]
    assert tap.stopping.is_set()  # waits end at once all the same
    with pytest.raises(ReadCancelled):  # outside a delivery: at once
        Cancellation(output)._handle(signal.SIGTERM, None)


@pytest.mark.usefixtures("restored_signal_handlers")
def test_a_state_written_during_a_delivery_does_not_cancel_it_half_way() -> None:
    """A STATE the delivery writes (every 10,000 records, as the SDK's loop does) comes after
    the signal: the read is cancelled when the delivery ends, not at that STATE."""
    output = MessageOutput(io.BytesIO())
    cancellation = Cancellation(output)
    source = Source(output, AirbyteLogHandler(output), cancellation)
    tap = source.tap(config={}, validate_config=False)
    writer = AirbyteMessageWriter(output, ["onq_conversations"], cancellation)
    steps: list[str] = []

    def deliver() -> None:
        with tap.delivery():
            steps.append("written")
            cancellation._handle(signal.SIGTERM, None)
            writer.write_message(StateMessage(value={"bookmarks": {}}))
            steps.append("bookmark moved")

    with pytest.raises(ReadCancelled):
        deliver()
    assert steps == ["written", "bookmark moved"]


@pytest.mark.usefixtures("restored_signal_handlers")
def test_our_signal_handler_stays_in_place_through_a_read(sandbox: Sandbox) -> None:
    """The SDK installs its own handler whenever a tap is built; ours must win for the sync."""
    buffer = io.BytesIO()
    output = MessageOutput(buffer)
    cancellation = Cancellation(output)
    source = Source(output, AirbyteLogHandler(output), cancellation)
    config = {"onq": sandbox.tap_config()["onq"], "progress_interval_seconds": 0}
    tap = source.tap(config=config)
    catalog = translate.airbyte_catalog(tap.catalog_dict)
    configured = {
        "streams": [
            {"stream": {"name": s.name, "json_schema": s.json_schema}, "sync_mode": "incremental"}
            for s in catalog.streams
        ]
    }
    source.read(config, configured, None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        assert getattr(handler, "__self__", None) is cancellation, signal.Signals(signum).name
    messages = [json.loads(line) for line in buffer.getvalue().splitlines()]
    for message in messages:
        validate(message)
    assert sum(m["type"] == "RECORD" for m in messages) == len(sandbox.data.onq_conversations)


def test_a_record_payload_is_what_the_protocol_models_give() -> None:
    """The source writes RECORD lines from `record_payload` without building the protocol
    dataclasses; it must give what `to_builtins` gives for them, key order included."""
    data = {"id": "7", "when": "2025-01-01T00:00:00.000000+00:00", "n": None}
    message = record_message("onq_conversations", data, 1735689600123)
    from_models = to_builtins(message)  # every field of both dataclasses, `None` ones left out
    payload = record_payload("onq_conversations", data, 1735689600123)
    assert json.dumps(payload) == json.dumps(from_models)
    validate(payload)  # a valid AirbyteMessage (raises ProtocolViolation otherwise)
    data_json = msgspec.json.encode(data)
    prefix = record_line_prefix("onq_conversations")
    line = record_lines(prefix, [data_json], 1735689600123)
    assert line == msgspec.json.encode(payload) + b"\n"
    assert json.loads(line) == payload
    other = {"id": "8", "when": None, "n": 1.5}
    other_payload = record_payload("onq_conversations", other, 1735689600123)
    lines = record_lines(prefix, [data_json, memoryview(msgspec.json.encode(other))], 1735689600123)
    assert lines == line + msgspec.json.encode(other_payload) + b"\n"  # one line each, joined
    assert record_lines(prefix, [], 1735689600123) == b""
