"""Perform & Engage 365 (Zensai, formerly Weekly10): conversations and conversation plans.

Protocol: Django REST Framework style.
- Auth: HTTP Basic `username:api_key` on every request (current docs), or a token from
  `POST /obtainauthtoken/` sent as `Authorization: Token <token>` (older tenants).
- Lists: `limit` + `offset`, answer `{count, next, previous, results}` where `next` is an
  absolute URL. The server may cap `limit`, so we follow `next` instead of computing offsets.
- Details: `GET /<list>/<api_id>/` with the id percent-encoded (`580%3A...`).
"""

from __future__ import annotations

import threading
import typing as t
from http import HTTPStatus
from urllib.parse import parse_qsl

import requests
from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator
from typing_extensions import override

from tap_conversations.client import ApiStream, DetailStream
from tap_conversations.errors import CredentialsRejected, ProviderError
from tap_conversations.paging import NextUrlPaginator
from tap_conversations.provider import Provider
from tap_conversations.settings import rate_limit_setting

if t.TYPE_CHECKING:
    from urllib.parse import ParseResult

    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_conversations.transport import Authenticator

LABEL = "Perform & Engage 365"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _unauthenticated(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class TokenAuthenticator:
    """`Authorization: Token <token>` from `POST /obtainauthtoken/`, renewed on demand."""

    def __init__(self, stream: PerformEngageStream) -> None:
        self._stream = stream
        self._token: str | None = None
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if self._token is None:
                self._token = self._obtain()
            request.headers["Authorization"] = f"Token {self._token}"
        return request

    def renew(self) -> None:
        with self._lock:
            self._token = self._obtain()

    def _obtain(self) -> str:
        stream = self._stream
        config = stream.provider_config
        response = stream.requests_session.post(
            f"{stream.url_base}/obtainauthtoken/",
            json={"username": config["username"], "password": config["api_key"]},
            timeout=stream.timeout,
            auth=_unauthenticated,  # the session's own auth is this authenticator
        )
        if response.status_code in {HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED}:
            msg = (
                f"{LABEL}: POST /obtainauthtoken/ answered HTTP {response.status_code} — check "
                "perform_engage credentials (perform_engage.username, perform_engage.api_key)"
            )
            raise CredentialsRejected(msg)
        response.raise_for_status()
        token = response.json().get("token")
        if not isinstance(token, str) or not token:
            msg = f"{LABEL}: POST /obtainauthtoken/ returned no token"
            raise ProviderError(msg)
        return token


class PerformEngageStream(ApiStream):
    """Every Perform & Engage 365 endpoint: Basic or Token auth."""

    provider = "perform_engage"
    provider_label = LABEL
    credential_settings = ("username", "api_key")

    @override
    def create_authenticator(self) -> Authenticator:
        config = self.provider_config
        if config.get("auth_method", "basic") == "token":
            return TokenAuthenticator(self)
        return BasicAuthenticator(username=config["username"], password=config["api_key"])


class PerformEngageListStream(PerformEngageStream):
    """A list endpoint: DRF paging (`limit`, then the server's `next`), server-side filters."""

    #: Config object holding this endpoint's filters, e.g. "conversation_filters".
    filters_setting: t.ClassVar[str | None] = None

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        return NextUrlPaginator(self)

    @override
    def get_url_params(
        self,
        context: Context | None,
        next_page_token: ParseResult | None,
    ) -> dict[str, t.Any]:
        if next_page_token is not None:
            # The server's own `next` carries the effective limit, offset and filters.
            return dict(parse_qsl(next_page_token.query, keep_blank_values=True))
        filters = self.provider_config.get(self.filters_setting or "", None) or {}
        page_size = self.provider_config.get("page_size", DEFAULT_PAGE_SIZE)
        return {"limit": page_size, **{k: v for k, v in filters.items() if v is not None}}

    @override
    def records_in(self, body: t.Any, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            msg = f"{self.describe(response)}: expected {{count, next, results: [...]}}"
            raise ProviderError(msg)
        if isinstance(body.get("count"), int):
            self.announce_total(body["count"])
        return t.cast("list[dict[str, t.Any]]", body["results"])

    @override
    def get_child_context(
        self,
        record: dict[str, t.Any],
        context: Context | None,
    ) -> dict[str, t.Any]:
        return {"api_id": record["api_id"]}


class PerformEngageDetailStream(DetailStream, PerformEngageStream):
    """A detail endpoint `GET /<list>/{api_id}/`: one object per parent record.

    `DetailStream` brings the one-object GET, `PerformEngageStream` the auth; neither
    overrides what the other defines, so their order does not matter.
    """


def _string(name: str, description: str, *, required: bool = False) -> th.Property[t.Any]:
    return th.Property(name, th.StringType, required=required, description=description)


def _timestamp(name: str, description: str) -> th.Property[t.Any]:
    return th.Property(name, th.DateTimeType, description=description)


# --- Conversations ---------------------------------------------------------------------------

CONVERSATION_PROPERTIES = (
    _string("api_id", "Conversation ID, e.g. `580:972ba6da-...`", required=True),
    _string("template_api_id", "Conversation template ID"),
    _string("template_name", "Conversation template name"),
    _string("plan_api_id", "Conversation plan ID"),
    _string("plan_name", "Conversation plan name"),
    _string("stage_name", "Current stage; `Final` once completed"),
    _string("stage_api_id", "Stage ID"),
    _string("status", "draft, final, deleted or archived"),
    _timestamp("updated_date", "Last update of the conversation (UTC)"),
    _timestamp("completed_date", "Completion time (UTC)"),
    _timestamp("generated_date", "Generation time (UTC)"),
    _string("person_api_id", "Employee ID"),
    _string("person_name", "Employee full name"),
    _string("person_email", "Employee email"),
    _string("manager_api_id", "Manager ID"),
    _string("manager_name", "Manager full name"),
    _string("manager_email", "Manager email"),
    _string("reviewer_api_id", "Reviewer ID"),
    _string("reviewer_name", "Reviewer full name"),
    _string("reviewer_email", "Reviewer email"),
    _string("second_reviewer_api_id", "Second reviewer ID"),
    _string("second_reviewer_name", "Second reviewer full name"),
    _string("second_reviewer_email", "Second reviewer email"),
)

CONVERSATION_ELEMENT = th.ObjectType(
    _string("api_id", "Element answer ID (often null)"),
    _string("element_title", "Question or element title"),
    _string("element_api_id", "Element ID; opaque, may start with `None:`"),
    _string("element_type", "Element type, e.g. nine_box, text, rating"),
    _string("value", "Answer value, as the API returns it (a string)"),
    _string("key", "Answer key"),
    _string("comment", "Comment on the answer"),
)


class PerformEngageConversationsStream(PerformEngageListStream):
    """`GET /conversations/`: every conversation, filtered by `conversation_filters`."""

    name = "perform_engage_conversations"
    path = "/conversations/"
    primary_keys = ("api_id",)
    replication_key = "updated_date"
    filters_setting = "conversation_filters"
    schema = th.PropertiesList(*CONVERSATION_PROPERTIES).to_dict()


class PerformEngageConversationDetailsStream(PerformEngageDetailStream):
    """`GET /conversations/{api_id}/`: the list fields plus `data`, the answered elements."""

    name = "perform_engage_conversation_details"
    path = "/conversations/{api_id}/"
    parent_stream_type = PerformEngageConversationsStream
    primary_keys = ("api_id",)
    replication_key = "updated_date"
    schema = th.PropertiesList(
        *CONVERSATION_PROPERTIES,
        th.Property("data", th.ArrayType(CONVERSATION_ELEMENT), description="Elements"),
    ).to_dict()


# --- Conversation plans ----------------------------------------------------------------------

PLAN_PROPERTIES = (
    _string("api_id", "Conversation plan ID", required=True),
    _string("name", "Conversation plan name"),
    _string("template_name", "Conversation template name"),
    _string("template_api_id", "Conversation template ID"),
    _string("status", "draft or active"),
    _string("frequency", "How often a recurring plan takes place, e.g. `Every 4 weeks`"),
)


class PerformEngageConversationPlansStream(PerformEngageListStream):
    """`GET /conversation_plans/`: plans have no update timestamp, so full table."""

    name = "perform_engage_conversation_plans"
    path = "/conversation_plans/"
    primary_keys = ("api_id",)
    filters_setting = "plan_filters"
    schema = th.PropertiesList(*PLAN_PROPERTIES).to_dict()


class PerformEngageConversationPlanDetailsStream(PerformEngageDetailStream):
    """`GET /conversation_plans/{api_id}/`: plus assigned users and departments."""

    name = "perform_engage_conversation_plan_details"
    path = "/conversation_plans/{api_id}/"
    parent_stream_type = PerformEngageConversationPlansStream
    primary_keys = ("api_id",)
    schema = th.PropertiesList(
        *PLAN_PROPERTIES,
        th.Property(
            "assigned_users",
            th.ArrayType(
                th.ObjectType(
                    _string("api_id", "User ID"),
                    _string("name", "User full name"),
                    _string("email", "User email"),
                )
            ),
        ),
        th.Property(
            "assigned_departments",
            th.ArrayType(
                th.ObjectType(_string("api_id", "Department ID"), _string("name", "Department"))
            ),
        ),
    ).to_dict()


PROVIDER = Provider(
    key="perform_engage",
    label=LABEL,
    description="Perform & Engage 365 (Zensai/Weekly10). Its streams exist only when set.",
    settings=th.ObjectType(
        th.Property(
            "api_url",
            th.URIType,
            required=True,
            description="Regional API base, e.g. https://pro.weekly10.net/api/v2",
        ),
        th.Property("username", th.StringType, required=True, description="API username"),
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            description="API key from Settings > API keys (Basic password / token password)",
        ),
        th.Property(
            "auth_method",
            th.StringType(allowed_values=["basic", "token"]),
            default="basic",
            description="`basic` (current docs) or `token` (POST /obtainauthtoken/)",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
            default=DEFAULT_PAGE_SIZE,
            description="`limit` asked per list page; the server may cap it",
        ),
        th.Property(
            "conversation_filters",
            th.ObjectType(
                _string("person_name", "Employee full name"),
                _string("plan_name", "Conversation plan name"),
                _string("template_name", "Conversation template name"),
                th.Property(
                    "status",
                    th.StringType(allowed_values=["draft", "final", "deleted", "archived"]),
                    description="draft, final, deleted or archived",
                ),
            ),
            description="Server-side filters for perform_engage_conversations",
        ),
        th.Property(
            "plan_filters",
            th.ObjectType(
                _string("name", "Conversation plan name"),
                _string("template_name", "Conversation template name"),
            ),
            description="Server-side filters for perform_engage_conversation_plans",
        ),
        rate_limit_setting(),
    ),
    streams=(
        PerformEngageConversationsStream,
        PerformEngageConversationDetailsStream,
        PerformEngageConversationPlansStream,
        PerformEngageConversationPlanDetailsStream,
    ),
)
