"""What the command line adds to the SDK's: every mistake a user must fix ends in one line.

- `read_json_file`: a config, state or catalog file that is missing, unreadable or not a JSON
  object is named with the problem (line and column for JSON).
- `one_line_failures`: around a sync, `--test` and `--discover`, a config problem, a provider
  failure or a bad file is logged as one line each and the process exits 1; the traceback is
  logged only at DEBUG (`TAP_CONVERSATIONS_LOGLEVEL=DEBUG`). Anything else is a bug and keeps
  its traceback (the SDK's excepthook logs it).
"""

from __future__ import annotations

import contextlib
import json
import typing as t
from pathlib import Path

import click
from singer_sdk.exceptions import ConfigValidationError

from tap_conversations.errors import ProviderError, ProvidersFailed

if t.TYPE_CHECKING:
    import logging


class FileProblem(Exception):
    """A file named on the command line cannot be used; the message is one line."""


def read_json_file(path: str, what: str) -> dict[str, t.Any]:
    """The JSON object in `path`; `what` ("config", "state", "catalog") names it in errors."""
    where = f"{what} file '{path}'"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileProblem(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"{where}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise FileProblem(f"{where}: not UTF-8 text") from None
    except OSError as error:
        raise FileProblem(f"{where}: cannot be read ({error.strerror})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"{where}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        raise FileProblem(msg) from None
    if not isinstance(value, dict):
        raise FileProblem(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def one_line_failures(logger: logging.Logger) -> t.Iterator[None]:
    """Turn the failures a user must act on into ERROR lines and exit code 1."""
    try:
        yield
    except ConfigValidationError as error:
        logger.debug("Traceback of the config problem below", exc_info=error)
        problems = [str(p) for p in error.errors] or [str(error)]
        noun = "problem" if len(problems) == 1 else "problems"
        logger.error("The tap config has %d %s; fix and run again:", len(problems), noun)
        for problem in problems:
            logger.error("  %s", problem)
        raise click.exceptions.Exit(1) from None
    except ProvidersFailed as error:
        logger.debug("Traceback of the failure below", exc_info=error)
        for line in error.lines():
            logger.error("%s", line)
        raise click.exceptions.Exit(1) from None
    except (ProviderError, FileProblem) as error:
        logger.debug("Traceback of the failure below", exc_info=error)
        logger.error("%s", error)
        raise click.exceptions.Exit(1) from None
