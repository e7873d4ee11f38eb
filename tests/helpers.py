"""Running the tap in-process or as a CLI, and comparing what it emits with the sandbox's data."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import typing as t
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from tap_conversations.tap import TapConversations

TAP_EXECUTABLE = str(Path(sys.executable).parent / "tap-conversations")


@dataclass
class SyncResult:
    """The Singer messages of one run, parsed."""

    messages: list[dict[str, t.Any]]

    def records(self, stream: str) -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def keys(self, stream: str, key: str) -> list[t.Any]:
        return [record[key] for record in self.records(stream)]

    def counts(self) -> Counter[str]:
        return Counter(m["stream"] for m in self.messages if m["type"] == "RECORD")

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, t.Any]:
        return self.states[-1]


def parse_messages(raw: bytes | str) -> list[dict[str, t.Any]]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sync(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    catalog: dict[str, t.Any] | None = None,
) -> SyncResult:
    """Run a whole sync in this process and return its messages."""
    return run_sync(TapConversations(config=config, state=state, catalog=catalog))


def run_sync(tap: TapConversations) -> SyncResult:
    """Run `tap.sync_all()` in this process and return its messages."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out):
        tap.sync_all()
        out.flush()
    return SyncResult(parse_messages(t.cast("io.BytesIO", out.buffer).getvalue()))


def run_cli(
    args: list[str],
    config: dict[str, t.Any] | None,
    tmp_path: Path,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the `tap-conversations` executable with `config` written to a file."""
    command = [TAP_EXECUTABLE, *args]
    if config is not None:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        command += ["--config", str(config_file)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def as_instant(value: t.Any) -> t.Any:
    """Timestamps compare as instants (the tap normalises them to UTC); other values as-is."""
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    if isinstance(value, dict):
        return {k: as_instant(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_instant(v) for v in value]
    return value


def assert_same_records(
    emitted: list[dict[str, t.Any]],
    expected: list[dict[str, t.Any]],
    key: str,
) -> None:
    """Every expected record emitted exactly once, with the same values, and nothing else."""
    keys = [record[key] for record in emitted]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, f"emitted more than once: {duplicates[:5]}"
    by_key = {record[key]: record for record in emitted}
    expected_by_key = {record[key]: record for record in expected}
    missing = set(expected_by_key) - set(by_key)
    extra = set(by_key) - set(expected_by_key)
    assert not missing, f"{len(missing)} records missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected records, e.g. {sorted(extra)[:3]}"
    for k, want in expected_by_key.items():
        got = {name: by_key[k].get(name) for name in want}
        assert as_instant(got) == as_instant(want), f"record {k} differs"
