"""MarketDataFeed against a local websockets server on 127.0.0.1: ticks, a drop inside the grace, a stall
(WARN only), a refused connect past the grace (ERROR, one cancel). Rollovers and outages against the
simulator: test_ws_watchdog.py."""

from __future__ import annotations

import asyncio
import contextlib
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
