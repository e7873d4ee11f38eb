"""`source-conversations` speaks the Airbyte protocol: every command, run as Airbyte runs it.

Each command runs the installed executable in a subprocess; every stdout line is checked
against the protocol models (`tests.airbyte_messages.validate`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import typing as t

import pytest

from sandbox import SECRETS
from tests.airbyte_messages import (
    SOURCE_EXECUTABLE,
    STREAMS,
    WRONG_SECRETS,
    ProtocolViolation,
    SourceRun,
    configured_catalog,
    expected_records,
    run_source,
    validate,
    wrong_credentials,
)
from tests.children import ELEMENTS, assert_rows_match
from tests.helpers import as_instant

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


class Files:
    """Writes the JSON files a command reads, the way Airbyte mounts them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def __call__(self, name: str, content: t.Any) -> str:
        path = self.tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        return str(path)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def discover(files: Files, config: dict[str, t.Any]) -> dict[str, t.Any]:
    run = run_source(["discover", "--config", files("config", config)])
    assert run.returncode == 0, run.stdout[-2000:]
    (catalog,) = run.of_type("CATALOG")
    return t.cast("dict[str, t.Any]", catalog["catalog"])


def read(
    files: Files,
    config: dict[str, t.Any],
    catalog: dict[str, t.Any],
    state: list[dict[str, t.Any]] | None = None,
    env: dict[str, str] | None = None,
) -> SourceRun:
    args = ["read", "--config", files("config", config), "--catalog", files("catalog", catalog)]
    if state is not None:
        args += ["--state", files("state", state)]
    return run_source(args, env=env)


TOP_LEVEL = {
    "perform_engage": "perform_engage_conversations",
    "onq": "onq_conversations",
    "respondent": "respondent_conversations",
}


def test_validation_rejects_what_the_protocol_does_not_allow() -> None:
    record = {"type": "RECORD", "record": {"stream": "s", "data": {}, "emitted_at": 1}}
    validate(record)
    bad = [
        {"type": "RECORD", "record": {"stream": "s", "data": {}}},  # emitted_at missing
        {"type": "RECORD", "record": {**record["record"], "emitted_at": "1"}},
        {"type": "RECORDS", "record": record["record"]},
        {"type": "RECORD", "record": record["record"], "extra": 1},
        {"type": "LOG", "log": {"level": "WARNING", "message": "x"}},
        {"type": "STATE"},
    ]
    for message in bad:
        with pytest.raises(ProtocolViolation):
            validate(message)


def test_spec_is_the_tap_config_schema_with_secrets_marked() -> None:
    run = run_source(["spec"])
    assert run.returncode == 0
    (message,) = run.messages
    schema = message["spec"]["connectionSpecification"]
    assert set(schema["properties"]) >= {"start_date", "perform_engage", "onq", "respondent"}
    secret = {
        f"{provider}.{name}"
        for provider, prop in schema["properties"].items()
        for name, sub in prop.get("properties", {}).items()
        if sub.get("airbyte_secret")
    }
    assert secret == {
        "perform_engage.api_key",
        "onq.api_key",  # only the JWT's kid, but named like a secret (airbyte-cdk's spec lint)
        "onq.api_secret",
        "respondent.api_key",
        "respondent.api_secret",
    }
    assert message["spec"]["supportsIncremental"] is True


def test_discover_describes_every_stream_with_key_and_cursor(
    sandbox: Sandbox, files: Files
) -> None:
    catalog = discover(files, sandbox.tap_config())
    streams = {stream["name"]: stream for stream in catalog["streams"]}
    assert set(streams) == set(STREAMS)
    for name, (key, cursor) in STREAMS.items():
        stream = streams[name]
        assert stream["source_defined_primary_key"] == [[field] for field in key], name
        assert set(key) <= set(stream["json_schema"]["properties"]), name
        if cursor:
            assert stream["supported_sync_modes"] == ["full_refresh", "incremental"], name
            assert stream["source_defined_cursor"] is True
            assert stream["default_cursor_field"] == [cursor]
        else:
            assert stream["supported_sync_modes"] == ["full_refresh"], name
            assert "default_cursor_field" not in stream


