"""The simulator's Starlette app: Binance Spot REST under /api/v3, market streams, admin routes under /_sim.

Every REST request goes through one dispatcher, in Binance's order: latency fault → endpoint lookup →
parameters → forced/real rate limits (weight charged up front) → 5xx fault → key, timestamp and
signature → unread parameters (-1104, errors.md) → handler (the matching engine) → weight for failed order requests → headers. Errors are
always `{"code": .., "msg": ..}` with Binance's HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.simulator import admin, market, restrictions, streams, trading, ws_api
from adapters.simulator.auth import authenticate, load_ed25519_public_key, parse_params
from adapters.simulator.faults import Faults
from adapters.simulator.state import SimulatorState, wall_clock_ms
from adapters.simulator.weights import RateLimited, RateLimiter
from adapters.venue.errors import VenueError
from adapters.venue.matching import MatchingEngine
from adapters.venue.symbols import DEFAULT_PRICES, DEFAULT_SYMBOLS, generated_symbols

log = logging.getLogger(__name__)

Handler = Callable[[SimulatorState, dict[str, str]], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    weight: int | Callable[[dict[str, str]], int]
    signed: bool = False
    # order placement/cancel: 0 weight when successful, the documented weight (1) when failed (since 2026-04-02)
    free_on_success: bool = False
    order_counts: bool = False  # answer carries X-MBX-ORDER-COUNT-* headers
    # an optional endpoint answers 404 (an unknown path) while this says it is off
    available: Callable[[SimulatorState], bool] | None = None
    # the parameters the endpoint reads (rest-api.md); anything else is -1104. Signed endpoints read
    # timestamp, recvWindow and signature as well
    params: frozenset[str] = frozenset()

    def weight_of(self, params: dict[str, str]) -> int:
        return self.weight(params) if callable(self.weight) else self.weight

    def check_read(self, params: dict[str, str]) -> None:
        """errors.md -1104 UNREAD_PARAMETERS: a parameter the endpoint does not read is an error.

        Raises:
            VenueError: -1104 with the counts of read and sent parameters.
        """
        known = self.params | _AUTH if self.signed else self.params
        read = sum(1 for name in params if name in known)
        if read != len(params):
            raise VenueError(
                -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) but was sent '{len(params)}'.",
            )


_AUTH = frozenset({"timestamp", "recvWindow", "signature"})
_SYMBOLS = frozenset({"symbol", "symbols", "symbolStatus"})
# rest-api.md "New order (TRADE)" parameters
_ORDER = frozenset({
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
    "strategyId", "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType",
    "selfTradePreventionMode", "pegPriceType", "pegOffsetValue", "pegOffsetType",
})  # fmt: skip
_ORDER_ID = frozenset({"symbol", "orderId", "origClientOrderId"})


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v3/ping"): Endpoint(market.ping, 1),
    ("GET", "/api/v3/time"): Endpoint(market.server_time, 1),
    ("GET", "/api/v3/exchangeInfo"): Endpoint(
        market.exchange_info, 20, params=_SYMBOLS | {"permissions", "showPermissionSets"}
    ),
    ("GET", "/api/v3/ticker/bookTicker"): Endpoint(market.book_ticker, market.ticker_weight, params=_SYMBOLS),
    ("GET", "/api/v3/ticker/price"): Endpoint(market.ticker_price, market.ticker_weight, params=_SYMBOLS),
    ("GET", "/api/v3/depth"): Endpoint(
        market.depth, market.depth_weight, params=frozenset({"symbol", "limit", "symbolStatus"})
    ),
    ("GET", "/api/v3/account"): Endpoint(
        trading.account, 20, signed=True, params=frozenset({"omitZeroBalances"})
    ),
    ("POST", "/api/v3/order/test"): Endpoint(
        trading.test_order,
        lambda p: 20 if p.get("computeCommissionRates") == "true" else 1,
        signed=True,
        params=_ORDER | {"computeCommissionRates"},
    ),
    ("POST", "/api/v3/order"): Endpoint(
        trading.new_order, 1, signed=True, free_on_success=True, order_counts=True, params=_ORDER
    ),
    ("GET", "/api/v3/order"): Endpoint(trading.query_order, 4, signed=True, params=_ORDER_ID),
    ("DELETE", "/api/v3/order"): Endpoint(
        trading.cancel_order,
        1,
        signed=True,
        free_on_success=True,
        params=_ORDER_ID | {"newClientOrderId", "cancelRestrictions"},
    ),
    ("GET", "/api/v3/openOrders"): Endpoint(
        trading.open_orders, trading.open_orders_weight, signed=True, params=frozenset({"symbol"})
    ),
    ("DELETE", "/api/v3/openOrders"): Endpoint(
        trading.cancel_open_orders, 1, signed=True, free_on_success=True, params=frozenset({"symbol"})
    ),
    ("GET", "/api/v3/myTrades"): Endpoint(
        trading.my_trades,
        trading.my_trades_weight,
        signed=True,
        params=frozenset({"symbol", "orderId", "startTime", "endTime", "fromId", "limit"}),
    ),
    ("GET", "/api/v3/rateLimit/order"): Endpoint(trading.order_rate_limit, 40, signed=True),
    # Live only (off by default). SAPI counts weight in its own per-endpoint pools, not modelled: 0 here
    ("GET", "/sapi/v1/account/apiRestrictions"): Endpoint(
        restrictions.api_restrictions, 0, signed=True, available=restrictions.available
    ),
}
_KNOWN_PATHS = frozenset(path for _, path in ENDPOINTS)
_5XX_BODY = {
    500: (-1000, "An unknown error occurred while processing the request."),
    502: (-1000, "An unknown error occurred while processing the request."),
    503: (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
    504: (-1007, trading.TIMEOUT_MSG),
}


_TIME_KEYS = frozenset({"serverTime", "transactTime", "time", "updateTime", "workingTime"})


def to_microseconds(body: Any) -> Any:
    """Rewrite millisecond time fields as microseconds (the X-MBX-TIME-UNIT: MICROSECOND opt-in)."""
    if isinstance(body, list):
        return [to_microseconds(item) for item in body]
    if isinstance(body, dict):
        return {
            k: v * 1000 if k in _TIME_KEYS and isinstance(v, int) and v > 0 else to_microseconds(v)
            for k, v in body.items()
        }
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, separators=(",", ":"), default=str)
    return Response(text, status_code=status, headers=headers, media_type="application/json;charset=UTF-8")


def _error(exc: VenueError, headers: dict[str, str]) -> Response:
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    return json_response({"code": exc.code, "msg": exc.msg}, exc.http_status, headers)


def _forced_limits(state: SimulatorState, path: str) -> None:
    if state.faults.take_429(path):
        raise RateLimited(
            -1003,
            f"Too much request weight used; current limit is {state.limiter.weight_limit} request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
            429,
            state.faults.force_429_retry_after_s,
        )


async def dispatch(request: Request) -> Response:
    """The single REST entry point: see the module docstring for the order of checks."""
    state: SimulatorState = request.app.state.sim
    state.requests += 1
    if state.faults.latency_ms:
        await asyncio.sleep(state.faults.latency_ms / 1000)
    ip = request.client.host if request.client else "unknown"
    if state.faults.take("waf_403"):
        # the WAF stands in front of the API: no JSON body, no weight headers, nothing executed
        return Response("<html><body><h1>403 Forbidden</h1></body></html>", 403, media_type="text/html")
    headers: dict[str, str] = {}
    ep = ENDPOINTS.get((request.method, request.url.path))
    if ep is not None and ep.available is not None and not ep.available(state):
        return json_response(
            {"code": -1000, "msg": f"No endpoint for {request.method} {request.url.path}."}, 404
        )
    if ep is None:
        status = 405 if request.url.path in _KNOWN_PATHS else 404
        return json_response(
            {"code": -1000, "msg": f"No endpoint for {request.method} {request.url.path}."}, status
        )
    query = request.scope["query_string"]
    try:
        body = await request.body()
    except ClientDisconnect:
        # The client went away mid-request (a killed process, a timeout): nothing to answer, nothing done
        return Response(status_code=499)
    now = state.now_ms()
    try:
        try:
            params = parse_params(query, body)
            parse_error: VenueError | None = None
        except VenueError as exc:
            params, parse_error = {}, exc
        try:
            _forced_limits(state, request.url.path)
            state.limiter.admit(ip, now, 0 if ep.free_on_success else ep.weight_of(params))
        finally:
            headers["X-MBX-USED-WEIGHT-1M"] = headers["X-MBX-USED-WEIGHT"] = str(
                state.limiter.used_weight(ip, now)
            )
        if state.faults.take_5xx(request.url.path):
            status = state.faults.http_5xx_status
            return json_response(dict(zip(("code", "msg"), _5XX_BODY[status], strict=True)), status, headers)
        if parse_error is not None:
            raise parse_error
        if ep.signed:
            api_key = request.headers.get("x-mbx-apikey")
            authenticate(query, body, params, api_key, state.keys, now, state.ed25519_keys)
        ep.check_read(params)
        result = ep.handler(state, params)
    except VenueError as exc:
        if ep.free_on_success and not isinstance(exc, RateLimited):
            state.limiter.charge(ip, now, ep.weight_of(params))
            headers["X-MBX-USED-WEIGHT-1M"] = headers["X-MBX-USED-WEIGHT"] = str(
                state.limiter.used_weight(ip, now)
            )
        return _error(exc, headers)
    except Exception:  # a bug in the simulator or engine must still answer like Binance would
        log.exception("simulator handler failed: %s %s", request.method, request.url.path)
        return json_response({"code": -1000, "msg": _5XX_BODY[500][1]}, 500, headers)
    if state.faults.order_answer_delay_ms and (request.method, request.url.path) == ("POST", "/api/v3/order"):
        # Executed already: a client that gives up (or dies) now leaves an order it never heard about
        await asyncio.sleep(state.faults.order_answer_delay_ms / 1000)
    if ep.order_counts:
        c10, c1d = state.limiter.order_counts(state.now_ms())
        headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1D"] = str(c10), str(c1d)
    if request.headers.get("x-mbx-time-unit", "").lower() == "microsecond":
        result = to_microseconds(result)
    return json_response(result, 200, headers)


def create_simulator_app(
    engine: MatchingEngine | None = None,
    api_key: str = "",
    api_secret: str = "",
    *,
    clock_ms: Callable[[], int] | None = None,
    weight_limit: int = 6000,
    order_limit_10s: int = 100,
    order_limit_1d: int = 200_000,
    ban_base_s: int = 120,
    driver_interval_s: float = 0.1,
    ws_max_incoming_per_s: int = 5,
    ws_max_lifetime_s: float = 86_400.0,
    extra_keys: dict[str, str] | None = None,
    api_restrictions: dict[str, Any] | None = None,
    ed25519_keys: dict[str, str] | None = None,
    quiet_market: bool = False,
    extra_symbols: int = 0,
) -> tuple[Starlette, SimulatorState]:
    """Build the simulator app around a matching engine (a fresh default one if None).

    `ed25519_keys` registers API keys of type Ed25519: api key -> public key (PEM, or base64 of the raw
    32 bytes); requests with such a key must carry the base64 Ed25519 signature (rest-api.md "Ed25519 Keys").
    `quiet_market` starts with prices that do not move by themselves (switch with POST /_sim/market).
    `extra_symbols` adds that many generated symbols (S001USDT, ...) to a default engine's three, for an
    exchangeInfo of a real venue's size; it cannot be combined with a given `engine`.

    `api_restrictions` switches GET /sapi/v1/account/apiRestrictions on from the start (fields over
    restrictions.DEFAULT_RESTRICTIONS); without it the path is 404, as on Spot Testnet.

    Raises:
        ValueError: no API key or secret, a bad api_restrictions field, or an Ed25519 public key that does
            not parse.
    """
    if not api_key or not api_secret:
        raise ValueError("the simulator needs an api_key and an api_secret")
    public_keys = {k: load_ed25519_public_key(v) for k, v in (ed25519_keys or {}).items()}
    if clash := sorted(set(public_keys) & ({api_key} | set(extra_keys or {}))):
        raise ValueError(f"an API key is HMAC or Ed25519, not both: {clash}")
    clock = clock_ms or wall_clock_ms
    limiter = RateLimiter(weight_limit, order_limit_10s, order_limit_1d, ban_base_s)
    faults = Faults()
    if engine is not None and extra_symbols:
        raise ValueError("extra_symbols needs the default engine; give the engine its symbols instead")
    if engine is None:
        more_rules, more_prices = generated_symbols(extra_symbols)
        # the engine stamps transactTime/updateTime with server time, clock-skew fault included
        engine = MatchingEngine(
            symbols={**DEFAULT_SYMBOLS, **more_rules},
            prices={**DEFAULT_PRICES, **more_prices},
            clock_ms=lambda: clock() + faults.clock_skew_ms,
        )
    state = SimulatorState(
        engine=engine,
        keys={api_key: api_secret, **(extra_keys or {})},
        clock_ms=clock,
        limiter=limiter,
        faults=faults,
        ed25519_keys=public_keys,
        quiet_market=quiet_market,
    )
    if api_restrictions is not None:
        state.api_restrictions = restrictions.build(api_restrictions, state.now_ms())
    engine.add_listener(state.on_engine_event)
    hub = streams.StreamHub(
        state,
        driver_interval_s=driver_interval_s,
        max_incoming_per_s=ws_max_incoming_per_s,
        max_lifetime_s=ws_max_lifetime_s,
    )
    state.hub = hub
    ws_api_hub = ws_api.WsApiHub(state)  # /ws-api/v3 and the User Data Stream
    ws_api_hub.ed25519_keys.update(public_keys)  # a key registered at start is Ed25519 on both APIs
    methods = ["GET", "POST", "PUT", "DELETE"]
    routes = [
        *admin.routes(),
        *hub.routes(),
        *ws_api_hub.routes(),
        Route("/{path:path}", dispatch, methods=methods),
    ]
    app = Starlette(routes=routes, lifespan=hub.lifespan)
    app.state.sim = state
    app.state.ws_api = ws_api_hub
    return app, state
