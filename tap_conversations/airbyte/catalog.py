"""Translations between the tap's Singer side and Airbyte's: spec, catalog and state.

Everything here works on the tap's public surface: its `config_jsonschema`, the Singer catalog
it discovers (`Tap.catalog_dict`) and Singer state (`{"bookmarks": {stream: ...}}`).
"""

from __future__ import annotations

import copy
import json
import typing as t
from dataclasses import dataclass

from tap_conversations.airbyte.protocol import models

if t.TYPE_CHECKING:
    from singer_sdk import Tap

SingerCatalog = dict[str, t.Any]
SingerState = dict[str, t.Any]


class AirbyteInputError(ValueError):
    """A configured catalog or state this source cannot honour; the message says what to fix."""


def connection_specification(config_schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """The tap's config JSON Schema, with its secrets also marked `airbyte_secret`."""
    schema = copy.deepcopy(config_schema)
    schema.setdefault("$schema", "http://json-schema.org/draft-07/schema#")
    schema.setdefault("title", "Conversations source")
    _mark_secrets(schema)
    return schema


#: Setting names Airbyte takes for secrets (airbyte-cdk's standard tests insist they are
#: marked): a name ending in one of these, or equal to one.
SECRET_LOOKING = ("key", "secret", "password", "token", "credentials", "jwt", "certificate")


def looks_secret(name: str) -> bool:
    return name.lower().replace("-", "_").endswith(SECRET_LOOKING)


def _mark_secrets(schema: dict[str, t.Any]) -> None:
    """`airbyte_secret: true` on every secret, and on every setting whose name looks like one:
    onQ's `api_key` is only the JWT's `kid`, but hiding it costs nothing."""
    for name, prop in schema.get("properties", {}).items():
        if prop.get("secret") or prop.get("writeOnly") or looks_secret(name):
            prop["airbyte_secret"] = True
        _mark_secrets(prop)


def airbyte_catalog(singer_catalog: SingerCatalog) -> t.Any:
    """Each Singer catalog entry as an AirbyteStream (the same schema, key and cursor)."""
    streams = []
    for entry in _plain_json(singer_catalog)["streams"]:
        cursor = entry.get("replication_key")
        modes = [models.SyncMode.full_refresh]
        if cursor:
            modes.append(models.SyncMode.incremental)
        streams.append(
            models.AirbyteStream(
                name=entry["tap_stream_id"],
                json_schema=entry["schema"],
                supported_sync_modes=modes,
                source_defined_cursor=bool(cursor),
                default_cursor_field=[cursor] if cursor else None,
                source_defined_primary_key=[[key] for key in entry.get("key_properties") or []],
            )
        )
    return models.AirbyteCatalog(streams=streams)


def _plain_json(value: t.Any) -> t.Any:
    """The SDK's catalog dict holds enums and tuples; make it plain JSON."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class ConfiguredStream:
    name: str
    incremental: bool
    columns: frozenset[str] | None  # top-level properties asked for; None = all


def configured_streams(configured_catalog: dict[str, t.Any]) -> list[ConfiguredStream]:
    """The streams of an Airbyte ConfiguredAirbyteCatalog (JSON), checked for shape."""
    streams = configured_catalog.get("streams")
    if not isinstance(streams, list):
        msg = "the configured catalog has no 'streams' list"
        raise AirbyteInputError(msg)
    result = []
    for item in streams:
        try:
            name = item["stream"]["name"]
            mode = models.SyncMode(item["sync_mode"])
        except (KeyError, TypeError, ValueError) as error:
            msg = f"configured catalog entry {str(item)[:200]} is malformed ({error!r})"
            raise AirbyteInputError(msg) from None
        properties = (item["stream"].get("json_schema") or {}).get("properties")
        columns = frozenset(properties) if isinstance(properties, dict) else None
        result.append(ConfiguredStream(name, mode == models.SyncMode.incremental, columns))
    return result


def selected_catalog(
    singer_catalog: SingerCatalog, configured: list[ConfiguredStream]
) -> SingerCatalog:
    """The discovered Singer catalog with exactly the configured streams (and columns) selected.

    Sync modes are not written into the Singer catalog: a full-refresh stream keeps the tap's
    replication method and simply gets no incoming state (see `singer_state`).
    """
    catalog: SingerCatalog = _plain_json(singer_catalog)
    by_name = {stream.name: stream for stream in configured}
    known = {entry["tap_stream_id"] for entry in catalog["streams"]}
    unknown = sorted(set(by_name) - known)
    if unknown:
        msg = (
            f"the configured catalog asks for stream(s) {', '.join(unknown)} that this source "
            f"does not offer with its config (it offers: {', '.join(sorted(known))}); "
            "run discover again and refresh the connection's streams"
        )
        raise AirbyteInputError(msg)
    for entry in catalog["streams"]:
        stream = by_name.get(entry["tap_stream_id"])
        for item in entry["metadata"]:
            breadcrumb, metadata = item["breadcrumb"], item["metadata"]
            if not breadcrumb:
                metadata["selected"] = stream is not None
            elif (
                stream is not None
                and stream.columns is not None
                and len(breadcrumb) == 2  # a top-level property
                and metadata.get("inclusion") != "automatic"  # keys and cursors always go
            ):
                metadata["selected"] = breadcrumb[1] in stream.columns
    return catalog


def singer_state(
    state_messages: t.Any, full_refresh: t.Collection[str]
) -> tuple[SingerState, list[str]]:
    """Singer state from Airbyte per-stream state messages, minus the full-refresh streams.

    Returns the state and the names of the streams whose state was dropped. A LEGACY state
    (one blob) is read as the Singer state it was written from; GLOBAL state is not ours.
    """
    if not state_messages:
        return {}, []
    if isinstance(state_messages, dict):
        state_messages = [{"type": "LEGACY", "data": state_messages}]
    if not isinstance(state_messages, list):
        msg = "the state file must hold a JSON array of Airbyte state messages"
        raise AirbyteInputError(msg)
    bookmarks: dict[str, t.Any] = {}
    for message in state_messages:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "STREAM":
            stream = message.get("stream") or {}
            name = (stream.get("stream_descriptor") or {}).get("name")
            if not isinstance(name, str):
                msg = f"a STREAM state message has no stream name: {str(message)[:200]}"
                raise AirbyteInputError(msg)
            bookmarks[name] = stream.get("stream_state") or {}
        elif kind == "LEGACY":
            bookmarks.update((message.get("data") or {}).get("bookmarks") or {})
        else:
            msg = (
                f"state of type {kind!r} is not supported: this source writes per-stream "
                "(STREAM) state; reset the connection's state"
            )
            raise AirbyteInputError(msg)
    dropped = sorted(name for name in bookmarks if name in full_refresh)
    kept = {name: value for name, value in bookmarks.items() if name not in full_refresh}
    return ({"bookmarks": kept} if kept else {}), dropped


def stream_parents(tap: Tap) -> dict[str, str | None]:
    """Each of the tap's streams and the stream it is read from (None for top-level ones)."""
    parents: dict[str, str | None] = dict.fromkeys(tap.streams)
    for name, stream in tap.streams.items():
        for child in stream.child_streams:
            parents[child.name] = name
    return parents


def family_roots(parents: t.Mapping[str, str | None]) -> dict[str, str]:
    """Each stream and its top-level ancestor."""
    roots = {}
    for name in parents:
        root = name
        while (parent := parents.get(root)) is not None:
            root = parent
        roots[name] = root
    return roots


def full_refresh_streams(
    configured: list[ConfiguredStream], parents: t.Mapping[str, str | None]
) -> set[str]:
    """Streams that must start without state.

    A full-refresh stream, and every stream in its family (its ancestors and their other
    descendants): a child stream is read from its parent's records, so a full refresh of the
    child needs a full read of the parent.
    """
    roots = family_roots(parents)
    fresh = {roots.get(stream.name, stream.name) for stream in configured if not stream.incremental}
    return {name for name, root in roots.items() if root in fresh}


def stream_state_changes(
    state: t.Mapping[str, t.Any], last: dict[str, t.Any], streams: t.Collection[str]
) -> list[tuple[str, dict[str, t.Any]]]:
    """(stream, bookmark) for each of `streams` whose bookmark differs from `last` (updated)."""
    changes = []
    for name, bookmark in (state.get("bookmarks") or {}).items():
        if name in streams and last.get(name) != bookmark:
            snapshot = copy.deepcopy(bookmark)
            last[name] = snapshot
            changes.append((name, snapshot))
    return changes
