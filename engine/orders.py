"""OrderService: load → decide → append (write-ahead) → apply → call the venue → record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine import order as order_mod
from engine.config import EngineSettings
from engine.errors import (
    EngineError,
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
from engine.guardrails.risk import OrderRateWindow, check_filters, check_risk
from engine.journal import Journal, NewEntry, Record
from engine.order import Order, decide_create, decide_from
from engine.ports import Clock, ExchangePort
from engine.reconcile import plan_sync
from engine.sessions import SessionService
from engine.types import OrderRequest, SymbolRules, VenueOrder
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
        self._writer = writer
        self._journal = journal
        self._exchange = exchange
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self.open: dict[str, Order] = {}
        self.rules: dict[str, SymbolRules] = {}
        self.last_prices: dict[str, Decimal] = {}
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._rate = OrderRateWindow()
        self._tasks: set[asyncio.Task[None]] = set()

    def _lock(self, client_order_id: str) -> asyncio.Lock:
        return self._locks[hash(client_order_id) % _STRIPES]

    # -- queries -------------------------------------------------------------------------------

    def find(self, client_order_id: str) -> Order | None:
        """The order from memory if open, else rebuilt from its journal stream."""
        order = self.open.get(client_order_id)
        if order is not None:
            return order
        rebuilt: Order | None = None
        for rec in self._journal.stream("order", client_order_id):
            rebuilt = order_mod.apply(rebuilt, rec.trigger, rec.to_state or "", rec.version, rec.payload)
        return rebuilt

    def find_by_order_id(self, symbol: str, order_id: int) -> Order | None:
        return next((o for o in self.open.values() if o.order_id == order_id and o.symbol == symbol), None)

    # -- placing -------------------------------------------------------------------------------

    async def submit(self, req: OrderRequest, actor: str, audit: NewEntry | None = None) -> Placement:
        """Place `req` in the mode the session allows.

        Raises:
            IdempotencyConflict, SessionHalted, OrderRejected, ExchangeError subclasses.
        """
        if self._sessions.current.state is SessionState.LIVE and req.client_order_id not in self.open:
            try:
                await self._sessions.preflight_or_hold(self.risk_headroom(), actor)
            except PreflightFailed:
                if audit is not None:
                    await self._writer.append([audit])
                raise
        async with self._lock(req.client_order_id):
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
                *self._chain(S.NEW, 1, req.client_order_id, steps, actor),
            ]
            try:
                order = await self._commit(None, entries, prefix=[audit] if audit else [])
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
        return check_filters(req, self.rules.get(req.symbol), last) or check_risk(
            req, self._settings.risk, last, len(self.open), self._rate.count(self._clock.now().timestamp())
        )

    def _last_price(self, symbol: str) -> Decimal | None:
        return self.last_prices.get(symbol)

    async def refresh_market(self) -> None:
        """Exchange filters and last prices for local checks; called at start and periodically."""
        self.rules = await self._exchange.symbol_rules()
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
            await self._commit(
                order, [order.decide("reject", self._error_payload(exc), "system", exc.reason)]
            )
            raise
        await self._commit(order, [order.decide("test_ok", {}, "system")])
        return Placement(order, exchange=dict(answer))

    async def _send(self, order: Order) -> Placement:
        started = asyncio.get_running_loop().time()
        try:
            vo = await self._exchange.place(order.request)
        except ExecutionStatusUnknown as exc:
            await self._commit(
                order, [order.decide("mark_unknown", self._error_payload(exc), "system", exc.reason)]
            )
            self._spawn(self.resolve_unknown(order.client_order_id))
            raise
        except (ExchangeRejected, ExchangeUnavailable) as exc:
            # Both mean "not executed": a refusal, or a request that never reached the matching engine
            await self._commit(
                order, [order.decide("reject", self._error_payload(exc), "system", exc.reason)]
            )
            if exc.reason == "IP_BANNED":
                await self._sessions.hold(f"IP_BANNED: {exc}")
            raise
        await self._sync(order, vo)
        self._writer.metrics.send_latency.observe(asyncio.get_running_loop().time() - started)
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
            else self.find_by_order_id(symbol, order_id or 0)
        )
        if order is None and client_order_id:
            known = self.find(client_order_id)
            if known is not None and known.symbol == symbol:
                raise InvalidTransition("order", known.state.value, "request_cancel")
        if order is None or order.symbol != symbol:
            raise UnknownOrder(f"no open order {client_order_id or order_id} on {symbol}")
        async with self._lock(order.client_order_id):
            await self._commit(
                order, [order.decide("request_cancel", {}, actor)], prefix=[audit] if audit else []
            )
            try:
                vo = await self._exchange.cancel(symbol, order.client_order_id)
            except ExecutionStatusUnknown:
                self._spawn(self.resolve_unknown(order.client_order_id))
                raise
            except ExchangeError as exc:
                await self._cancel_failed(order, exc)
                raise
            await self._sync(order, vo)
            return Placement(order, exchange=vo.raw)

    async def _cancel_failed(self, order: Order, exc: ExchangeError) -> None:
        # The venue refused the cancel: it may have filled meanwhile, so ask before deciding
        with contextlib.suppress(ExchangeError):
            vo = await self._exchange.query(order.symbol, order.client_order_id)
            if vo is not None and plan_sync(order, vo):
                await self._sync(order, vo)
                return
        trigger = "cancel_failed_partial" if order.filled_qty else "cancel_failed"
        await self._commit(order, [order.decide(trigger, self._error_payload(exc), "system", exc.reason)])

    # -- venue updates and reconciliation -------------------------------------------------------

    def on_venue_update(self, vo: VenueOrder) -> None:
        """Listener for pushed updates (fills of resting orders, expiries, foreign cancels)."""
        if vo.client_order_id in self.open:
            self._spawn(self._locked_sync(vo))

    async def _locked_sync(self, vo: VenueOrder) -> None:
        async with self._lock(vo.client_order_id):
            order = self.open.get(vo.client_order_id)
            if order is not None:
                await self._sync(order, vo)

    async def _sync(self, order: Order, vo: VenueOrder) -> None:
        steps = plan_sync(order, vo)
        if steps:
            entries = self._chain(order.state, order.version, order.client_order_id,
                                  [(t, p, "") for t, p in steps], "reconciler" if order.state is S.UNKNOWN else "system")  # fmt: skip
            await self._commit(order, entries)

    async def resolve_unknown(self, client_order_id: str) -> None:
        """Query by client order id until the venue shows the order or the grace period proves absence.
        Never resends: newClientOrderId is unique only among open orders."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.unknown_grace_s
        delay = self._settings.reconcile_interval_s
        while True:
            order = self.open.get(client_order_id)
            if order is None or order.state not in (S.UNKNOWN, S.CANCEL_PENDING):
                return
            try:
                vo = await self._exchange.query(order.symbol, client_order_id)
            except ExchangeError:
                vo = None
            async with self._lock(client_order_id):
                if vo is not None:
                    await self._sync(order, vo)
                    if order.state is not S.CANCEL_PENDING:
                        return
                if loop.time() >= deadline:
                    await self._give_up(order, vo)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _give_up(self, order: Order, vo: VenueOrder | None) -> None:
        grace = f"{self._settings.unknown_grace_s:g}s"
        if order.state is S.UNKNOWN:  # unseen for the whole grace period: taken as never placed
            reason = f"not found by clientOrderId after {grace}"
            await self._commit(order, [order.decide("reconcile_rejected", {}, "reconciler", reason)])
        elif vo is not None:  # CANCEL_PENDING, and the venue still shows it working: the cancel did not land
            trigger = "cancel_failed_partial" if order.filled_qty else "cancel_failed"
            await self._commit(order, [order.decide(trigger, {}, "reconciler", f"still open after {grace}")])
        else:
            await self._sessions.hold(
                f"order {order.client_order_id}: cancel outcome unknown, venue does not show it"
            )

    async def reconcile_open(self) -> list[str]:
        """Startup: finish what a crash interrupted and compare every open order with the venue.
        Returns problems it could not explain (the caller puts the session on HOLD)."""
        problems: list[str] = []
        for order in list(self.open.values()):
            async with self._lock(order.client_order_id):
                if order.state in (S.NEW, S.PREFLIGHT, S.TEST):
                    # Crashed before the request left (or a test order): nothing reached the venue
                    steps = [("preflight", {}, "")] if order.state is S.NEW else []
                    steps.append(("reject", {"reason": "restart"}, "restart before send"))
                    await self._commit(order, self._chain(order.state, order.version, order.client_order_id,
                                                          steps, "reconciler"))  # fmt: skip
                    continue
                if order.state is S.SENT:
                    await self._commit(
                        order, [order.decide("mark_unknown", {}, "reconciler", "restart after send")]
                    )
            if order.state is S.UNKNOWN:
                self._spawn(self.resolve_unknown(order.client_order_id))
                continue
            try:
                vo = await self._exchange.query(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                problems.append(f"{order.client_order_id}: query failed ({exc.reason})")
                continue
            async with self._lock(order.client_order_id):
                if vo is not None:
                    await self._sync(order, vo)
                elif self._exchange.venue == "paper":
                    # The paper venue lives in memory: its resting orders are gone after a restart
                    await self._commit(
                        order, [order.decide("expire", {}, "reconciler", "paper venue restarted")]
                    )
                else:
                    problems.append(f"{order.client_order_id}: open in the journal, unknown to the venue")
        try:
            venue_open = await self._exchange.open_orders(None)
        except ExchangeError as exc:
            return [*problems, f"open orders query failed ({exc.reason})"]
        foreign = [vo.client_order_id for vo in venue_open if self.find(vo.client_order_id) is None]
        if foreign:
            problems.append(f"open on the venue, unknown to the journal: {', '.join(sorted(foreign))}")
        return problems

    # -- plumbing ------------------------------------------------------------------------------

    def _chain(
        self,
        state: OrderState,
        version: int,
        cid: str,
        steps: Sequence[tuple[str, dict[str, Any], str]],
        actor: str,
    ) -> list[NewEntry]:
        out = []
        for trigger, payload, reason in steps:
            entry = decide_from(state, version, cid, trigger, payload, actor, reason)
            out.append(entry)
            state, version = OrderState(entry.to_state), entry.version
        return out

    async def _commit(
        self, order: Order | None, entries: list[NewEntry], prefix: Sequence[NewEntry] = ()
    ) -> Order:
        records: list[Record] = await self._writer.append([*prefix, *entries])
        for rec, entry in zip(records[len(prefix) :], entries, strict=True):
            order = order_mod.apply(order, rec.trigger, rec.to_state or "", rec.version, entry.payload)
        assert order is not None
        if order.terminal:
            self.open.pop(order.client_order_id, None)
        else:
            self.open[order.client_order_id] = order
        return order

    @staticmethod
    def _state(order: Order) -> dict[str, Any]:
        return {"clientOrderId": order.client_order_id, "state": order.state.value}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await task


def new_client_order_id() -> str:
    return f"pb-{uuid.uuid4().hex[:24]}"
