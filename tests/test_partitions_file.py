"""The partitions file, each partition's Meltano environment, and reading Meltano's JSON log."""

from __future__ import annotations

import json
import os
import sys
import typing as t
from pathlib import Path

import pytest
import yaml

from orchestration.meltano_job import LogLine, MeltanoProject, RunOutcome
from orchestration.partitions import Partition, PartitionsError, load_partitions, meltano_env

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("perform_engage", "onq", "respondent")
DECLARED = MeltanoProject(ROOT, executable="unused").declared_settings()


def write(tmp_path: Path, document: t.Any) -> Path:
    path = tmp_path / "partitions.yml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def load(tmp_path: Path, *partitions: dict[str, t.Any]) -> list[Partition]:
    path = write(tmp_path, {"partitions": list(partitions)})
    return list(load_partitions(path, DECLARED).partitions)


def test_the_bundled_file_has_one_sandbox_partition_per_provider() -> None:
    loaded = load_partitions(ROOT / "orchestration" / "partitions.yml", DECLARED)
    assert loaded.target == "target-postgres"
    assert [(p.name, p.provider, p.schema) for p in loaded.partitions] == [
        ("sandbox_perform_engage", "perform_engage", "sandbox_perform_engage"),
        ("sandbox_onq", "onq", "sandbox_onq"),
        ("sandbox_respondent", "respondent", "sandbox_respondent"),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "a", "config": {"onq": {"api_key": "k", "page_sise": 5}}},
            "partition 1 (a): unknown tap setting(s) onq.page_sise",
        ),
        (
            {"name": "a", "config": {"onq": {"api_key": "k"}, "respondent": {"api_key": "k"}}},
            "partition 1 (a): config must hold exactly one provider object",
        ),
        (
            {"name": "a", "config": {"start_date": "2024-01-01"}},
            "(found none)",
        ),
        ({"name": "Tenant-A", "config": {"onq": {}}}, "name 'Tenant-A' must be lowercase"),
        ({"name": "a", "config": {"onq": {}}, "schema": "x;drop"}, "schema 'x;drop' is not"),
        ({"name": "a", "config": {"onq": {}}, "extra": 1}, "expected a mapping with keys"),
    ],
)
def test_a_bad_partition_is_one_line_naming_it(
    tmp_path: Path, entry: dict[str, t.Any], message: str
) -> None:
    with pytest.raises(PartitionsError) as raised:
        load(tmp_path, entry)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_names_and_schemas_are_unique(tmp_path: Path) -> None:
    onq = {"onq": {"api_key": "k"}}
    with pytest.raises(PartitionsError, match=r"name used by more than one partition: \['a'\]"):
        load(tmp_path, {"name": "a", "config": onq}, {"name": "a", "config": onq})
    with pytest.raises(PartitionsError, match=r"schema used by more than one partition: \['s'\]"):
        load(
            tmp_path,
            {"name": "a", "config": onq, "schema": "s"},
            {"name": "b", "config": onq, "schema": "s"},
        )


def test_a_file_that_is_not_a_partitions_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PartitionsError, match="expected a mapping with a 'partitions' list"):
        load_partitions(write(tmp_path, ["a"]), DECLARED)
    with pytest.raises(PartitionsError, match="No such file"):
        load_partitions(tmp_path / "missing.yml", DECLARED)


def test_a_partition_sends_only_its_own_provider(tmp_path: Path) -> None:
    (partition,) = load(
        tmp_path,
        {
            "name": "research_eu",
            "config": {
                "start_date": "2024-01-01T00:00:00Z",
                "respondent": {
                    "api_key": "${EU_KEY}",
                    "api_secret": "${EU_SECRET:-fallback}",
                    "project_ids": ["p1", "p2"],
                    "page_size": 50,
                },
            },
        },
    )
    inherited = {
        "PATH": "/bin",
        "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
        "TAP_CONVERSATIONS_PERFORM_ENGAGE_API_KEY": "another-tenant",
        "TAP_CONVERSATIONS_ONQ_API_SECRET": "another-tenant",
        "TAP_CONVERSATIONS_RESPONDENT_API_URL": "https://another-tenant",
        "EU_KEY": "eu-key",
    }
    env = meltano_env(partition, "target-postgres", PROVIDERS, inherited)
    assert env == {
        "PATH": "/bin",
        "EU_KEY": "eu-key",
        "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS": "0",
        "TAP_CONVERSATIONS_START_DATE": "2024-01-01T00:00:00Z",
        "TAP_CONVERSATIONS_RESPONDENT_API_KEY": "eu-key",
        "TAP_CONVERSATIONS_RESPONDENT_API_SECRET": "fallback",
        "TAP_CONVERSATIONS_RESPONDENT_PROJECT_IDS": '["p1", "p2"]',
        "TAP_CONVERSATIONS_RESPONDENT_PAGE_SIZE": "50",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "research_eu",
    }
    with pytest.raises(PartitionsError, match="environment variable EU_KEY is not set"):
        meltano_env(partition, "target-postgres", PROVIDERS, {})


def test_nested_filters_become_meltano_setting_variables(tmp_path: Path) -> None:
    (partition,) = load(
        tmp_path,
        {
            "name": "pe",
            "config": {"perform_engage": {"conversation_filters": {"status": "final"}}},
        },
    )
    env = meltano_env(partition, "target-postgres", PROVIDERS, {})
    assert env["TAP_CONVERSATIONS_PERFORM_ENGAGE_CONVERSATION_FILTERS_STATUS"] == "final"


def meltano_line(event: str, plugin: str | None = None, **fields: t.Any) -> str:
    entry: dict[str, t.Any] = {"event": event, "level": "info", **fields}
    if plugin:
        entry.update(string_id=plugin, stdio="stderr")
    return json.dumps(entry)


