"""Schema drift: new fields are reported once and dropped; wrong types are clear errors."""

from __future__ import annotations

import logging
import typing as t

import pytest

from tap_conversations.client import ProviderError
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


def test_a_new_field_is_dropped_and_reported_once(
    stream: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = stream.prepare(onq_row(brand_new=1))
        second = stream.prepare(onq_row(brand_new=2))
    assert "brand_new" not in first
    assert second["name"] == "Intro"
    reports = [r for r in caplog.records if "brand_new" in r.getMessage()]
    assert len(reports) == 1
    assert "onq_conversations" in reports[0].getMessage()


def test_a_field_of_the_wrong_type_names_stream_field_and_record(stream: t.Any) -> None:
    with pytest.raises(ProviderError) as error:
        stream.prepare(onq_row(visible="yes"))
    message = str(error.value)
    assert "onQ stream 'onq_conversations'" in message
    assert "field 'visible'" in message
    assert "id='7'" in message
    assert "expected NoneType/bool" in message


def test_a_timestamp_that_is_not_one_is_a_clear_error(stream: t.Any) -> None:
    with pytest.raises(ProviderError, match=r"field 'created_on' of record id='7' is not an ISO"):
        stream.prepare(onq_row(created_on="yesterday"))


def test_timestamps_are_normalised_to_utc(stream: t.Any) -> None:
    row = stream.prepare(onq_row(created_on="2025-01-02T04:04:05.5+01:00"))
    assert row["created_on"] == "2025-01-02T03:04:05.500000+00:00"
    assert row["last_updated_on"] == "2025-01-02T03:04:05.000000+00:00"
