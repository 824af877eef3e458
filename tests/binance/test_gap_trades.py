"""Fills as trades after a gap, over real sockets: the user data stream is cut while resting orders keep
filling; after the reconnect the REST catch-up completes each moved order from GET /myTrades, so the
journal holds every trade of every order exactly once, with price, quantity and commission as the
simulator recorded them (the stream's own trades included, deduplicated by trade id)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from adapters.simulator.server import SimulatorServer
from engine.fsm.order_table import OrderState
from tests.binance.live_stack import Stack, buy, live_stack
from tests.waiting import eventually_async as eventually

STEP = Decimal("0.0002")  # each price move fills this much of every crossed order: 5 fills per order


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(quiet_market=True) as server:
        server.state.engine.level_qty["BTCUSDT"] = STEP
        yield server


def cross(stack: Stack) -> None:
    """One trade print at 64000: every resting BUY there fills STEP (the simulator's thread-safe API)."""
    stack.sim.state.engine.set_price("BTCUSDT", Decimal("64000"))


def assert_journal_matches_venue(stack: Stack, cids: list[str]) -> None:
    for cid in cids:
        order = stack.engine.orders.find(cid)
        assert order is not None
        assert order.order_id is not None
        truth = stack.trades_of("BTCUSDT", order.order_id)
        fills = stack.journaled_fills(cid)
        ids = [f["tradeId"] for f in fills]
        assert len(ids) == len(set(ids)), (cid, ids)  # every trade once
        assert sorted(ids) == [t["id"] for t in truth], cid  # and none missing
        by_id = {f["tradeId"]: f for f in fills}
        for t in truth:
            f = by_id[t["id"]]
            assert (Decimal(f["price"]), Decimal(f["qty"]), Decimal(f["commission"]), f["commissionAsset"]) == (
                Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]), t["commissionAsset"]
            ), cid  # fmt: skip
            assert f["isMaker"] is t["isMaker"]
        assert order.filled_qty == sum((Decimal(t["qty"]) for t in truth), Decimal(0))


async def test_fills_during_a_stream_outage_are_journaled_as_trades_exactly_once(
    journal_url: str, sim: SimulatorServer
) -> None:
    async with live_stack(journal_url, sim) as stack:
        cids = [f"pb-gap-{i}" for i in range(3)]
        for cid in cids:
            assert (await stack.engine.orders.submit(buy(cid), "trader")).order.state is OrderState.ACKED
        cross(stack)  # one fill each, by the stream
        await eventually(lambda: all(stack.journaled_fills(c) for c in cids))
        gaps = stack.exchange.stream_gaps
        stack.fault(refuse=1_000_000, drop=True)  # cut, and keep it down
        await eventually(lambda: stack.exchange.stream_gaps > gaps)
        cross(stack)
        cross(stack)  # two fills each that no event will ever report
        assert all(len(stack.journaled_fills(c)) == 1 for c in cids)
        requests = stack.exchange.trade_requests
        stack.fault(refuse=0)  # back up: resubscribe, then the REST catch-up
        await eventually(lambda: all(len(stack.journaled_fills(c)) == 3 for c in cids), timeout=10)
        assert stack.exchange.trade_requests - requests == len(cids)  # one myTrades (orderId) per moved order
        cross(stack)
        cross(stack)  # the rest by the stream again
        await eventually(lambda: all(stack.engine.orders.find(c).state is OrderState.FILLED for c in cids))
        assert_journal_matches_venue(stack, cids)


async def test_trades_myTrades_does_not_show_yet_are_journaled_once_when_it_does(
    journal_url: str, sim: SimulatorServer
) -> None:
    """GET /myTrades lags GET /order (rest-api.md: "Memory => Database"): the catch-up after a stream cut
    journals each moved order's quantity without the trades it cannot see yet (untraced); the trade
    tracer asks again later and journals each missing trade once, as a trade row, with price and
    commission. The ledger then counts no untraced fill and has every commission."""
    async with live_stack(journal_url, sim) as stack:
        tracer = stack.engine.orders.trade_tracer
        tracer.first_s, tracer.tick_s = 0.3, 0.1
        stack.exchange.trades_attempts = 1  # the catch-up asks myTrades once, and journals what it sees
        cids = [f"pb-lag-{i}" for i in range(3)]
        for cid in cids:
            assert (await stack.engine.orders.submit(buy(cid), "trader")).order.state is OrderState.ACKED
        gaps = stack.exchange.stream_gaps
        stack.fault(refuse=1_000_000, drop=True)
        await eventually(lambda: stack.exchange.stream_gaps > gaps)
        httpx.post(f"{sim.base_url}/_sim/faults", json={"trades_lag_s": 2.0}).raise_for_status()
        cross(stack)
        cross(stack)  # two fills each that no event reports and myTrades does not show for 2 s
        stack.fault(refuse=0)
        await eventually(
            lambda: all(stack.engine.orders.find(c).filled_qty == 2 * STEP for c in cids), timeout=10
        )
        assert all(stack.journaled_fills(c) == [] for c in cids)  # the catch-up saw no trade
        assert stack.engine.ledger.positions()["positions"][0]["untraced_trades"] == len(cids)
        await eventually(lambda: all(len(stack.journaled_fills(c)) == 2 for c in cids), timeout=15)
        httpx.post(f"{sim.base_url}/_sim/faults", json={"trades_lag_s": 0}).raise_for_status()
        cross(stack)
        cross(stack)
        cross(stack)  # the rest by the stream
        await eventually(lambda: all(stack.engine.orders.find(c).state is OrderState.FILLED for c in cids))
        assert_journal_matches_venue(stack, cids)
        position = stack.engine.ledger.positions()["positions"][0]
        assert position["untraced_trades"] == 0
        assert position["trades"] == 5 * len(cids)
        truth = [t for c in cids for t in stack.trades_of("BTCUSDT", stack.engine.orders.find(c).order_id)]
        assert Decimal(position["fees"]["BTC"]) == sum((Decimal(t["commission"]) for t in truth), Decimal(0))
        assert tracer.status()["status"] == "OK"
