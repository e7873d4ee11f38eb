"""Regenerate the settings and stream tables in README.md from the tap itself.

    uv run python scripts/readme_tables.py          # rewrite README.md
    uv run python scripts/readme_tables.py --check  # exit 1 if README.md is stale

The tables live between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers, so they can
never drift from the config schema and stream classes (a test runs `--check`).
"""

from __future__ import annotations

import re
import sys
import typing as t
from pathlib import Path

from tap_conversations.derived import DerivedStream
from tap_conversations.tap import PROVIDERS, TapConversations

README = Path(__file__).resolve().parent.parent / "README.md"


def _settings_rows(properties: dict[str, t.Any], required: list[str], prefix: str) -> list[str]:
    rows = []
    for name, prop in properties.items():
        full = f"{prefix}{name}"
        default = prop.get("default")
        flags = []
        if name in required:
            flags.append("required")
        if prop.get("secret") or prop.get("writeOnly"):
            flags.append("secret")
        rows.append(
            f"| `{full}` | {', '.join(flags)} | {'' if default is None else f'`{default}`'} "
            f"| {prop.get('description', '')} |"
        )
        if "properties" in prop:
            rows += _settings_rows(prop["properties"], prop.get("required", []), f"{full}.")
    return rows


def settings_table() -> str:
    schema = TapConversations.config_jsonschema
    rows = _settings_rows(schema["properties"], schema.get("required", []), "")
    header = "| Setting | Flags | Default | Description |\n|:--|:--|:--|:--|"
    return "\n".join([header, *rows])


def streams_table() -> str:
    header = (
        "| Stream | Provider | Endpoint | Key | Replication | Parent |\n|:--|:--|:--|:--|:--|:--|"
    )
    rows = []
    for provider in PROVIDERS:
        for stream_type in provider.streams:
            path = getattr(stream_type, "path", None)
            derived = issubclass(stream_type, DerivedStream)
            if derived:
                endpoint = f"one row per element of the parent's `{stream_type.array_field}`"
            else:
                endpoint = f"GET `{path}`" if path else "(from parent record)"
            key = ", ".join(f"`{k}`" for k in stream_type.primary_keys or ())
            # Unset class attributes are still the SDK's properties: only a string is a key.
            replication_key = stream_type.replication_key
            replication = (
                f"incremental on `{replication_key}`"
                if isinstance(replication_key, str)
                else "full table"
            )
            if derived:
                replication = f"with its parent ({replication})"
            parent = stream_type.parent_stream_type
            rows.append(
                f"| `{stream_type.name}` | {provider.label} | {endpoint} | {key} "
                f"| {replication} | {f'`{parent.name}`' if parent else ''} |"
            )
    return "\n".join([header, *rows])


TABLES = {"settings": settings_table, "streams": streams_table}


def render(text: str) -> str:
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            msg = f"README.md has no <!-- {name}:start/end --> markers"
            raise SystemExit(msg)
        text = pattern.sub(lambda m, b=build: f"{m.group(1)}{b()}\n{m.group(2)}", text)
    return text


def main() -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in sys.argv:
        if fresh != current:
            print("README.md tables are stale: run scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
