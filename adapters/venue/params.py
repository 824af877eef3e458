"""Parse POST /api/v3/order parameters the way Binance does, in Binance's order of checks.

Pure functions: strings in, an OrderSpec or a VenueError out. Balance, duplicate-id and book checks need
state and live in the matching engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from adapters.venue import errors as e
from adapters.venue.symbols import (
    DEFAULT_STP_MODE,
    MAX_NUM_ORDERS,
    PERCENT_PRICE_DOWN,
    PERCENT_PRICE_UP,
    STP_MODES,
)
from engine.filters import decimals_of, failed_filter
from engine.types import OrderType, SymbolRules

_DECIMAL = re.compile(e.DECIMAL_RANGE)
_CLIENT_ID = re.compile(e.CLIENT_ID_RANGE)
SIDES = frozenset({"BUY", "SELL"})
TYPES = frozenset(t.value for t in OrderType)
TIFS = frozenset({"GTC", "IOC", "FOK"})
RESP_TYPES = frozenset({"ACK", "RESULT", "FULL"})
_STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})

# Per type: parameters that must be present, and parameters Binance refuses with -1106
_REQUIRED = {
    "LIMIT": ("timeInForce", "quantity", "price"),
    "LIMIT_MAKER": ("quantity", "price"),
    "MARKET": (),
    "STOP_LOSS": ("quantity", "stopPrice"),
    "TAKE_PROFIT": ("quantity", "stopPrice"),
    "STOP_LOSS_LIMIT": ("timeInForce", "quantity", "price", "stopPrice"),
    "TAKE_PROFIT_LIMIT": ("timeInForce", "quantity", "price", "stopPrice"),
}
_REFUSED = {
    "LIMIT": ("quoteOrderQty", "stopPrice"),
    "LIMIT_MAKER": ("timeInForce", "quoteOrderQty", "stopPrice"),
    "MARKET": ("timeInForce", "price", "stopPrice"),
    "STOP_LOSS": ("timeInForce", "price", "quoteOrderQty"),
    "TAKE_PROFIT": ("timeInForce", "price", "quoteOrderQty"),
    "STOP_LOSS_LIMIT": ("quoteOrderQty",),
    "TAKE_PROFIT_LIMIT": ("quoteOrderQty",),
}


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A syntactically valid order request."""

    symbol: str
    side: str
    type: str
    time_in_force: str | None
    quantity: Decimal | None
    quote_qty: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    client_order_id: str | None
    resp_type: str
    stp_mode: str


def _given(params: dict[str, str], name: str) -> bool:
    value = params.get(name)
    return value is not None and value != ""


def _decimal(params: dict[str, str], name: str, places: int) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _DECIMAL.match(raw):
        raise e.illegal_chars(name, e.DECIMAL_RANGE)
    value = Decimal(raw)
    if decimals_of(value) > places:
        raise e.too_much_precision(name)
    return value


def lookup_symbol(symbol: str | None, rules: dict[str, SymbolRules]) -> SymbolRules:
    """Raises: VenueError -1102 when absent, -1121 when unknown."""
    if not symbol:
        raise e.mandatory("symbol")
    found = rules.get(symbol)
    if found is None:
        raise e.err(e.INVALID_SYMBOL)
    return found