def test_read_sends_every_record_once_then_only_changes_with_the_state_it_sent(
    sandbox: Sandbox, files: Files
) -> None:
    config = {**sandbox.tap_config(), "progress_interval_seconds": 0}
    catalog = configured_catalog(discover(files, config))
    first = read(files, config, catalog)
    assert first.returncode == 0, first.stdout[-3000:]
    assert first.stderr == ""  # logs travel as LOG messages
    assert first.of_type("LOG")
    expected = expected_records(sandbox)
    for stream, (key, _) in STREAMS.items():
        assert_rows_match(first.records(stream), expected[stream], key)
        running = ["RUNNING"] if expected[stream] else []
        assert first.statuses(stream) == ["STARTED", *running, "COMPLETE"], stream
    for message in first.of_type("RECORD"):
        assert message["record"]["emitted_at"] > 1_700_000_000_000  # milliseconds
    assert first.streams_without_closing_state() == []
    state = first.final_states()
    with_records = {stream for stream, rows in expected.items() if rows}
    assert with_records >= set(TOP_LEVEL.values())
    assert {s["stream"]["stream_descriptor"]["name"] for s in state} >= with_records
    assert all(s["type"] == "STREAM" for s in state)
    assert "progress_markers" not in json.dumps(state)

    changes = {p: sandbox.mutate(p, changed=4, added=3) for p in ("perform_engage", "onq")}
    changes["respondent"] = sandbox.mutate("respondent", changed=3, added=2)
    second = read(files, config, catalog, state)
    assert second.returncode == 0, second.stdout[-3000:]
    assert second.streams_without_closing_state() == []
    now = expected_records(sandbox)
    for provider, stream in TOP_LEVEL.items():
        (key,), cursor = STREAMS[stream]
        changed = {str(k) for k in changes[provider].changed_keys + changes[provider].added_keys}
        bookmark = next(
            s["stream"]["stream_state"]["replication_key_value"]
            for s in state
            if s["stream"]["stream_descriptor"]["name"] == stream
        )
        at_bookmark = {
            str(r[key]) for r in now[stream] if as_instant(r[cursor]) == as_instant(bookmark)
        }
        got = [str(k) for k in (r[key] for r in second.records(stream))]
        assert len(got) == len(set(got)), f"{stream}: a record sent twice"
        assert changed <= set(got) <= changed | at_bookmark, stream
    # Children follow their parents; full-table plans are read in full every time.
    assert {r["api_id"] for r in second.records("perform_engage_conversation_details")} == {
        r["api_id"] for r in second.records("perform_engage_conversations")
    }
    assert {r["conversation_api_id"] for r in second.records(ELEMENTS.stream)} <= {
        r["api_id"] for r in second.records("perform_engage_conversation_details")
    }
    assert second.counts()["perform_engage_conversation_plans"] == len(sandbox.data.pe_plans)


def test_full_refresh_reads_everything_whatever_the_state(sandbox: Sandbox, files: Files) -> None:
    config = {"onq": sandbox.tap_config()["onq"], "progress_interval_seconds": 0}
    catalog = discover(files, config)
    first = read(files, config, configured_catalog(catalog))
    assert first.counts()["onq_conversations"] == len(sandbox.data.onq_conversations)

    full = configured_catalog(catalog, {"onq_conversations": "full_refresh"})
    again = read(files, config, full, first.final_states())
    assert again.returncode == 0
    assert again.counts()["onq_conversations"] == len(sandbox.data.onq_conversations)
    incremental = read(files, config, configured_catalog(catalog), first.final_states())
    assert incremental.counts()["onq_conversations"] < len(sandbox.data.onq_conversations) // 2


def test_a_full_refresh_child_reads_its_whole_family(sandbox: Sandbox, files: Files) -> None:
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    catalog = discover(files, config)
    first = read(files, config, configured_catalog(catalog))
    modes = {
        "perform_engage_conversations": "incremental",
        "perform_engage_conversation_details": "full_refresh",
    }
    second = read(files, config, configured_catalog(catalog, modes), first.final_states())
    assert second.returncode == 0
    every = len(sandbox.data.pe_conversations)
    assert second.counts()["perform_engage_conversation_details"] == every


