"""The one table from errors to HTTP statuses, and the handlers that make every error response
``{"error": {"code": ..., "message": ...}}`` (FastAPI's own 404, 405 and validation errors too).

A 5xx means a bug (or a deployment that is not ready: 503); everything a caller can cause is 4xx.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.spec import WeightsError
from service.errors import BadOption, RailsightError, SceneError
from service.jobs.errors import (
    BadScenePath,
    IdempotencyConflict,
    JobConflict,
    JobNotFound,
    ModelUnavailable,
    QueueFull,
    SceneNotAllowed,
    TooLarge,
)
from service.service_settings import ConfigError

log = logging.getLogger(__name__)


class Unauthorized(RailsightError):
    code = "unauthorized"


class InvalidRequest(RailsightError):
    code = "invalid_request"


class UnsupportedMediaType(RailsightError):
    code = "unsupported_media_type"


# First match wins, so subclasses come before their bases.
STATUS_TABLE: list[tuple[type[BaseException], int]] = [
    (InvalidRequest, 400),
    (BadOption, 400),
    (BadScenePath, 400),
    (Unauthorized, 401),
    (SceneNotAllowed, 403),
    (JobNotFound, 404),
    (JobConflict, 409),
    (IdempotencyConflict, 409),
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (SceneError, 422),  # every raster that cannot be used: not found, not a raster, too few bands...
    (QueueFull, 429),
    (ModelUnavailable, 503),
    (WeightsError, 503),
    (ConfigError, 500),
]

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
}


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _headers_for(exc: BaseException, status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="railsight"'}
    if isinstance(exc, QueueFull):
        return {"Retry-After": str(exc.retry_after)}
    return None


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    code = getattr(exc, "code", "error")
    return error_response(status, code, str(exc), _headers_for(exc, status))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "invalid_request", describe_validation(exc.errors()))


def describe_validation(errors) -> str:
    parts = []
    for err in list(errors)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "internal_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers) if exc.headers else None)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: job store unavailable: %s", request.method, request.url.path, exc)
    return error_response(503, "store_unavailable", "the job store is not answering; retry shortly",
                          {"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error (a bug); it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RailsightError, _domain_error)
    app.add_exception_handler(WeightsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _store_unavailable)  # database down, or locked too long
    app.add_exception_handler(Exception, _unexpected)
