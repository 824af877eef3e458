"""OrderService: placing and cancelling. Decide → append (write-ahead) → apply → call the venue → record
the outcome; the store applies, the reconciler finishes what the venue answers later or never."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.config import EngineSettings
from engine.errors import (
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionStatusUnknown,
    IdempotencyConflict,
    InvalidTransition,
    OrderRejected,
    PreflightFailed,
    SessionHalted,
    UnknownOrder,
    VersionConflict,
)
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.guardrails.preflight import Check, risk_headroom
from engine.guardrails.risk import OrderRateWindow, check_filters, check_position, check_risk
from engine.journal import Journal, NewEntry
from engine.order import CLIENT_ORDER_ID, Order, decide_create
from engine.order_store import OrderStore
from engine.ports import Clock, ExchangePort
from engine.reconcile import plan_sync
from engine.reconciler import Reconciler
from engine.sessions import SessionService
from engine.types import OrderRequest, Side, SymbolRules, VenueOrder
from engine.writer import GroupCommitWriter

S = OrderState
_MODE = {
    SessionState.PAPER: "paper",
    SessionState.TESTNET: "test",
    SessionState.ARMED: "test",
    SessionState.LIVE: "live",
}
_STRIPES = 256


@dataclass(slots=True)
class Placement:
    """What submit/cancel answer: the order and, when the venue was called, its own JSON."""

    order: Order
    exchange: dict[str, Any] = field(default_factory=dict)
    existing: bool = False


class OrderService:
    def __init__(
        self,
        writer: GroupCommitWriter,
        journal: Journal,
        exchange: ExchangePort,
        sessions: SessionService,
        settings: EngineSettings,
        clock: Clock,
    ) -> None:
        self._exchange = exchange
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self.store = OrderStore(writer, journal)
        self.reconciler = Reconciler(self.store, exchange, sessions, settings)
        self.rules: dict[str, SymbolRules] = {}
        self.last_prices: dict[str, Decimal] = {}
        self.balances: dict[str, Decimal] = {}  # asset -> free + locked, for max_position
        self._rate = OrderRateWindow()

    # -- placing -------------------------------------------------------------------------------

    async def submit(self, req: OrderRequest, actor: str, audit: NewEntry | None = None) -> Placement:
        """Place `req` in the mode the session allows.

        Raises:
            IdempotencyConflict, SessionHalted, OrderRejected, ExchangeError subclasses.
        """
        if not CLIENT_ORDER_ID.match(req.client_order_id):
            # The API validates too; the engine does not rely on it (ids go into the journal's hash encoding)
            raise OrderRejected(
                "clientOrderId must match [.A-Z:/a-z0-9_-]{1,36}", reason="invalid_client_order_id"
            )
        if self._sessions.current.state is SessionState.LIVE and req.client_order_id not in self.open:
            try:
                await self._sessions.preflight_or_hold(self.risk_headroom(), actor)
            except PreflightFailed:
                if audit is not None:
                    await self.store.writer.append([audit])
                raise
        async with self.store.lock(req.client_order_id):
            # Open orders are in memory; a finished one is found through the create row's version conflict
            known = self.open.get(req.client_order_id)
            if known is not None:
                return self._same_request(known, req)
            session = self._sessions.current
            mode = _MODE.get(session.state, "none")
            refusal = self._refusal(req, session.state)
            steps: list[tuple[str, dict[str, Any], str]] = [("preflight", {}, "")]
            if refusal is not None:
                steps.append(("reject", {"reason": refusal[0], "detail": refusal[1]}, refusal[0]))
            else:
                steps.append(("send_test" if mode == "test" else "send", {}, ""))
            entries = [
                decide_create(req, mode, actor),
                *self.store.chain(S.NEW, 1, req.client_order_id, steps, actor),
            ]
            try:
                order = await self.store.commit(None, entries, prefix=[audit] if audit else [])
            except VersionConflict:
                # The id exists already (finished, or created by another writer just now): answer with it
                known = self.find(req.client_order_id)
                if known is None:
                    raise
                return self._same_request(known, req)
            if refusal is not None:
                if refusal[0] == "session_hold":
                    raise SessionHalted(
                        f"session is on HOLD: {session.hold_reason}", detail=self._state(order)
                    )
                raise OrderRejected(refusal[1], reason=refusal[0], detail=self._state(order))
            self._rate.record(self._clock.now().timestamp())
            if mode == "test":
                return await self._send_test(order)
            return await self._send(order)

    def risk_headroom(self) -> Check:
        return risk_headroom(len(self.open), self._settings.risk.max_open_orders)

    def _same_request(self, known: Order, req: OrderRequest) -> Placement:
        if known.request.to_payload() != req.to_payload():
            raise IdempotencyConflict(
                f"clientOrderId {req.client_order_id} was used for a different order",
                detail=self._state(known),
            )
        return Placement(known, existing=True)

    def _refusal(self, req: OrderRequest, state: SessionState) -> tuple[str, str] | None:
        if state is SessionState.HOLD:
            return "session_hold", self._sessions.current.hold_reason
        last = self._last_price(req.symbol)
        rules = self.rules.get(req.symbol)
        return (
            check_filters(req, rules, last)
            or check_risk(
                req,
                self._settings.risk,
                last,
                len(self.open),
                self._rate.count(self._clock.now().timestamp()),
            )
            or check_position(req, rules, self._settings.risk, self._held(rules), self._open_buys(req.symbol))
        )

    def _held(self, rules: SymbolRules | None) -> Decimal:
        return self.balances.get(rules.base_asset, Decimal(0)) if rules else Decimal(0)

    def _open_buys(self, symbol: str) -> Decimal:
        return sum(
            ((o.request.quantity or Decimal(0)) - o.filled_qty for o in self.open.values()
             if o.symbol == symbol and o.request.side is Side.BUY),
            Decimal(0),
        )  # fmt: skip

    def _last_price(self, symbol: str) -> Decimal | None:
        return self.last_prices.get(symbol)

    async def refresh_market(self) -> None:
        """Exchange filters, last prices and holdings for local checks; called at start and periodically."""
        self.rules = await self._exchange.symbol_rules()
        if self._settings.risk.max_position:
            account = await self._exchange.account()
            self.balances = {b.asset: b.free + b.locked for b in account.balances}
        prices: dict[str, Decimal] = {}
        for symbol in self._settings.symbols:
            price = await self._exchange.last_price(symbol)
            if price is not None:
                prices[symbol] = price
        self.last_prices = prices

    async def _send_test(self, order: Order) -> Placement:
        try:
            answer = await self._exchange.place_test(order.request)
        except ExchangeError as exc:
            await self.store.commit(
                order, [order.decide("reject", self._error_payload(exc), "system", exc.reason)]
            )
            raise
        await self.store.commit(order, [order.decide("test_ok", {}, "system")])
        return Placement(order, exchange=dict(answer))

    async def _send(self, order: Order) -> Placement:
        started = asyncio.get_running_loop().time()
        try:
            vo = await self._exchange.place(order.request)
        except ExecutionStatusUnknown as exc:
            await self.store.commit(
                order, [order.decide("mark_unknown", self._error_payload(exc), "system", exc.reason)]
            )
            self.store.spawn(self.reconciler.resolve_unknown(order.client_order_id))
            raise
        except (ExchangeRejected, ExchangeUnavailable) as exc:
            # Both mean "not executed": a refusal, or a request that never reached the matching engine
            await self.store.commit(
                order, [order.decide("reject", self._error_payload(exc), "system", exc.reason)]
            )
            if exc.reason == "IP_BANNED":
                await self._sessions.hold(f"IP_BANNED: {exc}")
            raise
        await self.store.sync(order, vo)
        self.store.writer.metrics.send_latency.observe(asyncio.get_running_loop().time() - started)
        return Placement(order, exchange=vo.raw)

    @staticmethod
    def _error_payload(exc: ExchangeError) -> dict[str, Any]:
        return {"code": exc.code, "msg": str(exc), "http_status": exc.http_status}

    # -- cancelling ----------------------------------------------------------------------------

    async def cancel(
        self,
        symbol: str,
        client_order_id: str | None,
        order_id: int | None,
        actor: str,
        audit: NewEntry | None = None,
    ) -> Placement:
        """Raises UnknownOrder, InvalidTransition, ExchangeError subclasses."""
        order = (
            self.open.get(client_order_id)
            if client_order_id
            else self.store.find_by_order_id(symbol, order_id or 0)
        )
        if order is None and client_order_id:
            known = self.find(client_order_id)
            if known is not None and known.symbol == symbol:
                raise InvalidTransition("order", known.state.value, "request_cancel")
        if order is None or order.symbol != symbol:
            raise UnknownOrder(f"no open order {client_order_id or order_id} on {symbol}")
        async with self.store.lock(order.client_order_id):
            await self.store.commit(
                order, [order.decide("request_cancel", {}, actor)], prefix=[audit] if audit else []
            )
            try:
                vo = await self._exchange.cancel(symbol, order.client_order_id)
            except ExecutionStatusUnknown:
                self.store.spawn(self.reconciler.resolve_unknown(order.client_order_id))
                raise
            except ExchangeError as exc:
                await self._cancel_failed(order, exc)
                raise
            await self.store.sync(order, vo)
            return Placement(order, exchange=vo.raw)

    async def _cancel_failed(self, order: Order, exc: ExchangeError) -> None:
        # The venue refused the cancel: it may have filled meanwhile, so ask before deciding
        with contextlib.suppress(ExchangeError):
            vo = await self._exchange.query(order.symbol, order.client_order_id)
            if vo is not None and plan_sync(order, vo):
                await self.store.sync(order, vo)
                return
        trigger = "cancel_failed_partial" if order.filled_qty else "cancel_failed"
        await self.store.commit(
            order, [order.decide(trigger, self._error_payload(exc), "system", exc.reason)]
        )

    # -- delegated to the store and the reconciler ---------------------------------------------

    @property
    def open(self) -> dict[str, Order]:
        return self.store.open

    @open.setter
    def open(self, orders: dict[str, Order]) -> None:
        self.store.open = orders

    def find(self, client_order_id: str) -> Order | None:
        return self.store.find(client_order_id)

    def on_venue_update(self, vo: VenueOrder) -> None:
        self.reconciler.on_venue_update(vo)

    async def reconcile_open(self) -> list[str]:
        return await self.reconciler.reconcile_open()

    async def close(self) -> None:
        await self.store.close()

    @staticmethod
    def _state(order: Order) -> dict[str, Any]:
        return {"clientOrderId": order.client_order_id, "state": order.state.value}


def new_client_order_id() -> str:
    return f"pb-{uuid.uuid4().hex[:24]}"
