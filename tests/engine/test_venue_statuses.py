"""Every order status of Binance's enums.md reaches the engine without an exception: PENDING_NEW is a
working order, EXPIRED_IN_MATCH keeps the prevented quantity, and a status nobody knows is journaled raw
and holds the session; order-list legs on the account are never adopted."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from engine.config import EngineSettings
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.engine.conftest import running
from tests.fakes import FakeExchange


def limit(cid: str) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", Side.BUY, OrderType.LIMIT, cid, Decimal("0.001"), Decimal("65000"), TimeInForce.GTC
    )


async def settle(eng: Engine) -> None:
    await asyncio.sleep(0.01)  # let spawned reactions start
    for _ in range(100):
        if not eng.writer.busy and not eng.sessions.busy:
            return
        await asyncio.sleep(0.005)


async def test_an_unrecognised_pushed_status_is_journaled_raw_and_holds(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.orders.submit(limit("pb-u1"), "trader")
        weird = replace(fake.orders["pb-u1"], status=VenueStatus.UNRECOGNISED, status_text="HALF_BAKED")
        for listener in fake.listeners:
            listener(weird)  # must not raise
        await settle(eng)
        session = eng.sessions.current
        assert session.state is SessionState.HOLD
        assert "HALF_BAKED" in session.hold_reason
        assert eng.orders.open["pb-u1"].state is OrderState.ACKED  # nothing guessed


async def test_an_unrecognised_status_in_the_place_answer_is_unknown_and_holds(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    fake.outcome = lambda _req: VenueStatus.UNRECOGNISED
    async with running(db_url, fake, settings, live=True) as eng:
        placed = await eng.orders.submit(limit("pb-u2"), "trader")
        assert placed.order.state is OrderState.UNKNOWN
        assert eng.sessions.current.state is SessionState.HOLD


async def test_pending_new_is_an_accepted_order(db_url: str, settings: EngineSettings) -> None:
    fake = FakeExchange()
    fake.outcome = lambda _req: VenueStatus.PENDING_NEW
    async with running(db_url, fake, settings, live=True) as eng:
        placed = await eng.orders.submit(limit("pb-p1"), "trader")
        assert placed.order.state is OrderState.ACKED


async def test_expired_in_match_keeps_the_prevented_quantity(db_url: str, settings: EngineSettings) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.orders.submit(limit("pb-stp1"), "trader")
        vo = replace(fake.orders["pb-stp1"], status=VenueStatus.EXPIRED_IN_MATCH,
                     prevented_qty=Decimal("0.00100000"))  # fmt: skip
        fake.orders["pb-stp1"] = vo
        for listener in fake.listeners:
            listener(vo)
        await eng.orders.store.idle("pb-stp1")
        last = eng.journal.stream("order", "pb-stp1")[-1]
        assert (last.trigger, last.to_state) == ("expire", "EXPIRED")
        assert last.payload["venueStatus"] == "EXPIRED_IN_MATCH"
        assert last.payload["preventedQty"] == "0.00100000"


async def test_a_pending_new_leg_on_the_account_is_neither_adopted_nor_a_problem(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    leg = VenueOrder("BTCUSDT", "someone-elses-leg", VenueStatus.PENDING_NEW, 77, Decimal("0.001"),
                     order_list_id=5, side=Side.SELL, type=OrderType.LIMIT,
                     price=Decimal("70000"), time_in_force=TimeInForce.GTC)  # fmt: skip
    fake.orders[leg.client_order_id] = leg
    original = fake.open_orders

    async def with_leg(symbol: str | None = None) -> list[VenueOrder]:
        return [*await original(symbol), leg]

    fake.open_orders = with_leg  # type: ignore[method-assign]
    async with running(db_url, fake, settings) as eng:
        assert eng.ready
        assert eng.report.problems == []
        assert "someone-elses-leg" not in eng.orders.open
        assert eng.journal.stream("order", "someone-elses-leg") == []
        assert [o["clientOrderId"] for o in eng.orders.foreign_orders()] == ["someone-elses-leg"]


async def test_live_orders_wait_while_the_venue_has_an_open_gap(
    db_url: str, settings: EngineSettings
) -> None:
    from engine.errors import OrderRejected

    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        fake.gate = "user data stream is down"
        with pytest.raises(OrderRejected) as info:
            await eng.orders.submit(limit("pb-g1"), "trader")
        assert info.value.reason == "venue_gap"
        assert fake.placed == []
        fake.gate = None
        assert (await eng.orders.submit(limit("pb-g2"), "trader")).order.state is OrderState.ACKED
