"""Schema drift: with `discard`, new fields are reported once and dropped; wrong types are
clear errors (`evolve` and `freeze`: test_schema_evolution*.py)."""

from __future__ import annotations

import datetime
import logging
import random
import typing as t

import pytest

from tap_conversations.errors import ProviderError
from tap_conversations.records import utc_timestamp
from tap_conversations.tap import TapConversations

CONFIG = {
    "onq": {
        "api_url": "http://127.0.0.1:9/onq",
        "api_key": "ONQ-k",
        "api_secret": "secret-value-1234",
        "issuer": "https://a.example",
        "subject": "etl@a.example",
        "audience": "https://a.onq.io",
    }
}


def onq_row(**extra: t.Any) -> dict[str, t.Any]:
    return {"id": 7, "name": "Intro", "last_updated_on": "2025-01-02T03:04:05Z", **extra}


@pytest.fixture
def stream() -> t.Any:
    return TapConversations(config=CONFIG).streams["onq_conversations"]


def test_a_new_field_is_dropped_and_reported_once_with_discard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {**CONFIG, "schema_evolution": "discard"}
    stream = TapConversations(config=config).streams["onq_conversations"]
    with caplog.at_level(logging.WARNING):
        first = stream.checked_record(onq_row(brand_new=1))
        second = stream.checked_record(onq_row(brand_new=2))
    assert "brand_new" not in first
    assert second["name"] == "Intro"
    reports = [r for r in caplog.records if "brand_new" in r.getMessage()]
    assert len(reports) == 1
    assert "onq_conversations" in reports[0].getMessage()


def test_a_field_of_the_wrong_type_names_stream_field_and_record(stream: t.Any) -> None:
    with pytest.raises(ProviderError) as error:
        stream.checked_record(onq_row(visible="yes"))
    message = str(error.value)
    assert "onQ stream 'onq_conversations'" in message
    assert "field 'visible'" in message
    assert "id='7'" in message
    assert "expected NoneType/bool" in message


def test_a_timestamp_that_is_not_one_is_a_clear_error(stream: t.Any) -> None:
    with pytest.raises(ProviderError, match=r"field 'created_on' of record id='7' is not an ISO"):
        stream.checked_record(onq_row(created_on="yesterday"))


def test_timestamps_are_normalised_to_utc(stream: t.Any) -> None:
    row = stream.checked_record(onq_row(created_on="2025-01-02T04:04:05.5+01:00"))
    assert row["created_on"] == "2025-01-02T03:04:05.500000+00:00"
    assert row["last_updated_on"] == "2025-01-02T03:04:05.000000+00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-05T10:22:11Z", "2024-03-05T10:22:11.000000+00:00"),
        ("2024-05-01T12:00:00.120Z", "2024-05-01T12:00:00.120000+00:00"),
        ("2021-09-28T10:44:15.945867+01:00", "2021-09-28T09:44:15.945867+00:00"),
        ("2021-09-28T10:44:15.945867+00:00", "2021-09-28T10:44:15.945867+00:00"),
        ("2021-12-31T23:30:00-01:00", "2022-01-01T00:30:00.000000+00:00"),
        ("2024-01-01", "2024-01-01T00:00:00.000000+00:00"),
        ("2024-01-01T05:06:07", "2024-01-01T05:06:07.000000+00:00"),
    ],
)
def test_utc_timestamp_layout(value: str, expected: str) -> None:
    assert utc_timestamp(value) == expected


def test_utc_timestamp_fast_path_agrees_with_datetime() -> None:
    rng = random.Random(4)
    for _ in range(2_000):
        moment = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6)
        )
        for text in (
            moment.isoformat().replace("+00:00", "Z"),
            moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            moment.isoformat(timespec="seconds"),
            moment.isoformat(),
        ):
            expected = datetime.datetime.fromisoformat(text).astimezone(datetime.UTC)
            assert datetime.datetime.fromisoformat(utc_timestamp(text)) == expected, text
            assert len(utc_timestamp(text)) == 32, text


def test_utc_timestamp_rejects_garbage() -> None:
    for text in ("2024-13-01T00:00:00Z", "soon", "2024-01-01T00:00:00.xZ"):
        with pytest.raises(ValueError):  # noqa: PT011 - fromisoformat's own message
            utc_timestamp(text)
