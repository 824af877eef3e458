"""The average-cost accounting of engine.positions, by hand: partial fills, both sides, fees in the base,
the quote and a third asset (BNB), a short, a crossing through zero and one asset against two quotes."""

from __future__ import annotations

from decimal import Decimal

from engine.positions import Book, Position
from engine.types import Side

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def test_buys_average_and_a_sell_realizes_against_the_average() -> None:
    pos = Position("BTC", "USDT")
    pos.trade(BUY, D(100), D("0.5"), D(0), "")
    pos.trade(BUY, D(110), D("0.5"), D(0), "")  # two partial fills: avg (50 + 55) / 1 = 105
    assert (pos.quantity, pos.avg_cost) == (D(1), D(105))
    pos.trade(SELL, D(120), D("0.4"), D(0), "")
    assert pos.realized_pnl == D("0.4") * (120 - 105)
    assert (pos.quantity, pos.avg_cost) == (D("0.6"), D(105))  # a sell does not move the average


def test_fees_by_asset_and_a_base_asset_fee_leaves_the_holding_at_its_average_cost() -> None:
    pos = Position("BNB", "USDT")
    pos.trade(BUY, D(600), D(2), D("0.002"), "BNB")  # paid in the asset itself: 1.998 held
    assert (pos.quantity, pos.avg_cost, pos.realized_pnl) == (D("1.998"), D(600), D(0))
    pos.trade(SELL, D(650), D(1), D("0.65"), "USDT")  # paid in the quote: quantity and cost untouched
    assert (pos.quantity, pos.avg_cost, pos.realized_pnl) == (D("0.998"), D(600), D(50))
    assert pos.fees == {"BNB": D("0.002"), "USDT": D("0.65")}


def test_a_third_asset_fee_is_reported_and_touches_no_quantity() -> None:
    book = Book()
    book.trade("BTC", "USDT", BUY, D(60000), D("0.01"), D("0.0009"), "BNB")
    book.trade("BNB", "USDT", BUY, D(600), D(1), D("0.001"), "BNB")
    btc, bnb = book.positions[("BTC", "USDT")], book.positions[("BNB", "USDT")]
    assert btc.quantity == D("0.01")  # the BNB went out of the BNB balance, not out of this BTC
    assert bnb.quantity == D("0.999")  # BNB's own fee on BNBUSDT is paid out of BNB
    assert book.fees_total() == {"BNB": D("0.0019")}


def test_selling_more_than_bought_goes_short_and_buying_back_realizes() -> None:
    pos = Position("ETH", "USDT")
    pos.trade(BUY, D(3000), D(1), D(0), "")
    pos.trade(SELL, D(3100), D(3), D(0), "")  # closes 1 (+100), opens a short of 2 at 3100
    assert (pos.quantity, pos.avg_cost, pos.realized_pnl) == (D(-2), D(3100), D(100))
    pos.trade(BUY, D(3000), D("0.5"), D(0), "")  # a short gains when bought back lower
    assert (pos.quantity, pos.avg_cost, pos.realized_pnl) == (D("-1.5"), D(3100), D(150))
    pos.trade(BUY, D(3200), D("1.5"), D(0), "")
    assert (pos.quantity, pos.cost, pos.realized_pnl) == (D(0), D(0), D(0))


def test_a_base_fee_on_a_flat_position_extends_a_short_at_the_trade_price() -> None:
    pos = Position("ETH", "USDT")
    pos.trade(SELL, D(3000), D(1), D(0), "")
    pos.trade(BUY, D(2900), D(1), D("0.001"), "ETH")  # closes the short (+100), the fee leaves -0.001
    assert (pos.quantity, pos.realized_pnl, pos.avg_cost) == (D("-0.001"), D(100), D(2900))


def test_one_asset_against_two_quotes_is_two_rows() -> None:
    book = Book()
    book.trade("ETH", "USDT", BUY, D(3000), D(1), D(0), "")
    book.trade("ETH", "BTC", BUY, D("0.05"), D(2), D(0), "")
    rows = book.as_list()
    assert [(r["asset"], r["cost_asset"], r["quantity"], r["avg_cost"]) for r in rows] == [
        ("ETH", "BTC", "2", "0.05"),
        ("ETH", "USDT", "1", "3000"),
    ]


def test_an_average_that_does_not_terminate_is_deterministic() -> None:
    a, b = Position("BTC", "USDT"), Position("BTC", "USDT")
    for pos in (a, b):
        for price in (D(1), D(2), D(2)):
            pos.trade(BUY, price, D(1), D(0), "")
        pos.trade(SELL, D(3), D(1), D(0), "")
    assert a.as_dict() == b.as_dict()
    assert a.quantity == D(2)
    assert abs(a.realized_pnl - (D(3) - D(5) / 3)) < D("1e-30")
