"""Guards `sdk_compat.NestedEnvConfig`: `--config ENV` reads nested settings, typed.

Fails when the SDK renames `PluginBase._env_var_config` or stops building `--config ENV`
config from it.
"""

from __future__ import annotations

import inspect
import json
import subprocess

from singer_sdk.plugin_base import PluginBase

from tap_conversations.sdk_compat import NestedEnvConfig, nested_env_config
from tap_conversations.tap import TapConversations
from tests.helpers import TAP_EXECUTABLE
from tests.hostile import closed_port
from tests.meltano_project import clean_env

ONQ = {
    "TAP_CONVERSATIONS_ONQ_API_KEY": "kid-1",
    "TAP_CONVERSATIONS_ONQ_API_SECRET": "onq-secret-long-enough",
    "TAP_CONVERSATIONS_ONQ_ISSUER": "https://site.example",
    "TAP_CONVERSATIONS_ONQ_SUBJECT": "etl@site.example",
    "TAP_CONVERSATIONS_ONQ_AUDIENCE": "https://site.onq.io",
    # A closed loopback port: `--discover` reads a first page, which must not leave here.
    "TAP_CONVERSATIONS_ONQ_API_URL": f"http://127.0.0.1:{closed_port()}/onq",
}


def test_the_sdk_still_has_the_private_hook_and_ours_wins() -> None:
    assert "_env_var_config" in PluginBase.__dict__
    ours = NestedEnvConfig.__dict__["_env_var_config"]
    assert inspect.getattr_static(TapConversations, "_env_var_config") is ours


def test_nested_values_are_read_along_the_schema_and_typed() -> None:
    environ = {
        **ONQ,
        "TAP_CONVERSATIONS_ONQ_PAGE_SIZE": "50",
        "TAP_CONVERSATIONS_ONQ_MAX_REQUESTS_PER_SECOND": "0.5",
        "TAP_CONVERSATIONS_RESPONDENT_PROJECT_IDS": '["a", "b"]',
        "TAP_CONVERSATIONS_PERFORM_ENGAGE_CONVERSATION_FILTERS_STATUS": "final",
    }
    found = nested_env_config(TapConversations.config_jsonschema, "TAP_CONVERSATIONS_", environ)
    assert found["onq"]["page_size"] == 50
    assert found["onq"]["max_requests_per_second"] == 0.5
    assert found["respondent"] == {"project_ids": ["a", "b"]}
    assert found["perform_engage"] == {"conversation_filters": {"status": "final"}}


def test_config_env_on_the_command_line_enables_exactly_the_provider_set(tmp_path) -> None:
    env = clean_env(**ONQ, TAP_CONVERSATIONS_REQUEST_TIMEOUT_SECONDS="2.5")
    completed = subprocess.run(
        [TAP_EXECUTABLE, "--config", "ENV", "--discover"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    streams = [s["tap_stream_id"] for s in json.loads(completed.stdout)["streams"]]
    assert streams == ["onq_conversations"]


def test_the_tap_receives_typed_values(monkeypatch) -> None:
    for name, value in {**ONQ, "TAP_CONVERSATIONS_REQUEST_TIMEOUT_SECONDS": "2.5"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TAP_CONVERSATIONS_ONQ_TOKEN_LIFETIME_SECONDS", "900")
    tap = TapConversations(config={}, parse_env_config=True, setup_mapper=False)
    assert tap.config["request_timeout_seconds"] == 2.5
    assert tap.config["onq"]["token_lifetime_seconds"] == 900
    assert tap.config["onq"]["api_key"] == "kid-1"
