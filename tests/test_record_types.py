"""A typed page (`record_types`) is decoded only when the Python checks would pass it untouched,
and then gives what an untyped decode and those checks give; the sandbox's onQ pages all take it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import typing as t

import msgspec
import pytest
import requests

from tap_conversations.client import ApiStream
from tap_conversations.errors import ProviderError
from tap_conversations.record_types import TypedRecord
from tap_conversations.records import RecordChecker
from tap_conversations.tap import TapConversations
from tap_conversations.transport import decoded_body
from tests.helpers import run_sync
from tests.test_records_hot_path import OFFLINE, outcome, sample

if t.TYPE_CHECKING:
    from sandbox import Sandbox

STREAMS = sorted(TapConversations(config=OFFLINE).streams)


def reference(
    stream: t.Any, row: t.Any, caplog: pytest.LogCaptureFixture
) -> tuple[t.Any, list[str]]:
    """What the untyped path makes of `row`: the record (or the error line), and warnings."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = outcome(RecordChecker(stream, hot_path=False), copy.deepcopy(row))
    warnings = [record.getMessage() for record in caplog.records]
    return (result if result.startswith("error") else json.loads(result)), warnings


def settle(checker: RecordChecker, record: TypedRecord) -> t.Any:
    """The checked record, or the error line."""
    try:
        return checker.check(record)
    except ProviderError as error:
        return f"error: {error}"


