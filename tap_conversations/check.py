"""`check`: can each configured provider be reached with the credentials given?

One cheap authenticated request per configured provider (the first page, one record long, of
its first list stream), sent by that provider's own stream so URL, authentication and error
handling are exactly those of a sync. Orchestrators run it before a sync:

    tap-conversations-check --config config.json      # or --config ENV
    meltano invoke tap-conversations:check

prints one line per provider, `ok` or what is wrong and which setting to fix, and exits 0 only
when every configured provider is ok. No output line ever holds a secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing as t
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import requests
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError

from tap_conversations.tap import PROVIDERS, TapConversations

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tap_conversations.requesting import ProviderStream

MAX_MESSAGE = 400


@dataclass(frozen=True)
class ProviderCheck:
    """The outcome of checking one provider."""

    provider: str  # config key, e.g. "perform_engage"
    label: str  # e.g. "Perform & Engage 365"
    ok: bool
    message: str  # one line, "ok" or what is wrong + which setting to fix, never a secret


def check_providers(config: Mapping[str, t.Any]) -> list[ProviderCheck]:
    """Check every provider present in `config`, in the tap's provider order.

    A provider is configured when its object is in `config` (as for a sync). Problems with the
    config itself are reported without sending anything: a provider's own settings on its
    line, a top-level setting (e.g. `start_date`) on every line, since no sync could run. With
    no provider configured the list is empty.
    """
    configured = [p for p in PROVIDERS if p.key in config]
    secrets = _secret_values(config, TapConversations.config_jsonschema)
    problems = _config_problems(config)
    top_level = [p for p in problems if not any(_belongs(p, q.key) for q in PROVIDERS)]
    results = []
    for provider in configured:
        own = [p for p in problems if _belongs(p, provider.key)]
        if own or top_level:
            message = "invalid settings: " + "; ".join(own + top_level)
            results.append(ProviderCheck(provider.key, provider.label, ok=False, message=message))
            continue
        root = next(s for s in provider.streams if s.parent_stream_type is None)
        stream_name: str = root.name  # type: ignore[misc]  # a class attribute on every stream
        message = _request_first_page(config, provider.key, provider.label, stream_name)
        results.append(ProviderCheck(provider.key, provider.label, message == "ok", message))
    return [
        ProviderCheck(r.provider, r.label, r.ok, _one_line(r.message, secrets)) for r in results
    ]


def _belongs(problem: str, provider: str) -> bool:
    """Whether a config problem is about one of `provider`'s settings.

    The tap words them `onq.page_size: ...`, the SDK `... in config['onq']['page_size']`.
    """
    return problem.startswith((f"{provider}.", f"{provider}:")) or (
        f"config['{provider}']" in problem
    )


def _config_problems(config: Mapping[str, t.Any]) -> list[str]:
    try:
        TapConversations(config=dict(config), validate_config=True, setup_mapper=False)
    except ConfigValidationError as error:
        return [str(e) for e in error.errors] or [str(error)]
    return []


def _request_first_page(config: Mapping[str, t.Any], key: str, label: str, stream_name: str) -> str:
    """'ok', or one line saying what failed and which setting to look at."""
    smallest_page = {**config, key: {**config[key], "page_size": 1}}
    tap = TapConversations(config=smallest_page, validate_config=False, setup_mapper=False)
    rest = t.cast("ProviderStream", tap.streams[stream_name])
    session = rest.requests_session
    try:
        return _send(rest, key)
    except FatalAPIError as error:  # the stream's own one-line message (401/403 name settings)
        return str(error)
    except RetriableAPIError as error:
        return f"{error} — the API is failing or busy right now; run the check again later"
    except (requests.ConnectionError, requests.Timeout) as error:
        return (
            f"{label}: cannot reach {rest.url_base} ({type(error).__name__}) — "
            f"check {key}.api_url and the network"
        )
    except Exception as error:  # a bug, not a setting: still one line, the caller decides
        return f"{label}: the check failed unexpectedly ({type(error).__name__}: {error})"
    finally:
        session.close()


def _send(stream: ProviderStream, key: str) -> str:
    response = stream.send_first_page()
    try:
        stream.validate_response(response)
    except FatalAPIError as error:
        if response.status_code in {HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED}:
            return f"{error} — check {key}.api_url"
        raise
    except RetriableAPIError as error:
        if response.ok:  # a 200 that is not JSON: most likely not this vendor's API
            return f"{error} — check {key}.api_url"
        raise
    try:
        list(stream.parse_response(response))
    except FatalAPIError as error:
        return f"{error} — check {key}.api_url"
    return "ok"


def _secret_values(config: Mapping[str, t.Any], schema: Mapping[str, t.Any]) -> list[str]:
    found: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name) if isinstance(config, dict) else None
        if value is None:
            continue
        if prop.get("secret") or prop.get("writeOnly"):
            found.append(str(value))
        elif isinstance(value, dict):
            found += _secret_values(value, prop)
    return found


def _one_line(message: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


# Command line -----------------------------------------------------------------------------


def load_config(sources: Sequence[str]) -> dict[str, t.Any]:
    """Merge config files in order; `ENV` reads `TAP_CONVERSATIONS_*` variables (as the tap)."""
    config: dict[str, t.Any] = {}
    for source in sources:
        if source == "ENV":
            tap = TapConversations(
                config={}, parse_env_config=True, validate_config=False, setup_mapper=False
            )
            config.update(tap.config)
        else:
            config.update(json.loads(Path(source).read_text()))
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tap-conversations-check",
        description="One cheap authenticated request per configured provider; "
        "exit 0 only when all are ok.",
    )
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="PATH|ENV",
        help="config file (repeatable; later ones win), or ENV for TAP_CONVERSATIONS_* variables",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    # The tap's own log lines (e.g. a config warning) would repeat what the result lines say.
    logging.getLogger(TapConversations.name).setLevel(logging.ERROR)
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as error:
        print(f"cannot read the config: {error}", file=sys.stderr)
        return 1
    results = check_providers(config)
    if args.format == "json":
        print(json.dumps([r.__dict__ for r in results]))
    for result in results if args.format == "text" else ():
        print(f"{result.provider} ({result.label}): {result.message}")
    if not results:
        names = ", ".join(p.key for p in PROVIDERS)
        print(f"No provider configured: set at least one of {names}", file=sys.stderr)
        return 1
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
