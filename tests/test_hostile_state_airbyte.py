"""Airbyte state and sync modes: a bookmark Airbyte kept that is not a timestamp, and a
full refresh of an incremental stream that has a bookmark."""

from __future__ import annotations

import json
import typing as t

from tests.airbyte_messages import configured_catalog, run_source

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

ONQ = "onq_conversations"


def write(tmp_path: Path, name: str, content: t.Any) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(content))
    return str(path)


def stream_state(bookmark: str) -> list[dict[str, t.Any]]:
    return [
        {
            "type": "STREAM",
            "stream": {
                "stream_descriptor": {"name": ONQ},
                "stream_state": {
                    "replication_key": "last_updated_on",
                    "replication_key_value": bookmark,
                },
            },
        }
    ]


def read(tmp_path: Path, sandbox: Sandbox, mode: str, state: list[dict[str, t.Any]]) -> t.Any:
    config = write(tmp_path, "config", {"onq": sandbox.tap_config()["onq"]})
    discovered = run_source(["discover", "--config", config])
    (catalog,) = discovered.of_type("CATALOG")
    configured = write(tmp_path, "catalog", configured_catalog(catalog["catalog"], {ONQ: mode}))
    args = ["read", "--config", config, "--catalog", configured]
    return run_source([*args, "--state", write(tmp_path, "state", state)])


def test_a_bookmark_that_is_not_a_timestamp_is_a_config_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    run = read(tmp_path, sandbox, "incremental", stream_state("01/05/2024"))
    assert run.returncode == 1
    (error,) = run.traces("ERROR")
    assert error["error"]["failure_type"] == "config_error"
    message = error["error"]["message"]
    assert ONQ in message
    assert "01/05/2024" in message
    assert "\n" not in message
    assert not run.of_type("RECORD")
    assert "Traceback" not in run.stdout + run.stderr


def test_full_refresh_of_an_incremental_stream_sends_every_record(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Airbyte's own way to force a full table: the stream's state is not used (and the
    STATE it ends with serves the next incremental sync)."""
    every = len(sandbox.data.onq_conversations)
    newest = max(r["last_updated_on"] for r in sandbox.data.onq_conversations)
    run = read(tmp_path, sandbox, "full_refresh", stream_state(newest))
    assert run.returncode == 0, run.stdout[-2000:]
    assert run.counts() == {ONQ: every}
    again = read(tmp_path, sandbox, "incremental", run.final_states())
    assert again.returncode == 0
    assert again.counts().get(ONQ, 0) == 0
