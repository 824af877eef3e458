"""Request dependencies: the runtime, a ready engine, and the authenticated operator with a permission."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from api.auth import Operator, OperatorError
from api.errors import ApiError
from api.runtime import Runtime
from engine.audit import AuditSlot
from engine.errors import EngineError
from engine.runtime import Engine

# Dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, per request


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def ready_engine(runtime: Runtime) -> Engine:
    """Raises the start-up error (503) while the engine is not ready to take requests."""
    error = runtime.start_error
    if error is not None:
        # A fresh exception per request: re-raising the stored one would grow its traceback forever
        detail = {"message": str(error), **error.detail} if isinstance(error.detail, dict) else str(error)
        raise ApiError(503, error.reason, detail)
    if not runtime.engine.ready:
        raise EngineError("the engine is starting", reason="not_ready")
    return runtime.engine


async def get_engine(runtime: RuntimeDep) -> Engine:
    return ready_engine(runtime)


EngineDep = Annotated[Engine, Depends(get_engine)]


def authenticate(request: Request, runtime: Runtime, permission: str) -> Operator:
    """The bearer token's operator, with the role's permission checked.

    Raises:
        ApiError: 401 (no or bad token), 429 (journal-writing reads over the limit), 403, 503.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required")
    try:
        operator = runtime.operators.authenticate(token.strip())
    except OperatorError as exc:
        raise ApiError(503, "operators_unavailable", str(exc)) from None
    if operator is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    # Known from here on, refused or not: the audit trail (api.audit_trail) names who called
    request.state.operator = operator
    slot = getattr(request.state, "audit", None)
    if slot is not None:
        slot.actor = operator.id
        # Journal-writing calls are limited per operator: a flood is answered 429 and never journaled
        if permission == "read" and not runtime.read_limiter.allow(operator.id):
            raise ApiError(429, "rate_limited", "too many calls from this operator; slow down")
        # Orders and cancels too: past the order-rate cap each refused order would still add its rows
        if permission == "trade" and not runtime.trade_limiter.allow(operator.id):
            raise ApiError(429, "rate_limited", "too many orders from this operator; slow down")
    if not operator.may(permission):
        raise ApiError(403, "forbidden", f"role {operator.role} may not {permission}")
    return operator


def require(permission: str) -> Callable[..., Coroutine[Any, Any, Operator]]:
    """A dependency that authenticates the bearer token and checks the role's permission."""

    async def dependency(request: Request, runtime: RuntimeDep) -> Operator:
        return authenticate(request, runtime, permission)

    return dependency


Reader = Annotated[Operator, Depends(require("read"))]
Trader = Annotated[Operator, Depends(require("trade"))]
Auditor = Annotated[Operator, Depends(require("audit"))]
Admin = Annotated[Operator, Depends(require("session"))]


@dataclass(frozen=True, slots=True)
class TradeCall:
    """Everything an order or cancel call needs, resolved by one dependency: FastAPI's solving costs
    about as much per dependency as the order's own decision, and these routes are the hot path."""

    operator: Operator
    engine: Engine
    audit: AuditSlot


async def trade_call(request: Request) -> TradeCall:
    runtime: Runtime = request.app.state.runtime
    operator = authenticate(request, runtime, "trade")  # 401/403 before 503, as on every route
    return TradeCall(operator, ready_engine(runtime), request.state.audit)


TradeCallDep = Annotated[TradeCall, Depends(trade_call)]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decimal(text: str) -> Decimal:
    # Decimal() raises InvalidOperation (an ArithmeticError, not a ValueError) for an exponent past
    # its context's range, e.g. 1e1000000000000000000: valid JSON, but no number the body may carry
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError("a number's exponent is out of range") from None


MAX_INT_DIGITS = 64  # no field of any body is an integer this long


def _int(text: str) -> int:
    # int() itself refuses past 4,300 digits, with a message naming sys.set_int_max_str_digits: an
    # interpreter detail no client should read, and far past any number a body may carry
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a proxy or validator in front may read the first.
    # dict() and a length check, not a loop: this runs for every object of every body
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey("a key appears twice in one JSON object")  # the key is not echoed
    return out


async def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; numbers with a fraction become Decimal, never float.

    Raises:
        ApiError: 400 malformed_json, 400 duplicate_key, 422 invalid_body (not an object, or missing when
            required).
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the request body did not arrive") from None
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(422, "invalid_body", [{"field": "(body)", "error": "a JSON object is required"}])
    try:
        data = json.loads(
            raw,
            parse_float=_decimal,
            parse_int=_int,
            parse_constant=_no_constants,
            object_pairs_hook=_unique_keys,
        )
    except _DuplicateKey as exc:
        raise ApiError(400, "duplicate_key", str(exc)) from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        elif isinstance(exc, UnicodeDecodeError):
            detail = f"not UTF-8 at byte {exc.start}"  # str(exc) would quote the offending byte
        else:
            detail = str(exc)
        raise ApiError(400, "malformed_json", detail) from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", [{"field": "(body)", "error": "must be a JSON object"}])
    return data
