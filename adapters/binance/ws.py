"""Minimal market-data feed over Binance WebSocket streams (`<base>/ws/<symbol>@bookTicker|aggTrade`).

A socket can stay open while nothing arrives, so health is judged by message AGE, not by the socket:

    CONNECTING ──first message──▶ OK ──no message for stall_after_s──▶ WARN ──error_after_s──▶ ERROR
         │                        ▲                                                         │
         └──connect fails─▶ ERROR ┴──────────── first message after a reconnect ◀──────────┘

A disconnect (or a failed connect) is ERROR at once; a stall that reaches ERROR also drops the socket so
the loop reconnects. Reconnects back off exponentially with jitter, capped. Entering ERROR fires
`cancel_on_disconnect` once per ERROR episode (Binance Spot has no server-side cancel-on-disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger(__name__)


class FeedState(StrEnum):
    CONNECTING = "CONNECTING"
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"
    STOPPED = "STOPPED"


_LEVEL = {
    FeedState.OK: "OK",
    FeedState.WARN: "WARN",
    FeedState.CONNECTING: "WARN",
    FeedState.STOPPED: "WARN",
    FeedState.ERROR: "ERROR",
}


class MarketDataFeed:
    """One raw stream with a message-age watchdog and reconnect; `status()` feeds /api/status."""

    def __init__(
        self,
        base_ws_url: str,
        symbol: str,
        stream: str = "bookTicker",
        *,
        stall_after_s: float = 5.0,
        error_after_s: float = 15.0,
        on_state_change: Callable[[FeedState, FeedState, str], None] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        cancel_on_disconnect: Callable[[], Awaitable[None]] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if stream not in ("bookTicker", "aggTrade"):
            raise ValueError(f"stream must be bookTicker or aggTrade, was {stream!r}")
        if not 0 < stall_after_s < error_after_s:
            raise ValueError("need 0 < stall_after_s < error_after_s")
        self.url = f"{base_ws_url.rstrip('/')}/ws/{symbol.lower()}@{stream}"
        self.symbol = symbol
        self.stall_after_s = stall_after_s
        self.error_after_s = error_after_s
        self._on_state_change = on_state_change
        self._on_message = on_message
        self.cancel_on_disconnect = cancel_on_disconnect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter
        self._clock = clock
        self._rng = rng
        self.state = FeedState.STOPPED
        self.detail = ""
        self.messages = 0
        self.connects = 0
        self.last_message_at: float | None = None
        self.max_gap_s = 0.0
        self.last_error: str | None = None
        self._connected_at: float | None = None
        self._ws: ClientConnection | None = None
        self._drop_reason: str | None = None  # why we closed the socket ourselves
        self._tasks: list[asyncio.Task[None]] = []
        self._hook_armed = True
        self._hook_task: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        if self._tasks:
            return
        self._set_state(FeedState.CONNECTING, "starting")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="md-feed"),
            loop.create_task(self._watchdog(), name="md-dog"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._hook_task is not None:
            with contextlib.suppress(Exception):
                await self._hook_task
        self._set_state(FeedState.STOPPED, "stopped")

    # -- the two loops --

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with connect(self.url, open_timeout=10, close_timeout=1) as ws:
                    self._ws, self._connected_at = ws, self._clock()
                    self.connects += 1
                    async for raw in ws:
                        self._handle(raw)
                        attempt = 0  # a connection that delivered data resets the backoff
                reason = self._drop_reason or "disconnected by the server"
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                reason = f"disconnected: {type(exc).__name__}: {exc}"
            finally:
                self._ws, self._connected_at, self._drop_reason = None, None, None
            self.last_error = reason
            self._set_state(FeedState.ERROR, reason)
            delay = self.backoff_delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    def backoff_delay(self, attempt: int) -> float:
        """Exponential from backoff_initial_s, plus up to `jitter` of itself, never above backoff_max_s."""
        base: float = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt, 30))
        return min(self.backoff_max_s, base * (1 + self.jitter * float(self._rng())))

    def _handle(self, raw: str | bytes) -> None:
        now = self._clock()
        if self.last_message_at is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.last_message_at)
        self.last_message_at = now
        self.messages += 1
        if self.state is not FeedState.OK:
            self._set_state(FeedState.OK, "receiving")
        if self._on_message is not None:
            try:
                self._on_message(json.loads(raw))
            except Exception:
                log.exception("market-data listener failed")

    async def _watchdog(self) -> None:
        interval = min(self.stall_after_s / 4, 0.5)
        while True:
            await asyncio.sleep(interval)
            if self._ws is None or self._connected_at is None:
                continue  # the run loop owns the state while disconnected
            age = self._clock() - max(self.last_message_at or 0.0, self._connected_at)
            if age >= self.error_after_s:
                self._drop_reason = f"stalled: no message for {age:.1f}s"
                self._set_state(FeedState.ERROR, self._drop_reason)
                await self._ws.close()  # the run loop reconnects
            elif age >= self.stall_after_s and self.state is FeedState.OK:
                self._set_state(FeedState.WARN, f"no message for {age:.1f}s")

    # -- state --

    def _set_state(self, new: FeedState, detail: str) -> None:
        old, self.state, self.detail = self.state, new, detail
        if new is FeedState.OK:
            self._hook_armed = True
        if old is new:
            return
        if self._on_state_change is not None:
            try:
                self._on_state_change(old, new, detail)
            except Exception:
                log.exception("state listener failed")
        if new is FeedState.ERROR and self._hook_armed and self.cancel_on_disconnect is not None:
            self._hook_armed = False
            self._hook_task = asyncio.get_running_loop().create_task(self._fire_hook())

    async def _fire_hook(self) -> None:
        assert self.cancel_on_disconnect is not None
        try:
            await self.cancel_on_disconnect()
        except Exception:
            log.exception("cancel_on_disconnect failed")

    def status(self) -> dict[str, Any]:
        now = self._clock()
        age = None if self.last_message_at is None else round(now - self.last_message_at, 3)
        return {
            "level": _LEVEL[self.state],
            "state": self.state.value,
            "detail": self.detail,
            "url": self.url,
            "connected": self._ws is not None,
            "messages": self.messages,
            "last_message_age_s": age,
            "max_gap_s": round(self.max_gap_s, 3),
            "connects": self.connects,
            "last_error": self.last_error,
        }
