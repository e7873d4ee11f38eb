"""`schema_evolution` in whole runs against a sandbox that sends undocumented fields
(`sandbox.undocumented`): in-process, through the CLI, discovery and the Airbyte source."""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest

from sandbox import Sandbox, undocumented
from tap_conversations.discovery import describe_first_pages
from tap_conversations.tap import TapConversations
from tests.airbyte_messages import configured_catalog, run_source
from tests.helpers import SyncResult, run_cli, sync

SIZES: dict[str, t.Any] = {
    "pe_conversations": 16,
    "pe_plans": 4,
    "pe_max_limit": 5,
    "onq_conversations": 14,
    "respondent_conversations": 9,
    "respondent_max_page_size": 4,
}
#: stream -> (key, nested arrays whose elements carry fields, derived from an array: the
#: array's name). Detail and list streams carry the top-level fields.
STREAMS = {
    "onq_conversations": (),
    "perform_engage_conversations": (),
    "perform_engage_conversation_details": ("data",),
    "perform_engage_conversation_plans": (),
    "perform_engage_conversation_plan_details": ("assigned_users",),
    "respondent_conversations": ("messages", "participants"),
}
DERIVED = (
    "perform_engage_conversation_elements",
    "perform_engage_conversation_plan_users",
    "respondent_messages",
    "respondent_participants",
)


@pytest.fixture
def noisy(sandbox_factory: t.Callable[..., Sandbox]) -> Sandbox:
    return sandbox_factory(undocumented_fields=True, **SIZES)


def described(schema: dict[str, t.Any], path: tuple[str, ...]) -> bool:
    node: t.Any = schema
    for crumb in path:
        node = node.get(crumb) if isinstance(node, dict) else None
    return isinstance(node, dict)


def assert_described_before_carried(result: SyncResult) -> None:
    """Every RECORD's undocumented fields are in the last SCHEMA of its stream before it."""
    schemas: dict[str, dict[str, t.Any]] = {}
    for message in result.messages:
        if message["type"] == "SCHEMA":
            schemas[message["stream"]] = message["schema"]
        elif message["type"] == "RECORD":
            schema, record = schemas[message["stream"]], message["record"]
            for name, value in record.items():
                if name.startswith("x_"):
                    assert described(schema, ("properties", name)), (message["stream"], name)
                for element in value if isinstance(value, list) else ():
                    for inner in (n for n in element if n.startswith("x_")):
                        path = ("properties", name, "items", "properties", inner)
                        assert described(schema, path), (message["stream"], name, inner)


def test_evolve_delivers_every_undocumented_value_described_first(noisy: Sandbox) -> None:
    config = noisy.tap_config()
    config["onq"]["page_size"] = 4  # `x_labels` first arrives on onQ's third page
    result = sync(config)
    assert_described_before_carried(result)
    expected = {
        "onq_conversations": ("id", noisy.data.onq_conversations),
        "perform_engage_conversations": ("api_id", noisy.data.pe_conversations),
        "perform_engage_conversation_details": (
            "api_id",
            list(noisy.data.pe_conversation_details.values()),
        ),
        "perform_engage_conversation_plans": ("api_id", noisy.data.pe_plans),
        "perform_engage_conversation_plan_details": (
            "api_id",
            list(noisy.data.pe_plan_details.values()),
        ),
        "respondent_conversations": ("uid", noisy.data.respondent_conversations),
    }
    for stream, arrays in STREAMS.items():
        key, served = expected[stream]
        by_key = {str(record[key]): record for record in result.records(stream)}
        assert len(by_key) == len(served) > 0, stream
        for want in served:
            got = by_key[str(want[key])]
            for name in undocumented.TOP_LEVEL:
                assert got.get(name) == want.get(name), (stream, name)
            for array in arrays:
                got_notes = [{n: e.get(n) for n in undocumented.NESTED} for e in got[array] or ()]
                want_notes = [{n: e.get(n) for n in undocumented.NESTED} for e in want[array] or ()]
                assert got_notes == want_notes, (stream, array)
        # `x_labels` first appears in the second half of the list: later pages or details.
        assert any("x_labels" in record for record in by_key.values()), stream
        assert not all("x_labels" in record for record in by_key.values()), stream
    for stream in DERIVED:
        rows = result.records(stream)
        assert rows, stream
        assert all(row["x_note"].startswith("note ") for row in rows), stream
        assert any("x_rank" in row for row in rows), stream


