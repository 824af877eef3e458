"""UserDataStream against the simulator's WebSocket API over real loopback sockets: subscription, order
events as VenueOrder, gaps on drop / eventStreamTerminated, make-before-break rollover on serverShutdown
and at the (time-compressed) connection age, dedup of duplicated events, pings, refused subscriptions."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from adapters.binance.rest import BinanceSpotClient
from adapters.binance.user_stream import (
    WS_API_URLS,
    StreamState,
    UserDataStream,
    dedup_key,
    parse_account_position,
    parse_execution_report,
)
from adapters.simulator.server import SimulatorServer
from engine.types import Balance, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.waiting import eventually_async as eventually

_ids = itertools.count(1)


class Collector:
    """The callbacks' view: everything the stream delivered, in order."""

    def __init__(self) -> None:
        self.orders: list[VenueOrder] = []
        self.balances: list[list[Balance]] = []
        self.gaps: list[str] = []
        self.subscribed: list[int] = []
        self.other: list[dict[str, Any]] = []

    def stream(self, sim: SimulatorServer, secret: str | None = None, **kwargs: Any) -> UserDataStream:
        kwargs.setdefault("backoff_initial_s", 0.05)
        kwargs.setdefault("backoff_max_s", 0.2)
        return UserDataStream.for_profile(
            "simulator",
            sim.api_key,
            secret or sim.api_secret,
            url=f"{sim.ws_url}/ws-api/v3",
            on_order=self.orders.append,
            on_balances=lambda balances, event: self.balances.append(balances),
            on_gap=self.gaps.append,
            on_subscribed=self.subscribed.append,
            on_event=self.other.append,
            **kwargs,
        )

    def of(self, cid: str, x: str | None = None) -> list[VenueOrder]:
        return [o for o in self.orders if o.client_order_id == cid and (x is None or o.raw["x"] == x)]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(ws_ping_interval=5, ws_ping_timeout=5) as server:
        yield server


@pytest.fixture
def admin(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url) as client:
        yield client


@pytest.fixture
async def rest(sim: SimulatorServer) -> AsyncIterator[BinanceSpotClient]:
    client = BinanceSpotClient(
        "testnet", sim.api_key, sim.api_secret, {"rest": sim.base_url, "ws": sim.ws_url}
    )
    yield client
    await client.aclose()


@pytest.fixture
async def live(sim: SimulatorServer) -> AsyncIterator[tuple[UserDataStream, Collector]]:
    seen = Collector()
    stream = seen.stream(sim)
    await stream.start()
    await eventually(lambda: seen.subscribed)
    yield stream, seen
    await stream.stop()


async def buy(rest: BinanceSpotClient, price: str = "50000", cid: str | None = None) -> str:
    cid = cid or f"us-{next(_ids)}"
    payload = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    await rest.order({**payload, "quantity": "0.00100", "price": price, "newClientOrderId": cid})
    return cid


def test_urls_are_the_documented_ones() -> None:
    # web-socket-api.md "General API Information"
    assert WS_API_URLS["live"] == "wss://ws-api.binance.com:443/ws-api/v3"
    assert WS_API_URLS["testnet"] == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    with pytest.raises(ValueError, match="no WebSocket API URL"):
        UserDataStream.for_profile("paper", "k", "s")


def test_parsers_never_raise_on_unknown_values() -> None:
    unknown = parse_execution_report({"e": "executionReport", "s": "BTCUSDT", "X": "SOMETHING_NEW"})
    assert unknown is not None  # handed on, not dropped: the engine journals the raw text and holds
    assert (unknown.status, unknown.raw["status"]) == (VenueStatus.UNRECOGNISED, "SOMETHING_NEW")
    assert (unknown.status_text, unknown.pushed, unknown.order_list_id) == ("SOMETHING_NEW", True, -1)
    stp = parse_execution_report({"e": "executionReport", "s": "BTCUSDT", "X": "EXPIRED_IN_MATCH", "g": 4,
                                  "A": "0.30000000"})  # fmt: skip
    assert stp is not None
    assert (stp.prevented_qty, stp.order_list_id) == (Decimal("0.3"), 4)
    odd = parse_execution_report({"e": "executionReport", "s": "X", "X": "NEW", "o": "OTO_THING", "q": "abc"})
    assert odd is not None
    assert (odd.type, odd.orig_qty, odd.order_id) == (None, Decimal(0), None)
    assert parse_account_position({"B": [{"a": "BTC", "f": "1.5", "l": "x"}, "junk", {"f": "1"}]}) == [
        Balance("BTC", Decimal("1.5"), Decimal(0))
    ]
    trade = {"e": "executionReport", "s": "S", "i": 1, "x": "TRADE", "X": "FILLED", "t": 7, "T": 5}
    assert dedup_key(trade) == dedup_key(dict(trade, E=99))  # the event time is not identity
    assert dedup_key(trade) != dedup_key(dict(trade, t=8))


