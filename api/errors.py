"""One error shape for every failure: {"ok": false, "reason": "<machine_code>", "detail": ...}.

Engine errors are translated here, at the boundary, by class and reason. No handler ever returns a
traceback; an unexpected exception becomes a bare 500 `internal_error` (and is logged server-side).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    ApprovalRejected,
    EngineError,
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionStatusUnknown,
    IdempotencyConflict,
    InvalidTransition,
    JournalCorrupt,
    OrderRejected,
    PreflightFailed,
    SessionHalted,
    UnknownApproval,
    UnknownOrder,
    VersionConflict,
)

log = logging.getLogger(__name__)

# Reasons of engine errors that are not a caller's mistake but a service that cannot answer now
_UNAVAILABLE_REASONS = {
    "not_ready",
    "engine_stopped",
    "journal_unavailable",
    "journal_corrupt",
    "exchange_unavailable",
    "standby",  # another engine is the account's writer (docs/scale-out.md)
    "lease_lost",  # this engine was the writer and lost its lease: fenced
}
# Approval refusals about who signed (authority) rather than about timing or state
_APPROVAL_FORBIDDEN = {
    "approval_bad_signature",
    "approval_unknown_approver",
    "approval_same_operator",
    "approval_role",
    "approval_not_signer",
    "approval_not_requester",
    "approval_wrong_nonce",
    "approval_use_request",
}
_HTTP_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error the API raises itself (auth, bad input) with its HTTP status."""

    def __init__(self, status: int, reason: str, detail: Any = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


def error_body(reason: str, detail: Any = None) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "detail": detail}


def error_response(
    status: int, reason: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(reason, detail), status_code=status, headers=headers)


def status_of(exc: EngineError) -> int:
    """The HTTP status for an engine error (docs/api.md, "Errors")."""
    if isinstance(exc, UnknownOrder | UnknownApproval):
        return 404
    if isinstance(exc, ExecutionStatusUnknown):
        return 504
    if isinstance(exc, ExchangeUnavailable | JournalCorrupt):
        return 503
    if isinstance(exc, ExchangeRejected):
        return 422
    if isinstance(exc, OrderRejected):
        if exc.reason == "venue_gap":  # not the order's fault: the same order may be sent again shortly
            return 503
        if exc.reason == "commit_answer_lost":  # the journal's outage: a new id may be sent shortly
            return 503
        return 409 if exc.reason.startswith("risk_") else 422
    if isinstance(exc, ApprovalRejected):
        return 403 if exc.reason in _APPROVAL_FORBIDDEN else 409
    if isinstance(
        exc, InvalidTransition | SessionHalted | PreflightFailed | IdempotencyConflict | VersionConflict
    ):
        return 409
    if exc.reason in _UNAVAILABLE_REASONS:
        return 503
    return 409


def engine_error_response(exc: EngineError, extra: dict[str, Any] | None = None) -> JSONResponse:
    detail: Any = exc.detail if exc.detail is not None else str(exc)
    if isinstance(detail, dict):
        detail = {"message": str(exc), **detail, **(extra or {})}
    elif extra:
        detail = {"message": str(exc), "items": detail, **extra}
    headers = None
    if isinstance(exc, ExchangeUnavailable) and exc.retry_after_s:
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    return error_response(status_of(exc), exc.reason, detail, headers)


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors without the rejected input (it may be huge, or something nobody should echo)."""
    return [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "(body)",
            "error": str(e.get("msg", "")).removeprefix("Value error, "),
        }
        for e in errors
    ]


def install(app: FastAPI, session_state: Any) -> None:
    """Register the handlers. `session_state(request)` gives the current session state for 409 details."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.reason, exc.detail, headers)

    async def on_engine_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EngineError)
        extra = None
        if status_of(exc) == 409:
            extra = {"session_state": session_state(request)}
        return engine_error_response(exc, extra)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        body = any(e.get("loc", ("",))[0] == "body" for e in exc.errors())
        return error_response(422, "invalid_body" if body else "invalid_query", field_errors(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        reason = _HTTP_REASONS.get(exc.status_code, "http_error")
        return error_response(exc.status_code, reason, exc.detail, getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(500, "internal_error", "the server failed; see its log")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(EngineError, on_engine_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
