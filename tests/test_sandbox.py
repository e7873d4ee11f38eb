"""The sandbox speaks the three vendor protocols as documented, and its test hooks work."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import pytest
import requests

from sandbox import (
    ALL_FAULT_KINDS,
    ONQ_API_KEY,
    ONQ_API_SECRET,
    ONQ_AUDIENCE,
    ONQ_ISSUER,
    ONQ_SUBJECT,
    PE_API_KEY,
    PE_USERNAME,
    RESPONDENT_API_KEY,
    RESPONDENT_API_SECRET,
    FaultSettings,
    Sandbox,
    SandboxSettings,
)

PE_AUTH = (PE_USERNAME, PE_API_KEY)
RESPONDENT_HEADERS = {"x-api-key": RESPONDENT_API_KEY, "x-api-secret": RESPONDENT_API_SECRET}
KEYS = {  # provider -> (primary key, update timestamp)
    "perform_engage": ("api_id", "updated_date"),
    "onq": ("id", "last_updated_on"),
    "respondent": ("uid", "updatedAt"),
}
PE_LIST_FIELDS = [
    "api_id", "template_api_id", "template_name", "plan_api_id", "plan_name", "stage_name",
    "stage_api_id", "status", "updated_date", "completed_date", "generated_date",
    "person_api_id", "person_name", "person_email", "reviewer_api_id", "reviewer_name",
    "reviewer_email", "second_reviewer_api_id", "second_reviewer_name", "second_reviewer_email",
    "manager_name", "manager_email", "manager_api_id",
]  # fmt: skip
ONQ_FIELDS = [
    "id", "type", "sub_type", "org_id", "name", "content_name", "status", "register_status",
    "start_on", "end_on", "close_on", "start_register_on", "last_updated_on", "created_on",
    "visible", "active", "private_mode", "external_code", "max_count", "max_user_count",
    "max_facilitator_count", "registered_user_count", "registered_facilitator_count",
    "open_questions_count", "to_facilitator_count",
]  # fmt: skip
RESPONDENT_FIELDS = [
    "createdAt", "uid", "name", "deleted", "locked", "read", "user", "participants", "messages",
    "latestMessage", "messagesCount", "updatedAt", "metadata",
]  # fmt: skip


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def served(sb: Sandbox, provider: str) -> list[dict]:
    """A provider's conversations in served order."""
    return {
        "perform_engage": sb.data.pe_conversations,
        "onq": sb.data.onq_conversations,
        "respondent": sb.data.respondent_conversations,
    }[provider]


def pe_url(sb: Sandbox, path: str) -> str:
    return f"{sb.tap_config()['perform_engage']['api_url']}{path}"


def onq_url(sb: Sandbox) -> str:
    return f"{sb.tap_config()['onq']['api_url']}/conversations"


def respondent_url(sb: Sandbox, path: str = "") -> str:
    return f"{sb.tap_config()['respondent']['api_url']}/messaging/conversations{path}"


def follow_next(http: requests.Session, url: str, params: dict | None = None) -> list[dict]:
    """Every page of a P&E list, following `next` links until null."""
    pages: list[dict] = []
    next_url: str | None = url
    while next_url:
        response = http.get(next_url, auth=PE_AUTH, params=None if pages else params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = pages[-1]["next"]
        assert len(pages) < 100, "next links never end"
    return pages


def onq_token(
    headers: dict | None = None, secret: str = ONQ_API_SECRET, lifetime: int = 900, **claims: Any
) -> str:
    """A JWT as the tap should build it; `claims` override (None drops a claim)."""
    issued = claims.get("iat") or int(time.time())
    payload = {
        "iss": ONQ_ISSUER,
        "sub": ONQ_SUBJECT,
        "aud": ONQ_AUDIENCE,
        "iat": issued,
        "exp": issued + lifetime,
        **claims,
    }
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or {"kid": ONQ_API_KEY})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- Perform & Engage -----------------------------------------------------------------------


