"""PaperExchange behind engine.ports.ExchangePort: engine types out, engine errors with reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal as D

import pytest

from adapters.paper import PaperExchange
from adapters.venue import DEFAULT_SYMBOLS, MatchingEngine, VenueError
from engine.errors import ExchangeRejected
from engine.ports import ExchangePort
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.waiting import eventually_async as eventually

NOW_MS = 1_750_000_000_000


def req(
    cid: str,
    *,
    side: Side = Side.BUY,
    qty: str = "0.01",
    price: str | None = "60000",
    type_: OrderType = OrderType.LIMIT,
    tif: TimeInForce | None = TimeInForce.GTC,
    symbol: str = "BTCUSDT",
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=type_,
        client_order_id=cid,
        quantity=D(qty),
        price=D(price) if price is not None else None,
        time_in_force=tif,
    )


@pytest.fixture
async def paper() -> AsyncIterator[PaperExchange]:
    ex = PaperExchange(clock_ms=lambda: NOW_MS)
    yield ex
    await ex.close()


def test_is_an_exchange_port(paper: PaperExchange) -> None:
    port: ExchangePort = paper
    assert port.venue == "paper"


async def test_reads(paper: PaperExchange) -> None:
    ping = await paper.ping()
    assert (ping.server_time_ms, ping.clock_skew_ms, ping.rtt_ms) == (NOW_MS, 0.0, 0.0)
    acct = await paper.account()
    assert acct.can_trade is True
    assert acct.permissions == ("SPOT",)
    assert {b.asset: b.free for b in acct.balances}["USDT"] == D(100000)
    assert await paper.symbol_rules() == DEFAULT_SYMBOLS
    assert await paper.last_price("BTCUSDT") == D(65000)
    assert await paper.last_price("NOPE") is None


async def test_place_market_returns_the_fills(paper: PaperExchange) -> None:
    order = await paper.place(req("m-1", qty="0.06", price=None, type_=OrderType.MARKET, tif=None))
    assert order.status is VenueStatus.FILLED
    assert order.client_order_id == "m-1"
    assert order.executed_qty == D("0.06")
    assert [(f.price, f.qty) for f in order.fills] == [(D("65000.01"), D("0.05")), (D("65000.02"), D("0.01"))]
    assert all(f.commission_asset == "BTC" for f in order.fills)
    assert order.raw["cummulativeQuoteQty"] == "3900.00070000"


async def test_limit_rests_then_fills_on_price_moves_and_pushes_updates(paper: PaperExchange) -> None:
    updates: list[VenueOrder] = []
    paper.on_update(updates.append)
    placed = await paper.place(req("rest-1", qty="0.08", price="64000"))
    assert placed.status is VenueStatus.NEW
    assert updates == []  # the caller has the answer already
    assert [o.client_order_id for o in await paper.open_orders("BTCUSDT")] == ["rest-1"]
    paper.engine.set_price("BTCUSDT", D(63990))
    paper.engine.set_price("BTCUSDT", D(63980))
    assert [(u.status, u.executed_qty) for u in updates] == [
        (VenueStatus.PARTIALLY_FILLED, D("0.05")),
        (VenueStatus.FILLED, D("0.08")),
    ]
    assert [f.qty for u in updates for f in u.fills] == [D("0.05"), D("0.03")]
    assert len({f.trade_id for u in updates for f in u.fills}) == 2
    assert await paper.open_orders() == []
    queried = await paper.query("BTCUSDT", "rest-1")
    assert queried is not None
    assert queried.status is VenueStatus.FILLED


async def test_cancel_and_query(paper: PaperExchange) -> None:
    await paper.place(req("c-1"))
    cancelled = await paper.cancel("BTCUSDT", "c-1")
    assert cancelled.status is VenueStatus.CANCELED
    assert cancelled.client_order_id == "c-1"  # the order's id, not the cancel's
    assert await paper.query("BTCUSDT", "never-sent") is None
    with pytest.raises(ExchangeRejected) as exc:
        await paper.cancel("BTCUSDT", "c-1")
    assert (exc.value.reason, exc.value.code, str(exc.value)) == (
        "UNKNOWN_ORDER",
        -2011,
        "Unknown order sent.",
    )


async def test_place_test_validates_without_executing(paper: PaperExchange) -> None:
    assert await paper.place_test(req("t-1")) == {}
    assert paper.engine.ground_truth() == []
    with pytest.raises(ExchangeRejected) as exc:
        await paper.place_test(req("t-2", qty="0.000001"))
    assert (exc.value.reason, exc.value.code) == ("FILTER_FAILURE", -1013)


@pytest.mark.parametrize(
    ("request_", "reason", "code", "msg"),
    [
        (req("e-1", qty="0.000015"), "FILTER_FAILURE", -1013, "Filter failure: LOT_SIZE"),
        (req("e-2", qty="5"), "INSUFFICIENT_BALANCE", -2010, "Account has insufficient balance for requested action."),
        (req("e-3", symbol="DOGEUSDT"), "INVALID_SYMBOL", -1121, "Invalid symbol."),
        (req("e-4", qty="0.000000001"), "INVALID_PARAMETER", -1111, "Parameter 'quantity' has too much precision."),
        (req("e-5", tif=None), "INVALID_PARAMETER", -1102,
         "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
        (req("e-6", type_=OrderType.LIMIT_MAKER, tif=None, price="65000.01"), "ORDER_WOULD_TAKE", -2010,
         "Order would immediately match and take."),
        (req("e-7", type_=OrderType.STOP_LOSS, tif=None, price=None), "INVALID_PARAMETER", -1102,
         "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."),
    ],
)  # fmt: skip
async def test_venue_errors_become_engine_errors(
    paper: PaperExchange, request_: OrderRequest, reason: str, code: int, msg: str
) -> None:
    with pytest.raises(ExchangeRejected) as exc:
        await paper.place(request_)
    assert (exc.value.reason, exc.value.code, str(exc.value), exc.value.http_status) == (
        reason,
        code,
        msg,
        400,
    )
    assert isinstance(exc.value.__cause__, VenueError)


async def test_duplicate_open_client_id(paper: PaperExchange) -> None:
    await paper.place(req("dup"))
    with pytest.raises(ExchangeRejected) as exc:
        await paper.place(req("dup"))
    assert (exc.value.reason, exc.value.code) == ("DUPLICATE_ORDER", -2010)


async def test_market_closed_reason() -> None:
    halted = {**DEFAULT_SYMBOLS, "BTCUSDT": replace(DEFAULT_SYMBOLS["BTCUSDT"], status="BREAK")}
    paper = PaperExchange(MatchingEngine(symbols=halted))
    with pytest.raises(ExchangeRejected) as exc:
        await paper.place(req("x"))
    assert exc.value.reason == "MARKET_CLOSED"
    with pytest.raises(ExchangeRejected) as exc:
        await paper.open_orders("NOPE")
    assert exc.value.reason == "INVALID_SYMBOL"


async def test_a_failing_listener_does_not_break_the_venue(paper: PaperExchange) -> None:
    seen: list[VenueOrder] = []

    def broken(order: VenueOrder) -> None:
        raise RuntimeError("listener bug")

    paper.on_update(broken)
    paper.on_update(seen.append)
    await paper.place(req("b-1", price="64000"))
    paper.engine.set_price("BTCUSDT", D(63000))
    assert [u.status for u in seen] == [VenueStatus.FILLED]


async def test_price_driver_moves_prices_until_close() -> None:
    paper = PaperExchange(MatchingEngine(seed=1))
    start = dict(paper.engine.prices)
    paper.start_price_driver(0.001)
    await eventually(lambda: paper.engine.prices != start)
    await paper.close()
    stopped = dict(paper.engine.prices)
    await asyncio.sleep(0.01)
    assert paper.engine.prices == stopped


def test_constructor_starts_nothing() -> None:
    paper = PaperExchange()
    assert paper._driver is None
