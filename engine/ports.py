"""Ports the engine needs from the outside world. Adapters implement them; api/bootstrap picks one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from engine.types import AccountInfo, BalancePush, OrderRequest, PingResult, SymbolRules, VenueOrder

# Asked right before an order's request leaves the process, after any queueing (in-flight slots, the rate
# governor, a clock resync): None to send it, else why not (the adapter then raises OrderNotSent)
SendGate = Callable[[], str | None]


class Clock(Protocol):
    def now(self) -> datetime:
        """Current tz-aware UTC time."""
        ...


class ExchangePort(Protocol):
    """One trading venue: the paper venue in-process, or Binance Spot (live, testnet, simulator).

    Every method may raise engine.errors.ExchangeError subclasses:
    ExchangeRejected (final), ExchangeUnavailable (not executed) or ExecutionStatusUnknown (maybe executed).
    """

    venue: str  # "paper" | "binance-testnet" | "binance-live"

    async def ping(self) -> PingResult: ...

    async def account(self) -> AccountInfo: ...

    async def symbol_rules(self) -> dict[str, SymbolRules]: ...

    async def last_price(self, symbol: str) -> Decimal | None: ...

    async def place_test(self, req: OrderRequest) -> dict[str, object]:
        """Validate an order without executing it (Binance /api/v3/order/test)."""
        ...

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        """Place `req` once. `may_send` is asked with no await between it and the send: an order queued
        behind throttled ones must not go out after the session went on HOLD meanwhile."""
        ...

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder: ...

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The venue's view of the order, or None when the venue says it does not exist
        (which, right after sending, is not proof of absence)."""
        ...

    async def query_trades(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """As `query`, with every trade of the order in `fills` however little its quantity moved (the
        trade tracer: engine.trade_tracer)."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]: ...

    async def key_restrictions(self) -> dict[str, Any] | None:
        """The API key's restrictions (Binance /sapi/v1/account/apiRestrictions) where the venue has them,
        else None (paper, Spot Testnet)."""
        ...

    def order_gate(self) -> str | None:
        """Why new orders must wait right now (e.g. the user data stream has a gap that REST has not
        closed yet: a fill may be missing), or None. Read on the order path: no I/O."""
        ...

    def on_update(self, listener: Callable[[VenueOrder], None]) -> None:
        """Register a callback for order updates the venue pushes (fills, expiries, cancels)."""
        ...

    def on_balances(self, listener: Callable[[BalancePush], None]) -> None:
        """Register a callback for balance changes the venue pushes (a venue that pushes none never
        calls it; the engine then reads the account instead)."""
        ...

    async def close(self) -> None: ...
