"""SDK log messages that say nothing a user acts on in a normal run, logged at DEBUG."""

from __future__ import annotations

import logging

#: SDK log messages (their `%`-templates) that say nothing a user acts on in a normal run:
#: they are logged at DEBUG instead. Per child sync ("Beginning sync ...") they would be
#: thousands of lines; the others repeat once per stream what the README says once.
SDK_CHATTER: frozenset[str] = frozenset(
    {
        "Beginning sync of '%s' in %s mode",
        "Beginning sync of '%s' in %s mode with context keys: %s",
        "Added '%s' as child stream to '%s'",
        "Skipping parse of env var settings...",
    }
)
#: Logged by the SDK's state manager on a child stream's logger: for a child that follows its
#: parent, the bookmark it names is not where the child starts (the parent decides).
STARTING_BOOKMARK = "Starting incremental sync of '%s' with bookmark value: %s"
CHILD_SDK_CHATTER: frozenset[str] = frozenset({STARTING_BOOKMARK})
#: Logged at ERROR by the SDK's `Stream.sync` before it re-raises any error, including the
#: record limit `--test` stops a stream with on purpose. The tap logs its own one line for a
#: real failure (and a bug keeps its traceback), so this is DEBUG.
SDK_UNHANDLED_ERROR = "An unhandled error occurred while syncing '%s'"


class DemoteSdkChatter(logging.Filter):
    """Logs the given SDK messages at DEBUG, i.e. drops them unless DEBUG is on.

    For records the SDK builds on loggers it owns (`singer_sdk`, the tap logger) once per
    stream or run; per-child messages never reach a filter (see `CompatStream.log`).
    """

    def __init__(self, messages: frozenset[str] = SDK_CHATTER) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and (
            record.msg in self.messages or _no_bookmark_yet(record)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _no_bookmark_yet(record: logging.LogRecord) -> bool:
    """The SDK's starting-bookmark line of a first run ("bookmark value: None") says nothing
    the tap's "<provider>: syncing <streams>" line does not; a bookmark to resume from stays."""
    args = record.args
    return record.msg == STARTING_BOOKMARK and isinstance(args, tuple) and args[-1:] == (None,)


def install_sdk_log_filters(tap_logger: logging.Logger) -> None:
    """Attach `DemoteSdkChatter` (once) to the loggers the SDK logs its chatter on."""
    for logger in (tap_logger, logging.getLogger("singer_sdk")):
        if not any(isinstance(f, DemoteSdkChatter) for f in logger.filters):
            logger.addFilter(DemoteSdkChatter())
