"""Lists that change while they are paged: nothing present and unchanged is ever lost.

Each scenario changes a provider's list between two of its page requests (`sandbox.churn`):
records deleted from the front (the rest shift back past a page boundary), inserted at the
front (the rest shift forward: one comes twice), or updated and moved to the end.
"""

from __future__ import annotations

import logging
import typing as t
from collections import Counter

import pytest

from sandbox import CHURN_KINDS, Churn
from tests.helpers import sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox

#: provider -> (list stream, key); Perform & Engage pages by limit/offset, the others by number.
LISTS = {
    "perform_engage": ("perform_engage_conversations", "api_id"),
    "respondent": ("respondent_conversations", "uid"),
    "onq": ("onq_conversations", "id"),
}


def only(sandbox: Sandbox, provider: str, **extra: t.Any) -> dict[str, t.Any]:
    return {provider: {**sandbox.tap_config()[provider], **extra}}


def current_keys(sandbox: Sandbox, provider: str) -> set[str]:
    key = LISTS[provider][1]
    records = {
        "perform_engage": sandbox.data.pe_conversations,
        "respondent": sandbox.data.respondent_conversations,
        "onq": sandbox.data.onq_conversations,
    }[provider]
    return {str(record[key]) for record in records}


@pytest.fixture
def small(sandbox_factory: t.Callable[..., Sandbox]) -> Sandbox:
    """Pages of 7 (P&E capped, Respondent and onQ asked for 7) over a few dozen records."""
    return sandbox_factory(
        pe_conversations=40, pe_plans=3, pe_max_limit=7, respondent_conversations=40,
        onq_conversations=40,
    )  # fmt: skip


def churn_cases() -> list[tuple[str, str]]:
    return [(p, kind) for p in LISTS for kind in CHURN_KINDS]


@pytest.mark.parametrize(("provider", "kind"), churn_cases())
def test_a_list_changing_between_pages_loses_nothing_over_two_runs(
    small: Sandbox, provider: str, kind: str
) -> None:
    stream, key = LISTS[provider]
    config = only(small, provider, page_size=7)
    log = small.churn(provider, Churn(kind, after_page=2, count=2))  # type: ignore[arg-type]
    first = sync(config)
    assert log.touched, "the churn never happened"
    small.stop_churn()
    second = sync(config, state=first.final_state)
    third = sync(config, state=second.final_state)

    present_and_unchanged = current_keys(small, provider) - log.touched
    first_keys = [str(k) for k in first.keys(stream, key)]
    delivered = set(first_keys) | {str(k) for k in second.keys(stream, key)}
    assert present_and_unchanged <= delivered
    assert {str(k) for k in (*log.inserted, *log.moved)} <= delivered  # new versions too
    assert [k for k, n in Counter(first_keys).items() if n > 1] == []
    # Here the list held still again on the re-read, so the first run alone was complete...
    assert present_and_unchanged <= set(first_keys)
    # ...and later runs send nothing new.
    assert third.records(stream) == []


@pytest.mark.parametrize("provider", list(LISTS))
def test_a_list_that_never_holds_still_keeps_its_bookmark(
    small: Sandbox, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream, key = LISTS[provider]
    config = only(small, provider, page_size=7)
    baseline = sync(config)
    bookmark = baseline.final_state["bookmarks"][stream]
    mutation = small.mutate(provider, changed=10, added=0)

    log = small.churn(provider, Churn("delete", after_page=1, count=1, every_page=True))
    with caplog.at_level(logging.WARNING):
        moving = sync(config, state=baseline.final_state)
    small.stop_churn()
    warnings = [r.getMessage() for r in caplog.records if "kept changing" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert stream in warnings[0]
    # Everything read was sent, but the bookmark did not move past what may have been skipped.
    assert moving.records(stream)
    after = moving.final_state["bookmarks"][stream]
    assert after.get("replication_key_value") == bookmark.get("replication_key_value")

    calm = sync(config, state=moving.final_state)
    delivered = {str(k) for k in (*moving.keys(stream, key), *calm.keys(stream, key))}
    changed = {str(k) for k in mutation.changed_keys} - {str(k) for k in log.deleted}
    assert changed
    assert changed <= delivered
    assert changed <= {str(k) for k in calm.keys(stream, key)}  # the calm run re-reads them
