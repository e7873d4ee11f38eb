"""`records`: every checking rule, on a small schema of its own, and the hot path against the
full checks on every stream's schema.

Expected values are written out by hand; the last tests compare the two paths of
`RecordChecker` (the hot path must give what the full checks give, message for message).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tap_conversations.records import RecordChecker
from tap_conversations.tap import TapConversations
from tap_conversations.timestamps import utc_timestamp
from tests.helpers import run_sync

if t.TYPE_CHECKING:
    from singer_sdk.singerlib import SelectionMask

    from sandbox import Sandbox

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


def checker(**kwargs: t.Any) -> RecordChecker:
    return RecordChecker(DemoStream(**kwargs))


def record(**fields: t.Any) -> dict[str, t.Any]:
    return {"id": "r1", **fields}


def failure(row: t.Any, **kwargs: t.Any) -> str:
    with pytest.raises(ProviderError) as error:
        checker(**kwargs).check(row)
    return str(error.value)


# --- utc_timestamp -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-04T05:06:07Z", "2025-03-04T05:06:07.000000+00:00"),
        ("2025-03-04T05:06:07+00:00", "2025-03-04T05:06:07.000000+00:00"),
        ("2025-03-04T05:06:07-00:00", "2025-03-04T05:06:07.000000+00:00"),
        ("2025-03-04T05:06:07.5Z", "2025-03-04T05:06:07.500000+00:00"),
        ("2025-03-04T05:06:07.12Z", "2025-03-04T05:06:07.120000+00:00"),
        ("2025-03-04T05:06:07.123Z", "2025-03-04T05:06:07.123000+00:00"),
        ("2025-03-04T05:06:07.1234Z", "2025-03-04T05:06:07.123400+00:00"),
        ("2025-03-04T05:06:07.12345+00:00", "2025-03-04T05:06:07.123450+00:00"),
        ("2025-03-04T05:06:07.123456Z", "2025-03-04T05:06:07.123456+00:00"),
        ("2025-03-04T05:06:07.1234567Z", "2025-03-04T05:06:07.123456+00:00"),  # 7+: cut
        ("2025-03-04T05:06:07.999999999-00:00", "2025-03-04T05:06:07.999999+00:00"),
        ("2025-03-04T05:06:07,5Z", "2025-03-04T05:06:07.500000+00:00"),
        ("2025-03-04T05:06Z", "2025-03-04T05:06:00.000000+00:00"),  # no seconds
        ("2025-03-04T05Z", "2025-03-04T05:00:00.000000+00:00"),
        ("2025-03-04t05:06:07Z", "2025-03-04T05:06:07.000000+00:00"),
        ("2025-03-04 05:06:07Z", "2025-03-04T05:06:07.000000+00:00"),
        ("20250304T050607Z", "2025-03-04T05:06:07.000000+00:00"),  # basic layout
        ("2025-W01-1T00:00:00Z", "2024-12-30T00:00:00.000000+00:00"),  # week date
        ("2025-W01-1T00:00:00.5Z", "2024-12-30T00:00:00.500000+00:00"),
        ("2025-03-04T05:06:07", "2025-03-04T05:06:07.000000+00:00"),  # naive: UTC
        ("2025-03-04T05:06:07.25", "2025-03-04T05:06:07.250000+00:00"),
        ("2025-03-04", "2025-03-04T00:00:00.000000+00:00"),
        ("2025-03-04T05:06:07+01:00", "2025-03-04T04:06:07.000000+00:00"),
        ("2025-03-04T00:30:00.5+01:00", "2025-03-03T23:30:00.500000+00:00"),
        ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00.000000+00:00"),
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000+00:00"),  # leap day
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000+00:00"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:00"),
    ],
)
def test_utc_timestamp_layout(value: str, expected: str) -> None:
    assert utc_timestamp(value) == expected
    assert utc_timestamp(expected) == expected  # the hot path relies on this


@pytest.mark.parametrize(
    "value",
    [
        "2025-02-30T00:00:00Z",  # no such day, in the common layout
        "2023-02-29T00:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-03-04T24:00:00Z",
        "2025-03-04T05:60:00Z",
        "2025-03-04T05:06:60Z",
        "2025-03-04T05:06:07z",  # lowercase designator
        "2025-03-04T05:06:07ZZ",
        "2025-03-04T05:06:07Z ",
        "2025-03-04T05:06:07.x5Z",
        "2025-03-04T05:06:07UTC",
        "\uff12025-03-04T05:06:07Z",  # a fullwidth digit
        "",
        "yesterday",
    ],
)
def test_utc_timestamp_rejects_what_is_not_iso_8601(value: str) -> None:
    with pytest.raises(ValueError, match=r"isoformat|must be in|day is out of range"):
        utc_timestamp(value)


def test_utc_timestamp_refuses_an_instant_outside_the_years_once_in_utc() -> None:
    with pytest.raises(OverflowError):
        utc_timestamp("9999-12-31T23:59:59-01:00")
    with pytest.raises(OverflowError):
        utc_timestamp("0001-01-01T00:00:00+01:00")


def test_utc_timestamp_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError):
        utc_timestamp(t.cast("str", 20250304))


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


# --- the hot path against the full checks, on every stream's schema -----------------------

OFFLINE = {
    "onq": {
        "api_url": "http://127.0.0.1:9/onq",
        "api_key": "ONQ-k",
        "api_secret": "secret-value-1234-abcdefghijklmnopqrstuvwxyz",
        "issuer": "https://a.example",
        "subject": "etl@a.example",
        "audience": "https://a.onq.io",
    },
    "perform_engage": {
        "api_url": "http://127.0.0.1:9/pe",
        "username": "u@example.com",
        "api_key": "pe-secret-key-1234",
    },
    "respondent": {
        "api_url": "http://127.0.0.1:9/r",
        "api_key": "resp-key-1234",
        "api_secret": "resp-secret-1234",
    },
}
TIMESTAMPS = [
    "2025-03-04T05:06:07Z",
    "2025-03-04T05:06:07.599Z",
    "2025-03-04T05:06:07.1234567Z",
    "2025-03-04T05:06:07+00:00",
    "2025-03-04T05:06:07-00:00",
    "2025-03-04T05:06:07.5+02:00",
    "2025-03-04T05:06:07",
    "2025-03-04T05:06Z",
    "2025-W01-1T00:00:00Z",
    "2025-03-04",
    "2025-03-04T05:06:07.000000+00:00",
    "2025-02-30T00:00:00Z",
    "2025-03-04T05:06:07z",
    "9999-12-31T23:59:59-01:00",
    "soon",
]
ODD_VALUES: list[t.Any] = [None, True, 0, 1.5, "x", [], {}, ["x"], {"k": None}, 2**70]


def sample(prop: dict[str, t.Any], rng: random.Random) -> t.Any:
    """A value for `prop`, usually of a type it allows, sometimes not (a tenth of the time)."""
    if rng.random() < 0.1:
        return copy.deepcopy(rng.choice(ODD_VALUES))
    declared = prop.get("type", [])
    kinds = [declared] if isinstance(declared, str) else list(declared)
    kind = rng.choice([k for k in kinds if k != "null"] or ["null"])
    if "null" in kinds and rng.random() < 0.2:
        return None
    if prop.get("format") == "date-time" and kind == "string":
        return rng.choice(TIMESTAMPS)
    if kind == "object":
        properties = prop.get("properties", {"free": {"type": ["integer"]}})
        value = {name: sample(sub, rng) for name, sub in properties.items() if rng.random() < 0.9}
        if rng.random() < 0.05:
            value[rng.choice(["novel", "later_added"])] = 1
        return value
    if kind == "array":
        return [sample(prop.get("items", {}), rng) for _ in range(rng.randrange(4))]
    return {"string": "text", "integer": 3, "number": 2.5, "boolean": False, "null": None}.get(
        kind, "text"
    )


def outcome(checker: RecordChecker, row: dict[str, t.Any]) -> str:
    try:
        return json.dumps(checker.check(row))  # key order included
    except ProviderError as error:
        return f"error: {error}"


@pytest.mark.parametrize("stream_name", sorted(TapConversations(config=OFFLINE).streams))
def test_the_hot_path_gives_what_the_full_checks_give(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = TapConversations(config=OFFLINE).streams[stream_name]
    rng = random.Random(stream_name)
    rows = [sample(stream.schema, rng) for _ in range(400)]
    for row in rows[::3]:
        for key in stream.primary_keys or ():
            if isinstance(row, dict):
                row.setdefault(key, "k")
    results = []
    for hot_path in (True, False):
        caplog.clear()
        checker = RecordChecker(stream, hot_path=hot_path)
        with caplog.at_level(logging.WARNING):
            outcomes = [outcome(checker, copy.deepcopy(row)) for row in rows]
        results.append((outcomes, [r.getMessage() for r in caplog.records]))
    (hot, hot_warnings), (full, full_warnings) = results
    assert hot == full
    assert hot_warnings == full_warnings
    passed = sum(not o.startswith("error") for o in hot)
    assert 0 < passed < len(rows), (passed, len(rows))  # both kinds of record were tried


def test_the_hot_path_handles_a_real_onq_record_as_the_full_checks_do() -> None:
    stream = TapConversations(config=OFFLINE).streams["onq_conversations"]
    row = {
        "id": 97512,
        "org_id": 102,
        "name": "Leadership Essentials",
        "start_on": "2025-06-24T18:09:10Z",
        "end_on": None,
        "last_updated_on": "2025-08-21T07:21:13Z",
        "created_on": "2025-05-29T09:20:12.5Z",
        "visible": True,
        "max_count": 0,
    }
    expected = {
        **row,
        "id": "97512",
        "org_id": "102",
        "start_on": "2025-06-24T18:09:10.000000+00:00",
        "last_updated_on": "2025-08-21T07:21:13.000000+00:00",
        "created_on": "2025-05-29T09:20:12.500000+00:00",
    }
    for hot_path in (True, False):
        assert RecordChecker(stream, hot_path=hot_path).check(dict(row)) == expected


def test_every_sandbox_record_takes_the_hot_path(sandbox: Sandbox) -> None:
    """The sandbox speaks like the APIs: none of its records should need the full checks."""
    tap = TapConversations(config=sandbox.tap_config())
    result = run_sync(tap)
    streams = t.cast("dict[str, t.Any]", tap.streams)
    assert all(result.records(name) for name in streams), result.counts()
    full_checks = {name: stream.checker.full_checks for name, stream in streams.items()}
    assert full_checks == dict.fromkeys(streams, 0)
