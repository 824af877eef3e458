from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.binance.schemas import symbol_rules_from_json
from adapters.venue import DEFAULT_SYMBOLS, MatchingEngine, VenueError, exchange_info_symbol

ENTRY_FIELDS = {
    "symbol", "status", "baseAsset", "baseAssetPrecision", "quoteAsset", "quotePrecision", "quoteAssetPrecision",
    "baseCommissionPrecision", "quoteCommissionPrecision", "orderTypes", "icebergAllowed", "ocoAllowed",
    "otoAllowed", "opoAllowed", "quoteOrderQtyMarketAllowed", "allowTrailingStop", "cancelReplaceAllowed",
    "amendAllowed", "pegInstructionsAllowed", "isSpotTradingAllowed", "isMarginTradingAllowed", "filters",
    "permissions", "permissionSets", "defaultSelfTradePreventionMode", "allowedSelfTradePreventionModes",
}  # fmt: skip


@pytest.mark.parametrize("symbol", sorted(DEFAULT_SYMBOLS))
def test_exchange_info_entry_round_trips_through_the_binance_schema(symbol: str) -> None:
    rules = DEFAULT_SYMBOLS[symbol]
    entry = exchange_info_symbol(rules)
    assert set(entry) == ENTRY_FIELDS
    assert symbol_rules_from_json(entry) == rules


def test_entry_carries_live_like_filters() -> None:
    entry = exchange_info_symbol(DEFAULT_SYMBOLS["BTCUSDT"])
    filters = {f["filterType"]: f for f in entry["filters"]}
    assert {
        "PRICE_FILTER",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "NOTIONAL",
        "PERCENT_PRICE_BY_SIDE",
        "MAX_NUM_ORDERS",
    } <= set(filters)
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"] == {
        "filterType": "LOT_SIZE",
        "minQty": "0.00001000",
        "maxQty": "9000.00000000",
        "stepSize": "0.00001000",
    }
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["NOTIONAL"]["applyMinToMarket"] is True
    assert entry["permissions"] == []
    assert entry["permissionSets"] == [["SPOT"]]
    assert DEFAULT_SYMBOLS["ETHUSDT"].step_size == Decimal("0.0001")
    assert DEFAULT_SYMBOLS["BNBUSDT"].step_size == Decimal("0.001")


def test_exchange_info_document(venue: MatchingEngine) -> None:
    info = venue.exchange_info()
    assert info["timezone"] == "UTC"
    assert isinstance(info["serverTime"], int)
    limits = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in info["rateLimits"]}
    assert limits == {
        ("REQUEST_WEIGHT", "MINUTE", 1): 6000,
        ("ORDERS", "SECOND", 10): 100,
        ("ORDERS", "DAY", 1): 200000,
        ("RAW_REQUESTS", "MINUTE", 5): 300000,
    }
    assert info["exchangeFilters"] == []
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    assert [s["symbol"] for s in venue.exchange_info(["ETHUSDT"])["symbols"]] == ["ETHUSDT"]
    with pytest.raises(VenueError) as exc:
        venue.exchange_info(["NOPE"])
    assert exc.value.code == -1121


def test_missing_reference_price_is_refused() -> None:
    with pytest.raises(ValueError, match="BTCUSDT"):
        MatchingEngine(prices={"ETHUSDT": Decimal(1), "BNBUSDT": Decimal(1)})
