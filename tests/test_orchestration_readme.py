"""The commands of docs/orchestration.md, run as written (end to end, slow).

Every line of the page's command block must be one this test knows and runs, so the page
cannot drift from what works. Differences from a user's shell, all forced by running inside a
test: `uv run X` runs `.venv/bin/X` (scripts/test.sh has just run `uv sync`), `$PWD` is a
temporary directory, the sandbox and `dagster dev` get free ports instead of 8765 and 3000
(`SANDBOX_URL` tells the partitions file), and Meltano's system directory is a temporary one
(`MELTANO_SYS_DIR_ROOT`) so its default SQLite state starts empty.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import typing as t
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sandbox import SandboxSettings
from sandbox.data import SandboxData
from tests import pg_cluster
from tests.test_orchestration import Warehouse

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not pg_cluster.available(), reason="PostgreSQL 15 binaries not found"),
    pytest.mark.timeout(1200),  # installs the plugins, starts `dagster dev`, runs a backfill
]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTITIONS = ["sandbox_perform_engage", "sandbox_onq", "sandbox_respondent"]
BACKFILL = (
    "uv run dagster job backfill -m orchestration.definitions -j tap_conversations "
    "--all all --noprompt"
)
COMMANDS = [
    "uv sync --group orchestration",
    "uv run meltano install",
    'export DAGSTER_HOME=$PWD/.dagster && mkdir -p "$DAGSTER_HOME"',
    "uv run dagster instance migrate",
    "uv run python -m sandbox --port 8765 &",
    "uv run dagster asset materialize -m orchestration.definitions --select '*' "
    "--partition sandbox_onq",
    "uv run dagster dev -m orchestration.definitions",
    BACKFILL,
    "uv run meltano state list",
    "uv run python -m orchestration run sandbox_respondent",
]


def readme_section() -> str:
    return (ROOT / "docs" / "orchestration.md").read_text()


def readme_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", readme_section(), flags=re.DOTALL)
    assert blocks, f"no {language} block in docs/orchestration.md"
    return str(blocks[0])


def readme_commands() -> list[str]:
    lines = [line.split("  #", 1)[0].strip() for line in readme_block("bash").splitlines()]
    return [line for line in lines if line]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def argv(command: str) -> list[str]:
    """`uv run X ...` as `.venv/bin/X ...` (`&` dropped: the caller runs it in the background)."""
    words = shlex.split(command.removesuffix("&"))
    assert words[:2] == ["uv", "run"], command
    return [str(BIN / words[2]), *words[3:]]


class Shell:
    """The environment a user of the README has, with this test's warehouse and directories."""

    def __init__(self, work: Path, warehouse: Warehouse) -> None:
        self.work = work
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TAP_CONVERSATIONS_", "MELTANO_", "DAGSTER_", "CONVERSATIONS_"))
        }
        self.env = {
            **inherited,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(work / "meltano-system"),
            "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(warehouse.cluster.port),
            "TARGET_POSTGRES_USER": "postgres",
            "TARGET_POSTGRES_PASSWORD": "unused-under-trust",
            "TARGET_POSTGRES_DATABASE": "readme",
        }
        self.background: list[subprocess.Popen[str]] = []

    def run(self, command: list[str]) -> str:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
        return completed.stdout + completed.stderr

    def start(self, command: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.background.append(process)
        return process

    def stop_background(self) -> None:
        for process in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_for(condition: t.Callable[[], bool], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def graphql(port: int, query: str) -> dict[str, t.Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return t.cast("dict[str, t.Any]", json.loads(response.read()))


@pytest.fixture
def warehouse() -> t.Iterator[Warehouse]:
    with pg_cluster.PostgresCluster() as cluster:
        warehouse = Warehouse(cluster)
        warehouse.psql("create database readme")
        yield warehouse


def test_the_readme_commands_work_as_written(warehouse: Warehouse, tmp_path: Path) -> None:
    assert readme_commands() == COMMANDS
    shell = Shell(tmp_path, warehouse)
    try:
        run_readme_commands(shell, warehouse, tmp_path)
    finally:
        shell.stop_background()


def run_readme_commands(shell: Shell, warehouse: Warehouse, work: Path) -> None:
    # `uv sync --group orchestration`: scripts/test.sh synced every group before pytest started.
    shell.run(argv("uv run meltano install"))
    home = subprocess.run(
        ["bash", "-c", f'{COMMANDS[2]} && printf %s "$DAGSTER_HOME"'],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(home).is_dir()
    run_queue = yaml.safe_load(readme_block("yaml"))
    (Path(home) / "dagster.yaml").write_text(
        yaml.safe_dump({**run_queue, "telemetry": {"enabled": False}})
    )
    shell.env["DAGSTER_HOME"] = home
    shell.run(argv("uv run dagster instance migrate"))

    sandbox_port = free_port()
    sandbox = argv(COMMANDS[4])
    shell.start([*sandbox[:-1], str(sandbox_port)])
    shell.env["SANDBOX_URL"] = f"http://127.0.0.1:{sandbox_port}"
    wait_for(lambda: listens(sandbox_port), "the sandbox", 60)
    data = SandboxData(SandboxSettings())  # what `python -m sandbox` serves (same seed)

    shell.run(argv(COMMANDS[5]))
    loaded = warehouse.rows("select id from sandbox_onq.onq_conversations", "readme")
    assert sorted(row["id"] for row in loaded) == sorted(
        str(r["id"]) for r in data.onq_conversations
    )

    ui_port = free_port()
    shell.start([*argv(COMMANDS[6]), "-h", "127.0.0.1", "-p", str(ui_port)])
    wait_for(lambda: answers(f"http://127.0.0.1:{ui_port}/server_info"), "dagster dev", 180)
    nodes = graphql(ui_port, "{ assetNodes { assetKey { path } partitionKeys } }")
    assert nodes["data"]["assetNodes"] == [
        {"assetKey": {"path": ["conversations"]}, "partitionKeys": PARTITIONS}
    ]

    shell.run(argv(BACKFILL))
    with dg.DagsterInstance.from_config(home) as instance:

        def backfill_runs() -> list[dg.RunRecord]:
            records = instance.get_run_records()
            return [r for r in records if "dagster/backfill" in r.dagster_run.tags]

        def finished() -> bool:
            runs = backfill_runs()
            return len(runs) == len(PARTITIONS) and all(r.end_time for r in runs)

        wait_for(finished, "the backfill's runs")
        runs = backfill_runs()
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == sorted(PARTITIONS)
    assert {r.dagster_run.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    limit = run_queue["concurrency"]["runs"]["max_concurrent_runs"]
    for run in runs:  # never more than `max_concurrent_runs` in progress at one time
        assert run.start_time is not None
        assert run.end_time is not None
        at_once = [r for r in runs if r.start_time <= run.start_time < r.end_time]
        assert len(at_once) <= limit
    counts = {
        "perform_engage_conversations": len(data.pe_conversations),
        "onq_conversations": len(data.onq_conversations),
        "respondent_conversations": len(data.respondent_conversations),
    }
    for (stream, count), schema in zip(counts.items(), PARTITIONS, strict=True):
        assert warehouse.rows(f"select count(*) as n from {schema}.{stream}", "readme") == [
            {"n": count}
        ]

    listed = shell.run(argv("uv run meltano state list"))
    for name in PARTITIONS:
        assert f"dev:tap-conversations-to-target-postgres:{name}" in listed
    with sqlite3.connect(work / "meltano-system" / "meltano.db") as db:
        state_ids = sorted(row[0] for row in db.execute("select state_id from state"))
    assert state_ids == sorted(f"dev:tap-conversations-to-target-postgres:{n}" for n in PARTITIONS)

    out = shell.run(argv(COMMANDS[9]))
    assert out.rstrip().splitlines()[-1].startswith("sandbox_respondent: ")
    assert shell.run(argv("uv run python -m orchestration list")).split() == PARTITIONS
