"""Perform & Engage 365 token auth: `POST /obtainauthtoken/`, wherever the tenant serves it.

The vendor page says only `POST: /obtainauthtoken/`. Tenants serve it under the API root
(`https://host/api/v2/obtainauthtoken/`) or beside it (`https://host/obtainauthtoken/`), so both
are tried, in that order, unless `perform_engage.token_url` pins one.
"""

from __future__ import annotations

import re
import threading
import typing as t
from http import HTTPStatus
from urllib.parse import urlparse

import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_conversations.errors import CredentialsRejected, ProviderError
from tap_conversations.requesting import check_json_body
from tap_conversations.settings import redact_text, register_secret
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    from tap_conversations.client import ApiStream


def token_urls(api_url: str, token_url: str | None) -> list[str]:
    """Where `POST /obtainauthtoken/` may be: `token_url` if set; else under `api_url`, then
    beside the API root (`api_url` without its `/api/v2`), as tenants differ and the vendor
    page only says `POST: /obtainauthtoken/`."""
    if token_url:
        return [token_url]
    api_url = api_url.rstrip("/")
    candidates = [f"{api_url}/obtainauthtoken/"]
    root = re.sub(r"/api/v\d+$", "", api_url)
    if root != api_url:
        candidates.append(f"{root}/obtainauthtoken/")
    return candidates


class TokenAuthenticator:
    """`Authorization: Token <token>` from `POST /obtainauthtoken/`, renewed on demand.

    The token request goes through the same `transport.RetryPolicy` as every other request
    (429, 5xx, timeouts, non-JSON bodies, Retry-After), and the token is redacted from logs.
    """

    def __init__(self, stream: ApiStream) -> None:
        self._stream = stream
        self._token: str | None = None
        self._url: str | None = None  # the token endpoint that answered
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if self._token is None:
                self._token = self._obtain()
            request.headers["Authorization"] = f"Token {self._token}"
        return request

    def renew(self, rejected: requests.PreparedRequest) -> None:
        """A new token, unless another worker already replaced the one `rejected` carried:
        every request in flight when a token is revoked is refused, one renewal serves all."""
        with self._lock:
            if rejected.headers.get("Authorization") == f"Token {self._token}":
                self._token = self._obtain()

    def _obtain(self) -> str:
        label = self._stream.provider_label
        config = self._stream.provider_config
        candidates = (
            [self._url] if self._url else token_urls(config["api_url"], config.get("token_url"))
        )
        for url in candidates:
            response = self._post(url)
            if response.status_code != HTTPStatus.NOT_FOUND:
                self._url = url
                return self._token_in(response)
        tried = " and ".join(f"POST {url}" for url in candidates)
        answered = "both answered" if len(candidates) > 1 else "answered"
        msg = (
            f"{label}: no token endpoint found: {tried} {answered} HTTP 404 — set "
            "perform_engage.token_url to your tenant's token endpoint, or use "
            "perform_engage.auth_method basic"
        )
        raise ProviderError(msg)

    def _post(self, url: str) -> requests.Response:
        stream = self._stream
        label = stream.provider_label
        config = stream.provider_config
        request = requests.Request(
            "POST", url, json={"username": config["username"], "password": config["api_key"]}
        ).prepare()  # not through the session: its own auth is this authenticator
        policy = stream.retry_policy(who=label)

        def send() -> requests.Response:
            response = stream.requests_session.send(request, timeout=stream.timeout)
            if response.status_code in {HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED}:
                msg = (
                    f"{label}: POST {urlparse(url).path} answered HTTP {response.status_code} "
                    "— check perform_engage credentials (perform_engage.username, "
                    "perform_engage.api_key)"
                )
                raise CredentialsRejected(msg)
            status = response.status_code
            if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                raise RetriableAPIError(f"HTTP {status}", response)
            if status == HTTPStatus.NOT_FOUND:
                return response
            if status >= HTTPStatus.BAD_REQUEST:
                msg = (
                    f"{label}: POST {urlparse(url).path} answered HTTP {status} "
                    f"{response.reason}: {redact_text(response.text)[:300]}"
                )
                raise ProviderError(msg)
            check_json_body(response)
            return response

        return policy.call(request, send)

    def _token_in(self, response: requests.Response) -> str:
        label = self._stream.provider_label
        body = decoded_body(response)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            path = urlparse(response.url).path
            msg = f'{label}: POST {path} returned no token (expected {{"token": "..."}})'
            raise ProviderError(msg)
        register_secret(token)
        return token
