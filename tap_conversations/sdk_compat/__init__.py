"""Every use of private (`_name`) or `@final` singer-sdk surface, in one package.

Each entry says why no public hook serves and is guarded by a test (`tests/test_sdk_compat*.py`)
that fails when an SDK upgrade renames, stops calling or changes what is overridden or relied
on here. The rest of the tap only uses the SDK's public API, through what this package exports:

- `stream.CompatStream`: per-child-sync overrides (SCHEMA once per run, and again when
  `schema_evolution` grew it; starting bookmarks), bookmark moves, checkpoints; the record
  boundary a stop waits for.
- `tap.CompatTap`: the run loop (`Tap.sync_all`, one group per provider), SIGTERM/SIGINT
  (cooperative cancellation), a reader that goes away; `tap.cli_config`, the CLI's parsed
  `--config`.
- `chatter`: SDK log lines demoted to DEBUG.
- `env.NestedEnvConfig`: `--config ENV` with nested provider settings.
"""

from __future__ import annotations

from tap_conversations.sdk_compat.chatter import (
    CHILD_SDK_CHATTER,
    SDK_CHATTER,
    SDK_UNHANDLED_ERROR,
    DemoteSdkChatter,
    install_sdk_log_filters,
)
from tap_conversations.sdk_compat.env import NestedEnvConfig, nested_env_config
from tap_conversations.sdk_compat.stream import CompatStream
from tap_conversations.sdk_compat.tap import (
    GRACE_SECONDS,
    CompatTap,
    GroupFailure,
    cli_config,
    exit_soon,
)

__all__ = [
    "CHILD_SDK_CHATTER",
    "GRACE_SECONDS",
    "SDK_CHATTER",
    "SDK_UNHANDLED_ERROR",
    "CompatStream",
    "CompatTap",
    "DemoteSdkChatter",
    "GroupFailure",
    "NestedEnvConfig",
    "cli_config",
    "exit_soon",
    "install_sdk_log_filters",
    "nested_env_config",
]
