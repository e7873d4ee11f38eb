"""onQ (Rali) external API: a conversations export behind a client-built HS256 JWT.

The vendor documents 401 (unauthorized), 403 (invalid request), 404 (unknown endpoint). The
JSON envelope is undocumented, so `onq_envelope` switches between a bare array and an object.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import InvalidSubjectError

from sandbox.data import Record, SandboxData
from sandbox.server import ApiError, BadParameter, Provider, Request, Response, json_response
from sandbox.settings import (
    ONQ_API_KEY,
    ONQ_API_SECRET,
    ONQ_AUDIENCE,
    ONQ_ISSUER,
    ONQ_SUBJECT,
    SandboxSettings,
)

MAX_SIZE = 1000
MIN_TOKEN_LIFETIME = 600

# Why PyJWT rejected a token, in words that never echo the token itself.
_JWT_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token issued in the future (iat)"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim (iss, sub, aud, iat, exp)"),
    (jwt.InvalidAudienceError, "invalid audience (aud)"),
    (jwt.InvalidIssuerError, "invalid issuer (iss)"),
    (InvalidSubjectError, "invalid subject (sub)"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "algorithm must be HS256"),
    (jwt.InvalidIssuedAtError, "iat must be a numeric date"),
)


@dataclass(frozen=True)
class AcceptedToken:
    """A distinct JWT the sandbox accepted; `first_seen` is a `time.monotonic()` value."""

    iat: int
    exp: int
    first_seen: float


class Onq(Provider):
    name = "onq"
    prefix = "/onq/api/external"

    def __init__(self, settings: SandboxSettings, data: SandboxData) -> None:
        super().__init__(settings, data)
        self._lock = threading.Lock()
        self._accepted: dict[str, AcceptedToken] = {}  # sha256 of the token -> token facts

    @property
    def tokens_seen(self) -> list[AcceptedToken]:
        with self._lock:
            return list(self._accepted.values())

    def handle(self, request: Request) -> Response:
        if request.segments != ("conversations",):
            raise _error(404, "not found", "unknown endpoint")
        self._authenticate(request)
        if request.method != "GET":
            raise _error(405, "method not allowed", "only GET is supported")
        try:
            size = request.int_param("size", minimum=1, maximum=MAX_SIZE)
            page = request.int_param("page", minimum=1)
        except BadParameter as problem:
            raise _error(403, "invalid request", problem.message) from None
        records = self.data.onq.conversations.snapshot()
        rows = records[(page - 1) * size : page * size]
        self.data.list_page_served(self.name)
        if request.query.get("csv", "").lower() == "true":
            return _csv(rows)
        if self.settings.onq_envelope == "object":
            body = {"data": rows, "page": page, "size": size, "total": len(records)}
            return json_response(200, body)
        return json_response(200, rows)

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("missing bearer token")
        claims = self._verify(token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            if digest not in self._accepted:
                self._accepted[digest] = AcceptedToken(
                    int(claims["iat"]), int(claims["exp"]), time.monotonic()
                )

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise _unauthorized("malformed token") from None
        if kid != ONQ_API_KEY:
            raise _unauthorized("unknown key id (kid)")
        try:
            claims = jwt.decode(
                token,
                ONQ_API_SECRET,
                algorithms=["HS256"],
                audience=ONQ_AUDIENCE,
                issuer=ONQ_ISSUER,
                subject=ONQ_SUBJECT,
                options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )
        except jwt.InvalidTokenError as problem:
            reason = next((r for kind, r in _JWT_REASONS if isinstance(problem, kind)), None)
            raise _unauthorized(reason or "malformed token") from None
        issued, expires = claims["iat"], claims["exp"]
        if not all(isinstance(value, int | float) for value in (issued, expires)):
            raise _unauthorized("iat and exp must be numeric dates")
        if expires - issued < MIN_TOKEN_LIFETIME:
            raise _unauthorized(f"token lifetime (exp - iat) is under {MIN_TOKEN_LIFETIME} s")
        max_age = self.settings.onq_token_max_age_seconds
        if max_age is not None and time.time() - issued > max_age:
            raise _unauthorized("token expired")
        return claims


def _csv(rows: list[Record]) -> Response:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in rows)
    return Response(200, out.getvalue().encode(), content_type="text/csv; charset=utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _error(status: int, error: str, message: str) -> ApiError:
    return ApiError(json_response(status, {"error": error, "message": message}))


def _unauthorized(message: str) -> ApiError:
    return _error(401, "unauthorized", message)
