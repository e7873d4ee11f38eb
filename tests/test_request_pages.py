"""`ApiStream.request_pages`: the SDK's records, a page at a time, for a list scan."""

from __future__ import annotations

import typing as t

import pytest

from tap_conversations.client import ApiStream
from tap_conversations.tap import TapConversations

if t.TYPE_CHECKING:
    from sandbox import Sandbox


def fresh_stream(config: dict[str, t.Any], name: str) -> ApiStream:
    tap = TapConversations(config=config)
    tap.before_sync()
    return t.cast("ApiStream", tap.streams[name])


@pytest.mark.parametrize(
    ("provider", "name", "key", "page_size"),
    [
        ("onq", "onq_conversations", "id", 7),
        ("perform_engage", "perform_engage_conversations", "api_id", None),
        ("respondent", "respondent_conversations", "uid", 4),
    ],
)
def test_pages_hold_the_records_request_records_gives_in_order(
    sandbox: Sandbox, provider: str, name: str, key: str, page_size: int | None
) -> None:
    settings = dict(sandbox.tap_config()[provider])
    if page_size:
        settings["page_size"] = page_size
    config = {provider: settings}
    one_by_one = fresh_stream(config, name)
    contexts = one_by_one.partitions or [None]
    for context in contexts:
        expected = [str(r.get(key)) for r in one_by_one.request_records(context)]
        pages = list(fresh_stream(config, name).request_pages(context))
        assert [str(r.get(key)) for page in pages for r in page] == expected
        assert expected
        assert all(pages)  # no empty page
        assert len(pages) > 1
        if page_size:
            assert {len(page) for page in pages[:-1]} == {page_size}


def test_a_failing_page_fails_the_pages_and_leaves_nothing_behind(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"onq": {**sandbox.tap_config()["onq"], "page_size": 10}}
    stream = fresh_stream(config, "onq_conversations")
    original = ApiStream.parse_response
    calls = 0

    def failing_third(self: ApiStream, response: t.Any) -> t.Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("page three")
        return original(self, response)

    monkeypatch.setattr(ApiStream, "parse_response", failing_third)
    pages = stream.request_pages(None)
    assert [len(page) for page in (next(pages), next(pages))] == [10, 10]
    with pytest.raises(RuntimeError, match="page three"):
        next(pages)
    assert stream._pages is None
