"""Catalog selection (streams, top-level and nested properties) and stream maps."""

from __future__ import annotations

import typing as t

from tap_conversations.tap import TapConversations
from tests.helpers import sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox

RESPONDENT = "respondent_conversations"


def catalog_with(
    config: dict[str, t.Any], deselected: dict[str, list[tuple[str, ...]]]
) -> dict[str, t.Any]:
    """The discovered catalog, every stream selected except the breadcrumbs in `deselected`
    (a stream name mapped to `[()]` deselects the whole stream)."""
    catalog = TapConversations(config=config).catalog_dict
    for entry in catalog["streams"]:
        off = {
            tuple(part for name in crumb for part in ("properties", name))
            for crumb in deselected.get(entry["tap_stream_id"], [])
        }
        for item in entry["metadata"]:
            crumb = tuple(item["breadcrumb"])
            item["metadata"]["selected"] = crumb not in off
    return catalog


def test_a_deselected_stream_is_neither_emitted_nor_requested(sandbox: Sandbox) -> None:
    config = sandbox.tap_config()
    catalog = catalog_with(config, {"onq_conversations": [()]})
    result = sync(config, catalog=catalog)
    counts = result.counts()
    assert "onq_conversations" not in counts
    assert counts[RESPONDENT] == 25
    assert sandbox.count(provider="onq") == 0


def test_deselected_properties_are_absent_top_level_and_nested(sandbox: Sandbox) -> None:
    config = {"respondent": sandbox.tap_config()["respondent"]}
    catalog = catalog_with(config, {RESPONDENT: [("name",), ("user", "firstName")]})
    result = sync(config, catalog=catalog)
    records = result.records(RESPONDENT)
    assert len(records) == 25
    assert all("name" not in r for r in records)
    users = [r["user"] for r in records if r.get("user")]
    assert users, "no conversation has a user: the nested case proves nothing"
    assert all("firstName" not in u and "uid" in u for u in users)
    (schema,) = [
        m["schema"] for m in result.messages if m["type"] == "SCHEMA" and m["stream"] == RESPONDENT
    ]
    assert "name" not in schema["properties"]


def test_stream_maps_add_and_drop_properties_and_alias_streams(sandbox: Sandbox) -> None:
    config = {
        "onq": sandbox.tap_config()["onq"],
        "stream_maps": {
            "onq_conversations": {
                "__alias__": "onq_sessions",
                "name_upper": "name.upper() if name else None",
                "external_code": "__NULL__",
            }
        },
    }
    result = sync(config)
    assert result.records("onq_conversations") == []
    records = result.records("onq_sessions")
    assert len(records) == 45
    expected = {str(c["id"]): c["name"] for c in sandbox.data.onq_conversations}
    for record in records:
        assert "external_code" not in record
        want = expected[record["id"]]
        assert record["name_upper"] == (want.upper() if want else None)
