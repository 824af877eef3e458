"""Unsigned admin routes under /_sim/ for tests and demos: faults, ground truth, prices, state.

    POST   /_sim/faults        set faults (JSON, any subset; answers the fault state)
    DELETE /_sim/faults        clear every fault, forced bans and not-found lags
    GET    /_sim/ground_truth  {"orders": engine.ground_truth(), "real_orders", "test_orders", "lost_responses"}
    POST   /_sim/price         {"symbol": .., "price": ".."} -> engine.set_price
    POST   /_sim/oto           {"working": {order params}, "pending": {order params}}: an OTO-like pair of
                               the account (MatchingEngine.place_oto): working leg NEW on the book, pending
                               leg PENDING_NEW with the same orderListId until the working leg fills;
                               answers Binance's order-list shape, 400 {"code","msg"} when refused
    POST   /_sim/balance       {"asset": "BTC", "delta": "0.5"}: a deposit (or, negative, a withdrawal) of
                               free balance; the user data stream reports balanceUpdate, then
                               outboundAccountPosition
    POST   /_sim/market        {"quiet": true|false}: a quiet market's prices do not move by themselves
                               (only /_sim/price moves them); answers {"quiet": ..}
    GET    /_sim/state         faults, weights per IP, order counts, connected WebSocket clients
    POST   /_sim/api_restrictions  switch GET /sapi/v1/account/apiRestrictions on (live-like); the JSON
                               object's fields overlay restrictions.DEFAULT_RESTRICTIONS; answers the body
    DELETE /_sim/api_restrictions  switch it off again: 404, as on Spot Testnet (the default)

Fault keys (POST /_sim/faults):
    latency_ms: int                  added before every REST request is handled
    order_answer_delay_ms: int       POST /api/v3/order executes at once, then answers this much later
    http_5xx: int, http_5xx_status   next N REST requests answer 500/502/503/504 without executing (default 503)
    http_5xx_path: str               only requests to this path take the 5xx (default: any path)
    lost_response: int, lost_response_status
                                     next N accepted POST /api/v3/order execute, then answer -1007 (500 or 503)
    not_found_lag_s: float           orders placed from now on answer -2013 to GET order/openOrders for S s
    trades_lag_s: float              GET /myTrades shows a trade only S s after it happened ("Memory => Database")
    clock_skew_ms: int               server clock offset (serverTime, timestamp checks, engine times)
    rate_limit: {"status": 429, "count": N, "retry_after_s": R, "path": P} | {"status": 418, "seconds": S}
                                     (with "path", only requests to P take the 429s)
    waf_403: int                     next N REST requests answer HTTP 403 with an HTML body, before anything
                                     else (a WAF rule, rest-api.md "HTTP Return Codes"); nothing executed
    ws_drop: true                    close every WebSocket connection now
    ws_stall: float                  keep sockets open but send nothing for S seconds
    ws_refuse: float                 refuse new market-stream connections (HTTP 403 handshake) for S seconds;
                                     with ws_drop: an outage of S seconds
    ws_shutdown: float               send Binance's serverShutdown event on every market stream now and
                                     close those connections S seconds later (new connections still work)
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.simulator import restrictions
from adapters.simulator.faults import Faults, FaultSpecError
from adapters.simulator.state import SimulatorState
from adapters.venue.errors import VenueError


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise FaultSpecError("body must be a JSON object") from None
    if not isinstance(data, dict):
        raise FaultSpecError("body must be a JSON object")
    return data


def _state(request: Request) -> SimulatorState:
    return request.app.state.sim  # type: ignore[no-any-return]


async def set_faults(request: Request) -> Response:
    state = _state(request)
    try:
        actions = state.faults.update(await _body(request), state.clock_ms())
    except FaultSpecError as exc:
        return _json({"error": str(exc)}, 400)
    dropped = 0
    for action in actions:
        if action == "ws_drop" and state.hub is not None:
            dropped += await state.hub.drop_all()
        elif action.startswith("ws_shutdown:") and state.hub is not None:
            dropped += await state.hub.announce_shutdown(float(action.removeprefix("ws_shutdown:")))
        elif action.startswith("ban:"):
            state.limiter.ban_everyone(state.now_ms(), float(action.removeprefix("ban:")))
    return _json({"faults": state.faults.snapshot(), "ws_dropped": dropped})


async def clear_faults(request: Request) -> Response:
    state = _state(request)
    state.faults = Faults()
    ws_api = getattr(request.app.state, "ws_api", None)
    if ws_api is not None:  # the user data stream's faults (adapters/simulator/ws_api.py)
        ws_api.clear_faults()
    state.limiter.clear_bans()
    state.clear_hidden()
    return _json({"faults": state.faults.snapshot()})


async def ground_truth(request: Request) -> Response:
    state = _state(request)
    orders = state.engine.ground_truth()
    return _json(
        {
            "orders": orders,
            "real_orders": state.real_orders,
            "test_orders": state.test_orders,
            "lost_responses": state.lost_responses,
            "engine_orders": len(orders),
        }
    )


async def set_price(request: Request) -> Response:
    state = _state(request)
    try:
        body = await _body(request)
        symbol, price = body["symbol"], Decimal(str(body["price"]))
    except (FaultSpecError, KeyError, InvalidOperation) as exc:
        return _json({"error": f"expected {{'symbol': .., 'price': ..}}: {exc}"}, 400)
    if symbol not in state.engine.rules or not price.is_finite() or price <= 0:
        return _json({"error": f"unknown symbol or bad price: {symbol} {price}"}, 400)
    state.engine.set_price(symbol, price)
    return _json({"symbol": symbol, "price": str(state.engine.prices[symbol])})


async def adjust_balance(request: Request) -> Response:
    """A deposit (positive `delta`) or withdrawal (negative) of free balance: the user data stream hears
    it as `balanceUpdate` and `outboundAccountPosition`."""
    state = _state(request)
    try:
        body = await _body(request)
        asset, delta = str(body["asset"]), Decimal(str(body["delta"]))
        if not asset.isalnum() or not asset.isupper():
            raise FaultSpecError(f"bad asset {asset!r}")
        change = state.engine.adjust_balance(asset, delta)
    except (FaultSpecError, KeyError, InvalidOperation, ValueError) as exc:
        return _json({"error": f"expected {{'asset': .., 'delta': ..}} within the free balance: {exc}"}, 400)
    return _json(change)


async def place_oto(request: Request) -> Response:
    state = _state(request)
    try:
        body = await _body(request)
        working, pending = body["working"], body["pending"]
        if not isinstance(working, dict) or not isinstance(pending, dict):
            raise FaultSpecError("working and pending must be objects")
    except (FaultSpecError, KeyError) as exc:
        return _json({"error": f"expected {{'working': {{..}}, 'pending': {{..}}}}: {exc}"}, 400)
    try:
        answer = state.engine.place_oto(
            {k: str(v) for k, v in working.items()}, {k: str(v) for k, v in pending.items()}
        )
    except VenueError as exc:
        return _json({"code": exc.code, "msg": exc.msg}, exc.http_status)
    return _json(answer)


async def set_market(request: Request) -> Response:
    state = _state(request)
    try:
        body = await _body(request)
    except FaultSpecError as exc:
        return _json({"error": str(exc)}, 400)
    if not isinstance(body.get("quiet"), bool):
        return _json({"error": "expected {'quiet': true|false}"}, 400)
    state.quiet_market = body["quiet"]
    return _json({"quiet": state.quiet_market})


async def get_state(request: Request) -> Response:
    state = _state(request)
    now = state.now_ms()
    return _json(
        {
            "serverTime": now,
            "faults": state.faults.snapshot(),
            "weights": state.limiter.snapshot(now),
            "ws_clients": state.hub.snapshot() if state.hub else [],
            "ws_messages_sent": state.hub.messages_sent if state.hub else 0,
            "requests": state.requests,
            "real_orders": state.real_orders,
            "test_orders": state.test_orders,
            "api_restrictions": state.api_restrictions,
            "quiet_market": state.quiet_market,
        }
    )


async def set_api_restrictions(request: Request) -> Response:
    state = _state(request)
    try:
        state.api_restrictions = restrictions.build(await _body(request), state.now_ms())
    except (FaultSpecError, restrictions.RestrictionsSpecError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"api_restrictions": state.api_restrictions})


async def clear_api_restrictions(request: Request) -> Response:
    _state(request).api_restrictions = None
    return _json({"api_restrictions": None})


def routes() -> list[BaseRoute]:
    return [
        Route("/_sim/faults", set_faults, methods=["POST"]),
        Route("/_sim/faults", clear_faults, methods=["DELETE"]),
        Route("/_sim/ground_truth", ground_truth, methods=["GET"]),
        Route("/_sim/price", set_price, methods=["POST"]),
        Route("/_sim/market", set_market, methods=["POST"]),
        Route("/_sim/oto", place_oto, methods=["POST"]),
        Route("/_sim/balance", adjust_balance, methods=["POST"]),
        Route("/_sim/state", get_state, methods=["GET"]),
        Route("/_sim/api_restrictions", set_api_restrictions, methods=["POST"]),
        Route("/_sim/api_restrictions", clear_api_restrictions, methods=["DELETE"]),
    ]
