"""Respondent: messaging conversations, and the messages embedded in them.

Protocol:
- Auth: two headers on every request, `x-api-key` and `x-api-secret`.
- Paging: `page` (1-based) and `pageSize`; with `includeCount=true` the body carries
  `totalResults`, so paging ends once that many were read (or on a short or empty page).
- Filters: `projectId` (each of `project_ids` is its own partition, with its own bookmark) and
  `externalResearcherId`.
- Messages and participants arrive inside each conversation: `respondent_messages` and
  `respondent_participants` are derived from the parent record, no request of their own.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl, urlparse

from singer_sdk import typing as th
from singer_sdk.authenticators import APIAuthenticatorBase
from typing_extensions import override

from tap_conversations.client import ApiStream, PageNumberUntilShortPaginator
from tap_conversations.derived import DerivedStream
from tap_conversations.errors import ProviderError
from tap_conversations.provider import Provider
from tap_conversations.settings import rate_limit_setting
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_conversations.transport import Authenticator

LABEL = "Respondent"
DEFAULT_API_URL = "https://api.respondent.io/v1"
DEFAULT_PAGE_SIZE = 100
#: Envelope fields that must be counts (non-negative integers) when present.
PAGING_NUMBERS = ("page", "pageSize", "totalResults")


class ApiKeyPairAuthenticator(APIAuthenticatorBase):
    """`x-api-key` and `x-api-secret` on every request (the SDK's API-key auth sets one)."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        super().__init__()
        self.auth_headers.update({"x-api-key": api_key, "x-api-secret": api_secret})


def _user_properties(*extra: th.Property[t.Any], uid_required: bool = False) -> list[t.Any]:
    return [
        th.Property("uid", th.StringType, required=uid_required, description="Messaging user ID"),
        th.Property("firstName", th.StringType),
        th.Property("lastName", th.StringType, description="Last name initial"),
        *extra,
        th.Property("foreignId", th.StringType, description="User ID of the messaging user"),
    ]


def _user() -> th.ObjectType:
    return th.ObjectType(*_user_properties())


PARTICIPANT_PROPERTIES = _user_properties(
    th.Property("read", th.BooleanType, description="Has read the conversation"),
    th.Property("deleted", th.BooleanType, description="Has muted it"),
)


MESSAGE_PROPERTIES = (
    th.Property("createdAt", th.DateTimeType),
    th.Property("uid", th.StringType, required=True, description="Message ID"),
    th.Property("body", th.StringType, description="Message text"),
    th.Property("sender", _user()),
    th.Property("updatedAt", th.DateTimeType),
)


class RespondentStream(ApiStream):
    provider = "respondent"
    provider_label = LABEL
    credential_settings = ("api_key", "api_secret")
    default_api_url = DEFAULT_API_URL

    @override
    def create_authenticator(self) -> Authenticator:
        config = self.provider_config
        return ApiKeyPairAuthenticator(config["api_key"], config["api_secret"])


class RespondentConversationsStream(RespondentStream):
    """`GET /messaging/conversations`: every conversation, per project when configured."""

    name = "respondent_conversations"
    path = "/messaging/conversations"
    primary_keys = ("uid",)
    replication_key = "updatedAt"

    schema = th.PropertiesList(
        th.Property("uid", th.StringType, required=True, description="Conversation ID"),
        th.Property("name", th.StringType, description="Conversation name"),
        th.Property("createdAt", th.DateTimeType),
        th.Property("updatedAt", th.DateTimeType),
        th.Property("deleted", th.BooleanType, description="Marked as deleted"),
        th.Property("locked", th.BooleanType),
        th.Property("read", th.BooleanType, description="Deprecated by the API"),
        th.Property("user", _user(), description="API owner account that created it"),
        th.Property(
            "participants",
            th.ArrayType(th.ObjectType(*PARTICIPANT_PROPERTIES)),
            description="Also one row each in respondent_participants",
        ),
        th.Property(
            "messages",
            th.ArrayType(th.ObjectType(*MESSAGE_PROPERTIES)),
            description="Also one row each in respondent_messages",
        ),
        th.Property(
            "latestMessage",
            th.ObjectType(
                th.Property("createdAt", th.DateTimeType),
                th.Property("uid", th.StringType),
                th.Property("body", th.StringType),
                th.Property("updatedAt", th.DateTimeType),
            ),
        ),
        th.Property("messagesCount", th.IntegerType),
        th.Property(
            "metadata",
            th.ObjectType(
                th.Property("projectId", th.StringType),
                th.Property("surveyResponseId", th.StringType),
                th.Property("externalResearcherId", th.StringType),
                th.Property("externalTeamId", th.StringType),
                th.Property("externalCompanyId", th.StringType),
            ),
        ),
    ).to_dict()

    @property
    def page_size(self) -> int:
        return int(self.provider_config.get("page_size", DEFAULT_PAGE_SIZE))

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]] | None:
        project_ids = self.provider_config.get("project_ids") or []
        return [{"project_id": project_id} for project_id in project_ids] or None

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        # The server answers with the page size it applied, which may be less than asked
        # (a number: `records_in` checked the envelope first).
        return PageNumberUntilShortPaginator(
            self, page_size=lambda body: body.get("pageSize") or self.page_size
        )

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        params: dict[str, t.Any] = {
            "page": next_page_token or 1,
            "pageSize": self.page_size,
            "includeCount": "true",
        }
        if context and context.get("project_id"):
            params["projectId"] = context["project_id"]
        if researcher := self.provider_config.get("external_researcher_id"):
            params["externalResearcherId"] = researcher
        return params

    @override
    def records_in(self, body: t.Any, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        expected = "expected {page, pageSize, results: [...], totalResults}"
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ProviderError(f"{self.describe(response)}: {expected}")
        for field in PAGING_NUMBERS:
            value = body.get(field)
            if value is not None and (type(value) is not int or value < 0):
                shown = repr(value)[:40]
                msg = f"{self.describe(response)}: {expected}, but {field} is {shown}, not a count"
                raise ProviderError(msg)
        return t.cast("list[dict[str, t.Any]]", body["results"])

    @override
    def page_position(self, response: requests.Response) -> int | None:
        page = dict(parse_qsl(urlparse(response.request.url or "").query)).get("page", "1")
        body = decoded_body(response)
        size = body.get("pageSize") if isinstance(body, dict) else None
        if not page.isdigit() or not isinstance(size, int):
            return None
        return (int(page) - 1) * size

    @override
    def total_in(self, body: t.Any) -> int | None:
        total = body.get("totalResults")  # a count or None: `records_in` checked it
        if total is not None:
            self.announce_total(total)
        return t.cast("int | None", total)

    @override
    def get_child_context(
        self,
        record: dict[str, t.Any],
        context: Context | None,
    ) -> dict[str, t.Any]:
        return {"conversation_uid": record["uid"]}


class RespondentMessagesStream(DerivedStream, RespondentStream):
    """One record per message embedded in a conversation, with its `conversation_uid`.

    A conversation that changed is re-emitted whole, so all of its messages are too (targets
    upsert on `uid`). That is why the replication key is the conversation's `updatedAt`
    (`conversation_updated_at`), not the message's own: a re-sent message is never older than
    the stream's bookmark.
    """

    name = "respondent_messages"
    parent_stream_type = RespondentConversationsStream
    array_field = "messages"
    parent_fields: t.ClassVar[dict[str, str]] = {
        "uid": "conversation_uid",
        "updatedAt": "conversation_updated_at",
    }
    primary_keys = ("uid",)
    replication_key = "conversation_updated_at"

    schema = th.PropertiesList(
        th.Property("conversation_uid", th.StringType, required=True),
        th.Property(
            "conversation_updated_at",
            th.DateTimeType,
            description="The conversation's `updatedAt` when this message was read",
        ),
        *MESSAGE_PROPERTIES,
    ).to_dict()


class RespondentParticipantsStream(DerivedStream, RespondentStream):
    """One record per participant of a conversation, keyed by conversation and user."""

    name = "respondent_participants"
    parent_stream_type = RespondentConversationsStream
    array_field = "participants"
    parent_fields: t.ClassVar[dict[str, str]] = {
        "uid": "conversation_uid",
        "updatedAt": "conversation_updated_at",
    }
    primary_keys = ("conversation_uid", "uid")
    replication_key = "conversation_updated_at"

    schema = th.PropertiesList(
        th.Property("conversation_uid", th.StringType, required=True),
        th.Property(
            "conversation_updated_at",
            th.DateTimeType,
            description="The conversation's `updatedAt`: rows older than it are from a former "
            "version",
        ),
        *PARTICIPANT_PROPERTIES,
    ).to_dict()


PROVIDER = Provider(
    key="respondent",
    label=LABEL,
    description="Respondent messaging. Its streams exist only when set.",
    settings=th.ObjectType(
        th.Property("api_url", th.URIType, default=DEFAULT_API_URL, description="API base URL"),
        th.Property("api_key", th.StringType, required=True, secret=True, description="x-api-key"),
        th.Property(
            "api_secret", th.StringType, required=True, secret=True, description="x-api-secret"
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=1000),
            default=DEFAULT_PAGE_SIZE,
            description="`pageSize` per page; the server may apply less",
        ),
        th.Property(
            "project_ids",
            th.ArrayType(th.StringType),
            description="Only these projects, each its own partition with its own bookmark",
        ),
        th.Property(
            "external_researcher_id",
            th.StringType,
            description="Only conversations of this external researcher",
        ),
        rate_limit_setting(),
    ),
    streams=(
        RespondentConversationsStream,
        RespondentMessagesStream,
        RespondentParticipantsStream,
    ),
)