def test_evolve_in_a_cli_run_logs_one_line_per_stream_and_field(
    noisy: Sandbox, tmp_path: Path
) -> None:
    completed = run_cli([], noisy.tap_config(), tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    new = [line for line in completed.stderr.splitlines() if ": new field '" in line]
    said = {line.split(" | ")[-1] for line in new}
    assert len(said) == len(new)  # once per stream and field
    assert "onQ stream 'onq_conversations': new field 'x_category' (string) kept" in said
    assert (
        "Respondent stream 'respondent_conversations': new field 'messages[].x_rank' (number) "
        "kept" in said
    )
    assert "Respondent stream 'respondent_messages': new field 'x_rank' (number) kept" in said
    assert "Traceback" not in completed.stderr


def test_freeze_ends_each_provider_with_one_line(noisy: Sandbox, tmp_path: Path) -> None:
    config = {**noisy.tap_config(), "schema_evolution": "freeze"}
    completed = run_cli([], config, tmp_path)
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if "| ERROR" in line]
    frozen = [line for line in errors if "schema_evolution is freeze" in line]
    assert len(frozen) == 3, errors  # one per provider
    assert any("stream 'onq_conversations': field 'x_" in line for line in frozen)
    assert "Traceback" not in completed.stderr
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    assert not [m for m in records if m["type"] == "RECORD" and "x_category" in m["record"]]


def test_discard_drops_every_undocumented_field(noisy: Sandbox) -> None:
    result = sync({**noisy.tap_config(), "schema_evolution": "discard"})
    for stream in (*STREAMS, *DERIVED):
        for record in result.records(stream):
            assert not [n for n in json.dumps(record).split('"') if n.startswith("x_")], stream
    assert all(
        not any(n.startswith("x_") for n in json.dumps(m["schema"]).split('"'))
        for m in result.messages
        if m["type"] == "SCHEMA"
    )


def without_clock(stdout: str) -> list[dict[str, t.Any]]:
    """The messages without what the clock decides: `time_extracted` and the SDK's signposts
    (the run's start time) in STATE."""
    messages = [json.loads(line) for line in stdout.splitlines()]
    for message in messages:
        message.pop("time_extracted", None)
    text = re.sub(
        r'"replication_key_signpost": "[^"]*"',
        '"replication_key_signpost": ""',
        json.dumps(messages),
    )
    return t.cast("list[dict[str, t.Any]]", json.loads(text))


