"""`records`: every checking rule, on a small schema of its own, through `RecordChecker`
(`utc_timestamp` itself: `test_timestamps.py`).

Every expected value is written out by hand.
"""

from __future__ import annotations

import logging
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tap_conversations.records import RecordChecker

if t.TYPE_CHECKING:
    from singer_sdk.singerlib import SelectionMask


NULLABLE_TEXT = {"type": ["string", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string"]},
        "count": {"type": ["integer", "null"]},
        "score": {"type": ["number", "null"]},
        "flag": {"type": ["boolean", "null"]},
        "sent_at": NULLABLE_TIME,
        "owner": {
            "type": ["object", "null"],
            "properties": {"name": NULLABLE_TEXT, "seen_at": NULLABLE_TIME},
        },
        "messages": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {
                    "uid": {"type": ["string"]},
                    "sent_at": NULLABLE_TIME,
                    "tags": {"type": ["array", "null"], "items": {"type": ["string"]}},
                },
            },
        },
        "reminders": {
            "type": ["array", "null"],
            "items": {"type": ["string"], "format": "date-time"},
        },
        "extra": {"type": ["object", "null"]},  # free-form: no declared properties
    },
}


class DemoStream:
    """What a `RecordChecker` reads of a stream."""

    provider_label = "Demo"
    name = "demo_items"
    logger = logging.getLogger("tests.records.demo")

    def __init__(
        self,
        schema: dict[str, t.Any] = SCHEMA,
        primary_keys: tuple[str, ...] = ("id",),
        text_fields: tuple[str, ...] = (),
    ) -> None:
        self.schema = schema
        self.primary_keys = primary_keys
        self.text_fields = text_fields
        self.mask: SelectionMask = t.cast("SelectionMask", {})


def checker(mode: str = "discard", **kwargs: t.Any) -> RecordChecker:
    """A checker in `discard` mode unless told (evolve and freeze: test_schema_evolution*)."""
    return RecordChecker(DemoStream(**kwargs), mode)


def record(**fields: t.Any) -> dict[str, t.Any]:
    return {"id": "r1", **fields}


def failure(row: t.Any, **kwargs: t.Any) -> str:
    with pytest.raises(ProviderError) as error:
        checker(**kwargs).check(row)
    return str(error.value)


# --- RecordChecker: the rules --------------------------------------------------------------


def test_a_conforming_record_is_normalised_at_every_level() -> None:
    row = record(
        count=3,
        score=2,  # an integer is a number
        flag=False,
        sent_at="2025-03-04T05:06:07Z",
        owner={"name": "Ann", "seen_at": "2025-03-04T06:06:07+01:00"},
        messages=[
            {"uid": "m1", "sent_at": "2025-03-04T05:06:07.5Z", "tags": ["a"]},
            {"uid": "m2", "sent_at": None, "tags": None},
        ],
        reminders=["2025-03-04T05:06:07", "2025-03-04T05:06:07.123-00:00"],
        extra={"anything": [1, {"goes": True}]},
    )
    assert checker().check(row) == {
        "id": "r1",
        "count": 3,
        "score": 2,
        "flag": False,
        "sent_at": "2025-03-04T05:06:07.000000+00:00",
        "owner": {"name": "Ann", "seen_at": "2025-03-04T05:06:07.000000+00:00"},
        "messages": [
            {"uid": "m1", "sent_at": "2025-03-04T05:06:07.500000+00:00", "tags": ["a"]},
            {"uid": "m2", "sent_at": None, "tags": None},
        ],
        "reminders": ["2025-03-04T05:06:07.000000+00:00", "2025-03-04T05:06:07.123000+00:00"],
        "extra": {"anything": [1, {"goes": True}]},
    }


