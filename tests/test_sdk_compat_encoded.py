"""Guards for `CompatStream._sync_records`: records written as the snapshot holds them.

It replaces the SDK's record loop for a stream with no children, no partitions, the identity
map and nothing deselected (see its comment). These tests fail when the SDK's loop gains a
step the replacement does not take, when `Stream.sync` stops calling it, or when its output
differs in any byte but `time_extracted` from the SDK's loop on the same records.
"""

from __future__ import annotations

import datetime
import io
import json
import sys
import typing as t

import pytest
from singer_sdk import metrics
from singer_sdk.contrib.msgspec import encoder as json_encoder
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.core import Stream

from tap_conversations.output import StateFlushingWriter
from tap_conversations.sdk_compat.stream import EncodedRecordWriter
from tests.helpers import run_cli, sync
from tests.test_sdk_compat_logging import calls_in

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

ONQ = "onq_conversations"


def test_the_sdks_record_loop_still_takes_the_steps_the_replacement_takes() -> None:
    assert calls_in(Stream._sync_records) == {
        "get_record_counter",
        "get_sync_timer",
        "copy",
        "with_context",
        "_get_state_partition_context",
        "_write_starting_replication_value",
        "enumerate",
        "get_records",
        "_check_max_record_limit",
        "isinstance",
        "warn",
        "post_process",
        "_process_record",
        "log_sort_error",
        "_write_record_message",
        "_increment_stream_state",
        "_write_state_message",
        "increment",
        "get_context_state",
        "_finalize_state",
    }
    assert "_sync_records" in calls_in(Stream.sync)


def test_a_re_run_from_the_state_of_records_written_as_read_sends_nothing(
    sandbox: Sandbox,
) -> None:
    config = {"onq": sandbox.tap_config()["onq"]}
    first = sync(config)
    again = sync(config, state=first.states[-1])
    assert len(first.records(ONQ)) == 45
    assert again.records(ONQ) == []


def test_a_stream_map_or_a_deselected_field_takes_the_sdks_loop(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    monkeypatch.setattr(
        StateFlushingWriter, "write_encoded_records", lambda self, *args: written.append("x")
    )
    config = {
        "onq": sandbox.tap_config()["onq"],
        "stream_maps": {ONQ: {"name": "name.upper()"}},
    }
    result = sync(config)
    records = result.records(ONQ)
    assert len(records) == 45
    assert all(r["name"] == r["name"].upper() for r in records)
    assert written == []


def test_an_encoded_record_is_byte_for_byte_the_record_message(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    record = {"id": "7", "name": "Zoë", "n": 1.5, "tags": ["a", None], "nested": {"ok": True}}
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    other = {"id": "8", "name": None}
    writer = StateFlushingWriter()
    for version in (None, 1735787045):
        encoded = [json_encoder.encode(record), memoryview(json_encoder.encode(other))]
        writer.write_encoded_records(ONQ, encoded, version, now)
        writer.write_encoded_records(ONQ, [], version, now)  # writes nothing
        for row in (record, other):
            message = RecordMessage(stream=ONQ, record=row, version=version, time_extracted=now)
            writer.write_message(message)
    sys.stdout.flush()
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[0:2] == lines[2:4]
    assert lines[4:6] == lines[6:8]
    assert b'"version":1735787045' in lines[4]


def test_the_airbyte_writer_writes_an_encoded_record_as_it_writes_the_record_message() -> None:
    from tap_conversations.airbyte.cancellation import Cancellation  # noqa: PLC0415
    from tap_conversations.airbyte.protocol import MessageOutput  # noqa: PLC0415
    from tap_conversations.airbyte.writer import AirbyteMessageWriter  # noqa: PLC0415

    out = io.BytesIO()
    output = MessageOutput(out)
    writer = AirbyteMessageWriter(output, [ONQ], Cancellation(output))
    assert isinstance(writer, EncodedRecordWriter)
    record = {"id": "7", "name": "Zoë", "n": 1.5, "tags": ["a", None], "nested": {"ok": True}}
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC)
    other = {"id": "8", "name": None}
    encoded = [json_encoder.encode(record), memoryview(json_encoder.encode(other))]
    writer.write_encoded_records(ONQ, encoded, None, now)
    writer.write_encoded_records(ONQ, [], None, now)  # writes nothing
    writer.write_message(RecordMessage(stream=ONQ, record=record, time_extracted=now))
    writer.write_message(RecordMessage(stream=ONQ, record=other, time_extracted=now))
    output.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0:2] == lines[2:4]
    assert json.loads(lines[0])["record"] == {
        "stream": ONQ,
        "data": record,
        "emitted_at": 1735787045006,
    }


def test_the_record_counter_counts_every_record_written_as_read(
    sandbox_factory: t.Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[int] = []  # the values of the record_count METRIC points, in order
    original = metrics.log

    def keeping(logger: t.Any, point: metrics.Point) -> None:
        if point.metric == metrics.Metric.RECORD_COUNT and point.tags.get("stream") == ONQ:
            logged.append(point.value)
        original(logger, point)

    monkeypatch.setattr(metrics, "log", keeping)
    sandbox = sandbox_factory(onq_conversations=250)
    result = sync({"onq": sandbox.tap_config()["onq"]})
    assert len(result.records(ONQ)) == 250
    assert sum(logged) == 250


def test_test_mode_writes_one_record_of_a_stream_written_as_read(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    """`--test` sets the SDK's record limit: the replacement loop leaves its check to the
    SDK (`_check_max_record_limit`), which stops the stream after one record."""
    sandbox = sandbox_factory(onq_conversations=30)
    completed = run_cli(["--test"], {"onq": sandbox.tap_config()["onq"]}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    records = [
        line for line in completed.stdout.splitlines() if json.loads(line)["type"] == "RECORD"
    ]
    assert len(records) == 1, completed.stdout[:2000]
    assert json.loads(records[0])["stream"] == ONQ
