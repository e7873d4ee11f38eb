"""The sandbox switches the hostile-API tests use: faults limited to some paths, and the
Perform & Engage token endpoint beside the API root."""

from __future__ import annotations

import typing as t

import requests

from sandbox import PE_API_KEY, PE_USERNAME, FaultSettings

if t.TYPE_CHECKING:
    from sandbox import Sandbox

CREDENTIALS = {"username": PE_USERNAME, "password": PE_API_KEY}


def test_faults_can_be_limited_to_paths_containing_a_string(sandbox: Sandbox) -> None:
    sandbox.settings.faults = FaultSettings(
        rate=1.0, kinds=("500",), providers=("perform_engage",), path_contains="580:"
    )
    api = sandbox.tap_config()["perform_engage"]["api_url"]
    auth = (PE_USERNAME, PE_API_KEY)
    with requests.Session() as http:
        listed = http.get(f"{api}/conversations/", auth=auth, timeout=10)
        assert listed.status_code == 200
        api_id = listed.json()["results"][0]["api_id"]
        detail = http.get(
            f"{api}/conversations/{api_id.replace(':', '%3A')}/", auth=auth, timeout=10
        )
    assert detail.status_code == 500
    assert [r.fault for r in sandbox.requests] == [None, "500"]


def test_the_token_endpoint_can_sit_beside_the_api_root(sandbox: Sandbox) -> None:
    api = sandbox.tap_config()["perform_engage"]["api_url"]
    root = api.removesuffix("/api/v2")
    with requests.Session() as http:
        assert http.post(f"{api}/obtainauthtoken/", json=CREDENTIALS, timeout=10).ok
        assert (
            http.post(f"{root}/obtainauthtoken/", json=CREDENTIALS, timeout=10).status_code == 404
        )
        sandbox.settings.pe_token_at_root = True
        assert http.post(f"{api}/obtainauthtoken/", json=CREDENTIALS, timeout=10).status_code == 404
        issued = http.post(f"{root}/obtainauthtoken/", json=CREDENTIALS, timeout=10)
        assert issued.ok
        token = issued.json()["token"]
        headers = {"Authorization": f"Token {token}"}
        assert http.get(f"{api}/conversation_plans/", headers=headers, timeout=10).ok
    assert sandbox.pe_tokens_issued == 2
