"""Settings every provider shares, checks JSON Schema cannot express, keeping secrets secret."""

from __future__ import annotations

import base64
import datetime
import difflib
import json
import logging
import re
import threading
import typing as t
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlparse

from singer_sdk import typing as th

DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_RETRIES = 5
DEFAULT_REQUEST_TIMEOUT = 60
DEFAULT_PROGRESS_INTERVAL = 30
DEFAULT_MAX_RETRY_AFTER = 600
SCHEMA_EVOLUTION_MODES = ("evolve", "freeze", "discard")
DEFAULT_MAX_RESPONSE_MB = 256

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
        description="Seconds a whole response (headers and body) may take before it is retried",
    ),
    th.Property(
        "max_retry_after_seconds",
        th.NumberType(minimum=0, maximum=86400),
        default=DEFAULT_MAX_RETRY_AFTER,
        description=(
            "Longest Retry-After pause the tap waits out; a server asking for more ends the "
            "run with one line"
        ),
    ),
    th.Property(
        "max_response_mb",
        th.IntegerType(minimum=1, maximum=4096),
        default=DEFAULT_MAX_RESPONSE_MB,
        description=(
            "Largest answer body, once decompressed, the tap reads (MB); a larger one ends the "
            "run with one line"
        ),
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
    th.Property(
        "schema_evolution",
        th.StringType(allowed_values=list(SCHEMA_EVOLUTION_MODES)),
        default="evolve",
        description=(
            "A field the schema does not describe: evolve keeps it and adds it to the "
            "stream's schema, freeze ends the provider, discard drops it"
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


URL_SETTINGS = ("api_url", "token_url")


def url_problems(setting: str, value: str) -> list[str]:
    """Why `value` cannot be a base URL: not http(s), credentials in it (`user:pass@`), or a
    query string or fragment (the tap adds paths and parameters of its own after the base).

    A URL holding credentials or a query is never quoted back: either may be a secret.
    """
    url = urlparse(value)
    if url.username is not None or url.password is not None:
        return [
            f"{setting}: holds credentials (user:password@, not shown); remove them from the "
            "URL and give them in the provider's credential settings"
        ]
    if url.query or url.fragment or value.rstrip().endswith(("?", "#")):
        shown = f"{url.scheme}://{url.netloc}{url.path}"
        return [
            f"{setting}: {shown!r} is followed by a query string or fragment (not shown); "
            "give the base URL alone"
        ]
    if url.scheme not in {"http", "https"} or not url.netloc:
        return [f"{setting}: {value!r} is not an http(s) URL"]
    return []


def config_problems(
    config: t.Mapping[str, t.Any], schema: dict[str, t.Any] | None = None
) -> list[str]:
    """What JSON Schema cannot say about a config: URLs that are not http(s), a `start_date`
    that is not a date, a secret with a line break or stray space (given the schema). The SDK's
    validation lists every schema problem; these join them, in the same wording as
    `readable_problem` (`<setting>: <problem>`)."""
    problems = []
    for provider, values in config.items():
        if not isinstance(values, dict):
            continue
        for key in URL_SETTINGS:
            if isinstance(values.get(key), str):
                problems += url_problems(f"{provider}.{key}", values[key])
    if schema is not None:
        problems += [
            f"{dotted(where)}: a line break, control character or leading/trailing space "
            "(value not shown); remove it"
            for where, value in secret_settings(config, schema)
            if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)
        ]
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


def dotted(where: str) -> str:
    """`['respondent']['api_secret']` as users name the setting: `respondent.api_secret`."""
    return ".".join(re.findall(r"\['([^']*)'\]", where))


def secret_settings(
    config: t.Mapping[str, t.Any], schema: dict[str, t.Any], where: str = ""
) -> list[tuple[str, str]]:
    """`("['respondent']['api_secret']", value)` for every setting the schema marks secret."""
    found = []
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name)
        if value is None:
            continue
        here = f"{where}[{name!r}]"
        if prop.get("secret") or prop.get("writeOnly"):
            found.append((here, str(value)))
        elif isinstance(value, dict):
            found += secret_settings(value, prop, here)
    return found


def secret_values(config: t.Mapping[str, t.Any], schema: dict[str, t.Any]) -> list[str]:
    """The config values whose schema property is marked secret, at any depth."""
    return [value for _, value in secret_settings(config, schema) if len(value) >= 4]


def written_forms(secret: str) -> set[str]:
    """Every way a secret may be written into a log line: as is, trimmed, escaped as Python
    or JSON would (`\\n`), as bytes, URL-encoded and base64-encoded."""
    forms = {
        secret,
        secret.strip(),
        secret.encode("unicode_escape").decode("ascii"),
        json.dumps(secret)[1:-1],
        repr(secret.encode())[2:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
    }
    return {form for form in forms if len(form) >= 4}


class _KnownSecrets:
    """The configured secrets and the credentials made from them at run time (a Basic header's
    base64, a minted JWT, a token an API handed out), in all their `written_forms`. Every
    `RedactSecrets` filter redacts them, and `redact_text` for text quoted before it is cut
    short (a cut-off credential would no longer match)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: frozenset[str] = frozenset()

    def add(self, value: str) -> None:
        with self._lock:
            self.values = self.values | written_forms(value)


KNOWN_SECRETS = _KnownSecrets()


def register_secret(value: str) -> None:
    """Redact `value` (a secret, or a credential built from one) from every log line."""
    if len(value) >= 4:
        KNOWN_SECRETS.add(value)


def redact_text(text: str) -> str:
    """`text` with every known secret replaced by `***`: for a server's body quoted in a
    message, before it is shortened."""
    for secret in sorted(KNOWN_SECRETS.values, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    """Replaces secret values, and credentials derived from them, in every log line (messages,
    arguments and tracebacks), in any of their `written_forms`."""

    def __init__(self, secrets: t.Iterable[str]) -> None:
        super().__init__()
        self.configured = frozenset(form for secret in secrets for form in written_forms(secret))
        self._derived: frozenset[str] = frozenset()
        self.secrets = sorted(self.configured, key=len, reverse=True)

    def redact(self, text: str) -> str:
        derived = KNOWN_SECRETS.values
        if derived is not self._derived:
            self._derived = derived
            self.secrets = sorted(self.configured | derived, key=len, reverse=True)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.configured and not KNOWN_SECRETS.values:
            return True
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redact(message)
        record.args = None
        return True
