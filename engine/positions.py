"""Positions and P&L from trades alone, by the average-cost method (docs/api.md "Positions and P&L").

One `Position` per (base asset, quote asset) pair traded: quantity in the base asset, cost and realized P&L
in the quote asset, fees by the asset they were paid in, never converted. Pure and deterministic: the live
projection and an auditor's replay fold the same fills in the same order and get the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from engine.types import Side

_ZERO = Decimal(0)
# Fixed precision for the one division (average cost): the result must not depend on a thread's context
_CTX = Context(prec=34)


def plain(value: Decimal) -> str:
    """A decimal as plain text, never exponent notation ("0.00000100", not "1.00E-6")."""
    return format(value, "f")


def computed(value: Decimal) -> str:
    """A computed amount as plain text without trailing zeros ("32.0001", not "32.0001000000000000")."""
    return format(value.normalize(), "f") if value else "0"


@dataclass(slots=True)
class Position:
    """Signed quantity: negative when more was sold than bought through this journal (holdings acquired
    before it); `cost` is the average-cost basis of the quantity held, signed like it."""

    asset: str
    cost_asset: str
    quantity: Decimal = _ZERO
    cost: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    fees: dict[str, Decimal] = field(default_factory=dict)
    trades: int = 0
    untraced: int = 0  # fills known only by quantity and average price: their fees are not in `fees`

    @property
    def avg_cost(self) -> Decimal:
        return _CTX.divide(self.cost, self.quantity) if self.quantity else _ZERO

    def _reduce(self, qty: Decimal) -> Decimal:
        """Take `qty` (≤ |quantity|, same sign as quantity) off at the average cost; the cost removed."""
        removed = _CTX.divide(self.cost * qty, self.quantity)
        self.quantity -= qty
        self.cost -= removed
        if not self.quantity:
            self.cost = _ZERO  # nothing held, no basis left (no rounding residue either)
        return removed

    def trade(self, side: Side, price: Decimal, qty: Decimal, commission: Decimal, fee_asset: str,
              *, traced: bool = True) -> None:  # fmt: skip
        """Fold one fill. The part that reduces the held quantity realizes (price − avg_cost) × qty (for
        a short, avg_cost − price); the part that goes past zero opens the other side at `price`."""
        self.trades += 1
        self.untraced += not traced
        signed = qty if side is Side.BUY else -qty
        if self.quantity and (self.quantity > 0) != (signed > 0):
            closing = min(abs(signed), abs(self.quantity)).copy_sign(self.quantity)
            removed = self._reduce(closing)
            self.realized_pnl += price * closing - removed
            signed += closing
        if signed:
            self.quantity += signed
            self.cost += price * signed
        self._fee(commission, fee_asset, price)

    def retrace(self, side: Side, price: Decimal, uncounted: Decimal, commission: Decimal, fee_asset: str,
                closed: int) -> None:  # fmt: skip
        """A trade reported after its quantity (engine.late_trades): it replaces `closed` untraced fills,
        whose quantity and cost are counted already (the venue's cumQuoteQty is what the trades sum to),
        and adds its commission; `uncounted` is quantity no fill had counted, folded now at `price`."""
        self.untraced -= closed
        self.trades -= closed
        if uncounted:
            self.trade(side, price, uncounted, commission, fee_asset)
            return
        self.trades += 1
        self._fee(commission, fee_asset, price)

    def _fee(self, commission: Decimal, fee_asset: str, price: Decimal) -> None:
        if commission:
            self.fees[fee_asset] = self.fees.get(fee_asset, _ZERO) + commission
            if fee_asset == self.asset:
                self._pay_in_kind(commission, price)

    def _pay_in_kind(self, commission: Decimal, price: Decimal) -> None:
        """A commission paid in the asset itself: a long holds fewer units at the same average cost (no
        P&L); what a long cannot cover (flat or short) extends the short at the trade's price."""
        rest = commission
        if self.quantity > 0:
            take = min(commission, self.quantity)
            self._reduce(take)
            rest -= take
        if rest:
            self.quantity -= rest
            self.cost -= price * rest

    def as_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "cost_asset": self.cost_asset,
            "quantity": computed(self.quantity),
            "avg_cost": computed(self.avg_cost),
            "cost": computed(self.cost),
            "realized_pnl": computed(self.realized_pnl),
            "fees": {a: computed(v) for a, v in sorted(self.fees.items())},
            "trades": self.trades,
            "untraced_trades": self.untraced,
        }


class Book:
    """Every position, by (asset, cost asset)."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], Position] = {}

    def trade(self, asset: str, cost_asset: str, side: Side, price: Decimal, qty: Decimal,
              commission: Decimal, fee_asset: str, *, traced: bool = True) -> None:  # fmt: skip
        key = (asset, cost_asset)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(asset, cost_asset)
        pos.trade(side, price, qty, commission, fee_asset, traced=traced)

    def retrace(self, asset: str, cost_asset: str, side: Side, price: Decimal, uncounted: Decimal,
                commission: Decimal, fee_asset: str, closed: int) -> None:  # fmt: skip
        key = (asset, cost_asset)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(asset, cost_asset)
        pos.retrace(side, price, uncounted, commission, fee_asset, closed)

    def fees_total(self) -> dict[str, Decimal]:
        total: dict[str, Decimal] = {}
        for pos in self.positions.values():
            for asset, amount in pos.fees.items():
                total[asset] = total.get(asset, _ZERO) + amount
        return total

    def as_list(self) -> list[dict[str, Any]]:
        return [self.positions[k].as_dict() for k in sorted(self.positions)]
