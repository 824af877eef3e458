"""WebSocket market streams: /ws/<stream>, /stream?streams=a/b, live SUBSCRIBE/UNSUBSCRIBE (web-socket-streams.md).

The matching engine reports book and trade events through its listener; the hub turns them into
`<symbol>@bookTicker` / `<symbol>@aggTrade` payloads and queues them per connection. While at least one
client is connected a price driver calls `engine.step_prices()` every `driver_interval_s` so ticks flow,
unless the market is quiet (`state.quiet_market`: prices move only by POST /_sim/price).
The ws_stall fault drops outgoing messages (the socket stays open); ws_drop closes every socket; ws_refuse
refuses new handshakes (HTTP 403) for a while; ws_shutdown sends `serverShutdown` and closes a little later.
Binance's connection rules apply: more than `max_incoming_per_s` client messages in a second closes the
connection, so does reaching `max_lifetime_s` (24 h), and a `serverShutdown` event precedes a server stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from adapters.simulator.state import SimulatorState

log = logging.getLogger(__name__)
MAX_STREAMS = 1024
_QUEUE_SIZE = 1000
_ids = itertools.count(1)


@dataclass(eq=False)
class _Conn:
    ws: WebSocket
    subs: list[str]
    combined: bool
    id: int = field(default_factory=lambda: next(_ids))
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(_QUEUE_SIZE))
    received: deque[float] = field(default_factory=deque)  # monotonic times of the last second's messages

    def over_rate(self, limit: int) -> bool:
        now = time.monotonic()
        self.received.append(now)
        while self.received and self.received[0] <= now - 1.0:
            self.received.popleft()
        return len(self.received) > limit

    def push(self, stream: str, data: dict[str, Any]) -> None:
        body = {"stream": stream, "data": data} if self.combined else data
        if self.queue.full():  # a slow reader loses the oldest tick, as a live feed would
            self.queue.get_nowait()
        self.queue.put_nowait(json.dumps(body, separators=(",", ":")))


def _book_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`<symbol>@bookTicker` shape (u, s, b, B, a, A; no e/E) from either stream or REST form."""
    if "u" in payload and "s" in payload:
        return payload
    return {
        "u": payload.get("updateId", 0),
        "s": payload["symbol"],
        "b": payload["bidPrice"],
        "B": payload["bidQty"],
        "a": payload["askPrice"],
        "A": payload["askQty"],
    }