def test_only_the_configured_streams_are_read(sandbox: Sandbox, files: Files) -> None:
    config = {**sandbox.tap_config(), "progress_interval_seconds": 0}
    catalog = discover(files, config)
    modes = {
        "perform_engage_conversation_plans": "full_refresh",
        "onq_conversations": "incremental",
    }
    run = read(files, config, configured_catalog(catalog, modes))
    assert run.returncode == 0
    assert run.counts() == {
        "perform_engage_conversation_plans": len(sandbox.data.pe_plans),
        "onq_conversations": len(sandbox.data.onq_conversations),
    }
    streams = {t["stream_status"]["stream_descriptor"]["name"] for t in run.traces("STREAM_STATUS")}
    assert streams == set(modes)
    states = {s["stream"]["stream_descriptor"]["name"] for s in run.final_states()}
    assert states <= set(modes)


def test_a_child_stream_can_be_read_without_its_parent(sandbox: Sandbox, files: Files) -> None:
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    catalog = discover(files, config)
    only = configured_catalog(catalog, {"perform_engage_conversation_details": "incremental"})
    run = read(files, config, only)
    assert run.returncode == 0
    every = len(sandbox.data.pe_conversations)
    assert run.counts() == {"perform_engage_conversation_details": every}


def test_a_stream_the_source_does_not_offer_is_a_config_error(
    sandbox: Sandbox, files: Files
) -> None:
    config = {"onq": sandbox.tap_config()["onq"]}
    catalog = configured_catalog(discover(files, {**sandbox.tap_config()}))
    run = read(files, config, catalog)
    assert run.returncode == 1
    (error,) = run.traces("ERROR")
    assert error["error"]["failure_type"] == "config_error"
    assert "respondent_messages" in error["error"]["message"]
    assert not run.of_type("RECORD")


def test_wrong_credentials_fail_the_read_in_one_line_without_secrets(
    sandbox: Sandbox, files: Files
) -> None:
    config = wrong_credentials(sandbox)
    catalog = configured_catalog(discover(files, config))
    run = read(files, config, catalog)
    assert run.returncode == 1
    (error,) = run.traces("ERROR")
    message = error["error"]["message"]
    assert "401" in message
    assert "\n" not in message
    assert "stack_trace" not in error["error"]
    assert "Traceback" not in run.stdout + run.stderr
    for secret in (*SECRETS, *WRONG_SECRETS):
        assert secret not in run.stdout + run.stderr
    # Providers fail independently: onQ's credentials are right, its stream completes.
    assert "Perform & Engage" in message
    assert "Respondent" in message
    assert run.statuses("onq_conversations") == ["STARTED", "RUNNING", "COMPLETE"]
    assert run.counts()["onq_conversations"] == len(sandbox.data.onq_conversations)
    for name in STREAMS:
        if not name.startswith("onq"):
            assert run.statuses(name)[-1:] == ["INCOMPLETE"], name
            assert "COMPLETE" not in run.statuses(name), name


def test_at_debug_level_the_error_carries_a_redacted_traceback(
    sandbox: Sandbox, files: Files
) -> None:
    config = wrong_credentials(sandbox)
    catalog = discover(files, config)
    only = configured_catalog(catalog, {"perform_engage_conversations": "incremental"})
    run = read(files, config, only, env={"TAP_CONVERSATIONS_LOGLEVEL": "DEBUG"})
    assert run.returncode == 1
    (error,) = run.traces("ERROR")
    assert "Traceback" in error["error"]["stack_trace"]
    assert any(m["log"]["level"] == "DEBUG" for m in run.of_type("LOG"))
    assert run.stderr == ""
    for secret in (*SECRETS, *WRONG_SECRETS):
        assert secret not in run.stdout


def test_a_bad_config_is_a_config_error_naming_each_problem(files: Files) -> None:
    config = {
        "onq": {"api_key": "k", "api_secret": "s3cr3t-value", "api_url": "ftp://x"},
        "respondent": {"api_key": 987654321, "api_secret": "r3sp-s3cr3t"},  # a number: echoed
    }
    run = run_source(["discover", "--config", files("config", config)])
    assert run.returncode == 1
    (error,) = run.traces("ERROR")
    assert error["error"]["failure_type"] == "config_error"
    for problem in ("api_url", "issuer", "subject", "audience", "respondent.api_key"):
        assert problem in error["error"]["message"]
    for secret in ("s3cr3t-value", "987654321", "r3sp-s3cr3t"):
        assert secret not in run.stdout + run.stderr


