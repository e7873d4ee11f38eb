"""End to end: `meltano run tap-conversations target-postgres`, `... target-csv` and
`... target-jsonl`, for real.

Meltano installs the tap and the MeltanoLabs targets from `meltano.yml` (all inline, no Hub);
the sandbox serves the three APIs; a throwaway PostgreSQL cluster receives the tables. The
checks are in SQL and on the CSV files, against the sandbox's own data.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxSettings
from tests import pg_cluster
from tests.children import DERIVED, assert_rows_match
from tests.helpers import as_instant, assert_same_records

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not pg_cluster.available(), reason="PostgreSQL 15 binaries not found"),
]

ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).parent / "meltano")
SCHEMA = "conversations"


def expected_tables(sandbox: Sandbox) -> dict[str, tuple[str, list[dict[str, t.Any]]]]:
    """stream -> (key, every record the sandbox holds, as the tap should deliver it)."""
    data = sandbox.data
    conversations = data.respondent_conversations
    return {
        "perform_engage_conversations": ("api_id", data.pe_conversations),
        "perform_engage_conversation_details": (
            "api_id",
            list(data.pe_conversation_details.values()),
        ),
        "perform_engage_conversation_plans": ("api_id", data.pe_plans),
        "perform_engage_conversation_plan_details": ("api_id", list(data.pe_plan_details.values())),
        "onq_conversations": (
            "id",
            [{**r, "id": str(r["id"]), "org_id": str(r["org_id"])} for r in data.onq_conversations],
        ),
        "respondent_conversations": ("uid", conversations),
        "respondent_messages": (
            "uid",
            [
                {**m, "conversation_uid": c["uid"], "conversation_updated_at": c["updatedAt"]}
                for c in conversations
                for m in c["messages"]
            ],
        ),
    }


def expected_derived_tables(sandbox: Sandbox) -> dict[str, tuple[tuple[str, ...], list[t.Any]]]:
    """derived stream -> (composite key, every row it should have)."""
    return {d.stream: (d.key, d.expected(sandbox)) for d in DERIVED if len(d.key) > 1}


class Pipeline:
    """Meltano, configured through the environment to read the sandbox and write here."""

    def __init__(self, sandbox: Sandbox, postgres: pg_cluster.PostgresCluster, work: Path) -> None:
        self.csv_dir = work / "csv"
        config = sandbox.tap_config()
        self.env = {
            **os.environ,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{work / 'meltano.db'}",
            "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(postgres.port),
            "TARGET_POSTGRES_USER": postgres.user,
            "TARGET_POSTGRES_PASSWORD": "unused-under-trust",
            "TARGET_POSTGRES_DATABASE": "postgres",
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": SCHEMA,
            "TARGET_CSV_OUTPUT_PATH": str(self.csv_dir),
        }
        for provider, settings in config.items():
            for name, value in settings.items():
                self.env[f"TAP_CONVERSATIONS_{provider}_{name}".upper()] = str(value)

    def meltano(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> None:
        completed = subprocess.run(
            [MELTANO, *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture(scope="module")
def sandbox() -> t.Iterator[Sandbox]:
    settings = SandboxSettings(
        pe_conversations=60,
        pe_plans=8,
        pe_max_limit=25,
        onq_conversations=70,
        respondent_conversations=30,
    )
    with Sandbox(settings) as running:
        yield running


@pytest.fixture(scope="module")
def postgres() -> t.Iterator[pg_cluster.PostgresCluster]:
    with pg_cluster.PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pipeline(
    sandbox: Sandbox, postgres: pg_cluster.PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Pipeline:
    pipeline = Pipeline(sandbox, postgres, tmp_path_factory.mktemp("meltano"))
    pipeline.meltano("install")
    return pipeline


def assert_tables_match(postgres: pg_cluster.PostgresCluster, sandbox: Sandbox) -> None:
    for stream, (key, expected) in expected_tables(sandbox).items():
        rows = postgres.rows(f"select * from {SCHEMA}.{stream}")
        duplicates = postgres.rows(
            f"select {key} from {SCHEMA}.{stream} group by {key} having count(*) > 1"
        )
        assert duplicates == [], f"{stream}: duplicate keys {duplicates[:3]}"
        assert len(rows) == len(expected) > 0, stream
        assert_same_records(rows, expected, key)
    for stream, (keys, expected) in expected_derived_tables(sandbox).items():
        rows = postgres.rows(f"select * from {SCHEMA}.{stream}")
        assert len(rows) == len(expected) > 0, stream
        assert_rows_match(rows, expected, keys)


def test_postgres_holds_every_record_once_with_its_values(
    pipeline: Pipeline, postgres: pg_cluster.PostgresCluster, sandbox: Sandbox
) -> None:
    pipeline.meltano("run", "tap-conversations", "target-postgres")
    assert_tables_match(postgres, sandbox)
    # Nested arrays land as JSON (target-postgres makes them jsonb[]), not as text.
    kinds = postgres.rows(
        "select column_name, udt_name from information_schema.columns "
        f"where table_schema = '{SCHEMA}' and column_name in ('data', 'messages', 'metadata')"
    )
    assert {k["udt_name"] for k in kinds} == {"_jsonb", "jsonb"}


def readme_query(provider_label: str) -> str:
    """The README's SQL example for a provider (its first line is `-- <label>: ...`)."""
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    query = next(b for b in blocks if b.startswith(f"-- {provider_label}:"))
    return query.strip().removesuffix(";")  # `rows` wraps it in a subquery


