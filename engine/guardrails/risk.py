"""Pre-trade risk caps and local exchange-filter checks: pure functions of the order and the book."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from decimal import Decimal

from engine.config import RiskLimits
from engine.filters import decimals_of, failed_filter
from engine.types import OrderRequest, OrderType, Side, SymbolRules


class OrderRateWindow:
    """Orders placed in the last SPAN_S seconds, for max_orders_per_minute."""

    SPAN_S = 60.0

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def count(self, now_s: float) -> int:
        while self._times and self._times[0] <= now_s - self.SPAN_S:
            self._times.popleft()
        return len(self._times)

    def record(self, now_s: float) -> None:
        self._times.append(now_s)

    def forget(self, now_s: float) -> None:
        """Take back one decision recorded at `now_s` whose create row was certainly never written (its id
        existed already: VersionConflict): the window counts what the journal holds."""
        with contextlib.suppress(ValueError):  # aged out of the window meanwhile
            self._times.remove(now_s)

    def restore(self, times: list[float]) -> None:
        """The decisions of the last minute as the journal has them (start-up): a restart must not
        hand out a second minute's worth of orders within the same minute."""
        self._times = deque(sorted([*times, *self._times]))


def check_filters(
    req: OrderRequest, rules: SymbolRules | None, last_price: Decimal | None
) -> tuple[str, str] | None:
    """(reason, detail) when the order would fail the exchange's own checks, else None."""
    if rules is None:
        return "unknown_symbol", f"symbol {req.symbol} is not traded on this venue"
    if rules.status != "TRADING":
        return "market_closed", f"symbol {req.symbol} status is {rules.status}"
    if req.type.value not in rules.order_types:
        return "order_type_not_allowed", f"{req.type.value} is not allowed on {req.symbol}"
    for name, value, places in (
        ("quantity", req.quantity, rules.base_precision),
        ("price", req.price, rules.quote_precision),
    ):
        if value is not None and decimals_of(value) > places:
            return "bad_precision", f"{name} has more than {places} decimals"
    failed = failed_filter(rules, req.type, req.quantity, req.price, last_price)
    if failed is not None:
        return "filter_failure", f"Filter failure: {failed}"
    return None


def check_risk(
    req: OrderRequest,
    limits: RiskLimits,
    last_price: Decimal | None,
    open_orders: int,
    orders_last_minute: int,
) -> tuple[str, str] | None:
    if open_orders >= limits.max_open_orders:
        return "risk_max_open_orders", f"{open_orders} open orders, limit {limits.max_open_orders}"
    if orders_last_minute >= limits.max_orders_per_minute:
        return (
            "risk_order_rate",
            f"{orders_last_minute} orders in the last minute, limit {limits.max_orders_per_minute}",
        )
    qty = req.quantity
    if qty is not None and qty > limits.max_order_qty:
        return "risk_max_qty", f"quantity {qty} exceeds {limits.max_order_qty}"
    price = order_price(req, last_price)
    if qty is not None and price is None:
        # No price to value it by (a MARKET order before any market data): the cap fails closed
        return "risk_no_price", "no price known for this symbol yet: the notional cap cannot be checked"
    if qty is not None and price is not None and qty * price > limits.max_order_notional:
        return "risk_max_notional", f"notional {qty * price} exceeds {limits.max_order_notional}"
    if req.quote_order_qty is not None and req.quote_order_qty > limits.max_order_notional:
        return (
            "risk_max_notional",
            f"quote quantity {req.quote_order_qty} exceeds {limits.max_order_notional}",
        )
    if req.price is not None and last_price and limits.price_collar_pct:
        deviation = abs(req.price - last_price) / last_price * 100
        if deviation > limits.price_collar_pct:
            return "risk_price_collar", f"price {req.price} is {deviation:.2f}% from last {last_price}"
    return None


def order_price(req: OrderRequest, last_price: Decimal | None) -> Decimal | None:
    """What one unit of the order is worth: its limit price, else its stop price, else the last price."""
    if req.type is not OrderType.MARKET and req.price is not None:
        return req.price
    return req.stop_price or last_price


def base_quantity(req: OrderRequest, last_price: Decimal | None) -> Decimal | None:
    """The order's size in the base asset; a quoteOrderQty order converted at the last price."""
    if req.quantity is not None:
        return req.quantity
    if req.quote_order_qty is not None and last_price:
        return req.quote_order_qty / last_price
    return None


def check_position(
    req: OrderRequest,
    rules: SymbolRules | None,
    limits: RiskLimits,
    held: Callable[[], Decimal],
    open_buys: Callable[[], Decimal],
    last_price: Decimal | None = None,
) -> tuple[str, str] | None:
    """A BUY may not take the base asset past its cap once it and every open BUY fill; SELLs only reduce.
    `held` and `open_buys` are asked only for a capped asset (open_buys sums over every open order)."""
    if rules is None or req.side is not Side.BUY:
        return None
    cap = limits.max_position.get(rules.base_asset)
    if cap is None:
        return None
    qty = base_quantity(req, last_price)
    if qty is None:
        return "risk_no_price", f"no price to size this {rules.base_asset} order against its position cap"
    now, buying = held(), open_buys()
    after = now + buying + qty
    if after > cap:
        return (
            "risk_max_position",
            f"{rules.base_asset} would reach {after} (held {now}, open buys {buying}), cap {cap}",
        )
    return None