class StreamHub:
    def __init__(
        self,
        state: SimulatorState,
        driver_interval_s: float = 0.1,
        *,
        max_incoming_per_s: int = 5,
        max_lifetime_s: float = 86_400.0,
    ) -> None:
        self.state = state
        self.driver_interval_s = driver_interval_s
        self.max_incoming_per_s = max_incoming_per_s
        self.max_lifetime_s = max_lifetime_s
        self.conns: set[_Conn] = set()
        self.messages_sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._driver: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()  # closes scheduled by announce_shutdown
        state.engine.add_listener(self._on_event)

    # engine events -> queued stream messages
    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "book":
            data = _book_payload(payload)
            stream = f"{data['s'].lower()}@bookTicker"
        elif kind == "trade" and payload.get("e") == "aggTrade":
            data, stream = payload, f"{payload['s'].lower()}@aggTrade"
        else:
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            # the engine was driven from another thread (e.g. a test): hop onto the server loop
            self._loop.call_soon_threadsafe(self._fan_out, stream, data)
        else:
            self._fan_out(stream, data)

    def _fan_out(self, stream: str, data: dict[str, Any]) -> None:
        for conn in list(self.conns):
            if stream in conn.subs:
                conn.push(stream, data)

    # price driver: runs only while someone listens
    async def _drive(self) -> None:
        while self.conns:
            try:
                if not self.state.quiet_market:  # a quiet market keeps every price where it is
                    self.state.engine.step_prices()
            except Exception:
                log.exception("price driver step failed")
            await asyncio.sleep(self.driver_interval_s)

    def _ensure_driver(self) -> None:
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())

    # connection handling
    async def _serve(self, ws: WebSocket, subs: list[str], combined: bool) -> None:
        if self.state.faults.ws_refused(self.state.clock_ms()):
            await ws.close(code=1013)  # before accept: the handshake is answered HTTP 403
            return
        await ws.accept()
        conn = _Conn(ws, subs[:MAX_STREAMS], combined)
        self.conns.add(conn)
        self._ensure_driver()
        loop = asyncio.get_running_loop()
        sender = loop.create_task(self._send_loop(conn))
        expiry = loop.call_later(self.max_lifetime_s, lambda: loop.create_task(self._close(conn, 1001)))
        try:
            while True:
                text = await ws.receive_text()
                if conn.over_rate(self.max_incoming_per_s):
                    await self._close(conn, 1008)  # Binance disconnects clients over 5 messages a second
                    break
                reply = self._control(conn, text)
                if reply is not None:
                    conn.queue.put_nowait(json.dumps(reply, separators=(",", ":")))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            expiry.cancel()
            self.conns.discard(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_loop(self, conn: _Conn) -> None:
        try:
            while True:
                text = await conn.queue.get()
                if self.state.faults.ws_stalled(self.state.clock_ms()):
                    continue  # stalled: socket open, nothing sent
                await conn.ws.send_text(text)
                self.messages_sent += 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass

    def _control(self, conn: _Conn, text: str) -> dict[str, Any] | None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}
        if not isinstance(msg, dict):
            return {"error": {"code": 2, "msg": "Invalid request: request must be an object"}, "id": None}
        req_id, method, params = msg.get("id"), msg.get("method"), msg.get("params", [])
        if not isinstance(params, list):
            return {"error": {"code": 2, "msg": "Invalid request: params must be an array"}, "id": req_id}
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) for p in params):
                return {
                    "error": {"code": 2, "msg": "Invalid request: stream names must be strings"},
                    "id": req_id,
                }
            for name in params:
                if method == "UNSUBSCRIBE":
                    if name in conn.subs:
                        conn.subs.remove(name)
                elif name not in conn.subs and len(conn.subs) < MAX_STREAMS:
                    conn.subs.append(name)
            return {"result": None, "id": req_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.subs), "id": req_id}
        if method == "SET_PROPERTY" and len(params) == 2 and params[0] == "combined":
            if not isinstance(params[1], bool):
                return {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": req_id}
            conn.combined = params[1]
            return {"result": None, "id": req_id}
        if method == "GET_PROPERTY" and params == ["combined"]:
            return {"result": conn.combined, "id": req_id}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": req_id}

    async def raw_endpoint(self, ws: WebSocket) -> None:
        path = ws.path_params.get("streams", "")
        await self._serve(ws, [s for s in path.split("/") if s], combined=False)

    async def combined_endpoint(self, ws: WebSocket) -> None:
        names = ws.query_params.get("streams", "")
        await self._serve(ws, [s for s in names.split("/") if s], combined=True)

    @staticmethod
    async def _close(conn: _Conn, code: int) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close(code=code)

    async def drop_all(self) -> int:
        """The ws_drop fault: close every connection now; returns how many were closed."""
        conns = list(self.conns)
        for conn in conns:
            await self._close(conn, 1001)
        return len(conns)

    async def announce_shutdown(self, notice_s: float = 0.0) -> int:
        """Send Binance's `serverShutdown` event (web-socket-streams.md "Server Shutdown") on every
        connection, raw or combined shape, and close those connections `notice_s` later; returns how many."""
        data = {"e": "serverShutdown", "E": self.state.now_ms()}
        conns = list(self.conns)
        for conn in conns:
            body = {"stream": "!serverShutdown", "data": data} if conn.combined else data
            with contextlib.suppress(Exception):
                await conn.ws.send_text(json.dumps(body, separators=(",", ":")))
        if notice_s <= 0:
            for conn in conns:
                await self._close(conn, 1001)
        else:
            loop = asyncio.get_running_loop()

            def close_later(conn: _Conn) -> None:
                task = loop.create_task(self._close(conn, 1001))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)

            for conn in conns:
                loop.call_later(notice_s, close_later, conn)
        return len(conns)

    async def shutdown(self) -> None:
        """Tell every client the server is going away (Binance's serverShutdown event), then close."""
        await self.announce_shutdown(0.0)
        await self.drop_all()

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "client": f"{c.ws.client.host}:{c.ws.client.port}" if c.ws.client else None,
                "subscriptions": list(c.subs),
                "combined": c.combined,
                "queued": c.queue.qsize(),
            }
            for c in list(self.conns)
        ]

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/ws", self.raw_endpoint),
            WebSocketRoute("/ws/{streams:path}", self.raw_endpoint),
            WebSocketRoute("/stream", self.combined_endpoint),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            yield
        finally:
            await self.shutdown()
            if self._driver is not None:
                self._driver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._driver
