"""Signed Binance Spot REST client: transport, signing, timestamps, rate limits. No domain logic.

Every parameter, `signature` included, travels in the query string for every method (as the official
connector does): the percent-encoded query string is built once, those bytes are signed, and the same
bytes are sent (httpx and our AiohttpTransport keep an encoded query as is). Bodies stay empty, so the
signed payload is exactly the query string.

Each request: governor reservation (may await or refuse; no slot is held meanwhile) → in-flight slot of its
lane → governor re-check (a 429/418 may have come while it queued) → an order's send gate (its caller may
no longer want it: the session went on HOLD while it queued; OrderNotSent, nothing sent) → timestamp
from ServerClock → send →
governor learns from the answer → errors mapped by adapters.binance.errors. Cancels have their own lane
(`cancel_lane` slots and connections) and priority on the governor's headroom, so a cancel never queues
behind throttled or slow orders, and a 429 -1015 (too many new orders) stops new orders only.
A -1021 (timestamp outside recvWindow) is rejected before execution, so the client resyncs the clock
once (on the cancel lane) and resends with a fresh timestamp and signature.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import httpx

from adapters.binance.clock import ServerClock
from adapters.binance.constants import API_KEY_HEADER
from adapters.binance.errors import (
    map_binance_error,
    map_transport_error,
    parse_error_body,
    request_was_sent,
)
from adapters.binance.governor import RateLimitGovernor
from adapters.binance.signing import Secret, Signer, encode_params, make_signer, signed_query
from adapters.binance.transport import AiohttpTransport, Answer
from engine.errors import ExchangeRejected, ExecutionStatusUnknown, OrderNotSent
from engine.ports import SendGate

_TIMESTAMP_CODE = -1021


class BinanceSpotClient:
    """Async client for /api/v3 on one base URL (live, testnet or the local simulator)."""

    def __init__(
        self,
        profile: str,
        api_key: str | Secret,
        api_secret: str | Secret,
        base_urls: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: ServerClock | None = None,
        governor: RateLimitGovernor | None = None,
        recv_window_ms: int = 5000,
        max_in_flight: int = 16,
        key_type: str = "HMAC",
        timeout_s: float = 10.0,
        cancel_lane: int = 4,
        self_trade_prevention_mode: str | None = None,
    ) -> None:
        """`self_trade_prevention_mode` (enums.md STP modes: NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH,
        DECREMENT) is sent with every order that does not name its own; None sends nothing (the symbol's
        default applies). `cancel_lane` is how many cancels may be in flight besides `max_in_flight`."""
        if not 0 < recv_window_ms <= 60000:
            raise ValueError(f"recv_window_ms must be in 1..60000, was {recv_window_ms}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, was {max_in_flight}")
        if cancel_lane < 1:
            raise ValueError(f"cancel_lane must be at least 1, was {cancel_lane}")
        self.profile = profile
        self.base_urls = dict(base_urls)
        self._rest = self.base_urls["rest"].rstrip("/")
        self._api_key = Secret(api_key)
        self._signer: Signer | None = make_signer(key_type, api_secret) if Secret(api_secret) else None
        self.recv_window_ms = recv_window_ms
        self.max_in_flight = max_in_flight
        self.clock = clock if clock is not None else ServerClock()
        self.clock.attach(self.server_time)
        self.governor = governor if governor is not None else RateLimitGovernor(clock=self.clock.now_s)
        self.self_trade_prevention_mode = self_trade_prevention_mode
        self._slots = asyncio.Semaphore(max_in_flight)
        self._cancel_slots = asyncio.Semaphore(cancel_lane)
        self._sync_lock = asyncio.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.timestamp_retries = 0
        headers = {API_KEY_HEADER: self._api_key.reveal()} if self._api_key else {}
        chosen = (
            transport
            if transport is not None
            else AiohttpTransport(max_connections=max_in_flight + cancel_lane)
        )
        self._http = httpx.AsyncClient(transport=chosen, timeout=httpx.Timeout(timeout_s), headers=headers)
        self._fast = chosen if isinstance(chosen, AiohttpTransport) else None
        self._headers = headers
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"BinanceSpotClient(profile={self.profile!r}, rest={self._rest!r}, api_key=***)"

    # -- public endpoints (rest-api.md; weights as documented) --

    async def ping(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("GET", "/api/v3/ping", weight=1))

    async def server_time(self, *, lane: str = "default") -> int:
        data = await self._request("GET", "/api/v3/time", weight=1, lane=lane)
        return int(data["serverTime"])

    async def _server_time_priority(self) -> int:
        return await self.server_time(lane="cancel")

    async def exchange_info(self, symbols: list[str] | None = None) -> dict[str, Any]:
        """exchangeInfo for some or all symbols; the governor learns `rateLimits` from it."""
        params: dict[str, Any] = {}
        if symbols and len(symbols) == 1:
            params["symbol"] = symbols[0]
        elif symbols:
            params["symbols"] = list(symbols)
        data: dict[str, Any] = await self._request("GET", "/api/v3/exchangeInfo", params, weight=20)
        if isinstance(data.get("rateLimits"), list):
            self.governor.learn(data["rateLimits"])
        return data

    async def book_ticker(self, symbol: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            await self._request("GET", "/api/v3/ticker/bookTicker", {"symbol": symbol}, weight=2),
        )

    # -- signed endpoints --

    async def account(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return cast(
            dict[str, Any], await self._request("GET", "/api/v3/account", params, signed=True, weight=20)
        )

    def _with_stp(self, payload: dict[str, Any], mode: str | None) -> dict[str, Any]:
        chosen = mode if mode is not None else self.self_trade_prevention_mode
        if chosen is None or "selfTradePreventionMode" in payload:
            return payload
        return {**payload, "selfTradePreventionMode": chosen}

    async def order_test(
        self, payload: dict[str, Any], *, self_trade_prevention_mode: str | None = None
    ) -> dict[str, Any]:
        weight = 20 if str(payload.get("computeCommissionRates", "")).lower() == "true" else 1
        params = self._with_stp(payload, self_trade_prevention_mode)
        return cast(
            dict[str, Any],
            await self._request("POST", "/api/v3/order/test", params, signed=True, weight=weight),
        )

    async def order(
        self, payload: dict[str, Any], *, self_trade_prevention_mode: str | None = None,
        may_send: SendGate | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """POST /api/v3/order; `self_trade_prevention_mode` overrides the client's for this order (a
        `selfTradePreventionMode` already in the payload wins over both). `may_send` is asked once the
        request holds its slot and headroom, with no await before it leaves: a reason raises OrderNotSent."""
        # Weight 1, unfilled order count 1 (rest-api.md "New order"); a successful order costs 0 weight
        # since 2026-04-02 (CHANGELOG.md 2026-03-27), a failed one the documented 1: reserve 1, and the
        # answer's X-MBX-USED-WEIGHT-1M corrects the estimate
        return cast(
            dict[str, Any],
            await self._request(
                "POST",
                "/api/v3/order",
                self._with_stp(payload, self_trade_prevention_mode),
                signed=True,
                weight=1,
                orders=1,
                may_send=may_send,
            ),
        )

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        # Weight 1 (rest-api.md "Cancel order"), 0 when successful since 2026-04-02 (CHANGELOG.md
        # 2026-03-27). Own lane and priority headroom: never queued behind orders
        return cast(
            dict[str, Any],
            await self._request("DELETE", "/api/v3/order", params, signed=True, weight=1, lane="cancel"),
        )

    async def query_order(self, params: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any], await self._request("GET", "/api/v3/order", params, signed=True, weight=4)
        )

    async def open_orders(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        weight = 6 if params and params.get("symbol") else 80
        return cast(
            list[dict[str, Any]],
            await self._request("GET", "/api/v3/openOrders", params, signed=True, weight=weight),
        )

    async def my_trades(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        weight = 5 if params.get("orderId") is not None else 20
        return cast(
            list[dict[str, Any]],
            await self._request("GET", "/api/v3/myTrades", params, signed=True, weight=weight),
        )

    async def api_restrictions(self) -> dict[str, Any]:
        """GET /sapi/v1/account/apiRestrictions (USER_DATA, weight 1 in SAPI's own per-IP pool): what this
        key may do (ipRestrict, enableWithdrawals, enableSpotAndMarginTrading, ...). Live only: Spot
        Testnet has no /sapi. The /api governor reserves nothing for it and does not learn from its
        headers, which count a different pool (Binance's wallet API).

        Raises:
            ExchangeRejected: no secret configured, or the venue refused (e.g. -2015, or 404 off live).
            ExchangeUnavailable: transport failure or rate limit.
        """
        return cast(
            dict[str, Any],
            await self._request(
                "GET", "/sapi/v1/account/apiRestrictions", signed=True, weight=0, governed=False
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing --

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        orders: int = 0,
        governed: bool = True,
        lane: str = "default",
        may_send: SendGate | None = None,
    ) -> Any:
        kw: dict[str, Any] = {"weight": weight, "orders": orders, "lane": lane, "may_send": may_send}
        if not signed:
            return await self._send(method, path, params, signed=False, governed=governed, **kw)
        if self._signer is None:
            raise ExchangeRejected(f"{path} needs an API secret; none configured", reason="PERMISSION_DENIED")
        await self._sync_clock(if_count=0)
        syncs_before = self.clock.sync_count
        try:
            return await self._send(method, path, params, signed=True, governed=governed, **kw)
        except ExchangeRejected as exc:
            if exc.code != _TIMESTAMP_CODE:
                raise
        # Rejected before execution: resync (outside the in-flight slot) and resend once
        self.timestamp_retries += 1
        await self._sync_clock(if_count=syncs_before)
        return await self._send(method, path, params, signed=True, governed=governed, **kw)

    async def _sync_clock(self, *, if_count: int) -> None:
        # Concurrent requests that all saw -1021 share one resync. It runs on the cancel lane: a cancel
        # refused for its timestamp must not wait for its resync behind orders holding the order lane's
        # slots or throttled by the governor; one resync at a time (this lock) takes at most one slot
        async with self._sync_lock:
            if self.clock.sync_count == if_count:
                await self.clock.resync(self._server_time_priority)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        *,
        signed: bool,
        weight: int,
        orders: int,
        governed: bool = True,
        lane: str = "default",
        may_send: SendGate | None = None,
    ) -> Any:
        cancel = lane == "cancel"
        # Headroom first, holding no slot: a request throttled for a minute must not keep a cancel waiting.
        # An ungoverned request (weight 0) reserves nothing, but a ban or Retry-After still stops it
        ticket = await self.governor.acquire(weight, orders, priority=cancel)
        sent = False
        try:
            async with self._cancel_slots if cancel else self._slots:
                self.governor.check(orders=orders)  # a 429/418 may have come while this queued

                def gate() -> None:  # nor may the caller have changed its mind
                    why = may_send() if may_send is not None else None
                    if why is not None:
                        raise OrderNotSent(f"{method} {path} not sent: {why}", reason=why)

                gate()
                query = self._query(params, signed)
                url = f"{self._rest}{path}?{query}" if query else f"{self._rest}{path}"
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                sent = True
                try:
                    # Asked again once the transport holds a connection: opening one awaits
                    resp = await self._round_trip(method, url, gate if may_send is not None else None)
                except OrderNotSent:
                    sent = False
                    raise
                except httpx.TransportError as exc:
                    sent = request_was_sent(exc)
                    raise map_transport_error(exc, what=f"{method} {path}") from exc
                finally:
                    self.in_flight -= 1
                if governed:
                    code = parse_error_body(resp.content)[0] if resp.status_code == 429 else None
                    self.governor.record(resp.status_code, resp.headers, ticket, code=code)
        finally:
            self.governor.release(ticket, sent=sent)
        return self._decode(resp, method, path)

    async def _round_trip(
        self, method: str, url: str, before_send: Callable[[], None] | None = None
    ) -> Answer | httpx.Response:
        """One HTTP exchange. Our own transport is called directly (no httpx.Request/Response per
        request: on loopback that wrapping cost about as much as the request) and runs `before_send`
        once it holds a connection; an injected one (the tests' MockTransport) goes through httpx."""
        if self._fast is not None:
            return await self._fast.fetch(method, url, self._headers, self._timeout_s, before_send)
        return await self._http.request(method, url)

    def _query(self, params: Mapping[str, Any] | None, signed: bool) -> str:
        if not signed:
            return encode_params(params or {})
        full = dict(params or {})
        full.setdefault("recvWindow", self.recv_window_ms)
        full["timestamp"] = self.clock.timestamp_ms()  # taken after any throttling wait
        assert self._signer is not None
        return signed_query(full, self._signer)

    @staticmethod
    def _decode(resp: Answer | httpx.Response, method: str, path: str) -> Any:
        if resp.status_code >= 400:
            code, msg = parse_error_body(resp.content)
            retry_after = resp.headers.get("retry-after")
            try:
                retry_s = float(retry_after) if retry_after is not None else None
            except ValueError:
                retry_s = None
            placement = method == "POST" and path == "/api/v3/order"  # -1001 then: the order may be live
            raise map_binance_error(resp.status_code, code, msg, retry_after_s=retry_s, placement=placement)
        try:
            return json.loads(resp.content)
        except ValueError as exc:
            raise ExecutionStatusUnknown(
                f"{method} {path} answered {resp.status_code} with a body that is not JSON",
                reason="EXECUTION_STATUS_UNKNOWN",
                http_status=resp.status_code,
            ) from exc
