"""The race matrix over real sockets: the real BinanceExchange and UserDataStream against the simulator on
127.0.0.1, with the orderings produced by the simulator's own faults rather than by a fake venue
(tests/engine/test_race_matrix.py is the engine-level matrix):

    event_before_snapshot    the change's events arrive live; then a reconnect's REST catch-up sees it again
    event_during_snapshot    the change happens while the reconnect's catch-up requests are in flight
                             (REST latency fault): the live event and the snapshot both report it
    event_after_snapshot     the same, with the stream delayed past the snapshot (delay_ms): the REST
                             catch-up (with GET /myTrades) comes first, the event after it (stale by then)
    duplicated               every event of the change is sent twice (duplicate), then a reconnect
    reordered                each event is held back behind the next one (reorder), then a reconnect
    skipped_then_caught_up   the change's events are never sent (skip); a reconnect's catch-up learns it

for an order reaching NEW, PARTIALLY_FILLED, FILLED (two trades) and CANCELED (after a partial fill,
cancelled on the venue's side). For NEW the change is the placement itself, so its "during" is the stream
event arriving while the POST /order answer is held back (order_answer_delay_ms) and its "after" is the
event delayed past that answer. Every cell asserts: the journal's state is the simulator's order status,
the journal's trades are the simulator's trades for the order (ids, price, quantity, commission, each
once), the filled quantity is their sum, a working order is still open in the engine and on the venue,
and replay agrees with memory. One simulator and one engine per module (per journal backend), one order
per cell."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from adapters.simulator.server import SimulatorServer
from engine.fsm.order_table import OrderState
from engine.persistence.migrate import upgrade
from engine.replay import replay
from engine.types import VenueOrder
from tests.binance.live_stack import Stack, buy, live_stack
from tests.binance.test_gap_trades import assert_journal_matches_venue
from tests.conftest import PG_SKIP, PG_URL, pg_schema
from tests.waiting import eventually_async as eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEP = Decimal("0.0002")  # one price print fills this much of the resting order
QTY = STEP * 2  # two prints fill it
STATES = {"NEW": OrderState.ACKED, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
          "FILLED": OrderState.FILLED, "CANCELED": OrderState.CANCELLED}  # fmt: skip
REST_LATENCY_MS = 100  # the catch-up's requests are in flight this long each
STREAM_DELAY_MS = 800  # longer than a whole catch-up round (openOrders, GET /order, myTrades)
_cids = count()
HEARD: list[VenueOrder] = []  # every update the exchange handed the engine, stream or REST


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(quiet_market=True) as server:
        server.state.engine.level_qty["BTCUSDT"] = STEP
        yield server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_journal_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """tests/conftest.py's journal_url for a whole module: one migrated journal per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('race') / Path('journal.db')}"
        upgrade(url)
        yield url
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    with pg_schema() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_journal_url: str, sim: SimulatorServer) -> AsyncIterator[Stack]:
    async with live_stack(module_journal_url, sim) as s:
        s.exchange.on_update(HEARD.append)  # beside the engine's own listener: who told it what, in order
        yield s


# ----- the simulator's side ----------------------------------------------------------------------------


def rest_faults(stack: Stack, **spec: Any) -> None:
    httpx.post(f"{stack.sim.base_url}/_sim/faults", json=spec).raise_for_status()


def clear_faults(stack: Stack) -> None:
    """REST and stream faults; an event held back by `reorder` is sent now."""
    httpx.delete(f"{stack.sim.base_url}/_sim/faults").raise_for_status()


def _published(stack: Stack) -> int:
    return int(stack.sim.app.state.ws_api.events_published)


def _received(stack: Stack) -> int:
    return int(stack.stream.events + stack.stream.duplicates)


