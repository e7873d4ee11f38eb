"""The one timestamp layout the tap writes: UTC, to the microsecond, `+00:00`.

`records` checks every `date-time` value with `utc_timestamp`, and inlines its common case
(`SECONDS_Z`, `MICROS_UTC`): it runs several times per record.
"""

from __future__ import annotations

import datetime

_UTC = datetime.UTC
parse_iso = datetime.datetime.fromisoformat
SECONDS_Z = "--T::Z"  # value[4::3] of `YYYY-MM-DDTHH:MM:SSZ`, the APIs' usual form
MICROS_UTC = ".000000+00:00"  # what follows its seconds in the layout
_SECONDS = "--T::"  # value[4:17:3] of `YYYY-MM-DDTHH:MM:SS...`, however the rest goes


def utc_timestamp(value: str) -> str:
    """Normalise an ISO-8601 timestamp to UTC with a fixed layout.

    The APIs mix offsets (`+01:00`, `Z`) and precisions. One layout,
    `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, makes string order equal time order, which is what the
    SDK relies on when it compares bookmark values. The instant itself is unchanged; a value
    without an offset is taken as UTC, digits past the microsecond are dropped.
    Raises `ValueError` for text that is not ISO-8601 and `OverflowError` for an instant
    outside years 1-9999 once in UTC (`9999-12-31T23:59:59-01:00`).
    """
    parsed = parse_iso(value)  # validates, whatever the path below
    # Already UTC with its date and time in the extended layout (the common case): keep the
    # text up to the seconds instead of formatting a datetime, several times cheaper. Parsed,
    # those separators leave only digits around them (no week date, no basic layout).
    if value[4::3] == SECONDS_Z:
        return value[:19] + MICROS_UTC
    if parsed.tzinfo is _UTC and value[4:17:3] == _SECONDS:
        return f"{value[:19]}.{parsed.microsecond:06d}+00:00"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return parsed.astimezone(_UTC).isoformat(timespec="microseconds")