def test_pe_limit_is_capped_and_absolute_next_links_chain_through_every_record(sb, http):
    first = http.get(pe_url(sb, "/conversations/"), params={"limit": 100}, auth=PE_AUTH).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (120, 50, None)
    assert first["next"] == f"{sb.url}/perform-engage/api/v2/conversations/?limit=50&offset=50"

    pages = follow_next(http, pe_url(sb, "/conversations/?limit=100"))
    ids = [record["api_id"] for page in pages for record in page["results"]]
    assert len(pages) == 3
    assert ids == [record["api_id"] for record in sb.data.pe_conversations]
    assert len(set(ids)) == 120
    assert (
        pages[2]["previous"] == f"{sb.url}/perform-engage/api/v2/conversations/?limit=50&offset=50"
    )
    assert pages[1]["previous"] == f"{sb.url}/perform-engage/api/v2/conversations/?limit=50"

    # The links are built from the request's Host header, like DRF's build_absolute_uri().
    host = {"Host": "tenant.example:8443"}
    plans = http.get(pe_url(sb, "/conversation_plans/?limit=5"), auth=PE_AUTH, headers=host)
    assert plans.json()["next"].startswith("http://tenant.example:8443/perform-engage/api/v2/")


def test_pe_filters_match_exactly_and_stay_in_next_links(sb, http):
    name = "Zoë O'Brien"
    expected = {r["api_id"] for r in sb.data.pe_conversations if r["person_name"] == name}
    assert len(expected) > 2  # the filter must span several pages below
    pages = follow_next(
        http, pe_url(sb, "/conversations/"), params={"person_name": name, "limit": 2}
    )
    assert {r["api_id"] for page in pages for r in page["results"]} == expected
    assert all("person_name=Zo%C3%AB+O%27Brien" in page["next"] for page in pages[:-1])

    finals = http.get(pe_url(sb, "/conversations/?status=final&limit=500"), auth=PE_AUTH).json()
    assert finals["count"] == sum(r["status"] == "final" for r in sb.data.pe_conversations)
    assert {r["status"] for r in finals["results"]} == {"final"}

    bad = http.get(pe_url(sb, "/conversations/?status=open"), auth=PE_AUTH)
    assert bad.status_code == 400
    message = "Select a valid choice. open is not one of the available choices."
    assert bad.json() == {"status": [message]}


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "limit=0", "offset=-5", "offset=1.5"])
def test_pe_rejects_bad_paging_parameters(sb, http, query):
    response = http.get(pe_url(sb, f"/conversations/?{query}"), auth=PE_AUTH)
    assert response.status_code == 400
    assert set(response.json()) == {"detail"}


def test_pe_details_take_percent_encoded_ids(sb, http):
    api_id = sb.data.pe_conversations[5]["api_id"]
    encoded = quote(api_id, safe="")
    assert "%3A" in encoded
    detail = http.get(pe_url(sb, f"/conversations/{encoded}/"), auth=PE_AUTH)
    assert detail.status_code == 200
    assert detail.json() == sb.data.pe_conversation_details[api_id]
    assert list(detail.json()) == [*PE_LIST_FIELDS[:20], "data", *PE_LIST_FIELDS[20:]]
    assert sb.requests[-1].raw_path.endswith(f"/conversations/{encoded}/")

    plan_id = sb.data.pe_plans[0]["api_id"]
    plan = http.get(pe_url(sb, f"/conversation_plans/{quote(plan_id, safe='')}/"), auth=PE_AUTH)
    assert plan.json() == sb.data.pe_plan_details[plan_id]
    assert {"assigned_users", "assigned_departments"} <= set(plan.json())

    missing = http.get(pe_url(sb, "/conversations/580%3Anope/"), auth=PE_AUTH)
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})


