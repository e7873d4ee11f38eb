"""The tap's command line without credentials: about, discovery, and a refused empty sync."""

from __future__ import annotations

import json
import typing as t

from tests.helpers import run_cli
from tests.hostile import closed_port

if t.TYPE_CHECKING:
    from pathlib import Path

ALL_STREAMS = {
    "perform_engage_conversations",
    "perform_engage_conversation_details",
    "perform_engage_conversation_elements",
    "perform_engage_conversation_plans",
    "perform_engage_conversation_plan_details",
    "perform_engage_conversation_plan_users",
    "perform_engage_conversation_plan_departments",
    "onq_conversations",
    "respondent_conversations",
    "respondent_messages",
    "respondent_participants",
}


def test_about_markdown_lists_every_provider_setting(tmp_path: Path) -> None:
    completed = run_cli(["--about", "--format=markdown"], None, tmp_path)
    assert completed.returncode == 0, completed.stderr
    for setting in ("perform_engage.api_key", "onq.api_secret", "respondent.project_ids"):
        assert f"| {setting} |" in completed.stdout


def test_discovery_without_config_lists_every_stream(tmp_path: Path) -> None:
    completed = run_cli(["--discover"], None, tmp_path)
    assert completed.returncode == 0, completed.stderr
    catalog = json.loads(completed.stdout)
    assert {entry["tap_stream_id"] for entry in catalog["streams"]} == ALL_STREAMS
    for entry in catalog["streams"]:
        props = entry["schema"]["properties"]
        assert all(prop != {} for prop in props.values()), entry["tap_stream_id"]


def test_discovery_with_one_provider_lists_only_its_streams(tmp_path: Path) -> None:
    # A closed loopback port: discovery's first-page request must not leave this machine.
    api_url = f"http://127.0.0.1:{closed_port()}/v1"
    config = {"respondent": {"api_url": api_url, "api_key": "k", "api_secret": "s"}}
    completed = run_cli(["--discover"], config, tmp_path)
    assert completed.returncode == 0, completed.stderr
    streams = {e["tap_stream_id"] for e in json.loads(completed.stdout)["streams"]}
    assert streams == {
        "respondent_conversations",
        "respondent_messages",
        "respondent_participants",
    }


def test_sync_without_any_provider_fails_with_a_clear_message(tmp_path: Path) -> None:
    completed = run_cli([], {"start_date": "2024-01-01T00:00:00Z"}, tmp_path)
    assert completed.returncode != 0
    assert "No provider configured" in completed.stderr
    assert "'perform_engage'" in completed.stderr
