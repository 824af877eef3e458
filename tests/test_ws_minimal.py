"""Seed test: with WS enabled and a network available, market-data ticks arrive periodically.

The "network" is the loopback one: the local Binance simulator serves `/ws/<symbol>@bookTicker|aggTrade`
and `/stream?streams=` over real sockets, and the project's own MarketDataFeed (or a plain `websockets`
client for the combined endpoint) reads them. Never the internet. The only reason to skip is a machine
where no socket can be opened on 127.0.0.1; then the skip carries a warning saying so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect

from adapters.binance.ws import FeedState, MarketDataFeed
from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import KEY, SECRET
from tests.simulator.test_streams import AGG_KEYS, BOOK_KEYS
from tests.waiting import eventually_async as eventually

WINDOW_S = 3.0  # the ticks must arrive within this
MIN_TICKS = 8  # at the simulator's 0.1 s cadence this takes about 1 s
MAX_GAP_S = 1.0  # largest silence allowed between two ticks of one stream


def loopback_unavailable() -> str | None:
    """Why no socket can be opened on 127.0.0.1, or None when one can (bind, listen, connect)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=2):
                pass
    except OSError as exc:
        return f"cannot open a socket on 127.0.0.1 ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    reason = loopback_unavailable()
    if reason is not None:
        warnings.warn(f"test_ws_minimal skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    with SimulatorServer(KEY, SECRET) as server:  # the default 0.1 s price driver: ten ticks a second
        yield server


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def feed_ticks(sim: SimulatorServer, symbol: str, stream: str) -> tuple[MarketDataFeed, list[Any]]:
    """Run the project's feed until MIN_TICKS arrived (at most WINDOW_S); returns it still running and
    the (arrival time, payload) pairs it delivered."""
    got: list[tuple[float, dict[str, Any]]] = []
    feed = MarketDataFeed(
        sim.ws_url,
        symbol,
        stream,
        stall_after_s=2.0,
        error_after_s=5.0,
        on_message=lambda msg: got.append((time.monotonic(), msg)),
    )
    started = time.monotonic()
    await feed.start()
    try:
        await eventually(lambda: len(got) >= MIN_TICKS, timeout=WINDOW_S)
    except BaseException:
        await feed.stop()
        raise
    assert got[MIN_TICKS - 1][0] - started <= WINDOW_S
    return feed, got


def assert_steady(feed: MarketDataFeed, got: list[Any], url_tail: str) -> None:
    times = [t for t, _ in got]
    assert max(gaps(times)) < MAX_GAP_S, gaps(times)
    status = feed.status()
    assert feed.state is FeedState.OK
    assert status["level"] == "OK"
    assert status["connected"] is True
    assert status["url"].endswith(url_tail)
    assert status["connects"] == 1  # no reconnect was needed
    assert status["messages"] >= len(got)
    assert status["last_message_age_s"] is not None
    assert 0 <= status["last_message_age_s"] < MAX_GAP_S
    assert status["max_gap_s"] < MAX_GAP_S  # the feed's own gap metric agrees
    assert status["last_error"] is None


async def test_book_ticker_ticks_arrive_steadily(sim: SimulatorServer) -> None:
    feed, got = await feed_ticks(sim, "BTCUSDT", "bookTicker")
    try:
        assert_steady(feed, got, "/ws/btcusdt@bookTicker")
        ticks = [msg for _, msg in got]
        for tick in ticks:
            assert set(tick) == BOOK_KEYS  # u, s, b, B, a, A and no e/E on bookTicker
            assert tick["s"] == "BTCUSDT"
            assert all(isinstance(tick[k], str) for k in "bBaA")  # prices stay strings
            assert Decimal(tick["b"]) < Decimal(tick["a"])
            assert min(Decimal(tick["B"]), Decimal(tick["A"])) > 0
        updates = [tick["u"] for tick in ticks]
        assert updates == sorted(set(updates))  # update ids strictly increase
        assert len({(tick["b"], tick["a"]) for tick in ticks}) > 1  # the book moves
    finally:
        await feed.stop()
    assert feed.status()["connected"] is False


async def test_agg_trade_ticks_arrive_steadily(sim: SimulatorServer) -> None:
    feed, got = await feed_ticks(sim, "ETHUSDT", "aggTrade")
    try:
        assert_steady(feed, got, "/ws/ethusdt@aggTrade")
        trades = [msg for _, msg in got]
        for trade in trades:
            assert set(trade) == AGG_KEYS
            assert (trade["e"], trade["s"]) == ("aggTrade", "ETHUSDT")
            assert isinstance(trade["p"], str)
            assert Decimal(trade["p"]) > 0
            assert all(isinstance(trade[k], int) for k in "ET")
        ids = [trade["a"] for trade in trades]
        assert ids == sorted(set(ids))  # aggregate trade ids strictly increase
        assert trades[-1]["T"] >= trades[0]["T"]
    finally:
        await feed.stop()


async def test_combined_stream_ticks_both_streams_steadily(sim: SimulatorServer) -> None:
    names = ("btcusdt@bookTicker", "btcusdt@aggTrade")
    arrivals: dict[str, list[float]] = {name: [] for name in names}
    async with connect(f"{sim.ws_url}/stream?streams={'/'.join(names)}") as ws:
        async with asyncio.timeout(WINDOW_S):
            while min(len(times) for times in arrivals.values()) < MIN_TICKS:
                msg = json.loads(await ws.recv())
                assert set(msg) == {"stream", "data"}
                assert msg["stream"] in names
                assert set(msg["data"]) == (BOOK_KEYS if msg["stream"].endswith("bookTicker") else AGG_KEYS)
                assert msg["data"]["s"] == "BTCUSDT"
                arrivals[msg["stream"]].append(time.monotonic())
    for name, times in arrivals.items():
        assert max(gaps(times)) < MAX_GAP_S, (name, gaps(times))
