"""The synthetic order book: `depth` levels of fixed size, one tick apart, either side of the reference price.

The book is rebuilt from the reference price on every read, so each aggressive order sees the full depth
(it never runs dry between price moves) while a single large order can still exhaust it.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

Level = tuple[Decimal, Decimal]  # (price, qty)

_ZERO = Decimal(0)


def asks(reference: Decimal, tick: Decimal, depth: int, qty: Decimal) -> list[Level]:
    """Best (lowest) ask first."""
    return [(reference + tick * i, qty) for i in range(1, depth + 1)]


def bids(reference: Decimal, tick: Decimal, depth: int, qty: Decimal) -> list[Level]:
    """Best (highest) bid first; no level at or below zero."""
    return [(p, qty) for p in (reference - tick * i for i in range(1, depth + 1)) if p > 0]


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    if not step:
        return value.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def sweep(
    levels: list[Level],
    *,
    is_buy: bool,
    qty: Decimal | None = None,
    quote_qty: Decimal | None = None,
    limit: Decimal | None = None,
    step: Decimal = _ZERO,
) -> list[Level]:
    """Fills an aggressive order would get from `levels`, best first, at the levels' prices.

    Exactly one of `qty` (base amount) and `quote_qty` (quote amount, MARKET only) is given; `limit`
    stops the sweep at the first level worse than the order's price.
    """
    fills: list[Level] = []
    remaining = qty if qty is not None else quote_qty
    assert remaining is not None
    for price, available in levels:
        if remaining <= 0:
            break
        if limit is not None and (price > limit if is_buy else price < limit):
            break
        if qty is not None:
            take = min(remaining, available)
            remaining -= take
        else:
            take = min(available, floor_to_step(remaining / price, step))
            if take <= 0:
                break
            remaining -= take * price
        fills.append((price, take))
    return fills


def total_qty(levels: list[Level]) -> Decimal:
    return sum((q for _, q in levels), _ZERO)
