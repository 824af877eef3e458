"""Property: whatever sequence of operations ran live, replaying the journal rebuilds exactly the same
orders and session (Hypothesis drives the operations against a fake venue)."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import EngineSettings
from engine.errors import EngineError, ExchangeRejected, ExecutionStatusUnknown
from engine.ledger import project
from engine.order import Order
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueStatus
from tests.fakes import FakeExchange, FrozenClock

CIDS = ["pb-a", "pb-b", "pb-c", "pb-d"]
op = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(CIDS), st.sampled_from(["0.001", "0.002", "0.0000001"])),
    st.tuples(st.just("fill"), st.sampled_from(CIDS), st.sampled_from(["0.0005", "rest"])),
    st.tuples(st.just("cancel"), st.sampled_from(CIDS), st.just("")),
    st.tuples(st.just("fail_next"), st.sampled_from(["reject", "unknown", "lost"]), st.just("")),
    st.tuples(
        st.just("session"), st.sampled_from(["hold", "resume", "arm", "go_live", "disarm"]), st.just("")
    ),
)


def snapshot(order: Order) -> tuple[object, ...]:
    return (
        order.state,
        order.version,
        order.filled_qty,
        order.order_id,
        frozenset(order.trade_ids or ()),
        order.mode,
    )


async def run(ops: list[tuple[str, str, str]], url: str) -> None:
    fake = FakeExchange()
    cfg = EngineSettings(
        profile="testnet", symbols=("BTCUSDT",), unknown_grace_s=0.05, reconcile_interval_s=0.01
    )
    eng = Engine(SqlJournal(url), fake, cfg, FrozenClock(), session_id="testnet")
    await eng.start()
    seen: dict[str, Order] = {}
    for kind, arg, extra in ops:
        try:
            if kind == "submit":
                req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, arg, Decimal(extra), Decimal("65000"),
                                   TimeInForce.GTC)  # fmt: skip
                try:
                    seen[arg] = (await eng.orders.submit(req, "trader")).order
                finally:
                    found = eng.orders.find(arg)
                    if found is not None and arg not in seen:
                        seen[arg] = found
            elif kind == "fill" and arg in fake.orders and fake.orders[arg].status in (
                VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED,
            ):  # fmt: skip
                vo = fake.orders[arg]
                rest = vo.orig_qty - vo.executed_qty
                qty = rest if extra == "rest" else min(Decimal(extra), rest)
                fake.fill(arg, qty, VenueStatus.FILLED if qty == rest else VenueStatus.PARTIALLY_FILLED)
            elif kind == "cancel":
                await eng.orders.cancel("BTCUSDT", arg, None, "trader")
            elif kind == "fail_next":
                if arg == "reject":
                    fake.fail_next = ExchangeRejected("no", reason="ORDER_REJECTED", code=-2010)
                elif arg == "unknown":
                    fake.fail_next = ExecutionStatusUnknown("503", reason="EXECUTION_STATUS_UNKNOWN")
                else:
                    fake.execute_then_fail = ExecutionStatusUnknown(
                        "-1007", reason="EXECUTION_STATUS_UNKNOWN"
                    )
            elif kind == "session":
                await eng.sessions.transition(arg, "ops")
        except EngineError:
            pass  # refusals are part of the property: they must replay too
        await asyncio.sleep(0)
    for _ in range(50):  # let pushed fills and reconciliation settle
        await asyncio.sleep(0.01)
    await eng.orders.close()
    await eng.writer.close()
    rebuilt = replay(SqlJournal(url).scan(), keep_terminal=True)
    replayed = {**rebuilt.terminal_orders, **rebuilt.open_orders}
    live = {cid: eng.orders.open.get(cid) or seen[cid] for cid in seen}
    assert {cid: snapshot(o) for cid, o in replayed.items()} == {cid: snapshot(o) for cid, o in live.items()}
    assert set(rebuilt.open_orders) == set(eng.orders.open)
    # The read models (fills, positions, order history) fed live equal their recomputation by replay
    ledger, _ = project(SqlJournal(url).scan())
    assert ledger.positions() == eng.ledger.positions()
    assert ledger.fills(limit=10**6) == eng.ledger.fills(limit=10**6)
    assert ledger.list_orders(limit=1000) == eng.ledger.list_orders(limit=1000)
    session, again = eng.sessions.current, rebuilt.sessions["testnet"]
    assert (session.state, session.version, session.hold_reason) == (
        again.state,
        again.version,
        again.hold_reason,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=25))
def test_replay_rebuilds_the_state_live_use_produced(ops: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'j.db'}"
        upgrade(url)
        asyncio.run(run(ops, url))
