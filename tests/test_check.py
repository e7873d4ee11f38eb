"""`check`: one authenticated request per configured provider, against the sandbox.

In-process through `check_providers`, from the command line (`tap-conversations-check`) and as
the Meltano plugin command `meltano invoke tap-conversations:check`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from sandbox import FaultSettings
from tap_conversations.check import ProviderCheck, check_providers
from tests.meltano_project import clean_env

if t.TYPE_CHECKING:
    from sandbox import Sandbox
    from tests.meltano_project import MeltanoProject

CHECK = str(Path(sys.executable).parent / "tap-conversations-check")


def with_setting(config: dict[str, t.Any], provider: str, **values: t.Any) -> dict[str, t.Any]:
    return {**config, provider: {**config[provider], **values}}


def test_every_configured_provider_is_ok_with_one_request_each(sandbox: Sandbox) -> None:
    sandbox.reset_log()
    results = check_providers(sandbox.tap_config())
    assert results == [
        ProviderCheck("perform_engage", "Perform & Engage 365", ok=True, message="ok"),
        ProviderCheck("onq", "onQ", ok=True, message="ok"),
        ProviderCheck("respondent", "Respondent", ok=True, message="ok"),
    ]
    assert len(sandbox.requests) == 3


def test_only_configured_providers_are_checked(sandbox: Sandbox) -> None:
    results = check_providers({"onq": sandbox.tap_config()["onq"]})
    assert [(r.provider, r.ok) for r in results] == [("onq", True)]
    assert check_providers({"start_date": "2024-01-01T00:00:00Z"}) == []


def test_rejected_credentials_name_the_provider_and_settings_never_the_secret(
    sandbox: Sandbox,
) -> None:
    config = sandbox.tap_config()
    config = with_setting(config, "perform_engage", api_key="pe-wrong-key-0001")
    config = with_setting(config, "onq", api_secret="onq-wrong-secret-0002-padded-to-32-bytes")
    by_provider = {r.provider: r for r in check_providers(config)}
    assert not by_provider["perform_engage"].ok
    assert "HTTP 401" in by_provider["perform_engage"].message
    assert "perform_engage.api_key" in by_provider["perform_engage"].message
    assert not by_provider["onq"].ok
    assert "onq.api_secret" in by_provider["onq"].message
    assert by_provider["respondent"].ok
    for result in by_provider.values():
        assert "wrong" not in result.message
        assert "\n" not in result.message


def test_token_auth_with_a_wrong_key(sandbox: Sandbox) -> None:
    config = {
        "perform_engage": {
            **sandbox.tap_config()["perform_engage"],
            "auth_method": "token",
            "api_key": "pe-wrong-key-0003",
        }
    }
    (result,) = check_providers(config)
    assert not result.ok
    assert "obtainauthtoken" in result.message
    assert "perform_engage.api_key" in result.message
    assert "pe-wrong-key-0003" not in result.message


def test_a_wrong_url_points_at_api_url(sandbox: Sandbox) -> None:
    respondent = sandbox.tap_config()["respondent"]
    wrong_path = {"respondent": {**respondent, "api_url": respondent["api_url"] + "/v9"}}
    (result,) = check_providers(wrong_path)
    assert not result.ok
    assert "HTTP 404" in result.message
    assert result.message.endswith("check respondent.api_url")

    unreachable = {"respondent": {**respondent, "api_url": "http://127.0.0.1:9"}}
    (result,) = check_providers(unreachable)
    assert not result.ok
    assert "cannot reach http://127.0.0.1:9" in result.message
    assert "respondent.api_url" in result.message


def test_invalid_settings_are_reported_without_any_request(sandbox: Sandbox) -> None:
    sandbox.reset_log()
    config = {
        "onq": {"api_key": "k", "api_secret": "onq-secret-that-is-long", "issuer": "x"},
        "respondent": {**sandbox.tap_config()["respondent"], "page_size": "many"},
    }
    onq, respondent = check_providers(config)
    assert not onq.ok
    assert "audience" in onq.message  # named, whatever the wording
    assert "page_size" not in onq.message  # each provider's own problems only
    assert not respondent.ok
    assert "page_size" in respondent.message
    assert "audience" not in respondent.message
    assert sandbox.requests == []


def test_server_errors_say_to_try_again(sandbox_factory: t.Callable[..., Sandbox]) -> None:
    failing = sandbox_factory(faults=FaultSettings(rate=1.0, kinds=("500",)))
    (result,) = check_providers({"onq": failing.tap_config()["onq"]})
    assert not result.ok
    assert "HTTP 500" in result.message
    assert "again later" in result.message


# Command line and Meltano ---------------------------------------------------------------------


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHECK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_env(**(env or {})),
    )


def test_cli_prints_one_line_per_provider_and_exits_0_when_all_ok(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(sandbox.tap_config()))
    completed = run_check("--config", str(config_file))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "perform_engage (Perform & Engage 365): ok",
        "onq (onQ): ok",
        "respondent (Respondent): ok",
    ]
    assert completed.stderr == ""


def test_cli_reads_nested_settings_from_env_vars_and_fails_on_one_bad_provider(
    sandbox: Sandbox,
) -> None:
    env = {
        f"TAP_CONVERSATIONS_{provider}_{name}".upper(): str(value)
        for provider, values in sandbox.tap_config().items()
        for name, value in values.items()
    }
    env["TAP_CONVERSATIONS_RESPONDENT_API_SECRET"] = "respondent-wrong-secret-0004"
    completed = run_check("--config", "ENV", env=env)
    assert completed.returncode == 1
    lines = completed.stdout.splitlines()
    assert lines[:2] == ["perform_engage (Perform & Engage 365): ok", "onq (onQ): ok"]
    assert lines[2].startswith("respondent (Respondent): Respondent stream")
    assert "respondent.api_secret" in lines[2]
    assert "respondent-wrong-secret-0004" not in completed.stdout + completed.stderr


def test_cli_without_any_provider_fails(tmp_path: Path) -> None:
    completed = run_check("--config", "ENV")
    assert completed.returncode == 1
    assert "No provider configured" in completed.stderr


@pytest.mark.e2e
def test_meltano_invoke_check(meltano_project: MeltanoProject, sandbox: Sandbox) -> None:
    pe = sandbox.tap_config()["perform_engage"]
    meltano_project.set("tap-conversations", {f"perform_engage.{k}": v for k, v in pe.items()})
    completed = meltano_project.meltano("invoke", "tap-conversations:check")
    assert completed.stdout.splitlines() == ["perform_engage (Perform & Engage 365): ok"]

    meltano_project.set("tap-conversations", {"perform_engage.api_key": "pe-wrong-key-0005"})
    completed = meltano_project.meltano("invoke", "tap-conversations:check", ok=False)
    assert completed.returncode != 0
    assert "perform_engage (Perform & Engage 365):" in completed.stdout
    assert "perform_engage.api_key" in completed.stdout
    assert "pe-wrong-key-0005" not in completed.stdout + completed.stderr
