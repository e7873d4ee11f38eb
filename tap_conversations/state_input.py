"""The state a run starts from (`--state FILE`), read and checked before the SDK uses it.

The SDK reads a state file with a bare `json.loads` and parses bookmarks only when a stream
starts, so a corrupt file or a bookmark like `"01/05/2024"` ends in a traceback that names
neither the file nor the stream. Here each problem is one line: the state file, the stream and
what is wrong, raised as a `StateInputError` before any request is sent.
"""

from __future__ import annotations

import datetime
import json
import typing as t
from pathlib import Path, PurePath

from tap_conversations.errors import ProviderError
from tap_conversations.records import utc_timestamp

EXAMPLE = "2024-01-05T00:00:00Z"


class StateInputError(ProviderError):
    """The state given to the run cannot be used; the message says where and why."""


def state_source(path: str | PurePath | None) -> str:
    return f"state file '{path}'" if path else "state"


def parse_state(text: str, source: str) -> t.Any:
    """The JSON in `text`, or one line saying where it stops being JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        msg = (
            f"The {source} is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}): fix it, or run without --state for a full sync"
        )
        raise StateInputError(msg) from None


def read_state_file(path: str | PurePath) -> dict[str, t.Any]:
    """A state file's content, parsed; `check_state` still has to look at it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"The {state_source(path)} cannot be read: {error}"
        raise StateInputError(msg) from None
    return t.cast("dict[str, t.Any]", parse_state(text, state_source(path)))


def _kind(value: t.Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", list: "a list"}
    names |= {dict: "an object", type(None): "null", str: "the text"}
    return f"{names.get(type(value), type(value).__name__)} {json.dumps(value)[:60]}"


def _timestamp_problem(value: t.Any) -> str | None:
    if value is None:
        return None  # no bookmark yet
    if not isinstance(value, str):
        return f"{_kind(value)}, not a timestamp"
    try:
        datetime.datetime.fromisoformat(value)
        utc_timestamp(value)
    except ValueError:
        return f"{_kind(value)}, not an ISO-8601 timestamp"
    except OverflowError:
        return f"{_kind(value)}, out of range once converted to UTC"
    return None


def _bookmarks(entry: dict[str, t.Any], stream: str, source: str) -> t.Iterator[tuple[str, t.Any]]:
    """(where, value) of every bookmark value in one stream's state entry."""
    if "replication_key_value" in entry:
        yield "replication_key_value", entry["replication_key_value"]
    markers = entry.get("progress_markers")
    if isinstance(markers, dict) and "replication_key_value" in markers:
        yield "progress_markers.replication_key_value", markers["replication_key_value"]
    partitions = entry.get("partitions", [])
    if not isinstance(partitions, list) or not all(isinstance(p, dict) for p in partitions):
        msg = f"The {source}, stream '{stream}': 'partitions' must be a list of objects"
        raise StateInputError(msg)
    for index, partition in enumerate(partitions):
        if "replication_key_value" in partition:
            yield f"partitions[{index}].replication_key_value", partition["replication_key_value"]


def check_state(state: t.Any, source: str, timestamp_streams: t.Collection[str]) -> None:
    """Fail with one line on a state the tap cannot start from.

    `timestamp_streams` are the streams whose bookmarks are timestamps (all incremental
    streams of this tap); entries of other streams are left to the SDK.
    """
    if not isinstance(state, dict):
        msg = f'The {source} is {_kind(state)}; expected an object like {{"bookmarks": {{...}}}}'
        raise StateInputError(msg)
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        msg = f"The {source}: 'bookmarks' is {_kind(bookmarks)}; expected an object per stream"
        raise StateInputError(msg)
    for stream, entry in bookmarks.items():
        if not isinstance(entry, dict):
            msg = f"The {source}, stream '{stream}': the entry is {_kind(entry)}, not an object"
            raise StateInputError(msg)
        if stream not in timestamp_streams:
            continue
        for where, value in _bookmarks(entry, stream, source):
            if (problem := _timestamp_problem(value)) is not None:
                msg = (
                    f"The {source}, stream '{stream}': bookmark {where} is {problem} "
                    f"(e.g. {EXAMPLE}); fix it, or remove the stream's entry to sync it in full"
                )
                raise StateInputError(msg)


def drop_unused_partitions(
    state: t.Mapping[str, t.Any], partition_keys: t.Mapping[str, frozenset[str]]
) -> dict[str, int]:
    """Drop the state partitions no stream of this run reads; how many, per stream.

    `partition_keys` maps each stream to the context keys its partitions have (empty: the
    stream keeps one bookmark and no partitions). A state written by another version or tool
    may hold one partition per parent record (the SDK's default for child streams): re-sent
    in full in every STATE message, 100,000 of them made each STATE 13 MB.
    """
    dropped: dict[str, int] = {}
    for stream, entry in (state.get("bookmarks") or {}).items():
        keys = partition_keys.get(stream)
        if keys is None or not isinstance(entry, dict):
            continue  # not a stream of this tap: left as it is
        partitions = entry.get("partitions")
        if not isinstance(partitions, list) or not partitions:
            continue
        kept = [
            p
            for p in partitions
            if keys and isinstance(p, dict) and set(p.get("context") or {}) == keys
        ]
        if len(kept) < len(partitions):
            dropped[stream] = len(partitions) - len(kept)
            if kept:
                entry["partitions"] = kept
            else:
                del entry["partitions"]
    return dropped
