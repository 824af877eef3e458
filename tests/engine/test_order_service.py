"""OrderService flows on a scriptable fake venue: every outcome journalled, replay agrees with memory."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from engine.audit import AuditSlot
from engine.config import EngineSettings, RiskLimits
from engine.errors import (
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionStatusUnknown,
    IdempotencyConflict,
    InvalidTransition,
    OrderRejected,
    PreflightFailed,
    SessionHalted,
    UnknownOrder,
)
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.order import decide_create
from engine.replay import replay
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueStatus
from tests.engine.conftest import go_live, running
from tests.fakes import FakeExchange, FrozenClock
from tests.waiting import eventually_async as eventually


def limit(cid: str = "pb-c1", qty: str = "0.001", price: str = "65000.00") -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", Side.BUY, OrderType.LIMIT, cid, Decimal(qty), Decimal(price), TimeInForce.GTC
    )


def triggers(engine: Engine, cid: str) -> list[str]:
    return [r.trigger for r in engine.journal.stream("order", cid)]


async def test_safe_mode_sends_test_orders_only(engine: Engine, fake: FakeExchange) -> None:
    placed = await engine.orders.submit(limit(), "trader")
    assert placed.order.state is OrderState.TESTED
    assert placed.order.mode == "test"
    assert fake.placed == []
    assert len(fake.tested) == 1
    assert triggers(engine, "pb-c1") == ["create", "preflight", "send_test", "test_ok"]


async def test_live_order_acked_filled_and_replayed(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    placed = await engine.orders.submit(limit(), "trader")
    assert placed.order.state is OrderState.ACKED
    fake.fill("pb-c1", Decimal("0.0004"))
    await eventually(lambda: placed.order.state is OrderState.PARTIALLY_FILLED)
    fake.fill("pb-c1", Decimal("0.0006"), VenueStatus.FILLED)
    await eventually(lambda: placed.order.state is OrderState.FILLED)
    assert placed.order.filled_qty == Decimal("0.001")
    assert triggers(engine, "pb-c1") == ["create", "preflight", "send", "ack", "partial_fill", "fill"]
    assert "pb-c1" not in engine.orders.open
    rebuilt = replay(engine.journal.scan(), keep_terminal=True).terminal_orders["pb-c1"]
    assert rebuilt.state is OrderState.FILLED
    assert rebuilt.filled_qty == placed.order.filled_qty
    assert rebuilt.trade_ids == placed.order.trade_ids


async def test_duplicate_fill_updates_are_applied_once(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    placed = await engine.orders.submit(limit(), "trader")
    vo = fake.fill("pb-c1", Decimal("0.0004"))
    await eventually(lambda: placed.order.state is OrderState.PARTIALLY_FILLED)
    for listener in fake.listeners:  # the same update delivered again
        listener(vo)
    await engine.orders.cancel("BTCUSDT", "pb-c1", None, "trader")
    assert triggers(engine, "pb-c1").count("partial_fill") == 1


async def test_idempotent_resend_places_nothing_and_a_different_body_conflicts(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    first = await engine.orders.submit(limit(), "trader")
    again = await engine.orders.submit(limit(), "trader")
    assert again.existing
    assert again.order is first.order
    assert len(fake.placed) == 1
    with pytest.raises(IdempotencyConflict):
        await engine.orders.submit(limit(price="64000.00"), "trader")
    # Was 409: the same numbers written otherwise are the same order, as the venue reads them
    same = await engine.orders.submit(limit(price="65000", qty="0.0010"), "trader")
    assert same.existing
    assert same.order is first.order
    fake.fill("pb-c1", Decimal("0.001"), VenueStatus.FILLED)
    await eventually(lambda: first.order.state is OrderState.FILLED)
    # A finished order is no longer in memory: the journal still answers for its id
    assert (await engine.orders.submit(limit(), "trader")).existing
    assert len(fake.placed) == 1


async def test_local_filter_failure_is_rejected_before_the_venue(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    with pytest.raises(OrderRejected) as info:
        await engine.orders.submit(limit(qty="0.000001"), "trader")
    assert info.value.reason == "filter_failure"
    assert fake.placed == []
    assert triggers(engine, "pb-c1") == ["create", "preflight", "reject"]


async def test_risk_collar_refuses_far_prices(engine: Engine) -> None:
    with pytest.raises(OrderRejected) as info:
        await engine.orders.submit(limit(price="90000.00"), "trader")
    assert info.value.reason == "risk_price_collar"


async def test_hold_refuses_new_orders_but_allows_cancels(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    resting = await engine.orders.submit(limit("pb-r1"), "trader")
    await engine.sessions.hold("operator pressed stop", "ops")
    with pytest.raises(SessionHalted):
        await engine.orders.submit(limit("pb-r2"), "trader")
    assert triggers(engine, "pb-r2") == ["create", "preflight", "reject"]
    await engine.orders.cancel("BTCUSDT", "pb-r1", None, "trader")
    assert resting.order.state is OrderState.CANCELLED


async def test_exchange_rejection_is_final(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    fake.fail_next = ExchangeRejected("Account has insufficient balance for requested action.",
                                      reason="INSUFFICIENT_BALANCE", code=-2010)  # fmt: skip
    with pytest.raises(ExchangeRejected):
        await engine.orders.submit(limit(), "trader")
    assert triggers(engine, "pb-c1")[-2:] == ["send", "reject"]


async def test_ip_ban_rejects_and_holds_the_session(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    fake.fail_next = ExchangeUnavailable("banned", reason="IP_BANNED", http_status=418)
    with pytest.raises(ExchangeUnavailable):
        await engine.orders.submit(limit(), "trader")
    assert engine.sessions.current.state is SessionState.HOLD
    assert "IP_BANNED" in engine.sessions.current.hold_reason


async def test_lost_response_goes_unknown_then_reconciles_by_query(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    fake.execute_then_fail = ExecutionStatusUnknown(
        "-1007 timeout", reason="EXECUTION_STATUS_UNKNOWN", code=-1007
    )
    fake.hidden.add("pb-c1")  # not visible at first: "not found" is not proof of absence
    with pytest.raises(ExecutionStatusUnknown):
        await engine.orders.submit(limit(), "trader")
    order = engine.orders.open["pb-c1"]
    assert order.state is OrderState.UNKNOWN
    fake.hidden.clear()
    await eventually(lambda: order.state is OrderState.ACKED)
    assert len(fake.placed) == 1  # never resent
    assert triggers(engine, "pb-c1")[-2:] == ["mark_unknown", "reconcile_acked"]
    actors = [r.actor for r in engine.journal.stream("order", "pb-c1")]
    assert actors[-1] == "reconciler"


async def test_unknown_order_absent_after_grace_is_rejected(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    fake.fail_next = ExecutionStatusUnknown("503", reason="EXECUTION_STATUS_UNKNOWN", http_status=503)
    with pytest.raises(ExecutionStatusUnknown):
        await engine.orders.submit(limit(), "trader")
    await eventually(lambda: "pb-c1" not in engine.orders.open, timeout=3)
    assert triggers(engine, "pb-c1")[-1] == "reconcile_rejected"
    assert fake.placed == []


async def test_cancel_of_unknown_and_finished_orders(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    with pytest.raises(UnknownOrder):
        await engine.orders.cancel("BTCUSDT", "nope", None, "trader")
    placed = await engine.orders.submit(limit(), "trader")
    fake.fill("pb-c1", Decimal("0.001"), VenueStatus.FILLED)
    await eventually(lambda: placed.order.state is OrderState.FILLED)
    with pytest.raises(InvalidTransition):
        await engine.orders.cancel("BTCUSDT", "pb-c1", None, "trader")


async def test_a_cancel_by_order_id_of_a_finished_order_is_refused_like_one_by_client_id(
    engine: Engine, fake: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was UnknownOrder (404): the orderId was looked up among open orders only, while the same order
    # named by its client id was InvalidTransition (409). The history read model knows finished orders
    await go_live(engine)
    placed = await engine.orders.submit(limit(), "trader")
    order_id = placed.order.order_id
    assert order_id is not None
    fake.fill("pb-c1", Decimal("0.001"), VenueStatus.FILLED)
    await eventually(lambda: placed.order.state is OrderState.FILLED)
    assert "pb-c1" not in engine.orders.open
    rows = triggers(engine, "pb-c1")

    def no_journal_read(*_args: object) -> None:
        raise AssertionError("the cancel path read the journal")

    # Found in memory: neither form reads the journal for an order the history still holds
    monkeypatch.setattr(engine.journal, "stream", no_journal_read)
    with pytest.raises(InvalidTransition) as by_cid:
        await engine.orders.cancel("BTCUSDT", "pb-c1", None, "trader")
    with pytest.raises(InvalidTransition) as by_id:
        await engine.orders.cancel("BTCUSDT", None, order_id, "trader")
    assert by_id.value.reason == by_cid.value.reason == "invalid_transition"
    assert by_id.value.detail == by_cid.value.detail == {"state": "FILLED", "trigger": "request_cancel"}
    assert engine.orders.known("pb-c1") is not None
    assert engine.orders.client_order_id_of("BTCUSDT", order_id) == "pb-c1"
    # An id the engine does not know, or the right id on another symbol, is still unknown
    with pytest.raises(UnknownOrder):
        await engine.orders.cancel("BTCUSDT", None, order_id + 1000, "trader")
    with pytest.raises(UnknownOrder):
        await engine.orders.cancel("ETHUSDT", None, order_id, "trader")
    monkeypatch.undo()
    assert triggers(engine, "pb-c1") == rows  # nothing journaled by the refused cancels


async def test_a_finished_order_is_found_by_order_id_after_a_restart(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    # The history is rebuilt by the start-up replay: the orderId of an order finished before it still
    # names that order, without a journal read
    async with running(db_url, fake, settings, live=True) as eng:
        placed = await eng.orders.submit(limit(), "trader")
        await eng.orders.cancel("BTCUSDT", "pb-c1", None, "trader")
    order_id = placed.order.order_id
    assert order_id is not None
    async with running(db_url, fake, settings) as eng:
        assert eng.orders.client_order_id_of("BTCUSDT", order_id) == "pb-c1"
        with pytest.raises(InvalidTransition) as refused:
            await eng.orders.cancel("BTCUSDT", None, order_id, "trader")
        assert refused.value.detail == {"state": "CANCELLED", "trigger": "request_cancel"}


async def test_cancel_refused_because_it_filled_meanwhile(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    placed = await engine.orders.submit(limit(), "trader")
    # The venue filled it, but the update has not reached us: the cancel fails with -2011
    fake.orders["pb-c1"] = replace(
        fake.orders["pb-c1"], status=VenueStatus.FILLED, executed_qty=Decimal("0.001")
    )
    with pytest.raises(ExchangeRejected):
        await engine.orders.cancel("BTCUSDT", "pb-c1", None, "trader")
    assert placed.order.state is OrderState.FILLED
    assert triggers(engine, "pb-c1")[-2:] == ["request_cancel", "fill"]


async def test_restart_from_live_comes_back_on_hold_and_reconciles(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as first:
        await first.orders.submit(limit("pb-a"), "trader")
        await first.orders.submit(limit("pb-b"), "trader")
        fake.listeners.clear()
    fake.fill("pb-a", Decimal("0.001"), VenueStatus.FILLED)  # filled while we are down: never delivered

    async with running(db_url, fake, settings) as second:
        assert second.report.open_orders == 2
        assert second.sessions.current.state is SessionState.HOLD
        assert second.sessions.current.hold_reason == "restart"
        assert "pb-a" not in second.orders.open  # reconciliation found the fill
        assert second.orders.open["pb-b"].state is OrderState.ACKED


async def test_orders_unknown_to_the_journal_are_adopted_at_start(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    await fake.place(limit("pb-foreign"))  # placed by hand on the venue: the journal never saw it
    fake.fill("pb-foreign", Decimal("0.0004"))
    async with running(db_url, fake, settings) as eng:
        assert eng.report.problems == []
        assert eng.sessions.current.state is SessionState.TESTNET
        adopted = eng.orders.open["pb-foreign"]
        assert (adopted.state, adopted.filled_qty, adopted.mode) == (
            OrderState.PARTIALLY_FILLED,
            Decimal("0.0004"),
            "live",
        )
        rows = eng.journal.stream("order", "pb-foreign")
        assert [(r.trigger, r.actor) for r in rows] == [
            ("create", "reconciler"),
            ("adopt_partial", "reconciler"),
        ]
        await eng.orders.cancel("BTCUSDT", "pb-foreign", None, "trader")  # tracked now: it can be cancelled
        assert adopted.state is OrderState.CANCELLED
        rebuilt = replay(eng.journal.scan(), keep_terminal=True).terminal_orders["pb-foreign"]
        assert rebuilt.state is OrderState.CANCELLED


async def test_an_order_that_cannot_be_adopted_holds_the_session(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    await fake.place(limit("pb-odd"))
    fake.orders["pb-odd"] = replace(fake.orders["pb-odd"], side=None)  # the venue's answer lacks what we need
    async with running(db_url, fake, settings) as eng:
        assert eng.sessions.current.state is SessionState.HOLD
        assert "pb-odd" in eng.report.problems[0]


async def test_crash_after_write_ahead_is_finished_by_reconciliation(
    db_url: str, settings: EngineSettings
) -> None:
    """The SENT row is durable but the process died before the venue answered (or before it sent)."""
    fake = FakeExchange()
    order_req = limit("pb-w1")
    async with running(db_url, fake, settings, live=True) as eng:
        entries = [decide_create(order_req, "live", "trader")]
        steps = [("preflight", {}, ""), ("send", {}, "")]
        entries += eng.orders.store.chain(OrderState.NEW, 1, "pb-w1", steps, "trader")
        await eng.writer.append(entries)
        await fake.place(order_req)  # the request did reach the venue

    async with running(db_url, fake, settings) as again:
        await eventually(
            lambda: (o := again.orders.open.get("pb-w1")) is not None and o.state is OrderState.ACKED
        )
        assert triggers(again, "pb-w1")[-2:] == ["mark_unknown", "reconcile_acked"]


async def test_a_drift_measured_while_live_holds_once_and_orders_are_refused(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    fake.skew_ms = 5_000.0  # the clock drifted after arming
    await engine.preflight.refresh()  # the background monitor measures it: the detector holds
    await engine.preflight.refresh()  # the same episode: no second HOLD row
    assert engine.sessions.current.state is SessionState.HOLD
    holds = [r for r in engine.journal.stream("session", "testnet") if r.trigger == "hold"]
    assert [r.reason for r in holds] == ["preflight_failed: clock_skew"]
    audit = AuditSlot("trader", "api.live.order", {"clientOrderId": "pb-c1"})
    with pytest.raises(SessionHalted):
        await engine.orders.submit(limit(), "trader", audit=audit)
    assert fake.placed == []
    assert triggers(engine, "pb-c1") == ["create", "preflight", "reject"]
    assert audit.claimed  # the refused call's audit row went in with its order rows


async def test_a_stale_verdict_refuses_a_live_order_without_any_venue_call(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    clock = engine.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(engine.settings.preflight.max_age_s + 1)  # the monitor has not measured since
    calls_before = len(fake.placed)
    with pytest.raises(PreflightFailed) as info:
        await engine.orders.submit(limit(), "trader")
    failed = {f["check"]: f["detail"] for f in info.value.detail}
    assert set(failed) == {"clock_skew", "ping"}
    assert all("stale_s" in d for d in failed.values())
    assert len(fake.placed) == calls_before
    assert triggers(engine, "pb-c1") == ["create", "preflight", "reject"]


async def test_a_verdict_measured_in_the_future_is_stale_when_the_clock_steps_back(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    clock = engine.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(-3600)  # NTP stepped the wall clock back an hour after the monitor measured
    with pytest.raises(PreflightFailed) as info:
        await engine.orders.submit(limit(), "trader")
    failed = {f["check"]: f["detail"] for f in info.value.detail}
    assert {"clock_skew", "ping"} <= set(failed)
    assert all(d["stale_s"] < 0 for d in failed.values() if "stale_s" in d)
    await engine.preflight.refresh()  # measured again on the new clock: fresh
    placed = await engine.orders.submit(limit(cid="pb-c2"), "trader")
    assert placed.order.state.value in ("ACKED", "SENT")


async def test_cancel_with_unknown_outcome_that_did_not_land_returns_to_acked(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    placed = await engine.orders.submit(limit(), "trader")

    async def lost_cancel(symbol: str, client_order_id: str) -> None:
        raise ExecutionStatusUnknown("-1007", reason="EXECUTION_STATUS_UNKNOWN", code=-1007)

    fake.cancel = lost_cancel  # type: ignore[method-assign,assignment]
    with pytest.raises(ExecutionStatusUnknown):
        await engine.orders.cancel("BTCUSDT", "pb-c1", None, "trader")
    assert placed.order.state is OrderState.CANCEL_PENDING
    await eventually(lambda: placed.order.state is OrderState.ACKED, timeout=3)
    assert triggers(engine, "pb-c1")[-2:] == ["request_cancel", "cancel_failed"]


async def test_an_order_appearing_after_it_was_given_up_holds_the_session(
    engine: Engine, fake: FakeExchange
) -> None:
    await go_live(engine)
    fake.execute_then_fail = ExecutionStatusUnknown("-1007", reason="EXECUTION_STATUS_UNKNOWN", code=-1007)
    fake.hidden.add("pb-c1")  # invisible for longer than the grace period
    with pytest.raises(ExecutionStatusUnknown):
        await engine.orders.submit(limit(), "trader")
    await eventually(lambda: "pb-c1" not in engine.orders.open, timeout=3)
    assert triggers(engine, "pb-c1")[-1] == "reconcile_rejected"
    fake.hidden.clear()
    fake.fill("pb-c1", Decimal("0.001"), VenueStatus.FILLED)  # and now the venue reports it, filled
    await eventually(lambda: engine.sessions.current.state is SessionState.HOLD)
    assert "journalled REJECTED" in engine.sessions.current.hold_reason


async def test_max_position_counts_holdings_and_open_buys(db_url: str) -> None:
    fake = FakeExchange()
    fake.balances = {"BTC": Decimal("0.001")}  # already held
    cfg = EngineSettings(
        profile="testnet", symbols=("BTCUSDT",), risk=RiskLimits(max_position={"BTC": Decimal("0.0025")})
    )
    async with running(db_url, fake, cfg, live=True) as eng:
        assert (
            await eng.orders.submit(limit("pb-p1"), "trader")
        ).order.state is OrderState.ACKED  # 0.001 + 0.001
        with pytest.raises(OrderRejected) as info:
            await eng.orders.submit(limit("pb-p2"), "trader")  # 0.001 held + 0.001 open + 0.001 > 0.0025
        assert info.value.reason == "risk_max_position"
        sell = OrderRequest(
            "BTCUSDT",
            Side.SELL,
            OrderType.LIMIT,
            "pb-p3",
            Decimal("0.001"),
            Decimal("65000.00"),
            TimeInForce.GTC,
        )
        assert (
            await eng.orders.submit(sell, "trader")
        ).order.state is OrderState.ACKED  # selling only reduces


async def test_a_journalled_rejected_order_working_on_the_venue_at_start_holds(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        fake.fail_next = ExecutionStatusUnknown("503", reason="EXECUTION_STATUS_UNKNOWN", http_status=503)
        with pytest.raises(ExecutionStatusUnknown):
            await eng.orders.submit(limit("pb-late"), "trader")
        await eventually(lambda: "pb-late" not in eng.orders.open, timeout=3)  # given up: REJECTED
    await fake.place(limit("pb-late"))  # yet it is working on the venue (a lagging, delayed execution)
    async with running(db_url, fake, settings) as again:
        assert again.sessions.current.state is SessionState.HOLD
        assert any("journalled REJECTED but working on the venue" in p for p in again.report.problems)
