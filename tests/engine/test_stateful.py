"""Hypothesis drives many concurrent commands at the engine (bursts of submits, cancels, venue fills,
session triggers, venue faults, time passing) and checks after every step: no risk cap exceeded, memory
equals the replay of the journal, and the journal verifies."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.config import ApprovalSettings, EngineSettings, RiskLimits
from engine.errors import EngineError, ExchangeRejected, ExecutionStatusUnknown
from engine.fsm.order_table import OrderState
from engine.guardrails.preflight import Check
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.ports import SendGate
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.approvals import APPROVER_KEYS, approval_token
from tests.engine.test_concurrency import assert_memory_is_the_journal
from tests.fakes import FakeExchange, FrozenClock

MAX_OPEN = 4
PER_MINUTE = 12
BTC_CAP = Decimal("0.004")


class TimedFake(FakeExchange):
    """Records when each order reached the venue (engine clock), and lets sends overlap briefly."""

    def __init__(self, clock: FrozenClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent_at: deque[float] = deque()

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        self.sending(may_send)
        self.sent_at.append(self.clock.now().timestamp())
        await asyncio.sleep(0.001)
        return await super().place(req)

    async def place_test(self, req: OrderRequest) -> dict[str, Any]:
        self.sent_at.append(self.clock.now().timestamp())
        return await super().place_test(req)


class EngineUnderLoad(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.mkdtemp()
        self.clock = FrozenClock()
        self.fake = TimedFake(self.clock)
        self.ids = 0
        self.eng: Engine | None = None

    @initialize()
    def start(self) -> None:
        url = f"sqlite:///{Path(self.tmp) / 'j.db'}"
        upgrade(url)
        cfg = EngineSettings(
            profile="testnet", safe_mode=False, symbols=("BTCUSDT",), unknown_grace_s=0.05,
            reconcile_interval_s=0.01, approvals=ApprovalSettings(public_keys=APPROVER_KEYS),
            risk=RiskLimits(max_open_orders=MAX_OPEN, max_orders_per_minute=PER_MINUTE, max_position={"BTC": BTC_CAP}),
        )  # fmt: skip
        self.eng = Engine(SqlJournal(url), self.fake, cfg, self.clock, session_id="testnet")
        self.run(self.eng.start())

    @property
    def engine(self) -> Engine:
        assert self.eng is not None
        return self.eng

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _gather(self, *coros: Any, push: Any = None) -> None:
        async def go() -> None:
            if push is not None:  # venues push their updates on the loop, like the fill here
                push()
            await asyncio.gather(*coros, return_exceptions=True)
            await asyncio.sleep(0.003)  # let pushed updates and resolvers take a step

        self.run(go())

    def _req(self, side: Side, qty: str) -> OrderRequest:
        self.ids += 1
        return OrderRequest("BTCUSDT", side, OrderType.LIMIT, f"pb-h{self.ids}", Decimal(qty), Decimal("65000"),
                            TimeInForce.GTC)  # fmt: skip

    @rule(
        n=st.integers(1, 8),
        side=st.sampled_from([Side.BUY, Side.SELL]),
        qty=st.sampled_from(["0.001", "0.002"]),
    )
    def submit_burst(self, n: int, side: Side, qty: str) -> None:
        self._gather(*(self.engine.orders.submit(self._req(side, qty), "trader") for _ in range(n)))

    @rule(data=st.data())
    def mixed_burst(self, data: st.DataObject) -> None:
        """Submits, cancels and a venue fill in the same instant."""
        eng = self.engine
        cancels = [
            c
            for c, o in eng.orders.open.items()
            if o.state in (OrderState.ACKED, OrderState.PARTIALLY_FILLED)
        ]
        picked = data.draw(st.lists(st.sampled_from(cancels), max_size=3, unique=True)) if cancels else []
        coros: list[Any] = [eng.orders.submit(self._req(Side.BUY, "0.001"), "trader") for _ in range(3)]
        coros += [eng.orders.cancel("BTCUSDT", c, None, "trader") for c in picked]
        self._gather(*coros, push=self._fill_one(data))

    @rule(data=st.data())
    def venue_fill(self, data: st.DataObject) -> None:
        self._gather(push=self._fill_one(data))

    def _fill_one(self, data: st.DataObject) -> Any:
        """A venue fill of a working order, drawn now, pushed (on the loop, as venues do) when called."""
        working = [
            c
            for c, vo in self.fake.orders.items()
            if vo.status in (VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED)
        ]
        if not working:
            return None
        cid = data.draw(st.sampled_from(working))
        vo = self.fake.orders[cid]
        rest = vo.orig_qty - vo.executed_qty
        qty = rest if data.draw(st.booleans()) else min(Decimal("0.0005"), rest)
        status = VenueStatus.FILLED if qty == rest else VenueStatus.PARTIALLY_FILLED
        return lambda: self.fake.fill(cid, qty, status)

    @rule(trigger=st.sampled_from(["hold", "resume", "arm", "go_live", "disarm"]))
    def session(self, trigger: str) -> None:
        eng = self.engine

        async def fire() -> None:
            if trigger in ("arm", "go_live"):
                token = approval_token("testnet", self.clock.now().timestamp()) if trigger == "arm" else None
                await eng.sessions.guarded(trigger, "ops", token, Check("risk", True))
            else:
                await eng.sessions.transition(trigger, "ops", reason="test" if trigger == "hold" else "")

        self._gather(fire(), eng.orders.submit(self._req(Side.BUY, "0.001"), "trader"))

    @rule(kind=st.sampled_from(["reject", "unknown", "lost"]))
    def venue_fault(self, kind: str) -> None:
        if kind == "reject":
            self.fake.fail_next = ExchangeRejected("no", reason="ORDER_REJECTED", code=-2010)
        elif kind == "unknown":
            self.fake.fail_next = ExecutionStatusUnknown("503", reason="EXECUTION_STATUS_UNKNOWN")
        else:
            self.fake.execute_then_fail = ExecutionStatusUnknown("-1007", reason="EXECUTION_STATUS_UNKNOWN")

    @rule(seconds=st.sampled_from([1.0, 30.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._gather(self.engine.preflight.refresh(), self.engine.sessions.expire_if_due())

    def _drain(self) -> None:
        eng = self.engine

        async def settle() -> None:
            for _ in range(500):
                if not eng.writer.busy and not eng.orders.store._busy and not eng.sessions.busy:
                    return
                await asyncio.sleep(0.001)
            raise AssertionError("the engine did not settle")

        self.run(settle())

    @invariant()
    def caps_hold(self) -> None:
        if self.eng is None:
            return
        eng = self.engine
        assert eng.orders.open_count() <= MAX_OPEN
        buys = sum(((o.request.quantity or Decimal(0)) - o.filled_qty for o in eng.orders.open.values()
                    if o.request.side is Side.BUY), Decimal(0))  # fmt: skip
        assert buys <= BTC_CAP  # nothing held at the start: open buys alone are the exposure
        times = list(self.fake.sent_at)
        for i, t in enumerate(times):
            assert sum(1 for u in times[: i + 1] if u > t - 60.0) <= PER_MINUTE

    @invariant()
    def memory_is_the_journal(self) -> None:
        if self.eng is None:
            return
        self._drain()
        assert_memory_is_the_journal(self.engine)  # replay also verifies the chain

    def teardown(self) -> None:
        try:
            if self.eng is not None:
                with contextlib.suppress(EngineError):
                    self.run(self.eng.stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


EngineUnderLoad.TestCase.settings = settings(
    max_examples=12, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip
TestEngineUnderLoad = EngineUnderLoad.TestCase
