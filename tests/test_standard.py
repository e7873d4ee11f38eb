"""The SDK's standard tap tests (CLI, discovery, every stream, schemas, keys, final state).

The test class is built with a fixed config at import time, so the sandbox it points at is
started here, at import, and stopped when the module's tests are done.
"""

from __future__ import annotations

import typing as t

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from sandbox import Sandbox, SandboxSettings
from tap_conversations.tap import TapConversations

SANDBOX = Sandbox(
    SandboxSettings(
        pe_conversations=25,
        pe_plans=6,
        pe_max_limit=10,
        onq_conversations=30,
        respondent_conversations=20,
    )
)
SANDBOX.start()


@pytest.fixture(scope="module", autouse=True)
def _stop_sandbox() -> t.Iterator[None]:
    yield
    SANDBOX.stop()


TestTapConversations = get_tap_test_class(
    TapConversations,
    config={**SANDBOX.tap_config(), "start_date": "2000-01-01T00:00:00Z"},
    suite_config=SuiteConfig(max_records_limit=None),
)
