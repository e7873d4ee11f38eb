"""The Airbyte image's Dockerfile, checked as far as this machine allows (it has no Docker).

The labels and entrypoint are read from the file; the build stage's install command is run
as written (with its target directory moved into a temporary one), and the `source-conversations`
it installs must answer `spec` without any dev dependency present.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.airbyte_messages import validate

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_labels_and_entrypoint_name_the_source_and_its_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    labels = " ".join(rest for word, rest in instructions() if word == "LABEL")
    assert 'io.airbyte.name="airbyte/source-conversations"' in labels
    assert f'io.airbyte.version="{project["version"]}"' in labels
    entrypoint = [json.loads(rest) for word, rest in instructions() if word == "ENTRYPOINT"]
    assert entrypoint == [["source-conversations"]]
    assert project["scripts"]["source-conversations"] == "tap_conversations.airbyte.cli:main"


@pytest.mark.e2e
def test_the_build_stage_installs_a_working_source_and_no_group(tmp_path: Path) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
    assert uv, "uv is needed (scripts/test.sh installs it)"
    context = tmp_path / "src"
    context.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(
        ROOT / "tap_conversations",
        context / "tap_conversations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (install,) = [rest for word, rest in instructions() if word == "RUN" and "uv export" in rest]
    venv = tmp_path / "venv"
    command = install.replace("/opt/venv", str(venv))
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=context,
        env={**os.environ, "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    spec = subprocess.run(
        [str(venv / "bin" / "source-conversations"), "spec"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert spec.returncode == 0, spec.stderr[-2000:]
    (line,) = spec.stdout.splitlines()
    message = json.loads(line)
    validate(message)
    assert message["type"] == "SPEC"
    for dev_tool in ("pytest", "meltano", "mypy", "dagster"):
        found = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {dev_tool}"],
            capture_output=True,
            check=False,
        )
        assert found.returncode != 0, f"{dev_tool} is installed in the image"