@pytest.mark.parametrize(
    ("auth", "headers", "detail"),
    [
        (None, {}, "Authentication credentials were not provided."),
        ((PE_USERNAME, "wrong"), {}, "Invalid username/password."),
        (("someone@else", PE_API_KEY), {}, "Invalid username/password."),
        (None, {"Authorization": "Token 0123abcd"}, "Invalid token."),
    ],
)
def test_pe_unauthorized_bodies(sb, http, auth, headers, detail):
    response = http.get(pe_url(sb, "/conversations/"), auth=auth, headers=headers)
    assert (response.status_code, response.json()) == (401, {"detail": detail})
    assert response.headers["WWW-Authenticate"] == 'Basic realm="api"'


def test_pe_token_auth_and_token_expiry(sb, http):
    def obtain() -> str:
        body = {"username": PE_USERNAME, "password": PE_API_KEY}
        response = http.post(pe_url(sb, "/obtainauthtoken/"), json=body)
        assert response.status_code == 200
        return response.json()["token"]

    def list_with(token: str) -> requests.Response:
        return http.get(
            pe_url(sb, "/conversation_plans/"), headers={"Authorization": f"Token {token}"}
        )

    token = obtain()
    assert list_with(token).status_code == 200
    sb.settings.pe_token_ttl_seconds = 0.2
    time.sleep(0.25)
    expired = list_with(token)
    assert (expired.status_code, expired.json()) == (401, {"detail": "Invalid token."})
    assert list_with(obtain()).status_code == 200
    assert sb.pe_tokens_issued == 2

    wrong = http.post(
        pe_url(sb, "/obtainauthtoken/"), json={"username": PE_USERNAME, "password": "x"}
    )
    assert wrong.status_code == 400


def test_pe_paging_pathologies(http):
    with Sandbox(SandboxSettings(pe_pathology="repeat_next")) as sb:
        page1 = http.get(pe_url(sb, "/conversations/"), auth=PE_AUTH).json()
        page2 = http.get(page1["next"], auth=PE_AUTH).json()
        assert page2["next"] == page1["next"]

        sb.settings.pe_pathology = "endless"
        url = pe_url(sb, "/conversations/")
        offsets = []
        for _ in range(5):
            page = http.get(url, auth=PE_AUTH).json()
            url = page["next"]
            offsets.append(int(parse_qs(urlsplit(url).query)["offset"][0]))
        assert offsets == [50, 100, 150, 200, 250]
        assert page["results"] == []

        sb.settings.pe_pathology = "count_mismatch"
        pages = follow_next(http, pe_url(sb, "/conversations/"))
        assert pages[0]["count"] == 130
        assert sum(len(page["results"]) for page in pages) == 120


# --- onQ ------------------------------------------------------------------------------------


def test_onq_pages_with_a_valid_jwt_in_both_envelopes(sb, http):
    headers = bearer(onq_token())
    pages = [
        http.get(onq_url(sb), params={"size": 100, "page": page}, headers=headers).json()
        for page in (1, 2, 3)
    ]
    assert [len(page) for page in pages] == [100, 50, 0]
    assert [r["id"] for r in pages[0] + pages[1]] == [r["id"] for r in sb.data.onq_conversations]
    assert len(sb.onq_tokens_seen) == 1

    sb.settings.onq_envelope = "object"
    wrapped = http.get(onq_url(sb), params={"size": 10, "page": 2}, headers=headers).json()
    assert {k: wrapped[k] for k in ("page", "size", "total")} == {
        "page": 2,
        "size": 10,
        "total": 150,
    }
    assert wrapped["data"] == sb.data.onq_conversations[10:20]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"page": 1}, "size"),
        ({"size": 0, "page": 1}, "size"),
        ({"size": 1001, "page": 1}, "size"),
        ({"size": 10}, "page"),
        ({"size": 10, "page": 0}, "page"),
        ({"size": 10, "page": "x"}, "page"),
    ],
)
def test_onq_rejects_bad_paging_with_403(sb, http, params, named):
    response = http.get(onq_url(sb), params=params, headers=bearer(onq_token()))
    assert response.status_code == 403
    assert response.json()["error"] == "invalid request"
    assert response.json()["message"].startswith(named)


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        # Minted when the test runs, not at collection: a slow module running first must not
        # expire them.
        (lambda: onq_token(headers={"kid": "someone-else"}), "kid"),
        (lambda: onq_token(aud="https://other.onq.io"), "aud"),
        (lambda: onq_token(iss="https://evil.example"), "iss"),
        (lambda: onq_token(sub="other@example.com"), "sub"),
        (lambda: onq_token(lifetime=599), "600"),
        (lambda: onq_token(iat=int(time.time()) - 2000, lifetime=1000), "expired"),
        (lambda: onq_token(secret="x" * 40), "signature"),
        (lambda: onq_token(iat=None), "claim"),
        (lambda: "not-a-jwt", "malformed"),
    ],
)
def test_onq_rejects_bad_tokens(sb, http, make_token, reason):
    token = make_token()
    response = http.get(onq_url(sb), params={"size": 1, "page": 1}, headers=bearer(token))
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized"
    assert reason in body["message"]
    assert token not in response.text
    assert sb.onq_tokens_seen == []


