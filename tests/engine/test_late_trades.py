"""Trades reported after the quantity they explain (engine.late_trades): a snapshot's executedQty moved
without its trades (GET /myTrades behind GET /order), and the trades then arrive — by the stream, by the
trade tracer, after a restart, concurrently and repeatedly. Each is journaled exactly once as a trade row,
never beyond the untraced quantity; replay rebuilds the same memory and refuses a row that breaks that;
the ledger ends with every trade id and commission and no untraced fill."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from engine.config import EngineSettings
from engine.errors import JournalCorrupt
from engine.fsm.order_table import OrderState
from engine.journal import JournalQuery
from engine.late_trades import TRADE_STREAM, UntracedOrders, trade_entry
from engine.ledger import Ledger, project
from engine.order import Order
from engine.persistence.sql_journal import SqlJournal
from engine.ports import SendGate
from engine.replay import Replayer, replay
from engine.runtime import Engine
from engine.trade_tracer import _Attempts
from engine.types import Fill, OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.engine.conftest import running
from tests.fakes import FakeExchange
from tests.waiting import eventually_async as eventually

V, D = VenueStatus, Decimal
CID = "pb-late"
T1 = Fill(701, D("65000"), D("0.0004"), D("0.0000004"), "BTC", True)
T2 = Fill(702, D("64990"), D("0.0006"), D("0.039"), "USDT", False)
T3 = Fill(703, D("64980"), D("0.0001"), D("0.0000001"), "BTC", False)  # beyond the order: never journaled
REQ = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, CID, D("0.001"), D("65000.00"), TimeInForce.GTC)
QUOTE = D("65000") * D("0.0004") + D("64990") * D("0.0006")


def view(status: VenueStatus, executed: D, fills: tuple[Fill, ...], quote: D | None = None) -> VenueOrder:
    return VenueOrder("BTCUSDT", CID, status, 77, D("0.001"), executed, QUOTE if quote is None else quote,
                      fills, {"status": status.value}, Side.BUY, OrderType.LIMIT, D("65000.00"),
                      TimeInForce.GTC, status_text=status.value, pushed=True)  # fmt: skip


def push(fake: FakeExchange, vo: VenueOrder) -> None:
    for listener in fake.listeners:
        listener(vo)


def trade_rows(eng: Engine) -> list[dict[str, Any]]:
    return [r.payload for r in eng.journal.query(JournalQuery(stream=TRADE_STREAM, limit=100))]


async def settled(eng: Engine) -> None:
    for _ in range(5):
        await eng.orders.store.idle(CID)
        await asyncio.sleep(0)


async def filled_without_trades(eng: Engine, fake: FakeExchange) -> None:
    fake.outcome = lambda _req: V.NEW
    await eng.orders.submit(REQ, "trader")
    await eng.orders.store.sync(CID, replace(view(V.FILLED, D("0.001"), ()), pushed=False))
    assert eng.orders.store.untraced.get(CID) is not None
    position = eng.ledger.positions()["positions"][0]
    assert (position["untraced_trades"], position["quantity"], position["cost"]) == (1, "0.001", "64.994")


def assert_fully_traced(eng: Engine) -> None:
    assert sorted(p["fill"]["tradeId"] for p in trade_rows(eng)) == [701, 702]
    assert eng.orders.store.untraced.get(CID) is None
    position = eng.ledger.positions()["positions"][0]
    # the quantity and cost were counted when executedQty moved; the trades add their ids and commissions
    assert position["untraced_trades"] == 0
    assert position["trades"] == 2
    assert position["fees"] == {"BTC": "0.0000004", "USDT": "0.039"}
    assert D(position["quantity"]) == D("0.001") - D("0.0000004")  # the BTC fee is paid in kind
    fills = eng.ledger.fills(client_order_id=CID).items
    assert sorted(f["tradeId"] for f in fills) == [701, 702]
    assert all(f["traced"] for f in fills)
    rebuilt = replay(eng.journal.scan(), keep_terminal=True)
    assert len(rebuilt.untraced) == 0
    assert rebuilt.terminal_orders[CID].trade_ids == {701, 702}


async def test_late_stream_trades_of_a_filled_order_are_journaled_once_even_when_repeated_concurrently(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        await filled_without_trades(eng, fake)
        reports = [view(V.PARTIALLY_FILLED, D("0.0004"), (T1,)), view(V.FILLED, D("0.001"), (T2,))]
        for _ in range(3):  # the same reports, again and again, with no await in between
            for vo in reports:
                push(fake, vo)
        push(fake, view(V.FILLED, D("0.001"), (T1, T2, T3)))  # T3 would exceed the order: not journaled
        await settled(eng)
        await eventually(lambda: eng.orders.store.untraced.get(CID) is None)
        await asyncio.sleep(0.05)  # anything still coming would be journaled by now
        assert_fully_traced(eng)
        assert eng.orders.find(CID).state is OrderState.FILLED


async def test_late_trades_after_a_restart(db_url: str, fake: FakeExchange, settings: EngineSettings) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        await filled_without_trades(eng, fake)
        push(fake, view(V.PARTIALLY_FILLED, D("0.0004"), (T1,)))
        await settled(eng)
        assert len(trade_rows(eng)) == 1
    async with running(db_url, fake, settings) as eng:  # replay rebuilds what is still untraced
        held = eng.orders.store.untraced.get(CID)
        assert held is not None
        assert held.traced_qty == D("0.0004")
        push(fake, view(V.PARTIALLY_FILLED, D("0.0004"), (T1,)))  # journaled before the restart
        push(fake, view(V.FILLED, D("0.001"), (T2,)))
        await settled(eng)
        await eventually(lambda: eng.orders.store.untraced.get(CID) is None)  # applied, not only committed
        assert_fully_traced(eng)
    async with running(db_url, fake, settings) as eng:  # and the ledger of a replay agrees
        assert_fully_traced(eng)


async def test_the_tracer_asks_for_the_trades_and_names_an_order_it_gave_up_on(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        tracer = eng.orders.trade_tracer
        tracer.first_s, tracer.max_s, tracer.tick_s, tracer.attempts = 0.05, 0.05, 0.02, 3
        await filled_without_trades(eng, fake)
        fake.orders[CID] = view(V.FILLED, D("0.001"), ())
        await eventually(lambda: tracer.status()["status"] == "WARN", timeout=5)
        assert tracer.status()["untraced_orders"] == [CID]
        assert trade_rows(eng) == []
    async with running(db_url, fake, settings) as eng:  # a restart asks again
        tracer = eng.orders.trade_tracer
        tracer.first_s, tracer.tick_s = 0.05, 0.02
        fake.trades_of[CID] = (T2, T1)  # myTrades shows them now
        await eventually(lambda: eng.orders.store.untraced.get(CID) is None, timeout=5)
        assert_fully_traced(eng)
        await eventually(
            lambda: tracer.status() == {"pending": 0, "given_up": 0, "traced": 1, "status": "OK"}
        )


@pytest.mark.parametrize(
    "tamper",
    ["traced_already", "beyond_the_order", "misnamed", "other_side", "no_such_order", "fully_traced"],
)
async def test_replay_refuses_a_trade_row_that_breaks_the_order(
    db_url: str, fake: FakeExchange, settings: EngineSettings, tamper: str
) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        fake.outcome = lambda _req: V.NEW
        await eng.orders.submit(REQ, "trader")
        await eng.orders.store.sync(CID, view(V.FILLED, D("0.001"), (T1,)))  # T2 untraced
        order = eng.orders.store.untraced.get(CID)
        assert order is not None
        assert order.untraced_qty == T2.qty
    nobody = Order(replace(REQ, client_order_id="pb-nobody"), "live")
    sound, entry = {
        "traced_already": ([], trade_entry(order, T1, "reconciler")),  # T1 is in the order's own row
        "beyond_the_order": ([], trade_entry(order, replace(T3, qty=D("0.0007")), "reconciler")),
        "misnamed": ([], replace(trade_entry(order, T2, "reconciler"), stream_id="BTCUSDT-1")),
        "other_side": ([], trade_entry(Order(replace(REQ, side=Side.SELL), "live"), T2, "reconciler")),
        "no_such_order": ([], trade_entry(nobody, T2, "reconciler")),
        # T2 traces the rest; then the order is no longer held, and no trade of it may follow
        "fully_traced": ([trade_entry(order, T2, "reconciler")], trade_entry(order, T3, "reconciler")),
    }[tamper]
    journal = SqlJournal(db_url)
    try:
        if sound:
            journal.append(sound)
        replay(journal.scan())  # sound before
        journal.append([entry])
        with pytest.raises(JournalCorrupt):
            replay(journal.scan())
    finally:
        journal.close()


async def test_an_order_row_whose_trades_explain_earlier_untraced_quantity_counts_it_once(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """A partial fill journaled without its trade, then a REST view of the filled order with every trade
    (the Binance adapter completes a moved view from GET /myTrades, all of the order's trades): the row's
    trades explain the earlier untraced quantity as well as the new one, and the ledger counts each once."""
    async with running(db_url, fake, settings, live=True) as eng:
        fake.outcome = lambda _req: V.NEW
        await eng.orders.submit(REQ, "trader")
        first = replace(view(V.PARTIALLY_FILLED, T1.qty, (), T1.price * T1.qty), pushed=False)
        await eng.orders.store.sync(CID, first)
        await eng.orders.store.sync(CID, replace(view(V.FILLED, D("0.001"), (T1, T2)), pushed=False))
        assert trade_rows(eng) == []  # both trades are in the order's own row
        for ledger in (eng.ledger, project(eng.journal.scan())[0]):
            position = ledger.positions()["positions"][0]
            assert (position["untraced_trades"], position["trades"]) == (0, 2)
            assert D(position["quantity"]) == D("0.001") - T1.commission  # the BTC fee is paid in kind
            assert position["cost"] == "64.968"  # 64.994, less T1's fee at the 65000 held then: as if traced
            assert position["fees"] == {"BTC": "0.0000004", "USDT": "0.039"}
            fills = ledger.fills(client_order_id=CID).items
            assert [(f["tradeId"], f["qty"]) for f in fills] == [(701, "0.0004"), (702, "0.0006")]


async def test_a_late_trade_reported_while_the_order_finishes_is_journaled(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """The late report of an untraced trade arrives while the order's last fill is being committed: the
    order is busy, so the report waits, and by the time it is decided the order is finished. Its trade
    still explains the untraced quantity (not dropped for want of an open order)."""
    async with running(db_url, fake, settings, live=True) as eng:
        fake.outcome = lambda _req: V.NEW
        await eng.orders.submit(REQ, "trader")
        first = replace(view(V.PARTIALLY_FILLED, T1.qty, (), T1.price * T1.qty), pushed=False)
        await eng.orders.store.sync(CID, first)  # T1's quantity, untraced
        push(fake, view(V.FILLED, D("0.001"), (T2,)))  # the last fill: committing, the order busy
        push(fake, view(V.PARTIALLY_FILLED, T1.qty, (T1,)))  # T1's own report, late
        await settled(eng)
        await eventually(lambda: eng.orders.store.untraced.get(CID) is None)
        assert [p["fill"]["tradeId"] for p in trade_rows(eng)] == [701]  # T2 is in the order's own row
        position = eng.ledger.positions()["positions"][0]
        assert (position["untraced_trades"], position["trades"]) == (0, 2)
        assert position["fees"] == {"BTC": "0.0000004", "USDT": "0.039"}
        assert len(replay(eng.journal.scan()).untraced) == 0


async def test_the_place_answers_trades_explain_what_a_catch_up_journaled_without_them(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """While POST /order is out, a REST catch-up journals the order FILLED without its trades (myTrades
    behind); the FULL answer then arrives with both trades. It moves nothing any more, but its trades are
    journaled (as late trades of the finished order), not dropped with it."""
    placed = fake.place

    async def place(req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        await placed(req, may_send=may_send)
        push(fake, replace(view(V.FILLED, D("0.001"), ()), pushed=False))  # the catch-up's view, first
        await settled(eng)
        return replace(view(V.FILLED, D("0.001"), (T1, T2)), pushed=False)  # the FULL answer

    fake.place = place  # type: ignore[method-assign]
    async with running(db_url, fake, settings, live=True) as eng:
        placement = await eng.orders.submit(REQ, "trader")
        assert placement.order.state is OrderState.FILLED
        await settled(eng)
        assert_fully_traced(eng)


async def test_a_self_trade_is_journaled_late_for_both_of_its_orders(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """With selfTradePreventionMode NONE our BUY can trade with our own SELL: one trade id, in both
    orders (docs/api.md "Where fills come from"). Both filled untraced, the trade's two late reports
    are each journaled, for their own order: the second is no version conflict with the first."""
    sell_cid = "pb-late-sell"
    sell = replace(REQ, side=Side.SELL, client_order_id=sell_cid)
    trade = Fill(900, D("65000"), D("0.001"), D("0.065"), "USDT", True)
    buy_view = replace(view(V.FILLED, D("0.001"), (), D("65")), pushed=False)
    sell_view = replace(buy_view, client_order_id=sell_cid, order_id=78, side=Side.SELL)
    async with running(db_url, fake, settings, live=True) as eng:
        fake.outcome = lambda _req: V.NEW
        await eng.orders.submit(REQ, "trader")
        await eng.orders.submit(sell, "trader")
        await eng.orders.store.sync(CID, buy_view)
        await eng.orders.store.sync(sell_cid, sell_view)
        push(fake, replace(buy_view, fills=(trade,), pushed=True))
        push(fake, replace(sell_view, fills=(replace(trade, is_maker=False),), pushed=True))
        await eventually(lambda: len(eng.orders.store.untraced) == 0)
        assert sorted((p["clientOrderId"], p["fill"]["tradeId"]) for p in trade_rows(eng)) == [
            (CID, 900), (sell_cid, 900)
        ]  # fmt: skip
        assert len(replay(eng.journal.scan()).untraced) == 0
        position = eng.ledger.positions()["positions"][0]
        assert (position["quantity"], position["untraced_trades"], position["fees"]) == (
            "0",
            0,
            {"USDT": "0.13"},
        )


async def test_an_answer_the_tracer_cannot_read_neither_stops_it_nor_is_asked_for_ever(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """query_trades raises something other than an ExchangeError for one order (an answer the adapter
    cannot parse): the supervisor shows the failure and restarts the tracer, the other order is still
    traced, and the failing one is asked `attempts` times, then named, like any other."""
    other = "pb-late-2"
    async with running(db_url, fake, settings, live=True) as eng:
        tracer = eng.orders.trade_tracer
        tracer.first_s, tracer.max_s, tracer.tick_s, tracer.attempts = 0.02, 0.02, 0.01, 2
        fake.outcome = lambda _req: V.NEW
        for cid in (CID, other):  # CID finishes first: the first the tracer asks
            await eng.orders.submit(replace(REQ, client_order_id=cid), "trader")
            vo = replace(view(V.FILLED, D("0.001"), ()), client_order_id=cid, pushed=False)
            await eng.orders.store.sync(cid, vo)
            fake.orders[cid] = vo
        fake.trades_of[other] = (T1, T2)
        asked: list[str] = []
        answer = fake.query_trades

        async def query_trades(symbol: str, cid: str) -> VenueOrder | None:
            asked.append(cid)
            if cid == CID:
                raise ValueError("an answer the adapter could not read")
            return await answer(symbol, cid)

        fake.query_trades = query_trades  # type: ignore[method-assign]
        await eventually(lambda: eng.orders.store.untraced.get(other) is None, timeout=5)
        await eventually(lambda: tracer.status().get("untraced_orders") == [CID], timeout=5)
        await asyncio.sleep(0.1)
        assert asked.count(CID) == 2
        assert eng.supervisor.status()["trade_tracer"]["failures"] >= 1


async def test_a_trade_row_of_an_order_evicted_from_the_untraced_set_still_replays(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """Memory keeps the newest UNTRACED_KEPT finished orders with untraced quantity, and replay evicts by
    the same rule: both hold the same set. A trade row of an evicted order (the store decided it while
    the commits that evicted the order were on their way) is accepted unchecked; one of an order that
    is neither held nor evicted is not (the tamper cases above)."""
    other = "pb-late-2"
    async with running(db_url, fake, settings, live=True) as eng:
        store = eng.orders.store
        store.untraced = UntracedOrders(kept=1)
        fake.outcome = lambda _req: V.NEW
        for cid in (CID, other):
            await eng.orders.submit(replace(REQ, client_order_id=cid), "trader")
        await store.sync(CID, view(V.FILLED, D("0.001"), (T1,)))  # T2 untraced
        evicted = store.untraced.get(CID)
        assert evicted is not None
        store.sync_now(store.open[other], replace(view(V.FILLED, D("0.001"), ()), client_order_id=other))
        store.trace_now(evicted, view(V.FILLED, D("0.001"), (T1, T2)))  # decided before the eviction applies
        await settled(eng)
        await store.idle(other)
        assert store.untraced.get(CID) is None
        assert [p["fill"]["tradeId"] for p in trade_rows(eng)] == [702]
        replayer = Replayer()
        replayer.result.untraced = UntracedOrders(kept=1)
        rebuilt = replayer.feed(eng.journal.scan(), complete=True)
        assert list(rebuilt.untraced.orders) == list(store.untraced.orders) == [other]


async def test_the_ledger_keeps_an_untraced_order_its_history_evicted_for_its_late_trades(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    """The ledger's order history keeps the newest TERMINAL_KEPT finished orders, the store's untraced
    set the newest UNTRACED_KEPT finished orders still untraced: an untraced order can leave the first
    (many orders finished since) while its late trade is still journaled. The ledger still swaps its
    untraced fill for the trade, live and in a replay."""
    other = "pb-late-2"
    more = (T3, replace(T3, trade_id=704, qty=D("0.0009")))
    async with running(db_url, fake, settings, live=True) as eng:
        eng.ledger._terminal_kept = 1
        await filled_without_trades(eng, fake)
        await eng.orders.submit(replace(REQ, client_order_id=other), "trader")
        await eng.orders.store.sync(other, replace(view(V.FILLED, D("0.001"), more), client_order_id=other))
        assert CID not in eng.ledger.orders  # out of the history, still untraced
        push(fake, view(V.FILLED, D("0.001"), (T1, T2)))
        await eventually(lambda: eng.orders.store.untraced.get(CID) is None)
        replayed = Ledger(terminal_kept=1)
        replay(eng.journal.scan(), on_order=replayed.on_order_row, on_trade=replayed.on_trade_row)
        for ledger in (eng.ledger, replayed):
            position = ledger.positions()["positions"][0]
            assert (position["untraced_trades"], position["trades"]) == (0, 4), ledger.problems
            assert position["fees"] == {"BTC": "0.0000006", "USDT": "0.039"}
            assert list(ledger.problems) == []


@pytest.mark.parametrize("seed", range(8))
async def test_pushes_tracer_queries_and_rest_views_of_one_order_at_once_journal_each_trade_once(
    db_url: str, fake: FakeExchange, settings: EngineSettings, seed: int
) -> None:
    """An open order's first fill journaled untraced; then, all at once and in a shuffled order: the late
    and the next stream reports (each twice), REST views with every trade and stale ones, the tracer's
    query and a trace of the (not yet) finished order. Every trade ends journaled once, in the order's
    rows or as a trade row; the ledger counts each once, live and in a replay."""
    async with running(db_url, fake, settings, live=True) as eng:
        fake.outcome = lambda _req: V.NEW
        await eng.orders.submit(REQ, "trader")
        store, tracer = eng.orders.store, eng.orders.trade_tracer
        first = replace(view(V.PARTIALLY_FILLED, T1.qty, (), T1.price * T1.qty), pushed=False)
        await store.sync(CID, first)
        full = replace(view(V.FILLED, D("0.001"), (T1, T2)), pushed=False)
        fake.orders[CID], fake.trades_of[CID] = full, (T1, T2)
        order, loop = store.open[CID], asyncio.get_running_loop()

        async def reports() -> None:
            for vo in (view(V.PARTIALLY_FILLED, T1.qty, (T1,)), view(V.FILLED, D("0.001"), (T2,))):
                push(fake, vo)
                push(fake, vo)

        jobs: list[Awaitable[Any]] = []
        for _ in range(3):
            jobs += [reports(), store.sync(CID, full), store.sync(CID, first), store.sync(CID, full)]
            jobs.append(tracer._ask(order, _Attempts(0, 1), loop))
        random.Random(seed).shuffle(jobs)
        await asyncio.gather(*jobs)
        await settled(eng)
        await eventually(lambda: store.untraced.get(CID) is None)
        journaled = [
            f["tradeId"] for r in eng.journal.stream("order", CID) for f in r.payload.get("fills", ())
        ]
        assert sorted(journaled + [p["fill"]["tradeId"] for p in trade_rows(eng)]) == [701, 702]
        for ledger in (eng.ledger, project(eng.journal.scan())[0]):
            position = ledger.positions()["positions"][0]
            assert (position["untraced_trades"], position["trades"]) == (0, 2)
            assert D(position["quantity"]) == D("0.001") - T1.commission
        assert len(replay(eng.journal.scan()).untraced) == 0
