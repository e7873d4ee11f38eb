"""Log lines as Airbyte LOG messages on stdout (the protocol has no other channel for them)."""

from __future__ import annotations

import logging
import os
import typing as t

from tap_conversations.airbyte.protocol import MessageOutput, log_message, models

#: The tap's own log-level variable (the SDK's convention), then the generic one.
LOG_LEVEL_VARIABLES = ("TAP_CONVERSATIONS_LOGLEVEL", "LOGLEVEL")


def _airbyte_level(levelno: int) -> t.Any:
    if levelno >= logging.CRITICAL:
        return models.Level.FATAL
    if levelno >= logging.ERROR:
        return models.Level.ERROR
    if levelno >= logging.WARNING:
        return models.Level.WARN
    if levelno >= logging.INFO:
        return models.Level.INFO
    return models.Level.DEBUG


class AirbyteLogHandler(logging.Handler):
    """Each log record becomes one LOG message.

    It is installed on the root logger before the tap is built, so the tap's secret-redacting
    filter (added to every root handler) applies to it; `redact` runs any other text, such as
    an error that ends the run, through the same filters.
    """

    def __init__(self, output: MessageOutput) -> None:
        super().__init__()
        self.output = output
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.output.write(log_message(_airbyte_level(record.levelno), text))
        except Exception:  # logging must never end the run
            self.handleError(record)

    def redact(self, text: str) -> str:
        """`text` as a log line would show it: secrets replaced."""
        record = logging.LogRecord("airbyte", logging.ERROR, __file__, 0, text, None, None)
        self.filter(record)
        return record.getMessage()


def configured_level() -> str:
    for variable in LOG_LEVEL_VARIABLES:
        if value := os.environ.get(variable):
            return value.upper()
    return "INFO"


def install(output: MessageOutput) -> AirbyteLogHandler:
    """Route every log record (and Python warnings) to LOG messages, and nothing to stderr."""
    handler = AirbyteLogHandler(output)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(configured_level())
    logging.captureWarnings(True)
    return handler


def debug_enabled() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)