def test_onq_max_token_age_forces_renewal(sb, http):
    sb.settings.onq_token_max_age_seconds = 1
    stale = onq_token(iat=int(time.time()) - 3)
    response = http.get(onq_url(sb), params={"size": 1, "page": 1}, headers=bearer(stale))
    assert (response.status_code, response.json()["message"]) == (401, "token expired")
    renewed = onq_token()
    fresh = http.get(onq_url(sb), params={"size": 1, "page": 1}, headers=bearer(renewed))
    assert fresh.status_code == 200
    issued = jwt.decode(renewed, options={"verify_signature": False})["iat"]
    assert [token.iat for token in sb.onq_tokens_seen] == [issued]


# --- Respondent -----------------------------------------------------------------------------


def test_respondent_auth_paging_count_and_filters(sb, http):
    for headers in ({}, {**RESPONDENT_HEADERS, "x-api-secret": "wrong"}):
        denied = http.get(respondent_url(sb), headers=headers)
        assert (denied.status_code, denied.json()) == (
            401,
            {"statusCode": 401, "message": "Unauthorized"},
        )

    default = http.get(respondent_url(sb), headers=RESPONDENT_HEADERS).json()
    assert (default["page"], default["pageSize"], len(default["results"])) == (1, 20, 20)
    assert "totalResults" not in default
    for flag in ("false", "1"):
        params = {"includeCount": flag}
        assert (
            "totalResults"
            not in http.get(respondent_url(sb), params=params, headers=RESPONDENT_HEADERS).json()
        )

    capped = http.get(
        respondent_url(sb),
        params={"pageSize": 1000, "includeCount": "true"},
        headers=RESPONDENT_HEADERS,
    ).json()
    assert (capped["pageSize"], capped["totalResults"]) == (100, 60)
    assert capped["results"] == sb.data.respondent_conversations

    project = sb.data.respondent_project_ids[1]
    params = {"projectId": project, "externalResearcherId": "researcher-2", "includeCount": "true"}
    filtered = http.get(respondent_url(sb), params=params, headers=RESPONDENT_HEADERS).json()
    wanted = {"projectId": project, "externalResearcherId": "researcher-2"}
    expected = [
        r
        for r in sb.data.respondent_conversations
        if {key: r["metadata"][key] for key in wanted} == wanted
    ]
    assert 0 < filtered["totalResults"] == len(expected) < 60
    assert filtered["results"] == expected

    uid = expected[0]["uid"]
    assert http.get(respondent_url(sb, f"/{uid}"), headers=RESPONDENT_HEADERS).json() == expected[0]
    missing = http.get(respondent_url(sb, "/" + "0" * 24), headers=RESPONDENT_HEADERS)
    assert (missing.status_code, missing.json()) == (
        404,
        {"statusCode": 404, "message": "Not Found"},
    )


