"""The venue's own records: one mutable Order per accepted order and one Trade per fill."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

_ZERO = Decimal(0)
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass(frozen=True, slots=True)
class Trade:
    id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool


@dataclass(eq=False, slots=True)
class Order:
    """An order as the matching engine tracks it; identity equality (it is an entity)."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    stop_price: Decimal
    stp_mode: str
    time: int
    base_asset: str
    quote_asset: str
    status: str = "NEW"
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    update_time: int = 0
    working_time: int = -1
    expiry_reason: str | None = None
    # Self-trade prevention (faqs/stp_faq.md): quantity expired by STP, and the last prevented match's id
    prevented_qty: Decimal = _ZERO
    prevented_match_id: int | None = None
    # Order lists (OTO): the list's id (-1 for none) and the other leg's orderId
    order_list_id: int = -1
    list_partner: int | None = None
    # What this order still holds locked in the ledger, in `lock_asset`
    lock_asset: str = ""
    locked: Decimal = _ZERO
    trades: list[Trade] = field(default_factory=list)

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        """Quantity available for further execution: original - executed - prevented (faqs/stp_faq.md)."""
        return self.orig_qty - self.executed_qty - self.prevented_qty

    def lock_needed(self) -> Decimal:
        """What a resting order must keep locked for its unfilled part."""
        if not self.is_open:
            return _ZERO
        return self.remaining * self.price if self.is_buy else self.remaining