def test_a_run_without_new_fields_is_the_same_in_every_mode(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    outputs = {}
    for mode in ("discard", "evolve", "freeze"):
        completed = run_cli([], {**sandbox.tap_config(), "schema_evolution": mode}, tmp_path)
        assert completed.returncode == 0, completed.stderr[-2000:]
        outputs[mode] = without_clock(completed.stdout)
    assert outputs["evolve"] == outputs["discard"] == outputs["freeze"]
    schemas = [m for m in outputs["evolve"] if m["type"] == "SCHEMA"]
    assert len(schemas) == len({m["stream"] for m in schemas})  # one per stream, as before


def test_discover_with_credentials_describes_first_page_fields(
    noisy: Sandbox, tmp_path: Path
) -> None:
    completed = run_cli(["--discover"], noisy.tap_config(), tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    catalog = {e["tap_stream_id"]: e for e in json.loads(completed.stdout)["streams"]}
    onq = catalog["onq_conversations"]
    assert onq["schema"]["properties"]["x_category"] == {"type": ["string", "null"]}
    breadcrumbs = [m["breadcrumb"] for m in onq["metadata"]]
    assert ["properties", "x_category"] in breadcrumbs  # `meltano select` can select it
    respondent = catalog["respondent_conversations"]["schema"]["properties"]
    assert respondent["messages"]["items"]["properties"]["x_note"] == {"type": ["string", "null"]}
    # Detail and derived streams keep their documented schema (a sync evolves them).
    details = catalog["perform_engage_conversation_details"]["schema"]["properties"]
    assert "x_category" not in details


def test_discover_without_credentials_or_when_a_request_fails_is_the_documented_schema(
    noisy: Sandbox, tmp_path: Path
) -> None:
    plain = run_cli(["--discover"], {}, tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "x_category" not in plain.stdout
    assert "the catalog has the documented schemas only" in plain.stderr
    config = noisy.tap_config()
    config["onq"] = {**config["onq"], "api_url": "http://127.0.0.1:9/onq"}
    failed = run_cli(["--discover"], {"onq": config["onq"], "max_retries": 0}, tmp_path)
    assert failed.returncode == 0, failed.stderr[-2000:]
    assert "x_category" not in failed.stdout
    warnings = [line for line in failed.stderr.splitlines() if "| WARNING" in line]
    assert len(warnings) == 1, failed.stderr[-2000:]
    assert warnings[0].split(" | ")[-1].startswith("onQ stream 'onq_conversations': ")
    assert warnings[0].endswith(
        "; discovery could not read the first page, so the catalog has the documented schema"
    )
    assert "Traceback" not in failed.stderr


def test_a_discovered_field_deselected_in_the_catalog_is_not_sent(noisy: Sandbox) -> None:
    tap = TapConversations(config=noisy.tap_config(), setup_mapper=False)
    describe_first_pages(tap)
    catalog = tap.catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if entry["tap_stream_id"] == "onq_conversations" and item["breadcrumb"] == [
                "properties",
                "x_category",
            ]:
                item["metadata"]["selected"] = False
    result = sync(noisy.tap_config(), catalog=catalog)
    records = result.records("onq_conversations")
    assert len(records) == len(noisy.data.onq_conversations)
    assert all("x_category" not in r and "x_score" in r for r in records)
    assert all("x_category" in r for r in result.records("respondent_conversations"))


def test_the_airbyte_source_discovers_and_reads_undocumented_fields(
    noisy: Sandbox, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"onq": noisy.tap_config()["onq"]}))
    discovered = run_source(["discover", "--config", str(config)])
    assert discovered.returncode == 0, discovered.stdout[-2000:]
    (message,) = discovered.of_type("CATALOG")
    (stream,) = message["catalog"]["streams"]
    assert stream["json_schema"]["properties"]["x_category"] == {"type": ["string", "null"]}
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(configured_catalog(message["catalog"])))
    run = run_source(["read", "--config", str(config), "--catalog", str(catalog)])
    assert run.returncode == 0, run.stdout[-2000:]
    records = run.records("onq_conversations")
    want = {str(r["id"]): r["x_category"] for r in noisy.data.onq_conversations}
    assert {r["id"]: r["x_category"] for r in records} == want


def test_a_grown_schema_reaches_identity_maps_and_leaves_transforming_maps_alone(
    noisy: Sandbox,
) -> None:
    config = {
        "onq": noisy.tap_config()["onq"],
        "stream_maps": {"onq_copy": {"__source__": "onq_conversations"}},
    }
    result = sync(config)
    schemas: dict[str, list[dict[str, t.Any]]] = {}
    for message in result.messages:
        if message["type"] == "SCHEMA":
            schemas.setdefault(message["stream"], []).append(message["schema"])
    assert len(schemas["onq_conversations"]) == 2
    assert "x_category" not in schemas["onq_conversations"][0]["properties"]
    assert "x_category" in schemas["onq_conversations"][1]["properties"]
    assert all("x_category" not in s["properties"] for s in schemas["onq_copy"])
