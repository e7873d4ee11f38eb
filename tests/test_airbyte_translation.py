"""The Airbyte adapter's translations, its SIGTERM handling and its broken pipe, in-process."""

from __future__ import annotations

import io
import json
import signal
import typing as t

import pytest

from tap_conversations.airbyte import catalog as translate
from tap_conversations.airbyte.cancellation import Cancellation, ReadCancelled
from tap_conversations.airbyte.cli import Source
from tap_conversations.airbyte.logs import AirbyteLogHandler
from tap_conversations.airbyte.protocol import (
    MessageOutput,
    record_message,
    record_payload,
    to_builtins,
)
from tap_conversations.errors import ReaderGone, Terminated
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
def test_a_signal_outside_a_sync_cancels_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    watchdogs: list[int] = []
    monkeypatch.setattr("tap_conversations.airbyte.cancellation.exit_soon", watchdogs.append)
    output = MessageOutput(io.BytesIO())
    cancellation = Cancellation(output)
    source = Source(output, AirbyteLogHandler(output), cancellation)
    tap = source.tap(config={}, validate_config=False)
    with pytest.raises(ReadCancelled):
        cancellation._handle(signal.SIGTERM, None)
    assert tap.stopping.is_set()
    assert watchdogs == [143]
    assert cancellation.exit_code == 143


@pytest.mark.usefixtures("restored_signal_handlers")
def test_a_signal_during_a_sync_asks_the_tap_to_stop_at_its_next_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During a sync the handler raises nothing (it could tear a line, or leave a record
    written with its bookmark not moved past it): the tap stops at its next record boundary."""
    watchdogs: list[int] = []
    monkeypatch.setattr("tap_conversations.airbyte.cancellation.exit_soon", watchdogs.append)
    output = MessageOutput(io.BytesIO())
    cancellation = Cancellation(output)
    source = Source(output, AirbyteLogHandler(output), cancellation)
    tap = source.tap(config={}, validate_config=False)
    tap.syncing = True  # as in `sync_all`
    cancellation._handle(signal.SIGINT, None)
    assert tap.stopping.is_set()
    assert watchdogs == [130]
    with pytest.raises(Terminated) as raised:
        tap.raise_if_stopping()
    assert raised.value.exit_code == 130


def test_a_broken_pipe_ends_the_output_once_and_drops_every_later_write() -> None:
    class Broken(io.BytesIO):
        def write(self, data: t.Any) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    output = MessageOutput(t.cast("t.BinaryIO", Broken()))
    with pytest.raises(ReaderGone):
        output.write_builtins({"type": "LOG"})
    assert output.closed
    output.write_builtins({"type": "LOG"})  # dropped: no error, no traceback
    output.flush()


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
