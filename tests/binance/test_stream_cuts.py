"""100 user-data-stream cuts during a steady flow of fills, over real sockets against the simulator:
every trade is journaled exactly once with the simulator's price, quantity and commission, no fill is
lost, and no order's journaled state or filled quantity ever goes backwards."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.simulator.server import SimulatorServer
from engine.fsm.order_table import OrderState
from tests.binance.live_stack import Stack, buy, live_stack
from tests.binance.test_gap_trades import assert_journal_matches_venue
from tests.waiting import eventually_async as eventually

CUTS = 100
STEP = Decimal("0.00002")  # filled per order per price print
ORDERS = 5
QTY = STEP * 2 * CUTS  # two prints per cut: every order fills completely by the last one
_RANK = {OrderState.ACKED.value: 0, OrderState.PARTIALLY_FILLED.value: 1, OrderState.FILLED.value: 2}


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(quiet_market=True) as server:
        server.state.engine.level_qty["BTCUSDT"] = STEP
        yield server


def assert_never_backwards(stack: Stack, cid: str) -> None:
    rank, filled = -1, Decimal(0)
    for row in stack.engine.journal.stream("order", cid):
        if row.to_state in _RANK:
            assert _RANK[row.to_state] >= rank, (cid, row.seq, row.to_state)
            rank = _RANK[row.to_state]
        executed = row.payload.get("executedQty")
        if executed is not None:
            assert Decimal(executed) >= filled, (cid, row.seq, executed, filled)
            filled = Decimal(executed)


async def test_a_hundred_stream_cuts_lose_and_double_no_trade(journal_url: str, sim: SimulatorServer) -> None:
    async with live_stack(journal_url, sim) as stack:
        cids = [f"pb-cut-{i}" for i in range(ORDERS)]
        for cid in cids:
            placed = await stack.engine.orders.submit(buy(cid, str(QTY)), "trader")
            assert placed.order.state is OrderState.ACKED
        for cut in range(CUTS):
            gaps = stack.exchange.stream_gaps
            # every third cut stays down for one reconnect attempt, so fills surely fall in the gap
            stack.fault(drop=True, refuse=1 if cut % 3 == 0 else 0)
            stack.sim.state.engine.set_price("BTCUSDT", Decimal("64000"))  # a fill each, in the gap or not
            await eventually(lambda: stack.exchange.stream_gaps > gaps, timeout=10)  # noqa: B023
            stack.sim.state.engine.set_price("BTCUSDT", Decimal("64000"))
            # back and caught up before the next cut (a drop while reconnecting would cut nothing)
            await eventually(
                lambda: stack.stream.status()["connected"] and stack.exchange.order_gate() is None
            )
        await eventually(
            lambda: all(stack.engine.orders.find(c).state is OrderState.FILLED for c in cids), timeout=30
        )
        assert stack.exchange.stream_gaps >= CUTS
        assert stack.exchange.trade_requests > 0  # fills in gaps were learned by REST, with their trades
        assert_journal_matches_venue(stack, cids)
        for cid in cids:
            assert_never_backwards(stack, cid)
        assert sum(len(stack.journaled_fills(c)) for c in cids) == ORDERS * 2 * CUTS
