"""The README's install blocks and docs/airbyte.md's commands, run as written (end to end).

A new user's paths: the tap added to an existing Meltano project by its inline definition (the
git `pip_url` replaced by a checkout's path: these machines reach no git host), installed with
pip into a venv of its own, and run as an Airbyte source. The blocks are found by
tests/test_readme_commands.py's registry, which also checks that every bash block of the README
and docs/ is run by some test.
"""

from __future__ import annotations

import json
import re
import subprocess
import typing as t
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.airbyte_messages import configured_catalog, expected_records, run_source
from tests.meltano_project import ROOT, VENV_BIN, clean_env, copy_project
from tests.test_readme_commands import Project, block, expected_counts, sandbox_values

if t.TYPE_CHECKING:
    from sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def readme_extractor_entry() -> dict[str, t.Any]:
    """The README's `meltano.yml` lines for an existing project (a list of one extractor)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    (entry,) = [yaml.safe_load(b) for b in blocks if "name: tap-conversations" in b]
    return t.cast("dict[str, t.Any]", entry[0])


def test_an_existing_meltano_project_installs_and_runs_the_tap_as_the_readme_says(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    plugins = yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"]
    (ours,) = plugins["extractors"]
    readme = readme_extractor_entry()
    # The README's lines are this repository's entry, but for where pip installs it from.
    assert {k: v for k, v in readme.items() if k != "pip_url"} == {
        k: ours[k] for k in readme if k != "pip_url"
    }
    assert readme["pip_url"].startswith("git+https://")
    checkout = copy_project(tmp_path / "tap-conversations")  # the git URL's stand-in
    root = tmp_path / "existing-project"
    root.mkdir()
    jsonl = next(p for p in plugins["loaders"] if p["name"] == "target-jsonl")
    project_yml = {
        "project_id": "an-existing-project",
        "default_environment": "dev",
        "environments": [{"name": "dev"}],
        "plugins": {
            "extractors": [{**ours, "pip_url": str(checkout)}],
            "loaders": [jsonl],  # the project's own loader, installed before the tap was added
        },
    }
    (root / "meltano.yml").write_text(yaml.safe_dump(project_yml, sort_keys=False))
    project = Project(root)
    project.sandbox = sandbox
    project.values = sandbox_values(sandbox)
    meltano = str(VENV_BIN / "meltano")
    subprocess.run(
        [meltano, "install", "loader", "target-jsonl"],
        cwd=root,
        env=project.env,
        check=True,
        capture_output=True,
        timeout=600,
    )

    project.run("add_to_project")
    project.configure("onq")
    completed = project.run("run")
    assert completed.stdout.splitlines() == ["onq (onQ): ok"]
    assert project.jsonl_counts() == expected_counts(sandbox, "onq")
    secret = sandbox.tap_config()["onq"]["api_secret"]
    assert secret not in (root / "meltano.yml").read_text()
    assert secret in (root / ".env").read_text()  # a `sensitive` setting: kept in .env


def test_pip_installs_the_three_commands_into_a_venv_of_their_own(tmp_path: Path) -> None:
    copy_project(tmp_path / "tap-conversations")  # "a checkout of this repository"
    completed = subprocess.run(
        ["bash", "-e", "-c", block("pip")],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[-1].startswith("tap-conversations v0.1.0")
    for command in ("tap-conversations", "tap-conversations-check", "source-conversations"):
        assert (tmp_path / ".venv-tap" / "bin" / command).exists(), command
    spec = subprocess.run(
        [str(tmp_path / ".venv-tap" / "bin" / "source-conversations"), "spec"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert spec.returncode == 0, spec.stderr[-2000:]  # the protocol models came with the tap
    assert json.loads(spec.stdout)["type"] == "SPEC"


def test_the_airbyte_commands_run_as_written(sandbox: Sandbox, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sandbox.tap_config()))
    discovered = run_source(["discover", "--config", str(config)])
    (catalog,) = [m["catalog"] for m in discovered.messages if m["type"] == "CATALOG"]
    (tmp_path / "configured_catalog.json").write_text(json.dumps(configured_catalog(catalog)))

    completed = subprocess.run(
        ["bash", "-e", "-c", block("airbyte")],
        cwd=tmp_path,
        env=clean_env(TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS="0"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    printed = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [m["type"] for m in printed] == ["SPEC", "CONNECTION_STATUS"]
    assert printed[1]["connectionStatus"]["status"] == "SUCCEEDED"
    written = [json.loads(line) for line in (tmp_path / "catalog.json").read_text().splitlines()]
    assert [m["type"] for m in written if m["type"] != "LOG"] == ["CATALOG"]
    messages = (tmp_path / "messages.jsonl").read_text().splitlines()
    counts = Counter(
        m["record"]["stream"] for m in map(json.loads, messages) if m["type"] == "RECORD"
    )
    assert counts == {stream: len(rows) for stream, rows in expected_records(sandbox).items()}
