"""The Binance adapter against the Binance-compatible simulator over real loopback sockets: signatures,
timestamps, faults (skew, lost responses, 5xx, 429/418, WS drop and stall), ground truth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from adapters.binance.exchange import BinanceExchange
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.ws import FeedState, MarketDataFeed
from adapters.simulator.server import SimulatorServer
from engine.errors import ExchangeRejected, ExchangeUnavailable, ExecutionStatusUnknown
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueStatus
from tests.waiting import eventually_async as eventually


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(driver_interval_s=0.05) as server:
        yield server


@pytest.fixture
def admin(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url) as client:
        client.delete("/_sim/faults").raise_for_status()
        yield client
        client.delete("/_sim/faults").raise_for_status()


@pytest.fixture
async def ex(sim: SimulatorServer, admin: httpx.Client) -> AsyncIterator[BinanceExchange]:
    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url}
    )
    exchange = BinanceExchange(client, poll_interval_s=0)
    yield exchange
    await exchange.close()


_seq = iter(range(10_000))


def limit_buy(price: str = "60000.00", qty: str = "0.00100") -> OrderRequest:
    return OrderRequest(
        "BTCUSDT",
        Side.BUY,
        OrderType.LIMIT,
        f"it-{next(_seq)}",
        quantity=Decimal(qty),
        price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


def truth(admin: httpx.Client, cid: str) -> list[dict[str, Any]]:
    return [o for o in admin.get("/_sim/ground_truth").json()["orders"] if o["clientOrderId"] == cid]


async def test_order_lifecycle(ex: BinanceExchange, admin: httpx.Client) -> None:
    ping = await ex.ping()
    assert abs(ping.clock_skew_ms) < 200
    acct = await ex.account()
    assert acct.can_trade
    assert "SPOT" in acct.permissions
    rules = await ex.symbol_rules()
    assert rules["BTCUSDT"].tick_size > 0
    assert await ex.last_price("BTCUSDT") is not None
    req = limit_buy()
    assert await ex.place_test(req) == {}
    assert truth(admin, req.client_order_id) == []  # a test order never reaches the book
    placed = await ex.place(req)
    assert placed.status is VenueStatus.NEW
    assert req.client_order_id in [o.client_order_id for o in await ex.open_orders("BTCUSDT")]
    found = await ex.query("BTCUSDT", req.client_order_id)
    assert found is not None
    assert found.order_id == placed.order_id
    cancelled = await ex.cancel("BTCUSDT", req.client_order_id)
    assert cancelled.status is VenueStatus.CANCELED
    assert cancelled.client_order_id == req.client_order_id
    assert await ex.query("BTCUSDT", "never-placed") is None
    with pytest.raises(ExchangeRejected) as ei:
        await ex.cancel("BTCUSDT", req.client_order_id)
    assert ei.value.reason == "UNKNOWN_ORDER"


async def test_venue_rejections_are_mapped(ex: BinanceExchange) -> None:
    with pytest.raises(ExchangeRejected) as ei:
        await ex.place(limit_buy(qty="0.000001"))
    assert ei.value.reason in ("FILTER_FAILURE", "INVALID_PARAMETER")
    with pytest.raises(ExchangeRejected) as ei:
        await ex.place(limit_buy(qty="5"))  # 300k USDT > 100k balance
    assert ei.value.reason == "INSUFFICIENT_BALANCE"


async def test_clock_skew_is_fixed_by_one_resync_and_retry(ex: BinanceExchange, admin: httpx.Client) -> None:
    await ex.ping()
    admin.post("/_sim/faults", json={"clock_skew_ms": 8000}).raise_for_status()
    acct = await ex.account()  # first try: -1021; resync; second try passes
    assert acct.can_trade
    assert ex.client.timestamp_retries == 1
    assert ex.client.clock.offset_ms == pytest.approx(8000, abs=300)


async def test_lost_response_is_unknown_and_reconciled_by_query(
    ex: BinanceExchange, admin: httpx.Client
) -> None:
    admin.post("/_sim/faults", json={"lost_response": 1}).raise_for_status()
    req = limit_buy()
    with pytest.raises(ExecutionStatusUnknown):
        await ex.place(req)
    found = await ex.query("BTCUSDT", req.client_order_id)
    assert found is not None
    assert found.status is VenueStatus.NEW
    assert len(truth(admin, req.client_order_id)) == 1  # executed once, never resent
    await ex.cancel("BTCUSDT", req.client_order_id)


async def test_5xx_is_unknown_status(ex: BinanceExchange, admin: httpx.Client) -> None:
    await ex.ping()
    admin.post("/_sim/faults", json={"http_5xx": 1, "http_5xx_status": 502}).raise_for_status()
    req = limit_buy()
    with pytest.raises(ExecutionStatusUnknown) as ei:
        await ex.place(req)
    assert ei.value.http_status == 502
    assert await ex.query("BTCUSDT", req.client_order_id) is None  # this fault never executes


async def test_429_then_nothing_sent_during_retry_after(ex: BinanceExchange, admin: httpx.Client) -> None:
    await ex.ping()
    admin.post("/_sim/faults", json={"rate_limit": {"status": 429, "count": 1, "retry_after_s": 30}})
    with pytest.raises(ExchangeUnavailable) as ei:
        await ex.last_price("BTCUSDT")
    assert ei.value.reason == "RATE_LIMIT"
    before = admin.get("/_sim/state").json()["requests"]
    with pytest.raises(ExchangeUnavailable):
        await ex.place(limit_buy())
    assert admin.get("/_sim/state").json()["requests"] == before
    assert ex.status()["rate_limit"]["level"] == "WARN"


async def test_418_ban_requires_hold(ex: BinanceExchange, admin: httpx.Client) -> None:
    await ex.ping()
    admin.post("/_sim/faults", json={"rate_limit": {"status": 418, "seconds": 120}}).raise_for_status()
    with pytest.raises(ExchangeUnavailable) as ei:
        await ex.last_price("BTCUSDT")
    assert ei.value.reason == "IP_BANNED"
    st = ex.status()["rate_limit"]
    assert st["level"] == "ERROR"
    assert st["hold_required"] is True


async def test_many_concurrent_requests_with_a_small_window(
    sim: SimulatorServer, admin: httpx.Client
) -> None:
    import asyncio

    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": ""}, max_in_flight=4
    )
    out = await asyncio.gather(*(client.book_ticker("BTCUSDT") for _ in range(40)))
    assert {o["symbol"] for o in out} == {"BTCUSDT"}
    assert client.peak_in_flight == 4
    await client.aclose()


async def test_market_data_feed_drop_and_stall(sim: SimulatorServer, admin: httpx.Client) -> None:
    cancels: list[int] = []

    async def cancel_open_orders() -> None:
        cancels.append(1)

    feed = MarketDataFeed(
        sim.ws_url,
        "BTCUSDT",
        stall_after_s=0.3,
        error_after_s=0.8,
        disconnect_grace_s=0.4,
        cancel_on_disconnect=cancel_open_orders,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    await feed.start()
    try:
        await eventually(lambda: feed.state is FeedState.OK and feed.messages >= 3)
        # a drop the feed reconnects from inside the grace: no cancel
        admin.post("/_sim/faults", json={"ws_drop": True}).raise_for_status()
        await eventually(lambda: feed.state is FeedState.OK and feed.connects >= 2)
        assert cancels == []
        # a drop with reconnects refused past the grace: ERROR and one cancel
        admin.post("/_sim/faults", json={"ws_drop": True, "ws_refuse": 1.0}).raise_for_status()
        await eventually(lambda: feed.state is FeedState.ERROR)
        await eventually(lambda: cancels == [1])
        await eventually(lambda: feed.state is FeedState.OK, timeout=8)
        # a stall on a live socket: WARN, never ERROR, no cancel
        admin.post("/_sim/faults", json={"ws_stall": 1.5}).raise_for_status()
        await eventually(lambda: feed.state is FeedState.WARN)
        await asyncio.sleep(1.0)
        assert feed.state is FeedState.WARN
        admin.delete("/_sim/faults").raise_for_status()
        await eventually(lambda: feed.state is FeedState.OK, timeout=8)
        assert cancels == [1]
    finally:
        await feed.stop()
