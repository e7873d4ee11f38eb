"""`schema_evolution` end to end: `meltano run tap-conversations target-postgres` (and
target-csv) against a sandbox that sends fields the docs do not list (`sandbox.undocumented`).

Checks are against the sandbox's own data: every undocumented value arrives in the first run,
as a column (top level) or as a key in the nested `jsonb` (array elements).
"""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import typing as t
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxSettings, undocumented
from tests import pg_cluster
from tests.helpers import sync

if t.TYPE_CHECKING:
    from tests.meltano_project import MeltanoProject

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not pg_cluster.available(), reason="PostgreSQL 15 binaries not found"),
]

SCHEMA = "conversations"
SIZES: dict[str, t.Any] = {
    "pe_conversations": 14,
    "pe_plans": 4,
    "pe_max_limit": 5,
    "onq_conversations": 12,
    "respondent_conversations": 8,
    "respondent_max_page_size": 3,
}


@pytest.fixture(scope="module")
def noisy() -> t.Iterator[Sandbox]:
    with Sandbox(SandboxSettings(undocumented_fields=True, **SIZES)) as running:
        yield running


@pytest.fixture(scope="module")
def postgres() -> t.Iterator[pg_cluster.PostgresCluster]:
    with pg_cluster.PostgresCluster() as cluster:
        yield cluster


def env_for(
    sandbox: Sandbox, postgres: pg_cluster.PostgresCluster, target_schema: str, work: Path
) -> dict[str, str]:
    env = {
        "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
        "TARGET_POSTGRES_HOST": "127.0.0.1",
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_USER": postgres.user,
        "TARGET_POSTGRES_PASSWORD": "unused-under-trust",
        "TARGET_POSTGRES_DATABASE": "postgres",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": target_schema,
        "TARGET_CSV_OUTPUT_PATH": str(work / "csv"),
    }
    for provider, settings in sandbox.tap_config().items():
        for name, value in settings.items():
            env[f"TAP_CONVERSATIONS_{provider}_{name}".upper()] = str(value)
    return env


def served(sandbox: Sandbox) -> dict[str, tuple[str, tuple[str, ...], list[dict[str, t.Any]]]]:
    """stream -> (key, arrays whose elements carry fields, the records as served)."""
    data = sandbox.data
    return {
        "onq_conversations": ("id", (), data.onq_conversations),
        "perform_engage_conversations": ("api_id", (), data.pe_conversations),
        "perform_engage_conversation_details": (
            "api_id",
            ("data",),
            list(data.pe_conversation_details.values()),
        ),
        "perform_engage_conversation_plans": ("api_id", (), data.pe_plans),
        "perform_engage_conversation_plan_details": (
            "api_id",
            ("assigned_users",),
            list(data.pe_plan_details.values()),
        ),
        "respondent_conversations": (
            "uid",
            ("messages", "participants"),
            data.respondent_conversations,
        ),
    }


def nested(elements: list[dict[str, t.Any]] | None) -> list[dict[str, t.Any]]:
    return [{n: e.get(n) for n in undocumented.NESTED} for e in elements or ()]


def test_evolve_through_meltano_creates_every_column_with_every_value(
    meltano_project: MeltanoProject,
    noisy: Sandbox,
    postgres: pg_cluster.PostgresCluster,
    tmp_path: Path,
) -> None:
    env = env_for(noisy, postgres, SCHEMA, tmp_path)
    meltano_project.meltano("run", "tap-conversations", "target-postgres", env=env)
    for stream, (key, arrays, records) in served(noisy).items():
        rows = {str(r[key]): r for r in postgres.rows(f"select * from {SCHEMA}.{stream}")}
        assert len(rows) == len(records) > 0, stream
        for want in records:
            got = rows[str(want[key])]
            assert got["x_category"] == want["x_category"], stream
            assert float(got["x_score"]) == want["x_score"], stream
            assert got["x_labels"] == want.get("x_labels"), stream  # jsonb: a JSON object
            for array in arrays:
                assert nested(got[array]) == nested(want[array]), (stream, array)
    kinds = {
        (r["table_name"], r["column_name"]): r["udt_name"]
        for r in postgres.rows(
            "select table_name, column_name, udt_name from information_schema.columns "
            f"where table_schema = '{SCHEMA}' and column_name like 'x\\_%'"
        )
    }
    assert kinds[("onq_conversations", "x_category")] == "text"
    assert kinds[("onq_conversations", "x_score")] == "numeric"
    assert kinds[("onq_conversations", "x_labels")] == "jsonb"
    # Derived streams: the elements' fields are columns of their own.
    for table in (
        "perform_engage_conversation_elements",
        "perform_engage_conversation_plan_users",
        "respondent_messages",
        "respondent_participants",
    ):
        rows = postgres.rows(f"select x_note, x_rank from {SCHEMA}.{table}")
        assert rows, table
        assert all(str(r["x_note"]).startswith("note ") for r in rows), table
        assert any(r["x_rank"] is not None for r in rows), table
        assert kinds[(table, "x_note")] == "text"


