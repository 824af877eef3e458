"""Cancel-on-disconnect as bootstrap wires it, over real sockets against the simulator: a LIVE engine
(BinanceExchange + the user data stream, tests/binance/live_stack.py) and a MarketDataFeed whose
`cancel_on_disconnect` is api.bootstrap's hook. The account also holds foreign orders (placed on the
venue directly, with client order ids without the engine's prefix). Ten market-data outages longer than
`disconnect_grace_s`: after each, every own open order is cancelled on the venue and journaled (the
CANCELLED transition and a `cancel_on_disconnect` audit row naming it), and every foreign order is still
open on the simulator, untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.binance.ws import FeedState
from adapters.simulator.server import SimulatorServer
from api.bootstrap import _cancel_open_on
from engine.fsm.order_table import OrderState
from engine.journal import JournalQuery
from tests.binance.live_stack import Stack, buy, live_stack
from tests.binance.test_ws_watchdog import Recorder, make_feed
from tests.waiting import eventually_async as eventually

OUTAGES = 10
OWN_PER_OUTAGE = 2
PRICE = "60000.00"  # well under the simulator's 65000: nothing fills while the market walks
FOREIGN = ["web_7f3a", "ios_1b2c", "and_99"]  # what the web UI and the apps send: no "pb-" prefix


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(
        driver_interval_s=0.01
    ) as server:  # the market ticks: the feed is OK between outages
        yield server


@pytest.fixture
async def stack(journal_url: str, sim: SimulatorServer) -> AsyncIterator[Stack]:
    async with live_stack(journal_url, sim) as s:
        yield s


def place_foreign(sim: SimulatorServer, cid: str) -> None:
    sim.state.engine.place(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": PRICE, "newClientOrderId": cid}
    )  # fmt: skip


def venue_status(sim: SimulatorServer, cid: str) -> str:
    return str(sim.state.engine.query("BTCUSDT", orig_client_order_id=cid)["status"])


def cancel_audits(stack: Stack) -> list[str]:
    """The client order ids named by cancel_on_disconnect's audit rows, in journal order."""
    q = JournalQuery(limit=10_000, stream="audit", trigger="cancel_on_disconnect")
    return [r.payload["clientOrderId"] for r in stack.engine.journal.query(q)]


async def test_each_outage_past_the_grace_cancels_every_own_order_and_no_foreign_one(
    stack: Stack, sim: SimulatorServer
) -> None:
    for cid in FOREIGN:
        place_foreign(sim, cid)
    rec = Recorder()
    feed = make_feed(
        sim, rec, disconnect_grace_s=0.15, cancel_on_disconnect=_cancel_open_on(stack.engine, "BTCUSDT")
    )
    # the engine heard of them over the user data stream and keeps them as foreign
    await eventually(
        lambda: {o["clientOrderId"] for o in stack.engine.orders.foreign_orders()} >= set(FOREIGN)
    )
    await feed.start()
    cancelled: list[str] = []
    try:
        await eventually(lambda: feed.state is FeedState.OK)
        for i in range(OUTAGES):
            own = [f"pb-out-{i}-{k}" for k in range(OWN_PER_OUTAGE)]
            for cid in own:
                placed = await stack.engine.orders.submit(buy(cid, price=PRICE), "trader")
                assert placed.order.state is OrderState.ACKED
            # every market socket dropped and new ones refused longer than the grace: one outage
            httpx.post(
                f"{sim.base_url}/_sim/faults", json={"ws_drop": True, "ws_refuse": 0.4}
            ).raise_for_status()
            await eventually(lambda: feed.state is FeedState.ERROR)
            await eventually(lambda: feed.state is FeedState.OK)  # the refusal ended: a connection works
            assert feed.status()["cancels_fired"] == i + 1
            await eventually(
                lambda: all(stack.engine.orders.find(c).state is OrderState.CANCELLED for c in own),  # noqa: B023
                timeout=10,
            )
            cancelled += own
            for cid in own:
                assert venue_status(sim, cid) == "CANCELED"
                rows = stack.engine.journal.stream("order", cid)
                assert rows[-1].to_state == OrderState.CANCELLED.value
            assert cancel_audits(stack) == cancelled  # each own order exactly once, in its outage
            for cid in FOREIGN:  # untouched: still working on the venue, never asked to cancel
                assert venue_status(sim, cid) == "NEW", cid
                assert stack.engine.orders.find(cid) is None  # never taken for one of ours
    finally:
        await feed.stop()
    assert rec.cancels == 0  # the Recorder's own hook was replaced by bootstrap's
    assert feed.status()["cancels_fired"] == OUTAGES
    open_on_venue = {o["clientOrderId"] for o in sim.state.engine.open_orders("BTCUSDT")}
    assert open_on_venue == set(FOREIGN)
    assert {o["clientOrderId"] for o in stack.engine.orders.foreign_orders()} >= set(FOREIGN)
    assert len(cancelled) == len(set(cancelled)) == OUTAGES * OWN_PER_OUTAGE
