"""The kill switch (engine.kill_switch): HOLD, then every own open order cancelled, including orders that
were in flight (SENT, UNKNOWN, CANCEL_PENDING) when it was pressed and that the venue acknowledges only
afterwards. Each test presses it while venue calls are out (asyncio.gather), or restarts the engine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from engine import kill_switch as kill_switch_mod
from engine.config import EngineSettings
from engine.errors import ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown, SessionHalted
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.persistence.sql_journal import SqlJournal
from engine.ports import SendGate
from engine.replay import replay
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.engine.conftest import go_live, running
from tests.engine.test_concurrency import assert_memory_is_the_journal
from tests.fakes import FakeExchange, FrozenClock
from tests.waiting import eventually_async as eventually

S = OrderState


def limit(cid: str) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", Side.BUY, OrderType.LIMIT, cid, Decimal("0.001"), Decimal("65000.00"), TimeInForce.GTC
    )


class GatedFake(FakeExchange):
    """place() and cancel() of the listed ids wait for their gate to open, so they are out at the venue
    while the switch is pressed. `lost` ids execute and then time out (the order becomes UNKNOWN);
    `refuse_cancel` ids have their first cancel refused (CANCEL_PENDING falls back to ACKED)."""

    def __init__(self) -> None:
        super().__init__()
        self.place_gates: dict[str, asyncio.Event] = {}
        self.cancel_gates: dict[str, asyncio.Event] = {}
        self.lost: set[str] = set()
        self.refuse_cancel: set[str] = set()
        self.cancels: list[str] = []

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        self.sending(may_send)  # the request is out: the gate below is the venue taking its time
        gate = self.place_gates.get(req.client_order_id)
        if gate is not None:
            await gate.wait()
        vo = await super().place(req)
        if req.client_order_id in self.lost:
            raise ExecutionStatusUnknown("injected timeout after execution", reason="TIMEOUT")
        return vo

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        self.cancels.append(client_order_id)
        gate = self.cancel_gates.get(client_order_id)
        if gate is not None:
            await gate.wait()
        if client_order_id in self.refuse_cancel:
            self.refuse_cancel.discard(client_order_id)
            raise ExchangeRejected("Cancel rejected (injected).", reason="CANCEL_REJECTED", code=-2011,
                                   http_status=400)  # fmt: skip
        return await super().cancel(symbol, client_order_id)


def resting_on_venue(fake: FakeExchange) -> list[str]:
    live = (VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED)
    return sorted(c for c, vo in fake.orders.items() if vo.status in live)


def cancellable(eng: Engine) -> list[str]:
    return sorted(c for c, o in eng.orders.open.items() if o.state in (S.ACKED, S.PARTIALLY_FILLED))


async def release(gates: list[asyncio.Event], spacing: int | None, eng: Engine) -> None:
    """Open each gate after `spacing` loop turns: the answers interleave with the HOLD and the sweep;
    None: only once the HOLD is applied (every ACK then comes after the press, deterministically)."""
    if spacing is None:
        await eventually(lambda: eng.sessions.current.state is SessionState.HOLD)
        spacing = 1
    for gate in gates:
        for _ in range(spacing):
            await asyncio.sleep(0)
        gate.set()


# Answers before, during and after the HOLD commits; None: all after it
@pytest.mark.parametrize("spacing", [0, 1, 5, 40, None])
async def test_orders_in_flight_when_pressed_are_cancelled_once_acked(
    db_url: str, settings: EngineSettings, spacing: int | None
) -> None:
    fake = GatedFake()
    async with running(db_url, fake, settings, live=True) as eng:
        # Resting and cancellable when the switch is pressed
        for cid in ("pb-rest-1", "pb-rest-2", "pb-rest-3"):
            await eng.orders.submit(limit(cid), "trader")
        # A trader's cancel out at the venue, which the venue will refuse: back to ACKED after the press
        await eng.orders.submit(limit("pb-refused-cancel"), "trader")
        fake.refuse_cancel.add("pb-refused-cancel")
        fake.cancel_gates["pb-refused-cancel"] = asyncio.Event()
        trader_cancel = asyncio.ensure_future(
            eng.orders.cancel("BTCUSDT", "pb-refused-cancel", None, "trader")
        )
        # SENT: the venue has not answered yet; one of them will execute and answer with a timeout
        in_flight = [f"pb-flight-{i}" for i in range(5)]
        for cid in in_flight:
            fake.place_gates[cid] = asyncio.Event()
        fake.lost.add("pb-flight-4")
        submits = [asyncio.ensure_future(eng.orders.submit(limit(cid), "trader")) for cid in in_flight]
        await eventually(lambda: all(eng.orders.open.get(c) is not None and eng.orders.open[c].state is S.SENT
                                     for c in in_flight))  # fmt: skip
        await eventually(lambda: eng.orders.open["pb-refused-cancel"].state is S.CANCEL_PENDING)

        gates = [fake.place_gates[c] for c in in_flight] + [fake.cancel_gates["pb-refused-cancel"]]
        pressed, _, late = await asyncio.gather(
            eng.orders.cancel_all("panic", "admin"),
            release(gates, spacing, eng),
            eng.orders.submit(limit("pb-after-press"), "trader"),
            return_exceptions=True,
        )
        assert not isinstance(pressed, BaseException), pressed
        session, report = pressed
        assert session.state is SessionState.HOLD
        assert session.cancel_all_by == "admin"
        # A new order decided after the press is refused: the set of orders to cancel cannot grow
        assert isinstance(late, SessionHalted) or (
            not isinstance(late, BaseException) and late.order.state is S.REJECTED
        )
        await asyncio.gather(*submits, trader_cancel, return_exceptions=True)

        # Every order that reached the venue ends cancelled there, whenever its ACK arrived
        await eventually(lambda: not resting_on_venue(fake) and not cancellable(eng), timeout=10)
        await eventually(lambda: not eng.orders.open, timeout=10)
        for cid in ("pb-rest-1", "pb-rest-2", "pb-rest-3", "pb-refused-cancel", *in_flight):
            rows = [(r.trigger, r.actor) for r in eng.journal.stream("order", cid)]
            assert rows[-1][0] in ("cancelled", "reconcile_cancelled"), (cid, rows)
        # The switch's cancels are the admin's, journaled as ordinary cancels
        assert ("request_cancel", "admin") in [
            (r.trigger, r.actor) for r in eng.journal.stream("order", "pb-flight-0")
        ]
        requested = {o["clientOrderId"] for o in report.requested}
        assert {"pb-rest-1", "pb-rest-2", "pb-rest-3"} <= requested
        reported = requested | {
            o["clientOrderId"] for o in report.in_flight + report.finished + report.failed
        }
        assert set(in_flight) | {"pb-refused-cancel"} <= reported  # each named, none forgotten
        if spacing is None:  # nothing was cancellable but the resting ones when the HOLD applied
            after = [r for r in eng.journal.stream("order", "pb-flight-0") if r.trigger == "ack"]
            hold_seq = max(r.seq for r in eng.journal.stream("session", session.session_id))
            assert after
            assert after[0].seq > hold_seq  # acknowledged after the press, and still cancelled
        hold_row = [r for r in eng.journal.stream("session", session.session_id) if r.trigger == "hold"][-1]
        assert hold_row.payload["cancel_all"] is True
        assert hold_row.payload["requested_by"] == "admin"
        assert_memory_is_the_journal(eng)


async def test_plain_hold_cancels_nothing_and_resume_switches_it_off(
    db_url: str, settings: EngineSettings
) -> None:
    fake = GatedFake()
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.orders.submit(limit("pb-rest"), "trader")
        await eng.sessions.hold("plain", "admin")
        assert eng.sessions.current.cancel_all_by is None
        assert resting_on_venue(fake) == ["pb-rest"]
        # Kill switch, then a second plain HOLD: still engaged (sticky until resume)
        await eng.orders.cancel_all("panic", "admin")
        await eng.sessions.hold("another cause", "system")
        assert eng.sessions.current.cancel_all_by == "admin"
        assert resting_on_venue(fake) == []
        await eng.sessions.transition("resume", "admin")
        assert eng.sessions.current.cancel_all_by is None
        assert eng.sessions.current.snapshot()["cancel_all"] is False


async def test_restart_on_the_kill_switch_hold_cancels_what_reconciliation_finds(
    db_url: str, settings: EngineSettings
) -> None:
    """The HOLD row carries cancel_all, so the guarantee survives a restart: an order that was SENT when
    the engine stopped and that the venue had executed is cancelled once reconciliation finds it."""
    fake = GatedFake()
    fake.place_gates["pb-sent"] = asyncio.Event()
    async with running(db_url, fake, settings, live=True) as eng:
        submit = asyncio.ensure_future(eng.orders.submit(limit("pb-sent"), "trader"))
        await eventually(lambda: "pb-sent" in eng.orders.open and eng.orders.open["pb-sent"].state is S.SENT)
        _, report = await eng.orders.cancel_all("panic", "admin")
        assert [o["clientOrderId"] for o in report.in_flight] == ["pb-sent"]
        sid = eng.sessions.current.session_id
    submit.cancel()
    await asyncio.gather(submit, return_exceptions=True)
    # The request had reached the venue before the engine stopped: it rests there
    fake.place_gates.clear()
    await FakeExchange.place(fake, limit("pb-sent"))
    assert resting_on_venue(fake) == ["pb-sent"]

    rebuilt = replay(SqlJournal(db_url).scan()).sessions[sid]
    assert (rebuilt.state, rebuilt.cancel_all_by) == (SessionState.HOLD, "admin")
    eng2 = Engine(SqlJournal(db_url), fake, replace(settings, safe_mode=False), FrozenClock(),
                  session_id="testnet")  # fmt: skip
    await eng2.start()
    try:
        await eventually(lambda: not resting_on_venue(fake), timeout=10)
        triggers: list[Any] = [(r.trigger, r.actor) for r in eng2.journal.stream("order", "pb-sent")]
        assert ("request_cancel", "admin") in triggers
        assert eng2.sessions.current.cancel_all_by == "admin"
    finally:
        await eng2.stop()


async def test_hold_is_journaled_before_any_cancel(db_url: str, settings: EngineSettings) -> None:
    """From LIVE: the session is on HOLD, durably, before the first cancel is decided."""
    fake = GatedFake()
    async with running(db_url, fake, settings) as eng:
        await go_live(eng)
        await eng.orders.submit(limit("pb-r"), "trader")
        _, report = await eng.orders.cancel_all("panic", "admin")
        rows = list(eng.journal.scan())
        hold_seq = next(r[0] for r in rows if r[4] == "hold")
        cancel_seq = next(r[0] for r in rows if r[4] == "request_cancel")
        assert hold_seq < cancel_seq  # HOLD first, journaled, then the cancels
        assert [o["clientOrderId"] for o in report.requested] == ["pb-r"]
        assert report.requested[0]["state"] == "CANCELLED"


class FlakyCancel(FakeExchange):
    """cancel() answers 503 while `failures` lasts (a bad minute at the venue), then works again."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.cancel_calls = 0

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        self.cancel_calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ExchangeUnavailable("503 injected", reason="EXCHANGE_UNAVAILABLE", http_status=503)
        return await super().cancel(symbol, client_order_id)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kill_switch_mod, "RETRY_S", 0.001)
    monkeypatch.setattr(kill_switch_mod, "RESWEEP_MIN_S", 0.005)
    monkeypatch.setattr(kill_switch_mod, "RESWEEP_MAX_S", 0.02)


