"""Respondent paging numbers of the wrong type end the provider with one line (issue 28 row 5)."""

from __future__ import annotations

import typing as t

import pytest

from tests.helpers import run_cli
from tests.hostile import Exchange, HostileServer, respondent_config

if t.TYPE_CHECKING:
    from pathlib import Path

RECORD = b'{"uid": "c1", "updatedAt": "2024-01-01T00:00:00Z", "messages": [], "participants": []}'


@pytest.mark.parametrize(
    ("envelope", "field", "shown"),
    [
        (b'"page": 1, "pageSize": 100, "totalResults": "ten"', "totalResults", "'ten'"),
        (b'"page": 1, "pageSize": "four", "totalResults": 1', "pageSize", "'four'"),
        (b'"page": 1, "pageSize": 100, "totalResults": -3', "totalResults", "-3"),
        (b'"page": 1.5, "pageSize": 100', "page", "1.5"),
    ],
)
def test_a_paging_number_that_is_not_a_count_is_one_line(
    tmp_path: Path, envelope: bytes, field: str, shown: str
) -> None:
    def script(exchange: Exchange) -> None:
        exchange.reply(200, b'{"results": [' + RECORD + b"], " + envelope + b"}")

    with HostileServer(script) as server:
        completed = run_cli([], respondent_config(server.url), tmp_path, timeout=60)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "ValueError" not in completed.stderr
    assert (
        "Respondent stream 'respondent_conversations': HTTP 200 OK on /messaging/conversations: "
        "expected {page, pageSize, results: [...], totalResults}, "
        f"but {field} is {shown}, not a count"
    ) in completed.stderr
