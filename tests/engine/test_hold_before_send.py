"""A LIVE order must not leave after the session went on HOLD: neither one decided just before the HOLD and
committed in the same group, nor one that waited in the adapter (slots, the rate governor) while the HOLD
was answered. The adapter asks the order's send gate right before the request leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from engine.config import EngineSettings
from engine.errors import OrderRejected, SessionHalted
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.ports import SendGate
from engine.runtime import Engine
from engine.types import OrderRequest, VenueOrder
from tests.engine.conftest import go_live, running
from tests.engine.test_kill_switch import limit
from tests.fakes import FakeExchange
from tests.waiting import eventually_async


async def test_order_racing_a_hold_is_refused_before_the_venue(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        order, held = await asyncio.gather(
            eng.orders.submit(limit("pb-race-1"), "trader"), eng.sessions.hold("stop", "ops"),
            return_exceptions=True,
        )  # fmt: skip
        assert held.state is SessionState.HOLD  # type: ignore[union-attr]
        # Was: the order went out with the session already on HOLD; its send gate now refuses it
        assert fake.placed == []
        assert isinstance(order, SessionHalted)
        assert eng.orders.find("pb-race-1").state is OrderState.REJECTED  # type: ignore[union-attr]
        assert not eng.orders.open


class QueuedFake(FakeExchange):
    """Orders wait in the adapter before they may be sent (an in-flight slot, the rate governor: up to a
    minute behind a Retry-After), as BinanceSpotClient queues them; the gate is asked once they may."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_open = asyncio.Event()
        self.queued = 0

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        self.queued += 1
        await self.queue_open.wait()
        return await super().place(req, may_send=may_send)


async def test_an_order_queued_in_the_adapter_when_the_session_goes_on_hold_is_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: the check before the venue call was the last one; an order waiting in the client for a slot
    # or for the governor went out after a HOLD (or the kill switch) answered meanwhile, and a MARKET
    # order that fills cannot be cancelled afterwards
    fake = QueuedFake()
    async with running(db_url, fake, settings, live=True) as eng:
        submit = asyncio.ensure_future(eng.orders.submit(limit("pb-queued-1"), "trader"))
        await eventually_async(lambda: fake.queued == 1)
        await eng.sessions.hold("stop", "ops")
        fake.queue_open.set()
        with pytest.raises(SessionHalted):
            await submit
        assert fake.placed == []
        rows = eng.journal.stream("order", "pb-queued-1")
        assert [(r.trigger, r.reason) for r in rows][-2:] == [("send", ""), ("reject", "session_hold")]
        assert not eng.orders.open
        assert "pb-queued-1" not in eng.orders.store.reserved


async def _refused_at_the_gate(
    db_url: str, settings: EngineSettings, cid: str, change: Callable[[Engine], Awaitable[None]], reason: str
) -> None:
    """A LIVE order waits in the adapter while `change` happens: its send gate refuses it with `reason`,
    nothing reaches the venue, and the journal says it was rejected for that reason after its send row."""
    fake = QueuedFake()
    async with running(db_url, fake, settings, live=True) as eng:
        submit = asyncio.ensure_future(eng.orders.submit(limit(cid), "trader"))
        await eventually_async(lambda: fake.queued == 1)
        await change(eng)
        fake.queue_open.set()
        with pytest.raises(OrderRejected) as info:
            await submit
        assert info.value.reason == reason
        assert fake.placed == []
        rows = [(r.trigger, r.reason) for r in eng.journal.stream("order", cid)]
        assert rows[-2:] == [("send", ""), ("reject", reason)]
        assert not eng.orders.open
        assert cid not in eng.orders.store.reserved


async def test_an_order_queued_in_the_adapter_when_the_session_is_disarmed_is_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: the gate answered only a HOLD, so a LIVE order queued for a slot went out after the operator
    # had disarmed (LIVE → TESTNET): a real order from a session that no longer allowed one
    async def disarm(eng: Engine) -> None:
        await eng.sessions.transition("disarm", "ops")

    await _refused_at_the_gate(db_url, settings, "pb-disarmed-1", disarm, "session_changed")


async def test_an_order_queued_in_the_adapter_past_the_approvals_expiry_is_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: the approval's expiry was checked when the order was decided only; one queued behind the rate
    # governor went out after the two-man rule's approval had ended
    async def expire(eng: Engine) -> None:
        approval = eng.sessions.current.approval
        assert approval is not None
        eng.clock.advance(approval["expires_at"] - eng.clock.now().timestamp())  # type: ignore[attr-defined]

    await _refused_at_the_gate(db_url, settings, "pb-lapsed-1", expire, "approval_expired")


async def test_an_order_queued_while_the_session_is_disarmed_and_armed_again_is_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: the gate compared the session's mode only, so a LIVE order decided under the first approval and
    # queued through disarm → arm (a second approval) → go_live went out in the new LIVE episode, which
    # never decided it: the operator's disarm had not kept it in the process
    async def rearm(eng: Engine) -> None:
        await eng.sessions.transition("disarm", "ops")
        await go_live(eng)
        assert eng.sessions.current.state is SessionState.LIVE

    await _refused_at_the_gate(db_url, settings, "pb-rearmed-1", rearm, "session_changed")


async def test_an_order_queued_through_the_kill_switch_and_a_new_live_session_is_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: HOLD with cancel_all → resume → arm → go_live while the order waited for a slot; the gate saw
    # LIVE again and sent an order decided before the operator pressed the kill switch
    async def kill_and_rearm(eng: Engine) -> None:
        await eng.sessions.hold("kill", "ops", cancel_all=True)
        await eng.sessions.transition("resume", "ops")
        await go_live(eng)
        assert eng.sessions.current.state is SessionState.LIVE

    await _refused_at_the_gate(db_url, settings, "pb-killed-1", kill_and_rearm, "session_changed")
