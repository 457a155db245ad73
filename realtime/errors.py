"""Every refusal the edge answers, mapped to an HTTP status in ONE place.

Each answer is JSON `{error, code, message}`: `error` is the status title,
`code` a stable machine name (the domain error's `code` where there is one) and
`message` says what was wrong with which value. Some add fields (`errors` with
field paths for 422, the transition facts for 409 `invalid_transition`).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing import persistence
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from domain import errors as domain
from projections import errors as views

log = logging.getLogger("darkroom.edge")


class EdgeError(Exception):
    """A refusal made at the edge (auth, limits, malformed input)."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status or type(self).status
        self.headers = headers or {}
        self.extra = extra


class MalformedJsonError(EdgeError):
    status, code = 400, "malformed_json"


class UnauthenticatedError(EdgeError):
    status, code = 401, "unauthenticated"


class TokenExpiredError(UnauthenticatedError):
    code = "token_expired"


class TokenWithoutExpiryError(UnauthenticatedError):
    """A JWT without `exp`: it would never expire."""

    code = "token_without_expiry"


class TokenLifetimeTooLongError(UnauthenticatedError):
    """A JWT whose `exp - iat` (or `exp - now`) passes the configured maximum lifetime."""

    code = "token_lifetime_too_long"


class InvalidSubjectError(UnauthenticatedError):
    """A user id (`sub`, `X-Darkroom-User`) that is not a UUID (or not printable)."""

    code = "invalid_subject"


class ForbiddenError(EdgeError):
    status, code = 403, "forbidden"


class MediaUrlUnsignedError(ForbiddenError):
    """A `/media` URL without `exp` and `sig`: media URLs come from the API, signed."""

    code = "media_url_unsigned"


class MediaUrlInvalidError(ForbiddenError):
    """A `/media` URL whose signature does not sign its path and `exp` (tampered)."""

    code = "media_url_invalid"


class MediaUrlExpiredError(ForbiddenError):
    """A signed `/media` URL past its `exp`."""

    code = "media_url_expired"


class RouteNotFoundError(EdgeError):
    status, code = 404, "not_found"


class MethodNotAllowedError(EdgeError):
    """A path that exists, asked with a method none of its routes takes (`Allow` lists them)."""

    status, code = 405, "method_not_allowed"


class BodyTooLargeError(EdgeError):
    status, code = 413, "body_too_large"


class UploadOverQuotaError(EdgeError):
    """One upload larger than a user's whole daily upload quota: it can never fit."""

    status, code = 413, "upload_over_quota"


class FieldsInvalidError(EdgeError):
    status, code = 422, "invalid_fields"


class UnsupportedMediaError(FieldsInvalidError):
    """Upload bytes that decode neither as an image (Pillow) nor as a video (PyAV)."""

    code = "unsupported_media"


class MediaTypeMismatchError(FieldsInvalidError):
    """An upload whose declared content type disagrees with what its bytes are."""

    code = "media_type_mismatch"


class MediaTooLargeError(FieldsInvalidError):
    """An upload with more pixels than the edge decodes (a decompression bomb guard)."""

    code = "media_too_many_pixels"


class RateLimitedError(EdgeError):
    status, code = 429, "rate_limited"


class UploadQuotaExceededError(EdgeError):
    """A user's uploads of the day (UTC) would pass their quota; `Retry-After` names the
    seconds until the day turns."""

    status, code = 429, "upload_quota_exceeded"


class ViewTimeoutError(EdgeError):
    status, code = 504, "view_timeout"


class ShuttingDownError(EdgeError):
    """A command that reached the server after its command threads stopped (it is shutting
    down): not run; the client retries, on this node once it is back or on another."""

    status, code = 503, "shutting_down"


class UnrecoverablePositionError(EdgeError):
    """A websocket `since` older than the change log keeps (the client starts again from
    a snapshot)."""

    status, code = 410, "unrecoverable_position"


# Most specific first: the first class an error is an instance of decides.
DOMAIN_STATUS: tuple[tuple[type[domain.DomainError], int], ...] = (
    (domain.IdempotencyKeyReusedError, 422),
    (domain.IdempotencyKeyInFlightError, 409),
    (domain.NotFoundError, 404),
    (domain.ValidationError, 422),
    (domain.ForbiddenError, 403),
    (domain.ConflictError, 409),
    (domain.InsufficientCreditsError, 402),
    (domain.DomainError, 400),
)


