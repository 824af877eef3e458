"""MarketDataFeed's watchdog by Binance's rules, over real sockets against the simulator on 127.0.0.1 with
time compressed: planned rollovers (max age, serverShutdown) never cancel, a quiet book on a ponging
connection is never ERROR, and only an outage longer than `disconnect_grace_s` cancels, once per outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from adapters.binance.ws import FeedState, MarketDataFeed
from adapters.simulator.server import SimulatorServer
from tests.waiting import eventually_async as eventually


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    # the server itself cuts a connection at 1 s: the feed must roll over well before that
    with SimulatorServer(driver_interval_s=0.01, ws_max_lifetime_s=1.0) as server:
        yield server


@pytest.fixture
async def admin(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        yield client
        await client.delete("/_sim/faults")


class Recorder:
    def __init__(self) -> None:
        self.states: list[FeedState] = []
        self.cancels = 0

    def on_state(self, old: FeedState, new: FeedState, detail: str) -> None:
        self.states.append(new)

    async def cancel(self) -> None:
        self.cancels += 1


def make_feed(sim: SimulatorServer, rec: Recorder, **kw: Any) -> MarketDataFeed:
    args: dict[str, Any] = {
        "stall_after_s": 0.5,
        "error_after_s": 1.0,
        "disconnect_grace_s": 0.3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.03,
        "on_state_change": rec.on_state,
        "cancel_on_disconnect": rec.cancel,
    }
    return MarketDataFeed(sim.ws_url, "BTCUSDT", **{**args, **kw})


async def test_a_hundred_max_age_rollovers_never_cancel_nor_error(sim: SimulatorServer) -> None:
    rec = Recorder()
    feed = make_feed(sim, rec, max_age_s=0.05)
    await feed.start()
    try:
        await eventually(lambda: feed.rollovers >= 100, timeout=20)
        messages = feed.messages
        await eventually(lambda: feed.messages > messages)  # still delivering
        st = feed.status()
    finally:
        await feed.stop()
    assert rec.cancels == 0
    assert FeedState.ERROR not in rec.states
    assert rec.states[:2] == [FeedState.CONNECTING, FeedState.OK]
    assert FeedState.CONNECTING not in rec.states[1:]  # make-before-break: never without a connection
    assert st["disconnects"] == 0
    assert st["connects"] == st["rollovers"] + 1
    assert st["level"] == "OK"
    assert st["connection_age_s"] < 1.0  # no connection lived to the server's own cut


async def test_server_shutdown_rolls_over_without_cancel(
    sim: SimulatorServer, admin: httpx.AsyncClient
) -> None:
    rec = Recorder()
    feed = make_feed(sim, rec)
    await feed.start()
    try:
        await eventually(lambda: feed.state is FeedState.OK and feed.messages > 0)
        for i in range(20):
            # a notice (the old connection keeps serving while the new one opens) or none at all
            notice = 0.2 if i % 2 == 0 else 0.0
            r = await admin.post("/_sim/faults", json={"ws_shutdown": notice})
            assert r.json()["ws_dropped"] >= 1
            want = i + 1
            await eventually(lambda: feed.rollovers == want and feed.state is FeedState.OK)  # noqa: B023
        await asyncio.sleep(0.4)  # longer than the grace: nothing comes late
        st = feed.status()
    finally:
        await feed.stop()
    assert rec.cancels == 0
    assert FeedState.ERROR not in rec.states
    assert st["rollovers"] == 20
    assert st["disconnects"] <= 10  # only the no-notice shutdowns can close the old one first


async def test_a_quiet_book_with_pongs_is_never_error() -> None:
    with SimulatorServer(quiet_market=True, ws_ping_interval=0.05, ws_ping_timeout=0.3) as sim:
        rec = Recorder()
        feed = make_feed(
            sim, rec, stall_after_s=0.1, error_after_s=0.3, ping_interval_s=0.05, ping_timeout_s=0.3
        )
        await feed.start()
        try:
            await eventually(lambda: feed.state is FeedState.WARN, timeout=3)
            await asyncio.sleep(1.0)  # more than three times error_after_s without a bookTicker
            st = feed.status()
            assert st["level"] == "WARN"
            assert "quiet book" in st["detail"]
            assert st["connected"] is True
            assert st["connects"] == 1
            assert st["ping_latency_s"] > 0  # our pings were answered
            async with httpx.AsyncClient(base_url=sim.base_url) as admin:
                await admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "64000"})
            await eventually(lambda: feed.state is FeedState.OK)  # a tick: OK again
        finally:
            await feed.stop()
    assert rec.cancels == 0
    assert FeedState.ERROR not in rec.states


async def test_each_outage_longer_than_the_grace_cancels_exactly_once(
    sim: SimulatorServer, admin: httpx.AsyncClient
) -> None:
    rec = Recorder()
    feed = make_feed(sim, rec, disconnect_grace_s=0.15)
    await feed.start()
    try:
        await eventually(lambda: feed.state is FeedState.OK)
        for i in range(10):
            # drop every socket and refuse new ones: reconnects keep failing past the grace
            await admin.post("/_sim/faults", json={"ws_drop": True, "ws_refuse": 0.4})
            await eventually(lambda: feed.state is FeedState.ERROR)
            await eventually(lambda: feed.state is FeedState.OK)  # the refusal ended: a connection works
            assert rec.cancels == i + 1, f"outage {i + 1}: {rec.cancels} cancels"
        await asyncio.sleep(0.3)
        st = feed.status()
    finally:
        await feed.stop()
    assert rec.cancels == 10
    assert st["disconnects"] == 10
    assert st["cancels_fired"] == 10


async def test_an_outage_shorter_than_the_grace_cancels_nothing(
    sim: SimulatorServer, admin: httpx.AsyncClient
) -> None:
    rec = Recorder()
    feed = make_feed(sim, rec, disconnect_grace_s=0.5)
    await feed.start()
    try:
        await eventually(lambda: feed.state is FeedState.OK)
        for i in range(3):
            await admin.post("/_sim/faults", json={"ws_drop": True, "ws_refuse": 0.1})
            want = i + 1
            await eventually(lambda: feed.disconnects == want and feed.state is FeedState.OK)  # noqa: B023
        await asyncio.sleep(0.6)  # past the grace after the last outage
    finally:
        await feed.stop()
    assert rec.cancels == 0
    assert FeedState.ERROR not in rec.states
    assert FeedState.CONNECTING in rec.states[1:]  # the outages were seen, just not long enough
