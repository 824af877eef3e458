"""Value objects shared by the engine, its ports and adapters. Money is Decimal, time is tz-aware UTC."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIMIT_MAKER = "LIMIT_MAKER"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class VenueStatus(StrEnum):
    """Order status as a venue reports it (Binance's spelling, enums.md "Order status").

    UNRECOGNISED is not a Binance value: the adapter maps any status it does not know to it, keeping the
    venue's own text in `VenueOrder.status_text`, so a new venue value reaches the engine (to be
    journaled and held) instead of raising.
    """

    NEW = "NEW"
    PENDING_NEW = "PENDING_NEW"  # a pending leg of an order list (e.g. OTO) until its working leg fills
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"  # expired by self-trade prevention (STP)
    UNRECOGNISED = "UNRECOGNISED"


def parse_decimal(value: object, name: str) -> Decimal:
    """Parse a price or quantity from a string or number without going through float.

    Raises:
        ValueError: not a finite, non-negative decimal.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{name} must be a decimal string, was {type(value).__name__}")
    try:
        # floats arrive from JSON numbers; repr keeps the shortest exact text the sender wrote
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal: {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"{name} must be finite, was {value!r}")
    if dec < 0:
        raise ValueError(f"{name} must not be negative, was {value!r}")
    return dec


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What an operator asked for, already validated for shape (not for exchange filters)."""

    symbol: str
    side: Side
    type: OrderType
    client_order_id: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    quote_order_qty: Decimal | None = None
    stop_price: Decimal | None = None

    def to_payload(self) -> dict[str, str]:
        """Canonical string form, as journaled (idempotency compares the requests themselves: numbers as numbers)."""
        out = {
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.type.value,
            "clientOrderId": self.client_order_id,
        }
        for key, val in (
            ("quantity", self.quantity),
            ("price", self.price),
            ("timeInForce", self.time_in_force),
            ("quoteOrderQty", self.quote_order_qty),
            ("stopPrice", self.stop_price),
        ):
            if val is not None:
                out[key] = str(val) if not isinstance(val, StrEnum) else val.value
        return out

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> OrderRequest:
        def dec(key: str) -> Decimal | None:
            return Decimal(p[key]) if p.get(key) is not None else None

        tif = p.get("timeInForce")
        return cls(
            symbol=p["symbol"],
            side=Side(p["side"]),
            type=OrderType(p["type"]),
            client_order_id=p["clientOrderId"],
            quantity=dec("quantity"),
            price=dec("price"),
            time_in_force=TimeInForce(tif) if tif else None,
            quote_order_qty=dec("quoteOrderQty"),
            stop_price=dec("stopPrice"),
        )


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal = Decimal(0)
    commission_asset: str = ""
    is_maker: bool | None = None  # None where the venue's answer does not say (an order's FULL answer)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """A venue's view of one order at one moment. `raw` is the venue's own JSON, for the API answer."""

    symbol: str
    client_order_id: str
    status: VenueStatus
    order_id: int | None = None
    orig_qty: Decimal = Decimal(0)
    executed_qty: Decimal = Decimal(0)
    cumulative_quote_qty: Decimal = Decimal(0)
    fills: tuple[Fill, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    # What the order is, for adopting one the journal does not know (None when the answer omits it)
    side: Side | None = None
    type: OrderType | None = None
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    # Read by the engine, so parsed by the adapter: the venue's own status text (kept for a status the
    # engine does not model), the order list it belongs to (-1: none), the quantity self-trade prevention
    # expired (None: not reported), and whether it was pushed by the venue's stream rather than asked for
    status_text: str = ""
    order_list_id: int = -1
    prevented_qty: Decimal | None = None
    pushed: bool = False

    def as_request(self) -> OrderRequest | None:
        """The order as if we had asked for it, or None when the venue's answer does not say enough."""
        if self.side is None or self.type is None:
            return None
        return OrderRequest(self.symbol, self.side, self.type, self.client_order_id, self.orig_qty,
                            self.price if self.price else None, self.time_in_force)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


@dataclass(frozen=True, slots=True)
class BalancePush:
    """A balance change the venue pushed (Binance user-data-stream.md): kind "position" holds absolute
    balances of the assets an event changed (`outboundAccountPosition`, time = its `u`); kind "delta" is
    one asset's change by a deposit, withdrawal or transfer (`balanceUpdate`, time = its `T`)."""

    kind: str  # "position" | "delta"
    time_ms: int
    balances: tuple[Balance, ...] = ()
    asset: str = ""
    delta: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    can_trade: bool
    balances: tuple[Balance, ...]
    permissions: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict)
    update_time_ms: int = -1  # the venue's time of the last account change (Binance `updateTime`)


@dataclass(frozen=True, slots=True)
class PingResult:
    """Server time and our clock's offset from it, measured at the RTT midpoint."""

    server_time_ms: int
    clock_skew_ms: float
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Exchange filters for one symbol; a zero field disables its rule (Binance semantics)."""

    symbol: str
    base_asset: str
    quote_asset: str
    status: str = "TRADING"
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    tick_size: Decimal = Decimal(0)
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    step_size: Decimal = Decimal(0)
    market_min_qty: Decimal = Decimal(0)
    market_max_qty: Decimal = Decimal(0)
    market_step_size: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    max_notional: Decimal = Decimal(0)
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    order_types: tuple[str, ...] = ("LIMIT", "LIMIT_MAKER", "MARKET")
    base_precision: int = 8
    quote_precision: int = 8
