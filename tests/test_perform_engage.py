"""Perform & Engage 365 streams against the sandbox: paging, details, ids, filters, auth."""

from __future__ import annotations

import base64
import math
import typing as t

import pytest
import requests

from tap_conversations.settings import redact_text
from tap_conversations.tap import TapConversations
from tests.helpers import assert_same_records, run_cli, sync

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox
    from tap_conversations.client import ApiStream

CONVERSATIONS = "perform_engage_conversations"
DETAILS = "perform_engage_conversation_details"
PLANS = "perform_engage_conversation_plans"
PLAN_DETAILS = "perform_engage_conversation_plan_details"


def only_perform_engage(sandbox: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    config = sandbox.tap_config()
    return {"perform_engage": {**config["perform_engage"], **overrides}}


def test_every_record_once_with_its_values_across_capped_pages(sandbox: Sandbox) -> None:
    result = sync(only_perform_engage(sandbox, page_size=100))
    data = sandbox.data

    assert_same_records(result.records(CONVERSATIONS), data.pe_conversations, "api_id")
    assert_same_records(
        result.records(DETAILS), list(data.pe_conversation_details.values()), "api_id"
    )
    assert_same_records(result.records(PLANS), data.pe_plans, "api_id")
    assert_same_records(result.records(PLAN_DETAILS), list(data.pe_plan_details.values()), "api_id")

    # We asked for 100 per page, the server capped at 7: paging followed its `next` links, each
    # page after the first starting one record early (on the previous page's last record).
    list_requests = [
        r for r in sandbox.requests if r.path.endswith("/conversations/") and r.method == "GET"
    ]
    assert len(list_requests) == 1 + math.ceil((len(data.pe_conversations) - 7) / 6)
    offsets = sorted(int(r.query.get("offset", 0)) for r in list_requests)  # sent concurrently
    assert offsets == [0, *range(6, 6 * len(offsets), 6)][: len(offsets)]
    assert {r.query.get("limit") for r in list_requests} == {"100", "7"}


@pytest.mark.parametrize("page_size", [1, 2])
def test_any_page_size_the_api_accepts_works(sandbox: Sandbox, page_size: int) -> None:
    """Pages of one record do not overlap (a page started one early would repeat the page
    before it: issue 28 row 21); from two records on they do."""
    result = sync(only_perform_engage(sandbox, page_size=page_size))
    data = sandbox.data
    assert_same_records(result.records(CONVERSATIONS), data.pe_conversations, "api_id")
    assert_same_records(result.records(PLANS), data.pe_plans, "api_id")
    offsets = [
        int(r.query.get("offset", 0))
        for r in sandbox.requests
        if r.path.endswith("/conversations/") and r.method == "GET"
    ]
    step = page_size if page_size == 1 else page_size - 1
    assert sorted(offsets)[:4] == [0, step, 2 * step, 3 * step]


def test_details_join_their_parent_and_ids_are_percent_encoded(sandbox: Sandbox) -> None:
    result = sync(only_perform_engage(sandbox))

    details = result.records(DETAILS)
    assert [d["api_id"] for d in details] == result.keys(CONVERSATIONS, "api_id")
    expected = sandbox.data.pe_conversation_details
    for detail in details:
        assert detail["data"] == expected[detail["api_id"]]["data"]
    detail_paths = [r.raw_path for r in sandbox.requests if "/conversations/580" in r.raw_path]
    assert detail_paths, "no detail requests seen"
    assert all("%3A" in p and ":" not in p.split("/conversations/")[1] for p in detail_paths)

    plan_details = result.records(PLAN_DETAILS)
    assert all(
        p["assigned_users"] == sandbox.data.pe_plan_details[p["api_id"]]["assigned_users"]
        for p in plan_details
    )


def test_filters_are_sent_and_applied(sandbox: Sandbox) -> None:
    target = next(c for c in sandbox.data.pe_conversations if "'" in (c["person_name"] or ""))
    filters = {"person_name": target["person_name"], "status": target["status"]}
    result = sync(only_perform_engage(sandbox, conversation_filters=filters))

    expected = [
        c
        for c in sandbox.data.pe_conversations
        if c["person_name"] == filters["person_name"] and c["status"] == filters["status"]
    ]
    assert expected
    assert sorted(result.keys(CONVERSATIONS, "api_id")) == sorted(c["api_id"] for c in expected)
    plan = sandbox.data.pe_plans[0]
    result = sync(only_perform_engage(sandbox, plan_filters={"name": plan["name"]}))
    assert {p["name"] for p in result.records(PLANS)} == {plan["name"]}


def test_token_auth_obtains_one_token_and_renews_an_expired_one(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=30, pe_plans=3, pe_max_limit=5)
    result = sync(only_perform_engage(sandbox, auth_method="token"))
    assert len(result.records(CONVERSATIONS)) == 30
    assert sandbox.count(path_startswith="/perform-engage/api/v2/obtainauthtoken/") == 1

    sandbox.reset_log()
    sandbox.settings.pe_token_ttl_seconds = 0.1
    sandbox.settings.latency_ms = 20
    result = sync({**only_perform_engage(sandbox, auth_method="token"), "max_concurrency": 1})
    assert len(result.records(DETAILS)) == 30
    assert sandbox.count(path_startswith="/perform-engage/api/v2/obtainauthtoken/") > 1


@pytest.mark.parametrize("auth_method", ["basic", "token"])
def test_wrong_credentials_fail_clearly_without_leaking_the_key(
    sandbox: Sandbox, tmp_path: Path, auth_method: str
) -> None:
    wrong_key = "wrong-key-5b1d7e"
    config = only_perform_engage(sandbox, api_key=wrong_key, auth_method=auth_method)
    completed = run_cli([], config, tmp_path)

    assert completed.returncode != 0
    assert "check perform_engage credentials" in completed.stderr
    assert "Perform & Engage 365" in completed.stderr
    assert wrong_key not in completed.stderr + completed.stdout
    assert '"type":"RECORD"' not in completed.stdout.replace(" ", "")


def test_basic_auth_sends_utf8_credentials_and_keeps_them_out_of_logs() -> None:
    """The header is base64 of `username:api_key` in UTF-8 (as the SDK's authenticator sent
    it), and that very header value is redacted like the key it is made of."""
    username, api_key = "jos\u00e9.\u7528\u6237@example.com", "pe-key-\u00e9-12345"
    config = {
        "perform_engage": {"api_url": "https://pe.example.com/api/v2", "username": username}
        | {"api_key": api_key}
    }
    stream = TapConversations(config=config).streams[CONVERSATIONS]
    request = requests.Request("GET", "https://pe.example.com/api/v2/conversations/").prepare()
    header = t.cast("ApiStream", stream).authenticator(request).headers["Authorization"]
    expected = base64.b64encode(f"{username}:{api_key}".encode()).decode()
    assert header == f"Basic {expected}"
    assert expected not in redact_text(f"the server said: {header}")
