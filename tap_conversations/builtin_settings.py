"""SDK built-in settings the tap honours but singer-sdk 0.54 does not list by itself."""

from __future__ import annotations

import typing as t

from singer_sdk import Tap
from singer_sdk.helpers.capabilities import EMIT_ACTIVATE_VERSION_CONFIG
from singer_sdk.helpers.capabilities import TapCapabilities as Capability
from typing_extensions import override


class BuiltinSettings(Tap):
    """Mixin for the tap class: `emit_activate_version_messages` appears in `--about`.

    The SDK reads that setting in every full-table stream (`Stream.emit_activate_version_
    messages`) and declares the `activate-version` capability, but leaves the setting out of
    the config schema, so neither `--about` nor a generated `meltano.yml` would show it.
    """

    @classmethod
    @override
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        super().append_builtin_config(config_jsonschema)
        if Capability.ACTIVATE_VERSION in cls.capabilities:
            properties = config_jsonschema.setdefault("properties", {})
            for name, prop in EMIT_ACTIVATE_VERSION_CONFIG["properties"].items():
                properties.setdefault(name, prop)