def status_of(error: domain.DomainError) -> int:
    return next(status for cls, status in DOMAIN_STATUS if isinstance(error, cls))


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ErrorResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        body = {"error": _title(status), "code": code, "message": message, **extra}
        super().__init__(json.dumps(body, default=str), status_code=status, headers=headers)


def domain_fields(error: domain.DomainError) -> dict[str, Any]:
    if isinstance(error, domain.InvalidTransitionError):
        return {
            "current_status": error.current_status,
            "requested_status": error.requested_status,
            "allowed_transitions": list(error.allowed_transitions),
        }
    return {}


def field_errors(error: PydanticValidationError, where: str) -> list[dict[str, Any]]:
    """Pydantic's errors as `{path, message, type}` with the path rooted at body/query/path."""
    return [
        {
            "path": ".".join(str(p) for p in (where, *e["loc"])),
            "loc": [where, *e["loc"]],
            "message": e["msg"],
            "type": e["type"],
        }
        for e in error.errors(include_url=False, include_input=False)
    ]


def field_error(path: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    """One entry of a 422's `errors`, shaped like pydantic's (see `field_errors`)."""
    return {"path": path, "loc": path.split("."), "message": message, "type": kind}


def invalid_field(
    path: str,
    message: str,
    kind: str = "value_error",
    *,
    summary: str | None = None,
    code: str | None = None,
) -> FieldsInvalidError:
    """A 422 about one field (`summary` is the error's message; by default the field's)."""
    return FieldsInvalidError(
        summary or f"invalid fields: {path}: {message}",
        code=code,
        errors=[field_error(path, message, kind)],
    )


def invalid_fields(error: PydanticValidationError, where: str) -> FieldsInvalidError:
    details = field_errors(error, where)
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:5])
    return FieldsInvalidError(f"invalid fields: {summary}", errors=details)


async def handle_domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, domain.DomainError)
    headers = {"Retry-After": "1"} if isinstance(exc, domain.IdempotencyKeyInFlightError) else None
    return ErrorResponse(status_of(exc), exc.code, str(exc), headers, **domain_fields(exc))


async def handle_edge(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EdgeError)
    return ErrorResponse(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = (
        exc.detail
        if exc.detail != _title(exc.status_code)
        else f"{request.method} {request.url.path}: {exc.detail.lower()}"
    )
    return ErrorResponse(exc.status_code, code, message, dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return ErrorResponse(500, "internal", "internal error; the request was not (fully) handled")


VIEW_STATUS: tuple[tuple[type[views.ProjectionError], int, str], ...] = (
    (views.InvalidCursorError, 422, "invalid_cursor"),
    (views.ProjectionTimeoutError, 504, "view_timeout"),
    (views.ProjectionError, 503, "view_unavailable"),
)


async def handle_view(request: Request, exc: Exception) -> Response:
    status, code = next((s, c) for cls, s, c in VIEW_STATUS if isinstance(exc, cls))
    return ErrorResponse(status, code, str(exc))


async def handle_missing_view(request: Request, exc: Exception) -> Response:
    return ErrorResponse(
        503, "view_unavailable", "the read models are not ready yet; retry", {"Retry-After": "1"}
    )


async def handle_pool_timeout(request: Request, exc: Exception) -> Response:
    return ErrorResponse(
        503, "busy", "no database connection came free in time; retry", {"Retry-After": "1"}
    )


async def handle_database_down(request: Request, exc: Exception) -> Response:
    """PostgreSQL stopped or unreachable (refused at once by the pools' watch, or a
    connection lost mid-request): 503, never a 500, never a traceback."""
    log.debug(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )  # the outage itself is logged once, by the watch
    return ErrorResponse(
        503,
        "database_unavailable",
        "the database is not reachable right now; retry shortly",
        {"Retry-After": "1"},
    )


def exception_handlers() -> dict[Any, Any]:
    return {
        psycopg.errors.UndefinedTable: handle_missing_view,
        psycopg_pool.PoolTimeout: handle_pool_timeout,
        views.DatabaseUnavailableError: handle_database_down,
        psycopg.OperationalError: handle_database_down,
        psycopg.InterfaceError: handle_database_down,
        persistence.OperationalError: handle_database_down,
        persistence.InterfaceError: handle_database_down,
        domain.DomainError: handle_domain,
        views.ProjectionError: handle_view,
        EdgeError: handle_edge,
        HTTPException: handle_http,
        Exception: handle_unexpected,
    }
