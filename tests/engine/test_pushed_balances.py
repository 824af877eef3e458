"""Holdings for max_position follow the balances the venue pushes (outboundAccountPosition, balanceUpdate)
without polling the account: a fill and the balance event that includes it are counted once whatever
arrives or commits first, a REST answer ahead of the stream is not lost, deltas and stale snapshots are
ordered by the venue's own times, and concurrent BUYs racing balance events never pass the cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from engine.config import EngineSettings, RiskLimits
from engine.errors import OrderRejected
from engine.fsm.order_table import OrderState
from engine.runtime import Engine
from engine.types import Balance, BalancePush, OrderRequest, OrderType, Side, TimeInForce, VenueStatus
from tests.engine.conftest import running
from tests.fakes import FakeExchange
from tests.waiting import eventually_async as eventually

D = Decimal


def buy(cid: str, qty: str = "0.001") -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, cid, D(qty), D("65000.00"), TimeInForce.GTC)


def position(fake: FakeExchange, btc: str, time_ms: int) -> None:
    for listener in fake.balance_listeners:
        listener(BalancePush("position", time_ms, (Balance("BTC", D(btc), D(0)),)))


def streamed_fill(fake: FakeExchange, cid: str, qty: str, status: VenueStatus = VenueStatus.FILLED) -> None:
    """An executionReport TRADE as the user data stream delivers it (raw carries the event)."""
    vo = fake.fill(cid, D(qty), status)  # pushes the REST-shaped view too
    pushed = replace(vo, pushed=True, status_text=status.value)
    for listener in fake.listeners:
        listener(pushed)


def capped(settings: EngineSettings, cap: str) -> EngineSettings:
    return replace(settings, risk=RiskLimits(max_position={"BTC": D(cap)}))


def held(eng: Engine) -> Decimal:
    return eng.orders.positions.held("BTC")


async def test_a_fill_and_the_balance_that_includes_it_count_once_in_any_order(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, capped(settings, "1"), live=True) as eng:
        position(fake, "0.001", 100)
        assert held(eng) == D("0.001")
        await eng.orders.submit(buy("pb-a"), "trader")
        # the stream's report and the balance event after it arrive in one go, before the fill's commit
        streamed_fill(fake, "pb-a", "0.001")
        position(fake, "0.002", 200)
        assert held(eng) == D("0.002")
        await eventually(lambda: eng.orders.find("pb-a").state is OrderState.FILLED)
        assert held(eng) == D("0.002")  # the applied fill is not added again
        position(fake, "0.002", 300)
        assert held(eng) == D("0.002")
        assert eng.orders.positions.begin_read() == {}  # the finished order left the ledger


async def test_a_rest_answer_ahead_of_the_stream_is_counted_until_a_balance_covers_it(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    fake.outcome = lambda _req: VenueStatus.FILLED  # the place answer (REST) reports the fill
    async with running(db_url, fake, capped(settings, "1"), live=True) as eng:
        position(fake, "0.001", 100)
        await eng.orders.submit(buy("pb-b"), "trader")
        assert held(eng) == D("0.002")
        position(fake, "0.001", 150)  # an event from before the fill, delivered late: still counted
        assert held(eng) == D("0.002")
        vo = fake.orders["pb-b"]
        for listener in fake.listeners:
            listener(replace(vo, pushed=True, status_text="FILLED"))
        position(fake, "0.002", 200)  # the stream's own report, then the balance that includes it
        assert held(eng) == D("0.002")


async def test_deposits_and_stale_snapshots_follow_the_venues_times(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, capped(settings, "1")) as eng:
        position(fake, "0.001", 100)
        for listener in fake.balance_listeners:
            listener(BalancePush("delta", 110, asset="BTC", delta=D("0.5")))  # a deposit
        assert held(eng) == D("0.501")
        position(fake, "0.501", 120)  # the position event sent with it: absolute, the same
        for listener in fake.balance_listeners:
            listener(BalancePush("delta", 110, asset="BTC", delta=D("0.5")))  # that deposit again: older
        assert held(eng) == D("0.501")
        position(fake, "0.001", 90)  # older than the one in force: ignored
        assert held(eng) == D("0.501")
        fake.balances = {"BTC": D("7")}  # a REST read whose time is unknown does not override a push
        await eng.orders.refresh_market()
        assert held(eng) == D("0.501")


@pytest.mark.parametrize("rounds", [1, 5])
async def test_concurrent_buys_racing_balance_events_never_pass_the_cap(
    db_url: str, settings: EngineSettings, rounds: int
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, capped(settings, "0.005"), live=True) as eng:
        position(fake, "0.002", 100)

        async def pushes() -> None:
            for t in range(rounds * 10):
                position(fake, "0.002", 101 + t)  # the same holdings, re-sent while the orders race
                await asyncio.sleep(0)

        results = await asyncio.gather(
            pushes(),
            *(eng.orders.submit(buy(f"pb-r{i}"), "trader") for i in range(10)),
            return_exceptions=True,
        )
        accepted = [r for r in results[1:] if not isinstance(r, BaseException)]
        refused = [r for r in results[1:] if isinstance(r, OrderRejected)]
        assert len(accepted) == 3  # 0.002 held + 3 x 0.001 open BUYs = the 0.005 cap
        assert {r.reason for r in refused} == {"risk_max_position"}
        assert len(refused) == 7
        # the open BUYs fill, each reported by the stream and then included in a balance event
        for i, placement in enumerate(accepted):
            streamed_fill(fake, placement.order.client_order_id, "0.001")
            position(fake, str(D("0.002") + D("0.001") * (i + 1)), 1000 + i)
        await eventually(lambda: not eng.orders.open)
        assert held(eng) == D("0.005")
        with pytest.raises(OrderRejected):
            await eng.orders.submit(buy("pb-late"), "trader")
