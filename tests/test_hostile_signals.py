"""SIGTERM and SIGINT: the final STATE, then an exit code that says the run was cut short.

Issue 17 rows 1 and 2.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import typing as t

import pytest

from sandbox import FaultSettings
from tests.helpers import TAP_EXECUTABLE, parse_messages, sync
from tests.hostile import wait_for

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


class TapProcess:
    """The tap executable running in the background, its output going to files."""

    def __init__(self, config: dict[str, t.Any], tmp_path: Path) -> None:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        self.stdout_file = tmp_path / "stdout.jsonl"
        self.stderr_file = tmp_path / "stderr.log"
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            self.process = subprocess.Popen(
                [TAP_EXECUTABLE, "--config", str(config_file)], stdout=out, stderr=err
            )

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text()

    def stop(self, signum: int, within: float = 30) -> int:
        """Send `signum`; the exit code, or a failure if the process outlives `within`."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"still running {within} s after the signal:\n{self.stderr[-2000:]}")


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_mid_run_writes_the_state_and_exits_non_zero(
    sandbox: Sandbox, tmp_path: Path, signum: int, exit_code: int
) -> None:
    sandbox.settings.latency_ms = 40
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 2}
    tap = TapProcess(config, tmp_path)
    assert wait_for(lambda: '"type":"RECORD"' in tap.stdout.replace(" ", "")), tap.stderr

    assert tap.stop(signum) == exit_code
    messages = parse_messages(tap.stdout)
    assert messages[-1]["type"] == "STATE"
    assert "bookmarks" in messages[-1]["value"]
    name = signal.Signals(signum).name
    assert f"Stopped by {name} before the end" in tap.stderr
    assert "Gracefully shutting down" not in tap.stderr
    assert "Traceback" not in tap.stderr


def test_sigterm_while_a_worker_waits_out_an_hour_long_retry_after(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Lists answer; every detail answers 429 with `Retry-After: 3600` (or its HTTP date).
    sandbox.settings.faults = FaultSettings(
        rate=1.0,
        kinds=("429",),
        providers=("perform_engage",),
        retry_after_seconds=3600,
        path_contains="580:",
    )
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "max_retry_after_seconds": 7200,
    }
    tap = TapProcess(config, tmp_path)
    assert wait_for(lambda: "as its Retry-After asks" in tap.stderr), tap.stderr[-2000:]
    assert re.search(r"retrying in 3[56]\d\d s \(60 min\)", tap.stderr), tap.stderr[-2000:]

    assert tap.stop(signal.SIGTERM) == 143
    messages = parse_messages(tap.stdout)
    assert messages[-1]["type"] == "STATE"
    assert "Stopped by SIGTERM before the end" in tap.stderr
    assert "Traceback" not in tap.stderr


def test_a_signal_while_records_are_written_leaves_a_state_covering_exactly_them(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    """A SIGTERM while the tap is blocked writing a record (the target reads nothing for a
    while) lets that write end and stops at the next record boundary, the bookmark past every
    record written: no torn line, and the next run, from the last STATE, sends exactly the
    records this one did not."""
    sandbox = sandbox_factory(onq_conversations=6_000)
    config = {"onq": sandbox.tap_config()["onq"]}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    with subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None
        head = b""
        while b'"type":"RECORD"' not in head:  # records are being written
            chunk = process.stdout.read1(1 << 16)
            assert chunk, "the tap ended before it wrote a record"
            head += chunk
        time.sleep(0.5)  # the pipe is full: the tap waits in the middle of writing a record
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 143
    first = parse_messages(head + rest)  # every line whole
    assert first[-1]["type"] == "STATE"
    sent_first = [m["record"]["id"] for m in first if m["type"] == "RECORD"]
    assert 0 < len(sent_first) < 6_000

    again = sync(config, state=first[-1]["value"])
    sent_again = [r["id"] for r in again.records("onq_conversations")]
    assert not set(sent_first) & set(sent_again)
    assert sorted(sent_first + sent_again) == sorted(
        str(c["id"]) for c in sandbox.data.onq_conversations
    )
