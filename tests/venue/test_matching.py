"""Fills, resting orders, balances and responses of the matching engine."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from adapters.venue import MatchingEngine, VenueError
from tests.venue.conftest import NOW_MS, Recorder, balance, limit, market


def test_market_buy_sweeps_the_book_and_expires_when_it_runs_dry(venue: MatchingEngine) -> None:
    usdt0, btc0 = balance(venue, "USDT")[0], balance(venue, "BTC")[0]
    r = venue.place(market("BUY", qty="0.3"))  # five levels of 0.05 = 0.25 available
    assert r["status"] == "EXPIRED"
    assert r["expiryReason"] == "INSUFFICIENT_LIQUIDITY"
    assert r["executedQty"] == "0.25000000"
    assert r["origQty"] == "0.30000000"
    assert [f["price"] for f in r["fills"]] == [f"{65000 + i / 100:.8f}" for i in range(1, 6)]
    ids = [f["tradeId"] for f in r["fills"]]
    assert ids == sorted(set(ids))
    assert all(f["commissionAsset"] == "BTC" and f["commission"] == "0.00005000" for f in r["fills"])
    cost = sum(D(f["price"]) * D(f["qty"]) for f in r["fills"])
    assert D(r["cummulativeQuoteQty"]) == cost
    assert balance(venue, "USDT") == (usdt0 - cost, 0)
    assert balance(venue, "BTC") == (btc0 + D("0.25") - D("0.00025"), 0)


def test_market_sell_pays_commission_in_quote(venue: MatchingEngine) -> None:
    r = venue.place(market("SELL", qty="0.07"))
    assert r["status"] == "FILLED"
    assert [(f["price"], f["qty"]) for f in r["fills"]] == [
        ("64999.99000000", "0.05000000"),
        ("64999.98000000", "0.02000000"),
    ]
    quote = D("64999.99") * D("0.05") + D("64999.98") * D("0.02")
    fees = sum(D(f["commission"]) for f in r["fills"])
    assert fees == (quote * D("0.001")).quantize(D("0.00000001"))
    assert balance(venue, "USDT") == (D(100000) + quote - fees, 0)
    assert balance(venue, "BTC") == (D("0.93"), 0)


def test_market_buy_with_quote_order_qty(venue: MatchingEngine) -> None:
    r = venue.place(market("BUY", quote="1000"))
    assert r["status"] == "FILLED"
    assert r["origQuoteOrderQty"] == "1000.00000000"
    assert r["executedQty"] == "0.01538000"  # floor(1000 / 65000.01) on the 0.00001 step
    assert r["origQty"] == r["executedQty"]
    assert D(r["cummulativeQuoteQty"]) <= 1000
    assert balance(venue, "USDT") == (D(100000) - D(r["cummulativeQuoteQty"]), 0)


def test_quote_order_larger_than_the_book_expires(venue: MatchingEngine) -> None:
    r = venue.place(market("BUY", quote="50000"))
    assert r["status"] == "EXPIRED"
    assert r["executedQty"] == "0.25000000"
    assert balance(venue, "USDT")[1] == 0


def test_ioc_fills_what_it_can_and_expires_the_rest(venue: MatchingEngine) -> None:
    r = venue.place(limit("BUY", "0.2", "65000.02", tif="IOC"))
    assert r["status"] == "EXPIRED"
    assert r["expiryReason"] == "UNFILLED_IOC_QUANTITY_EXPIRED"
    assert r["executedQty"] == "0.10000000"
    assert venue.open_orders() == []
    assert balance(venue, "USDT")[1] == 0


def test_ioc_that_cannot_trade_expires_untouched(venue: MatchingEngine) -> None:
    r = venue.place(limit("SELL", "0.01", "66000", tif="IOC"))
    assert (r["status"], r["executedQty"], r["fills"]) == ("EXPIRED", "0.00000000", [])
    assert balance(venue, "BTC") == (D(1), 0)


def test_fok_is_all_or_nothing(venue: MatchingEngine) -> None:
    r = venue.place(limit("BUY", "0.2", "65000.03", tif="FOK"))  # only 0.15 up to that price
    assert (r["status"], r["executedQty"], r["fills"]) == ("EXPIRED", "0.00000000", [])
    assert r["expiryReason"] == "UNFILLED_FOK_ORDER_EXPIRED"
    assert balance(venue, "USDT") == (D(100000), 0)
    r = venue.place(limit("BUY", "0.15", "65000.03", tif="FOK"))
    assert r["status"] == "FILLED"
    assert len(r["fills"]) == 3


def test_marketable_gtc_limit_fills_then_rests(venue: MatchingEngine) -> None:
    r = venue.place(limit("BUY", "0.1", "65000.01"))
    assert r["status"] == "PARTIALLY_FILLED"
    assert r["executedQty"] == "0.05000000"
    assert [o["orderId"] for o in venue.open_orders("BTCUSDT")] == [r["orderId"]]
    # The unfilled half keeps exactly its price times quantity locked
    assert balance(venue, "USDT")[1] == D("0.05") * D("65000.01")


def test_resting_limit_fills_on_price_moves_in_partial_steps(
    venue: MatchingEngine, recorder: Recorder
) -> None:
    r = venue.place(limit("BUY", "0.12", "64000", newClientOrderId="rest-1"))
    assert r["status"] == "NEW"
    assert balance(venue, "USDT") == (D(100000) - D("7680"), D("7680"))
    venue.set_price("BTCUSDT", D(64500))
    assert venue.query("BTCUSDT", order_id=r["orderId"])["status"] == "NEW"
    venue.set_price("BTCUSDT", D(64000))
    q = venue.query("BTCUSDT", order_id=r["orderId"])
    assert (q["status"], q["executedQty"]) == ("PARTIALLY_FILLED", "0.05000000")
    assert balance(venue, "USDT")[1] == D("0.07") * 64000
    venue.set_price("BTCUSDT", D(63900))
    venue.set_price("BTCUSDT", D(63800))
    q = venue.query("BTCUSDT", order_id=r["orderId"])
    assert (q["status"], q["executedQty"], q["cummulativeQuoteQty"]) == (
        "FILLED",
        "0.12000000",
        "7680.00000000",
    )
    trades = venue.my_trades("BTCUSDT", order_id=r["orderId"])
    assert [(t["price"], t["qty"], t["isMaker"], t["isBuyer"]) for t in trades] == [
        ("64000.00000000", "0.05000000", True, True),
        ("64000.00000000", "0.05000000", True, True),
        ("64000.00000000", "0.02000000", True, True),
    ]
    assert balance(venue, "USDT") == (D(100000) - D("7680"), 0)
    assert balance(venue, "BTC") == (D("1.12") - D("0.00012"), 0)
    assert venue.open_orders() == []
    executions = [(p["executionType"], p["status"]) for p in recorder.of("order")]
    assert executions == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "FILLED"),
    ]
    assert recorder.of("order")[-1]["lastTrade"]["qty"] == "0.02000000"


def test_resting_sell_fills_when_price_rises_to_it(venue: MatchingEngine) -> None:
    r = venue.place(limit("SELL", "0.01", "66000"))
    assert balance(venue, "BTC") == (D("0.99"), D("0.01"))
    venue.set_price("BTCUSDT", D("65999.99"))
    assert venue.query("BTCUSDT", order_id=r["orderId"])["status"] == "NEW"
    venue.set_price("BTCUSDT", D(66100))
    assert venue.query("BTCUSDT", order_id=r["orderId"])["status"] == "FILLED"
    assert balance(venue, "BTC") == (D("0.99"), 0)
    assert balance(venue, "USDT") == (D(100000) + D(660) - D("0.66"), 0)


def test_cancel_releases_the_lock_and_answers_like_binance(venue: MatchingEngine, recorder: Recorder) -> None:
    r = venue.place(limit("SELL", "0.5", "70000", newClientOrderId="my-sell"))
    assert balance(venue, "BTC") == (D("0.5"), D("0.5"))
    c = venue.cancel("BTCUSDT", orig_client_order_id="my-sell", new_client_order_id="my-cancel")
    assert c["status"] == "CANCELED"
    assert (c["origClientOrderId"], c["clientOrderId"], c["orderId"]) == (
        "my-sell",
        "my-cancel",
        r["orderId"],
    )
    assert c["cummulativeQuoteQty"] == "0.00000000"
    assert balance(venue, "BTC") == (D(1), 0)
    last = recorder.of("order")[-1]
    assert (last["executionType"], last["cancelClientOrderId"]) == ("CANCELED", "my-cancel")
    # Without a newClientOrderId the cancel gets a generated id of its own
    r2 = venue.place(limit("SELL", "0.1", "70000", newClientOrderId="my-sell"))
    c2 = venue.cancel("BTCUSDT", order_id=r2["orderId"])
    assert c2["origClientOrderId"] == "my-sell"
    assert len(c2["clientOrderId"]) == 22
    assert c2["clientOrderId"] != "my-sell"


def test_cancel_of_partially_filled_order_keeps_its_fills(venue: MatchingEngine) -> None:
    r = venue.place(limit("BUY", "0.1", "64000"))
    venue.set_price("BTCUSDT", D(63000))
    c = venue.cancel("BTCUSDT", order_id=r["orderId"])
    assert (c["status"], c["executedQty"]) == ("CANCELED", "0.05000000")
    assert balance(venue, "USDT") == (D(100000) - D(3200), 0)


@pytest.mark.parametrize(
    ("kwargs", "code", "msg"),
    [
        ({"order_id": 999}, -2011, "Unknown order sent."),
        ({"orig_client_order_id": "nope"}, -2011, "Unknown order sent."),
        ({}, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"),
        ({"order_id": 1, "orig_client_order_id": "other"}, -2011, "Unknown order sent."),
        ({"order_id": 1, "cancel_restrictions": "ONLY_PARTIALLY_FILLED"}, -2011,
         "Order was not canceled due to cancel restrictions."),
        ({"order_id": 1, "cancel_restrictions": "SOMETIMES"}, -1145,
         "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED."),
    ],
)  # fmt: skip
def test_cancel_errors(venue: MatchingEngine, kwargs: dict[str, object], code: int, msg: str) -> None:
    venue.place(limit("BUY", "0.001", "60000", newClientOrderId="known"))
    with pytest.raises(VenueError) as exc:
        venue.cancel("BTCUSDT", **kwargs)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.msg) == (code, msg)
    assert len(venue.open_orders()) == 1


def test_cancel_of_a_closed_order_is_unknown(venue: MatchingEngine) -> None:
    r = venue.place(market("BUY", qty="0.001"))
    with pytest.raises(VenueError) as exc:
        venue.cancel("BTCUSDT", order_id=r["orderId"])
    assert (exc.value.code, exc.value.msg) == (-2011, "Unknown order sent.")
    with pytest.raises(VenueError) as exc:
        venue.cancel("ETHUSDT", order_id=r["orderId"])  # right id, wrong symbol
    assert exc.value.code == -2011
    with pytest.raises(VenueError) as exc:
        venue.cancel("NOPE", order_id=r["orderId"])
    assert exc.value.code == -1121


def test_cancel_open_orders(venue: MatchingEngine) -> None:
    with pytest.raises(VenueError) as exc:
        venue.cancel_open_orders("BTCUSDT")
    assert exc.value.code == -2011
    venue.place(limit("BUY", "0.001", "60000"))
    venue.place(limit("SELL", "0.001", "70000"))
    assert [c["status"] for c in venue.cancel_open_orders("BTCUSDT")] == ["CANCELED", "CANCELED"]
    assert venue.open_orders() == []
    assert balance(venue, "USDT")[1] == 0
    assert balance(venue, "BTC")[1] == 0


def test_query_errors(venue: MatchingEngine) -> None:
    venue.place(limit("BUY", "0.001", "60000", newClientOrderId="known"))
    cases = [
        ({"order_id": 7}, -2013, "Order does not exist."),
        ({"orig_client_order_id": "unknown"}, -2013, "Order does not exist."),
        (
            {"order_id": 1, "orig_client_order_id": "other"},
            -2039,
            "Client order ID is not correct for this order ID.",
        ),
        ({}, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"),
    ]
    for kwargs, code, msg in cases:
        with pytest.raises(VenueError) as exc:
            venue.query("BTCUSDT", **kwargs)  # type: ignore[arg-type]
        assert (exc.value.code, exc.value.msg) == (code, msg)
    with pytest.raises(VenueError) as exc:
        venue.query("NOPE", order_id=1)
    assert exc.value.code == -1121
    both = venue.query("BTCUSDT", order_id=1, orig_client_order_id="known")
    assert both["clientOrderId"] == "known"


def test_query_shape(venue: MatchingEngine, clock: list[int]) -> None:
    r = venue.place(limit("BUY", "0.1", "64000"))
    clock[0] += 5
    venue.set_price("BTCUSDT", D(63000))
    q = venue.query("BTCUSDT", order_id=r["orderId"])
    assert q == {
        "symbol": "BTCUSDT",
        "orderId": r["orderId"],
        "orderListId": -1,
        "clientOrderId": r["clientOrderId"],
        "price": "64000.00000000",
        "origQty": "0.10000000",
        "executedQty": "0.05000000",
        "cummulativeQuoteQty": "3200.00000000",
        "status": "PARTIALLY_FILLED",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": NOW_MS,
        "updateTime": NOW_MS + 5,
        "isWorking": True,
        "workingTime": NOW_MS,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def test_response_types(venue: MatchingEngine) -> None:
    ack = venue.place(limit("BUY", "0.001", "60000", newOrderRespType="ACK"))
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert ack["transactTime"] == NOW_MS
    res = venue.place(market("BUY", qty="0.001") | {"newOrderRespType": "RESULT"})
    assert "fills" not in res
    assert res["status"] == "FILLED"
    assert res["workingTime"] == NOW_MS
    # Default: FULL for LIMIT and MARKET, ACK for every other type
    maker = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.001", "price": "60000"}
    assert "status" not in venue.place(maker)
    assert venue.place(limit("BUY", "0.001", "60000"))["fills"] == []


def test_generated_client_ids_are_binance_like_and_seeded() -> None:
    ids = [MatchingEngine(seed=7).place(limit("BUY", "0.001", "60000"))["clientOrderId"] for _ in range(2)]
    assert ids[0] == ids[1]
    assert len(ids[0]) == 22
    assert ids[0].isalnum()


def test_my_trades_filters(venue: MatchingEngine) -> None:
    a = venue.place(market("BUY", qty="0.1"))
    b = venue.place(market("SELL", qty="0.05"))
    every = venue.my_trades("BTCUSDT")
    assert [t["orderId"] for t in every] == [a["orderId"]] * 2 + [b["orderId"]]
    assert venue.my_trades("BTCUSDT", order_id=b["orderId"])[0]["isBuyer"] is False
    assert [t["id"] for t in venue.my_trades("BTCUSDT", from_id=every[1]["id"])] == [
        t["id"] for t in every[1:]
    ]
    assert len(venue.my_trades("BTCUSDT", limit=1)) == 1
    assert set(every[0]) == {
        "symbol", "id", "orderId", "orderListId", "price", "qty", "quoteQty", "commission",
        "commissionAsset", "time", "isBuyer", "isMaker", "isBestMatch",
    }  # fmt: skip
    assert venue.my_trades("ETHUSDT") == []


def test_ground_truth_keeps_every_order(venue: MatchingEngine) -> None:
    venue.place(market("BUY", qty="0.01"))
    rest = venue.place(limit("BUY", "0.001", "60000"))
    venue.cancel("BTCUSDT", order_id=rest["orderId"])
    venue.place(limit("BUY", "0.001", "60000", tif="IOC"))
    with pytest.raises(VenueError):
        venue.place(limit("BUY", "5", "60000"))  # rejected orders were never accepted
    truth = venue.ground_truth()
    assert [(o["orderId"], o["status"]) for o in truth] == [(1, "FILLED"), (2, "CANCELED"), (3, "EXPIRED")]
    assert [len(o["trades"]) for o in truth] == [1, 0, 0]


def test_book_ticker_and_depth_follow_the_reference_price(venue: MatchingEngine, recorder: Recorder) -> None:
    assert venue.book_ticker("BTCUSDT") == {
        "symbol": "BTCUSDT",
        "bidPrice": "64999.99000000",
        "bidQty": "0.05000000",
        "askPrice": "65000.01000000",
        "askQty": "0.05000000",
    }
    venue.set_price("BTCUSDT", D("65100.5"))
    assert venue.book_ticker("BTCUSDT")["askPrice"] == "65100.51000000"
    (book,) = recorder.of("book")
    assert book == {
        "u": 2,
        "s": "BTCUSDT",
        "b": "65100.49000000",
        "B": "0.05000000",
        "a": "65100.51000000",
        "A": "0.05000000",
    }
    depth = venue.depth("BTCUSDT", limit=3)
    assert depth["asks"] == [
        ["65100.51000000", "0.05000000"],
        ["65100.52000000", "0.05000000"],
        ["65100.53000000", "0.05000000"],
    ]
    assert len(depth["bids"]) == 3
    with pytest.raises(VenueError):
        venue.book_ticker("NOPE")


def test_trade_events_are_agg_trade_shaped(venue: MatchingEngine, recorder: Recorder) -> None:
    venue.place(market("BUY", qty="0.01"))
    (trade,) = recorder.of("trade")
    assert trade["e"] == "aggTrade"
    assert trade["s"] == "BTCUSDT"
    assert (trade["p"], trade["q"], trade["m"]) == ("65000.01000000", "0.01000000", False)
    assert trade["f"] == trade["l"] == venue.my_trades("BTCUSDT")[0]["id"]


def test_step_prices_is_a_seeded_walk_of_a_few_ticks() -> None:
    a, b = MatchingEngine(seed=3), MatchingEngine(seed=3)
    for _ in range(20):
        before = dict(a.prices)
        a.step_prices()
        b.step_prices()
        for symbol, price in a.prices.items():
            assert abs(price - before[symbol]) <= D("0.03")
    assert a.prices == b.prices
    assert a.prices != MatchingEngine(seed=3).prices


def test_set_price_validates(venue: MatchingEngine) -> None:
    with pytest.raises(VenueError):
        venue.set_price("NOPE", D(1))
    with pytest.raises(ValueError, match="positive"):
        venue.set_price("BTCUSDT", D(0))


def test_account_shape(venue: MatchingEngine) -> None:
    acct = venue.account()
    assert acct["canTrade"] is True
    assert acct["permissions"] == ["SPOT"]
    assert acct["accountType"] == "SPOT"
    assert acct["commissionRates"] == {
        "maker": "0.00100000",
        "taker": "0.00100000",
        "buyer": "0.00000000",
        "seller": "0.00000000",
    }
    assert {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"} in acct["balances"]
    empty = MatchingEngine(balances={"USDT": D(10)})
    assert [b["asset"] for b in empty.account(omit_zero_balances=True)["balances"]] == ["USDT"]
