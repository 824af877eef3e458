"""Quiet-market mode: with a client connected the price driver runs, but a quiet market's prices stay put
(only POST /_sim/price moves them); switchable at start and by POST /_sim/market."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from adapters.simulator.server import SimulatorServer, main
from tests.waiting import eventually_async as eventually


@pytest.fixture
def quiet_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(quiet_market=True, driver_interval_s=0.005) as server:
        yield server


async def test_a_quiet_market_keeps_its_prices_until_switched_off(quiet_sim: SimulatorServer) -> None:
    sim = quiet_sim
    start = dict(sim.state.engine.prices)
    async with httpx.AsyncClient(base_url=sim.base_url) as admin, connect(f"{sim.ws_url}/ws/btcusdt@trade"):
        assert (await admin.get("/_sim/state")).json()["quiet_market"] is True
        # the driver runs (a client is connected) yet nothing moves: many intervals pass
        for _ in range(40):
            await asyncio.sleep(0.005)
        assert sim.state.engine.prices == start
        moved = await admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "64000"})
        assert moved.json()["price"] == "64000"
        assert (await admin.post("/_sim/market", json={"quiet": False})).json() == {"quiet": False}
        await eventually(lambda: sim.state.engine.prices["ETHUSDT"] != start["ETHUSDT"])
        assert (await admin.post("/_sim/market", json={"quiet": True})).json() == {"quiet": True}
        await asyncio.sleep(0.05)  # a step already under way may still land
        frozen = dict(sim.state.engine.prices)
        for _ in range(40):
            await asyncio.sleep(0.005)
        assert sim.state.engine.prices == frozen
        assert (await admin.post("/_sim/market", json={"quiet": "yes"})).status_code == 400


def test_main_passes_quiet_market() -> None:
    calls: list[dict[str, object]] = []
    main(["--quiet-market"], runner=lambda **kw: calls.append(kw))
    assert calls[0]["quiet_market"] is True
    main([], runner=lambda **kw: calls.append(kw))
    assert "quiet_market" not in calls[1]
