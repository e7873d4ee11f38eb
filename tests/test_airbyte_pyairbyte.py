"""A real Airbyte client: PyAirbyte reads `source-conversations` into its DuckDB cache.

PyAirbyte (~800 MB with the Airbyte CDK, DuckDB, pandas and cloud SDKs) is not a dependency of
the tap: the test builds a throwaway environment for it with uv, once per run. PyAirbyte runs
the installed `source-conversations` executable (`get_source(..., local_executable=...)`,
`AIRBYTE_OFFLINE_MODE=1`, so it never looks for the connector registry) against the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from sandbox import SECRETS, Sandbox, SandboxSettings
from tests.airbyte_messages import (
    SOURCE_EXECUTABLE,
    STREAMS,
    WRONG_SECRETS,
    expected_records,
    wrong_credentials,
)
from tests.children import DERIVED

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PYAIRBYTE = "airbyte~=0.71.0"
DRIVER = Path(__file__).with_name("airbyte_pyairbyte_driver.py")
TOP_LEVEL = {
    "perform_engage": "perform_engage_conversations",
    "onq": "onq_conversations",
    "respondent": "respondent_conversations",
}


class PyAirbyte:
    """The throwaway PyAirbyte environment and the driver script run inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.env = {
            **os.environ,
            "AIRBYTE_OFFLINE_MODE": "1",
            "DO_NOT_TRACK": "1",
            "AIRBYTE_LOGGING_ROOT": str(root / "logs"),
        }

    def install(self) -> None:
        uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
        assert uv, "uv is needed to build the PyAirbyte environment (scripts/test.sh installs it)"
        for command in (
            [uv, "venv", "--quiet", "--python", sys.executable, str(self.root / "venv")],
            [uv, "pip", "install", "--quiet", "--python", str(self.python), PYAIRBYTE],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=800, check=False)
            assert done.returncode == 0, done.stderr[-2000:]

    def run(self, command: str, config: dict[str, t.Any]) -> tuple[dict[str, t.Any], str]:
        """Run the driver; returns its report and everything PyAirbyte printed."""
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        config_file, out = work / "config.json", work / f"{command}.json"
        config_file.write_text(json.dumps(config))
        args = [str(self.python), str(DRIVER), command, "--executable", SOURCE_EXECUTABLE]
        args += ["--config", str(config_file), "--out", str(out)]
        args += ["--cache-dir", str(self.root / "cache")]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=600, check=False, env=self.env, cwd=work
        )
        printed = done.stdout + done.stderr
        assert done.returncode == 0, printed[-4000:]
        return json.loads(out.read_text()), printed

    def logs(self) -> str:
        files = (self.root / "logs").rglob("*.log")
        return "\n".join(path.read_text(errors="replace") for path in files)


@pytest.fixture(scope="module")
def pyairbyte(tmp_path_factory: pytest.TempPathFactory) -> PyAirbyte:
    environment = PyAirbyte(tmp_path_factory.mktemp("pyairbyte"))
    environment.install()
    return environment


@pytest.fixture(scope="module")
def sandbox() -> t.Iterator[Sandbox]:
    settings = SandboxSettings(
        pe_conversations=50,
        pe_plans=6,
        pe_max_limit=20,
        onq_conversations=60,
        respondent_conversations=20,
    )
    with Sandbox(settings) as running:
        yield running


def joined_key(row: dict[str, t.Any], key: tuple[str, ...]) -> str:
    """A row's primary key as the driver writes it: the values joined by "|"."""
    return "|".join(str(row[field]) for field in key)


def keys_by_stream(tables: dict[str, list[dict[str, t.Any]]]) -> dict[str, Counter[str]]:
    return {stream: Counter(str(row["key"]) for row in rows) for stream, rows in tables.items()}


def assert_cache_holds_the_sandbox_once(
    tables: dict[str, list[dict[str, t.Any]]], sandbox: Sandbox
) -> None:
    expected = expected_records(sandbox)
    for stream, keys in keys_by_stream(tables).items():
        key = STREAMS[stream][0]
        duplicated = [k for k, n in keys.items() if n > 1]
        assert not duplicated, f"{stream}: keys cached more than once: {duplicated[:3]}"
        assert set(keys) == {joined_key(r, key) for r in expected[stream]}, stream


def test_pyairbyte_reads_every_stream_once_then_only_the_changes(
    pyairbyte: PyAirbyte, sandbox: Sandbox
) -> None:
    config = {**sandbox.tap_config(), "progress_interval_seconds": 0}
    first, _ = pyairbyte.run("read", config)
    assert set(first["tables"]) == set(STREAMS)
    assert_cache_holds_the_sandbox_once(first["tables"], sandbox)
    assert first["processed_records"] == sum(len(v) for v in expected_records(sandbox).values())

    changes = {provider: sandbox.mutate(provider, changed=5, added=3) for provider in TOP_LEVEL}
    started_ms = time.time() * 1000
    second, _ = pyairbyte.run("read", config)

    assert_cache_holds_the_sandbox_once(second["tables"], sandbox)
    fresh = {
        stream: {str(row["key"]) for row in rows if row["extracted_at_ms"] >= started_ms}
        for stream, rows in second["tables"].items()
    }
    for provider, stream in TOP_LEVEL.items():
        mutation = changes[provider]
        changed = {str(k) for k in mutation.changed_keys + mutation.added_keys}
        assert fresh[stream] == changed, stream  # each version once: nothing else again
    # Children follow their parents: exactly the rows of the parents sent again.
    assert fresh["perform_engage_conversation_details"] == fresh["perform_engage_conversations"]
    for derived in DERIVED:
        assert fresh[derived.stream] == {
            joined_key(row, derived.key)
            for row in derived.expected(sandbox)
            if str(row[derived.join]) in fresh[derived.parent]
        }, derived.stream
    # Plans have no update time: every run sends them all (and the cache keeps one row each).
    plans = {p["api_id"] for p in sandbox.data.pe_plans}
    assert fresh["perform_engage_conversation_plans"] == plans
    assert fresh["perform_engage_conversation_plan_details"] == plans
    assert second["processed_records"] == sum(len(keys) for keys in fresh.values())


def test_pyairbyte_check_reports_wrong_credentials_without_secrets(
    pyairbyte: PyAirbyte, sandbox: Sandbox
) -> None:
    ok, _ = pyairbyte.run("check", {**sandbox.tap_config(), "progress_interval_seconds": 0})
    assert ok == {"ok": True, "error": ""}

    config = wrong_credentials(sandbox)
    report, printed = pyairbyte.run("check", config)
    assert report["ok"] is False
    assert "Perform & Engage" in report["error"]
    everything = json.dumps(report) + printed + pyairbyte.logs()
    for secret in (*SECRETS, *WRONG_SECRETS):
        assert secret not in everything
