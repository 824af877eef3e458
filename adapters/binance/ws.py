"""Minimal market-data feed over Binance WebSocket streams (`<base>/ws/<symbol>@bookTicker|aggTrade`).

Liveness comes from the socket and its ping/pong keepalive (web-socket-streams.md: the server pings every
20 s and wants a pong within a minute; websockets answers those and sends its own pings every
`ping_interval_s`, closing the connection when no pong comes within `ping_timeout_s`). A connection counts
as working once it answered a first ping, sent right after it opened. Message age is only information: a
quiet book on a live, ponging connection is never an error.

    CONNECTING ──connection open──▶ OK ◀──message──▶ WARN (no message for stall_after_s: quiet or stalled)
        ▲  │                         │
        │  └─no working connection for disconnect_grace_s─▶ ERROR (cancel_on_disconnect, once per episode)
        └──socket ends / connect fails (reconnect with backoff)─┘

Planned rollover, make-before-break: when the connection reaches `max_age_s` (Binance: a connection is valid
for 24 h) or the server sends `serverShutdown`, a new connection is opened and read first, then the old
one is closed; neither state nor hook notice it. An episode without a working connection starts when the
socket ends or a connect fails and ends when a connection opens again; `cancel_on_disconnect` fires once,
when the episode has lasted `disconnect_grace_s` (Binance Spot has no server-side cancel-on-disconnect).
Reconnects back off exponentially with jitter, capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger(__name__)

_CONNECT_ERRORS = (OSError, TimeoutError, websockets.WebSocketException)


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


@dataclass(eq=False)
class _Link:
    """One connection and its reader."""

    ws: ClientConnection
    opened_at: float
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)  # the server sent serverShutdown
    reader: asyncio.Task[None] | None = None
    messages: int = 0
    end_reason: str = "disconnected by the server"


def _is_server_shutdown(msg: Any) -> bool:
    """`{"e": "serverShutdown", ..}` on a raw stream, `{"stream": "!serverShutdown", "data": ..}` combined."""
    if not isinstance(msg, dict):
        return False
    if msg.get("e") == "serverShutdown":
        return True
    data = msg.get("data")
    return msg.get("stream") == "!serverShutdown" or (
        isinstance(data, dict) and data.get("e") == "serverShutdown"
    )


class MarketDataFeed:
    """One raw stream with socket/ping liveness, planned rollover and a disconnect grace; `status()`
    feeds /api/status."""

    def __init__(
        self,
        base_ws_url: str,
        symbol: str,
        stream: str = "bookTicker",
        *,
        stall_after_s: float = 5.0,
        error_after_s: float = 15.0,
        disconnect_grace_s: float = 10.0,
        max_age_s: float = 23.5 * 3600,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        open_timeout_s: float = 10.0,
        on_state_change: Callable[[FeedState, FeedState, str], None] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        cancel_on_disconnect: Callable[[], Awaitable[None]] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """`stall_after_s`: WARN after this long without a message; `error_after_s`: past it the detail
        calls the book quiet (still WARN: message age alone never makes ERROR)."""
        if stream not in ("bookTicker", "aggTrade"):
            raise ValueError(f"stream must be bookTicker or aggTrade, was {stream!r}")
        if not 0 < stall_after_s < error_after_s:
            raise ValueError("need 0 < stall_after_s < error_after_s")
        if disconnect_grace_s < 0 or max_age_s <= 0 or ping_interval_s <= 0 or ping_timeout_s <= 0:
            raise ValueError(
                "need disconnect_grace_s >= 0 and max_age_s, ping_interval_s, ping_timeout_s > 0"
            )
        self.url = f"{base_ws_url.rstrip('/')}/ws/{symbol.lower()}@{stream}"
        self.symbol = symbol
        self.stall_after_s = stall_after_s
        self.error_after_s = error_after_s
        self.disconnect_grace_s = disconnect_grace_s
        self.max_age_s = max_age_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.open_timeout_s = open_timeout_s
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
        self.rollovers = 0
        self.disconnects = 0  # episodes without a working connection (rollovers are not)
        self.cancels_fired = 0
        self.last_message_at: float | None = None
        self.max_gap_s = 0.0
        self.last_error: str | None = None
        self._link: _Link | None = None  # the working connection, None while there is none
        self._links: set[_Link] = set()  # every open one (two during a rollover)
        self._up_since: float | None = None
        self._down_since: float | None = None
        self._down_reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._hook_armed = True
        self._hook_task: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        if self._tasks:
            return
        self._down_since, self._down_reason = self._clock(), "not connected yet"
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
        self._link = None
        for link in list(self._links):
            await self._retire(link)
        if self._hook_task is not None:
            with contextlib.suppress(Exception):
                await self._hook_task
        self._set_state(FeedState.STOPPED, "stopped")

    # -- connections --

    async def _run(self) -> None:
        attempt = 0
        link: _Link | None = None
        while True:
            if link is None:
                try:
                    link = await self._open()
                except _CONNECT_ERRORS as exc:
                    self._note_down(f"connect failed: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(self.backoff_delay(attempt))
                    attempt += 1
                    continue
            if not await self._until_rollover_or_end(link):
                # the socket ended (server close, network, or no pong within ping_timeout_s)
                if link.messages or self._clock() - link.opened_at >= self.backoff_max_s:
                    attempt = 0  # a connection that worked resets the backoff
                self._links.discard(link)
                link = None
                await asyncio.sleep(self.backoff_delay(attempt))
                attempt += 1
                continue
            # planned rollover, make-before-break: the old link keeps delivering until the new one reads
            why = "serverShutdown" if link.shutdown.is_set() else f"max age {self.max_age_s}s"
            try:
                new = await self._open()
            except _CONNECT_ERRORS as exc:
                self.last_error = f"rollover ({why}) connect failed: {type(exc).__name__}: {exc}"
                log.warning("market data %s: %s", self.symbol, self.last_error)
                await asyncio.sleep(self.backoff_delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self.rollovers += 1
            log.info("market data %s: rolled over (%s)", self.symbol, why)
            old, link = link, new
            await self._retire(old)

    async def _open(self) -> _Link:
        ws = await connect(
            self.url,
            open_timeout=self.open_timeout_s,
            close_timeout=1,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_timeout_s,
        )
        try:  # working = it answers a ping: a socket that opens but never pongs is not a connection
            pong = await ws.ping()
            await asyncio.wait_for(pong, self.ping_timeout_s)
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            ws.transport.abort()
            raise TimeoutError(f"no pong within {self.ping_timeout_s}s of opening") from exc
        except BaseException:  # cancelled (stop) while waiting: do not leave the socket open
            ws.transport.abort()
            raise
        link = _Link(ws, self._clock())
        self._links.add(link)
        self._up(link)
        link.reader = asyncio.get_running_loop().create_task(self._read(link), name="md-read")
        return link

    async def _read(self, link: _Link) -> None:
        try:
            async for raw in link.ws:
                self._handle(raw, link)
            link.end_reason = f"disconnected by the server (close code {link.ws.close_code})"
        except websockets.WebSocketException as exc:
            link.end_reason = f"disconnected: {type(exc).__name__}: {exc}"
        except OSError as exc:
            link.end_reason = f"disconnected: {type(exc).__name__}: {exc}"
        finally:
            if self._link is link:  # a retired link ending is part of a rollover, not a disconnect
                self._link = None
                self._note_down(link.end_reason)

    async def _until_rollover_or_end(self, link: _Link) -> bool:
        """True when `link` is due for a rollover, False when it ended without one."""
        assert link.reader is not None
        while True:
            if link.shutdown.is_set():
                return True
            remaining = link.opened_at + self.max_age_s - self._clock()
            if remaining <= 0:
                return True
            if link.reader.done():
                return False
            shutdown = asyncio.ensure_future(link.shutdown.wait())
            try:
                await asyncio.wait(
                    {link.reader, shutdown}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                shutdown.cancel()

    async def _retire(self, link: _Link) -> None:
        self._links.discard(link)
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None:
            link.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link.reader

    def _up(self, link: _Link) -> None:
        now = self._clock()
        self._link = link
        self.connects += 1
        if self._down_since is not None or self._up_since is None:
            self._up_since = now
        self._down_since = None
        self._hook_armed = True  # the episode without a connection (if any) is over
        if self.state is not FeedState.OK and self.state is not FeedState.WARN:
            self._set_state(FeedState.OK, "connected")

    def _note_down(self, reason: str) -> None:
        self.last_error = reason
        self._down_reason = reason
        if self._down_since is None:
            self._down_since = self._clock()
            self.disconnects += 1
        if self.state is not FeedState.ERROR:
            self._set_state(FeedState.CONNECTING, f"reconnecting: {reason}")

    def backoff_delay(self, attempt: int) -> float:
        """Exponential from backoff_initial_s, plus up to `jitter` of itself, never above backoff_max_s."""
        base: float = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt, 30))
        return min(self.backoff_max_s, base * (1 + self.jitter * float(self._rng())))

    def _handle(self, raw: str | bytes, link: _Link) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("market data %s: not JSON: %r", self.symbol, raw[:200])
            return
        if _is_server_shutdown(msg):
            log.info("market data %s: serverShutdown received, rolling over", self.symbol)
            link.shutdown.set()
            return
        now = self._clock()
        if self.last_message_at is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.last_message_at)
        self.last_message_at = now
        self.messages += 1
        link.messages += 1
        if self.state is FeedState.WARN:
            self._set_state(FeedState.OK, "receiving")
        if self._on_message is not None:
            try:
                self._on_message(msg)
            except Exception:
                log.exception("market-data listener failed")

    # -- the watchdog: grace for a missing connection, message age as information --

    async def _watchdog(self) -> None:
        interval = min(self.stall_after_s / 4, max(self.disconnect_grace_s / 4, 0.005), 0.5)
        while True:
            await asyncio.sleep(interval)
            self._check()

    def _check(self) -> None:
        now = self._clock()
        if self._link is None:
            if self._down_since is None:
                return
            down_for = now - self._down_since
            if down_for >= self.disconnect_grace_s and self.state is not FeedState.ERROR:
                self._set_state(
                    FeedState.ERROR,
                    f"no working connection for {down_for:.1f}s (grace {self.disconnect_grace_s}s): "
                    f"{self._down_reason}",
                )
                self._fire_once()
            return
        assert self._up_since is not None
        age = now - max(self.last_message_at or 0.0, self._up_since)
        if age >= self.stall_after_s:
            quiet = "quiet book" if age >= self.error_after_s else "no message"
            detail = f"{quiet} for {age:.1f}s; connection alive (ping/pong)"
            if self.state is not FeedState.WARN:
                self._set_state(FeedState.WARN, detail)
            else:
                self.detail = detail
        elif self.state is FeedState.WARN:
            self._set_state(FeedState.OK, "receiving")

    # -- state --

    def _set_state(self, new: FeedState, detail: str) -> None:
        old, self.state, self.detail = self.state, new, detail
        if old is new:
            return
        if self._on_state_change is not None:
            try:
                self._on_state_change(old, new, detail)
            except Exception:
                log.exception("state listener failed")

    def _fire_once(self) -> None:
        if not self._hook_armed or self.cancel_on_disconnect is None:
            return
        self._hook_armed = False
        self.cancels_fired += 1
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
        link = self._link
        return {
            "level": _LEVEL[self.state],
            "state": self.state.value,
            "detail": self.detail,
            "url": self.url,
            "connected": link is not None,
            "connection_age_s": None if link is None else round(now - link.opened_at, 3),
            "ping_latency_s": None if link is None else round(link.ws.latency, 4),
            "down_for_s": None if self._down_since is None else round(now - self._down_since, 3),
            "disconnect_grace_s": self.disconnect_grace_s,
            "messages": self.messages,
            "last_message_age_s": age,
            "max_gap_s": round(self.max_gap_s, 3),
            "connects": self.connects,
            "rollovers": self.rollovers,
            "disconnects": self.disconnects,
            "cancels_fired": self.cancels_fired,
            "last_error": self.last_error,
        }
