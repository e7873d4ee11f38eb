"""`schema_evolution` on the record checks: evolve, freeze and discard (whole runs:
test_schema_evolution_runs.py, through Meltano: test_schema_evolution_e2e.py)."""

from __future__ import annotations

import copy
import logging
import threading
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tap_conversations.records import RecordChecker
from tap_conversations.tap import TapConversations

SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string"]},
        "owner": {"type": ["object", "null"], "properties": {"name": {"type": ["string"]}}},
        "items": {
            "type": ["array", "null"],
            "items": {"type": ["object"], "properties": {"uid": {"type": ["string"]}}},
        },
    },
}
PRISTINE = copy.deepcopy(SCHEMA)
CONFIG_ONQ = {
    "onq": {
        "api_url": "http://127.0.0.1:9/onq",
        "api_key": "ONQ-k",
        "api_secret": "secret-value-1234",
        "issuer": "https://a.example",
        "subject": "etl@a.example",
        "audience": "https://a.onq.io",
    }
}


class Stream:
    """What a `RecordChecker` reads of a stream."""

    provider_label = "Demo"
    name = "demo_items"
    logger = logging.getLogger("tests.schema_evolution.demo")
    primary_keys = ("id",)
    text_fields = ()
    schema = SCHEMA


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == Stream.logger.name]


# The checks ----------------------------------------------------------------------------------


def test_evolve_keeps_new_fields_at_every_level_and_describes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    checker = RecordChecker(Stream(), "evolve")
    row = {
        "id": "1",
        "category": "a",
        "owner": {"name": "n", "age": 3},
        "items": [{"uid": "u", "done": True, "tags": ["x"]}],
    }
    with caplog.at_level(logging.INFO):
        checked = checker.check(copy.deepcopy(row))
        checker.check(copy.deepcopy(row))  # the same fields again: nothing new
    assert checked == row
    assert sorted(lines(caplog)) == [
        "Demo stream 'demo_items': new field 'category' (string) kept",
        "Demo stream 'demo_items': new field 'items[].done' (boolean) kept",
        "Demo stream 'demo_items': new field 'items[].tags' (array) kept",
        "Demo stream 'demo_items': new field 'owner.age' (number) kept",
    ]
    grown = checker.grown(SCHEMA)
    assert grown["properties"]["category"] == {"type": ["string", "null"]}
    assert grown["properties"]["owner"]["properties"]["age"] == {"type": ["number", "null"]}
    element = grown["properties"]["items"]["items"]["properties"]
    assert element["done"] == {"type": ["boolean", "null"]}
    assert element["tags"] == {"type": ["array", "null"]}  # no inner schema: jsonb
    assert checker.version == 4
    assert SCHEMA == PRISTINE  # the stream's schema (a class attribute) is never changed


def test_an_object_seen_is_described_without_its_inner_fields() -> None:
    checker = RecordChecker(Stream(), "evolve")
    checker.check({"id": "1", "extra": {"a": {"b": 1}}})
    assert checker.grown(SCHEMA)["properties"]["extra"] == {"type": ["object", "null"]}


def test_a_new_field_that_is_null_waits_for_a_value_to_be_typed() -> None:
    checker = RecordChecker(Stream(), "evolve")
    assert checker.check({"id": "1", "later": None}) == {"id": "1"}
    assert checker.version == 0
    checker.check({"id": "2", "later": "x"})
    assert checker.check({"id": "3", "later": None}) == {"id": "3", "later": None}
    assert checker.grown(SCHEMA)["properties"]["later"] == {"type": ["string", "null"]}


def test_a_type_change_widens_to_any_json_with_one_line_and_never_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    checker = RecordChecker(Stream(), "evolve")
    with caplog.at_level(logging.INFO):
        checker.check({"id": "1", "mood": "calm"})
        checker.check({"id": "2", "mood": {"level": 3}})
        checker.check({"id": "3", "mood": [1]})
        checker.check({"id": "4", "mood": "calm"})
        checker.check({"id": "5", "count": 3})
        checker.check({"id": "6", "count": 0.5})  # still a number: no widening
    assert lines(caplog) == [
        "Demo stream 'demo_items': new field 'mood' (string) kept",
        "Demo stream 'demo_items': field 'mood' is now also object; its schema widened to any "
        "JSON value",
        "Demo stream 'demo_items': new field 'count' (number) kept",
    ]
    assert checker.grown(SCHEMA)["properties"]["mood"] == {}


def test_a_documented_field_of_the_wrong_type_still_fails_in_evolve() -> None:
    checker = RecordChecker(Stream(), "evolve")
    with pytest.raises(ProviderError, match=r"field 'owner.name' of record id='1' is int 5"):
        checker.check({"id": "1", "owner": {"name": 5}})


def test_freeze_ends_with_one_line_naming_stream_field_and_setting() -> None:
    checker = RecordChecker(Stream(), "freeze")
    with pytest.raises(ProviderError) as raised:
        checker.check({"id": "1", "items": [{"uid": "u", "done": True}]})
    assert str(raised.value) == (
        "Demo stream 'demo_items': field 'items[0].done' of record id='1' is not in the schema "
        "and schema_evolution is freeze (set schema_evolution to evolve to load it, or discard "
        "to drop it)"
    )


def test_discard_drops_and_reports_once(caplog: pytest.LogCaptureFixture) -> None:
    checker = RecordChecker(Stream(), "discard")
    with caplog.at_level(logging.INFO):
        assert checker.check({"id": "1", "extra": 1}) == {"id": "1"}
        assert checker.check({"id": "2", "extra": 2}) == {"id": "2"}
    assert lines(caplog) == [
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: extra"
    ]
    assert checker.version == 0
    assert checker.grown(SCHEMA) is SCHEMA


def test_evolving_from_many_threads_at_once_describes_each_field_once() -> None:
    checker = RecordChecker(Stream(), "evolve")
    names = [f"f{i}" for i in range(40)]
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for name in names:
            checker.check({"id": "1", name: "v", "owner": {"name": "n", name: 1}})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert checker.version == 2 * len(names)
    properties = checker.grown(SCHEMA)["properties"]
    assert all(properties[name] == {"type": ["string", "null"]} for name in names)


# Guards for the SDK surface the grown SCHEMA uses (sdk_compat.CompatStream) -----------------


def test_an_identity_maps_schema_is_what_the_sdks_schema_message_carries() -> None:
    # `_write_schema_message` grows an identity map's `transformed_schema` and lets the SDK
    # write: that only works while the SDK's SCHEMA message carries that attribute.
    tap = TapConversations(config=CONFIG_ONQ)
    stream = tap.streams["onq_conversations"]
    (identity,) = stream.stream_maps
    identity.transformed_schema = {"type": "object", "properties": {"marker": {}}}
    written: list[t.Any] = []
    tap.write_message = written.append  # type: ignore[method-assign]
    stream.reset_schema_sent()
    stream._write_schema_message()
    assert [m.schema for m in written] == [identity.transformed_schema]
