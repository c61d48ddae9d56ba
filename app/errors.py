"""Application errors and the one mapping to the contract's error shape.

Every 4xx/5xx body is {"error": {"code": "<snake_case>", "message": "<human text>"}} (API.md "Errors").
"""
from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logging import request_id_var

log = logging.getLogger("coopgig.errors")


class AppError(Exception):
    """An error meant for the caller: a status, a stable snake_case code and a human message."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: list[Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers


class Unauthorized(AppError):
    status, code = 401, "not_authenticated"

    def __init__(self, message: str = "Not authenticated", *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class Invalid(AppError):
    status, code = 422, "invalid_input"


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(status: int, code: str, message: str, *, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "invalid_input", 429: "too_many_requests",
}


def _clean_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Only the parts a client can act on: never echo the whole input back (it may hold a password).
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


async def _app_error(_: Request, exc: AppError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _clean_validation_errors(list(exc.errors()))
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(422, "malformed_json", "The request body is not valid JSON", details=errors)
    return error_response(422, "validation_error", "The request is invalid", details=errors)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "No such resource"
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


# serialization_failure, deadlock_detected: PostgreSQL rolled the transaction back because of a
# concurrent one. (Not the rest of class 40: statement_completion_unknown says nothing certain.)
_CONCURRENT_SQLSTATES = frozenset({"40001", "40P01"})


def is_transaction_rollback(exc: BaseException | None) -> bool:
    """PostgreSQL aborted the transaction because of a concurrent one: that transaction wrote
    nothing. Looks through SQLAlchemy's wrapping (`.orig`) and exception chaining."""
    seen = 0
    while exc is not None and seen < 8:
        if getattr(exc, "sqlstate", None) in _CONCURRENT_SQLSTATES:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return False


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Database errors: a transaction aborted for a concurrent one is a 409 the caller can act on
    (answered here, inside the app, so metrics and logs count a 409, not a 500); anything else is
    unexpected."""
    if not is_transaction_rollback(exc):
        raise exc
    log.warning("transaction rolled back by a concurrent one", extra={"request_id": request_id_var.get()},
                exc_info=exc)
    # The aborted transaction wrote nothing, but a use case may have committed an earlier step
    # (a booking before its payment authorization): the client retries with the same Idempotency-Key,
    # which resumes it, or reads the resource first.
    return error_response(409, "concurrent_update",
                          "Another request changed the same data at the same moment and this one was stopped; "
                          "retry it (with the same Idempotency-Key, if it had one)", headers={"Retry-After": "1"})


async def _database_busy(_: Request, exc: Exception) -> JSONResponse:
    """No database connection came free in time (SQLAlchemy's pool, or the driver pool's acquire
    timeout): the service is overloaded, not broken; the request did nothing."""
    log.warning("no database connection in time", extra={"request_id": request_id_var.get()}, exc_info=exc)
    return error_response(503, "database_busy", "The service is too busy right now; please retry shortly",
                          headers={"Retry-After": "5"})


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    rid = request_id_var.get()
    log.exception("unhandled error", extra={"request_id": rid})
    # This response is sent by Starlette's ServerErrorMiddleware, outside RequestContextMiddleware's
    # send wrapper: the X-Request-ID header has to be set here.
    return error_response(500, "internal_error", f"Something went wrong on our side (request id {rid})",
                          headers={"X-Request-ID": rid})


def install_error_handlers(app: FastAPI) -> None:
    from app.domain.errors import DomainError

    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, details=getattr(exc, "details", None))

    app.add_exception_handler(AppError, _app_error)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(TimeoutError, _database_busy)  # asyncpg's pool.acquire(timeout=...)
    app.add_exception_handler(Exception, _unexpected)
