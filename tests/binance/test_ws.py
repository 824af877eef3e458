"""MarketDataFeed against a local websockets server on 127.0.0.1: ticks, a drop inside the grace, a stall
(WARN only), a refused connect past the grace (ERROR, one cancel). Rollovers and outages against the
simulator: test_ws_watchdog.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from adapters.binance.ws import FeedState, MarketDataFeed
from tests.waiting import eventually_async as eventually


class TickServer:
    """Serves /ws/btcusdt@bookTicker; `mode` is ticks | drop (one-shot close) | stall (open, silent)."""

    def __init__(self) -> None:
        self.mode = "ticks"
        self.paths: list[str] = []
        self.port = 0
        self.seq = 0

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        while True:
            if self.mode == "drop":
                self.mode = "ticks"
                await ws.close()
                return
            if self.mode == "ticks":
                self.seq += 1
                tick = {
                    "u": self.seq,
                    "s": "BTCUSDT",
                    "b": "50000.00",
                    "B": "1.0",
                    "a": "50000.10",
                    "A": "2.0",
                }
                await ws.send(json.dumps(tick))
                await asyncio.sleep(0.01)
            else:
                # silent, but notice when the client goes away (recv raises ConnectionClosed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.01)


@pytest.fixture
async def ticks() -> AsyncIterator[TickServer]:
    srv = TickServer()
    async with serve(srv.handler, "127.0.0.1", 0) as server:
        srv.port = next(iter(server.sockets)).getsockname()[1]
        yield srv


async def test_ticks_then_drop_then_stall(ticks: TickServer) -> None:
    changes: list[tuple[FeedState, FeedState]] = []
    got: list[dict[str, Any]] = []
    cancels: list[float] = []

    async def cancel_all() -> None:
        cancels.append(asyncio.get_running_loop().time())

    feed = MarketDataFeed(
        f"ws://127.0.0.1:{ticks.port}",
        "BTCUSDT",
        stall_after_s=0.15,
        error_after_s=0.4,
        disconnect_grace_s=0.3,
        on_state_change=lambda old, new, detail: changes.append((old, new)),
        on_message=got.append,
        cancel_on_disconnect=cancel_all,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
    )
    await feed.start()
    try:
        await eventually(lambda: feed.state is FeedState.OK and feed.messages >= 5)
        assert ticks.paths == ["/ws/btcusdt@bookTicker"]
        assert got[0]["s"] == "BTCUSDT"
        assert got[0]["b"] == "50000.00"  # prices stay strings
        assert feed.status()["level"] == "OK"
        assert cancels == []

        # 1) the server drops the socket: CONNECTING (not ERROR), a reconnect inside the grace, no cancel
        ticks.mode = "drop"
        await eventually(lambda: feed.connects == 2 and feed.state is FeedState.OK)
        assert (FeedState.OK, FeedState.CONNECTING) in changes
        assert "disconnected" in (feed.last_error or "")
        await asyncio.sleep(0.4)  # past the grace: nothing fires late
        assert cancels == []

        # 2) the socket stays open but goes silent: WARN by message age, never ERROR, socket kept
        ticks.mode = "stall"
        await eventually(lambda: feed.state is FeedState.WARN)
        await asyncio.sleep(0.6)  # past error_after_s
        st = feed.status()
        assert (st["level"], st["connected"], st["connects"]) == ("WARN", True, 2)
        assert "quiet book" in st["detail"]

        ticks.mode = "ticks"
        await eventually(lambda: feed.state is FeedState.OK)
        st = feed.status()
        assert st["max_gap_s"] >= 0.4  # the stall shows up as the largest gap
        assert st["messages"] == feed.messages
        assert cancels == []
    finally:
        await feed.stop()
    assert feed.state is FeedState.STOPPED
    states = [new for _, new in changes]
    assert states[:2] == [FeedState.CONNECTING, FeedState.OK]
    assert FeedState.ERROR not in states
    assert states.count(FeedState.WARN) == 1


async def test_refused_connect_is_error_after_the_grace_and_fires_the_hook_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fired: list[int] = []

    async def hook() -> None:
        fired.append(1)

    feed = MarketDataFeed(
        f"ws://127.0.0.1:{port}",
        "ETHUSDT",
        stream="aggTrade",
        stall_after_s=0.1,
        error_after_s=0.3,
        disconnect_grace_s=0.2,
        cancel_on_disconnect=hook,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )
    assert feed.url.endswith("/ws/ethusdt@aggTrade")
    await feed.start()
    try:
        await eventually(lambda: feed.last_error is not None)
        assert feed.state is FeedState.CONNECTING  # inside the grace: reconnecting, no cancel yet
        assert fired == []
        await eventually(lambda: feed.state is FeedState.ERROR)
        assert "no working connection" in feed.detail
        await asyncio.sleep(0.1)  # several failed reconnects inside one ERROR episode
        assert fired == [1]
        assert feed.status()["level"] == "ERROR"
        assert feed.status()["connected"] is False
    finally:
        await feed.stop()


class DeafServer:
    """Completes the WebSocket handshake and sends one tick, answers the first `pongs` pings of each
    connection, then never answers again (the socket stays open)."""

    def __init__(self) -> None:
        self.pongs = 1
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(
            x.split(":", 1)[1].strip()
            for x in head.split("\r\n")
            if x.lower().startswith("sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept.decode()}\r\n\r\n".encode()
        )
        body = json.dumps({"u": 1, "s": "BTCUSDT", "b": "1.00", "B": "1", "a": "1.01", "A": "1"}).encode()
        writer.write(bytes([0x81, len(body)]) + body)  # one unmasked text frame (< 126 bytes)
        await writer.drain()
        answered = 0
        with contextlib.suppress(Exception):
            while True:  # client frames: small, masked (RFC 6455 5.2)
                b0, b1 = await reader.readexactly(2)
                mask = await reader.readexactly(4)
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(b1 & 0x7F)))
                if b0 & 0x0F == 0x9 and answered < self.pongs:  # a ping: pong with its payload
                    answered += 1
                    writer.write(bytes([0x8A, len(payload)]) + payload)
                    await writer.drain()
        writer.close()


async def test_unanswered_pings_end_the_connection_and_cancel_after_the_grace() -> None:
    """Liveness is ping/pong: a socket that stays open but stops ponging is closed by the keepalive; a peer
    that never pongs is no working connection: ERROR after the grace, one cancel for the whole episode."""
    deaf = DeafServer()
    server = await asyncio.start_server(deaf.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fired: list[int] = []

    async def hook() -> None:
        fired.append(1)

    feed = MarketDataFeed(
        f"ws://127.0.0.1:{port}",
        "BTCUSDT",
        stall_after_s=1.0,
        error_after_s=2.0,
        disconnect_grace_s=0.4,
        ping_interval_s=0.05,
        ping_timeout_s=0.1,
        cancel_on_disconnect=hook,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )
    try:
        await feed.start()
        await eventually(lambda: feed.messages >= 1)  # the first ping was answered: a working connection
        await eventually(lambda: feed.disconnects >= 1)  # then the keepalive's pings went unanswered
        assert "ping timeout" in (feed.last_error or "")
        deaf.pongs = 0  # from now on no connection ever pongs: an outage although sockets open
        await eventually(lambda: feed.state is FeedState.ERROR, timeout=5)
        assert "no pong" in feed.detail
        tried = deaf.connections
        await asyncio.sleep(0.3)
        assert deaf.connections > tried  # it keeps trying inside the one episode
        assert fired == [1]
    finally:
        await feed.stop()
        server.close()


def test_backoff_is_exponential_jittered_and_capped() -> None:
    feed = MarketDataFeed(
        "ws://127.0.0.1:9", "BTCUSDT", backoff_initial_s=0.5, backoff_max_s=8, jitter=0.2, rng=lambda: 1.0
    )
    assert [feed.backoff_delay(a) for a in range(6)] == [0.6, 1.2, 2.4, 4.8, 8, 8]
    feed_no_jitter = MarketDataFeed("ws://127.0.0.1:9", "BTCUSDT", rng=lambda: 0.0)
    assert feed_no_jitter.backoff_delay(0) == 0.5
    assert feed_no_jitter.backoff_delay(1000) == 30.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MarketDataFeed("ws://127.0.0.1:9", "BTCUSDT", stream="depth")
    with pytest.raises(ValueError):
        MarketDataFeed("ws://127.0.0.1:9", "BTCUSDT", stall_after_s=5, error_after_s=1)
    with pytest.raises(ValueError):
        MarketDataFeed("ws://127.0.0.1:9", "BTCUSDT", disconnect_grace_s=-1)
    with pytest.raises(ValueError):
        MarketDataFeed("ws://127.0.0.1:9", "BTCUSDT", max_age_s=0)