class Cell:
    """One order driven to one status; `change()` is what the ordering's faults act on."""

    def __init__(self, stack: Stack, status: str) -> None:
        self.stack, self.status, self.cid = stack, status, f"pb-rm-{next(_cids)}"
        self.lag = 0  # events fanned out to connections that died with them (never received)

    async def place(self) -> None:
        placed = await self.stack.engine.orders.submit(buy(self.cid, str(QTY)), "trader")
        assert placed.order.state is OrderState.ACKED

    async def change(self) -> None:
        venue = self.stack.sim.state.engine
        if self.status == "NEW":
            await self.place()
            return
        venue.set_price("BTCUSDT", Decimal("64000"))  # a trade of STEP
        if self.status == "FILLED":
            venue.set_price("BTCUSDT", Decimal("64000"))
        elif self.status == "CANCELED":  # cancelled on the venue's side (another session, the web UI)
            venue.cancel("BTCUSDT", orig_client_order_id=self.cid)

    def heard(self) -> list[VenueOrder]:
        return [vo for vo in HEARD if vo.client_order_id == self.cid]

    def venue_status(self) -> str:
        order = self.stack.sim.state.engine.query("BTCUSDT", orig_client_order_id=self.cid)
        return str(order["status"])

    def mark(self) -> int:
        return _published(self.stack) - _received(self.stack)

    async def delivered(self, mark: int) -> None:
        """Every event fanned out since `mark` reached the client (delayed ones included)."""
        # The matching engine hands its events to the hub's loop (call_soon_threadsafe): a request
        # answered by that loop after this point was answered after they were published
        httpx.get(f"{self.stack.sim.base_url}/_sim/ws_api").raise_for_status()
        await eventually(lambda: _published(self.stack) - _received(self.stack) <= mark, timeout=10)

    async def reconnect(self) -> None:
        """Drop the stream; wait for the resubscription and its REST catch-up to finish."""
        gaps = self.stack.exchange.stream_gaps
        self.stack.fault(drop=True)
        await self.caught_up(gaps)

    async def caught_up(self, gaps: int) -> None:
        ex = self.stack.exchange
        await eventually(lambda: ex.stream_gaps > gaps, timeout=10)
        await eventually(
            lambda: self.stack.stream.status()["connected"] and ex.order_gate() is None, timeout=10
        )

    async def reconnect_around(self, *, stream_delay_ms: int) -> None:
        """Drop the stream and make the change once resubscribed, while the catch-up's first REST request is
        in flight."""
        mark = self.mark()
        rest_faults(self.stack, latency_ms=REST_LATENCY_MS)
        if stream_delay_ms:
            self.stack.fault(delay_ms=stream_delay_ms)
        ex, gaps = self.stack.exchange, self.stack.exchange.stream_gaps
        self.stack.fault(drop=True)
        await eventually(lambda: ex.stream_gaps > gaps, timeout=10)
        # resubscribed (events reach us again) and the catch-up's first request sleeping the latency
        await eventually(lambda: ex.stream_live and ex.order_gate() is not None, timeout=10, interval=0.001)
        await self.change()  # that request's handler reads the changed book
        await self.caught_up(gaps)
        clear_faults(self.stack)
        await self.delivered(mark)
        if stream_delay_ms:  # the snapshot told the engine first; the events came after it
            first = next(vo for vo in self.heard() if vo.executed_qty > 0)
            assert first.raw.get("e") != "executionReport", first.raw
            assert first.status.value == self.status


# ----- the orderings ---------------------------------------------------------------------------------


async def event_before_snapshot(cell: Cell) -> None:
    mark = cell.mark()
    await cell.change()
    await cell.delivered(mark)
    if cell.status != "NEW":  # the stream told the engine (a NEW event repeats the POST answer: dropped)
        assert any(
            vo.raw.get("e") == "executionReport" and vo.status.value == cell.status for vo in cell.heard()
        )
    await cell.reconnect()


async def event_during_snapshot(cell: Cell) -> None:
    if cell.status == "NEW":  # the executionReport arrives while the POST /order answer is held back
        mark = cell.mark()
        rest_faults(cell.stack, order_answer_delay_ms=300)
        await cell.change()
        clear_faults(cell.stack)
        await cell.delivered(mark)
        return
    await cell.reconnect_around(stream_delay_ms=0)


