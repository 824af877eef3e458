"""BinanceExchange (ExchangePort) over a fake venue on httpx.MockTransport."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from adapters.binance.exchange import BinanceExchange, order_payload
from adapters.binance.rest import BinanceSpotClient
from adapters.binance.user_stream import parse_execution_report
from engine.errors import ExchangeRejected, ExecutionStatusUnknown
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.binance.helpers import API_KEY, BASE, SECRET, FakeVenue, error, ok

REQ = OrderRequest(
    symbol="BTCUSDT",
    side=Side.BUY,
    type=OrderType.LIMIT,
    client_order_id="pb-1",
    quantity=Decimal("0.00100"),
    price=Decimal("50000.00"),
    time_in_force=TimeInForce.GTC,
)


def order_json(cid: str, status: str = "NEW", executed: str = "0.00000000", **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "orderId": 11,
        "clientOrderId": cid,
        "status": status,
        "origQty": "0.00100000",
        "executedQty": executed,
        "cummulativeQuoteQty": "0.00000000",
        "price": "50000.00",
        **extra,
    }


def trade_json(trade_id: int, qty: str, order_id: int = 11) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "id": trade_id, "orderId": order_id, "orderListId": -1, "price": "50000.00",
            "qty": qty, "quoteQty": "1", "commission": "0.00000010", "commissionAsset": "BTC", "time": 1,
            "isBuyer": True, "isMaker": True, "isBestMatch": True}  # fmt: skip


def serve_trades(venue: FakeVenue, trades: list[dict[str, Any]]) -> None:
    """GET /api/v3/myTrades as rest-api.md pages it: orderId, fromId (>=), limit."""

    def answer(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        rows = [t for t in trades if str(t["orderId"]) == p["orderId"] and t["id"] >= int(p.get("fromId", 0))]
        return ok(rows[: int(p.get("limit", 500))])

    venue.route("GET", "/api/v3/myTrades", answer)


def make(venue: FakeVenue) -> BinanceExchange:
    client = BinanceSpotClient("testnet", API_KEY, SECRET, BASE, transport=httpx.MockTransport(venue))
    return BinanceExchange(client, poll_interval_s=0)


def test_payload_uses_binance_names_and_plain_decimals() -> None:
    assert order_payload(REQ) == {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.00100",
        "price": "50000.00",
        "newClientOrderId": "pb-1",
        "newOrderRespType": "FULL",
    }
    market = OrderRequest("BTCUSDT", Side.SELL, OrderType.MARKET, "pb-2", quote_order_qty=Decimal("1E+1"))
    assert order_payload(market)["quoteOrderQty"] == "10"


async def test_place_sends_full_and_maps_fills() -> None:
    venue = FakeVenue()
    fills = [
        {
            "price": "50000.00",
            "qty": "0.00100000",
            "commission": "0.00000100",
            "commissionAsset": "BTC",
            "tradeId": 5,
        }
    ]
    venue.route(
        "POST",
        "/api/v3/order",
        lambda r, p: ok(
            {**order_json(p["newClientOrderId"], "FILLED", "0.00100000"), "fills": fills, "q": p}
        ),
    )
    ex = make(venue)
    assert ex.venue == "binance-testnet"
    order = await ex.place(REQ)
    assert order.status is VenueStatus.FILLED
    assert order.client_order_id == "pb-1"
    assert order.fills[0].trade_id == 5
    assert order.fills[0].price == Decimal("50000.00")
    sent = order.raw["q"]
    assert sent["newOrderRespType"] == "FULL"
    assert sent["newClientOrderId"] == "pb-1"
    await ex.close()


async def test_place_test_goes_to_order_test_only() -> None:
    venue = FakeVenue()
    venue.route("POST", "/api/v3/order/test", lambda r, p: ok({}))
    ex = make(venue)
    assert await ex.place_test(REQ) == {}
    assert venue.count("POST", "/api/v3/order/test") == 1
    assert venue.count("POST", "/api/v3/order") == 0
    await ex.close()


async def test_cancel_by_orig_client_order_id() -> None:
    venue = FakeVenue()
    venue.route(
        "DELETE",
        "/api/v3/order",
        lambda r, p: ok(
            {**order_json("cancel-xyz", "CANCELED"), "origClientOrderId": p["origClientOrderId"]}
        ),
    )
    ex = make(venue)
    order = await ex.cancel("BTCUSDT", "pb-1")
    assert order.client_order_id == "pb-1"  # the cancelled order's id, not the cancel's
    assert order.status is VenueStatus.CANCELED
    await ex.close()


async def test_query_none_on_minus_2013_and_never_resends() -> None:
    venue = FakeVenue()
    venue.route("GET", "/api/v3/order", lambda r, p: error(400, -2013, "Order does not exist."))
    ex = make(venue)
    assert await ex.query("BTCUSDT", "pb-1") is None
    assert venue.count("POST", "/api/v3/order") == 0
    venue.route("GET", "/api/v3/order", lambda r, p: error(400, -1121, "Invalid symbol."))
    with pytest.raises(ExchangeRejected) as ei:
        await ex.query("NOPE", "pb-1")
    assert ei.value.reason == "INVALID_SYMBOL"
    await ex.close()


async def test_rules_are_cached_and_prices_are_mid() -> None:
    venue = FakeVenue()
    sym = {
        "symbol": "BTCUSDT",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
        "status": "TRADING",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"}
        ],
    }
    venue.route("GET", "/api/v3/exchangeInfo", lambda r, p: ok({"rateLimits": [], "symbols": [sym]}))
    book = {"symbol": "BTCUSDT", "bidPrice": "100.00", "askPrice": "100.02"}
    venue.route("GET", "/api/v3/ticker/bookTicker", lambda r, p: ok(book))
    ex = make(venue)
    rules = await ex.symbol_rules()
    assert rules["BTCUSDT"].tick_size == Decimal("0.01")
    await ex.symbol_rules()
    assert venue.count("GET", "/api/v3/exchangeInfo") == 1
    assert await ex.last_price("BTCUSDT") == Decimal("100.01")
    book["bidPrice"] = "0.00000000"
    assert await ex.last_price("BTCUSDT") == Decimal("100.02")
    book["askPrice"] = "0.00000000"
    assert await ex.last_price("BTCUSDT") is None
    await ex.close()


async def test_ping_measures_skew_and_account_maps() -> None:
    import time

    venue = FakeVenue(server_time_ms=lambda: int(time.time() * 1000) + 3000)
    venue.route(
        "GET",
        "/api/v3/account",
        lambda r, p: ok(
            {
                "canTrade": True,
                "permissions": ["SPOT"],
                "balances": [{"asset": "USDT", "free": "1000.5", "locked": "0"}],
            }
        ),
    )
    ex = make(venue)
    ping = await ex.ping()
    assert ping.clock_skew_ms == pytest.approx(3000, abs=100)
    assert ping.rtt_ms >= 0
    acct = await ex.account()
    assert acct.can_trade
    assert acct.permissions == ("SPOT",)
    assert acct.balances[0].free == Decimal("1000.5")
    st = ex.status()
    assert st["clock"]["level"] == "WARN"  # 3 s skew
    assert st["rate_limit"]["level"] == "OK"
    await ex.close()


async def test_poller_reports_partial_fill_then_final_state() -> None:
    venue = FakeVenue()
    book: dict[str, dict[str, Any]] = {}
    venue.route(
        "POST",
        "/api/v3/order",
        lambda r, p: ok(book.setdefault(p["newClientOrderId"], order_json(p["newClientOrderId"]))),
    )
    venue.route(
        "GET",
        "/api/v3/openOrders",
        lambda r, p: ok([o for o in book.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]),
    )
    venue.route(
        "GET",
        "/api/v3/order",
        lambda r, p: (
            ok(book[p["origClientOrderId"]])
            if p["origClientOrderId"] in book
            else error(400, -2013, "Order does not exist.")
        ),
    )
    trades: list[dict[str, Any]] = []
    serve_trades(venue, trades)
    ex = make(venue)
    seen: list[VenueOrder] = []
    ex.on_update(seen.append)
    await ex.place(REQ)
    assert await ex.poll_once() == []  # nothing changed since the place answer
    book["pb-1"] = order_json("pb-1", "PARTIALLY_FILLED", "0.00050000")
    trades.append(trade_json(7, "0.00050000"))
    await ex.poll_once()
    assert [(o.status, o.executed_qty) for o in seen] == [(VenueStatus.PARTIALLY_FILLED, Decimal("0.0005"))]
    assert [(f.trade_id, f.qty, f.commission_asset, f.is_maker) for f in seen[0].fills] == [
        (7, Decimal("0.0005"), "BTC", True)
    ]  # the fill learned by REST carries its trade (myTrades)
    book["pb-1"] = order_json("pb-1", "FILLED", "0.00100000")  # leaves the open list: queried
    trades.append(trade_json(9, "0.00050000"))
    await ex.poll_once()
    assert seen[-1].status is VenueStatus.FILLED
    assert [f.trade_id for f in seen[-1].fills] == [7, 9]  # the engine drops the one it has by trade id
    assert ex.status()["tracked_orders"] == 0
    await ex.poll_once()
    assert len(seen) == 2
    await ex.close()


async def test_unknown_outcome_stays_tracked_and_turns_up_via_the_poller() -> None:
    venue = FakeVenue()
    book: dict[str, dict[str, Any]] = {}

    def lost_response(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        book[p["newClientOrderId"]] = order_json(p["newClientOrderId"])  # executed, answer lost
        raise httpx.ReadTimeout("timed out", request=r)

    venue.route("POST", "/api/v3/order", lost_response)
    venue.route("GET", "/api/v3/openOrders", lambda r, p: ok(list(book.values())))
    ex = make(venue)
    seen: list[VenueOrder] = []
    ex.on_update(seen.append)
    with pytest.raises(ExecutionStatusUnknown):
        await ex.place(REQ)
    await ex.poll_once()
    assert [o.client_order_id for o in seen] == ["pb-1"]
    assert venue.count("POST", "/api/v3/order") == 1
    await ex.close()


async def test_rejected_place_is_not_tracked() -> None:
    venue = FakeVenue()
    venue.route("POST", "/api/v3/order", lambda r, p: error(400, -1013, "Filter failure: LOT_SIZE"))
    ex = make(venue)
    with pytest.raises(ExchangeRejected) as ei:
        await ex.place(REQ)
    assert ei.value.reason == "FILTER_FAILURE"
    assert ex.status()["tracked_orders"] == 0
    await ex.close()


async def test_orders_learned_by_query_are_polled_too() -> None:
    """After a restart the engine only queries its open orders: their later fills must still be pushed."""
    venue = FakeVenue()
    book = {"pb-1": order_json("pb-1")}
    venue.route(
        "GET", "/api/v3/openOrders", lambda r, p: ok([o for o in book.values() if o["status"] == "NEW"])
    )
    venue.route("GET", "/api/v3/order", lambda r, p: ok(book[p["origClientOrderId"]]))
    serve_trades(venue, [trade_json(3, "0.00100000")])
    ex = make(venue)
    seen: list[VenueOrder] = []
    ex.on_update(seen.append)
    assert (await ex.query("BTCUSDT", "pb-1")) is not None
    assert ex.status()["tracked_orders"] == 1
    book["pb-1"] = order_json("pb-1", "FILLED", "0.00100000")
    await ex.poll_once()
    assert [o.status for o in seen] == [VenueStatus.FILLED]
    await ex.close()


async def test_order_trades_page_by_from_id_and_stop_at_the_snapshot() -> None:
    """More than one page (1,000) of trades is read by fromId; trades past the snapshot's executedQty
    (made after it) are left to the update that reports them."""
    venue = FakeVenue()
    serve_trades(venue, [trade_json(100 + i, "0.00000001") for i in range(1500)])
    ex = make(venue)
    order = VenueOrder(
        "BTCUSDT", "pb-1", VenueStatus.PARTIALLY_FILLED, 11, Decimal("1"), Decimal("0.00001200")
    )
    fills = await ex.order_trades(order)
    assert [f.trade_id for f in fills] == list(range(100, 1300))
    assert venue.count("GET", "/api/v3/myTrades") == 2
    await ex.close()


async def test_trades_lagging_the_order_are_asked_again() -> None:
    venue = FakeVenue()
    trades: list[dict[str, Any]] = []

    def lagging(r: httpx.Request, p: dict[str, str]) -> httpx.Response:
        if venue.count("GET", "/api/v3/myTrades") >= 2:  # the trade reaches myTrades' database late
            trades[:] = [trade_json(5, "0.00100000")]
        return ok(list(trades))

    venue.route("GET", "/api/v3/myTrades", lagging)
    venue.route("GET", "/api/v3/order", lambda r, p: ok(order_json("pb-1", "FILLED", "0.00100000")))
    ex = make(venue)
    ex.trades_retry_s = 0.0
    found = await ex.query("BTCUSDT", "pb-1")
    assert found is not None
    assert [f.trade_id for f in found.fills] == [5]
    await ex.close()


async def test_a_late_stream_report_of_a_trade_the_catch_up_counted_without_it_reaches_the_engine() -> None:
    """The poller's catch-up sees the order moved but GET /myTrades does not show its trade yet, so the
    view goes out without it; the stream's executionReport of that trade then arrives with the same
    status and executedQty (or a smaller one, for an earlier trade). It is no news to the order's state,
    but its trade is: the engine journals it (engine.late_trades), so it is passed on, not deduplicated."""
    venue = FakeVenue()
    book: dict[str, dict[str, Any]] = {}
    venue.route(
        "POST", "/api/v3/order",
        lambda r, p: ok(book.setdefault(p["newClientOrderId"], order_json(p["newClientOrderId"]))),
    )  # fmt: skip
    venue.route(
        "GET", "/api/v3/openOrders",
        lambda r, p: ok([o for o in book.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]),
    )  # fmt: skip
    serve_trades(venue, [])  # myTrades shows nothing yet
    ex = make(venue)
    ex.trades_attempts = 1
    stream = SimpleNamespace()
    ex.attach_user_stream(stream)
    seen: list[VenueOrder] = []
    ex.on_update(seen.append)
    await ex.place(REQ)
    book["pb-1"] = order_json("pb-1", "PARTIALLY_FILLED", "0.00060000")
    await ex.poll_once()
    assert [(o.executed_qty, o.fills) for o in seen] == [(Decimal("0.0006"), ())]
    report = {"e": "executionReport", "s": "BTCUSDT", "c": "pb-1", "S": "BUY", "o": "LIMIT", "q": "0.001",
              "p": "50000", "X": "PARTIALLY_FILLED", "x": "TRADE", "i": 11, "l": "0.0004", "z": "0.0004",
              "L": "50000", "n": "0", "N": "BTC", "t": 7, "Z": "20"}  # fmt: skip
    stream.on_order(_report(report))  # the first trade's report: an earlier executedQty
    stream.on_order(_report({**report, "l": "0.0002", "z": "0.0006", "t": 8}))  # the same one
    assert [[f.trade_id for f in o.fills] for o in seen] == [[], [7], [8]]
    stream.on_order(_report({**report, "x": "NEW", "t": -1}))  # no trade, nothing new
    assert len(seen) == 3
    await ex.close()


def _report(event: dict[str, Any]) -> VenueOrder:
    order = parse_execution_report(event)
    assert order is not None
    return order
