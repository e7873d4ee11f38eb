"""`RecordChecker`'s hot path gives what its full checks give, on every stream's schema, and
the sandbox's records (which speak like the APIs) all take it.
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
from tests.helpers import run_sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox

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
