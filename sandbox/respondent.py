"""Respondent messaging API: two secret headers, page/pageSize paging, NestJS-style errors."""

from __future__ import annotations

import re

from sandbox.server import (
    ApiError,
    BadParameter,
    Provider,
    Request,
    Response,
    json_response,
    same_secret,
)
from sandbox.settings import RESPONDENT_API_KEY, RESPONDENT_API_SECRET

DEFAULT_PAGE_SIZE = 20
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class Respondent(Provider):
    name = "respondent"
    prefix = "/respondent/v1"

    def handle(self, request: Request) -> Response:
        match request.method, request.segments:
            case "GET", ("messaging", "conversations"):
                self._authenticate(request)
                return self._list(request)
            case "GET", ("messaging", "conversations", uid) if uid:
                self._authenticate(request)
                return self._detail(uid)
        message = f"Cannot {request.method} {request.path.removeprefix('/respondent')}"
        raise ApiError(
            json_response(404, {"message": message, "error": "Not Found", "statusCode": 404})
        )

    @staticmethod
    def _authenticate(request: Request) -> None:
        if not (
            same_secret(request.header("x-api-key"), RESPONDENT_API_KEY)
            and same_secret(request.header("x-api-secret"), RESPONDENT_API_SECRET)
        ):
            raise ApiError(json_response(401, {"statusCode": 401, "message": "Unauthorized"}))

    def _list(self, request: Request) -> Response:
        try:
            page = request.int_param("page", default=1, minimum=1)
            page_size = request.int_param("pageSize", default=DEFAULT_PAGE_SIZE, minimum=1)
        except BadParameter as problem:
            raise _bad_request(problem.message) from None
        page_size = min(page_size, self.settings.respondent_max_page_size)
        filters = {
            name: request.query[name]
            for name in ("projectId", "externalResearcherId")
            if request.query.get(name)
        }
        if "projectId" in filters and not _OBJECT_ID.fullmatch(filters["projectId"]):
            raise _bad_request("projectId must be a mongodb id")
        records = self.data.respondent.conversations.matching(filters, within="metadata")
        body = {
            "page": page,
            "pageSize": page_size,
            "results": records[(page - 1) * page_size : page * page_size],
        }
        if request.query.get("includeCount") == "true":
            body["totalResults"] = len(records)
        self.data.list_page_served(self.name)
        return json_response(200, body)

    def _detail(self, uid: str) -> Response:
        record = self.data.respondent.conversations.get(uid)
        if record is None:
            raise ApiError(json_response(404, {"statusCode": 404, "message": "Not Found"}))
        return json_response(200, record)


def _bad_request(message: str) -> ApiError:
    body = {"statusCode": 400, "message": [message], "error": "Bad Request"}
    return ApiError(json_response(400, body))
