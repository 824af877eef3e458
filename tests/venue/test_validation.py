"""Every rejection path of POST /api/v3/order, with Binance's code and exact message."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from adapters.venue import DEFAULT_SYMBOLS, MatchingEngine, VenueError
from tests.venue.conftest import limit, market

B = {"symbol": "BTCUSDT", "side": "BUY"}

CASES = [
    ({"side": "BUY", "type": "MARKET", "quantity": "1"}, -1102,
     "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
    ({**B, "symbol": "DOGEUSDT", "type": "MARKET", "quantity": "1"}, -1121, "Invalid symbol."),
    ({"symbol": "BTCUSDT", "type": "MARKET", "quantity": "1"}, -1102,
     "Mandatory parameter 'side' was not sent, was empty/null, or malformed."),
    ({**B, "quantity": "1"}, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed."),
    ({**B, "side": "HOLD", "type": "MARKET", "quantity": "1"}, -1117, "Invalid side."),
    ({**B, "type": "LIMITED", "quantity": "1"}, -1116, "Invalid orderType."),
    (limit("BUY", "0.001", "60000", tif="GTD"), -1115, "Invalid timeInForce."),
    ({**B, "type": "LIMIT", "quantity": "0.001", "price": "60000"}, -1102,
     "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
    ({**B, "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}, -1102,
     "Mandatory parameter 'price' was not sent, was empty/null, or malformed."),
    ({**B, "type": "LIMIT", "timeInForce": "GTC", "price": "60000"}, -1102,
     "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
    ({**B, "type": "MARKET"}, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"),
    ({**B, "type": "MARKET", "timeInForce": "GTC", "quantity": "0.001"}, -1106,
     "Parameter 'timeInForce' sent when not required."),
    ({**B, "type": "MARKET", "price": "60000", "quantity": "0.001"}, -1106,
     "Parameter 'price' sent when not required."),
    ({**B, "type": "LIMIT_MAKER", "timeInForce": "GTC", "quantity": "0.001", "price": "60000"}, -1106,
     "Parameter 'timeInForce' sent when not required."),
    (limit("BUY", "0.001", "60000", quoteOrderQty="10"), -1106, "Parameter 'quoteOrderQty' sent when not required."),
    (limit("BUY", "0.000000001", "60000"), -1111, "Parameter 'quantity' has too much precision."),
    (limit("BUY", "0.001", "60000.000000001"), -1111, "Parameter 'price' has too much precision."),
    (limit("BUY", "-1", "60000"), -1100,
     "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
    (limit("BUY", "0.001", "6e4"), -1100,
     "Illegal characters found in parameter 'price'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
    (limit("BUY", "0.001", "60000", newClientOrderId="bad id!"), -1100,
     "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
    (limit("BUY", "0.000015", "60000"), -1013, "Filter failure: LOT_SIZE"),
    (limit("BUY", "0.000001", "60000"), -1013, "Filter failure: LOT_SIZE"),
    (limit("BUY", "0.001", "60000.005"), -1013, "Filter failure: PRICE_FILTER"),
    (limit("BUY", "0.00001", "60000"), -1013, "Filter failure: NOTIONAL"),
    (limit("BUY", "0.001", "400000"), -1013, "Filter failure: PERCENT_PRICE_BY_SIDE"),
    (limit("SELL", "0.001", "10000"), -1013, "Filter failure: PERCENT_PRICE_BY_SIDE"),
    (market("BUY", qty="101"), -1013, "Filter failure: MARKET_LOT_SIZE"),
    (market("BUY", quote="4.99"), -1013, "Filter failure: NOTIONAL"),
    (limit("BUY", "0", "60000"), -1013, "Invalid quantity."),
    (limit("BUY", "0.001", "60000", selfTradePreventionMode="SOMETIMES"), -1013,
     "This symbol does not allow the specified self-trade prevention mode."),
    (limit("BUY", "2", "60000"), -2010, "Account has insufficient balance for requested action."),
    (limit("SELL", "1.5", "70000"), -2010, "Account has insufficient balance for requested action."),
    (market("SELL", qty="1.00001"), -2010, "Account has insufficient balance for requested action."),
    (market("BUY", quote="100001"), -2010, "Account has insufficient balance for requested action."),
    ({**B, "type": "LIMIT_MAKER", "quantity": "0.001", "price": "65000.01"}, -2010,
     "Order would immediately match and take."),
    ({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER", "quantity": "0.001", "price": "64999.99"}, -2010,
     "Order would immediately match and take."),
    ({**B, "type": "STOP_LOSS_LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "60000",
      "stopPrice": "60000"}, -2010, "Stop loss limit orders are not supported for this symbol."),
    ({**B, "type": "TAKE_PROFIT", "quantity": "0.001", "stopPrice": "70000"}, -2010,
     "Take profit orders are not supported for this symbol."),
    ({**B, "type": "STOP_LOSS", "quantity": "0.001"}, -1102,
     "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."),
]  # fmt: skip


@pytest.mark.parametrize(("params", "code", "msg"), CASES)
def test_rejection(venue: MatchingEngine, params: dict[str, str], code: int, msg: str) -> None:
    before = venue.account()["balances"]
    with pytest.raises(VenueError) as exc:
        venue.place(params)
    assert (exc.value.code, exc.value.msg, exc.value.http_status) == (code, msg, 400)
    assert venue.ground_truth() == []
    assert venue.account()["balances"] == before


@pytest.mark.parametrize(("params", "code", "msg"), [c for c in CASES if c[1] != -2010])
def test_validate_runs_the_pre_engine_checks(
    venue: MatchingEngine, params: dict[str, str], code: int, msg: str
) -> None:
    with pytest.raises(VenueError) as exc:
        venue.validate(params)
    assert (exc.value.code, exc.value.msg) == (code, msg)


def test_validate_skips_engine_checks_like_order_test(venue: MatchingEngine) -> None:
    too_big = limit("BUY", "2", "60000")
    venue.validate(too_big)  # Binance's /order/test never reaches the matching engine
    with pytest.raises(VenueError) as exc:
        venue.validate(too_big, engine_checks=True)
    assert exc.value.code == -2010
    assert venue.ground_truth() == []


def test_market_closed() -> None:
    halted = {**DEFAULT_SYMBOLS, "BTCUSDT": replace(DEFAULT_SYMBOLS["BTCUSDT"], status="HALT")}
    venue = MatchingEngine(symbols=halted)
    with pytest.raises(VenueError) as exc:
        venue.place(limit("BUY", "0.001", "60000"))
    assert (exc.value.code, exc.value.msg) == (-2010, "Market is closed.")


def test_market_orders_not_supported_on_a_symbol_without_them() -> None:
    no_market = {**DEFAULT_SYMBOLS, "BTCUSDT": replace(DEFAULT_SYMBOLS["BTCUSDT"], order_types=("LIMIT",))}
    venue = MatchingEngine(symbols=no_market)
    with pytest.raises(VenueError) as exc:
        venue.place(market("BUY", qty="0.001"))
    assert (exc.value.code, exc.value.msg) == (-2010, "Market orders are not supported for this symbol.")


def test_max_num_orders_filter() -> None:
    venue = MatchingEngine(balances={"USDT": Decimal(10**7)})
    for _ in range(200):
        venue.place(limit("BUY", "0.001", "60000"))
    with pytest.raises(VenueError) as exc:
        venue.place(limit("BUY", "0.001", "60000"))
    assert exc.value.msg == "Filter failure: MAX_NUM_ORDERS"
    venue.place(market("BUY", qty="0.001"))  # the limit counts resting orders only


def test_duplicate_open_client_id_is_rejected_but_reuse_after_fill_is_allowed(venue: MatchingEngine) -> None:
    venue.place(limit("BUY", "0.001", "60000", newClientOrderId="dup-1"))
    with pytest.raises(VenueError) as exc:
        venue.place(limit("BUY", "0.001", "60001", newClientOrderId="dup-1"))
    assert (exc.value.code, exc.value.msg) == (-2010, "Duplicate order sent.")
    venue.set_price("BTCUSDT", Decimal(59000))  # fills the resting order: its id becomes reusable
    assert venue.query("BTCUSDT", orig_client_order_id="dup-1")["status"] == "FILLED"
    again = venue.place(limit("BUY", "0.001", "58000", newClientOrderId="dup-1"))
    assert again["status"] == "NEW"
    assert again["orderId"] == 2
    # A lookup by client id finds the newest order with that id
    assert venue.query("BTCUSDT", orig_client_order_id="dup-1")["orderId"] == 2


def test_client_id_of_a_cancelled_order_is_reusable(venue: MatchingEngine) -> None:
    venue.place(limit("BUY", "0.001", "60000", newClientOrderId="c-1"))
    venue.cancel("BTCUSDT", orig_client_order_id="c-1")
    assert venue.place(limit("BUY", "0.001", "60000", newClientOrderId="c-1"))["status"] == "NEW"


def test_same_client_id_on_another_symbol_is_not_a_duplicate(venue: MatchingEngine) -> None:
    venue.place(limit("BUY", "0.001", "60000", newClientOrderId="x"))
    eth = {**limit("BUY", "0.01", "3000", newClientOrderId="x"), "symbol": "ETHUSDT"}
    assert venue.place(eth)["status"] == "NEW"