def test_records_are_summed_from_the_taps_metric_lines_only() -> None:
    outcome = RunOutcome(command=[])
    lines = [
        meltano_line("Running job with name 'dev:tap-conversations-to-target-postgres:a' and…"),
        *(
            meltano_line(
                "METRIC: "
                + json.dumps(
                    {"type": "counter", "metric": "record_count", "value": n, "tags": {"stream": s}}
                ),
                plugin,
            )
            for s, n, plugin in [
                ("x", 1, "tap-conversations"),
                ("x", 2, "tap-conversations"),
                ("y", 5, "tap-conversations"),
                ("x", 100, "target-postgres"),
            ]
        ),
        meltano_line("METRIC: not json", "tap-conversations"),
    ]
    for raw in lines:
        outcome.observe(LogLine.parse(raw))
    assert dict(outcome.records) == {"x": 3, "y": 5}
    assert outcome.state_id == "dev:tap-conversations-to-target-postgres:a"


@pytest.mark.parametrize(
    ("meltano_error", "expected"),
    [
        ("Extractor failed", "tap-conversations: onQ stream 'onq_conversations': HTTP 401"),
        ("Loader failed", "target-postgres: connection refused"),
        ("Cannot start plugin", "meltano: Block run completed: Cannot start plugin"),
    ],
)
def test_a_failure_is_the_failing_plugins_last_line(meltano_error: str, expected: str) -> None:
    outcome = RunOutcome(command=[], returncode=1)
    for raw in [
        meltano_line("Sync summary:", "tap-conversations"),
        meltano_line("onQ stream 'onq_conversations': HTTP 401", "tap-conversations"),
        meltano_line("connection refused", "target-postgres"),
        meltano_line("", "target-postgres"),
        json.dumps({"event": "Block run completed", "level": "error", "err": meltano_error}),
    ]:
        outcome.observe(LogLine.parse(raw))
    assert outcome.failure_reason("target-postgres") == expected
    assert not outcome.succeeded


FAKE_MELTANO = """#!{python}
import json, os, sys
if sys.argv[1:] == ["upgrade", "database"]:  # the migration every run first takes a lock for
    with open(os.environ["MELTANO_SYS_DIR_ROOT"] + "/upgraded", "a") as marker:
        marker.write(os.environ["MELTANO_DATABASE_URI"] + "\\n")
    sys.exit(0)
print(json.dumps({{"event": "argv " + " ".join(sys.argv[1:])}}))
for key in sorted(os.environ):
    if key.startswith(("TAP_CONVERSATIONS_", "MELTANO_", "TARGET_")):
        print(json.dumps({{"event": key + "=" + os.environ[key]}}))
print("not json")
sys.exit(3)
"""


def test_a_run_gets_its_own_system_directory_and_streams_every_line(tmp_path: Path) -> None:
    fake = tmp_path / "meltano"
    fake.write_text(FAKE_MELTANO.format(python=sys.executable))
    fake.chmod(0o755)
    project_root = tmp_path / "project"
    project_root.mkdir()
    (project_root / "meltano.yml").write_text((ROOT / "meltano.yml").read_text())
    (partition,) = load(tmp_path, {"name": "a", "config": {"onq": {"api_key": "k"}}})
    seen: list[str] = []

    outcome = MeltanoProject(project_root, executable=str(fake)).run(
        partition,
        "target-postgres",
        lambda line: seen.append(line.text),
        base_env={"PATH": os.environ["PATH"], "TAP_CONVERSATIONS_ONQ_API_SECRET": "other"},
    )

    shared = (project_root / ".meltano").resolve()
    own = shared / "partitions" / "a"
    assert seen == [
        "argv --log-format=json run --state-id-suffix=a tap-conversations target-postgres",
        f"MELTANO_DATABASE_URI=sqlite:///{shared}/meltano.db",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS=false",
        f"MELTANO_SYS_DIR_ROOT={own}",
        "TAP_CONVERSATIONS_METRICS_LOG_LEVEL=INFO",
        "TAP_CONVERSATIONS_ONQ_API_KEY=k",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=a",
        "not json",
    ]
    assert outcome.returncode == 3
    assert outcome.failure_reason("target-postgres") == "meltano exited with code 3"
    # The system database was migrated once, before the run, with the run's own settings.
    assert (own / "upgraded").read_text() == f"sqlite:///{shared}/meltano.db\n"
    assert (shared / ".system-db.lock").exists()
    for kind in ("extractors", "loaders"):
        assert (own / kind).resolve() == shared / kind


def test_provider_settings_in_meltano_yml_or_dotenv_are_refused(tmp_path: Path) -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (tap,) = (p for p in project["plugins"]["extractors"] if p["name"] == "tap-conversations")
    tap["config"] = {"start_date": "2024-01-01", "onq": {"api_key": "shared"}}
    (tmp_path / "meltano.yml").write_text(yaml.safe_dump(project))
    (tmp_path / ".env").write_text(
        "TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS=0\nTAP_CONVERSATIONS_RESPONDENT_API_KEY='x'\n"
    )
    (partition,) = load(tmp_path, {"name": "a", "config": {"onq": {"api_key": "k"}}})

    with pytest.raises(PartitionsError) as raised:
        MeltanoProject(tmp_path, executable="unused").run(partition, "target-postgres", print)

    assert str(raised.value) == (
        "provider settings outside the partitions file would reach every partition; move them "
        "into the partitions file: meltano.yml: onq, .env: TAP_CONVERSATIONS_RESPONDENT_API_KEY"
    )
