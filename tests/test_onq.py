"""onQ against the sandbox: JWT auth and renewal, page/size paging, envelopes."""

from __future__ import annotations

import math
import time
import typing as t

import jwt
import pytest
import requests

from tap_conversations.onq import JWTAuthenticator
from tests.helpers import assert_same_records, run_cli, sync

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

STREAM = "onq_conversations"


def only_onq(sandbox: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    return {"onq": {**sandbox.tap_config()["onq"], **overrides}}


def expected_rows(sandbox: Sandbox) -> list[dict[str, t.Any]]:
    # Identifiers are emitted as text (the docs do not say number or string).
    return [
        {**row, "id": str(row["id"]), "org_id": str(row["org_id"])}
        for row in sandbox.data.onq_conversations
    ]


@pytest.mark.parametrize("envelope", ["array", "object"])
def test_every_conversation_once_and_paging_stops_on_the_short_page(
    sandbox: Sandbox, envelope: str
) -> None:
    sandbox.settings.onq_envelope = envelope
    result = sync(only_onq(sandbox, page_size=10))

    assert_same_records(result.records(STREAM), expected_rows(sandbox), "id")
    requests = [r for r in sandbox.requests if r.provider == "onq"]
    pages = [r for r in requests if r.query["size"] == "10"]
    # 45 records at 10 a page: pages 1..5, the fifth is short, so no sixth (empty) request.
    assert len(pages) == math.ceil(len(sandbox.data.onq_conversations) / 10)
    assert [r.query["page"] for r in pages] == [str(n) for n in range(1, len(pages) + 1)]
    # Before pages 2..5 the record just before each is asked for alone (a deletion between
    # two page requests would show there): positions 9, 19, 29, 39 = pages 10, 20, 30, 40.
    probes = [r.query for r in requests if r.query["size"] == "1"]
    assert probes == [{"size": "1", "page": str(n)} for n in (10, 20, 30, 40)]
    assert len(requests) == len(pages) + len(probes)


def test_full_page_at_the_end_costs_one_empty_request(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(onq_conversations=20)
    result = sync(only_onq(sandbox, page_size=10))
    assert len(result.records(STREAM)) == 20
    # Pages 1, 2 and the empty 3, plus one probe before page 2 (an empty page needs none).
    queries = [r.query for r in sandbox.requests if r.provider == "onq"]
    assert [q for q in queries if q["size"] == "10"] == [
        {"size": "10", "page": str(n)} for n in (1, 2, 3)
    ]
    assert [q for q in queries if q["size"] == "1"] == [{"size": "1", "page": "10"}]


def test_token_is_renewed_when_the_server_expires_it_early(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    # `iat` has whole seconds, so a token can look up to 1 s old when minted: expire at 1.2 s.
    sandbox = sandbox_factory(onq_conversations=60, latency_ms=150)
    sandbox.settings.onq_token_max_age_seconds = 1.2
    result = sync(only_onq(sandbox, page_size=5))

    assert_same_records(result.records(STREAM), expected_rows(sandbox), "id")
    assert len(sandbox.onq_tokens_seen) > 1, "the tap never renewed its token"
    rejected = sandbox.count(provider="onq", status=401)
    assert rejected >= 1, "the sandbox never had to reject a token: the test proves nothing"


def test_token_is_reminted_before_its_own_expiry(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lifetime of 600 s is renewed once a fifth of it is left (after 480 s), not later."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    auth = JWTAuthenticator(only_onq(sandbox, token_lifetime_seconds=600)["onq"])
    first = auth(_request()).headers["Authorization"]
    monkeypatch.setattr(time, "time", lambda: now + 470)
    assert auth(_request()).headers["Authorization"] == first
    monkeypatch.setattr(time, "time", lambda: now + 490)
    renewed = auth(_request()).headers["Authorization"]
    assert renewed != first
    claims = jwt.decode(renewed.removeprefix("Bearer "), options={"verify_signature": False})
    assert claims["iat"] == int(now + 490)
    assert claims["exp"] == claims["iat"] + 600


def _request() -> requests.PreparedRequest:
    return requests.Request("GET", "http://127.0.0.1/").prepare()


@pytest.mark.parametrize("field", ["api_secret", "api_key", "audience"])
def test_wrong_credentials_fail_clearly(sandbox: Sandbox, tmp_path: Path, field: str) -> None:
    wrong = f"wrong-{field}-a81c"
    completed = run_cli([], only_onq(sandbox, **{field: wrong}), tmp_path)

    assert completed.returncode != 0
    assert "check onq credentials" in completed.stderr
    configured_secret = only_onq(sandbox, **{field: wrong})["onq"]["api_secret"]
    assert configured_secret not in completed.stderr + completed.stdout
