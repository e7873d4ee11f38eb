"""Guards for what `tap_conversations/sdk_compat/` relies on in the SDK's logging, sync loop
and CLI. Each test fails when an SDK upgrade changes what an override replaces or matches."""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
import typing as t

import click
import pytest
from singer_sdk import Tap, metrics
from singer_sdk.helpers import _state
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams.core import Stream

from tap_conversations import sdk_compat
from tap_conversations.sdk_compat import (
    CHILD_SDK_CHATTER,
    SDK_CHATTER,
    SDK_UNHANDLED_ERROR,
    DemoteSdkChatter,
    cli_config,
)
from tap_conversations.tap import TapConversations

if t.TYPE_CHECKING:
    from sandbox import Sandbox


def calls_in(function: t.Callable[..., t.Any]) -> set[str]:
    """Names of the methods and functions `function` calls (`self.x()`, `stream.y()`, `z()`)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
            elif isinstance(node.func, ast.Name):
                names.add(node.func.id)
    return names


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.templates: list[str] = []

    def handle(self, record: logging.LogRecord) -> bool:
        # Before any filter: the tap's secret redaction replaces `msg` with the message.
        self.templates.append(str(record.msg))
        return True

    def emit(self, record: logging.LogRecord) -> None:
        pass


def test_the_sdk_still_logs_each_demoted_message(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The templates are matched exactly: a reworded SDK message would escape to INFO/ERROR.
    # At DEBUG every demoted message still comes through; collect what a run and --test log.
    root = logging.getLogger()
    collect = Collect()
    monkeypatch.setattr(root, "level", logging.DEBUG)
    root.handlers.insert(0, collect)
    try:
        config = {
            "perform_engage": sandbox.tap_config()["perform_engage"],
            "respondent": sandbox.tap_config()["respondent"],
        }
        with open("/dev/null", "w") as devnull, monkeypatch.context() as patch:
            patch.setattr("sys.stdout", devnull)
            TapConversations(config=config).sync_all()
            TapConversations(config=config).run_connection_test()
    finally:
        root.removeHandler(collect)
    missing = (SDK_CHATTER | CHILD_SDK_CHATTER | {SDK_UNHANDLED_ERROR}) - set(collect.templates)
    assert not missing


def test_stream_sync_logs_through_stream_log() -> None:
    # `CompatStream.log` lowers the level before a record is built; that only works while
    # `Stream.sync` logs its "Beginning sync" and unhandled-error lines through `self.log`.
    source = inspect.getsource(Stream.sync)
    assert "self.log(log_msg, *log_args)" in source
    assert "An unhandled error occurred while syncing '%s'" in source
    assert "level=logging.ERROR" in source
    assert "level" in inspect.signature(Stream.log).parameters


def test_unsorted_warning_is_logged_on_the_singer_sdk_logger() -> None:
    assert _state.logger.name == "singer_sdk"


def test_metrics_are_logged_at_info_on_the_metrics_logger() -> None:
    # `metrics_log_level` works by setting this logger's level around INFO.
    assert metrics.get_metrics_logger().name == "singer_sdk.metrics"
    assert "logger.info(" in inspect.getsource(metrics.log)


def test_tap_sync_all_still_does_what_compat_tap_replicates() -> None:
    # `CompatTap.sync_all` replaces the SDK's @final loop; if the SDK's loop gains a step,
    # this fails and the replacement must be updated.
    assert calls_in(Tap.sync_all) == {
        "_reset_state_progress_markers",
        "_set_compatible_replication_methods",
        "write_state",
        "values",
        "type",
        "info",
        "debug",
        "sync",
        "finalize_state_progress_markers",
        "log_sync_costs",
    }
    assert getattr(Tap.sync_all, "__final__", False)
    for name in ("_reset_state_progress_markers", "_set_compatible_replication_methods"):
        assert callable(getattr(Tap, name))
    assert "state_writer" in dir(Tap)


def test_starting_replication_value_is_written_once_per_context() -> None:
    # `CompatStream._write_starting_replication_value` writes it once per run for children
    # with one stream-level state; the SDK calls it per context from `_sync_records`.
    assert "_write_starting_replication_value" in calls_in(Stream._sync_records)
    assert "write_starting_replication_value" in calls_in(Stream._write_starting_replication_value)


def test_cli_config_reads_the_sdks_parsed_config_input() -> None:
    command = TapConversations.get_singer_command()
    context = click.Context(command)
    config_option = next(p for p in command.params if p.name == "config")
    parsed = PluginBase.cb_config(context, t.cast("click.Option", config_option), ("ENV",))
    context.params["config"] = parsed
    assert cli_config(context) == ({}, True)
    assert cli_config(click.Context(command)) == ({}, False)


def test_demoted_chatter_is_dropped_at_info_and_kept_at_debug() -> None:
    logger = logging.getLogger("tap-conversations-guard")
    chatter = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "Added '%s' as child stream to '%s'",
        ("a", "b"),
        None,
    )
    other = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%s", ("x",), None)
    logger.setLevel(logging.INFO)
    assert not DemoteSdkChatter().filter(chatter)
    assert DemoteSdkChatter().filter(other)
    logger.setLevel(logging.DEBUG)
    assert DemoteSdkChatter().filter(chatter)
    assert chatter.levelname == "DEBUG"


def test_child_syncs_build_no_log_record_at_info(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "No per-child log record is built unless its level is enabled": count the records
    # made on the child stream loggers and the metrics logger during a sync at INFO.
    made: list[str] = []
    real = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: t.Any, **kwargs: t.Any) -> logging.LogRecord:
        made.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    logging.getLogger().setLevel(logging.INFO)
    tap = TapConversations(config={"perform_engage": sandbox.tap_config()["perform_engage"]})
    with open("/dev/null", "w") as devnull, monkeypatch.context() as patch:
        patch.setattr("sys.stdout", devnull)
        tap.sync_all()
    per_child = [name for name in made if name.endswith(("_details", "singer_sdk.metrics"))]
    assert len(per_child) <= 2, per_child  # at most once per child stream and run
    assert sdk_compat.CompatStream.log is not Stream.log


@pytest.mark.parametrize("name", ["_write_starting_replication_value"])
def test_the_private_stream_overrides_keep_the_sdks_signature(name: str) -> None:
    assert name in vars(sdk_compat.CompatStream), name
    assert name in vars(Stream), f"the SDK no longer defines Stream.{name}"
    sdk = inspect.signature(getattr(Stream, name))
    ours = inspect.signature(getattr(sdk_compat.CompatStream, name))
    assert list(sdk.parameters) == list(ours.parameters), name