async def test_order_lifecycle_events(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    status = stream.status()
    assert (status["level"], status["connected"], status["subscription_id"], status["gaps"]) == (
        "OK",
        True,
        0,
        0,
    )
    cid = await buy(rest, "60000")
    new = (await eventually(lambda: seen.of(cid, "NEW")))[0]
    assert (new.status, new.symbol, new.side, new.type, new.time_in_force) == (
        VenueStatus.NEW, "BTCUSDT", Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
    )  # fmt: skip
    assert (new.price, new.orig_qty, new.executed_qty, new.fills) == (Decimal(60000), Decimal("0.001"), 0, ())
    await eventually(
        lambda: any(b.asset == "USDT" and b.locked == Decimal(60) for bs in seen.balances for b in bs)
    )
    admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "59990"}).raise_for_status()
    trade = (await eventually(lambda: seen.of(cid, "TRADE")))[0]
    assert trade.status is VenueStatus.FILLED
    assert (trade.executed_qty, trade.cumulative_quote_qty) == (Decimal("0.001"), Decimal(60))
    (fill,) = trade.fills
    assert (fill.price, fill.qty, fill.commission, fill.commission_asset) == (
        Decimal(60000), Decimal("0.001"), Decimal("0.000001"), "BTC",
    )  # fmt: skip
    assert fill.trade_id > 0
    assert trade.raw["m"] is True  # the maker flag stays in raw
    other = await buy(rest)
    await eventually(lambda: seen.of(other, "NEW"))
    await rest.cancel({"symbol": "BTCUSDT", "origClientOrderId": other, "newClientOrderId": "cancel-1"})
    gone = (await eventually(lambda: seen.of(other, "CANCELED")))[0]
    assert gone.status is VenueStatus.CANCELED  # named by the order's own id (C), not the cancel's (c)
    assert gone.raw["c"] == "cancel-1"
    assert stream.status()["events"] >= 5
    assert stream.status()["last_event_age_s"] is not None


