"""Signed Binance Spot REST client: transport, signing, timestamps, rate limits. No domain logic.

Every parameter, `signature` included, travels in the query string for every method (as the official
connector does): the percent-encoded query string is built once, those bytes are signed, and the same
bytes are sent (httpx and our AiohttpTransport keep an encoded query as is). Bodies stay empty, so the
signed payload is exactly the query string.

Each request: in-flight slot (semaphore) → governor reservation (may await or refuse) → timestamp from
ServerClock → send → governor learns from the headers → errors mapped by adapters.binance.errors.
A -1021 (timestamp outside recvWindow) is rejected before execution, so the client resyncs the clock
once and resends with a fresh timestamp and signature.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, cast

import httpx

from adapters.binance.clock import ServerClock
from adapters.binance.constants import API_KEY_HEADER
from adapters.binance.errors import map_binance_error, map_transport_error, parse_error_body
from adapters.binance.governor import RateLimitGovernor
from adapters.binance.signing import Secret, Signer, encode_params, make_signer, signed_query
from adapters.binance.transport import AiohttpTransport
from engine.errors import ExchangeRejected, ExecutionStatusUnknown

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
    ) -> None:
        if not 0 < recv_window_ms <= 60000:
            raise ValueError(f"recv_window_ms must be in 1..60000, was {recv_window_ms}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, was {max_in_flight}")
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
        self._slots = asyncio.Semaphore(max_in_flight)
        self._sync_lock = asyncio.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.timestamp_retries = 0
        headers = {API_KEY_HEADER: self._api_key.reveal()} if self._api_key else {}
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else AiohttpTransport(max_connections=max_in_flight),
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
        )

    def __repr__(self) -> str:
        return f"BinanceSpotClient(profile={self.profile!r}, rest={self._rest!r}, api_key=***)"

    # -- public endpoints (binance_facts.md §3; weights as documented) --

    async def ping(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("GET", "/api/v3/ping", weight=1))

    async def server_time(self) -> int:
        data = await self._request("GET", "/api/v3/time", weight=1)
        return int(data["serverTime"])

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

    async def order_test(self, payload: dict[str, Any]) -> dict[str, Any]:
        weight = 20 if str(payload.get("computeCommissionRates", "")).lower() == "true" else 1
        return cast(
            dict[str, Any],
            await self._request("POST", "/api/v3/order/test", payload, signed=True, weight=weight),
        )

    async def order(self, payload: dict[str, Any]) -> dict[str, Any]:
        # Successful orders cost 0 weight since 2026-04-02, failed ones 1: reserve 1
        return cast(
            dict[str, Any],
            await self._request("POST", "/api/v3/order", payload, signed=True, weight=1, orders=1),
        )

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any], await self._request("DELETE", "/api/v3/order", params, signed=True, weight=1)
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
        headers, which count a different pool (binance_facts.md §3.4).

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
    ) -> Any:
        kw = {"weight": weight, "orders": orders}
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
        # Concurrent requests that all saw -1021 share one resync
        async with self._sync_lock:
            if self.clock.sync_count == if_count:
                await self.clock.resync()

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
    ) -> Any:
        async with self._slots:
            # An ungoverned request (weight 0) reserves nothing, but a ban or Retry-After still stops it
            await self.governor.acquire(weight, orders)
            query = self._query(params, signed)
            url = f"{self._rest}{path}?{query}" if query else f"{self._rest}{path}"
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                resp = await self._http.request(method, url)
            except httpx.TransportError as exc:
                raise map_transport_error(exc, what=f"{method} {path}") from exc
            finally:
                self.in_flight -= 1
            if governed:
                self.governor.record(resp.status_code, resp.headers)
        return self._decode(resp, method, path)

    def _query(self, params: Mapping[str, Any] | None, signed: bool) -> str:
        if not signed:
            return encode_params(params or {})
        full = dict(params or {})
        full.setdefault("recvWindow", self.recv_window_ms)
        full["timestamp"] = self.clock.timestamp_ms()  # taken after any throttling wait
        assert self._signer is not None
        return signed_query(full, self._signer)

    @staticmethod
    def _decode(resp: httpx.Response, method: str, path: str) -> Any:
        if resp.status_code >= 400:
            code, msg = parse_error_body(resp.content)
            retry_after = resp.headers.get("retry-after")
            try:
                retry_s = float(retry_after) if retry_after is not None else None
            except ValueError:
                retry_s = None
            raise map_binance_error(resp.status_code, code, msg, retry_after_s=retry_s)
        try:
            return json.loads(resp.content)
        except ValueError as exc:
            raise ExecutionStatusUnknown(
                f"{method} {path} answered {resp.status_code} with a body that is not JSON",
                reason="EXECUTION_STATUS_UNKNOWN",
                http_status=resp.status_code,
            ) from exc
