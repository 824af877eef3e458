"""STP end to end over 127.0.0.1: the client sends selfTradePreventionMode, the simulator's matching engine
expires the taker (EXPIRED_IN_MATCH, preventedQuantity), and the adapter keeps both."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.binance.rest import BinanceSpotClient
from adapters.binance.schemas import venue_order_from_json
from adapters.simulator.server import SimulatorServer
from engine.types import VenueStatus


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(driver_interval_s=3600, quiet_market=True) as server:
        yield server


async def test_an_expire_taker_order_that_meets_its_own_order_expires_in_match(sim: SimulatorServer) -> None:
    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url},
        self_trade_prevention_mode="EXPIRE_TAKER",
    )  # fmt: skip
    order = {"symbol": "BTCUSDT", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000",
             "price": "65000.00", "newOrderRespType": "RESULT"}  # fmt: skip
    try:
        maker = await client.order({**order, "side": "SELL", "newClientOrderId": "stp-maker"})
        assert maker["status"] == "NEW"
        answer = await client.order({**order, "side": "BUY", "newClientOrderId": "stp-taker"})
        vo = venue_order_from_json(answer)
        assert vo.status is VenueStatus.EXPIRED_IN_MATCH
        assert Decimal(vo.raw["preventedQuantity"]) == Decimal("0.01")
        assert vo.raw["selfTradePreventionMode"] == "EXPIRE_TAKER"
        queried = venue_order_from_json(
            await client.query_order({"symbol": "BTCUSDT", "origClientOrderId": "stp-taker"})
        )
        assert queried.status is VenueStatus.EXPIRED_IN_MATCH
        still = await client.query_order({"symbol": "BTCUSDT", "origClientOrderId": "stp-maker"})
        assert still["status"] == "NEW"
    finally:
        await client.aclose()