def parse_order(
    params: dict[str, str],
    rules_by_symbol: dict[str, SymbolRules],
    stp_modes: dict[str, tuple[str, tuple[str, ...]]] | None = None,
) -> tuple[OrderSpec, SymbolRules]:
    """Check shape, enums, mandatory fields and precision.

    Raises:
        VenueError: -1102, -1121, -1117, -1116, -1115, -1100, -1106, -1111 or -1013 (bad STP mode).
    """
    rules = lookup_symbol(params.get("symbol"), rules_by_symbol)
    for name in ("side", "type"):
        if not _given(params, name):
            raise e.mandatory(name)
    side, otype = params["side"], params["type"]
    if side not in SIDES:
        raise e.err(e.INVALID_SIDE)
    if otype not in TYPES:
        raise e.err(e.INVALID_TYPE)
    tif = params.get("timeInForce") or None
    if tif is not None and tif not in TIFS:
        raise e.err(e.INVALID_TIF)
    for name in _REQUIRED[otype]:
        if not _given(params, name):
            raise e.mandatory(name)
    for name in _REFUSED[otype]:
        if _given(params, name):
            raise e.not_required(name)
    if otype == "MARKET":
        if not _given(params, "quantity") and not _given(params, "quoteOrderQty"):
            raise e.one_of("quantity", "quoteOrderQty")
        if _given(params, "quantity") and _given(params, "quoteOrderQty"):
            raise e.not_required("quoteOrderQty")
    quantity = _decimal(params, "quantity", rules.base_precision)
    quote_qty = _decimal(params, "quoteOrderQty", rules.quote_precision)
    price = _decimal(params, "price", rules.quote_precision)
    stop_price = _decimal(params, "stopPrice", rules.quote_precision)
    client_id = params.get("newClientOrderId") or None
    if client_id is not None and not _CLIENT_ID.match(client_id):
        raise e.illegal_chars("newClientOrderId", e.CLIENT_ID_RANGE)
    resp = params.get("newOrderRespType") or ("FULL" if otype in ("MARKET", "LIMIT") else "ACK")
    if resp not in RESP_TYPES:
        raise e.illegal_chars("newOrderRespType", "ACK, RESULT, FULL")
    # the symbol's defaultSelfTradePreventionMode / allowedSelfTradePreventionModes (faqs/stp_faq.md)
    default_stp, allowed_stp = (stp_modes or {}).get(rules.symbol, (DEFAULT_STP_MODE, STP_MODES))
    stp = params.get("selfTradePreventionMode") or default_stp
    if stp not in allowed_stp:
        raise e.err(e.STP_NOT_ALLOWED)
    spec = OrderSpec(
        rules.symbol, side, otype, tif, quantity, quote_qty, price, stop_price, client_id, resp, stp
    )
    return spec, rules


def check_filters(spec: OrderSpec, rules: SymbolRules, reference: Decimal, open_count: int) -> None:
    """Exchange filters, reusing engine.filters for the shared ones.

    Raises:
        VenueError: -1013 "Invalid quantity."/"Invalid price." or "Filter failure: <TYPE>".
    """
    if spec.quantity is not None and spec.quantity <= 0:
        raise e.VenueError(-1013, "Invalid quantity.")
    if spec.price is not None and spec.price <= 0:
        raise e.VenueError(-1013, "Invalid price.")
    otype = OrderType(spec.type)
    failed = failed_filter(rules, otype, spec.quantity, spec.price, reference)
    if failed is None and spec.stop_price is not None:
        failed = failed_filter(rules, OrderType.LIMIT, None, spec.stop_price, None)
    if failed is None and spec.price is not None and otype is not OrderType.MARKET:
        failed = _percent_price(spec.price, reference)
    if failed is None and spec.quote_qty is not None:
        failed = _quote_notional(spec.quote_qty, rules)
    if failed is None and otype is not OrderType.MARKET and open_count >= MAX_NUM_ORDERS:
        failed = "MAX_NUM_ORDERS"
    if failed is not None:
        raise e.filter_failure(failed)


def _percent_price(price: Decimal, reference: Decimal) -> str | None:
    # Both sides use the same multipliers in the default symbols
    if price > reference * PERCENT_PRICE_UP or price < reference * PERCENT_PRICE_DOWN:
        return "PERCENT_PRICE_BY_SIDE"
    return None


def _quote_notional(quote_qty: Decimal, rules: SymbolRules) -> str | None:
    # A quoteOrderQty MARKET order's notional is the quote amount itself
    if rules.min_notional and rules.apply_min_to_market and quote_qty < rules.min_notional:
        return "NOTIONAL"
    if rules.max_notional and rules.apply_max_to_market and quote_qty > rules.max_notional:
        return "NOTIONAL"
    return None


def is_stop(otype: str) -> bool:
    return otype in _STOP_TYPES
