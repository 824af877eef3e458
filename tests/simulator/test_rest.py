"""REST endpoints of the simulator over HTTP: market data, the order lifecycle, trades, unknown paths."""

from __future__ import annotations

import json

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import FakeClock, SignedClient, limit_buy


def test_ping_time_and_exchange_info(fake_client: SignedClient, clock: FakeClock) -> None:
    assert fake_client.get("/api/v3/ping").json() == {}
    assert fake_client.get("/api/v3/time").json() == {"serverTime": clock()}
    info = fake_client.get("/api/v3/exchangeInfo").json()
    assert info["timezone"] == "UTC"
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    one = fake_client.get("/api/v3/exchangeInfo", symbol="ETHUSDT").json()["symbols"]
    assert [s["symbol"] for s in one] == ["ETHUSDT"]
    assert one[0]["permissions"] == []
    assert one[0]["permissionSets"] == [["SPOT"]]
    clock.advance(60_000)  # a fresh weight window: the test server's limit is 60
    two = fake_client.get("/api/v3/exchangeInfo", symbols=json.dumps(["BTCUSDT", "BNBUSDT"])).json()
    assert [s["symbol"] for s in two["symbols"]] == ["BTCUSDT", "BNBUSDT"]
    bad = fake_client.get("/api/v3/exchangeInfo", symbol="NOPE")
    assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})


def test_book_ticker_price_and_depth(fake_client: SignedClient) -> None:
    bt = fake_client.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT").json()
    assert set(bt) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}
    assert float(bt["bidPrice"]) < float(bt["askPrice"])
    everything = fake_client.get("/api/v3/ticker/bookTicker").json()
    assert isinstance(everything, list)
    assert len(everything) == 3
    price = fake_client.get("/api/v3/ticker/price", symbol="BTCUSDT").json()
    assert price == {"symbol": "BTCUSDT", "price": "65000.00000000"}
    depth = fake_client.get("/api/v3/depth", symbol="BTCUSDT", limit="3").json()
    assert len(depth["bids"]) == len(depth["asks"]) == 3
    assert depth["asks"][0][0] == bt["askPrice"]
    assert fake_client.get("/api/v3/depth").json()["code"] == -1102
    assert fake_client.get("/api/v3/depth", symbol="BTCUSDT", limit="6000").json()["code"] == -1100


def test_price_admin_moves_the_market(fake_client: SignedClient) -> None:
    r = fake_client.raw("POST", "/_sim/price", json={"symbol": "BTCUSDT", "price": "70000"})
    assert r.status_code == 200
    assert fake_client.get("/api/v3/ticker/price", symbol="BTCUSDT").json()["price"] == "70000.00000000"
    assert fake_client.raw("POST", "/_sim/price", json={"symbol": "NOPE", "price": "1"}).status_code == 400
    assert (
        fake_client.raw("POST", "/_sim/price", json={"symbol": "BTCUSDT", "price": "-1"}).status_code == 400
    )


def test_order_lifecycle(fake_client: SignedClient) -> None:
    placed = fake_client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="life-1"))
    assert placed.status_code == 200
    body = placed.json()
    assert (body["status"], body["clientOrderId"], body["fills"]) == ("NEW", "life-1", [])
    oid = str(body["orderId"])
    dup = fake_client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="life-1"))
    assert dup.json() == {"code": -2010, "msg": "Duplicate order sent."}
    q = fake_client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid}).json()
    assert (q["status"], q["origQty"]) == ("NEW", "0.00100000")
    mismatch = fake_client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid, "origClientOrderId": "other"}
    )
    assert mismatch.json()["code"] == -2039
    assert fake_client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT"}).json()["code"] == -1102
    account = fake_client.signed("GET", "/api/v3/account").json()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert usdt["locked"] == "60.00000000"
    opened = fake_client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json()
    assert [o["clientOrderId"] for o in opened] == ["life-1"]
    canceled = fake_client.signed(
        "DELETE",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "origClientOrderId": "life-1", "newClientOrderId": "c-1"},
    ).json()
    assert (canceled["status"], canceled["origClientOrderId"], canceled["clientOrderId"]) == (
        "CANCELED",
        "life-1",
        "c-1",
    )
    again = fake_client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid})
    assert again.json() == {"code": -2011, "msg": "Unknown order sent."}
    missing = fake_client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "424242"})
    assert missing.json() == {"code": -2013, "msg": "Order does not exist."}


