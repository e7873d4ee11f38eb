"""Guards for the state-related private SDK surface used in `sdk_compat` (see its docstring).

Each test fails when an SDK upgrade renames, stops calling or changes what is overridden.
"""

from __future__ import annotations

import inspect
import io
import json
import typing as t
from contextlib import redirect_stdout

from singer_sdk.streams.core import Stream

from tap_conversations.client import ApiStream
from tap_conversations.tap import TapConversations
from tests.helpers import sync

if t.TYPE_CHECKING:
    import pytest

    from sandbox import Sandbox


def test_the_sdk_calls_increment_stream_state_once_per_written_record(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    parameters = inspect.signature(Stream._increment_stream_state).parameters
    assert list(parameters) == ["self", "latest_record", "context"]
    assert parameters["context"].kind is inspect.Parameter.KEYWORD_ONLY

    calls: list[str] = []

    def advance(self: ApiStream, record: dict[str, t.Any], context: t.Any) -> None:
        calls.append(self.name)

    monkeypatch.setattr(ApiStream, "advance_bookmark", advance)
    result = sync({k: sandbox.tap_config()[k] for k in ("perform_engage", "onq")})
    for name in ("perform_engage_conversations", "onq_conversations"):
        assert calls.count(name) == len(result.records(name)) > 0


def test_checkpoint_writes_a_state_message_even_when_the_sdk_saw_no_change(
    sandbox: Sandbox,
) -> None:
    tap = TapConversations(config={"onq": sandbox.tap_config()["onq"]})
    stream = t.cast("ApiStream", tap.streams["onq_conversations"])
    assert "is_flushed" in vars(stream.state_manager)  # what `checkpoint` resets
    state = stream.get_context_state(None)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out):
        state["replication_key_value"] = "2023-01-01T00:00:00.000000+00:00"
        stream.checkpoint()
        # The SDK saw no record since, so it considers its state flushed; ours moved.
        state["replication_key_value"] = "2024-01-01T00:00:00.000000+00:00"
        stream.checkpoint()
        out.flush()
    lines = t.cast("io.BytesIO", out.buffer).getvalue().decode().splitlines()
    states = [json.loads(line) for line in lines]
    assert [m["type"] for m in states] == ["STATE", "STATE"]
    bookmark = states[-1]["value"]["bookmarks"]["onq_conversations"]
    assert bookmark["replication_key_value"] == "2024-01-01T00:00:00.000000+00:00"


def test_each_list_page_is_requested_once_and_authenticated(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=60, pe_plans=1, pe_max_limit=7, latency_ms=5)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 4}
    result = sync(config)
    assert len(result.records("perform_engage_conversations")) == 60
    pages = [
        r for r in sandbox.requests if r.path.endswith("/conversations/") and r.method == "GET"
    ]
    offsets = sorted(int(r.query.get("offset", 0)) for r in pages)
    assert offsets == list(range(0, 60 - 1, 6))  # each page once: 0, 6, 12, ... (overlap of 1)
    assert all(r.status == 200 for r in pages)  # authenticated like any other request


def test_the_sdk_still_names_its_progress_markers_as_sdk_compat_drops_them() -> None:
    from singer_sdk.helpers import _state  # noqa: PLC0415 - the private module itself

    state: dict[str, t.Any] = {}
    _state.increment_state(
        state,
        latest_record={"updated": "2024-01-01"},
        replication_key="updated",
        is_sorted=False,
        check_sorted=False,
    )
    assert set(state) == {_state.PROGRESS_MARKERS}
    assert ApiStream.drop_progress_markers(state) is True
    assert state == {}