def test_check_reports_each_provider_with_wrong_credentials_without_secrets(
    sandbox: Sandbox, files: Files
) -> None:
    good = run_source(["check", "--config", files("config", sandbox.tap_config())])
    assert good.returncode == 0
    (status,) = good.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED"

    bad = run_source(["check", "--config", files("config", wrong_credentials(sandbox))])
    assert bad.returncode == 0  # a FAILED status is a result, as Airbyte's own CDK reports it
    (status,) = bad.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    message = status["connectionStatus"]["message"]
    assert "\n" not in message
    assert "perform_engage.api_key" in message
    assert "respondent.api_secret" in message
    assert "onQ" not in message  # its credentials are right
    for secret in (*SECRETS, *WRONG_SECRETS):
        assert secret not in bad.stdout + bad.stderr


def test_a_cancelled_read_ends_incomplete_and_its_state_loses_nothing(
    sandbox_factory: t.Callable[..., Sandbox], files: Files
) -> None:
    """Airbyte cancels a sync with SIGTERM; the next read starts from the state it got."""
    sandbox = sandbox_factory(pe_conversations=150, pe_plans=2, pe_max_limit=20, latency_ms=10)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 2}
    catalog = configured_catalog(discover(files, config))
    args = ["read", "--config", files("config", config), "--catalog", files("catalog", catalog)]
    with subprocess.Popen(
        [SOURCE_EXECUTABLE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        lines, records = [], 0
        for line in process.stdout:
            lines.append(line)
            records += '"type":"RECORD"' in line and "perform_engage_conversations" in line
            if records == 20:
                process.send_signal(signal.SIGTERM)
                break
        # Read on through the same buffered reader (communicate would skip what it holds).
        rest = process.stdout.read()
        stderr = process.stderr.read() if process.stderr else ""
        process.wait(timeout=60)
    assert process.returncode == 143  # 128 + SIGTERM, as the tap
    assert stderr == ""
    lines += rest.splitlines()
    cancelled = [json.loads(line) for line in lines]
    for message in cancelled:
        validate(message)
    run = SourceRun(cancelled, 1, "".join(lines), "")
    (error,) = run.traces("ERROR")
    assert error["error"]["failure_type"] == "transient_error"
    assert run.statuses("perform_engage_conversations")[-1] == "INCOMPLETE"
    delivered = {r["api_id"] for r in run.records("perform_engage_conversations")}
    assert 20 <= len(delivered) < 150

    resumed = read(files, config, catalog, run.final_states())
    assert resumed.returncode == 0
    again = {r["api_id"] for r in resumed.records("perform_engage_conversations")}
    assert delivered | again == {c["api_id"] for c in sandbox.data.pe_conversations}


def test_a_read_cancelled_while_records_are_written_resumes_with_exactly_the_rest(
    sandbox_factory: t.Callable[..., Sandbox], files: Files
) -> None:
    """A SIGTERM while the source is blocked writing a record (the platform reads nothing for a
    while) stops it at the next record boundary once the write ends, so the next read sends
    each record the cancelled one did not, and no other."""
    sandbox = sandbox_factory(onq_conversations=6_000)
    config = {"onq": sandbox.tap_config()["onq"]}
    catalog = configured_catalog(discover(files, config))
    args = ["read", "--config", files("config", config), "--catalog", files("catalog", catalog)]
    with subprocess.Popen(
        [SOURCE_EXECUTABLE, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        head = b""
        while b'"type":"RECORD"' not in head:
            chunk = process.stdout.read1(1 << 16)
            assert chunk, "the source ended before it wrote a record"
            head += chunk
        time.sleep(0.5)  # the pipe is full: the source waits in the middle of a window
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 143
    text = (head + rest).decode()
    cancelled = [json.loads(line) for line in text.splitlines()]  # every line whole
    run = SourceRun(cancelled, 1, text, "")
    delivered = [r["id"] for r in run.records("onq_conversations")]
    assert 0 < len(delivered) < 6_000

    resumed = read(files, config, catalog, run.final_states())
    assert resumed.returncode == 0
    again = [r["id"] for r in resumed.records("onq_conversations")]
    assert not set(delivered) & set(again)
    assert sorted(delivered + again) == sorted(str(c["id"]) for c in sandbox.data.onq_conversations)
