"""onQ (Rali): the conversations export.

Protocol:
- Auth: `Authorization: Bearer <JWT>` that the client signs itself: HS256 with the API secret,
  header `kid` = API key, claims `iss`, `sub`, `aud`, `iat`, `exp` (at least 10 minutes after
  `iat`). Long runs outlive a token, so it is re-minted before it expires, and once more if the
  server rejects a token we still believe valid.
- Paging: `size` (1-1000) and 1-based `page`, both required; the last page is empty or short.
- Envelope: undocumented. A bare JSON array is the likely reading; an object wrapping one list
  is accepted too; anything else is an error that says what arrived.
"""

from __future__ import annotations

import threading
import time
import typing as t
import uuid
from urllib.parse import parse_qsl, urlparse

import jwt
import requests
from singer_sdk import typing as th
from typing_extensions import override

from tap_conversations.client import ApiStream, PageNumberUntilShortPaginator
from tap_conversations.errors import ProviderError
from tap_conversations.provider import Provider
from tap_conversations.settings import rate_limit_setting, register_secret
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_conversations.transport import Authenticator

LABEL = "onQ"
DEFAULT_API_URL = "https://api.onq.io/api/external"
DEFAULT_PAGE_SIZE = 1000
MIN_TOKEN_LIFETIME = 600  # the API rejects tokens whose exp is less than 10 minutes after iat
DEFAULT_TOKEN_LIFETIME = 3600


class JWTAuthenticator:
    """Mints the self-signed HS256 bearer token onQ expects, and re-mints it in time.

    The SDK's `OAuthJWTAuthenticator` exchanges an RS256 assertion at a token endpoint; onQ
    has no token endpoint, the signed JWT itself is the credential.
    """

    def __init__(self, config: t.Mapping[str, t.Any]) -> None:
        self._config = config
        self._lifetime = int(config.get("token_lifetime_seconds", DEFAULT_TOKEN_LIFETIME))
        # Renew when a fifth of the lifetime is left: a request never leaves with a token
        # about to expire in flight.
        self._margin = self._lifetime / 5
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - self._margin:
                self._mint()
            request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def renew(self, rejected: requests.PreparedRequest) -> None:
        with self._lock:  # unless another worker already replaced the rejected token
            if rejected.headers.get("Authorization") == f"Bearer {self._token}":
                self._mint()

    def _mint(self) -> None:
        config = self._config
        issued_at = int(time.time())
        self._expires_at = issued_at + self._lifetime
        claims = {
            "iss": config["issuer"],
            "sub": config["subject"],
            "aud": config["audience"],
            "iat": issued_at,
            "exp": issued_at + self._lifetime,
            "jti": uuid.uuid4().hex,  # every token distinct, even two minted in one second
        }
        self._token = jwt.encode(
            claims,
            config["api_secret"],
            algorithm="HS256",
            headers={"kid": config["api_key"]},
        )
        register_secret(self._token)  # a signed credential: as secret as the key that signs it