# --- common machinery -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_FAULT_KINDS)
def test_each_fault_kind_is_observable(http, kind):
    faults = FaultSettings(rate=1.0, kinds=(kind,), retry_after_seconds=1, slow_seconds=0.5)
    with Sandbox(SandboxSettings(faults=faults)) as sb:
        url = respondent_url(sb)
        if kind == "drop":
            broken = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
            with pytest.raises(broken):
                http.get(url, headers=RESPONDENT_HEADERS)
        elif kind == "slow":
            with pytest.raises(requests.exceptions.ReadTimeout):
                http.get(url, headers=RESPONDENT_HEADERS, timeout=0.2)
        else:
            response = http.get(url, headers=RESPONDENT_HEADERS)
            check_fault_response(response, kind)
            if kind == "429":  # the second one carries an HTTP-date, at least 1 s ahead
                sent = time.time()
                retry_at = parsedate_to_datetime(http.get(url).headers["Retry-After"])
                assert retry_at.timestamp() >= sent + 1
        assert [entry.fault for entry in sb.requests] == [kind] * len(sb.requests)


def check_fault_response(response: requests.Response, kind: str) -> None:
    expected_status = {"500": 500, "502_html": 502, "503_retry_after": 503, "429": 429}
    assert response.status_code == expected_status.get(kind, 200)
    if kind == "502_html":
        assert response.headers["Content-Type"].startswith("text/html")
    elif kind == "malformed_json":
        assert response.headers["Content-Type"] == "application/json"
        with pytest.raises(ValueError):  # noqa: PT011 - whichever JSON error requests raises
            response.json()
    elif kind in ("503_retry_after", "429"):
        assert response.headers["Retry-After"] == "1"
    else:
        assert response.json()


def test_faults_hit_only_chosen_providers_and_the_token_endpoint(sb, http):
    sb.settings.faults = FaultSettings(rate=1.0, kinds=("500",), providers=("perform_engage",))
    assert http.get(respondent_url(sb), headers=RESPONDENT_HEADERS).status_code == 200
    body = {"username": PE_USERNAME, "password": PE_API_KEY}
    assert http.post(pe_url(sb, "/obtainauthtoken/"), json=body).status_code == 500
    assert sb.count(provider="perform_engage", status=500) == 1
    assert sb.count(provider="respondent", status=200) == 1


def test_early_retries_are_detected_per_provider(sb, http):
    sb.settings.faults = FaultSettings(rate=1.0, kinds=("503_retry_after",), retry_after_seconds=1)
    refused_at = time.monotonic()
    assert http.get(respondent_url(sb), headers=RESPONDENT_HEADERS).status_code == 503
    sb.settings.faults = FaultSettings()
    time.sleep(0.1)
    assert http.get(respondent_url(sb), headers=RESPONDENT_HEADERS).status_code == 200
    assert http.get(onq_url(sb)).status_code == 401  # another provider: not an early retry
    time.sleep(max(0.0, refused_at + 1.0 - time.monotonic()))
    http.get(respondent_url(sb), headers=RESPONDENT_HEADERS)
    assert [(e.provider, e.status) for e in sb.early_retries] == [("respondent", 200)]
    sb.reset_log()
    assert (sb.requests, sb.early_retries) == ([], [])


def test_latency_and_request_log(sb, http):
    sb.settings.latency_ms = 100
    started = time.monotonic()
    assert http.get(f"{sb.url}/nowhere").status_code == 404
    assert time.monotonic() - started >= 0.1
    sb.settings.latency_ms = 0
    http.get(pe_url(sb, "/conversations/"), params={"status": "draft"}, auth=PE_AUTH)
    entry = sb.requests[-1]
    assert (entry.provider, entry.method, entry.status, entry.fault) == (
        "perform_engage",
        "GET",
        200,
        None,
    )
    assert entry.query == {"status": "draft"}
    assert sb.count(path_startswith="/perform-engage/") == 1
    assert sb.count(status=404) == 1


