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

from tap_conversations.errors import ProviderError
from tap_conversations.record_types import TypedRecord
from tap_conversations.records import RecordChecker
from tap_conversations.tap import TapConversations
from tests.test_records_hot_path import OFFLINE, outcome, sample

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
