"""Hand-written fakes: a scriptable in-memory exchange and a settable clock. No MagicMock."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.errors import ExchangeError, ExchangeRejected, OrderNotSent
from engine.ports import SendGate
from engine.types import (
    AccountInfo,
    Balance,
    BalancePush,
    Fill,
    OrderRequest,
    PingResult,
    SymbolRules,
    VenueOrder,
    VenueStatus,
)

RULES = {
    "BTCUSDT": SymbolRules(
        "BTCUSDT", "BTC", "USDT", min_price=Decimal("0.01"), max_price=Decimal("1000000"), tick_size=Decimal("0.01"),
        min_qty=Decimal("0.00001"), max_qty=Decimal("9000"), step_size=Decimal("0.00001"), min_notional=Decimal("5"),
    ),
}  # fmt: skip


class FrozenClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeExchange:
    """Orders rest as NEW unless a script says otherwise; `fail_next` raises on the next place()."""

    venue = "binance-testnet"

    def __init__(self) -> None:
        self.orders: dict[str, VenueOrder] = {}
        self.placed: list[OrderRequest] = []
        self.tested: list[OrderRequest] = []
        self.fail_next: ExchangeError | None = None
        self.execute_then_fail: ExchangeError | None = None  # the lost-response case
        self.hidden: set[str] = set()  # not visible to query (lag)
        self.trades_of: dict[str, tuple[Fill, ...]] = {}  # query_trades answers these fills (myTrades)
        self.outcome: Callable[[OrderRequest], VenueStatus] = lambda _req: VenueStatus.NEW
        self.listeners: list[Callable[[VenueOrder], None]] = []
        self.balance_listeners: list[Callable[[BalancePush], None]] = []
        self.skew_ms = 0.0
        self.balances: dict[str, Decimal] = {}
        self.permissions: tuple[str, ...] = ("SPOT",)
        self.restrictions: dict[str, Any] | None = None  # None: a venue without apiRestrictions
        self.gate: str | None = None  # order_gate(): why new orders must wait
        self._ids = itertools.count(1)
        self._trades = itertools.count(100)

    async def ping(self) -> PingResult:
        return PingResult(1_700_000_000_000, self.skew_ms, 1.0)

    async def account(self) -> AccountInfo:
        held = (Balance(a, q, Decimal(0)) for a, q in self.balances.items())
        return AccountInfo(True, (Balance("USDT", Decimal(1000), Decimal(0)), *held), self.permissions)

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        return RULES

    async def last_price(self, symbol: str) -> Decimal | None:
        return Decimal("65000") if symbol == "BTCUSDT" else None

    async def place_test(self, req: OrderRequest) -> dict[str, Any]:
        self.tested.append(req)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return {}

    @staticmethod
    def sending(may_send: SendGate | None) -> None:
        """The send gate, asked as the adapters ask it: right before the request leaves. A fake that
        models the venue's own latency asks it before waiting (the request is out by then)."""
        why = may_send() if may_send is not None else None
        if why is not None:
            raise OrderNotSent(f"order not sent: {why}", reason=why)

    async def place(self, req: OrderRequest, *, may_send: SendGate | None = None) -> VenueOrder:
        self.sending(may_send)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.placed.append(req)
        status = self.outcome(req)
        qty = req.quantity or Decimal(0)
        filled = qty if status is VenueStatus.FILLED else Decimal(0)
        fills = (Fill(next(self._trades), req.price or Decimal(1), qty),) if filled else ()
        vo = VenueOrder(req.symbol, req.client_order_id, status, next(self._ids), qty, filled, Decimal(0), fills,
                        {"status": status.value}, req.side, req.type, req.price, req.time_in_force)  # fmt: skip
        self.orders[req.client_order_id] = vo
        if self.execute_then_fail is not None:
            exc, self.execute_then_fail = self.execute_then_fail, None
            raise exc
        return vo

    def fill(self, cid: str, qty: Decimal, status: VenueStatus = VenueStatus.PARTIALLY_FILLED) -> VenueOrder:
        """Simulate a trade on a resting order and push it to listeners."""
        vo = self.orders[cid]
        fill = Fill(next(self._trades), Decimal("65000"), qty)
        vo = replace(vo, status=status, executed_qty=vo.executed_qty + qty, fills=(*vo.fills, fill))
        self.orders[cid] = vo
        for listener in self.listeners:
            listener(vo)
        return vo

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        vo = self.orders.get(client_order_id)
        if vo is None or vo.status not in (VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED):
            raise ExchangeRejected("Unknown order sent.", reason="UNKNOWN_ORDER", code=-2011, http_status=400)
        vo = replace(vo, status=VenueStatus.CANCELED)
        self.orders[client_order_id] = vo
        return vo

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        if client_order_id in self.hidden:
            return None
        return self.orders.get(client_order_id)

    async def query_trades(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        if client_order_id in self.trades_of:
            vo = await self.query(symbol, client_order_id)
            return None if vo is None else replace(vo, fills=self.trades_of[client_order_id])
        return await self.query(symbol, client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        live = (VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED)
        return [vo for vo in self.orders.values() if vo.status in live and symbol in (None, vo.symbol)]

    def order_gate(self) -> str | None:
        return self.gate

    async def key_restrictions(self) -> dict[str, Any] | None:
        return self.restrictions

    def on_update(self, listener: Callable[[VenueOrder], None]) -> None:
        self.listeners.append(listener)

    def on_balances(self, listener: Callable[[BalancePush], None]) -> None:
        self.balance_listeners.append(listener)

    async def close(self) -> None:
        return None
