"""stdout's reader: one that goes away, and one that stops reading.

A reader that goes away (`| head -c 100`) ends the run with one line on stderr, no traceback, a
non-zero exit and nothing written after it. A SIGTERM while the reader has stopped reading
(PyAirbyte's early stop: terminate, wait 10 s, kill) ends the process within seconds, 143.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import signal
import subprocess
import termios
import time
import typing as t
from contextlib import redirect_stdout

import pytest

from tap_conversations.errors import READER_GONE, ReaderGone
from tap_conversations.tap import TapConversations
from tests.airbyte_messages import SOURCE_EXECUTABLE, configured_catalog
from tests.helpers import TAP_EXECUTABLE

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

PIPE_FULL = (1 << 16) - (1 << 13)  # Linux: 64 KiB, in pages: a line that does not fit waits


def source_read_args(config: dict[str, t.Any], tmp_path: Path) -> list[str]:
    """`source-conversations read` of every stream of `config`."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    discovered = subprocess.run(
        [SOURCE_EXECUTABLE, "discover", "--config", str(config_file)],
        capture_output=True,
        check=True,
    )
    (catalog,) = [
        m["catalog"] for m in map(json.loads, discovered.stdout.splitlines()) if "catalog" in m
    ]
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(configured_catalog(catalog)))
    return [
        SOURCE_EXECUTABLE,
        "read",
        "--config",
        str(config_file),
        "--catalog",
        str(catalog_file),
    ]


def tap_args(config: dict[str, t.Any], tmp_path: Path) -> list[str]:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    return [TAP_EXECUTABLE, "--config", str(config_file)]


def head_c_100(command: list[str]) -> tuple[int, str]:
    """`command | head -c 100`: the command's exit code and stderr."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert len(process.stdout.read(100)) == 100
        process.stdout.close()  # what `head` does once it has its 100 bytes
        stderr = process.stderr.read().decode()
        return process.wait(timeout=60), stderr


def test_a_reader_that_goes_away_ends_the_tap_with_one_line(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(onq_conversations=3_000)
    code, stderr = head_c_100(tap_args({"onq": sandbox.tap_config()["onq"]}, tmp_path))
    assert code != 0
    lines = stderr.splitlines()
    assert len(lines) <= 3, stderr
    assert lines[-1].endswith(f"| {READER_GONE}"), stderr  # the tap's log prefix, then it
    assert "Traceback" not in stderr
    assert "Sync summary" not in stderr  # no summary saying every stream is "ok"


def test_a_reader_that_goes_away_ends_the_source_with_one_line(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(onq_conversations=3_000)
    code, stderr = head_c_100(source_read_args({"onq": sandbox.tap_config()["onq"]}, tmp_path))
    assert code != 0
    assert stderr == f"source-conversations: {READER_GONE}\n"


def stop_with_a_stalled_reader(command: list[str]) -> tuple[int, float]:
    """Run `command` until stdout's pipe is full (its reader never reads), then SIGTERM it:
    its exit code and how long it took to exit after the signal."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        waiting = bytearray(4)
        deadline = time.monotonic() + 60
        while True:  # bytes in the pipe, unread
            fcntl.ioctl(process.stdout.fileno(), termios.FIONREAD, waiting)
            if int.from_bytes(waiting, "little") >= PIPE_FULL:
                break
            assert process.poll() is None, "it ended before it filled the pipe"
            assert time.monotonic() < deadline, "the pipe never filled"
            time.sleep(0.05)
        time.sleep(0.2)  # blocked writing
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = process.wait(timeout=10)
        finally:
            process.kill()
        return code, time.monotonic() - signalled


def test_sigterm_with_a_stalled_reader_ends_the_tap_within_seconds(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(onq_conversations=3_000)
    code, seconds = stop_with_a_stalled_reader(
        tap_args({"onq": sandbox.tap_config()["onq"]}, tmp_path)
    )
    assert code == 143
    assert seconds <= 5


def test_sigterm_with_a_stalled_reader_ends_the_source_within_seconds(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(onq_conversations=3_000)
    code, seconds = stop_with_a_stalled_reader(
        source_read_args({"onq": sandbox.tap_config()["onq"]}, tmp_path)
    )
    assert code == 143
    assert seconds <= 5


class BreakingPipe(io.BytesIO):
    """A stdout whose reader goes away after `whole` writes; it counts the writes tried after."""

    def __init__(self, whole: int) -> None:
        super().__init__()
        self.whole = whole
        self.tried_after = 0

    def write(self, data: t.Any) -> int:
        if self.whole <= 0:
            self.tried_after += 1
            raise BrokenPipeError(32, "Broken pipe")
        self.whole -= 1
        return super().write(data)


def test_a_broken_pipe_mid_sync_writes_nothing_more_and_sums_nothing_up(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tap = TapConversations(config={"onq": sandbox.tap_config()["onq"]})
    pipe = BreakingPipe(whole=5)
    with (
        redirect_stdout(io.TextIOWrapper(pipe, encoding="utf-8")),
        caplog.at_level(logging.INFO),
        pytest.raises(ReaderGone),
    ):
        tap.sync_all()
    assert pipe.tried_after == 1  # no STATE (nor anything else) tried after the failure
    assert tap.reader_gone
    assert "Sync summary" not in caplog.text