def test_unknown_fields_are_dropped_at_every_level_and_reported_once_per_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    demo = checker()
    first = record(
        mood="ok",
        owner={"name": "Ann", "age": 3},
        messages=[{"uid": "m1", "likes": 2, "sent_at": "2025-03-04T05:06:07Z"}],
        extra={"free": 1},
    )
    with caplog.at_level(logging.WARNING, logger=DemoStream.logger.name):
        assert demo.check(first) == {
            "id": "r1",
            "owner": {"name": "Ann"},
            "messages": [{"uid": "m1", "sent_at": "2025-03-04T05:06:07.000000+00:00"}],
            "extra": {"free": 1},
        }
        demo.check(record(mood="again", owner={"age": 4}, messages=[{"uid": "m", "likes": 1}]))
        demo.check(record(messages=[{"uid": "m", "likes": 1, "emoji": "x"}], zone=1, mood=2))
    assert [r.getMessage() for r in caplog.records] == [
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: mood",
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: owner.age",
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: "
        "messages[].likes",
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: zone",
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: "
        "messages[].emoji",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (record(count=True), "field 'count' of record id='r1' is bool True, expected NoneType/int"),
        (record(count=1.0), "field 'count' of record id='r1' is float 1.0, expected NoneType/int"),
        (record(count="1"), "field 'count' of record id='r1' is str '1', expected NoneType/int"),
        (
            record(score=False),
            "field 'score' of record id='r1' is bool False, expected NoneType/float/int",
        ),
        (record(flag=0), "field 'flag' of record id='r1' is int 0, expected NoneType/bool"),
        (record(id=7), "field 'id' of record id=7 is int 7, expected str"),
        (record(owner=[]), "field 'owner' of record id='r1' is list [], expected NoneType/dict"),
        (
            record(owner={"name": {"first": "A"}}),
            "field 'owner.name' of record id='r1' is dict {'first': 'A'}, expected NoneType/str",
        ),
        (
            record(messages=[{"uid": "a"}, {"uid": "b"}, {"uid": "c"}, {"uid": "d", "sent_at": 5}]),
            "field 'messages[3].sent_at' of record id='r1' is int 5, expected NoneType/str",
        ),
        (
            record(messages=[{"uid": "a"}, None]),
            "field 'messages[1]' of record id='r1' is NoneType None, expected dict",
        ),
        (
            record(messages=[{"uid": "a", "tags": ["x", 2]}]),
            "field 'messages[0].tags[1]' of record id='r1' is int 2, expected str",
        ),
        (
            record(reminders=["2025-03-04T05:06:07Z", None]),
            "field 'reminders[1]' of record id='r1' is NoneType None, expected str",
        ),
        (
            record(sent_at=20250304),
            "field 'sent_at' of record id='r1' is int 20250304, expected NoneType/str",
        ),
        (
            record(extra="text"),
            "field 'extra' of record id='r1' is str 'text', expected NoneType/dict",
        ),
    ],
)
def test_a_value_of_the_wrong_json_type_is_one_line_naming_its_path(
    row: dict[str, t.Any], problem: str
) -> None:
    assert failure(row) == f"Demo stream 'demo_items': {problem}"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            record(sent_at="2025-02-30T00:00:00Z"),
            "field 'sent_at' of record id='r1' is not an ISO-8601 timestamp: "
            "str '2025-02-30T00:00:00Z'",
        ),
        (
            record(owner={"seen_at": "2025-03-04T05:06:07z"}),
            "field 'owner.seen_at' of record id='r1' is not an ISO-8601 timestamp: "
            "str '2025-03-04T05:06:07z'",
        ),
        (
            record(messages=[{"uid": "a", "sent_at": "soon"}]),
            "field 'messages[0].sent_at' of record id='r1' is not an ISO-8601 timestamp: "
            "str 'soon'",
        ),
        (
            record(reminders=["2025-03-04T05:06:07Z", "2025-03-04T25:00:00Z"]),
            "field 'reminders[1]' of record id='r1' is not an ISO-8601 timestamp: "
            "str '2025-03-04T25:00:00Z'",
        ),
        (
            record(sent_at="9999-12-31T23:59:59-01:00"),
            "field 'sent_at' of record id='r1' is out of range once converted to UTC "
            "(years 1-9999): '9999-12-31T23:59:59-01:00'",
        ),
    ],
)
def test_a_bad_timestamp_is_one_line_naming_its_path(row: dict[str, t.Any], problem: str) -> None:
    assert failure(row) == f"Demo stream 'demo_items': {problem}"


