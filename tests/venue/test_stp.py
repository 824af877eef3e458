"""Self-trade prevention in the matching engine (faqs/stp_faq.md, enums.md STP modes): a taker that meets
the account's own resting order; the taker's mode decides, expired orders are EXPIRED_IN_MATCH."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from adapters.venue import MatchingEngine, VenueError
from tests.venue.conftest import balance, limit

# The synthetic book around 65000: bids from 64999.99 down, asks from 65000.01 up. A SELL at 65000.00
# rests (no bid reaches it) and is the only ask a BUY at 65000.00 can meet: an own-order match.
AT = "65000.00"


def _rest_sell(venue: MatchingEngine, qty: str, **extra: str) -> int:
    r = venue.place(limit("SELL", qty, AT, newOrderRespType="RESULT", **extra))
    assert r["status"] == "NEW"
    return int(r["orderId"])


def _order(venue: MatchingEngine, order_id: int) -> dict[str, str]:
    return venue.query("BTCUSDT", order_id=order_id)  # type: ignore[return-value]


def test_expire_maker_is_the_default_and_the_taker_rests(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.01")
    taker = venue.place(limit("BUY", "0.02", AT, newOrderRespType="RESULT"))
    assert taker["selfTradePreventionMode"] == "EXPIRE_MAKER"
    assert taker["status"] == "NEW"
    m = _order(venue, maker)
    assert m["status"] == "EXPIRED_IN_MATCH"
    assert m["preventedQuantity"] == "0.01000000"
    assert m["preventedMatchId"] == 0
    assert m["executedQty"] == "0.00000000"
    assert [o["orderId"] for o in venue.open_orders("BTCUSDT")] == [taker["orderId"]]
    assert balance(venue, "BTC") == (D(1), D(0))  # the maker's lock came back


def test_expire_taker_expires_the_taker_and_keeps_the_maker(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.01")
    taker = venue.place(
        limit("BUY", "0.02", AT, newOrderRespType="FULL", selfTradePreventionMode="EXPIRE_TAKER")
    )
    assert taker["status"] == "EXPIRED_IN_MATCH"
    assert taker["preventedQuantity"] == "0.02000000"
    assert taker["fills"] == []
    assert _order(venue, maker)["status"] == "NEW"
    assert "preventedQuantity" not in _order(venue, maker)
    assert balance(venue, "USDT")[1] == 0  # nothing of the taker stays locked


def test_expire_both(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.01")
    taker = venue.place(
        limit("BUY", "0.02", AT, newOrderRespType="RESULT", selfTradePreventionMode="EXPIRE_BOTH")
    )
    assert taker["status"] == "EXPIRED_IN_MATCH"
    assert _order(venue, maker)["status"] == "EXPIRED_IN_MATCH"
    assert (taker["preventedQuantity"], _order(venue, maker)["preventedQuantity"]) == (
        "0.02000000",
        "0.01000000",
    )
    assert venue.open_orders("BTCUSDT") == []


def test_decrement_expires_the_smaller_and_reduces_the_larger(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.05")
    taker = venue.place(
        limit("BUY", "0.02", AT, newOrderRespType="RESULT", selfTradePreventionMode="DECREMENT")
    )
    assert taker["status"] == "EXPIRED_IN_MATCH"
    assert taker["preventedQuantity"] == "0.02000000"
    m = _order(venue, maker)
    assert (m["status"], m["preventedQuantity"], m["origQty"]) == ("NEW", "0.02000000", "0.05000000")
    # original - executed - prevented stays locked: 0.03 BTC
    assert balance(venue, "BTC")[1] == D("0.03")


def test_decrement_of_equal_quantities_expires_both(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.02")
    taker = venue.place(
        limit("BUY", "0.02", AT, newOrderRespType="RESULT", selfTradePreventionMode="DECREMENT")
    )
    assert taker["status"] == _order(venue, maker)["status"] == "EXPIRED_IN_MATCH"


def test_decrement_with_a_larger_taker_leaves_it_resting_with_less(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.01")
    taker = venue.place(
        limit("BUY", "0.03", AT, newOrderRespType="RESULT", selfTradePreventionMode="DECREMENT")
    )
    assert (taker["status"], taker["preventedQuantity"]) == ("NEW", "0.01000000")
    assert _order(venue, maker)["status"] == "EXPIRED_IN_MATCH"
    assert balance(venue, "USDT")[1] == D("0.02") * D(AT)


def test_transfer_within_one_account_is_decrement(venue: MatchingEngine) -> None:
    _rest_sell(venue, "0.01")
    taker = venue.place(
        limit("BUY", "0.03", AT, newOrderRespType="RESULT", selfTradePreventionMode="TRANSFER")
    )
    assert (taker["status"], taker["preventedQuantity"]) == ("NEW", "0.01000000")


def test_none_trades_with_itself(venue: MatchingEngine) -> None:
    maker = _rest_sell(venue, "0.01")
    taker = venue.place(limit("BUY", "0.01", AT, newOrderRespType="FULL", selfTradePreventionMode="NONE"))
    assert taker["status"] == "FILLED"
    assert [(f["price"], f["qty"]) for f in taker["fills"]] == [("65000.00000000", "0.01000000")]
    assert _order(venue, maker)["status"] == "FILLED"
    assert "preventedQuantity" not in taker


def test_the_taker_meets_its_own_order_in_price_order(venue: MatchingEngine) -> None:
    # own sell at 65000.02: the taker first takes the synthetic 65000.01, then meets itself
    r = venue.place(limit("SELL", "0.01", "65000.02", newOrderRespType="RESULT"))
    taker = venue.place(
        limit("BUY", "0.2", "65000.03", newOrderRespType="FULL", selfTradePreventionMode="EXPIRE_TAKER")
    )
    assert [f["price"] for f in taker["fills"]] == ["65000.01000000"]
    assert taker["status"] == "EXPIRED_IN_MATCH"
    assert taker["preventedQuantity"] == "0.15000000"  # 0.2 - 0.05 filled
    assert _order(venue, int(r["orderId"]))["status"] == "NEW"


def test_a_market_order_only_meets_own_orders_within_its_plan(venue: MatchingEngine) -> None:
    far = venue.place(limit("SELL", "0.01", "66000.00", newOrderRespType="RESULT"))
    taker = venue.place({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    assert taker["status"] == "FILLED"
    assert _order(venue, int(far["orderId"]))["status"] == "NEW"


@pytest.mark.parametrize("mode", ["EXPIRE_ALL", "expire_taker"])
def test_a_mode_the_symbol_does_not_allow_is_refused(venue: MatchingEngine, mode: str) -> None:
    with pytest.raises(VenueError) as ei:
        venue.place(limit("BUY", "0.01", AT, selfTradePreventionMode=mode))
    assert (ei.value.code, ei.value.msg) == (
        -1013,
        "This symbol does not allow the specified self-trade prevention mode.",
    )


def test_exchange_info_shows_the_allowed_modes(venue: MatchingEngine) -> None:
    (sym,) = venue.exchange_info(["BTCUSDT"])["symbols"]
    assert set(sym["allowedSelfTradePreventionModes"]) >= {
        "NONE",
        "EXPIRE_TAKER",
        "EXPIRE_MAKER",
        "EXPIRE_BOTH",
        "DECREMENT",
    }
    assert sym["defaultSelfTradePreventionMode"] == "EXPIRE_MAKER"


def test_the_symbols_own_allowed_modes_are_shown_and_enforced() -> None:
    # faqs/stp_faq.md example: default NONE, allowed NONE / EXPIRE_TAKER / EXPIRE_BOTH
    venue = MatchingEngine(stp_modes={"BTCUSDT": ("NONE", ("NONE", "EXPIRE_TAKER", "EXPIRE_BOTH"))})
    (sym,) = venue.exchange_info(["BTCUSDT"])["symbols"]
    assert sym["defaultSelfTradePreventionMode"] == "NONE"
    assert sym["allowedSelfTradePreventionModes"] == ["NONE", "EXPIRE_TAKER", "EXPIRE_BOTH"]
    with pytest.raises(VenueError) as ei:
        venue.place(limit("BUY", "0.01", AT, selfTradePreventionMode="EXPIRE_MAKER"))
    assert ei.value.code == -1013
    placed = venue.place(limit("BUY", "0.01", "60000.00", newOrderRespType="RESULT"))
    assert placed["selfTradePreventionMode"] == "NONE"
    (eth,) = venue.exchange_info(["ETHUSDT"])["symbols"]  # other symbols keep the defaults
    assert eth["defaultSelfTradePreventionMode"] == "EXPIRE_MAKER"
    with pytest.raises(ValueError):
        MatchingEngine(stp_modes={"BTCUSDT": ("EXPIRE_MAKER", ("NONE",))})
