"""The race matrix: a user-data-stream event and a REST snapshot of the same order arrive in every
ordering (stream first, snapshot first, both in one tick, duplicated, a stale snapshot before or after)
for every order status of enums.md, from an ACKED order and from one whose send outcome is UNKNOWN. The
journal must end the same in every ordering: the same state, filled quantity and set of trades (each
exactly once, with its price, quantity and commission), and replay must agree with memory.

Stream events carry their trades (executionReport TRADE); REST snapshots carry them too, since the
Binance adapter completes a moved snapshot from GET /myTrades (tests/binance/test_gap_trades.py shows it
over real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineSettings
from engine.errors import ExecutionStatusUnknown
from engine.fsm.order_table import OrderState
from engine.journal import JournalQuery
from engine.late_trades import TRADE_STREAM
from engine.persistence.migrate import upgrade
from engine.replay import replay
from engine.runtime import Engine
from engine.types import Fill, OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.engine.conftest import running
from tests.fakes import FakeExchange

V, S, D = VenueStatus, OrderState, Decimal
CID = "pb-race"
T1 = Fill(501, D("65000"), D("0.0004"), D("0.0000004"), "BTC", True)
T2 = Fill(502, D("65000"), D("0.0006"), D("0.0000006"), "BTC", False)
REQ = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, CID, D("0.001"), D("65000.00"), TimeInForce.GTC)


def view(
    status: VenueStatus, fills: tuple[Fill, ...], *, stream: bool, prevented: D | None = None
) -> VenueOrder:
    executed = sum((f.qty for f in fills), D(0))
    return VenueOrder("BTCUSDT", CID, status, 77, D("0.001"), executed, executed * D("65000"), fills,
                      {"status": status.value}, Side.BUY, OrderType.LIMIT, D("65000.00"), TimeInForce.GTC,
                      status_text=status.value, prevented_qty=prevented, pushed=stream)  # fmt: skip


def scenario(status: VenueStatus) -> tuple[list[VenueOrder], VenueOrder]:
    """The stream's events for the order reaching `status`, and the REST snapshot of it there."""
    prevented = D("0.00060000") if status is V.EXPIRED_IN_MATCH else None
    if status in (V.NEW, V.PENDING_NEW, V.REJECTED):
        return [view(status, (), stream=True)], view(status, (), stream=False)
    if status is V.PARTIALLY_FILLED:
        return [view(status, (T1,), stream=True)], view(status, (T1,), stream=False)
    if status is V.FILLED:
        events = [view(V.PARTIALLY_FILLED, (T1,), stream=True), replace(view(V.FILLED, (T1, T2), stream=True),
                  fills=(T2,))]  # fmt: skip
        return events, view(V.FILLED, (T1, T2), stream=False)
    # CANCELED, EXPIRED, EXPIRED_IN_MATCH: a partial fill, then the end
    end = replace(view(status, (T1,), stream=True, prevented=prevented), fills=())
    return [view(V.PARTIALLY_FILLED, (T1,), stream=True), end], view(
        status, (T1,), stream=False, prevented=prevented
    )


Deliver = Callable[[Engine, FakeExchange, list[VenueOrder], VenueOrder, VenueOrder], Awaitable[None]]


def push(fake: FakeExchange, vo: VenueOrder) -> None:
    for listener in fake.listeners:
        listener(vo)


async def settle(eng: Engine) -> None:
    for _ in range(3):
        await eng.orders.store.idle(CID)
        await asyncio.sleep(0)


async def stream_first(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                       stale: VenueOrder) -> None:  # fmt: skip
    for e in ev:
        push(fake, e)
        await settle(eng)
    await eng.orders.store.sync(CID, rest)


async def snapshot_first(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                         stale: VenueOrder) -> None:  # fmt: skip
    await eng.orders.store.sync(CID, rest)
    for e in ev:
        push(fake, e)
        await settle(eng)


async def same_tick(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                    stale: VenueOrder) -> None:  # fmt: skip
    snapshot = asyncio.ensure_future(eng.orders.store.sync(CID, rest))
    for e in ev:  # no await in between: each decided while the others are pending
        push(fake, e)
    await snapshot


async def duplicated(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                     stale: VenueOrder) -> None:  # fmt: skip
    for e in ev:
        push(fake, e)
        push(fake, e)
        await settle(eng)
    await eng.orders.store.sync(CID, rest)
    await eng.orders.store.sync(CID, rest)
    for e in ev:
        push(fake, e)


async def stale_after(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                      stale: VenueOrder) -> None:  # fmt: skip
    await stream_first(eng, fake, ev, rest, stale)
    await eng.orders.store.sync(CID, stale)


async def stale_between(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                        stale: VenueOrder) -> None:  # fmt: skip
    push(fake, ev[0])
    await settle(eng)
    await eng.orders.store.sync(CID, stale)  # a snapshot taken before the event, answered after it
    for e in ev[1:]:
        push(fake, e)
        await settle(eng)
    await eng.orders.store.sync(CID, rest)


async def trades_late(eng: Engine, fake: FakeExchange, ev: list[VenueOrder], rest: VenueOrder,
                      stale: VenueOrder) -> None:  # fmt: skip
    # The catch-up's GET /myTrades lagged its GET /order (rest-api.md "Memory => Database"): the
    # snapshot's quantity comes without its trades, which the stream's reports then bring (engine.late_trades)
    await eng.orders.store.sync(CID, replace(rest, fills=()))
    for e in ev:
        push(fake, e)
        await settle(eng)
        push(fake, e)  # and once more: a trade is journaled once however often it is reported
        await settle(eng)


