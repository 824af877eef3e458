"""Binance's symbol filters as pure rules: the engine checks them locally before sending, and the
venues (paper, simulator) use the same code to reject with Binance's exact -1013 messages."""

from __future__ import annotations

from decimal import Decimal

from engine.types import OrderType, SymbolRules

_ZERO = Decimal(0)


def _out_of_range(value: Decimal, low: Decimal, high: Decimal, step: Decimal) -> bool:
    # A zero bound disables its rule; the step is counted from zero, not from the minimum
    if low and value < low:
        return True
    if high and value > high:
        return True
    return bool(step) and value % step != _ZERO


def failed_filter(
    rules: SymbolRules,
    order_type: OrderType,
    quantity: Decimal | None,
    price: Decimal | None,
    reference_price: Decimal | None,
) -> str | None:
    """Return the name of the first filter the order fails (e.g. ``"LOT_SIZE"``), or None."""
    is_market = order_type is OrderType.MARKET
    if (
        price is not None
        and not is_market
        and _out_of_range(price, rules.min_price, rules.max_price, rules.tick_size)
    ):
        return "PRICE_FILTER"
    if quantity is not None:
        if _out_of_range(quantity, rules.min_qty, rules.max_qty, rules.step_size):
            return "LOT_SIZE"
        if is_market and _out_of_range(
            quantity, rules.market_min_qty, rules.market_max_qty, rules.market_step_size
        ):
            return "MARKET_LOT_SIZE"
    notional_price = reference_price if is_market else price
    if quantity is not None and notional_price is not None:
        notional = quantity * notional_price
        check_min = rules.min_notional and (not is_market or rules.apply_min_to_market)
        check_max = rules.max_notional and (not is_market or rules.apply_max_to_market)
        if (check_min and notional < rules.min_notional) or (check_max and notional > rules.max_notional):
            return "NOTIONAL"
    return None


def decimals_of(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0
