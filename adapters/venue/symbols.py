"""Default markets for the venue and their exchangeInfo JSON.

The filter values follow live BTCUSDT/ETHUSDT/BNBUSDT (filters.md) so that an order which passes
here is shaped like one that passes on Binance.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.types import SymbolRules

D = Decimal

# Filters the venue enforces but SymbolRules does not carry (same value for every default symbol)
PERCENT_PRICE_UP = D(5)
PERCENT_PRICE_DOWN = D("0.2")
MAX_NUM_ORDERS = 200
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "TRANSFER")
DEFAULT_STP_MODE = "EXPIRE_MAKER"


def _rules(symbol: str, base: str, max_price: str, step: str, max_qty: str, market_max: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol,
        base_asset=base,
        quote_asset="USDT",
        min_price=D("0.01"),
        max_price=D(max_price),
        tick_size=D("0.01"),
        min_qty=D(step),
        max_qty=D(max_qty),
        step_size=D(step),
        # Live MARKET_LOT_SIZE carries zeros for min and step: disabled rules
        market_max_qty=D(market_max),
        min_notional=D(5),
        max_notional=D(9000000),
        apply_min_to_market=True,
        apply_max_to_market=False,
    )


DEFAULT_SYMBOLS: dict[str, SymbolRules] = {
    "BTCUSDT": _rules("BTCUSDT", "BTC", "1000000", "0.00001", "9000", "100"),
    "ETHUSDT": _rules("ETHUSDT", "ETH", "1000000", "0.0001", "9000", "2000"),
    "BNBUSDT": _rules("BNBUSDT", "BNB", "100000", "0.001", "900000", "9000"),
}


def generated_symbols(count: int) -> tuple[dict[str, SymbolRules], dict[str, Decimal]]:
    """`count` extra TRADING symbols (S001USDT, S002USDT, ...) with BNBUSDT-like filters and reference
    prices from 1 to 1000 USDT, so exchangeInfo can be as large as a real venue's (hundreds of symbols).

    Raises:
        ValueError: count outside 0..5000.
    """
    if not 0 <= count <= 5000:
        raise ValueError(f"symbol count must be in 0..5000, was {count}")
    rules: dict[str, SymbolRules] = {}
    prices: dict[str, Decimal] = {}
    for i in range(1, count + 1):
        name = f"S{i:03d}USDT"
        rules[name] = _rules(name, f"S{i:03d}", "100000", "0.001", "900000", "9000")
        prices[name] = D(1 + (i * 37) % 1000)
    return rules, prices


DEFAULT_PRICES: dict[str, Decimal] = {"BTCUSDT": D(65000), "ETHUSDT": D(3200), "BNBUSDT": D(600)}
DEFAULT_BALANCES: dict[str, Decimal] = {"USDT": D(100000), "BTC": D(1), "ETH": D(10), "BNB": D(100)}


def fmt(value: Decimal, places: int = 8) -> str:
    """Binance prints every price and quantity with a fixed number of decimals."""
    return f"{value:.{places}f}"


def exchange_info_symbol(rules: SymbolRules) -> dict[str, Any]:
    """One exchangeInfo `symbols[]` entry with every field Binance sends (rest-api.md "Exchange information")."""
    return {
        "symbol": rules.symbol,
        "status": rules.status,
        "baseAsset": rules.base_asset,
        "baseAssetPrecision": rules.base_precision,
        "quoteAsset": rules.quote_asset,
        "quotePrecision": rules.quote_precision,
        "quoteAssetPrecision": rules.quote_precision,
        "baseCommissionPrecision": rules.base_precision,
        "quoteCommissionPrecision": rules.quote_precision,
        "orderTypes": list(rules.order_types),
        # Only what the venue implements is advertised as allowed
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "opoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "pegInstructionsAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _filters(rules),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": DEFAULT_STP_MODE,
        "allowedSelfTradePreventionModes": list(STP_MODES),
    }


def _filters(r: SymbolRules) -> list[dict[str, Any]]:
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fmt(r.min_price),
            "maxPrice": fmt(r.max_price),
            "tickSize": fmt(r.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": fmt(r.min_qty),
            "maxQty": fmt(r.max_qty),
            "stepSize": fmt(r.step_size),
        },
        {"filterType": "ICEBERG_PARTS", "limit": 100},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": fmt(r.market_min_qty),
            "maxQty": fmt(r.market_max_qty),
            "stepSize": fmt(r.market_step_size),
        },
        {
            "filterType": "TRAILING_DELTA",
            "minTrailingAboveDelta": 10,
            "maxTrailingAboveDelta": 2000,
            "minTrailingBelowDelta": 10,
            "maxTrailingBelowDelta": 2000,
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": str(PERCENT_PRICE_UP),
            "bidMultiplierDown": str(PERCENT_PRICE_DOWN),
            "askMultiplierUp": str(PERCENT_PRICE_UP),
            "askMultiplierDown": str(PERCENT_PRICE_DOWN),
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": fmt(r.min_notional),
            "applyMinToMarket": r.apply_min_to_market,
            "maxNotional": fmt(r.max_notional),
            "applyMaxToMarket": r.apply_max_to_market,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": MAX_NUM_ORDERS},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20},
        {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 10},
    ]


RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
]
