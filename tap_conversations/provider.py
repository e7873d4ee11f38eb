"""A vendor API as the tap sees it: its config object and the streams it enables."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from singer_sdk import typing as th

    from tap_conversations.client import ApiStream


@dataclass(frozen=True)
class Provider:
    """One vendor API. Each provider module defines one, and `tap.PROVIDERS` lists them."""

    key: str  # the config object's name, e.g. "perform_engage"
    label: str  # the name used in messages, e.g. "Perform & Engage 365"
    settings: th.ObjectType
    description: str
    streams: tuple[type[ApiStream], ...]
