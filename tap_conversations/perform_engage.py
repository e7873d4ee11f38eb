"""Perform & Engage 365 (Zensai, formerly Weekly10): conversations and conversation plans.

Protocol: Django REST Framework style.
- Auth: HTTP Basic `username:api_key` on every request (current docs), or a token from
  `POST /obtainauthtoken/` sent as `Authorization: Token <token>` (older tenants).
- Lists: `limit` + `offset`, answer `{count, next, previous, results}` where `next` is an
  absolute URL. The server may cap `limit`, so we follow `next` instead of computing offsets.
- Details: `GET /<list>/<api_id>/` with the id percent-encoded (`580%3A...`).
"""

from __future__ import annotations

import base64
import typing as t
from urllib.parse import parse_qsl, urlparse

import requests
from requests.auth import HTTPBasicAuth
from singer_sdk import typing as th
from typing_extensions import override

from tap_conversations.client import ApiStream, NextUrlPaginator
from tap_conversations.derived import DerivedStream
from tap_conversations.detail import DetailStream
from tap_conversations.errors import ProviderError
from tap_conversations.perform_engage_schemas import (
    ASSIGNED_DEPARTMENT_PROPERTIES,
    ASSIGNED_USER_PROPERTIES,
    CONVERSATION_PROPERTIES,
    ELEMENT_PROPERTIES,
    PLAN_PROPERTIES,
)
from tap_conversations.perform_engage_schemas import string as _string
from tap_conversations.perform_engage_schemas import timestamp as _timestamp
from tap_conversations.perform_engage_token import TokenAuthenticator
from tap_conversations.provider import Provider
from tap_conversations.settings import rate_limit_setting, register_secret

if t.TYPE_CHECKING:
    from urllib.parse import ParseResult

    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_conversations.transport import Authenticator

LABEL = "Perform & Engage 365"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


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
        # The header carries base64(username:api_key): as secret as the key itself.
        basic = base64.b64encode(f"{config['username']}:{config['api_key']}".encode()).decode()
        register_secret(basic)
        # requests' own: the SDK's `BasicAuthenticator` also rebuilds the URL's query on each
        # request, which the SDK authenticates twice (2% of a detail's instructions). Given as
        # bytes, so that both are UTF-8, as the registered secret is (text: latin-1).
        return HTTPBasicAuth(config["username"].encode(), config["api_key"].encode())


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
    def total_in(self, body: t.Any) -> int | None:
        count = body.get("count") if isinstance(body, dict) else None
        return count if isinstance(count, int) else None

    @override
    def page_position(self, response: requests.Response) -> int | None:
        query = dict(parse_qsl(urlparse(response.request.url or "").query))
        offset = query.get("offset", "0")
        return int(offset) if offset.isdigit() else None

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


# --- Conversations ---------------------------------------------------------------------------


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
        th.Property(
            "data",
            th.ArrayType(th.ObjectType(*ELEMENT_PROPERTIES)),
            description="Elements; also one row each in perform_engage_conversation_elements",
        ),
    ).to_dict()


class PerformEngageConversationElementsStream(DerivedStream, PerformEngageStream):
    """One row per element of a conversation detail's `data`: the answers of a review.

    Key: the conversation and the element's place in `data`. `element_api_id` is not documented
    as unique within a conversation (nor `api_id`, often null), and a key that two elements
    could share would lose one of them in an upserting target; the position always exists and
    never repeats.
    """

    name = "perform_engage_conversation_elements"
    parent_stream_type = PerformEngageConversationDetailsStream
    array_field = "data"
    parent_fields: t.ClassVar[dict[str, str]] = {
        "api_id": "conversation_api_id",
        "updated_date": "conversation_updated_date",
    }
    position_field = "position"
    primary_keys = ("conversation_api_id", "position")
    replication_key = "conversation_updated_date"
    schema = th.PropertiesList(
        _string("conversation_api_id", "The conversation's `api_id`", required=True),
        th.Property(
            "position",
            th.IntegerType,
            required=True,
            description="Place of the element in the conversation's `data`, from 0",
        ),
        _timestamp(
            "conversation_updated_date",
            "The conversation's `updated_date`: rows older than it are from a former version",
        ),
        *ELEMENT_PROPERTIES,
    ).to_dict()


# --- Conversation plans ----------------------------------------------------------------------


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
            th.ArrayType(th.ObjectType(*ASSIGNED_USER_PROPERTIES)),
            description="Also one row each in perform_engage_conversation_plan_users",
        ),
        th.Property(
            "assigned_departments",
            th.ArrayType(th.ObjectType(*ASSIGNED_DEPARTMENT_PROPERTIES)),
            description="Also one row each in perform_engage_conversation_plan_departments",
        ),
    ).to_dict()


class PerformEngageConversationPlanUsersStream(DerivedStream, PerformEngageStream):
    """One row per user assigned to a plan (the plan detail's `assigned_users`)."""

    name = "perform_engage_conversation_plan_users"
    parent_stream_type = PerformEngageConversationPlanDetailsStream
    array_field = "assigned_users"
    parent_fields: t.ClassVar[dict[str, str]] = {"api_id": "plan_api_id"}
    primary_keys = ("plan_api_id", "api_id")
    schema = th.PropertiesList(
        _string("plan_api_id", "The plan's `api_id`", required=True),
        *ASSIGNED_USER_PROPERTIES,
    ).to_dict()


class PerformEngageConversationPlanDepartmentsStream(DerivedStream, PerformEngageStream):
    """One row per department assigned to a plan (the plan detail's `assigned_departments`)."""

    name = "perform_engage_conversation_plan_departments"
    parent_stream_type = PerformEngageConversationPlanDetailsStream
    array_field = "assigned_departments"
    parent_fields: t.ClassVar[dict[str, str]] = {"api_id": "plan_api_id"}
    primary_keys = ("plan_api_id", "api_id")
    schema = th.PropertiesList(
        _string("plan_api_id", "The plan's `api_id`", required=True),
        *ASSIGNED_DEPARTMENT_PROPERTIES,
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
            "token_url",
            th.URIType,
            description=(
                "Token endpoint for auth_method token; by default `<api_url>/obtainauthtoken/`, "
                "then `/obtainauthtoken/` beside the API root (api_url without /api/v2)"
            ),
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
        PerformEngageConversationElementsStream,
        PerformEngageConversationPlansStream,
        PerformEngageConversationPlanDetailsStream,
        PerformEngageConversationPlanUsersStream,
        PerformEngageConversationPlanDepartmentsStream,
    ),
)
