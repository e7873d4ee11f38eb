"""Lists that change while a client pages through them.

`Churn` says what happens between two list-page requests of one provider: records deleted
from the front of the list (the ones after them shift back, so a client paging on can skip
one), new records inserted at the front (the rest shift forward: a client sees one twice), or
records updated and moved to the end (as in a list sorted by update time). `ChurnSchedule`
applies them as pages are served and keeps what it did, for tests to compare with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from sandbox.data import Dataset, Key, Record, clone

ChurnKind = Literal["delete", "insert", "move_to_end"]
CHURN_KINDS: tuple[ChurnKind, ...] = ("delete", "insert", "move_to_end")


@dataclass(frozen=True)
class Churn:
    """One change to a provider's conversation list, applied between list-page requests.

    It is applied once `after_page` list pages of that provider were served (counting from
    when it was scheduled), and again after every later page when `every_page` is set: a list
    that never holds still.
    """

    kind: ChurnKind
    after_page: int = 1
    count: int = 1
    every_page: bool = False

    def __post_init__(self) -> None:
        if self.kind not in CHURN_KINDS:
            raise ValueError(f"churn kind must be one of {CHURN_KINDS}, got {self.kind!r}")
        if self.after_page < 1 or self.count < 1:
            raise ValueError("after_page and count must be at least 1")


@dataclass
class ChurnLog:
    """Keys each kind of churn touched so far."""

    deleted: list[Key] = field(default_factory=list)
    inserted: list[Key] = field(default_factory=list)
    moved: list[Key] = field(default_factory=list)

    @property
    def touched(self) -> set[str]:
        return {str(key) for key in (*self.deleted, *self.inserted, *self.moved)}


class ChurnSchedule:
    """Pending churn per provider, applied by the providers' list endpoints."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[Churn]] = {}
        self._pages: dict[str, int] = {}
        self.log: dict[str, ChurnLog] = {}

    def add(self, provider: str, churn: Churn) -> None:
        with self._lock:
            self._pending.setdefault(provider, []).append(churn)
            self._pages[provider] = 0
            self.log.setdefault(provider, ChurnLog())

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def page_served(self, dataset: Dataset) -> None:
        """A list page of `dataset`'s provider was just built: apply what is due."""
        provider = dataset.provider
        with self._lock:
            if not self._pending.get(provider):
                return
            self._pages[provider] += 1
            served = self._pages[provider]
            due = [c for c in self._pending[provider] if served >= c.after_page]
            self._pending[provider] = [
                c for c in self._pending[provider] if served < c.after_page or c.every_page
            ]
            log = self.log[provider]
            for churn in due:
                _apply(dataset, churn, log)


def _apply(dataset: Dataset, churn: Churn, log: ChurnLog) -> None:
    front = dataset.conversations.snapshot()[: churn.count]
    keys = [record[dataset.key] for record in front]
    if churn.kind == "delete":
        dataset.conversations.edit(lambda order: [r for r in order if r[dataset.key] not in keys])
        log.deleted += keys
        return
    now = dataset.tick_past(dataset.latest)
    dataset.latest = now
    if churn.kind == "insert":
        new: list[Record] = [dataset.create(now, now, updated=now) for _ in range(churn.count)]
        dataset.conversations.edit(lambda order: new + order)
        log.inserted += [record[dataset.key] for record in new]
        return
    moved = [dataset.change(clone(record), now) for record in front]
    dataset.conversations.edit(
        lambda order: [r for r in order if r[dataset.key] not in keys] + moved
    )
    log.moved += keys
