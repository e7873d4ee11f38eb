"""The extras `[s3]`, `[parquet]`, `[faker]` install from uv.lock, and BATCH output works.

A separate environment is built from the lock file with the three extras (no dev tools), and
the tap from it writes BATCH files to a local directory, as parquet and as gzipped JSONL, and
applies a `fake.*` stream map (to RECORD messages: the SDK does not map BATCH files).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest

from tests.helpers import parse_messages
from tests.meltano_project import ROOT, VENV_BIN, clean_env

if t.TYPE_CHECKING:
    from sandbox import Sandbox

UV = shutil.which("uv") or str(VENV_BIN / "uv")


@pytest.fixture(scope="module")
def extras_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("extras") / "venv"
    env = clean_env(UV_PROJECT_ENVIRONMENT=str(venv))
    command = [UV, "sync", "--frozen", "--no-dev", "--quiet"]
    command += ["--extra", "s3", "--extra", "parquet", "--extra", "faker"]
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return venv


def run_tap(venv: Path, config: dict[str, t.Any], work: Path) -> list[dict[str, t.Any]]:
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config))
    completed = subprocess.run(
        [str(venv / "bin" / "tap-conversations"), "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return parse_messages(completed.stdout)


def in_venv(venv: Path, code: str, *args: str) -> str:
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout


def test_the_extras_are_importable(extras_venv: Path) -> None:
    out = in_venv(extras_venv, "import s3fs, pyarrow, faker; print('ok')")
    assert out.strip() == "ok"


@pytest.mark.parametrize(("encoding", "suffix"), [("parquet", ".parquet"), ("jsonl", ".gz")])
def test_batch_to_a_local_directory(
    extras_venv: Path, sandbox: Sandbox, tmp_path: Path, encoding: str, suffix: str
) -> None:
    batches = tmp_path / "batches"
    batches.mkdir()
    compression = "none" if encoding == "parquet" else "gzip"
    config = {
        "onq": sandbox.tap_config()["onq"],
        "progress_interval_seconds": 0,
        "batch_config": {
            "encoding": {"format": encoding, "compression": compression},
            "storage": {"root": batches.as_uri(), "prefix": "onq-"},
        },
    }
    messages = run_tap(extras_venv, config, tmp_path)
    assert not [m for m in messages if m["type"] == "RECORD"]
    (batch,) = [m for m in messages if m["type"] == "BATCH"]
    files = [Path(os.path.normpath(uri.removeprefix("file://"))) for uri in batch["manifest"]]
    assert files
    assert all(f.parent == batches and f.name.endswith(suffix) for f in files)
    reader = (
        "import sys, pyarrow.parquet as pq\n"
        "rows = [r for f in sys.argv[1:] for r in pq.read_table(f).to_pylist()]\n"
        if encoding == "parquet"
        else "import sys, gzip, json\n"
        "rows = [json.loads(l) for f in sys.argv[1:] for l in gzip.open(f, 'rt')]\n"
    )
    reader += "import json; print(json.dumps(rows, default=str))"
    rows = json.loads(in_venv(extras_venv, reader, *map(str, files)))
    assert sorted(str(r["id"]) for r in rows) == sorted(
        str(r["id"]) for r in sandbox.data.onq_conversations
    )


def test_a_faker_stream_map(extras_venv: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    config = {
        "onq": sandbox.tap_config()["onq"],
        "progress_interval_seconds": 0,
        "faker_config": {"seed": 7, "locale": ["en_US"]},
        "stream_maps": {"onq_conversations": {"masked_email": "fake.email()"}},
    }
    records = [m["record"] for m in run_tap(extras_venv, config, tmp_path) if m["type"] == "RECORD"]
    assert len(records) == len(sandbox.data.onq_conversations)
    emails = {r["masked_email"] for r in records}
    assert all("@" in e for e in emails)
    assert len(emails) > 1  # generated per record, not one constant