@pytest.mark.parametrize("stream_name", STREAMS)
def test_a_typed_page_takes_exactly_what_the_checks_pass_untouched(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = TapConversations(config=OFFLINE).streams[stream_name]
    checker = RecordChecker(stream)
    assert checker.record_type is not None, "every schema of this tap can be said as types"
    decoder = msgspec.json.Decoder(list[checker.record_type])  # type: ignore[name-defined]
    rng = random.Random(f"typed {stream_name}")
    rows = [sample(stream.schema, rng) for _ in range(500)]
    for row in rows[::2]:
        for key in stream.primary_keys or ():
            if isinstance(row, dict):
                row.setdefault(key, "k")
    taken = refused = in_place = 0
    for row in rows:
        expected, warnings = reference(stream, row, caplog)
        try:
            (typed,) = decoder.decode(json.dumps([row]).encode())
        except msgspec.ValidationError:
            refused += 1
            # Refused: the checks had something to refuse, or a field to drop and report.
            assert warnings or str(expected).startswith("error"), row
            continue
        taken += 1
        assert isinstance(typed, TypedRecord)
        assert not warnings, (row, warnings)  # nothing the checks would drop
        result = settle(checker, typed)
        if isinstance(result, str):
            assert result == expected, row
            continue
        in_place += isinstance(result, TypedRecord)  # a flat record stays typed
        assert msgspec.to_builtins(result) == expected, row
        assert msgspec.json.decode(msgspec.json.encode(result)) == expected, row
    assert taken > 20, taken  # both kinds of page were tried
    assert refused > 20, refused
    flat = not checker.shape.deep_fields
    assert (in_place > 20) if flat else (in_place == 0), in_place


def test_a_typed_record_reads_as_a_dict_would() -> None:
    stream = TapConversations(config=OFFLINE).streams["onq_conversations"]
    record_type = RecordChecker(stream).record_type
    assert record_type is not None
    (typed,) = msgspec.json.decode(b'[{"id": 7, "name": null}]', type=list[record_type])  # type: ignore[valid-type]
    assert typed.get("id") == 7
    assert typed.get("name") is None
    assert typed.get("status", "absent") == "absent"  # in the schema, not sent
    assert typed.get("no_such_field", "absent") == "absent"
    assert msgspec.to_builtins(typed) == {"id": 7, "name": None}  # what was sent, no more


def body_of(content: bytes) -> requests.Response:
    response = requests.Response()
    response._content = content
    response.status_code = 200
    return response


def test_a_page_the_types_refuse_is_decoded_untyped_and_checked_in_python(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = TapConversations(config=OFFLINE).streams["onq_conversations"]
    decoder = stream.page_decoder
    assert decoder is not None
    plain = b'[{"id": 1, "last_updated_on": "2025-01-01T00:00:00Z"}]'
    assert isinstance(decoded_body(body_of(plain), decoder)[0], TypedRecord)
    novel = b'[{"id": 1, "last_updated_on": "2025-01-01T00:00:00Z", "novel": 2}]'
    (row,) = decoded_body(body_of(novel), decoder)
    assert type(row) is dict
    with caplog.at_level(logging.WARNING):
        assert stream.checker.check(row) == {
            "id": "1",
            "last_updated_on": "2025-01-01T00:00:00.000000+00:00",
        }
    assert "onQ stream 'onq_conversations'" in caplog.text
    assert "dropped: novel" in caplog.text
    wrapped = b'{"data": [{"id": 1}]}'  # onQ's other layout: an object wrapping the array
    assert decoded_body(body_of(wrapped), decoder) == {"data": [{"id": 1}]}
    for broken in (b'[{"id": 1}', b"\xff", b"[1"):
        with pytest.raises(msgspec.DecodeError):
            decoded_body(body_of(broken), decoder)


def test_a_bad_timestamp_on_a_typed_page_gets_the_python_checks_line() -> None:
    stream = TapConversations(config=OFFLINE).streams["onq_conversations"]
    assert stream.page_decoder is not None
    content = b'[{"id": 5, "created_on": "2025-02-30T00:00:00Z"}]'
    (typed,) = decoded_body(body_of(content), stream.page_decoder)
    assert isinstance(typed, TypedRecord)
    with pytest.raises(ProviderError) as raised:
        stream.checker.check(typed)
    with pytest.raises(ProviderError) as untyped:
        RecordChecker(stream, hot_path=False).check(msgspec.json.decode(content)[0])
    assert str(raised.value) == str(untyped.value)
    assert "field 'created_on' of record id='5' is not an ISO-8601 timestamp" in str(raised.value)


@pytest.mark.parametrize(
    ("stream_name", "body", "settled"),
    [
        (
            "onq_conversations",
            b'[{"id": 1, "last_updated_on": "2025-01-01T00:00:00Z", "novel": {"x": [1]}}]',
            {"id": "1", "last_updated_on": "2025-01-01T00:00:00.000000+00:00"},
        ),
        (
            "perform_engage_conversation_details",
            b'{"api_id": "a1", "updated_date": "2025-01-01T00:00:00Z", "novel": 2, "data": []}',
            {"api_id": "a1", "updated_date": "2025-01-01T00:00:00.000000+00:00", "data": []},
        ),
    ],
)
def test_a_field_the_api_added_is_reported_once_then_its_pages_decode_typed(
    stream_name: str, body: bytes, settled: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    stream = TapConversations(config=OFFLINE).streams[stream_name]
    before = stream.page_decoder
    assert before is not None

    def records(decoder: msgspec.json.Decoder[t.Any]) -> list[t.Any]:
        decoded = decoded_body(body_of(body), decoder)
        return list(stream.records_in(decoded, body_of(body)))

    with caplog.at_level(logging.WARNING):
        (first,) = records(before)
        assert type(first) is dict  # refused by the types: decoded untyped
        assert msgspec.to_builtins(stream.checker.check(first)) == settled
        after = stream.page_decoder
        assert after is not None
        assert after is not before
        (typed,) = records(after)
        assert isinstance(typed, TypedRecord)  # the added field no longer refuses the page
        result = stream.checker.check(typed)
        assert msgspec.json.decode(msgspec.json.encode(result)) == settled
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "dropped: novel" in warnings[0]


class CountingDecoder:
    """Counts the pages a stream's page decoder took and those it refused."""

    def __init__(self) -> None:
        self.decoder: msgspec.json.Decoder[t.Any] | None = None
        self.taken = self.refused = 0

    def wrapping(self, decoder: msgspec.json.Decoder[t.Any]) -> CountingDecoder:
        self.decoder = decoder
        return self

    def decode(self, content: bytes) -> t.Any:
        assert self.decoder is not None
        try:
            body = self.decoder.decode(content)
        except msgspec.DecodeError:
            self.refused += 1
            raise
        self.taken += 1
        return body


def test_every_sandbox_page_of_a_typed_stream_is_decoded_typed(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onQ's pages (arrays) and Perform & Engage's details (one record each) are typed; the
    sandbox speaks like the APIs, so none of them is refused."""
    tap = TapConversations(config=sandbox.tap_config())
    counting: dict[str, CountingDecoder] = {}
    page_decoder = t.cast("property", ApiStream.page_decoder)

    def counted(stream: ApiStream) -> CountingDecoder | None:
        decoder = page_decoder.fget(stream) if page_decoder.fget else None
        if decoder is None:
            return None
        return counting.setdefault(stream.name, CountingDecoder()).wrapping(decoder)

    monkeypatch.setattr(ApiStream, "page_decoder", property(counted))
    for stream in tap.streams.values():
        _ = stream.page_decoder
    assert {"onq_conversations", "perform_engage_conversation_details"} <= counting.keys()
    result = run_sync(tap)
    records = result.records("onq_conversations")
    assert len(records) == 45
    assert all(type(record["id"]) is str for record in records)
    for name, decoder in counting.items():
        assert decoder.refused == 0, name
        assert decoder.taken >= 1, name
    details = counting["perform_engage_conversation_details"]
    assert details.taken == len(result.records("perform_engage_conversation_details")) == 40