def test_the_readmes_queries_answer_from_the_relational_tables(
    pipeline: Pipeline, postgres: pg_cluster.PostgresCluster, sandbox: Sandbox
) -> None:
    pipeline.meltano("run", "tap-conversations", "target-postgres")

    # Perform & Engage: each person's 9-box value in their latest final review.
    latest: dict[str, tuple[str, str]] = {}
    for detail in sandbox.data.pe_conversation_details.values():
        boxes = [e["value"] for e in detail["data"] or [] if e["element_type"] == "nine_box"]
        if detail["status"] != "final" or not boxes:
            continue
        when = as_instant(detail["completed_date"])
        person = detail["person_api_id"]
        if person not in latest or when > as_instant(latest[person][1]):
            latest[person] = (boxes[0], detail["completed_date"])
    rows = postgres.rows(readme_query("Perform & Engage 365"))
    assert latest, "no final review with a 9-box element: the query proves nothing"
    assert {r["person_api_id"]: r["nine_box"] for r in rows} == {
        person: value for person, (value, _) in latest.items()
    }

    # Respondent: participants who have not read a conversation.
    unread = {
        (c["uid"], p["uid"])
        for c in sandbox.data.respondent_conversations
        for p in c["participants"]
        if not p["read"] and not c["deleted"] and p["uid"] != c["user"]["uid"]
    }
    rows = postgres.rows(readme_query("Respondent"))
    assert unread
    assert sorted((r["conversation_uid"], r["uid"]) for r in rows) == sorted(unread)

    # onQ: conversations open for registration, with how full they are.
    open_ = {
        # PostgreSQL rounds halves away from zero (Python's `round` to even).
        str(c["id"]): (200 * c["registered_user_count"] + c["max_user_count"])
        // (2 * c["max_user_count"])
        for c in sandbox.data.onq_conversations
        if c["register_status"] == "open" and c["max_user_count"] > 0
    }
    rows = postgres.rows(readme_query("onQ"))
    assert open_
    assert {r["id"]: int(r["percent_full"]) for r in rows} == open_


def test_an_incremental_run_reflects_upstream_changes(
    pipeline: Pipeline, postgres: pg_cluster.PostgresCluster, sandbox: Sandbox
) -> None:
    changed = {p: sandbox.mutate(p, changed=5, added=3) for p in ("perform_engage", "onq")}
    changed["respondent"] = sandbox.mutate("respondent", changed=4, added=2)
    pipeline.meltano("run", "tap-conversations", "target-postgres")

    assert_tables_match(postgres, sandbox)  # new values, new rows, still one row per key
    statuses = {
        r["api_id"]: r["status"]
        for r in postgres.rows(f"select api_id, status from {SCHEMA}.perform_engage_conversations")
    }
    current = {c["api_id"]: c["status"] for c in sandbox.data.pe_conversations}
    assert all(statuses[k] == current[k] for k in changed["perform_engage"].changed_keys)


