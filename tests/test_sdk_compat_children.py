"""Guards for what the derived streams rely on in the SDK's record flow (`sdk_compat/stream.py`).

`CompatStream._generate_record_messages` (private) drops deselected fields when a record is
written, and `DerivedStream` reads the parent's record in `generate_child_contexts`. Both only
work if the SDK keeps syncing a record's children *before* it writes the record. These tests
fail if an SDK upgrade changes that order or stops calling the private method.
"""

from __future__ import annotations

import typing as t

from tests.children import catalog
from tests.helpers import sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox


def test_children_are_written_before_their_parent_record(sandbox: Sandbox) -> None:
    config = {"respondent": sandbox.tap_config()["respondent"]}
    result = sync(
        config,
        catalog=catalog(config, deselected_fields={"respondent_conversations": {"messages"}}),
    )
    seen_children: set[str] = set()
    checked = 0
    for message in result.messages:
        if message["type"] != "RECORD":
            continue
        record = message["record"]
        if message["stream"] == "respondent_participants":
            seen_children.add(record["conversation_uid"])
        elif message["stream"] == "respondent_conversations":
            assert record["uid"] in seen_children, "a parent was written before its children"
            # Deselection happened when the parent was written (the private override ran).
            assert "messages" not in record
            assert "participants" in record
            checked += 1
    assert checked == len(sandbox.data.respondent_conversations)
