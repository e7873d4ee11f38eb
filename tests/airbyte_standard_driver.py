"""Runs inside the airbyte-cdk environment that `tests/test_airbyte_standard_suite.py` creates.

airbyte-cdk's standard connector tests (`SourceTestSuiteBase`, what `airbyte-cdk connector
test` runs) drive a CDK `Source` object in-process through `entrypoint_wrapper._run_command`.
`source-conversations` is an executable, not a CDK `Source`, so that one function is replaced
here by one that runs the executable with the same arguments and hands its stdout lines back as
the job's output; a non-zero exit is the job's uncaught error, as an exception would be
in-process. Everything else (scenarios from `acceptance-test-config.yml`, the assertions) is
the CDK's own. This file imports `airbyte_cdk`, which is not installed in the tap's own
environment: it is not a test module; the outer test copies it into the connector directory.
"""

from __future__ import annotations

import os
import subprocess
import typing as t

from airbyte_cdk.test import entrypoint_wrapper
from airbyte_cdk.test.standard_tests import SourceTestSuiteBase

pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]

EXECUTABLE = os.environ["SOURCE_CONVERSATIONS"]


class ExitedWithError(Exception):
    """The executable exited non-zero."""


def run_executable(
    source: t.Any, args: list[str], *_: t.Any, **__: t.Any
) -> entrypoint_wrapper.EntrypointOutput:
    done = subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    error = ExitedWithError(f"exit code {done.returncode}") if done.returncode else None
    return entrypoint_wrapper.EntrypointOutput(
        messages=lines, uncaught_exception=error, command=[EXECUTABLE, *args], stderr=done.stderr
    )


entrypoint_wrapper._run_command = run_executable  # the one place the suite runs a job


class SourceConversations:
    """What the suite takes for a connector: only its presence matters, jobs run the
    executable."""

    def spec(self, logger: t.Any) -> t.Any:
        raise NotImplementedError


class TestSourceConversations(SourceTestSuiteBase):
    connector = SourceConversations