def test_keep_alive_connections_have_tcp_nodelay(sb, http):
    # Without TCP_NODELAY every keep-alive response stalls ~40 ms (Nagle + delayed ACK) and a
    # benchmark measures the sandbox instead of the tap.
    for _ in range(3):
        assert http.get(respondent_url(sb, "/x"), headers=RESPONDENT_HEADERS).status_code == 404
    flags = sb.connections_nodelay()
    assert flags, "no open keep-alive connection to inspect"
    assert all(flags)


def test_stop_joins_threads_and_closes_the_port(http):
    before = threading.active_count()
    with Sandbox() as sb:
        url = sb.url
        http.get(respondent_url(sb), headers=RESPONDENT_HEADERS)  # leaves a keep-alive connection
    assert threading.active_count() == before
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)


# --- data -----------------------------------------------------------------------------------


def test_records_have_the_documented_fields_and_realistic_values(sb):
    now = datetime.now(UTC)
    data = sb.data
    pe = data.pe_conversations
    assert all(list(record) == PE_LIST_FIELDS for record in pe)
    assert all(record["api_id"].startswith("580:") for record in pe)
    assert {record["status"] for record in pe} == {"draft", "final", "deleted", "archived"}
    assert all((r["completed_date"] is None) == (r["status"] != "final") for r in pe)
    assert {r["updated_date"][-6:] for r in pe} == {"+00:00", "+01:00"}
    assert {r["plan_api_id"] for r in pe} <= {plan["api_id"] for plan in data.pe_plans}
    assert any(r["second_reviewer_api_id"] is None for r in pe)
    assert any(r["manager_api_id"] is None for r in pe)
    assert max(moment(r["updated_date"]) for r in pe) < now
    assert all(
        list(plan) == ["name", "api_id", "template_name", "template_api_id", "status", "frequency"]
        for plan in data.pe_plans
    )

    onq = data.onq_conversations
    assert all(list(record) == ONQ_FIELDS for record in onq)
    assert max(moment(r["last_updated_on"]) for r in onq) < now

    conversations = data.respondent_conversations
    assert all(list(record) == RESPONDENT_FIELDS for record in conversations)
    message_ids = [m["uid"] for r in conversations for m in r["messages"]]
    assert len(message_ids) == len(set(message_ids))
    for record in conversations:
        assert record["messagesCount"] == len(record["messages"])
        last = record["messages"][-1] if record["messages"] else None
        fields = ("createdAt", "uid", "body", "updatedAt")
        assert record["latestMessage"] == (last and {key: last[key] for key in fields})
        participants = {p["uid"] for p in record["participants"]}
        assert 2 <= len(participants) <= 4
        assert {m["sender"]["uid"] for m in record["messages"]} <= participants
        assert all(m["updatedAt"] <= record["updatedAt"] for m in record["messages"])
        assert record["metadata"]["projectId"] in data.respondent_project_ids

    # Served unsorted: neither by update time nor by id.
    for provider, (key, updated) in KEYS.items():
        records = served(sb, provider)
        assert records != sorted(records, key=lambda r, k=key: r[k])
        assert records != sorted(records, key=lambda r, u=updated: moment(r[u]))


def test_same_seed_gives_byte_identical_responses(http):
    def bodies(seed: int) -> list[bytes]:
        with Sandbox(SandboxSettings(seed=seed)) as sb:
            first_id = quote(sb.data.pe_conversations[0]["api_id"], safe="")
            host = {"Host": "sandbox.test"}
            return [
                http.get(
                    pe_url(sb, "/conversations/?limit=50"), auth=PE_AUTH, headers=host
                ).content,
                http.get(pe_url(sb, f"/conversations/{first_id}/"), auth=PE_AUTH).content,
                http.get(pe_url(sb, "/conversation_plans/"), auth=PE_AUTH, headers=host).content,
                http.get(
                    onq_url(sb), params={"size": 1000, "page": 1}, headers=bearer(onq_token())
                ).content,
                http.get(
                    respondent_url(sb), params={"pageSize": 100}, headers=RESPONDENT_HEADERS
                ).content,
            ]

    assert bodies(7) == bodies(7)
    assert all(a != b for a, b in zip(bodies(7), bodies(8), strict=True))


