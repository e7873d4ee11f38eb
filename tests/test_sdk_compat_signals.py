"""Guards for the signal handling in `sdk_compat.CompatTap`: they fail when an SDK upgrade
stops installing `_handle_termination` for SIGTERM/SIGINT or changes its signature."""

from __future__ import annotations

import inspect
import io
import json
import signal
import threading
import typing as t
from contextlib import redirect_stdout

import pytest
from singer_sdk import Tap
from singer_sdk.plugin_base import PluginBase

from tap_conversations.errors import Interrupted, Terminated
from tap_conversations.sdk_compat import GRACE_SECONDS, CompatTap, exit_soon
from tap_conversations.tap import TapConversations

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox import Sandbox


def test_the_sdk_still_has_the_termination_handler_we_override() -> None:
    for owner in (PluginBase, Tap):
        assert "_handle_termination" in vars(owner), owner
        parameters = list(inspect.signature(vars(owner)["_handle_termination"]).parameters)
        assert parameters == ["self", "signum", "frame"], owner


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_constructing_the_tap_installs_our_handler(signum: int) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        tap = TapConversations(config={}, validate_config=False)
        handler = signal.getsignal(signum)
        assert getattr(handler, "__func__", None) is CompatTap._handle_termination
        assert getattr(handler, "__self__", None) is tap
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@pytest.fixture
def tap() -> Iterator[TapConversations]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield TapConversations(config={}, validate_config=False)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def test_the_handler_asks_the_run_to_stop_and_starts_the_watchdog(
    tap: TapConversations, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdogs: list[int] = []
    monkeypatch.setattr("tap_conversations.sdk_compat.tap.exit_soon", watchdogs.append)
    tap.raise_if_stopping()  # nothing asked yet: the record goes on
    tap._handle_termination(signal.SIGTERM, None)  # raises nothing: the run stops by itself
    assert tap.stopping.is_set()  # every wait ends at once
    assert watchdogs == [143]
    with pytest.raises(Terminated) as raised:  # at the next record boundary
        tap.raise_if_stopping()
    assert raised.value.exit_code == 143
    assert raised.value.signal_name == "SIGTERM"


def test_a_second_signal_exits_at_once(
    tap: TapConversations, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[int] = []
    monkeypatch.setattr("tap_conversations.sdk_compat.tap.exit_soon", lambda code: None)
    monkeypatch.setattr("os._exit", exits.append)
    tap._handle_termination(signal.SIGINT, None)
    assert exits == []
    tap._handle_termination(signal.SIGINT, None)
    assert exits == [130]


def test_the_watchdog_exits_with_the_code_once_its_grace_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    monkeypatch.setattr("os._exit", fake_exit)
    exit_soon(130, grace=0.05)
    assert exited.wait(5)
    assert codes == [130]
    assert GRACE_SECONDS <= 3  # the brief: exit within a few seconds of the signal


def test_an_interrupted_wait_ends_the_sync_as_terminated_after_writing_the_state(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait that ends on the signal (`errors.Interrupted`) stops the run like a record
    boundary does: `Terminated`, after the STATE of what was written."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        tap = TapConversations(config={"onq": sandbox.tap_config()["onq"]})
        stream = tap.streams["onq_conversations"]

        def waiting(context: t.Any) -> t.Iterator[dict[str, t.Any]]:
            tap.request_stop(signal.SIGTERM)  # as the handler does
            raise Interrupted
            yield {}

        monkeypatch.setattr(stream, "get_records", waiting)
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        with redirect_stdout(out), pytest.raises(Terminated) as raised:
            tap.sync_all()
        assert raised.value.exit_code == 143
        lines = t.cast("io.BytesIO", out.buffer).getvalue().splitlines()
        messages = [json.loads(line) for line in lines]
        assert messages[-1]["type"] == "STATE"
        assert not [m for m in messages if m["type"] == "RECORD"]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
