"""Settings every provider shares, checks JSON Schema cannot express, keeping secrets secret."""

from __future__ import annotations

import datetime
import difflib
import logging
import re
import typing as t
from dataclasses import dataclass
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
    th.Property(
        "metrics_log_level",
        th.StringType(allowed_values=["DEBUG", "INFO"]),
        default="DEBUG",
        description=(
            "Level of the SDK's METRIC log lines: DEBUG shows them only with "
            "TAP_CONVERSATIONS_LOGLEVEL=DEBUG, INFO in every run"
        ),
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
    the same wording as `readable_problem` (`<setting>: <problem>`)."""
    problems = []
    for provider, values in config.items():
        if isinstance(values, dict) and isinstance(values.get("api_url"), str):
            url = urlparse(values["api_url"])
            if url.scheme not in {"http", "https"} or not url.netloc:
                problems.append(f"{provider}.api_url: {values['api_url']!r} is not an http(s) URL")
    start_date = config.get("start_date")
    if isinstance(start_date, str):
        try:
            datetime.datetime.fromisoformat(start_date)
        except ValueError:
            problems.append(
                f"start_date: {start_date!r} is not an ISO-8601 date (e.g. 2024-01-31T00:00:00Z)"
            )
    return problems


_SDK_PROBLEM = re.compile(r"^(?P<problem>.*?) in config(?P<path>(?:\[[^\]]+\])+)$", re.DOTALL)
_REQUIRED = re.compile(r"^'(?P<key>[^']+)' is a required property$")


def readable_problem(sdk_error: str) -> str:
    """One SDK config-validation message (`<problem> in config['a']['b']`) reworded as users
    name settings in Meltano: `a.b: <problem>` (`a.key: required, not set` for a missing key).
    """
    match = _SDK_PROBLEM.match(sdk_error)
    path: list[str] = []
    problem = sdk_error
    if match:
        problem = match["problem"]
        path = [part.strip("'\"") for part in re.findall(r"\[([^\]]+)\]", match["path"])]
    if required := _REQUIRED.match(problem):
        return ".".join([*path, required["key"]]) + ": required, not set"
    return f"{'.'.join(path)}: {problem}" if path else problem


@dataclass(frozen=True)
class UnknownSetting:
    """A config key no setting has, with the closest one that exists."""

    setting: str  # dotted, e.g. "perform_engage.usename"
    closest: str | None  # dotted, e.g. "perform_engage.username"

    def message(self) -> str:
        hint = f" (did you mean '{self.closest}'?)" if self.closest else ""
        return f"{self.setting}: not a setting of this tap, ignored{hint}"


def unknown_settings(
    config: t.Mapping[str, t.Any],
    schema: t.Mapping[str, t.Any],
    also_valid: t.Iterable[str] = (),
    path: tuple[str, ...] = (),
) -> list[UnknownSetting]:
    """Keys of `config`, at any depth of the tap's own settings, that `schema` does not have.

    `also_valid` are top-level keys of settings the SDK adds (`stream_maps`, ...), whose
    contents are theirs to check.
    """
    properties: t.Mapping[str, t.Any] = schema.get("properties", {})
    valid = [*properties, *also_valid]
    found = []
    for key, value in config.items():
        if key in properties:
            nested = properties[key]
            if isinstance(value, dict) and nested.get("properties"):
                found += unknown_settings(value, nested, (), (*path, key))
        elif key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            closest = ".".join((*path, close[0])) if close else None
            found.append(UnknownSetting(".".join((*path, key)), closest))
    return found


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
