"""Guards for every private or final SDK surface `tap_conversations.sdk_compat` touches.

Each test fails when an SDK upgrade renames, stops calling or changes what is overridden there,
so the upgrade is noticed here and not in a user's warehouse.
"""

from __future__ import annotations

import ast
import inspect
import typing as t
from pathlib import Path

import pytest
from singer_sdk import RESTStream, Stream, Tap
from singer_sdk.exceptions import ConfigValidationError

from tap_conversations import sdk_compat
from tap_conversations.tap import TapConversations
from tests.helpers import run_sync, sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox

DETAILS = "perform_engage_conversation_details"


def test_the_overridden_sdk_methods_still_exist_with_the_same_signatures() -> None:
    for name in (
        "_write_schema_message",
        "_write_starting_replication_value",
        "_increment_stream_state",
        "post_process",
    ):
        assert name in vars(sdk_compat.CompatStream), name
        assert name in vars(Stream), f"the SDK no longer defines Stream.{name}"
        sdk = inspect.signature(getattr(Stream, name))
        ours = inspect.signature(getattr(sdk_compat.CompatStream, name))
        assert list(sdk.parameters) == list(ours.parameters), name


def test_sync_all_is_still_final_so_the_override_stays_in_one_place() -> None:
    # If the SDK drops `@final`, the override can become an ordinary one (and leave here).
    assert getattr(Tap.sync_all, "__final__", False) is True


def test_the_sdk_calls_post_process_before_writing_each_record(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`post_process` is where a run asked to stop stops (`CompatTap.raise_if_stopping`): the
    SDK must call it for every record, list streams and children alike, before writing it."""
    calls: list[str] = []
    original = sdk_compat.CompatStream.post_process

    def counting(
        self: sdk_compat.CompatStream, row: dict[str, t.Any], context: t.Any = None
    ) -> t.Any:
        calls.append(self.name)
        return original(self, row, context)

    monkeypatch.setattr(sdk_compat.CompatStream, "post_process", counting)
    result = sync({k: sandbox.tap_config()[k] for k in ("perform_engage", "onq")})
    for name in ("perform_engage_conversations", DETAILS, "onq_conversations"):
        assert calls.count(name) == len(result.records(name)) > 0, name


def test_schema_is_written_once_per_stream_and_run(sandbox: Sandbox) -> None:
    result = sync({"perform_engage": sandbox.tap_config()["perform_engage"]})
    schemas = [m["stream"] for m in result.messages if m["type"] == "SCHEMA"]
    assert len(result.records(DETAILS)) == 40  # 40 parents, so 40 child syncs
    assert sorted(schemas) == sorted(set(schemas))
    assert DETAILS in schemas


def test_a_second_run_of_the_same_tap_writes_its_schemas_again(sandbox: Sandbox) -> None:
    tap = TapConversations(config={"onq": sandbox.tap_config()["onq"]})
    schema_counts = []
    for _ in range(2):
        messages = run_sync(tap).messages
        schema_counts.append(sum(m["type"] == "SCHEMA" for m in messages))
    assert schema_counts == [1, 1]


def test_records_carry_the_stream_version_of_activate_version(sandbox: Sandbox) -> None:
    plans = "perform_engage_conversation_plans"  # full table: the SDK versions it
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "emit_activate_version_messages": True,
    }
    result = sync(config)
    of_plans = [m for m in result.messages if m.get("stream") == plans]
    versions = {m["version"] for m in of_plans if m["type"] == "ACTIVATE_VERSION"}
    assert len(versions) == 1
    record_versions = {m.get("version") for m in of_plans if m["type"] == "RECORD"}
    assert record_versions == versions


def test_the_run_hooks_run_around_the_final_sync_all() -> None:
    tap = TapConversations(config={})
    with pytest.raises(ConfigValidationError, match="No provider configured"):
        tap.sync_all()


def test_private_sdk_modules_are_imported_only_in_sdk_compat() -> None:
    # The rule the package docstring states: outside `sdk_compat/`, only the SDK's public API.
    package = Path(sdk_compat.__file__).parent.parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if "sdk_compat" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith("singer_sdk") and any(p.startswith("_") for p in name.split("."))
            ]
    assert offenders == []
    assert any(path.name == "stream.py" for path in package.joinpath("sdk_compat").iterdir())


def private_sdk_names_touched() -> set[str]:
    """Private SDK methods, attributes and modules `sdk_compat` names (overrides included)."""
    from singer_sdk.plugin_base import PluginBase  # noqa: PLC0415

    package = Path(sdk_compat.__file__).parent
    found: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {
                    node.module
                    for part in node.module.split(".")
                    if node.module.startswith("singer_sdk") and part.startswith("_")
                }
            name = getattr(node, "attr", None) or getattr(node, "name", None)
            if (
                isinstance(name, str)
                and name.startswith("_")
                and not name.startswith("__")
                and any(name in dir(owner) for owner in (Tap, RESTStream, PluginBase))
            ):
                found.add(name)
    return found


def test_the_private_sdk_surface_is_this_list_and_no_longer() -> None:
    # Each entry's reason is beside its use in `sdk_compat`; a new one is added here on purpose.
    assert private_sdk_names_touched() == {
        "_handle_termination",  # exit codes 143/130, cooperative stop (tap.py)
        "_reset_state_progress_markers",  # `sync_all` does what the SDK's does (tap.py)
        "_set_compatible_replication_methods",  # idem
        "_write_schema_message",  # one SCHEMA per child stream and run (stream.py)
        "_write_starting_replication_value",  # once per run for one-state children
        "_increment_stream_state",  # this tap's bookmarks
        "_write_state_message",  # `checkpoint`
        "_env_var_config",  # `--config ENV` with nested settings (env.py)
    }


def test_what_sdk_compat_restates_of_the_sdk_still_holds() -> None:
    """Values sdk_compat writes out instead of importing them from private SDK modules."""
    from singer_sdk.helpers._state import PROGRESS_MARKERS  # noqa: PLC0415

    from tap_conversations.sdk_compat.stream import PROGRESS_MARKERS as OURS  # noqa: PLC0415
    from tap_conversations.tap import TapConversations  # noqa: PLC0415

    assert OURS == PROGRESS_MARKERS
    assert TapConversations._env_var_prefix == "TAP_CONVERSATIONS_"
