"""`source-conversations`: the tap as an Airbyte source (`spec`, `check`, `discover`, `read`).

Every line on stdout is an AirbyteMessage. A failure ends in one TRACE error (or, for `check`,
a FAILED CONNECTION_STATUS) with the same one-line reason the tap gives, secrets redacted; its
traceback is attached only when the log level is DEBUG. `read` then exits with code 1 (128 +
signum when SIGTERM or SIGINT cancelled it, see `cancellation`). A reader that goes away
(broken pipe) ends the command with one line on stderr, the only one it ever writes there.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import traceback
import typing as t
from pathlib import Path

from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_conversations.airbyte import catalog as translate
from tap_conversations.airbyte.cancellation import Cancellation, ReadCancelled
from tap_conversations.airbyte.logs import AirbyteLogHandler, debug_enabled, install
from tap_conversations.airbyte.protocol import (
    MessageOutput,
    connection_status_message,
    error_trace_message,
    models,
)
from tap_conversations.airbyte.writer import AirbyteMessageWriter
from tap_conversations.check import check_providers
from tap_conversations.discovery import describe_first_pages
from tap_conversations.errors import ReaderGone, Terminated
from tap_conversations.sdk_compat.tap import leave
from tap_conversations.state_input import StateInputError
from tap_conversations.tap import PROVIDERS, TapConversations

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

logger = logging.getLogger("source-conversations")

DISTRIBUTION = "tap-conversations"


class InputFileError(ValueError):
    """A --config, --catalog or --state file that cannot be read as JSON."""


def read_json(path: Path, what: str) -> t.Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        msg = f"cannot read the {what} file {path}: {error.strerror}"
        raise InputFileError(msg) from None
    except json.JSONDecodeError as error:
        msg = f"the {what} file {path} is not JSON ({error.msg}, line {error.lineno})"
        raise InputFileError(msg) from None


def one_line(error: BaseException) -> str:
    if isinstance(error, ConfigValidationError):
        problems = "; ".join(str(problem) for problem in error.errors or [])
        return f"{error}: {problems}" if problems and problems != str(error) else str(error)
    if isinstance(error, Terminated):
        return f"stopped by {error.signal_name}: the command was cancelled"
    if isinstance(error, SystemExit | KeyboardInterrupt):
        return "interrupted (SIGTERM or SIGINT)"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def failure_type(error: BaseException) -> t.Any:
    user_input = ConfigValidationError | translate.AirbyteInputError | InputFileError
    if isinstance(error, user_input | StateInputError):  # a state Airbyte kept is input too
        return models.FailureType.config_error
    if isinstance(error, ReadCancelled | Terminated | SystemExit | KeyboardInterrupt):
        return models.FailureType.transient_error
    return models.FailureType.system_error


def documentation_url() -> str | None:
    """The package's `Documentation` project URL, if it declares one."""
    try:
        urls = importlib.metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"documentation", "homepage"}:
            return str(url).strip()
    return None


class AirbyteTap(TapConversations):
    """The tap, telling its Airbyte writer when a provider's streams stop on an error.

    The tap runs providers as groups that fail independently; `after_failed_group` is its
    public hook for that moment, and the writer marks those streams INCOMPLETE at once.
    """

    @override
    def after_failed_group(self, group: str, streams: list[Stream], error: Exception) -> None:
        super().after_failed_group(group, streams, error)
        if isinstance(self.message_writer, AirbyteMessageWriter):
            self.message_writer.group_failed(stream.name for stream in streams)