def test_a_timestamp_field_whose_schema_refuses_text_keeps_its_type_rule() -> None:
    odd = {
        "properties": {
            "id": {"type": ["string"]},
            "at": {"type": ["integer"], "format": "date-time"},
        }
    }
    assert failure(record(at="2025-03-04T05:06:07Z"), schema=odd) == (
        "Demo stream 'demo_items': field 'at' of record id='r1' is str '2025-03-04T05:06:07Z', "
        "expected int"
    )
    assert failure(record(at=5), schema=odd) == (
        "Demo stream 'demo_items': field 'at' of record id='r1' is not an ISO-8601 timestamp: int 5"
    )


def test_a_record_without_its_key_cannot_load() -> None:
    problem = "is missing; it is the primary key, so the record cannot load"
    assert failure({"count": 1}) == (
        f"Demo stream 'demo_items': field 'id' of record id=None {problem}"
    )
    assert failure({"a": "x", "b": None}, primary_keys=("a", "b")) == (
        f"Demo stream 'demo_items': field 'b' of record a='x', b=None {problem}"
    )


@pytest.mark.parametrize(
    ("row", "shown"), [([1, 2], "list [1, 2]"), ("text", "str 'text'"), (None, "NoneType None")]
)
def test_a_record_that_is_not_an_object_is_one_line(row: t.Any, shown: str) -> None:
    expected = f"Demo stream 'demo_items': a record is {shown}, not a JSON object"
    assert failure(row) == expected
    assert failure(row, text_fields=("id",)) == expected  # before any text conversion


def test_text_fields_become_text_before_the_checks() -> None:
    demo = checker(schema=SCHEMA, text_fields=("id", "owner"))
    assert demo.check({"id": 7, "owner": None})["id"] == "7"
    assert demo.check({"id": "7"})["id"] == "7"
    with pytest.raises(ProviderError, match=r"field 'id' of record id=None is missing"):
        demo.check({"id": None})
    # `owner` as text is not an object: the schema still decides.
    with pytest.raises(ProviderError, match=r"field 'owner' of record id='8' is str \"{'n"):
        demo.check({"id": 8, "owner": {"name": "Ann"}})


def test_types_are_checked_before_timestamps_and_unknown_fields_reported_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = record(sent_at="not a time", count="x", surprise=1)
    with caplog.at_level(logging.WARNING, logger=DemoStream.logger.name):
        problem = failure(row)
    assert problem.endswith("field 'count' of record id='r1' is str 'x', expected NoneType/int")
    assert [r.getMessage() for r in caplog.records] == [
        "Demo stream 'demo_items': the API sent fields not in the schema, dropped: surprise"
    ]


def test_the_record_named_in_a_failure_shows_a_timestamp_key_as_it_arrived() -> None:
    row = {"sent_at": "2025-03-04T05:06:07Z", "count": "x"}
    assert failure(row, primary_keys=("sent_at",)) == (
        "Demo stream 'demo_items': field 'count' of record sent_at='2025-03-04T05:06:07Z' "
        "is str 'x', expected NoneType/int"
    )


def test_a_value_nested_far_deeper_than_the_schema_is_one_short_error() -> None:
    deep: t.Any = []
    for _ in range(5_000):
        deep = [deep]
    problem = failure(record(owner={"name": deep}))
    assert problem.startswith("Demo stream 'demo_items': field 'owner.name' of record id='r1' ")
    assert problem.endswith(", expected NoneType/str")
    assert len(problem) < 200