async def event_after_snapshot(cell: Cell) -> None:
    if cell.status == "NEW":  # the POST /order answer first, the executionReport well after it
        mark = cell.mark()
        cell.stack.fault(delay_ms=STREAM_DELAY_MS)
        await cell.change()
        assert cell.stack.engine.orders.find(cell.cid).state is OrderState.ACKED  # type: ignore[union-attr]
        clear_faults(cell.stack)
        await cell.delivered(mark)
        await cell.reconnect()
        return
    await cell.reconnect_around(stream_delay_ms=STREAM_DELAY_MS)


async def duplicated(cell: Cell) -> None:
    mark = cell.mark()
    dups = cell.stack.stream.duplicates
    cell.stack.fault(duplicate=20)
    await cell.change()
    await cell.delivered(mark)
    assert cell.stack.stream.duplicates > dups  # the copies did arrive (and were dropped by the client)
    clear_faults(cell.stack)
    await cell.reconnect()


async def reordered(cell: Cell) -> None:
    mark = cell.mark()
    cell.stack.fault(reorder=20)
    await cell.change()
    clear_faults(cell.stack)  # the last held-back event goes out now
    await cell.delivered(mark)
    await cell.reconnect()


async def skipped_then_caught_up(cell: Cell) -> None:
    mark = cell.mark()
    trades = cell.stack.exchange.trade_requests
    cell.stack.fault(skip=20)
    await cell.change()
    clear_faults(cell.stack)
    await cell.delivered(mark)  # nothing was sent: nothing to wait for
    await cell.reconnect()
    if cell.status != "NEW":  # the fills were learned by REST, with their trades from GET /myTrades
        assert cell.stack.exchange.trade_requests > trades


ORDERINGS: dict[str, Callable[[Cell], Awaitable[None]]] = {
    f.__name__: f
    for f in (event_before_snapshot, event_during_snapshot, event_after_snapshot, duplicated, reordered,
              skipped_then_caught_up)
}  # fmt: skip


async def settle(cell: Cell) -> None:
    """What the exchange handed the engine is journaled and applied (the durability callback)."""
    for _ in range(3):
        await cell.stack.engine.orders.store.idle(cell.cid)
        await asyncio.sleep(0)


def assert_cell(cell: Cell) -> None:
    stack, cid = cell.stack, cell.cid
    order = stack.engine.orders.find(cid)
    assert order is not None
    assert cell.venue_status() == cell.status
    assert order.state is STATES[cell.status], (order.state, cell.status)
    assert_journal_matches_venue(stack, [cid])  # every trade once, as the simulator recorded it
    rebuilt = replay(stack.engine.journal.scan(), keep_terminal=True)
    again = rebuilt.open_orders.get(cid) or rebuilt.terminal_orders[cid]
    assert (again.state, again.filled_qty, again.trade_ids) == (
        order.state,
        order.filled_qty,
        order.trade_ids,
    )
    if cell.status in ("NEW", "PARTIALLY_FILLED"):  # a working order is never dropped
        assert cid in stack.engine.orders.open
        assert cid in {o["clientOrderId"] for o in stack.sim.state.engine.open_orders("BTCUSDT")}


@pytest.mark.parametrize("ordering", list(ORDERINGS))
@pytest.mark.parametrize("status", list(STATES))
async def test_every_ordering_ends_in_the_simulators_truth(stack: Stack, status: str, ordering: str) -> None:
    cell = Cell(stack, status)
    clear_faults(stack)
    await eventually(lambda: stack.stream.status()["connected"] and stack.exchange.order_gate() is None)
    if status != "NEW":
        mark = cell.mark()
        await cell.place()
        await cell.delivered(mark)
    try:
        await ORDERINGS[ordering](cell)
        await settle(cell)
        assert_cell(cell)
    finally:
        clear_faults(stack)
        if stack.engine.orders.find(cell.cid) is not None and cell.venue_status() in (
            "NEW",
            "PARTIALLY_FILLED",
        ):  # off the book before the next cell prints
            mark = cell.mark()
            stack.sim.state.engine.cancel("BTCUSDT", orig_client_order_id=cell.cid)
            await cell.delivered(mark)
            await eventually(lambda: stack.engine.orders.find(cell.cid).state is OrderState.CANCELLED)  # type: ignore[union-attr]