class Source:
    """The four protocol commands over `TapConversations`."""

    def __init__(
        self, output: MessageOutput, log_handler: AirbyteLogHandler, cancellation: Cancellation
    ) -> None:
        self.output = output
        self.log_handler = log_handler
        self.cancellation = cancellation

    def tap(
        self, tap_class: type[TapConversations] = TapConversations, **kwargs: t.Any
    ) -> TapConversations:
        """A tap, with our signal handlers back in place (its constructor sets its own)."""
        tap = tap_class(**kwargs)
        self.cancellation.install(tap)
        return tap

    def spec(self) -> None:
        self.output.write(
            models.AirbyteMessage(
                type=models.Type.SPEC,
                spec=models.ConnectorSpecification(
                    connectionSpecification=translate.connection_specification(
                        TapConversations.config_jsonschema
                    ),
                    documentationUrl=documentation_url(),
                    supportsIncremental=True,
                ),
            )
        )

    def check(self, config: dict[str, t.Any]) -> None:
        """The tap's own connection check: one cheap authenticated request per provider."""

        with self.cancellation.held():  # short: one request per provider
            results = check_providers(config)  # config problems too, each on its line
        failed = [result for result in results if not result.ok]
        if not results:
            names = ", ".join(provider.key for provider in PROVIDERS)
            message = f"No provider configured: add at least one of {names}"
            self._connection_status(succeeded=False, message=message)
        elif failed:
            message = "; ".join(
                r.message if r.label in r.message else f"{r.label}: {r.message}" for r in failed
            )
            self._connection_status(succeeded=False, message=message)
        else:
            labels = ", ".join(result.label for result in results)
            self._connection_status(succeeded=True, message=f"Connected to {labels}")

    def _connection_status(self, *, succeeded: bool, message: str) -> None:
        self.output.write(
            connection_status_message(succeeded=succeeded, message=self.log_handler.redact(message))
        )

    def discover(self, config: dict[str, t.Any]) -> None:
        tap = self.tap(config=config, setup_mapper=False)  # as the tap's own `--discover`
        describe_first_pages(tap)  # docs/schema-evolution.md
        self.output.write(
            models.AirbyteMessage(
                type=models.Type.CATALOG, catalog=translate.airbyte_catalog(tap.catalog_dict)
            )
        )

    def read(self, config: dict[str, t.Any], configured_catalog: t.Any, state: t.Any) -> None:
        discovery = self.tap(config=config)
        if not isinstance(configured_catalog, dict):
            msg = "the configured catalog must be a JSON object with a 'streams' list"
            raise translate.AirbyteInputError(msg)
        configured = translate.configured_streams(configured_catalog)
        fresh = translate.full_refresh_streams(configured, translate.stream_parents(discovery))
        singer_state, dropped = translate.singer_state(state, fresh)
        asked_full = {stream.name for stream in configured if not stream.incremental}
        for name in dropped:
            if name not in asked_full:
                logger.info(
                    "Reading '%s' in full: a stream of its family is in full refresh mode", name
                )
        singer_catalog = translate.selected_catalog(discovery.catalog_dict, configured)
        writer = AirbyteMessageWriter(self.output, [stream.name for stream in configured])
        tap = self.tap(
            AirbyteTap,
            config=config,
            catalog=singer_catalog,
            state=singer_state,
            message_writer=writer,
        )
        writer.track(tap, singer_state)
        try:
            tap.sync_all()
        except BaseException:
            writer.finish(succeeded=False)
            raise
        writer.finish(succeeded=True)

    def fail(self, error: BaseException) -> None:
        """One TRACE error for a failure: the one-line reason, secrets redacted."""
        stack = None
        if debug_enabled():
            stack = self.log_handler.redact(
                "".join(traceback.format_exception(type(error), error, error.__traceback__))
            )
        message = self.log_handler.redact(one_line(error))
        self.output.write(error_trace_message(message, failure_type(error), stack))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="source-conversations",
        description="Perform & Engage 365, onQ and Respondent conversations as an Airbyte source",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("spec", help="print the connector specification")
    for name in ("check", "discover", "read"):
        command = commands.add_parser(name)
        command.add_argument("--config", type=Path, required=True)
        if name == "read":
            command.add_argument("--catalog", type=Path, required=True)
            command.add_argument("--state", type=Path)
    return parser


def run(args: argparse.Namespace, source: Source) -> None:
    if args.command == "spec":
        source.spec()
        return
    config = read_json(args.config, "config")
    if not isinstance(config, dict):
        msg = f"the config file {args.config} must hold a JSON object"
        raise InputFileError(msg)
    if args.command == "check":
        source.check(config)
    elif args.command == "discover":
        source.discover(config)
    else:
        state = read_json(args.state, "state") if args.state else None
        source.read(config, read_json(args.catalog, "catalog"), state)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    output = MessageOutput()
    cancellation = Cancellation(output)
    cancellation.install()
    source = Source(output, install(output), cancellation)
    try:
        try:
            run(args, source)
        except ReaderGone:
            raise
        except BaseException as error:  # every failure becomes a TRACE error
            source.fail(error)
            output.flush()
            if (code := cancellation.exit_code) is not None:
                leave(code)  # requests in flight on worker threads are not waited for
            return 1
        output.flush()
    except ReaderGone as gone:
        print(f"source-conversations: {gone}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
