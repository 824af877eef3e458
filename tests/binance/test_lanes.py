"""The REST client against the simulator over 127.0.0.1: a 429 -1015 stops new orders only, and a cancel
never waits behind throttled orders (issue 7: no in-flight slot is held while the governor throttles)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.binance.governor import RateLimitGovernor
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.transport import AiohttpTransport
from adapters.simulator.server import SimulatorServer
from engine.errors import ExchangeUnavailable, OrderNotSent


def _order(cid: str, price: str = "60000.00") -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.00100", "price": price, "newClientOrderId": cid}  # fmt: skip


def _client(sim: SimulatorServer, **kw: Any) -> BinanceSpotClient:
    return BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url}, **kw
    )


def _status(sim: SimulatorServer, cid: str) -> str:
    return next(str(o["status"]) for o in sim.state.engine.ground_truth() if o["clientOrderId"] == cid)


@pytest.fixture
def sim_one_order_a_day() -> Iterator[SimulatorServer]:
    # one unfilled order per day: the second order is a deterministic 429 -1015 (no 10 s roll-over race)
    with SimulatorServer(order_limit_1d=1, driver_interval_s=3600) as server:
        yield server


async def test_a_minus_1015_429_stops_new_orders_but_the_cancel_reaches_the_simulator(
    sim_one_order_a_day: SimulatorServer,
) -> None:
    sim = sim_one_order_a_day
    client = _client(sim)
    try:
        await client.order(_order("lane-a"))
        with pytest.raises(ExchangeUnavailable) as ei:
            await client.order(_order("lane-b"))
        assert (ei.value.code, ei.value.http_status, ei.value.reason) == (-1015, 429, "RATE_LIMIT")
        assert client.governor.status()["orders_blocked_s"] > 0
        before = sim.state.requests
        with pytest.raises(ExchangeUnavailable):
            await client.order(_order("lane-c"))  # refused locally: nothing sent
        assert sim.state.requests == before
        cancelled = await client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "lane-a"})
        assert cancelled["status"] == "CANCELED"
        assert _status(sim, "lane-a") == "CANCELED"
        found = await client.query_order({"symbol": "BTCUSDT", "origClientOrderId": "lane-a"})
        assert found["status"] == "CANCELED"
        assert sim.state.requests == before + 2  # the cancel and the query went out
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(driver_interval_s=3600) as server:
        yield server


async def test_a_cancel_completes_while_many_orders_wait_for_the_governor(sim: SimulatorServer) -> None:
    setup = _client(sim)
    await setup.order(_order("lane-resting"))
    await setup.aclose()
    gate = asyncio.Event()

    async def held(_seconds: float) -> None:  # the governor's throttle wait, released only by the test
        await gate.wait()

    # ORDERS limit 1 at threshold 0.9: every new order waits for headroom, each as long as the test says
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 1},
    ]
    governor = RateLimitGovernor(sleep=held, rate_limits=limits)
    client = _client(sim, governor=governor, max_in_flight=4)
    orders = [asyncio.create_task(client.order(_order(f"lane-t{i}"))) for i in range(20)]
    try:
        while governor.throttled_count < 20:
            await asyncio.sleep(0.001)
        assert client.in_flight == 0  # throttled orders hold no slot
        cancelled = await asyncio.wait_for(
            client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "lane-resting"}), timeout=10
        )
        assert cancelled["status"] == "CANCELED"
        assert not any(t.done() for t in orders)  # the orders are still waiting for the governor
        assert _status(sim, "lane-resting") == "CANCELED"
        assert not [o for o in sim.state.engine.ground_truth() if o["clientOrderId"].startswith("lane-t")]
    finally:
        for t in orders:
            t.cancel()
        await asyncio.gather(*orders, return_exceptions=True)
        await client.aclose()


def answer_orders_only_when_set(client: Any) -> asyncio.Event:
    """Every POST (an order) waits for the returned event before its round trip: each holds an
    order-lane slot meanwhile, as an order the venue answers slowly does."""
    orig = client._round_trip
    gate = asyncio.Event()

    async def slow_orders(method: str, url: str, *rest: Any) -> Any:
        if method == "POST":
            await gate.wait()
        return await orig(method, url, *rest)

    client._round_trip = slow_orders
    return gate


async def test_slow_orders_in_flight_do_not_block_a_cancel(sim: SimulatorServer) -> None:
    # every slot of the order lane is taken by an order the venue answers slowly; the cancel has its own
    setup = _client(sim)
    await setup.order(_order("lane-slow-victim"))
    await setup.aclose()
    client = _client(sim, max_in_flight=2)
    gate = answer_orders_only_when_set(client)
    orders = [asyncio.create_task(client.order(_order(f"lane-s{i}", "59000.00"))) for i in range(6)]
    try:
        while client.in_flight < 2:
            await asyncio.sleep(0.001)
        cancelled = await asyncio.wait_for(
            client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "lane-slow-victim"}), timeout=10
        )
        assert cancelled["status"] == "CANCELED"
        assert not any(t.done() for t in orders)
        gate.set()
        placed = await asyncio.wait_for(asyncio.gather(*orders), timeout=20)
        assert {p["status"] for p in placed} == {"NEW"}
        assert client.peak_in_flight <= 3  # two orders and the cancel
    finally:
        gate.set()
        for t in orders:
            t.cancel()
        await asyncio.gather(*orders, return_exceptions=True)
        await client.aclose()


async def test_a_cancel_refused_for_its_timestamp_resyncs_without_waiting_behind_slow_orders(
    sim: SimulatorServer,
) -> None:
    # The venue's clock steps back 2 s while every order slot is held by an order the venue answers
    # slowly: the cancel's -1021 resync (GET /api/v3/time) took an order-lane slot, so the cancel waited
    # for the orders (over HTTP: 3.5 s instead of 20 ms); the resync now runs on the cancel lane
    setup = _client(sim)
    await setup.order(_order("lane-skew-victim"))
    await setup.aclose()
    client = _client(sim, max_in_flight=2)
    await client.clock.resync()
    gate = answer_orders_only_when_set(client)
    orders = [asyncio.create_task(client.order(_order(f"lane-k{i}", "59000.00"))) for i in range(4)]
    try:
        while client.in_flight < 2:
            await asyncio.sleep(0.001)
        httpx.post(f"{sim.base_url}/_sim/faults", json={"clock_skew_ms": -2000}).raise_for_status()
        cancelled = await asyncio.wait_for(
            client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "lane-skew-victim"}), timeout=5
        )
        assert cancelled["status"] == "CANCELED"
        assert client.timestamp_retries == 1  # refused once for its timestamp, resynced, sent again
        assert abs(client.clock.offset_ms + 2000) < 500
        assert not any(t.done() for t in orders)  # the orders still hold their slots
    finally:
        gate.set()
        for t in orders:
            t.cancel()
        await asyncio.gather(*orders, return_exceptions=True)
        await client.aclose()
        httpx.delete(f"{sim.base_url}/_sim/faults").raise_for_status()


async def test_a_waf_403_backs_the_client_off_without_sending(sim: SimulatorServer) -> None:
    httpx.post(f"{sim.base_url}/_sim/faults", json={"waf_403": 1}).raise_for_status()
    client = _client(sim)
    try:
        with pytest.raises(ExchangeUnavailable) as ei:
            await client.ping()
        assert (ei.value.reason, ei.value.http_status) == ("WAF_LIMIT", 403)
        before = sim.state.requests
        with pytest.raises(ExchangeUnavailable) as again:
            await client.cancel({"symbol": "BTCUSDT", "origClientOrderId": "nothing"})
        assert again.value.reason == "WAF_LIMIT"
        assert sim.state.requests == before  # backing off: nothing reached the venue
        assert client.governor.status()["waf_backoff_s"] > 0
    finally:
        await client.aclose()
        httpx.delete(f"{sim.base_url}/_sim/faults").raise_for_status()


async def test_an_order_queued_for_a_slot_asks_its_send_gate_before_it_leaves(sim: SimulatorServer) -> None:
    # Every order slot is held by a slow order; a third order queues for a slot. The caller's mind changes
    # meanwhile (the engine's session went on HOLD): once it gets its slot the gate refuses and nothing
    # reaches the venue, where before it went out as soon as a slot was free
    client = _client(sim, max_in_flight=2)
    gate = answer_orders_only_when_set(client)
    slow = [asyncio.create_task(client.order(_order(f"lane-g{i}", "59000.00"))) for i in range(2)]
    halted: list[str] = []
    queued = asyncio.create_task(
        client.order(_order("lane-g-queued", "59000.00"), may_send=lambda: halted[0] if halted else None)
    )
    try:
        while client.in_flight < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert not queued.done()
        halted.append("session_hold")
        gate.set()
        with pytest.raises(OrderNotSent) as info:
            await asyncio.wait_for(queued, timeout=10)
        assert info.value.reason == "session_hold"
        assert {p["status"] for p in await asyncio.gather(*slow)} == {"NEW"}  # they were out already
        assert [o for o in sim.state.engine.ground_truth() if o["clientOrderId"] == "lane-g-queued"] == []
    finally:
        gate.set()
        for t in (*slow, queued):
            t.cancel()
        await asyncio.gather(*slow, queued, return_exceptions=True)
        await client.aclose()


async def test_an_order_on_a_new_connection_asks_its_send_gate_once_connected(sim: SimulatorServer) -> None:
    # A slot and headroom do not mean the bytes leave: with no idle keep-alive connection (the first
    # order, one after the pool's keep-alive ran out, one after the venue closed it) aiohttp opens one
    # first (DNS, TCP, TLS: awaits). The session went on HOLD during that connect, so the order must
    # not go out; it did, as the gate had been asked before the connect only
    client = _client(sim, transport=AiohttpTransport(max_connections=4, keepalive_s=0.0))
    loop = asyncio.get_running_loop()
    held: list[str] = []
    asked = 0

    def may_send() -> str | None:
        nonlocal asked
        asked += 1
        if asked == 1:  # the gate passes; the HOLD is answered at the loop's next turn, before any byte
            loop.call_soon(held.append, "session_hold")
        return held[0] if held else None

    try:
        with pytest.raises(OrderNotSent) as info:
            await asyncio.wait_for(client.order(_order("lane-g-connect", "59000.00"), may_send=may_send), 10)
        assert info.value.reason == "session_hold"
        assert [o for o in sim.state.engine.ground_truth() if o["clientOrderId"] == "lane-g-connect"] == []
        assert client.in_flight == 0
        # A pooled connection has nothing to await: the gate passes once and the order goes out
        warm = _client(sim)
        try:
            await warm.server_time()
            placed = await warm.order(_order("lane-g-warm", "59000.00"), may_send=lambda: None)
            assert placed["status"] == "NEW"
        finally:
            await warm.aclose()
    finally:
        await client.aclose()
