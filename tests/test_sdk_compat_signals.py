"""Guards for the signal handling in `sdk_compat.CompatTap`: they fail when an SDK upgrade
stops installing `_handle_termination` for SIGTERM/SIGINT or changes its signature."""

from __future__ import annotations

import inspect
import signal

import pytest
from singer_sdk import Tap
from singer_sdk.plugin_base import PluginBase

from tap_conversations.errors import Terminated
from tap_conversations.sdk_compat import CompatTap
from tap_conversations.tap import TapConversations


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


def test_the_handler_stops_waits_and_raises_with_the_shell_exit_code() -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        tap = TapConversations(config={}, validate_config=False)
        with pytest.raises(Terminated) as raised:
            tap._handle_termination(signal.SIGTERM, None)
        assert raised.value.exit_code == 143
        assert raised.value.signal_name == "SIGTERM"
        assert tap.stopping.is_set()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def deliver(tap: TapConversations, signals: list[int], steps: list[str]) -> None:
    """A delivery (records written, then the bookmark moved) that `signals` come during."""
    with tap.delivery():
        steps.append("written")
        for signum in signals:
            tap._handle_termination(signum, None)  # held: nothing raised here
        steps.append("bookmark moved")


def test_a_signal_during_a_delivery_is_raised_when_the_delivery_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    steps: list[str] = []
    try:
        tap = TapConversations(config={}, validate_config=False)
        with pytest.raises(Terminated) as raised:
            deliver(tap, [signal.SIGTERM], steps)
        assert steps == ["written", "bookmark moved"]
        assert raised.value.exit_code == 143
        assert tap.stopping.is_set()
        assert not tap.delivery.active
        assert not tap.delivery.holding

        exits: list[int] = []  # a second signal while one is held ends the process at once
        monkeypatch.setattr("os._exit", exits.append)
        again = TapConversations(config={}, validate_config=False)
        with pytest.raises(Terminated):
            deliver(again, [signal.SIGINT, signal.SIGINT], steps)
        assert exits == [130]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
