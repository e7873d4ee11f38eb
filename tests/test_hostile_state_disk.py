"""A list is read into a temporary database first: when its directory (`TMPDIR`) is full, the
stream ends with one line naming the directory and `TMPDIR`, sends nothing, and its bookmark
stays where it was.

The real case mounts a full 1 MB tmpfs as `TMPDIR` (root only; skipped otherwise). SQLite
reads `TMPDIR` once per process, so the tap runs as a subprocess. The unit case fills a
snapshot's database with SQLite's own page limit (`PRAGMA max_page_count`), which fails with
the same "database or disk is full" error.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t

import pytest

from tap_conversations.snapshot import Snapshot, TemporaryDiskError
from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sandbox import Sandbox

ONQ = "onq_conversations"
BOOKMARK = "2000-01-01T00:00:00.000000+00:00"


@pytest.fixture
def full_directory(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 1 MB with no byte left."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode()[:200]}")
    try:
        filler = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:  # no space left
            pass
        finally:
            os.close(filler)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_tmpdir_is_one_line_and_moves_no_bookmark(
    sandbox_factory: t.Callable[..., Sandbox], full_directory: Path, tmp_path: Path
) -> None:
    # ~4.5 MB of records: more than SQLite's page cache, so its temporary file is written
    sandbox = sandbox_factory(
        onq_conversations=6000, pe_conversations=0, respondent_conversations=0
    )
    state = {
        "bookmarks": {
            ONQ: {"replication_key": "last_updated_on", "replication_key_value": BOOKMARK}
        }
    }
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    done = run_cli(
        ["--state", str(state_file)],
        {"onq": sandbox.tap_config()["onq"]},
        tmp_path,
        env={"TMPDIR": str(full_directory)},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, done.stderr[-3000:]
    (line,) = errors
    assert f"onQ stream '{ONQ}'" in line
    assert str(full_directory) in line
    assert "TMPDIR" in line
    assert "disk is full" in line
    messages = parse_messages(done.stdout)
    assert not [m for m in messages if m["type"] == "RECORD"]
    final = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert final["bookmarks"][ONQ]["replication_key_value"] == BOOKMARK


def fill(snapshot: Snapshot) -> None:
    for n in range(5000):
        snapshot.add(1, f"k{n}", None, {"id": f"k{n}", "text": "x" * 200})
    len(snapshot)


def test_a_snapshot_that_cannot_grow_names_its_stream_and_tmpdir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TMPDIR", "/somewhere/small")
    snapshot = Snapshot("Test stream 'things'")
    try:
        snapshot._db.execute("PRAGMA max_page_count = 8")  # our own database: a tiny disk
        with pytest.raises(TemporaryDiskError) as raised:
            fill(snapshot)
    finally:
        snapshot.close()
    message = str(raised.value)
    assert message.startswith("Test stream 'things': cannot write the temporary database")
    assert "(database or disk is full)" in message
    assert "/somewhere/small (from TMPDIR)" in message
    assert "\n" not in message