@pytest.mark.parametrize(("provider", "updated"), [(p, keys[1]) for p, keys in KEYS.items()])
def test_mutation_changes_and_adds_the_newest_records(sb, provider, updated):
    key = KEYS[provider][0]
    before = {r[key]: r for r in served(sb, provider)}
    newest_before = max(moment(r[updated]) for r in before.values())

    result = sb.mutate(provider, changed=3, added=4)

    after = served(sb, provider)
    by_key = {r[key]: r for r in after}
    assert len(after) == len(before) + 4
    assert set(result.added_keys) == set(by_key) - set(before)
    assert len(set(result.changed_keys)) == 3
    for changed in result.changed_keys:
        assert newest_before < moment(by_key[changed][updated]) <= datetime.now(UTC)
        assert by_key[changed] != {**before[changed], updated: by_key[changed][updated]}
    assert all(moment(by_key[k][updated]) > newest_before for k in result.added_keys)
    positions = sorted(i for i, r in enumerate(after) if r[key] in result.added_keys)
    assert positions != list(range(len(before), len(after)))  # not simply appended
    unchanged = set(before) - set(result.changed_keys)
    assert all(by_key[k] == before[k] for k in unchanged)
    if provider == "respondent":
        for changed in result.changed_keys:
            record = by_key[changed]
            assert (
                record["messagesCount"]
                == len(record["messages"])
                == len(before[changed]["messages"]) + 1
            )
            assert record["latestMessage"]["uid"] == record["messages"][-1]["uid"]
            assert record["updatedAt"] == record["messages"][-1]["updatedAt"]

    (again,) = sb.mutate(provider, changed=1, added=0).changed_keys  # a second round: newer still
    newest = max(moment(by_key[k][updated]) for k in result.changed_keys)
    assert moment(next(r for r in served(sb, provider) if r[key] == again)[updated]) > newest


def test_vanished_details_stay_listed_but_answer_404(sb, http):
    gone = sb.vanish_details("perform_engage", 2)
    listed = {
        r["api_id"]
        for r in http.get(pe_url(sb, "/conversations/?limit=50"), auth=PE_AUTH).json()["results"]
    }
    listed |= {r["api_id"] for r in sb.data.pe_conversations}
    assert set(gone) <= listed
    for api_id in gone:
        response = http.get(pe_url(sb, f"/conversations/{quote(api_id, safe='')}/"), auth=PE_AUTH)
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


# --- CLI ------------------------------------------------------------------------------------


def test_cli_writes_the_env_file_then_exits_cleanly_on_sigterm(tmp_path: Path, http):
    env_file = tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--seed",
            "3",
            "--env-file",
            str(env_file),
        ],
        cwd=Path(__file__).parents[1],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = dict(shlex.split(line)[1].split("=", 1) for line in env_file.read_text().splitlines())
        assert env["TAP_CONVERSATIONS_PERFORM_ENGAGE_API_KEY"] == PE_API_KEY
        assert len(env) == 12
        response = http.get(
            env["TAP_CONVERSATIONS_RESPONDENT_API_URL"] + "/messaging/conversations",
            headers={
                "x-api-key": env["TAP_CONVERSATIONS_RESPONDENT_API_KEY"],
                "x-api-secret": env["TAP_CONVERSATIONS_RESPONDENT_API_SECRET"],
            },
        )
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stderr.startswith("sandbox listening on http://127.0.0.1:")
    assert json.dumps(stderr).count("\\n") == 1
