"""Running `source-conversations` and checking its output against the Airbyte protocol models.

`validate` loads a message into the protocol's own dataclasses (`airbyte-protocol-models-
dataclasses`, generated from the protocol YAML) strictly: every required field present, no
field the model does not have, every enum value one the protocol defines, every scalar of the
declared type.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
import types
import typing as t
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from airbyte_protocol_dataclasses import models  # type: ignore[import-untyped]

from tests.children import DERIVED

if t.TYPE_CHECKING:
    from sandbox import Sandbox

#: stream -> (primary key, cursor or None), as the README's stream table documents them.
STREAMS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "perform_engage_conversations": (("api_id",), "updated_date"),
    "perform_engage_conversation_details": (("api_id",), "updated_date"),
    "perform_engage_conversation_elements": (
        ("conversation_api_id", "position"),
        "conversation_updated_date",
    ),
    "perform_engage_conversation_plans": (("api_id",), None),
    "perform_engage_conversation_plan_details": (("api_id",), None),
    "perform_engage_conversation_plan_users": (("plan_api_id", "api_id"), None),
    "perform_engage_conversation_plan_departments": (("plan_api_id", "api_id"), None),
    "onq_conversations": (("id",), "last_updated_on"),
    "respondent_conversations": (("uid",), "updatedAt"),
    "respondent_messages": (("uid",), "conversation_updated_at"),
    "respondent_participants": (("conversation_uid", "uid"), "conversation_updated_at"),
}


def expected_records(sandbox: Sandbox) -> dict[str, list[dict[str, t.Any]]]:
    """Every record the sandbox holds, per stream, as the tap delivers it."""
    data = sandbox.data
    return {
        "perform_engage_conversations": data.pe_conversations,
        "perform_engage_conversation_details": list(data.pe_conversation_details.values()),
        "perform_engage_conversation_plans": data.pe_plans,
        "perform_engage_conversation_plan_details": list(data.pe_plan_details.values()),
        "onq_conversations": [
            {**r, "id": str(r["id"]), "org_id": str(r["org_id"])} for r in data.onq_conversations
        ],
        "respondent_conversations": data.respondent_conversations,
        **{derived.stream: derived.expected(sandbox) for derived in DERIVED},
    }


#: Credentials the sandbox rejects; like the real ones, they must never be printed.
WRONG_SECRETS = ("wrong-pe-key-5c8e2a91d7", "wrong-respondent-secret-03be77")


def wrong_credentials(sandbox: Sandbox) -> dict[str, t.Any]:
    config = sandbox.tap_config()
    config["perform_engage"]["api_key"] = WRONG_SECRETS[0]
    config["respondent"]["api_secret"] = WRONG_SECRETS[1]
    return {**config, "max_retries": 0, "progress_interval_seconds": 0}


SOURCE_EXECUTABLE = str(Path(sys.executable).parent / "source-conversations")
_WIRE_NAMES = {"global_": "global"}


class ProtocolViolation(AssertionError):
    pass


def _check(annotation: t.Any, value: t.Any, where: str) -> None:
    origin = t.get_origin(annotation)
    if annotation is t.Any:
        return
    if origin in (t.Union, types.UnionType):
        options = [a for a in t.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(t.get_args(annotation)):
            return
        problems = []
        for option in options:
            try:
                _check(option, value, where)
            except ProtocolViolation as problem:
                problems.append(str(problem))
            else:
                return
        raise ProtocolViolation("; ".join(problems))
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolViolation(f"{where}: expected a list, got {value!r}")
        (item_type,) = t.get_args(annotation)
        for i, item in enumerate(value):
            _check(item_type, item, f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolViolation(f"{where}: expected an object, got {value!r}")
        return
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            annotation(value)
        except ValueError:
            raise ProtocolViolation(f"{where}: {value!r} is not a {annotation.__name__}") from None
        return
    if annotation is models.AirbyteStateBlob:  # free-form in the protocol
        if not isinstance(value, dict):
            raise ProtocolViolation(f"{where}: expected an object, got {value!r}")
        return
    if dataclasses.is_dataclass(annotation):
        load(t.cast("type", annotation), value, where)
        return
    scalar_ok = {
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
    }
    if not scalar_ok.get(annotation, False):
        raise ProtocolViolation(f"{where}: {value!r} is not a {annotation}")


def load(model: type, value: t.Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{where}: expected a {model.__name__} object, got {value!r}")
    hints = t.get_type_hints(model, vars(sys.modules[model.__module__]))
    fields = {_WIRE_NAMES.get(f.name, f.name): f for f in dataclasses.fields(model)}
    unknown = set(value) - set(fields)
    if unknown:
        raise ProtocolViolation(f"{where}: {model.__name__} has no field(s) {sorted(unknown)}")
    for wire, field in fields.items():
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if wire not in value:
            if required:
                raise ProtocolViolation(f"{where}: {model.__name__}.{wire} is missing")
            continue
        _check(hints[field.name], value[wire], f"{where}.{wire}")


def validate(message: dict[str, t.Any]) -> None:
    """Raise ProtocolViolation unless `message` is a valid AirbyteMessage."""
    load(models.AirbyteMessage, message, "AirbyteMessage")
    kind = message["type"]
    body = {
        "RECORD": "record",
        "STATE": "state",
        "LOG": "log",
        "SPEC": "spec",
        "CONNECTION_STATUS": "connectionStatus",
        "CATALOG": "catalog",
        "TRACE": "trace",
    }[kind]
    if body not in message:
        raise ProtocolViolation(f"a {kind} message without its '{body}'")


@dataclass
class SourceRun:
    """One `source-conversations` command: its messages (each validated) and exit code."""

    messages: list[dict[str, t.Any]]
    returncode: int
    stdout: str
    stderr: str

    def of_type(self, kind: str) -> list[dict[str, t.Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def records(self, stream: str) -> list[dict[str, t.Any]]:
        records = (m["record"] for m in self.of_type("RECORD"))
        return [record["data"] for record in records if record["stream"] == stream]

    def counts(self) -> Counter[str]:
        return Counter(m["record"]["stream"] for m in self.of_type("RECORD"))

    def traces(self, kind: str) -> list[dict[str, t.Any]]:
        return [m["trace"] for m in self.of_type("TRACE") if m["trace"]["type"] == kind]

    def statuses(self, stream: str) -> list[str]:
        return [
            trace["stream_status"]["status"]
            for trace in self.traces("STREAM_STATUS")
            if trace["stream_status"]["stream_descriptor"]["name"] == stream
        ]

    def streams_without_closing_state(self) -> list[str]:
        """Streams whose last RECORD is not followed by a STATE of theirs."""
        last_record: dict[str, int] = {}
        last_state: dict[str, int] = {}
        for index, message in enumerate(self.messages):
            if message["type"] == "RECORD":
                last_record[message["record"]["stream"]] = index
            elif message["type"] == "STATE":
                last_state[message["state"]["stream"]["stream_descriptor"]["name"]] = index
        return [s for s, i in last_record.items() if last_state.get(s, -1) < i]

    def final_states(self) -> list[dict[str, t.Any]]:
        """The last STATE of each stream: what Airbyte keeps and passes to the next read."""
        last: dict[str, dict[str, t.Any]] = {}
        for message in self.of_type("STATE"):
            state = message["state"]
            last[state["stream"]["stream_descriptor"]["name"]] = state
        return list(last.values())


def run_source(
    args: list[str], timeout: float = 120, env: dict[str, str] | None = None
) -> SourceRun:
    completed = subprocess.run(
        [SOURCE_EXECUTABLE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    messages = []
    for number, line in enumerate(completed.stdout.splitlines(), start=1):
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise ProtocolViolation(f"stdout line {number} is not JSON: {line[:200]}") from None
        validate(message)
        messages.append(message)
    return SourceRun(messages, completed.returncode, completed.stdout, completed.stderr)


def configured_catalog(
    catalog: dict[str, t.Any], modes: t.Mapping[str, str] | None = None
) -> dict[str, t.Any]:
    """A ConfiguredAirbyteCatalog of the streams in `modes` (default: all, incremental if can)."""
    streams = []
    for stream in catalog["streams"]:
        name = stream["name"]
        if modes is not None and name not in modes:
            continue
        can_increment = "incremental" in stream["supported_sync_modes"]
        mode = (modes or {}).get(name, "incremental" if can_increment else "full_refresh")
        streams.append(
            {
                "stream": stream,
                "sync_mode": mode,
                "destination_sync_mode": "append_dedup" if mode == "incremental" else "overwrite",
            }
        )
    configured = {"streams": streams}
    load(models.ConfiguredAirbyteCatalog, configured, "ConfiguredAirbyteCatalog")
    return configured
