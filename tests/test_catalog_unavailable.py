"""A catalog selecting streams this run cannot provide names each one (issue 28 row 18).

Chosen behaviour: a WARNING line per stream, the stream skipped, the run goes on (rc 0): a
catalog written for every provider still serves a config that sets up only some of them.
"""

from __future__ import annotations

import json
import typing as t

from tap_conversations.tap import TapConversations
from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def test_each_unavailable_selected_stream_is_named_once(sandbox: Sandbox, tmp_path: Path) -> None:
    full = TapConversations(config=sandbox.tap_config(), setup_mapper=False).catalog_dict
    onq_only = {"onq": sandbox.tap_config()["onq"]}
    streams = []
    for entry in full["streams"]:
        if entry["tap_stream_id"] in {"onq_conversations", "respondent_messages"}:
            entry["metadata"][0]["metadata"]["selected"] = True
            streams.append(entry)
    made_up = {
        "tap_stream_id": "made_up",
        "stream": "made_up",
        "schema": {"type": "object", "properties": {}},
        "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
    }
    unselected = {**made_up, "tap_stream_id": "also_made_up", "stream": "also_made_up"}
    unselected["metadata"] = [{"breadcrumb": [], "metadata": {"selected": False}}]
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [*streams, made_up, unselected]}))

    completed = run_cli(["--catalog", str(catalog)], onq_only, tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    warnings = [line for line in completed.stderr.splitlines() if "The catalog selects" in line]
    assert len(warnings) == 2, warnings
    assert any(
        "'respondent_messages' but it is a Respondent stream and the config does not set up "
        "'respondent' (add it to sync this stream); skipped" in w
        for w in warnings
    )
    assert any("'made_up' but no stream of this tap has that name; skipped" in w for w in warnings)
    emitted = {m["stream"] for m in parse_messages(completed.stdout) if m["type"] == "RECORD"}
    assert emitted == {"onq_conversations"}