def test_cancel_open_orders(fake_client: SignedClient, clock: FakeClock) -> None:
    nothing = fake_client.signed("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert nothing.json() == {"code": -2011, "msg": "Unknown order sent."}
    for price in ("60000", "60001"):
        fake_client.signed("POST", "/api/v3/order", limit_buy(price=price))
    result = fake_client.signed("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json()
    assert [o["status"] for o in result] == ["CANCELED", "CANCELED"]
    assert fake_client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json() == []


def test_market_order_fills_and_my_trades(fake_client: SignedClient, clock: FakeClock) -> None:
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.01",
        "newOrderRespType": "FULL",
    }
    placed = fake_client.signed("POST", "/api/v3/order", order).json()
    assert placed["status"] == "FILLED"
    trades = fake_client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}).json()
    assert [t["id"] for t in trades] == [f["tradeId"] for f in placed["fills"]]
    by_order = fake_client.signed(
        "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}
    )
    assert by_order.headers["X-MBX-USED-WEIGHT-1M"] == "25"  # 20 without orderId, 5 with
    after = fake_client.signed(
        "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "startTime": str(clock() + 1)}
    )
    assert after.json() == []


def test_test_order_validates_and_never_executes(fake_client: SignedClient) -> None:
    assert fake_client.signed("POST", "/api/v3/order/test", limit_buy()).json() == {}
    bad = fake_client.signed("POST", "/api/v3/order/test", limit_buy(price="60000.001"))
    assert bad.status_code == 400
    assert bad.json()["code"] in (-1013, -1111)
    rates = fake_client.signed("POST", "/api/v3/order/test", limit_buy(computeCommissionRates="true"))
    assert set(rates.json()) == {
        "standardCommissionForOrder",
        "specialCommissionForOrder",
        "taxCommissionForOrder",
        "discount",
    }
    truth = fake_client.raw("GET", "/_sim/ground_truth").json()
    assert (truth["orders"], truth["real_orders"], truth["test_orders"]) == ([], 0, 2)


def test_unknown_paths_and_sapi_are_404_json(fake_client: SignedClient) -> None:
    for path in ("/sapi/v1/account/apiRestrictions", "/api/v3/nope", "/"):
        r = fake_client.get(path)
        assert r.status_code == 404
        assert set(r.json()) == {"code", "msg"}
        assert "X-MBX-USED-WEIGHT-1M" not in r.headers
    assert fake_client.raw("PUT", "/api/v3/order").status_code == 405


def test_handler_crash_answers_like_binance(fake_sim: SimulatorServer, fake_client: SignedClient) -> None:
    def boom(symbol: str) -> dict:
        raise RuntimeError("bug")

    fake_sim.state.engine.book_ticker = boom  # type: ignore[method-assign]
    r = fake_client.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT")
    assert r.status_code == 500
    assert r.json()["code"] == -1000


def test_symbol_status_filter(fake_sim: SimulatorServer, fake_client: SignedClient) -> None:
    trading = fake_client.get("/api/v3/ticker/price", symbolStatus="TRADING").json()
    assert len(trading) == 3
    assert fake_client.get("/api/v3/ticker/bookTicker", symbolStatus="HALT").json() == []
    one = fake_client.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT", symbolStatus="HALT")
    assert (one.status_code, one.json()) == (
        400,
        {"code": -1220, "msg": "The symbol's status does not match the requested symbolStatus."},
    )
    assert fake_client.get("/api/v3/depth", symbol="BTCUSDT", symbolStatus="BREAK").json()["code"] == -1220
    halted = fake_client.get("/api/v3/exchangeInfo", symbolStatus="HALT").json()
    assert halted["symbols"] == []
    both = fake_client.get("/api/v3/exchangeInfo", symbol="BTCUSDT", symbolStatus="TRADING")
    assert both.json()["code"] == -1128


def test_microsecond_time_unit(fake_client: SignedClient, clock: FakeClock) -> None:
    r = fake_client.http.get("/api/v3/time", headers={"X-MBX-TIME-UNIT": "MICROSECOND"})
    assert r.json() == {"serverTime": clock() * 1000}
    placed = fake_client.signed("POST", "/api/v3/order", limit_buy())
    fake_client.http.headers["X-MBX-TIME-UNIT"] = "microsecond"
    q = fake_client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": str(placed.json()["orderId"])}
    )
    assert q.json()["time"] == placed.json()["transactTime"] * 1000