@pytest.mark.usefixtures("quick_retries")
async def test_cancels_refused_past_the_attempts_are_retried_until_the_venue_recovers(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FlakyCancel()
    async with running(db_url, fake, settings, live=True) as eng:
        await asyncio.gather(*(eng.orders.submit(limit(f"pb-rest-{i}"), "trader") for i in range(2)))
        fake.failures = 4 * kill_switch_mod.ATTEMPTS  # well past one press's attempts
        _, report = await eng.orders.cancel_all("panic", "admin")
        assert sorted(o["clientOrderId"] for o in report.failed) == ["pb-rest-0", "pb-rest-1"]
        status = eng.orders.kill_switch.status()
        assert (status["status"], status["uncancelled"]) == ("ERROR", ["pb-rest-0", "pb-rest-1"])
        # Nothing else changes state: the switch's own re-sweeps cancel them once the venue answers
        await eventually(lambda: resting_on_venue(fake) == [] and not eng.orders.open)  # CANCELLED, applied
        assert all(fake.orders[c].status is VenueStatus.CANCELED for c in ("pb-rest-0", "pb-rest-1"))
        assert eng.orders.kill_switch.status()["status"] == "OK"
        assert eng.supervisor.status()["kill_switch_retry"]["running"]
        assert_memory_is_the_journal(eng)


@pytest.mark.usefixtures("quick_retries")
async def test_resume_during_the_retries_stops_them(db_url: str, settings: EngineSettings) -> None:
    fake = FlakyCancel(failures=10**9)  # the venue never recovers
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.orders.submit(limit("pb-rest-1"), "trader")
        await eng.orders.cancel_all("panic", "admin")
        await eventually(lambda: fake.cancel_calls > 2 * kill_switch_mod.ATTEMPTS)  # re-sweeps running
        await eng.sessions.transition("resume", "admin")  # while a re-sweep's cancel may be out
        assert eng.orders.kill_switch.status() == {
            "status": "OK",
            "engaged": False,
            "uncancelled": [],
            "unresolved": [],
        }
        await eventually(lambda: not eng.orders.kill_switch._tasks)  # a cancel out at resume finishes
        calls = fake.cancel_calls
        for _ in range(20):  # many times the longest backoff: no cancel is sent any more
            await asyncio.sleep(kill_switch_mod.RESWEEP_MAX_S)
        assert fake.cancel_calls == calls
        assert resting_on_venue(fake) == ["pb-rest-1"]
        assert eng.orders.open["pb-rest-1"].state is S.ACKED
        assert eng.supervisor.status()["kill_switch_retry"]["running"]
        # Pressed again: the same component retries again
        fake.failures = 0
        _, report = await eng.orders.cancel_all("again", "admin")
        assert [o["clientOrderId"] for o in report.requested] == ["pb-rest-1"]
        await eventually(lambda: resting_on_venue(fake) == [])


async def test_an_engaged_switch_with_a_cancel_still_out_is_not_ok(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: only cancellable orders counted, so a cancel out at the venue (CANCEL_PENDING: it may still
    # rest there) read OK, as if the book were flat
    fake = GatedFake()
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.orders.submit(limit("pb-slow-cancel"), "trader")
        fake.cancel_gates["pb-slow-cancel"] = asyncio.Event()
        press = asyncio.ensure_future(eng.orders.cancel_all("panic", "admin"))
        await eventually(lambda: eng.orders.open["pb-slow-cancel"].state is S.CANCEL_PENDING)
        status = eng.orders.kill_switch.status()
        assert (status["status"], status["uncancelled"], status["unresolved"]) == (
            "WARN",
            [],
            ["pb-slow-cancel"],
        )
        fake.cancel_gates["pb-slow-cancel"].set()
        await press
        await eventually(lambda: not eng.orders.open)
        assert eng.orders.kill_switch.status()["status"] == "OK"