def test_csv_files_hold_every_record_once(pipeline: Pipeline, sandbox: Sandbox) -> None:
    pipeline.meltano("run", "tap-conversations", "target-csv")
    for stream, (key, expected) in expected_tables(sandbox).items():
        with (pipeline.csv_dir / f"{stream}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        keys = [row[key] for row in rows]
        assert sorted(keys) == sorted(str(r[key]) for r in expected), stream
    details = pipeline.csv_dir / "perform_engage_conversation_details.csv"
    with details.open(newline="") as handle:
        first = next(r for r in csv.DictReader(handle) if r["data"] not in ("", "[]"))
    wanted = sandbox.data.pe_conversation_details[first["api_id"]]["data"]
    # target-csv writes nested values as Python literals, not JSON.
    assert ast.literal_eval(first["data"]) == wanted


def test_csv_files_hold_the_elements_as_ordinary_rows(pipeline: Pipeline, sandbox: Sandbox) -> None:
    # As scripts/demo.sh runs it: a full refresh, so every row is written again.
    pipeline.meltano("run", "--full-refresh", "tap-conversations", "target-csv")
    for derived in DERIVED:
        with (pipeline.csv_dir / f"{derived.stream}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        expected = derived.expected(sandbox)
        assert len(rows) == len(expected) > 0, derived.stream
        by_key = {tuple(row[k] for k in derived.key): row for row in rows}
        for want in expected:
            row = by_key[tuple(str(want[k]) for k in derived.key)]
            for field, value in want.items():
                if isinstance(value, (dict, list)):
                    continue  # `sender` of a message: still one nested object
                if isinstance(value, bool):
                    assert row[field].lower() == str(value).lower(), (derived.stream, field)
                    continue
                text = "" if value is None else str(value)
                cell = row[field]
                if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:.*", cell):
                    cell = cell.replace(" ", "T", 1)  # target-csv's timestamp layout
                assert as_instant(cell) == as_instant(text), (derived.stream, field)


def test_an_append_only_target_gets_each_version_once(pipeline: Pipeline, sandbox: Sandbox) -> None:
    """Through Meltano (which keeps the state) into JSON Lines files that are only appended to."""
    out = pipeline.csv_dir.parent / "jsonl-append"
    env = {"TARGET_JSONL_DESTINATION_PATH": str(out)}
    run = ("run", "--state-id-suffix", "append-only", "tap-conversations", "target-jsonl")
    incremental = {
        "perform_engage_conversations": "api_id",
        "perform_engage_conversation_details": "api_id",
        "onq_conversations": "id",
        "respondent_conversations": "uid",
    }

    def keys() -> dict[str, list[str]]:
        return {
            stream: [
                str(json.loads(line)[key])
                for line in (out / f"{stream}.jsonl").read_text().splitlines()
            ]
            for stream, key in incremental.items()
        }

    pipeline.meltano(*run, env=env)
    first = keys()
    for stream, (key, expected) in expected_tables(sandbox).items():
        if stream in incremental:
            assert sorted(first[stream]) == sorted(str(r[key]) for r in expected), stream

    pipeline.meltano(*run, env=env)  # no upstream change: nothing appended
    assert keys() == first

    changed = sandbox.mutate("onq", changed=3, added=0).changed_keys
    pipeline.meltano(*run, env=env)
    after = keys()
    before = len(first["onq_conversations"])
    assert after["onq_conversations"][:before] == first["onq_conversations"]
    assert sorted(after["onq_conversations"][before:]) == sorted(str(k) for k in changed)
    for stream in incremental.keys() - {"onq_conversations"}:
        assert after[stream] == first[stream], stream