class OnqConversationsStream(ApiStream):
    """`GET /conversations?size=&page=`: the conversations export."""

    provider = "onq"
    provider_label = LABEL
    credential_settings = ("api_key", "api_secret", "issuer", "subject", "audience")
    default_api_url = DEFAULT_API_URL
    credential_statuses = frozenset({401})  # onQ answers 403 to an invalid request

    name = "onq_conversations"
    path = "/conversations"
    primary_keys = ("id",)
    replication_key = "last_updated_on"
    # Identifiers are opaque: the docs do not say number or string, so keep them as text
    # (`records.RecordChecker` turns them into text before it checks the record).
    text_fields = ("id", "org_id")

    schema = th.PropertiesList(
        th.Property("id", th.StringType, required=True, description="Conversation identifier"),
        th.Property("type", th.StringType, description="course, sequence or resource"),
        th.Property("sub_type", th.StringType, description="PUBLIC, PRIVATE or EXTERNAL"),
        th.Property("org_id", th.StringType, description="Organization identifier"),
        th.Property("name", th.StringType, description="Conversation name"),
        th.Property("content_name", th.StringType, description="Content name"),
        th.Property("status", th.StringType, description="open, started or ended"),
        th.Property("register_status", th.StringType, description="available, open or closed"),
        th.Property("start_on", th.DateTimeType, description="Start (UTC)"),
        th.Property("end_on", th.DateTimeType, description="End (UTC)"),
        th.Property("close_on", th.DateTimeType, description="Registration close (UTC)"),
        th.Property("start_register_on", th.DateTimeType, description="Registration start"),
        th.Property("last_updated_on", th.DateTimeType, description="Last update activity"),
        th.Property("created_on", th.DateTimeType, description="Creation (UTC)"),
        th.Property("visible", th.BooleanType, description="Accessible without an invite"),
        th.Property("active", th.BooleanType, description="Conversation is active"),
        th.Property("private_mode", th.BooleanType, description="Reactions/comments private"),
        th.Property("external_code", th.StringType, description="External identifier"),
        th.Property("max_count", th.IntegerType, description="Max users+facilitators; 0=none"),
        th.Property("max_user_count", th.IntegerType, description="Max users; 0 = no max"),
        th.Property("max_facilitator_count", th.IntegerType, description="0 = no max"),
        th.Property("registered_user_count", th.IntegerType),
        th.Property("registered_facilitator_count", th.IntegerType),
        th.Property("open_questions_count", th.IntegerType),
        th.Property("to_facilitator_count", th.IntegerType, description="Private messages"),
    ).to_dict()

    @property
    def page_size(self) -> int:
        return int(self.provider_config.get("page_size", DEFAULT_PAGE_SIZE))

    @override
    def create_authenticator(self) -> Authenticator:
        return JWTAuthenticator(self.provider_config)

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        return PageNumberUntilShortPaginator(self, page_size=lambda _body: self.page_size)

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        return {"size": self.page_size, "page": next_page_token or 1}

    @override
    def records_in(self, body: t.Any, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            lists = [value for value in body.values() if isinstance(value, list)]
            if len(lists) == 1:
                return t.cast("list[dict[str, t.Any]]", lists[0])
            shape = f"an object with keys {sorted(body)}"
        else:
            shape = type(body).__name__
        msg = (
            f"{self.describe(response)}: expected a JSON array of conversations "
            f"(or an object wrapping one), got {shape}"
        )
        raise ProviderError(msg)

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        """A page, checked for a deletion between it and the page before.

        The bare array announces no count, so a record deleted before this page between the
        two page requests would go unseen: the list shifts left by one and this page's first
        record slides, unread, into the previous page. One one-record request for the position
        just before this page shows it: that record must still be the previous page's last.
        A difference counts as movement, and the scan is read again (`replication`).
        """
        watch = self.scan_watch
        previous_last = watch.last_key if watch is not None else None
        rows = list(super().parse_response(response))
        position = self.page_position(response)
        if watch is not None and previous_last is not None and position and rows:
            found = self.key_at(position - 1, response.request)
            if found != previous_last:
                watch.moved(
                    f"the record at position {position - 1} changed between two pages "
                    f"({previous_last} became {found})"
                )
        return rows

    def key_at(self, position: int, page_request: requests.PreparedRequest) -> str | None:
        """The key of the record at 0-based `position`, asked as a page of one record."""
        url = (page_request.url or "").split("?", 1)[0]
        params = {"size": 1, "page": position + 1}
        probe = self.build_prepared_request(method="GET", url=url, params=params)

        def attempt(request: requests.PreparedRequest, _context: Context | None) -> t.Any:
            response = self.requests_session.send(self.authenticator(request), timeout=self.timeout)
            self.validate_response(response)
            return response

        response = self.request_decorator(attempt)(probe, self.context)
        rows = list(self.records_in(decoded_body(response), response))
        return str(rows[0].get("id")) if rows and isinstance(rows[0], dict) else None

    @override
    def page_position(self, response: requests.Response) -> int | None:
        query = dict(parse_qsl(urlparse(response.request.url or "").query))
        page, size = query.get("page", ""), query.get("size", "")
        return (int(page) - 1) * int(size) if page.isdigit() and size.isdigit() else None


PROVIDER = Provider(
    key="onq",
    label=LABEL,
    description="onQ (Rali) conversations export. Its streams exist only when set.",
    settings=th.ObjectType(
        th.Property("api_url", th.URIType, default=DEFAULT_API_URL, description="API base URL"),
        th.Property(
            "api_key", th.StringType, required=True, description="API key (JWT header `kid`)"
        ),
        th.Property(
            "api_secret",
            th.StringType,
            required=True,
            secret=True,
            description="API secret (HS256 signing key)",
        ),
        th.Property(
            "issuer", th.StringType, required=True, description="JWT `iss`: your site's URL"
        ),
        th.Property(
            "subject", th.StringType, required=True, description="JWT `sub`: username (email)"
        ),
        th.Property(
            "audience",
            th.StringType,
            required=True,
            description="JWT `aud`: your onQ tenant URL, e.g. https://acme.onq.io",
        ),
        th.Property(
            "token_lifetime_seconds",
            th.IntegerType(minimum=MIN_TOKEN_LIFETIME),
            default=DEFAULT_TOKEN_LIFETIME,
            description="Lifetime of each minted JWT (at least 600)",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=1000),
            default=DEFAULT_PAGE_SIZE,
            description="`size` per page (1-1000)",
        ),
        rate_limit_setting(),
    ),
    streams=(OnqConversationsStream,),
)
