"""End to end: partitioned runs through the Dagster code location, state in PostgreSQL.

Three partitions of `orchestration/partitions.yml` (one per provider, on the sandbox) are
materialized at the same time with `dagster asset materialize`, each a `meltano run` with its
own state id, Meltano's system database in PostgreSQL and its own warehouse schema. The checks
compare them with one all-providers `meltano run`, and with the sandbox's own data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import dagster as dg
import pytest

from sandbox import Sandbox, SandboxSettings
from tests import pg_cluster
from tests.children import DERIVED
from tests.helpers import assert_same_records
from tests.test_pipelines import expected_tables

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not pg_cluster.available(), reason="PostgreSQL 15 binaries not found"),
    pytest.mark.timeout(900),  # Meltano, Dagster and PostgreSQL processes on a shared machine
]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REFERENCE = "all_providers"
PARTITION_OF = {
    "perform_engage": "sandbox_perform_engage",
    "onq": "sandbox_onq",
    "respondent": "sandbox_respondent",
}
STATE_ID = "dev:tap-conversations-to-target-postgres:{}"
SDC = "_sdc_"
ONQ = "onq_conversations"


class Warehouse:
    """psql on the throwaway cluster: the warehouse in `postgres`, Meltano's in `meltano`."""

    def __init__(self, cluster: pg_cluster.PostgresCluster) -> None:
        self.cluster = cluster

    def rows(self, sql: str, database: str = "postgres") -> list[dict[str, t.Any]]:
        wrapped = f"select coalesce(json_agg(q), '[]'::json) from ({sql}) q"
        out = self.psql(wrapped, database)
        return t.cast("list[dict[str, t.Any]]", json.loads(out))

    def psql(self, sql: str, database: str = "postgres") -> str:
        completed = subprocess.run(
            [
                *(pg_cluster.PSQL, "-h", "127.0.0.1", "-p", str(self.cluster.port)),
                *("-U", "postgres", "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return completed.stdout

    def tables(self, schema: str) -> list[str]:
        found = self.rows(
            "select table_name from information_schema.tables "
            f"where table_schema = '{schema}' order by 1"
        )
        return [row["table_name"] for row in found]

    def snapshot(self, schema: str) -> dict[str, list[dict[str, t.Any]]]:
        """Every row of every table of `schema`, `_sdc_` columns included, in a stable order."""
        return {
            table: sorted(self.rows(f"select * from {schema}.{table}"), key=json.dumps)
            for table in self.tables(schema)
        }

    def states(self) -> dict[str, str]:
        rows = self.rows("select state_id, completed_state::text as s from state", "meltano")
        return {row["state_id"]: row["s"] for row in rows}


class Orchestrator:
    """The README's commands, run with this test's sandbox, warehouse and Dagster home."""

    def __init__(self, sandbox: Sandbox, warehouse: Warehouse, home: Path) -> None:
        self.sandbox = sandbox
        self.home = home
        port = str(warehouse.cluster.port)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TAP_CONVERSATIONS_")}
        self.env = {
            **inherited,
            "DAGSTER_HOME": str(home),
            "SANDBOX_URL": sandbox.url,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"postgresql+psycopg://postgres@127.0.0.1:{port}/meltano",
            "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": port,
            "TARGET_POSTGRES_USER": "postgres",
            "TARGET_POSTGRES_PASSWORD": "unused-under-trust",
            "TARGET_POSTGRES_DATABASE": "postgres",
        }
        self.env.pop("CONVERSATIONS_PARTITIONS", None)

    def start(self, *command: str, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, *command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*command, **extra_env)
        out, _ = process.communicate(timeout=600)
        return subprocess.CompletedProcess(process.args, process.returncode, out)

    def materialize(self, partition: str, **extra_env: str) -> subprocess.Popen[str]:
        return self.start(
            "dagster",
            "asset",
            "materialize",
            "-m",
            "orchestration.definitions",
            "--select",
            "*",
            "--partition",
            partition,
            **extra_env,
        )

    def materializations(self, partition: str) -> list[dg.AssetMaterialization]:
        """This partition's materializations in the Dagster instance, newest first."""
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("conversations"), asset_partitions=[partition]
                ),
                limit=10,
            )
        found = [record.asset_materialization for record in result.records]
        return [m for m in found if m is not None]


def ok(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, completed.stdout[-4000:]
    return completed.stdout


@pytest.fixture(scope="module")
def sandbox() -> t.Iterator[Sandbox]:
    settings = SandboxSettings(
        pe_conversations=24,
        pe_plans=4,
        pe_max_limit=10,
        onq_conversations=30,
        respondent_conversations=14,
    )
    with Sandbox(settings) as running:
        yield running


@pytest.fixture(scope="module")
def warehouse() -> t.Iterator[Warehouse]:
    with pg_cluster.PostgresCluster() as cluster:
        warehouse = Warehouse(cluster)
        warehouse.psql("create database meltano")
        yield warehouse


@pytest.fixture(scope="module")
def orchestrator(
    sandbox: Sandbox, warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory
) -> Orchestrator:
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    orchestrator = Orchestrator(sandbox, warehouse, home)
    ok(orchestrator.run("meltano", "install"))  # also creates Meltano's tables in PostgreSQL
    ok(orchestrator.run("dagster", "instance", "migrate"))
    # The reference: one run of all three providers into its own schema, no state kept.
    everything = {
        f"TAP_CONVERSATIONS_{provider}_{name}".upper(): str(value)
        for provider, settings in sandbox.tap_config().items()
        for name, value in settings.items()
    }
    ok(
        orchestrator.run(
            "meltano",
            "run",
            "--no-state-update",
            "tap-conversations",
            "target-postgres",
            **everything,
            TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=REFERENCE,
        )
    )
    return orchestrator


def without_sdc(rows: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [{k: v for k, v in row.items() if not k.startswith(SDC)} for row in rows]


def canonical(row: dict[str, t.Any]) -> str:
    return json.dumps(row, sort_keys=True)


def provider_of(stream: str) -> str:
    return next(provider for provider in PARTITION_OF if stream.startswith(provider))


def test_three_partitions_at_once_equal_one_run_of_everything(
    orchestrator: Orchestrator, warehouse: Warehouse, sandbox: Sandbox
) -> None:
    started = [orchestrator.materialize(name) for name in PARTITION_OF.values()]
    for process in started:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out[-4000:]

    reference = sorted(warehouse.tables(REFERENCE))
    partitioned = {schema: warehouse.tables(schema) for schema in PARTITION_OF.values()}
    assert sorted(table for tables in partitioned.values() for table in tables) == reference
    for provider, schema in PARTITION_OF.items():  # a partition's schema holds its provider only
        assert {provider_of(table) for table in partitioned[schema]} == {provider}
    for table in reference:  # every table equal to the single run's, row for row
        rows = without_sdc(
            warehouse.rows(f"select * from {PARTITION_OF[provider_of(table)]}.{table}")
        )
        single = without_sdc(warehouse.rows(f"select * from {REFERENCE}.{table}"))
        assert len(rows) > 0, table
        assert sorted(rows, key=canonical) == sorted(single, key=canonical), table
    for stream, (key, expected) in expected_tables(sandbox).items():
        schema = PARTITION_OF[provider_of(stream)]
        assert_same_records(warehouse.rows(f"select * from {schema}.{stream}"), expected, key)

    assert sorted(warehouse.states()) == sorted(STATE_ID.format(n) for n in PARTITION_OF.values())

    for provider, name in PARTITION_OF.items():
        (latest, *_) = orchestrator.materializations(name)
        expected_counts = {s: len(rows) for s, (_, rows) in expected_tables(sandbox).items()}
        expected_counts |= {d.stream: len(d.expected(sandbox)) for d in DERIVED}
        assert latest.metadata["records"].value == {
            s: n for s, n in expected_counts.items() if provider_of(s) == provider
        }
        assert latest.metadata["state_id"].value == STATE_ID.format(name)
        assert latest.metadata["schema"].value == name


def test_a_partition_run_after_changes_sends_only_its_own_changes(
    orchestrator: Orchestrator, warehouse: Warehouse, sandbox: Sandbox
) -> None:
    others = ["sandbox_perform_engage", "sandbox_respondent"]
    before = {name: warehouse.snapshot(name) for name in others}
    states_before = warehouse.states()
    loaded_before = loaded_at(warehouse)
    changed = sandbox.mutate("onq", changed=4, added=3)
    sandbox.mutate("perform_engage", changed=3, added=2)
    sandbox.mutate("respondent", changed=2, added=1)

    out = ok(orchestrator.run(*materialize_args("sandbox_onq")))

    # Each version once: exactly the changed and added records (none at the bookmark again).
    sent = {str(k) for k in changed.changed_keys + changed.added_keys}
    rewritten = {k for k, at in loaded_at(warehouse).items() if loaded_before.get(k) != at}
    assert rewritten == sent
    (latest, *_) = orchestrator.materializations("sandbox_onq")
    assert latest.metadata["records"].value == {ONQ: len(sent)}
    key, expected = expected_tables(sandbox)[ONQ]
    assert_same_records(warehouse.rows(f"select * from sandbox_onq.{ONQ}"), expected, key)
    assert {name: warehouse.snapshot(name) for name in others} == before
    states = warehouse.states()
    onq_id = STATE_ID.format("sandbox_onq")
    assert states.pop(onq_id) != states_before.pop(onq_id)
    assert states == states_before
    assert "[tap-conversations] Sync summary:" in out  # Meltano's lines reach Dagster's log


def loaded_at(warehouse: Warehouse) -> dict[str, str]:
    """onQ key -> when target-postgres last wrote its row."""
    rows = warehouse.rows(f"select id, _sdc_batched_at from sandbox_onq.{ONQ}")
    return {row["id"]: row["_sdc_batched_at"] for row in rows}


def materialize_args(partition: str) -> list[str]:
    return [
        "dagster",
        "asset",
        "materialize",
        "-m",
        "orchestration.definitions",
        "--select",
        "*",
        "--partition",
        partition,
    ]


def test_a_partition_with_a_wrong_key_fails_alone_with_the_taps_reason(
    orchestrator: Orchestrator, warehouse: Warehouse
) -> None:
    schemas = list(PARTITION_OF.values())
    before = {name: warehouse.snapshot(name) for name in schemas}
    states_before = warehouse.states()

    failed = orchestrator.run(
        *materialize_args("sandbox_perform_engage"), SANDBOX_PE_API_KEY="wrong-key"
    )

    assert failed.returncode != 0
    reason = (
        "tap-conversations: Perform & Engage 365 stream 'perform_engage_conversation_plans': "
        "HTTP 401 Unauthorized on /perform-engage/api/v2/conversation_plans/ — check "
        "perform_engage credentials (perform_engage.username, perform_engage.api_key)"
    )
    assert reason in failed.stdout
    assert "wrong-key" not in failed.stdout
    assert {name: warehouse.snapshot(name) for name in schemas} == before
    states = warehouse.states()
    own = STATE_ID.format("sandbox_perform_engage")
    assert bookmarks(states.pop(own)) == bookmarks(states_before.pop(own))
    assert states == states_before


def bookmarks(state: str) -> dict[str, str]:
    """stream -> bookmark of a Meltano state row (streams without one left out)."""
    singer = json.loads(state)["singer_state"]["bookmarks"]
    return {stream: b["replication_key_value"] for stream, b in singer.items() if b}


def test_partitions_started_together_on_a_fresh_system_database_all_succeed(
    orchestrator: Orchestrator, warehouse: Warehouse
) -> None:
    """No `meltano install` against the new database first (issue 28 row 23): the runs would
    race on its migration; one migrates, the others wait for it."""
    warehouse.psql("create database meltano_fresh")
    fresh = f"postgresql+psycopg://postgres@127.0.0.1:{warehouse.cluster.port}/meltano_fresh"
    started = [
        orchestrator.materialize(name, MELTANO_DATABASE_URI=fresh) for name in PARTITION_OF.values()
    ]
    for process in started:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out[-4000:]
        assert "UniqueViolation" not in out
        assert "Cannot upgrade the system database" not in out
    rows = warehouse.rows("select state_id from state", "meltano_fresh")
    assert sorted(row["state_id"] for row in rows) == sorted(
        STATE_ID.format(n) for n in PARTITION_OF.values()
    )
