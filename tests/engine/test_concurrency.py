"""The engine's promises under concurrency, cancellation, restarts and shutdown: each test runs commands
at once (asyncio.gather), cancels them mid-flight, or stops the engine while work is arriving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from engine.config import EngineSettings, RiskLimits
from engine.errors import AlreadyRejected, ApprovalRejected, EngineError, ExchangeUnavailable, OrderRejected
from engine.fsm.order_table import OrderState
from engine.guardrails.preflight import Check
from engine.journal import JournalQuery
from engine.order import Order
from engine.persistence.sql_journal import SqlJournal
from engine.ports import SendGate
from engine.replay import replay
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, SymbolRules, TimeInForce, VenueOrder, VenueStatus
from tests.approvals import approval_token
from tests.engine.conftest import go_live, running
from tests.engine.faulty import FlakyJournal
from tests.fakes import FakeExchange, FrozenClock


def limit(cid: str, qty: str = "0.001", side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", side, OrderType.LIMIT, cid, Decimal(qty), Decimal("65000.00"), TimeInForce.GTC
    )


class SlowFake(FakeExchange):
    """Every place() takes `delay_s` (per client id if listed), so concurrent submits overlap in flight."""

    def __init__(self, delay_s: float = 0.02, per_id: dict[str, float] | None = None) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.per_id = per_id or {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        self.sending(may_send)  # sent: the sleep is the venue's latency
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.per_id.get(req.client_order_id, self.delay_s))
            return await super().place(req)
        finally:
            self.in_flight -= 1


def snapshot(order: Order) -> tuple[Any, ...]:
    return (order.state, order.version, order.filled_qty, order.order_id, frozenset(order.trade_ids or ()))


def assert_memory_is_the_journal(eng: Engine) -> None:
    """Replaying the journal (which also verifies it) gives exactly the orders and session in memory."""
    rebuilt = replay(eng.journal.scan())
    assert {c: snapshot(o) for c, o in rebuilt.open_orders.items()} == {
        c: snapshot(o) for c, o in eng.orders.open.items()
    }
    again = rebuilt.sessions[eng.sessions.current.session_id]
    assert (again.state, again.version) == (eng.sessions.current.state, eng.sessions.current.version)


async def submit_all(eng: Engine, reqs: list[OrderRequest]) -> list[Any]:
    return await asyncio.gather(*(eng.orders.submit(r, "trader") for r in reqs), return_exceptions=True)


def refused(results: list[Any], reason: str) -> int:
    return sum(isinstance(r, OrderRejected) and r.reason == reason for r in results)


# -- risk caps are exact under any concurrency ------------------------------------------------------


@pytest.mark.parametrize(("cap", "burst"), [(3, 3), (3, 20)])  # at the bound and far past it
async def test_max_open_orders_holds_under_concurrent_submits(
    db_url: str, settings: EngineSettings, cap: int, burst: int
) -> None:
    fake = SlowFake()
    cfg = replace(settings, risk=RiskLimits(max_open_orders=cap))
    async with running(db_url, fake, cfg, live=True) as eng:
        results = await submit_all(eng, [limit(f"pb-o{i}") for i in range(burst)])
        assert len(fake.placed) == min(cap, burst)
        assert refused(results, "risk_max_open_orders") == max(0, burst - cap)
        assert len(eng.orders.open) == min(cap, burst)
        assert_memory_is_the_journal(eng)


async def test_orders_per_minute_holds_under_concurrent_submits(
    db_url: str, settings: EngineSettings
) -> None:
    fake = SlowFake()
    cfg = replace(settings, risk=RiskLimits(max_orders_per_minute=5))
    async with running(db_url, fake, cfg, live=True) as eng:
        results = await submit_all(eng, [limit(f"pb-r{i}") for i in range(20)])
        assert len(fake.placed) == 5
        assert refused(results, "risk_order_rate") == 15


@asynccontextmanager
async def one_filled_of_two_a_minute(
    db_url: str, settings: EngineSettings, cid: str
) -> AsyncIterator[tuple[Engine, FakeExchange]]:
    """A LIVE engine allowing 2 orders a minute, with one of them (`cid`) placed and filled already."""
    cfg = replace(settings, risk=RiskLimits(max_orders_per_minute=2))
    fake = FakeExchange()
    fake.outcome = lambda _req: VenueStatus.FILLED
    async with running(db_url, fake, cfg, live=True) as eng:
        await eng.orders.submit(limit(cid), "trader")
        yield eng, fake


async def test_resubmits_of_a_finished_order_take_no_place_in_the_order_rate_window(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: a resubmit of a finished order was decided (and counted) before its create met the existing
    # id, so idempotent retries used up max_orders_per_minute with orders the journal never held
    async with one_filled_of_two_a_minute(db_url, settings, "pb-done-1") as (eng, fake):
        assert "pb-done-1" not in eng.orders.open  # finished: a resubmit is decided afresh
        again = await asyncio.gather(*(eng.orders.submit(limit("pb-done-1"), "trader") for _ in range(5)))
        assert all(p.existing for p in again)
        await eng.orders.submit(limit("pb-next-1"), "trader")  # the window's second place is still free
        assert [r.client_order_id for r in fake.placed] == ["pb-done-1", "pb-next-1"]


async def test_a_resubmit_of_a_finished_order_racing_a_new_order_does_not_refuse_it(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: forget() took the resubmit's place back only once its create failed, so a new order decided in
    # the same step saw the window full with it and was refused (409, journaled and counted), although the
    # journal never held the resubmit. A cap refusal now waits once for the creates decided before it
    async with one_filled_of_two_a_minute(db_url, settings, "pb-done-2") as (eng, fake):
        again, new = await asyncio.gather(
            eng.orders.submit(limit("pb-done-2"), "trader"), eng.orders.submit(limit("pb-next-2"), "trader"),
            return_exceptions=True,
        )  # fmt: skip
        assert not isinstance(again, BaseException)
        assert again.existing
        assert not isinstance(new, BaseException), new
        assert [r.client_order_id for r in fake.placed] == ["pb-done-2", "pb-next-2"]


async def test_a_resubmit_of_a_finished_order_racing_a_new_order_leaves_it_its_open_order_place(
    db_url: str, settings: EngineSettings
) -> None:
    # The same race on max_open_orders: the resubmit's reservation counted as open until its create met
    # the existing id, and the new order decided meanwhile was refused risk_max_open_orders
    cfg = replace(settings, risk=RiskLimits(max_open_orders=1))
    fake = FakeExchange()
    fake.outcome = lambda req: VenueStatus.FILLED if req.client_order_id == "pb-done-3" else VenueStatus.NEW
    async with running(db_url, fake, cfg, live=True) as eng:
        await eng.orders.submit(limit("pb-done-3"), "trader")
        assert not eng.orders.open
        again, new = await asyncio.gather(
            eng.orders.submit(limit("pb-done-3"), "trader"), eng.orders.submit(limit("pb-next-3"), "trader"),
            return_exceptions=True,
        )  # fmt: skip
        assert not isinstance(again, BaseException)
        assert again.existing
        assert not isinstance(new, BaseException), new
        assert list(eng.orders.open) == ["pb-next-3"]
        # At the bound the cap still holds: one more is refused, after the wait, with the cap's reason
        results = await submit_all(eng, [limit("pb-over-3"), limit("pb-over-4")])
        assert refused(results, "risk_max_open_orders") == 2
        assert [r.client_order_id for r in fake.placed] == ["pb-done-3", "pb-next-3"]
        assert_memory_is_the_journal(eng)


@pytest.mark.parametrize("cap", ["risk_order_rate", "risk_max_open_orders"])
async def test_two_resends_of_a_finished_order_racing_a_new_order_do_not_refuse_it(
    db_url: str, settings: EngineSettings, cap: str
) -> None:
    # Was: the first resend was decided and counted (a place in the window, a reservation) until its
    # create met the existing id; the new order, refused for it, waited once for that create; the second
    # resend, waiting for the first's id, woke first and was decided (and counted) in its turn, so the new
    # order decided again, was refused with the cap's reason (409, journaled, counted) and placed nothing,
    # with only the finished order in the journal. A resend of an order the history holds finished is now
    # not decided at all: it is answered from memory, as the commit of its create would have answered it
    limits = (
        RiskLimits(max_orders_per_minute=2) if cap == "risk_order_rate" else RiskLimits(max_open_orders=1)
    )
    fake = FakeExchange()
    fake.outcome = lambda req: VenueStatus.FILLED if req.client_order_id == "pb-done-8" else VenueStatus.NEW
    async with running(db_url, fake, replace(settings, risk=limits), live=True) as eng:
        await eng.orders.submit(limit("pb-done-8"), "trader")
        assert not eng.orders.open
        results = await submit_all(eng, [limit("pb-done-8"), limit("pb-done-8"), limit("pb-next-8")])
        for again in results[:2]:
            assert not isinstance(again, BaseException), again
            assert again.existing
        assert not isinstance(results[2], BaseException), results[2]
        assert [r.client_order_id for r in fake.placed] == ["pb-done-8", "pb-next-8"]
        creates = eng.journal.query(JournalQuery(stream="order", trigger="create"))
        assert eng.orders._rate.count(eng.orders._now_s()) == len(creates) == 2
        assert_memory_is_the_journal(eng)


@pytest.mark.parametrize("cap", ["risk_order_rate", "risk_max_open_orders"])
async def test_a_resend_of_an_order_beyond_the_history_racing_a_new_order_does_not_refuse_it(
    db_url: str, settings: EngineSettings, cap: str
) -> None:
    # An order no longer in the history is decided afresh and meets its id at the commit: the new order's
    # refusal waits for that create and decides again (this is the path the wait is for)
    limits = (
        RiskLimits(max_orders_per_minute=2) if cap == "risk_order_rate" else RiskLimits(max_open_orders=1)
    )
    fake = FakeExchange()
    fake.outcome = lambda req: VenueStatus.FILLED if req.client_order_id == "pb-done-9" else VenueStatus.NEW
    async with running(db_url, fake, replace(settings, risk=limits), live=True) as eng:
        await eng.orders.submit(limit("pb-done-9"), "trader")
        eng.orders.history = lambda: None  # as if it had left the history (TERMINAL_KEPT newer since)
        again, new = await submit_all(eng, [limit("pb-done-9"), limit("pb-next-9")])
        assert not isinstance(again, BaseException), again
        assert again.existing
        assert not isinstance(new, BaseException), new
        assert [r.client_order_id for r in fake.placed] == ["pb-done-9", "pb-next-9"]
        creates = eng.journal.query(JournalQuery(stream="order", trigger="create"))
        assert eng.orders._rate.count(eng.orders._now_s()) == len(creates) == 2
        assert_memory_is_the_journal(eng)


async def test_a_cap_refusal_cancelled_while_it_waits_for_earlier_creates_records_nothing(
    db_url: str, settings: EngineSettings
) -> None:
    # The wait comes before anything of the order is recorded: cancelled there, it leaves no row, no place
    # in the rate window and no reservation, and the creates it waited for are unaffected
    async with one_filled_of_two_a_minute(db_url, settings, "pb-done-5") as (eng, fake):
        first = asyncio.ensure_future(eng.orders.submit(limit("pb-a-5"), "trader"))
        await asyncio.sleep(0)  # decided and queued: the window is full with it
        waiting = asyncio.ensure_future(eng.orders.submit(limit("pb-b-5"), "trader"))
        await asyncio.sleep(0)  # refused by the window with a create pending: it waits for that create
        assert not waiting.done()
        waiting.cancel()
        placed = await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert placed.order.client_order_id == "pb-a-5"
        assert await eng.orders.store.find_async("pb-b-5") is None  # no row of it
        assert not eng.orders.store.reserved
        assert [r.client_order_id for r in fake.placed] == ["pb-done-5", "pb-a-5"]
        assert_memory_is_the_journal(eng)


@pytest.mark.parametrize(
    ("limits", "first", "cap"),
    [
        (RiskLimits(max_order_qty=Decimal("1")), None, "risk_max_qty"),  # the request itself breaks the cap
        (RiskLimits(max_orders_per_minute=1), "pb-before", "risk_order_rate"),  # the window is full
    ],
)
async def test_concurrent_resends_of_a_refused_id_answer_already_rejected_and_place_nothing(
    db_url: str, settings: EngineSettings, limits: RiskLimits, first: str | None, cap: str
) -> None:
    # What the engine guarantees: the first submit decides and queues its group in one step; the others
    # find the id busy and wait for that commit, so none is decided in the same step as the first. Each
    # then meets the REJECTED order (its create hits the existing id: nothing of it is written) and is
    # answered already_rejected naming the first refusal, never a second cap refusal or a placement
    fake = SlowFake()
    async with running(db_url, fake, replace(settings, risk=limits), live=True) as eng:
        if first is not None:
            await eng.orders.submit(limit(first), "trader")
        qty = "2" if cap == "risk_max_qty" else "0.001"
        results = await asyncio.gather(
            *(eng.orders.submit(limit("pb-refused-1", qty), "trader") for _ in range(3)), return_exceptions=True
        )  # fmt: skip
        assert isinstance(results[0], OrderRejected)
        assert results[0].reason == cap
        assert results[0].detail == {"clientOrderId": "pb-refused-1", "state": "REJECTED"}
        for again in results[1:]:
            assert isinstance(again, AlreadyRejected), again
            assert again.detail == {"clientOrderId": "pb-refused-1", "state": "REJECTED", "existing": True,
                                    "refusal": cap}  # fmt: skip
        assert [r.client_order_id for r in fake.placed] == ([first] if first else [])
        rows = [(r.trigger, r.reason) for r in eng.journal.stream("order", "pb-refused-1")]
        assert rows == [("create", ""), ("preflight", ""), ("reject", cap)]
        assert "pb-refused-1" not in eng.orders.open
        assert eng.orders.store.reserved == {}
        assert_memory_is_the_journal(eng)  # replay verifies the chain on the way
        # the window holds what the journal holds: the resends took no place in it
        creates = eng.journal.query(JournalQuery(stream="order", trigger="create"))
        assert eng.orders._rate.count(eng.orders._now_s()) == len(creates) == (2 if first else 1)


async def test_a_create_whose_commit_answer_was_lost_keeps_its_place_in_the_order_rate_window(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: any EngineError from the create's commit took the decision back (forget), JournalUnavailable
    # too; but that error may come after the database committed (the answer to COMMIT lost), so the window
    # in memory held fewer creates than the journal, and than a restart's window: an order over
    # max_orders_per_minute went out that a restarted engine would have refused
    cfg = replace(settings, safe_mode=False, risk=RiskLimits(max_orders_per_minute=1))
    journal = FlakyJournal(db_url)
    fake = FakeExchange()
    eng = Engine(journal, fake, cfg, FrozenClock(), session_id="testnet")
    await eng.start()
    try:
        await go_live(eng)
        journal.lose_answer("create")
        with pytest.raises(EngineError) as info:
            await eng.orders.submit(limit("pb-lost-1"), "trader")
        # The writer read the create back (engine.writer): durable, applied, never sent
        assert info.value.reason == "commit_answer_lost"
        assert [r.trigger for r in eng.journal.stream("order", "pb-lost-1")][:1] == ["create"]  # durable
        with pytest.raises(OrderRejected) as refused_info:
            await eng.orders.submit(limit("pb-next-1"), "trader")
        assert refused_info.value.reason == "risk_order_rate"
        assert fake.placed == []
    finally:
        journal.fail = 0
        await eng.stop()


async def test_orders_per_minute_holds_across_a_restart(db_url: str, settings: EngineSettings) -> None:
    # Was: the window lived in memory only, so a restart within the minute allowed a second minute's worth
    cfg = replace(settings, risk=RiskLimits(max_orders_per_minute=3))
    clock = FrozenClock(datetime.now(UTC))  # the journal stamps rows with the wall clock
    for attempt in range(2):
        fake = FakeExchange()
        eng = Engine(SqlJournal(db_url), fake, cfg, clock, session_id="testnet")
        await eng.start()
        try:
            results = await submit_all(eng, [limit(f"pb-m{attempt}-{i}") for i in range(3)])
            if attempt == 0:
                assert len(fake.tested) == 3
            else:  # the same minute: every place of the window is still taken
                assert fake.tested == []
                assert refused(results, "risk_order_rate") == 3
        finally:
            await eng.stop()
    clock.advance(120)  # once the minute has passed, the window is free again
    fake = FakeExchange()
    eng = Engine(SqlJournal(db_url), fake, cfg, clock, session_id="testnet")
    await eng.start()
    try:
        await eng.orders.submit(limit("pb-m-later"), "trader")
        assert len(fake.tested) == 1
    finally:
        await eng.stop()


async def test_max_position_holds_under_concurrent_buys(db_url: str, settings: EngineSettings) -> None:
    fake = SlowFake()
    fake.balances = {"BTC": Decimal("0.002")}
    cfg = replace(settings, risk=RiskLimits(max_position={"BTC": Decimal("0.005")}))
    async with running(db_url, fake, cfg, live=True) as eng:
        await eng.orders.refresh_market()
        results = await submit_all(eng, [limit(f"pb-p{i}") for i in range(10)])
        assert len(fake.placed) == 3  # 0.002 held + 3 × 0.001 reaches the cap exactly
        assert refused(results, "risk_max_position") == 7


async def test_max_notional_holds_for_every_concurrent_order(db_url: str, settings: EngineSettings) -> None:
    fake = SlowFake()
    cfg = replace(settings, risk=RiskLimits(max_order_notional=Decimal("100")))
    async with running(db_url, fake, cfg, live=True) as eng:
        ok = [limit(f"pb-n{i}", "0.0015") for i in range(5)]  # 97.5 each
        big = [limit(f"pb-b{i}", "0.002") for i in range(5)]  # 130 each
        results = await submit_all(eng, ok + big)
        assert len(fake.placed) == 5
        assert refused(results, "risk_max_notional") == 5


async def test_a_refused_or_failed_order_releases_its_reservation(
    db_url: str, settings: EngineSettings
) -> None:
    fake = SlowFake()
    fake.fail_next = ExchangeUnavailable("busy", reason="EXCHANGE_UNAVAILABLE")
    cfg = replace(settings, risk=RiskLimits(max_open_orders=2))
    async with running(db_url, fake, cfg, live=True) as eng:
        results = await submit_all(eng, [limit("pb-f1"), limit("pb-f2")])
        assert sum(isinstance(r, ExchangeUnavailable) for r in results) == 1
        assert eng.orders.open_count() == 1  # the failed send released its place
        assert (await eng.orders.submit(limit("pb-f3"), "trader")).order.state is OrderState.ACKED
        assert eng.orders.store.reserved == {}


# -- durable and applied are one step -------------------------------------------------------------


class SlowJournal(SqlJournal):
    """Each commit takes `delay_s` in the writer thread: a window to cancel a caller mid-commit."""

    delay_s = 0.0

    def append_groups(self, groups: Any) -> Any:
        import time

        time.sleep(self.delay_s)
        return super().append_groups(groups)


async def test_a_submit_cancelled_mid_commit_leaves_journal_and_memory_equal(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    journal = SlowJournal(db_url)
    eng = Engine(journal, fake, replace(settings, safe_mode=False), FrozenClock(), session_id="testnet")
    await eng.start()
    try:
        await go_live(eng)
        journal.delay_s = 0.2
        task = asyncio.create_task(eng.orders.submit(limit("pb-cx"), "trader"))
        await asyncio.sleep(0.05)  # the SENT group is in the writer's transaction now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        journal.delay_s = 0.0
        await eng.orders.store.idle("pb-cx")
        for _ in range(100):  # the send itself goes on in the store's task and is recorded
            if eng.orders.open.get("pb-cx") and eng.orders.open["pb-cx"].state is OrderState.ACKED:
                break
            await asyncio.sleep(0.01)
        assert eng.orders.open["pb-cx"].state is OrderState.ACKED
        assert [r.client_order_id for r in fake.placed] == ["pb-cx"]  # sent once, not lost, not twice
        assert_memory_is_the_journal(eng)
        # a resubmit of the same id is the same order, not a second one
        assert (await eng.orders.submit(limit("pb-cx"), "trader")).existing
    finally:
        await eng.stop()


# -- lifecycle ----------------------------------------------------------------------------------


class FlakyStartFake(FakeExchange):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        if self.failures:
            self.failures -= 1
            raise ExchangeUnavailable("venue down", reason="EXCHANGE_UNAVAILABLE")
        return await super().symbol_rules()


async def test_three_failed_connects_then_a_good_one_leave_one_listener_and_one_replay(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FlakyStartFake(failures=3)
    eng = Engine(SqlJournal(db_url), fake, settings, FrozenClock(), session_id="testnet")
    try:
        for _ in range(3):
            with pytest.raises(ExchangeUnavailable):
                await eng.start()
        await eng.start()
        assert eng.ready
        assert len(fake.listeners) == 1
        assert eng.opens == 1
        assert [r.trigger for r in eng.journal.stream("session", "testnet")] == ["open"]
        await go_live(eng)
        await eng.orders.submit(limit("pb-once"), "trader")
        fake.fill("pb-once", Decimal("0.0004"))  # pushed once: processed once, by the one listener
        await eng.orders.store.idle("pb-once")
        assert [r.trigger for r in eng.journal.stream("order", "pb-once")].count("partial_fill") == 1
    finally:
        await eng.stop()


async def test_a_fill_pushed_while_stopping_is_journaled_or_refused_cleanly(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        await submit_all(eng, [limit("pb-s1"), limit("pb-s2")])
        fake.fill("pb-s1", Decimal("0.001"), VenueStatus.FILLED)  # queued before stop: journaled by the drain
        stopping = asyncio.create_task(eng.stop())
        await asyncio.sleep(0)  # stop has begun: updates are refused from here on
        fake.fill("pb-s2", Decimal("0.001"), VenueStatus.FILLED)  # must neither raise nor be half-recorded
        await stopping
    rebuilt = replay(SqlJournal(db_url).scan())  # verifies
    assert "pb-s1" not in rebuilt.open_orders  # FILLED, journaled during the drain
    assert rebuilt.open_orders["pb-s2"].state is OrderState.ACKED  # refused, so still what the journal knew
    async with running(db_url, fake, settings) as again:  # and the next start reconciles it
        assert "pb-s2" not in again.orders.open
        assert again.journal.stream("order", "pb-s2")[-1].trigger == "fill"


async def test_an_order_decided_once_stop_closed_the_store_is_refused_and_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # A call that passed the API's ready check before stop() (its body still arriving) reaches submit
    # after the store closed. Was: it was journaled and placed by a flow nobody cancels or awaits
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        resting = await eng.orders.submit(limit("pb-before"), "trader")
        await eng.orders.close()  # the step of stop() that ends the store's tasks
        with pytest.raises(EngineError) as info:
            await eng.orders.submit(limit("pb-late"), "trader")
        assert info.value.reason == "engine_stopped"
        with pytest.raises(EngineError) as info:
            await eng.orders.cancel("BTCUSDT", resting.order.client_order_id, None, "trader")
        assert info.value.reason == "engine_stopped"
        assert [r.client_order_id for r in fake.placed] == ["pb-before"]
        assert eng.journal.stream("order", "pb-late") == []
        assert eng.orders.store.reserved == {}
        assert_memory_is_the_journal(eng)


async def test_append_after_close_raises_a_typed_error(db_url: str, settings: EngineSettings) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings) as eng:
        pass
    with pytest.raises(EngineError) as info:
        await eng.writer.append([eng.audit_entry("x", "late", {})])
    assert info.value.reason == "engine_stopped"


# -- no lock is held across venue I/O -----------------------------------------------------------


async def test_an_order_on_a_slow_venue_call_delays_no_other_order(
    db_url: str, settings: EngineSettings
) -> None:
    fake = SlowFake(delay_s=0.0, per_id={"pb-slow": 2.0})
    async with running(db_url, fake, settings, live=True) as eng:
        resting = await eng.orders.submit(limit("pb-resting"), "trader")
        slow = asyncio.create_task(eng.orders.submit(limit("pb-slow"), "trader"))
        await asyncio.sleep(0.05)
        assert fake.in_flight == 1  # the slow send is out
        fast = await eng.orders.submit(limit("pb-fast"), "trader")
        cancelled = await eng.orders.cancel("BTCUSDT", "pb-resting", None, "trader")
        assert not slow.done()  # both finished while the slow call was still out
        assert fast.order.state is OrderState.ACKED
        assert cancelled.order.state is OrderState.CANCELLED
        assert resting.order is cancelled.order
        assert (await slow).order.state is OrderState.ACKED


# -- SAFE_MODE and the two-man rule are the engine's own invariants ----------------------------


@pytest.mark.parametrize("trigger", ["arm", "go_live"])
async def test_guarded_triggers_cannot_be_fired_without_their_guard(engine: Engine, trigger: str) -> None:
    if trigger == "go_live":  # legally armed first, through the two-man rule
        token = approval_token("testnet", engine.clock.now().timestamp())
        await engine.sessions.guarded("arm", "ops", token, Check("risk", True))
    before = engine.sessions.current.state
    with pytest.raises(ApprovalRejected):
        await engine.sessions.transition(trigger, "ops")
    with pytest.raises(ApprovalRejected):
        engine.sessions.current.decide(trigger, {}, "ops")
    assert engine.sessions.current.state is before


async def test_live_orders_are_refused_while_safe_mode_is_on(db_url: str, settings: EngineSettings) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        object.__setattr__(eng.settings, "safe_mode", True)  # as if the config had been flipped under it
        with pytest.raises(OrderRejected) as info:
            await eng.orders.submit(limit("pb-safe"), "trader")
        assert info.value.reason == "safe_mode_config"
        assert fake.placed == []


async def test_orders_outside_the_configured_symbols_are_refused(engine: Engine, fake: FakeExchange) -> None:
    req = OrderRequest("ETHUSDT", Side.BUY, OrderType.MARKET, "pb-eth-1", Decimal("0.01"))
    with pytest.raises(OrderRejected) as info:
        await engine.orders.submit(req, "trader")
    assert info.value.reason == "symbol_not_configured"
    assert [r.trigger for r in engine.journal.stream("order", "pb-eth-1")] == [
        "create",
        "preflight",
        "reject",
    ]


async def test_a_tail_deleted_under_a_running_engine_is_found_by_its_self_check(
    db_url: str, settings: EngineSettings
) -> None:
    from tests.journal import attacker

    async with running(db_url, FakeExchange(), settings) as eng:
        await eng.orders.submit(limit("pb-t1"), "trader")
        assert await eng.journal_self_check() is None
        attacker.execute(db_url, f"DELETE FROM journal WHERE seq > {eng.journal.last_seq() - 2}")
        problem = await eng.journal_self_check()
        assert problem is not None
        assert "ends at seq" in problem