def test_target_csv_gets_the_columns_too(
    meltano_project: MeltanoProject,
    noisy: Sandbox,
    postgres: pg_cluster.PostgresCluster,
    tmp_path: Path,
) -> None:
    env = env_for(noisy, postgres, "csv_unused", tmp_path)
    meltano_project.meltano("run", "tap-conversations", "target-csv", env=env)
    for stream, (key, arrays, records) in served(noisy).items():
        with (tmp_path / "csv" / f"{stream}.csv").open(newline="") as handle:
            rows = {r[key]: r for r in csv.DictReader(handle)}
        assert len(rows) == len(records) > 0, stream
        for want in records:
            got = rows[str(want[key])]
            assert got["x_category"] == want["x_category"], stream
            assert float(got["x_score"]) == want["x_score"], stream
            labels = got["x_labels"]  # target-csv writes objects as Python literals
            assert (ast.literal_eval(labels) if labels else None) == want.get("x_labels")
            for array in arrays:
                cell = got[array]
                elements = ast.literal_eval(cell) if cell else None
                assert nested(elements) == nested(want[array]), (stream, array)
    # A derived stream's columns grow mid-stream (its rows are written as their parents
    # arrive): target-csv keeps one file, its header holding every column.
    with (tmp_path / "csv" / "respondent_messages.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert {"x_note", "x_rank"} <= set(reader.fieldnames or ())
        rows = list(reader)
    assert rows
    assert all(r["x_note"].startswith("note ") for r in rows)


def test_freeze_through_meltano_fails_with_the_one_line(
    meltano_project: MeltanoProject,
    noisy: Sandbox,
    postgres: pg_cluster.PostgresCluster,
    tmp_path: Path,
) -> None:
    env = {
        **env_for(noisy, postgres, "frozen", tmp_path),
        "TAP_CONVERSATIONS_SCHEMA_EVOLUTION": "freeze",
    }
    completed = meltano_project.meltano(
        "run", "tap-conversations", "target-postgres", env=env, ok=False
    )
    assert completed.returncode != 0
    assert "is not in the schema and schema_evolution is freeze" in completed.stderr
    assert "Traceback" not in completed.stderr.split("schema_evolution is freeze")[0][-3000:]
    tables = postgres.rows(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'frozen' and column_name like 'x\\_%'"
    )
    assert tables == []


def test_discard_through_meltano_loads_the_documented_columns_only(
    meltano_project: MeltanoProject,
    noisy: Sandbox,
    postgres: pg_cluster.PostgresCluster,
    tmp_path: Path,
) -> None:
    env = {
        **env_for(noisy, postgres, "discarded", tmp_path),
        "TAP_CONVERSATIONS_SCHEMA_EVOLUTION": "discard",
    }
    meltano_project.meltano("run", "tap-conversations", "target-postgres", env=env)
    rows = postgres.rows("select uid, messages from discarded.respondent_conversations")
    assert len(rows) == len(noisy.data.respondent_conversations)
    assert "x_note" not in json.dumps(rows)
    columns = postgres.rows(
        "select column_name from information_schema.columns "
        "where table_schema = 'discarded' and column_name like 'x\\_%'"
    )
    assert columns == []


def test_a_field_whose_type_changes_loads_into_postgres_as_text(
    installed_plugins: Path,
    sandbox_factory: t.Callable[..., Sandbox],
    postgres: pg_cluster.PostgresCluster,
    tmp_path: Path,
) -> None:
    """A field first a string, then an object: its schema widens to any JSON (`{}`), which
    target-postgres 0.8.1 makes a text column holding each value (objects as JSON text)."""
    sandbox = sandbox_factory(onq_conversations=10)
    moods: list[t.Any] = ["calm", {"level": 3}] * 5
    sandbox.data.onq.conversations.edit(
        lambda order: [{**r, "mood": mood} for r, mood in zip(order, moods, strict=True)]
    )
    result = sync(sandbox.tap_config())
    singer = "".join(json.dumps(m) + "\n" for m in result.messages)
    config = tmp_path / "target.json"
    config.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": postgres.port,
                "user": postgres.user,
                "password": "unused-under-trust",
                "database": "postgres",
                "default_target_schema": "widened",
            }
        )
    )
    target = installed_plugins / ".meltano/loaders/target-postgres/venv/bin/target-postgres"
    completed = subprocess.run(
        [str(target), "--config", str(config)],
        input=singer,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = postgres.rows("select id, mood from widened.onq_conversations")
    by_id = {r["id"]: r["mood"] for r in rows}
    want = {str(r["id"]): r["mood"] for r in sandbox.data.onq_conversations}
    assert len(by_id) == len(want) == 10
    for key, mood in want.items():
        assert by_id[key] == (mood if isinstance(mood, str) else json.dumps(mood)), key
