"""airbyte-cdk's standard connector tests, run against `source-conversations`.

airbyte-cdk (with its own pinned dependencies) is not a dependency of the tap: the test builds
a throwaway environment for it with uv, once per run, as `test_airbyte_pyairbyte.py` does for
PyAirbyte. It lays out a connector directory (`metadata.yaml`, `acceptance-test-config.yml`, a
config pointing at the sandbox) with `airbyte_standard_driver.py`, which routes the suite's
jobs to the installed `source-conversations` executable, and runs the suite with that
environment's pytest. Its Docker-image tests (marked `image_tests`) are deselected: they build
the image, which needs a Docker daemon and registries these machines do not reach. Every other
test must pass or be skipped by the suite's own rules for the scenario.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from tests.airbyte_messages import SOURCE_EXECUTABLE, wrong_credentials

if t.TYPE_CHECKING:
    from sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

AIRBYTE_CDK = ("airbyte-cdk~=7.39", "pytest")
DRIVER = Path(__file__).with_name("airbyte_standard_driver.py")

METADATA = """\
data:
  connectorType: source
  definitionId: 4f1e8a2c-3b6d-4e9f-9a7c-2d5b8e1f0a63
  dockerImageTag: 0.1.0
  dockerRepository: airbyte/source-conversations
  name: Conversations
  connectorSubtype: api
  releaseStage: alpha
  license: MIT
metadataSpecVersion: "1.0"
"""

ACCEPTANCE = """\
connector_image: airbyte/source-conversations:dev
test_strictness_level: low
acceptance_tests:
  spec:
    tests:
      - config_path: secrets/config.json
  connection:
    tests:
      - config_path: secrets/config.json
        status: succeed
      - config_path: secrets/wrong.json
        status: failed
  discovery:
    tests:
      - config_path: secrets/config.json
  basic_read:
    tests:
      - config_path: secrets/config.json
"""


def build_environment(root: Path) -> Path:
    uv = os.environ.get("UV") or shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    python = root / "venv" / "bin" / "python"
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(root / "venv")],
        [uv, "pip", "install", "--quiet", "--python", str(python), *AIRBYTE_CDK],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=800, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    return python


def test_the_standard_suite_passes(sandbox: Sandbox, tmp_path: Path) -> None:
    python = build_environment(tmp_path)
    connector = tmp_path / "source-conversations"
    (connector / "secrets").mkdir(parents=True)
    (connector / "metadata.yaml").write_text(METADATA)
    (connector / "acceptance-test-config.yml").write_text(ACCEPTANCE)
    (connector / "secrets" / "config.json").write_text(json.dumps(sandbox.tap_config()))
    (connector / "secrets" / "wrong.json").write_text(json.dumps(wrong_credentials(sandbox)))
    shutil.copy(DRIVER, connector / "test_standard.py")
    scratch = tmp_path / "tmp"  # the suite writes each job's config there
    scratch.mkdir()
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-m",
            "not image_tests",
            "test_standard.py",
        ],
        cwd=connector,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
        env={
            **os.environ,
            "SOURCE_CONVERSATIONS": SOURCE_EXECUTABLE,
            "DO_NOT_TRACK": "1",
            "TMPDIR": str(scratch),
        },
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 7, report
    assert "failed" not in summary, report
    # what is skipped is only a command the scenario's section does not run
    for line in done.stdout.splitlines():
        if line.startswith("SKIPPED"):
            assert "does not run for scenario 'wrong'" in line, report