async def test_drop_is_a_gap_then_resubscribed(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    assert admin.post("/_sim/ws_api/faults", json={"drop": True}).json()["dropped"] == 1
    await eventually(lambda: len(seen.subscribed) == 2)
    assert len(seen.gaps) == 1
    assert "disconnected" in seen.gaps[0]
    cid = await buy(rest)
    await eventually(lambda: seen.of(cid, "NEW"))
    status = stream.status()
    assert (status["level"], status["gaps"], status["connects"], status["rollovers"]) == ("OK", 1, 2, 0)


async def test_event_stream_terminated_is_a_gap_then_resubscribed(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    admin.post("/_sim/ws_api/faults", json={"terminate": True}).raise_for_status()
    await eventually(lambda: len(seen.subscribed) == 2)
    assert seen.gaps == ["eventStreamTerminated"]
    cid = await buy(rest)
    await eventually(lambda: seen.of(cid, "NEW"))
    assert stream.status()["state"] == "OK"


async def _place_while(rest: BinanceSpotClient, done: asyncio.Event) -> list[str]:
    placed = []
    while not done.is_set():
        placed.append(await buy(rest))
        await asyncio.sleep(0.02)
    return placed


async def test_server_shutdown_rolls_over_without_gap_or_loss(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    done = asyncio.Event()
    placing = asyncio.create_task(_place_while(rest, done))
    await asyncio.sleep(0.2)
    admin.post("/_sim/ws_api/faults", json={"shutdown": 1.5}).raise_for_status()
    await eventually(lambda: stream.status()["rollovers"] == 1)
    await asyncio.sleep(1.8)  # past the old connection's close
    done.set()
    placed = await placing
    await eventually(lambda: all(seen.of(cid, "NEW") for cid in placed))
    assert all(len(seen.of(cid, "NEW")) == 1 for cid in placed)
    assert seen.gaps == []
    assert len(seen.subscribed) == 2
    assert stream.status()["connected"] is True


async def test_compressed_24h_rollover_has_no_gap_and_no_duplicates(rest: BinanceSpotClient) -> None:
    # the server ends connections at 2.5 s (its "24 h"); the client rolls over at 0.6 s, well before that
    with SimulatorServer(ws_max_lifetime_s=2.5) as short:
        client = BinanceSpotClient(
            "testnet", short.api_key, short.api_secret, {"rest": short.base_url, "ws": short.ws_url}
        )
        seen = Collector()
        stream = seen.stream(short, max_connection_age_s=0.6)
        await stream.start()
        try:
            await eventually(lambda: seen.subscribed)
            done = asyncio.Event()
            placing = asyncio.create_task(_place_while(client, done))
            await eventually(lambda: stream.status()["rollovers"] >= 4, timeout=10)
            done.set()
            placed = await placing
            await eventually(lambda: all(seen.of(cid, "NEW") for cid in placed))
        finally:
            await stream.stop()
            await client.aclose()
    assert seen.gaps == []
    keys = [(o.order_id, o.raw["x"]) for o in seen.orders]
    assert len(keys) == len(set(keys))  # nothing delivered twice across the overlaps
    assert len(placed) > 10
    assert all(len(seen.of(cid, "NEW")) == 1 for cid in placed)


async def test_duplicated_event_is_delivered_once(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    admin.post("/_sim/ws_api/faults", json={"duplicate": 2}).raise_for_status()
    cid = await buy(rest)
    await eventually(lambda: stream.status()["duplicates_dropped"] == 2)
    assert len(seen.of(cid)) == 1
    assert len(seen.balances) == 1


async def test_server_pings_are_answered_by_the_library() -> None:
    # the server pings every 0.2 s and drops a client that does not answer within 1 s; our own pings are off
    with SimulatorServer(ws_ping_interval=0.2, ws_ping_timeout=1.0) as sim:
        seen = Collector()
        stream = seen.stream(sim, ping_interval_s=None)
        await stream.start()
        try:
            await eventually(lambda: seen.subscribed)
            await asyncio.sleep(2.5)
            status = stream.status()
        finally:
            await stream.stop()
    assert (status["connects"], status["gaps"], status["connected"]) == (1, 0, True)


async def test_refused_subscription_is_error_and_retried(sim: SimulatorServer) -> None:
    seen = Collector()
    states: list[tuple[StreamState, StreamState]] = []
    stream = seen.stream(
        sim, secret="wrong", on_state_change=lambda old, new, detail: states.append((old, new))
    )
    await stream.start()
    try:
        await eventually(lambda: stream.status()["connects"] >= 3)
        status = stream.status()
    finally:
        await stream.stop()
    assert status["level"] == "ERROR"
    assert "-1022" in status["last_error"]
    assert seen.gaps == []  # never subscribed: nothing was covered, so nothing was missed
    assert states[:2] == [
        (StreamState.STOPPED, StreamState.CONNECTING),
        (StreamState.CONNECTING, StreamState.ERROR),
    ]
    assert stream.status()["state"] == "STOPPED"


async def test_unreachable_venue_is_error_and_retried() -> None:
    with SimulatorServer() as gone:
        url = f"{gone.ws_url}/ws-api/v3"
    stream = UserDataStream.for_profile("x", "k", "s", url=url, backoff_initial_s=0.01, backoff_max_s=0.05)
    await stream.start()
    try:
        await eventually(lambda: stream.status()["connects"] == 0 and stream.state is StreamState.ERROR)
        assert "subscribe failed" in (stream.status()["last_error"] or "")
    finally:
        await stream.stop()


async def test_a_failing_callback_does_not_break_the_stream(
    sim: SimulatorServer, rest: BinanceSpotClient
) -> None:
    seen = Collector()
    stream = seen.stream(sim)

    def boom(order: VenueOrder) -> None:
        seen.orders.append(order)
        raise RuntimeError("consumer bug")

    stream.on_order = boom
    await stream.start()
    try:
        await eventually(lambda: seen.subscribed)
        first, second = await buy(rest), await buy(rest)
        await eventually(lambda: seen.of(first) and seen.of(second))
        assert stream.status()["gaps"] == 0
    finally:
        await stream.stop()


async def test_a_skipped_fill_report_is_a_gap_on_a_live_connection(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    cid = f"us-{next(_ids)}"
    payload = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "60000"}
    await rest.order({**payload, "quantity": "0.15000", "newClientOrderId": cid})  # fills 0.05 per price move
    await eventually(lambda: seen.of(cid, "NEW") and len(seen.balances) == 1)
    admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "59990"})
    await eventually(lambda: len(seen.of(cid, "TRADE")) == 1 and len(seen.balances) == 2)
    admin.post("/_sim/ws_api/faults", json={"skip": 1})
    admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "59980"})  # this fill's report is lost
    await eventually(lambda: len(seen.balances) == 3)
    assert seen.gaps == []
    admin.post("/_sim/price", json={"symbol": "BTCUSDT", "price": "59970"})
    await eventually(lambda: seen.gaps)
    assert "missed fill report(s)" in seen.gaps[0]
    assert [o.status for o in seen.of(cid, "TRADE")] == [VenueStatus.PARTIALLY_FILLED, VenueStatus.FILLED]
    status = stream.status()
    assert (status["gaps"], status["connects"], status["level"]) == (1, 1, "OK")  # no reconnect needed