ORDERINGS: dict[str, Deliver] = {
    "stream_then_snapshot": stream_first,
    "snapshot_then_stream": snapshot_first,
    "same_tick": same_tick,
    "duplicated": duplicated,
    "stale_snapshot_after": stale_after,
    "stale_snapshot_between": stale_between,
    "trades_after_the_snapshot": trades_late,
}
FINAL = {  # (start, venue status) -> the state every ordering must end in
    **{("ACKED", s): st for s, st in ((V.NEW, S.ACKED), (V.PENDING_NEW, S.ACKED), (V.REJECTED, S.ACKED),
       (V.PARTIALLY_FILLED, S.PARTIALLY_FILLED), (V.FILLED, S.FILLED), (V.CANCELED, S.CANCELLED),
       (V.EXPIRED, S.EXPIRED), (V.EXPIRED_IN_MATCH, S.EXPIRED))},
    **{("UNKNOWN", s): st for s, st in ((V.NEW, S.ACKED), (V.PENDING_NEW, S.ACKED), (V.REJECTED, S.REJECTED),
       (V.PARTIALLY_FILLED, S.PARTIALLY_FILLED), (V.FILLED, S.FILLED), (V.CANCELED, S.CANCELLED),
       (V.EXPIRED, S.EXPIRED), (V.EXPIRED_IN_MATCH, S.EXPIRED))},
}  # fmt: skip
STATUSES = [V.NEW, V.PARTIALLY_FILLED, V.FILLED, V.CANCELED, V.EXPIRED, V.EXPIRED_IN_MATCH, V.REJECTED,
            V.PENDING_NEW]  # fmt: skip


def outcome(eng: Engine) -> dict[str, Any]:
    rows = eng.journal.stream("order", CID)
    late = [r.payload["fill"] for r in eng.journal.query(JournalQuery(stream=TRADE_STREAM, limit=1000))]
    fills = [f for r in rows for f in r.payload.get("fills", ())] + late
    order = eng.orders.find(CID)
    assert order is not None
    rebuilt = replay(eng.journal.scan(), keep_terminal=True)
    again = rebuilt.open_orders.get(CID) or rebuilt.terminal_orders[CID]
    assert (again.state, again.filled_qty) == (order.state, order.filled_qty)
    assert (again.trade_ids or set()) == {f["tradeId"] for f in fills}
    held = eng.orders.store.open.get(CID) or eng.orders.store.untraced.get(CID)
    if held is not None:  # memory (open, or finished with untraced quantity) agrees with replay
        assert (held.trade_ids, held.traced_qty) == (again.trade_ids, again.traced_qty)
    else:
        assert again.traced_qty == again.filled_qty
    ledger = eng.ledger.positions()["positions"]
    assert all(p["untraced_trades"] == 0 for p in ledger), ledger
    return {
        "state": order.state,
        "filled": order.filled_qty,
        "trades": sorted(_trade(f) for f in fills),
        "trade_ids_once": len(fills) == len({f["tradeId"] for f in fills}),
        "prevented": {r.payload["preventedQty"] for r in rows if "preventedQty" in r.payload},
    }


def _trade(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["tradeId"], f["price"], f["qty"], f["commission"], f["commissionAsset"], f.get("isMaker"))


async def run_cell(db_url: str, settings: EngineSettings, start: str, status: VenueStatus,
                   ordering: Deliver) -> dict[str, Any]:  # fmt: skip
    fake = FakeExchange()
    fake.hidden.add(CID)  # the UNKNOWN order's own resolution by query sees nothing: only the matrix speaks
    async with running(db_url, fake, replace(settings, unknown_grace_s=600.0), live=True) as eng:
        if start == "UNKNOWN":
            fake.fail_next = ExecutionStatusUnknown("timed out", reason="EXECUTION_STATUS_UNKNOWN")
            with pytest.raises(ExecutionStatusUnknown):
                await eng.orders.submit(REQ, "trader")
        else:
            fake.outcome = lambda _req: V.NEW
            await eng.orders.submit(REQ, "trader")
        assert eng.orders.open[CID].state.value == start
        events, rest = scenario(status)
        # a snapshot from before the order's last change: the first event's state, as REST showed it then
        first = events[0]
        stale = (
            view(first.status, first.fills, stream=False)
            if len(events) > 1
            else view(V.NEW, (), stream=False)
        )
        await ordering(eng, fake, events, rest, stale)
        await settle(eng)
        return outcome(eng)


@pytest.mark.parametrize("start", ["ACKED", "UNKNOWN"])
@pytest.mark.parametrize("status", STATUSES, ids=[s.value for s in STATUSES])
async def test_every_ordering_ends_in_the_same_journal(
    tmp_path: Path, settings: EngineSettings, start: str, status: VenueStatus
) -> None:
    results = {}
    for name, ordering in ORDERINGS.items():
        url = f"sqlite:///{tmp_path / name}.db"  # a fresh journal per cell (SQLite: 96 engine starts)
        upgrade(url)
        results[name] = await run_cell(url, settings, start, status, ordering)
    first = next(iter(results.values()))
    for name, got in results.items():
        assert got == first, (name, got, first)
    assert first["state"] is FINAL[(start, status)]
    assert first["trade_ids_once"]
    _, rest = scenario(status)
    applies = not (start == "ACKED" and status in (V.REJECTED,))
    want = sorted((f.trade_id, str(f.price), str(f.qty), str(f.commission), f.commission_asset, f.is_maker)
                  for f in rest.fills) if applies else []  # fmt: skip
    assert first["trades"] == want
    assert first["filled"] == (rest.executed_qty if applies else D(0))
    assert first["prevented"] == ({"0.00060000"} if status is V.EXPIRED_IN_MATCH else set())
