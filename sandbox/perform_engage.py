"""Perform & Engage 365 (Zensai, formerly Weekly10): a Django REST Framework API.

Mirrors DRF's behaviour where the vendor docs are silent: `LimitOffsetPagination` with absolute
`next`/`previous` links (parameters sorted, as DRF's `replace_query_param` writes them), error
bodies `{"detail": ...}`, `WWW-Authenticate` on 401, and APPEND_SLASH redirects.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qsl, urlencode

from sandbox.data import Collection, Record, SandboxData, pe_list_shape, pe_plan_list_shape
from sandbox.server import (
    ApiError,
    BadParameter,
    Provider,
    Request,
    Response,
    json_response,
    same_secret,
)
from sandbox.settings import PE_API_KEY, PE_USERNAME, SandboxSettings

STATUSES = ("draft", "final", "deleted", "archived")
DEFAULT_LIMIT = 100
_COUNT_MISMATCH = 10
_TOKEN_PATH = ("obtainauthtoken", "")
ROOT_TOKEN_PATH = "/perform-engage/obtainauthtoken/"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True)
class _Resource:
    """A list endpoint with its detail endpoint."""

    collection: Collection
    filters: tuple[str, ...]
    list_shape: Callable[[Record], Record]


class PerformEngage(Provider):
    name = "perform_engage"
    prefix = "/perform-engage/api/v2"
    extra_paths = (ROOT_TOKEN_PATH,)

    def __init__(self, settings: SandboxSettings, data: SandboxData) -> None:
        super().__init__(settings, data)
        self._tokens: dict[str, float] = {}  # token -> monotonic time issued
        self._lock = threading.Lock()
        dataset = data.perform_engage
        self._resources = {
            "conversations": _Resource(
                dataset.conversations,
                ("person_name", "plan_name", "template_name", "status"),
                pe_list_shape,
            ),
            "conversation_plans": _Resource(
                dataset.plans, ("name", "template_name"), pe_plan_list_shape
            ),
        }

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._tokens)

    def handle(self, request: Request) -> Response:
        at_root = self.settings.pe_token_at_root
        if request.path == ROOT_TOKEN_PATH or (at_root and request.segments == _TOKEN_PATH):
            if request.path != ROOT_TOKEN_PATH or not at_root:
                raise _error(404, "Not found.")
            if request.method != "POST":
                raise _error(405, f'Method "{request.method}" not allowed.')
            return self._obtain_token(request)
        endpoint = self._endpoint(request.segments)
        if endpoint is None and self._endpoint((*request.segments, "")):
            query = urlencode(request.query)
            location = f"{request.raw_path}/" + (f"?{query}" if query else "")
            return Response(301, headers={"Location": location})
        if endpoint is None:
            raise _error(404, "Not found.")
        public = request.segments == _TOKEN_PATH
        if not public:
            self._authenticate(request)
        if request.method != ("POST" if public else "GET"):
            raise _error(405, f'Method "{request.method}" not allowed.')
        return endpoint(request)

    def _endpoint(self, segments: tuple[str, ...]) -> Callable[[Request], Response] | None:
        if segments == _TOKEN_PATH:
            return self._obtain_token
        match segments:
            case (name, "") if name in self._resources:
                return partial(self._list, self._resources[name])
            case (name, key, "") if name in self._resources and key:
                return partial(self._detail, self._resources[name], key)
        return None

    # --- authentication ---------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        scheme, _, credentials = (request.header("Authorization") or "").strip().partition(" ")
        match scheme.lower():
            case "basic":
                self._check_basic(credentials.strip())
            case "token":
                self._check_token(credentials.strip())
            case _:
                raise _unauthorized("Authentication credentials were not provided.")

    @staticmethod
    def _check_basic(credentials: str) -> None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized(
                "Invalid basic header. Credentials not correctly base64 encoded."
            ) from None
        username, _, api_key = decoded.partition(":")
        if not (same_secret(username, PE_USERNAME) and same_secret(api_key, PE_API_KEY)):
            raise _unauthorized("Invalid username/password.")

    def _check_token(self, token: str) -> None:
        ttl = self.settings.pe_token_ttl_seconds
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or (ttl is not None and time.monotonic() - issued >= ttl):
            raise _unauthorized("Invalid token.")

    def _obtain_token(self, request: Request) -> Response:
        fields = _form(request)
        missing = {name: ["This field is required."] for name in ("username", "password")}
        missing = {name: problem for name, problem in missing.items() if not fields.get(name)}
        if missing:
            raise ApiError(json_response(400, missing))
        if not (
            same_secret(fields["username"], PE_USERNAME)
            and same_secret(fields["password"], PE_API_KEY)
        ):
            body = {"non_field_errors": ["Unable to log in with provided credentials."]}
            raise ApiError(json_response(400, body))
        token = secrets.token_hex(20)
        with self._lock:
            self._tokens[token] = time.monotonic()
        return json_response(200, {"token": token})

    # --- endpoints --------------------------------------------------------------------------

    def _list(self, resource: _Resource, request: Request) -> Response:
        try:
            limit = request.int_param("limit", default=DEFAULT_LIMIT, minimum=1)
            offset = request.int_param("offset", default=0, minimum=0)
        except BadParameter as problem:
            raise _error(400, problem.message) from None
        limit = min(limit, self.settings.pe_max_limit)
        filters = {
            name: request.query[name] for name in resource.filters if request.query.get(name)
        }
        status = filters.get("status")
        if status is not None and status not in STATUSES:
            message = f"Select a valid choice. {status} is not one of the available choices."
            raise ApiError(json_response(400, {"status": [message]}))
        records = resource.collection.matching(filters)
        page = _Page(request, len(records), limit, offset)
        pathology = self.settings.pe_pathology
        if pathology == "count_mismatch":
            page = _Page(request, len(records) + _COUNT_MISMATCH, limit, offset)
        next_link = page.next_link()
        results = [resource.list_shape(r) for r in records[offset : offset + limit]]
        if resource.collection is self.data.perform_engage.conversations:
            self.data.list_page_served(self.name)
        if pathology == "endless":
            next_link = page.link(offset + limit)
        elif pathology == "repeat_next" and 0 < offset <= limit and next_link:  # second page
            next_link = page.link(offset)
        return json_response(
            200,
            {
                "count": page.count,
                "next": next_link,
                "previous": page.previous_link(),
                "results": results,
            },
        )

    @staticmethod
    def _detail(resource: _Resource, key: str, _request: Request) -> Response:
        record = resource.collection.get(key)
        if record is None:
            raise _error(404, "Not found.")
        return json_response(200, record)


@dataclass(frozen=True)
class _Page:
    """DRF's LimitOffsetPagination links for one page of a list."""

    request: Request
    count: int
    limit: int
    offset: int

    def link(self, offset: int | None) -> str:
        """The request's own URL with this limit and `offset` (dropped when None)."""
        params = {**self.request.query, "limit": str(self.limit), "offset": str(offset)}
        if offset is None:
            del params["offset"]
        host = self.request.host
        return f"http://{host}{self.request.raw_path}?{urlencode(sorted(params.items()))}"

    def next_link(self) -> str | None:
        if self.offset + self.limit >= self.count:
            return None
        return self.link(self.offset + self.limit)

    def previous_link(self) -> str | None:
        if self.offset <= 0:
            return None
        previous = self.offset - self.limit
        return self.link(previous if previous > 0 else None)


def _form(request: Request) -> dict[str, str]:
    """The fields of a JSON or form-encoded body (DRF's parsers)."""
    if "application/x-www-form-urlencoded" in (request.header("Content-Type") or ""):
        return dict(parse_qsl(request.body.decode(errors="replace")))
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError as problem:
        raise _error(400, f"JSON parse error - {problem}") from None
    if not isinstance(payload, dict):
        raise _error(400, "Invalid data. Expected a dictionary.")
    return {key: value for key, value in payload.items() if isinstance(value, str)}


def _error(status: int, detail: str) -> ApiError:
    return ApiError(json_response(status, {"detail": detail}))


def _unauthorized(detail: str) -> ApiError:
    headers = {"WWW-Authenticate": 'Basic realm="api"'}
    return ApiError(json_response(401, {"detail": detail}, headers))
