"""What docs/api.md promises about refused orders: an order the engine refuses while LIVE on a stale
preflight verdict (no HOLD measured yet) still gets its own rows, create → preflight → reject, and the
call's audit row goes into the same commit; nothing reaches the venue."""

from __future__ import annotations

import pytest

from engine.audit import AuditSlot
from engine.errors import PreflightFailed
from engine.fsm.session_table import SessionState
from engine.runtime import Engine
from tests.engine.conftest import go_live
from tests.engine.test_order_service import limit, triggers
from tests.fakes import FakeExchange, FrozenClock


async def test_a_stale_verdict_refuses_a_live_order_with_its_rows(engine: Engine, fake: FakeExchange) -> None:
    await go_live(engine)
    assert isinstance(engine.clock, FrozenClock)
    # No measurement since: the verdict is older than its allowed age (decided without an await)
    engine.clock.advance(engine.settings.preflight.max_age_s + 1)
    audit = AuditSlot("trader", "api.live.order", {"clientOrderId": "pb-stale-1"})
    with pytest.raises(PreflightFailed) as refused:
        await engine.orders.submit(limit("pb-stale-1"), "trader", audit=audit)
    assert {f["check"] for f in refused.value.detail} >= {"clock_skew"}
    assert triggers(engine, "pb-stale-1") == ["create", "preflight", "reject"]
    assert audit.claimed
    assert fake.placed == []
    # Stale is not failed: no HOLD; the monitor's next measurement decides (docs/api.md)
    assert engine.sessions.current.state is SessionState.LIVE
