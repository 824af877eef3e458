"""Test helpers for the simulator: a settable clock, a Binance-signing HTTP client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx

KEY = "sim-test-key"
SECRET = "sim-test-secret"
# 2026-11-25 12:00:01.000 UTC: one second into a minute, so weight windows are predictable
START_MS = 1_795_608_001_000


class FakeClock:
    """Epoch milliseconds that only move when a test says so (read from the server thread)."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


def hmac_hex(payload: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class SignedClient:
    """httpx.Client that signs like Binance's connectors: encode once, sign those bytes, send them."""

    def __init__(
        self, base_url: str, now_ms: Callable[[], int], key: str = KEY, secret: str = SECRET
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.now_ms = now_ms
        self.key, self.secret = key, secret

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params)

    def signed(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        in_body: bool = False,
        timestamp: int | None = None,
        key: str | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        p = dict(params or {})
        p["timestamp"] = str(self.now_ms() if timestamp is None else timestamp)
        query = urlencode(p)
        signed = f"{query}&signature={hmac_hex(query, secret or self.secret)}"
        headers = {"X-MBX-APIKEY": key or self.key}
        if in_body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return self.http.request(method, path, content=signed, headers=headers)
        return self.http.request(method, f"{path}?{signed}", headers=headers)

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def close(self) -> None:
        self.http.close()


def limit_buy(price: str = "60000", qty: str = "0.001", **extra: str) -> dict[str, str]:
    return {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": qty,
        "price": price,
        **extra,
    }


async def drain_forever(ws: Any, timeout: float = 5.0) -> None:
    """Read a WebSocket until it closes (raises ConnectionClosed) or `timeout` passes (TimeoutError)."""
    async with asyncio.timeout(timeout):
        while True:
            await ws.recv()
