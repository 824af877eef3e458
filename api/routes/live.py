"""The seed's /api/live/* endpoints. Every call writes exactly one audit row (api.audit_trail owns that
rule; secrets never go into it)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.audit_trail import Audit, AuditedRoute
from api.deps import EngineDep, Reader, TradeCallDep, json_body
from api.schemas import SYMBOL, CancelBody, OrderBody, parse_body
from api.trade_route import TradeRoute
from engine.errors import EngineError
from engine.guardrails.preflight import missing_permissions, skew_status
from engine.orders import Placement
from engine.runtime import Engine

router = APIRouter(prefix="/api/live", tags=["live"], route_class=AuditedRoute)


def _json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a route that reads its JSON body itself (to answer malformed JSON with a reason)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_ORDER_DOC = _json_body_doc(OrderBody)
_CANCEL_DOC = _json_body_doc(CancelBody)


def _qty(value: Decimal) -> str:
    # Plain notation: str(Decimal("0.00000000")) would be "0E-8"
    return format(value, "f")


def _answer(p: Placement) -> dict[str, Any]:
    o = p.order
    out: dict[str, Any] = {
        "ok": True,
        "mode": o.mode,
        "clientOrderId": o.client_order_id,
        "state": o.state.value,
        "symbol": o.symbol,
        "filledQty": _qty(o.filled_qty),
    }
    if o.order_id is not None:
        out["orderId"] = o.order_id
    out["exchange"] = p.exchange
    if p.existing:
        out["existing"] = True  # the idempotency key matched: nothing was placed this time
    return out


async def _with_order(exc: EngineError, engine: Engine, cid: str) -> EngineError:
    """Name the order and its journaled state in the error, whatever the venue said (from memory when the
    engine holds the order: open or in its history; else read back from the journal)."""
    found = engine.orders.known(cid) or await engine.orders.store.find_async(cid)
    extra = {"clientOrderId": cid, "state": found.state.value if found else None}
    if isinstance(exc.detail, dict):
        exc.detail = {**exc.detail, **extra}
    elif exc.detail is None:
        exc.detail = extra
    return exc


@router.get("/ping")
async def ping(op: Reader, engine: EngineDep, audit: Audit) -> dict[str, Any]:
    """Venue ping with server time and clock skew; WARN when the skew exceeds preflight.time_skew_ms_max."""
    audit.detail["venue"] = engine.exchange.venue
    result = await engine.exchange.ping()
    return {
        "ok": True,
        "serverTime": result.server_time_ms,
        "clock_skew_ms": round(result.clock_skew_ms, 3),
        "rtt_ms": round(result.rtt_ms, 3),
        "time_skew_ms_max": engine.settings.preflight.time_skew_ms_max,
        "status": skew_status(result.clock_skew_ms, engine.settings.preflight),
        "venue": engine.exchange.venue,
    }


@router.get("/account")
async def account(op: Reader, engine: EngineDep, audit: Audit) -> dict[str, Any]:
    """Balances and permissions. A read: the preflight monitor, not this call, HOLDs the session when
    canTrade is false or permissions are missing."""
    audit.detail["venue"] = engine.exchange.venue
    info = await engine.exchange.account()
    missing = missing_permissions(info.permissions, engine.settings.preflight)
    problems = ([] if info.can_trade else ["canTrade is false"]) + (
        [f"missing permissions {', '.join(missing)}"] if missing else []
    )
    return {
        "ok": True,
        "canTrade": info.can_trade,
        "balances": [
            {"asset": b.asset, "free": _qty(b.free), "locked": _qty(b.locked)}
            for b in info.balances
            if b.free or b.locked
        ],
        "permissions": list(info.permissions),
        "permissions_required": list(engine.settings.preflight.permissions_required),
        "permissions_missing": missing,
        "status": "ERROR" if problems else "OK",
        "problems": problems,
        "session_state": engine.sessions.current.state.value,
    }


async def place_order(request: Request, call: TradeCallDep) -> dict[str, Any]:
    """Place an order in the session's mode: paper, test (SAFE_MODE, /order/test) or live."""
    op, engine, audit = call.operator, call.engine, call.audit
    audit.detail["venue"] = engine.exchange.venue
    req = parse_body(OrderBody, await json_body(request)).to_request(engine.settings.client_order_id_prefix)
    audit.detail["request"] = req.to_payload()
    try:
        placement = await engine.orders.submit(req, op.id, audit=audit)
    except EngineError as exc:
        raise await _with_order(exc, engine, req.client_order_id) from None
    if placement.existing:
        request.state.audit_outcome = {"idempotent_replay": True}
    return _answer(placement)


async def cancel_order(request: Request, call: TradeCallDep) -> dict[str, Any]:
    """Cancel an open order by symbol + orderId or origClientOrderId."""
    op, engine, audit = call.operator, call.engine, call.audit
    audit.detail["venue"] = engine.exchange.venue
    body = parse_body(CancelBody, await json_body(request))
    audit.detail.update(body.model_dump(exclude_none=True))
    try:
        placement = await engine.orders.cancel(
            body.symbol, body.origClientOrderId, body.orderId, op.id, audit=audit
        )
    except EngineError as exc:
        cid = body.origClientOrderId or ""
        if not cid and body.orderId is not None:  # found as the engine found it: open or finished
            cid = engine.orders.client_order_id_of(body.symbol, body.orderId) or ""
        raise (await _with_order(exc, engine, cid) if cid else exc) from None
    return _answer(placement)


# The hot pair: no per-request dependency solving (api.trade_route)
router.add_api_route(
    "/order", place_order, methods=["POST"], openapi_extra=_ORDER_DOC, route_class_override=TradeRoute
)
router.add_api_route(
    "/cancel", cancel_order, methods=["POST"], openapi_extra=_CANCEL_DOC, route_class_override=TradeRoute
)


def trade_routes() -> list[TradeRoute]:
    return [r for r in router.routes if isinstance(r, TradeRoute)]


@router.get("/open_orders")
async def open_orders(
    op: Reader,
    engine: EngineDep,
    audit: Audit,
    symbol: Annotated[str | None, Query(pattern=SYMBOL)] = None,
) -> dict[str, Any]:
    """Open orders on the venue (one symbol or all), each with the engine's own state for it."""
    audit.detail.update({"symbol": symbol, "venue": engine.exchange.venue})
    orders = await engine.exchange.open_orders(symbol)
    items = []
    for vo in orders:
        known = engine.orders.open.get(vo.client_order_id)
        items.append(
            {
                "symbol": vo.symbol,
                "clientOrderId": vo.client_order_id,
                "orderId": vo.order_id,
                "status": vo.status.value,
                "origQty": _qty(vo.orig_qty),
                "executedQty": _qty(vo.executed_qty),
                "state": known.state.value if known else None,
                "exchange": vo.raw,
            }
        )
    return {"ok": True, "symbol": symbol, "count": len(items), "orders": items}
