"""Settings every provider shares, checks JSON Schema cannot express, keeping secrets secret."""

from __future__ import annotations

import datetime
import logging
import typing as t
from urllib.parse import urlparse

from singer_sdk import typing as th

DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_RETRIES = 5
DEFAULT_REQUEST_TIMEOUT = 60
DEFAULT_PROGRESS_INTERVAL = 30

TOP_LEVEL_SETTINGS = (
    th.Property(
        "start_date",
        th.DateTimeType,
        description="Earliest update time to extract on the first run (ISO-8601)",
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType(minimum=1, maximum=64),
        default=DEFAULT_MAX_CONCURRENCY,
        description="Detail requests in flight at once; 1 = one at a time",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=20),
        default=DEFAULT_MAX_RETRIES,
        description="Retries of a failed request (5xx, 429, timeout, dropped or bad body)",
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType(minimum=1, maximum=900),
        default=DEFAULT_REQUEST_TIMEOUT,
        description="Seconds to wait for a response before retrying",
    ),
    th.Property(
        "progress_interval_seconds",
        th.NumberType(minimum=0),
        default=DEFAULT_PROGRESS_INTERVAL,
        description="Seconds between progress lines on stderr; 0 turns them off",
    ),
)


def rate_limit_setting() -> th.Property[t.Any]:
    """`max_requests_per_second`, which every provider object accepts."""
    return th.Property(
        "max_requests_per_second",
        th.NumberType(exclusive_minimum=0),
        description="Cap on this provider's request rate, shared by all workers",
    )


def config_problems(config: t.Mapping[str, t.Any]) -> list[str]:
    """What JSON Schema cannot say about a config: URLs that are not http(s), a `start_date`
    that is not a date. The SDK's validation lists every schema problem; these join them, in
    the SDK's wording (`<problem> in config['<key>']`)."""
    problems = []
    for provider, values in config.items():
        if isinstance(values, dict) and isinstance(values.get("api_url"), str):
            url = urlparse(values["api_url"])
            if url.scheme not in {"http", "https"} or not url.netloc:
                where = f"config[{provider!r}]['api_url']"
                problems.append(f"{values['api_url']!r} is not an http(s) URL in {where}")
    start_date = config.get("start_date")
    if isinstance(start_date, str):
        try:
            datetime.datetime.fromisoformat(start_date)
        except ValueError:
            problems.append(
                f"{start_date!r} is not an ISO-8601 date (e.g. 2024-01-31T00:00:00Z) "
                "in config['start_date']"
            )
    return problems


def secret_values(config: t.Mapping[str, t.Any], schema: dict[str, t.Any]) -> list[str]:
    """The config values whose schema property is marked secret, at any depth."""
    found = []
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name)
        if value is None:
            continue
        if prop.get("secret") or prop.get("writeOnly"):
            found.append(str(value))
        elif isinstance(value, dict):
            found += secret_values(value, prop)
    return [value for value in found if len(value) >= 4]


class RedactSecrets(logging.Filter):
    """Replaces secret values in every log line (messages, arguments and tracebacks)."""

    def __init__(self, secrets: t.Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redact(message)
        record.args = None
        return True
