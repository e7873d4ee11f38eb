"""`utc_timestamp`: the one layout, the UTC fast path's edges, and what it refuses.

Every expected value is written out by hand.
"""

from __future__ import annotations

import typing as t

import pytest

from tap_conversations.records import utc_timestamp


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
    assert utc_timestamp(expected) == expected  # normalising twice gives the same text


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
