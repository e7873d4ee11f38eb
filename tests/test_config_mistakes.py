"""Config mistakes as a user makes them: typos, missing or broken files, `--test` and
`--discover` with a bad config. Each ends in one line per problem and exit code 1 (or, for an
unknown key the run can do without, one warning naming the closest setting)."""

from __future__ import annotations

import json
import typing as t

import pytest

from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from sandbox import Sandbox

DEFAULT_LEVEL = {"TAP_CONVERSATIONS_LOGLEVEL": "INFO", "LOGLEVEL": "INFO"}
DEBUG_LEVEL = {"TAP_CONVERSATIONS_LOGLEVEL": "DEBUG"}


def lines_at(completed: subprocess.CompletedProcess[str], level: str) -> list[str]:
    return [line for line in completed.stderr.splitlines() if f"| {level} " in line]


def run_with_files(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, None, tmp_path, env={**DEFAULT_LEVEL, **(env or {})})


def test_unknown_keys_at_any_level_are_named_with_the_closest_setting(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    onq = {**sandbox.tap_config()["onq"], "page_sise": 10}
    config = {"onq": onq, "start_dat": "2024-01-01T00:00:00Z", "whatever": 1}
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 0, completed.stderr
    warnings = lines_at(completed, "WARNING")
    assert any(
        "start_dat: not a setting" in w and "did you mean 'start_date'?" in w for w in warnings
    ), warnings
    assert any("did you mean 'onq.page_size'?" in w for w in warnings), warnings
    assert any("whatever: not a setting" in w and "did you mean" not in w for w in warnings)
    assert len(warnings) == 3


def test_a_misspelt_provider_object_fails_with_the_hint(tmp_path: Path) -> None:
    config = {"perfom_engage": {"api_url": "https://x", "username": "u", "api_key": "k"}}
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert "perfom_engage: not a setting of this tap (did you mean 'perform_engage'?)" in (
        completed.stderr
    )


def test_a_misspelt_required_key_is_named_next_to_the_missing_one(tmp_path: Path) -> None:
    config = {"perform_engage": {"api_url": "https://x", "usename": "u", "api_key": "k"}}
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert (
        "perform_engage.username: required, not set ('perform_engage.usename' is set)"
        in completed.stderr
    )


def test_config_validation_failure_is_not_announced_twice(tmp_path: Path) -> None:
    completed = run_cli([], {"max_retries": "five"}, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert "Config validation failed" not in completed.stderr
    assert (
        sum("max_retries: 'five' is not of type" in line for line in lines_at(completed, "ERROR"))
        == 1
    )


@pytest.mark.parametrize(
    ("write", "flag", "expected"),
    [
        (None, "--config", "config file '{path}': no such file"),
        ('{\n  "onq": {},\n}', "--config", "config file '{path}': invalid JSON at line 3 column 1"),
        ("[1, 2]", "--config", "config file '{path}': expected a JSON object, got list"),
        # state_input.py words the state file's problems (its path may be shortened there)
        (None, "--state", "cannot be read: [Errno 2] No such file or directory"),
        ('{"bookmarks": ', "--state", "is not valid JSON (Expecting value at line 1, column 15)"),
        ("{}{", "--catalog", "catalog file '{path}': invalid JSON at line 1 column 3"),
    ],
)
def test_a_missing_or_broken_file_is_one_line_naming_it(
    tmp_path: Path, write: str | None, flag: str, expected: str
) -> None:
    path = tmp_path / "input.json"
    if write is not None:
        path.write_text(write)
    args = [flag, str(path)]
    if flag != "--config":
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"respondent": {"api_key": "k", "api_secret": "s"}}))
        args += ["--config", str(config)]
    completed = run_with_files(args, tmp_path)
    assert completed.returncode == 1
    errors = lines_at(completed, "ERROR")
    assert len(errors) == 1, completed.stderr
    assert expected.format(path=path) in errors[0]
    assert f"{flag[2:]} file '" in errors[0]
    assert "Traceback" not in completed.stderr
    assert "Usage:" not in completed.stderr
    assert completed.stdout == ""


def test_the_traceback_of_a_file_problem_is_shown_at_debug(tmp_path: Path) -> None:
    completed = run_with_files(["--config", str(tmp_path / "nope.json")], tmp_path, DEBUG_LEVEL)
    assert completed.returncode == 1
    assert "Traceback" in completed.stderr
    assert "no such file" in completed.stderr


def test_test_mode_with_an_empty_config_fails_like_a_sync(tmp_path: Path) -> None:
    completed = run_cli(["--test"], {}, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert "No provider configured" in completed.stderr
    assert "KeyError" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_test_mode_with_an_invalid_config_fails(tmp_path: Path) -> None:
    config = {"perform_engage": {"api_url": "pro.weekly10.net", "username": "u"}}
    completed = run_cli(["--test"], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert "perform_engage.api_key: required, not set" in completed.stderr


def test_test_mode_with_rejected_credentials_is_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    config = {"onq": {**sandbox.tap_config()["onq"], "api_secret": "not-the-secret"}}
    completed = run_cli(["--test"], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    errors = lines_at(completed, "ERROR")
    assert len(errors) == 1, completed.stderr
    assert "check onq credentials" in errors[0]


def test_discovery_with_an_invalid_config_fails_like_a_sync(tmp_path: Path) -> None:
    config = {"respondent": {"api_key": "k"}, "max_concurrency": 0}
    completed = run_cli(["--discover"], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    assert "respondent.api_secret: required, not set" in completed.stderr
    assert "max_concurrency: 0 is less than the minimum of 1" in completed.stderr
    assert completed.stdout == ""


def test_a_state_file_is_still_read(sandbox: Sandbox, tmp_path: Path) -> None:
    config = {"onq": sandbox.tap_config()["onq"]}
    first = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    state = parse_messages(first.stdout)[-1]["value"]
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    second = run_cli(["--state", str(state_file)], config, tmp_path, env=DEFAULT_LEVEL)
    assert second.returncode == 0, second.stderr
    records = [m for m in parse_messages(second.stdout) if m["type"] == "RECORD"]
    assert len(records) < len([m for m in parse_messages(first.stdout) if m["type"] == "RECORD"])
