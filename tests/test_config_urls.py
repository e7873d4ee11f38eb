"""A configured URL that holds a secret (credentials or a query string) is refused at config
time, by the tap, `tap-conversations-check` and the Airbyte source alike, and the secret is
never shown."""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from tap_conversations.settings import url_problems
from tests.helpers import run_cli

if t.TYPE_CHECKING:
    from sandbox import Sandbox

BIN = Path(sys.executable).parent
SECRET = "S3cr3tPa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"http://user:{SECRET}@127.0.0.1:9/pe", "holds credentials (user:password@, not shown)"),
        (f"http://{SECRET}@127.0.0.1:9/pe", "holds credentials"),
        (
            f"http://127.0.0.1:9/onq?code={SECRET}",
            "'http://127.0.0.1:9/onq' is followed by a query string or fragment (not shown)",
        ),
        (f"http://127.0.0.1:9/onq#{SECRET}", "is followed by a query string or fragment"),
        ("ftp://127.0.0.1/onq", "'ftp://127.0.0.1/onq' is not an http(s) URL"),
    ],
)
def test_a_url_that_cannot_be_a_base_is_named_without_its_secret(url: str, expected: str) -> None:
    problems = url_problems("onq.api_url", url)
    assert len(problems) == 1
    assert problems[0].startswith("onq.api_url: ")
    assert expected in problems[0]
    assert SECRET not in problems[0]


def test_a_plain_base_url_is_fine() -> None:
    assert url_problems("onq.api_url", "https://api.onq.io/api/external/") == []


def configs(sandbox: Sandbox) -> list[dict[str, t.Any]]:
    base = sandbox.tap_config()
    pe, onq = base["perform_engage"], base["onq"]
    with_user = pe["api_url"].replace("http://", f"http://u:{SECRET}@")
    return [
        {"perform_engage": {**pe, "api_url": with_user}},
        {"onq": {**onq, "api_url": onq["api_url"] + f"?code={SECRET}"}},
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["userinfo", "query"])
def test_every_entry_point_refuses_it_without_showing_it(
    sandbox: Sandbox, tmp_path: Path, which: int
) -> None:
    config = configs(sandbox)[which]
    setting = "perform_engage.api_url" if which == 0 else "onq.api_url"
    tap = run_cli([], config, tmp_path)
    assert tap.returncode == 1
    assert setting in tap.stderr
    assert "Traceback" not in tap.stderr
    assert tap.stdout == ""

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    check = subprocess.run(
        [str(BIN / "tap-conversations-check"), "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode != 0
    assert setting in check.stdout + check.stderr

    source = subprocess.run(
        [str(BIN / "source-conversations"), "check", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setting in source.stdout
    assert '"FAILED"' in source.stdout
    for completed in (tap, check, source):
        assert SECRET not in completed.stdout + completed.stderr
    assert sandbox.requests == []  # refused before any request
