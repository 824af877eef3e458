"""Over real sockets: with max_position configured and no account read after start-up, the
engine's holdings follow the simulator's outboundAccountPosition events through fills, and a BUY that
would pass the cap is refused from them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.simulator.server import SimulatorServer
from engine.errors import OrderRejected
from engine.fsm.order_table import OrderState
from tests.binance.live_stack import Stack, buy, live_stack
from tests.waiting import eventually_async as eventually


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(quiet_market=True) as server:
        server.state.engine.level_qty["BTCUSDT"] = Decimal("0.0004")
        yield server


def venue_btc(stack: Stack) -> Decimal:
    row = next(b for b in stack.sim.state.engine.account()["balances"] if b["asset"] == "BTC")
    return Decimal(row["free"]) + Decimal(row["locked"])


async def test_holdings_follow_pushed_balances_through_fills(journal_url: str, sim: SimulatorServer) -> None:
    start = Decimal(next(b["free"] for b in sim.state.engine.account()["balances"] if b["asset"] == "BTC"))
    cap = start + Decimal("0.0025")
    async with live_stack(journal_url, sim, max_position={"BTC": cap}) as stack:
        orders = stack.engine.orders
        assert orders.positions.held("BTC") == start
        placed = await orders.submit(buy("pb-bal-1", "0.002"), "trader")
        assert placed.order.state is OrderState.ACKED
        for _ in range(5):  # 0.0004 per print: filled after five
            sim.state.engine.set_price("BTCUSDT", Decimal("64000"))
        await eventually(lambda: orders.find("pb-bal-1").state is OrderState.FILLED)
        await eventually(lambda: orders.balances.get("BTC") == venue_btc(stack))  # the pushed snapshot
        assert orders.positions.held("BTC") == venue_btc(stack)  # 0.002 bought, less its BTC commission
        with pytest.raises(OrderRejected) as refused:  # 0.002 bought + 0.001 > 0.0025
            await orders.submit(buy("pb-bal-2"), "trader")
        assert refused.value.reason == "risk_max_position"
        assert (await orders.submit(buy("pb-bal-3", "0.0005"), "trader")).order.state is OrderState.ACKED