async def test_ed25519_key_subscribes_by_signature(sim: SimulatorServer, rest: BinanceSpotClient) -> None:
    private = Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    private_pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    sim.app.state.ws_api.register_ed25519("ed-key", public_pem)
    seen = Collector()
    stream = UserDataStream.for_profile(
        "simulator", "ed-key", private_pem, key_type="ED25519", url=f"{sim.ws_url}/ws-api/v3",
        on_order=seen.orders.append, on_subscribed=seen.subscribed.append,
    )  # fmt: skip
    await stream.start()
    try:
        await eventually(lambda: seen.subscribed)
        cid = await buy(rest)
        await eventually(lambda: seen.of(cid, "NEW"))
    finally:
        await stream.stop()


async def test_shutdown_with_an_immediate_close_is_a_gap(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    admin.post("/_sim/ws_api/faults", json={"shutdown": 0}).raise_for_status()
    await eventually(lambda: len(seen.subscribed) == 2)
    # The old connection closed before the new subscription was live: one gap, waited for (on a loaded
    # run its report can land just after the new subscription's), and only one
    await eventually(lambda: len(seen.gaps) == 1)
    cid = await buy(rest)
    await eventually(lambda: seen.of(cid, "NEW"))
    assert len(seen.gaps) == 1
    assert stream.status()["level"] == "OK"


async def test_reordered_events_are_all_delivered(
    live: tuple[UserDataStream, Collector], rest: BinanceSpotClient, admin: httpx.Client
) -> None:
    stream, seen = live
    admin.post("/_sim/ws_api/faults", json={"reorder": 1}).raise_for_status()
    cid = await buy(rest)
    await eventually(lambda: seen.of(cid, "NEW") and seen.balances)
    assert stream.status()["gaps"] == 0


async def test_a_supervisor_bug_is_logged_reported_and_survived(
    sim: SimulatorServer, rest: BinanceSpotClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Collector()
    stream = seen.stream(sim)
    real_wait = stream._wait
    calls = 0

    async def buggy_once(link: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("supervisor bug")
        return await real_wait(link)

    stream._wait = buggy_once  # type: ignore[method-assign]
    await stream.start()
    try:
        await eventually(lambda: len(seen.subscribed) == 2)
        assert seen.gaps == ["internal error: RuntimeError: supervisor bug"]
        assert "user data stream supervisor failed" in caplog.text
        cid = await buy(rest)
        await eventually(lambda: seen.of(cid, "NEW"))
        assert stream.status()["level"] == "OK"
    finally:
        await stream.stop()
