"""A LIVE order decided just before a HOLD, committed in the same group, must not reach the venue: the
HOLD is applied before the order's task resumes, so the engine refuses it before the venue call."""

from __future__ import annotations

import asyncio

from engine.config import EngineSettings
from engine.errors import SessionHalted
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.types import OrderRequest, VenueOrder
from tests.engine.conftest import running
from tests.engine.test_kill_switch import limit
from tests.fakes import FakeExchange


async def test_order_racing_a_hold_is_refused_before_the_venue(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings, live=True) as eng:
        states_at_place: list[SessionState] = []
        place = fake.place

        async def watched(req: OrderRequest) -> VenueOrder:
            states_at_place.append(eng.sessions.current.state)
            return await place(req)

        fake.place = watched  # type: ignore[method-assign]
        order, held = await asyncio.gather(
            eng.orders.submit(limit("pb-race-1"), "trader"), eng.sessions.hold("stop", "ops"),
            return_exceptions=True,
        )  # fmt: skip
        assert held.state is SessionState.HOLD  # type: ignore[union-attr]
        # On main the venue was called with the session already on HOLD
        assert states_at_place == []
        assert isinstance(order, SessionHalted)
        assert eng.orders.find("pb-race-1").state is OrderState.REJECTED  # type: ignore[union-attr]
        assert not eng.orders.open
