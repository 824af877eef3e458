"""Test helpers for the Binance adapter: a manual clock, an eventually() poll, and a fake venue for
httpx.MockTransport that checks signatures over the exact query bytes it receives."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BASE = {"rest": "http://127.0.0.1:9", "ws": "ws://127.0.0.1:9"}


class ManualClock:
    """Seconds since the epoch that move only when told; `sleep` advances them (for the governor)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def ms(self) -> float:
        return self.t * 1000.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "msg": msg}, headers=headers)


Handler = Callable[[httpx.Request, dict[str, str]], Awaitable[httpx.Response] | httpx.Response]


class FakeVenue:
    """Routes (method, path) to handlers after checking key and HMAC signature like Binance does."""

    def __init__(self, server_time_ms: Callable[[], int] | None = None) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []
        self.server_time_ms = server_time_ms or (lambda: int(time.time() * 1000))
        self.route(
            "GET",
            "/api/v3/time",
            lambda r, p: httpx.Response(200, json={"serverTime": self.server_time_ms()}),
        )

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raw = request.url.query.decode()
        params = dict(parse_qsl(raw, keep_blank_values=True))
        if "signature" in params:
            payload, _, sig = raw.rpartition("&signature=")
            expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if request.headers.get("X-MBX-APIKEY") != API_KEY:
                return error(401, -2015, "Invalid API-key, IP, or permissions for action.")
            if sig != expected:
                return error(400, -1022, "Signature for this request is not valid.")
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, text="not found")
        out = handler(request, params)
        if asyncio.iscoroutine(out):
            out = await out
        assert isinstance(out, httpx.Response)
        return out


def ok(data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(data).encode(), headers=headers)
