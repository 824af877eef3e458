"""OrderService: placing and cancelling.

Every command is decided in one synchronous step against memory that already counts pending work (the
store's reservations), queued to the group-commit writer, and applied in the writer's durability
callback (engine.order_store). The venue call and the recording of its answer run in a task the store
owns; the caller only waits for it, so a caller that is cancelled (a client hanging up, a timeout)
neither splits durable from applied nor leaves a SENT order without anyone to finish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from engine.audit import AuditSlot
from engine.client_ids import is_own
from engine.config import EngineSettings
from engine.errors import (
    AlreadyRejected,
    EngineError,
    EngineStopped,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionStatusUnknown,
    IdempotencyConflict,
    InvalidTransition,
    OrderNotSent,
    OrderRejected,
    PreflightFailed,
    SessionHalted,
    UnknownOrder,
    VersionConflict,
)
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.guardrails.position import PositionLedger
from engine.guardrails.preflight import Check, risk_headroom
from engine.guardrails.risk import (
    OrderRateWindow,
    base_quantity,
    check_filters,
    check_position,
    check_risk,
)
from engine.journal import Journal, NewEntry
from engine.kill_switch import KillReport, KillSwitch
from engine.ledger import Ledger
from engine.order import CLIENT_ORDER_ID, Order, decide_create
from engine.order_store import OrderStore
from engine.ports import Clock, ExchangePort, SendGate
from engine.reconcile import KNOWN_STATUSES, plan_sync
from engine.reconciler import Reconciler
from engine.session import TradingSession
from engine.sessions import SessionService
from engine.trade_tracer import TradeTracer
from engine.types import BalancePush, OrderRequest, Side, SymbolRules, VenueOrder
from engine.writer import GroupCommitWriter

S = OrderState
log = logging.getLogger(__name__)
T = TypeVar("T")
_MODE = {
    SessionState.PAPER: "paper",
    SessionState.TESTNET: "test",
    SessionState.ARMED: "test",
    SessionState.LIVE: "live",
}
Refusal = tuple[str, Any]  # (reason, detail)
# The caps that count creates decided and not yet durable (engine.guardrails.risk, .position)
_PENDING_CAPS = frozenset({"risk_max_open_orders", "risk_order_rate", "risk_max_position"})
# Why a send gate kept an order in the process (besides a HOLD, which answers SessionHalted)
_NOT_SENT = {
    "session_changed": "the session changed (a disarm, an expiry, a HOLD and resume) before it could be sent",
    "approval_expired": "the two-man-rule approval expired before the order could be sent",
}
# Why an order whose create the journal holds was never sent: its commit's answer was lost (see _unconfirmed)
COMMIT_ANSWER_LOST = "commit_answer_lost"


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
        self.positions = PositionLedger()  # holdings for max_position: snapshots + our fills since
        self._rate = OrderRateWindow()
        # Creates decided and queued whose commit has not resolved yet (accepted or refused: both count)
        self._pending_creates: dict[str, asyncio.Future[Order]] = {}
        self.store.on_filled = self._on_filled
        self.reconciler.on_heard = self.heard
        # the kill switch cancels our own orders only (engine.client_ids): never a foreign one
        prefix = settings.client_order_id_prefix
        self.kill_switch = KillSwitch(self.store, sessions, self.cancel, own=lambda cid: is_own(cid, prefix))
        self.store.on_applied = self.kill_switch.on_order
        self.trade_tracer = TradeTracer(self.store, exchange)
        sessions.on_applied = self.kill_switch.on_session
        # The order history read model (engine.ledger; the engine sets this): where a cancel finds a
        # finished order in memory, by client order id or by the venue's orderId, without a journal read
        self.history: Callable[[], Ledger | None] = lambda: None

    # -- placing -------------------------------------------------------------------------------

    async def submit(self, req: OrderRequest, actor: str, audit: AuditSlot | None = None) -> Placement:
        """Place `req` in the mode the session allows.

        Raises:
            IdempotencyConflict, SessionHalted, PreflightFailed, OrderRejected, ExchangeError subclasses.
        """
        if not CLIENT_ORDER_ID.match(req.client_order_id):
            # The API validates too; the engine does not rely on it (ids go into the journal's hash encoding)
            raise OrderRejected(
                "clientOrderId must match [.A-Z:/a-z0-9_-]{1,36}", reason="invalid_client_order_id"
            )
        prefix = self._settings.client_order_id_prefix
        if not is_own(req.client_order_id, prefix):
            # Own orders are told from foreign ones by this prefix alone (adoption, cancel-all): an id
            # without it would be ours in the journal but foreign on the venue
            raise OrderRejected(
                f"clientOrderId must start with this engine's prefix {prefix!r}",
                reason="client_order_id_prefix",
            )
        cid = req.client_order_id
        waited = False
        writer = self.store.writer
        outages = writer.outages
        while True:
            while self.store.busy(cid) or self._sessions.busy:
                if not self.store.busy(cid):  # waiting on this id answers its order: no new decision
                    writer.refuse_if_outage_since(outages, "this order")
                await self.store.idle(cid)
                await self._sessions.idle()
            # ---- one synchronous step from reading the state to queueing the decision ----
            known = self.open.get(cid)
            if known is not None:
                return self._same_request(known, req)
            finished = self.known(cid)
            if finished is not None and finished.terminal:
                # A resend of an order the history holds finished: its create could only meet the existing
                # id, so it is not decided at all. Decided, it would be counted (a reservation, a place in
                # the rate window) until its commit failed, and a new order decided meanwhile would be
                # refused for it: the wait below is once, and a second resend can be decided during it
                return await self._existing(finished, req)
            writer.refuse_if_outage_since(outages, "this order")
            session = self._sessions.current
            mode = _MODE.get(session.state, "none")
            now_s = self._now_s()
            refusal = self._refusal(req, session, mode, now_s)
            if refusal is None or refusal[0] not in _PENDING_CAPS or waited or not self._pending_creates:
                break
            # A cap counts creates decided but not yet durable, and one of them may turn out never to
            # be written (a resubmit of a finished order meets its existing id): refusing now would
            # refuse for an order the journal never holds. Wait for those decided before this one, once,
            # and decide again; nothing of this order was recorded yet, so a cancellation here is clean
            waited = True
            await asyncio.wait(list(self._pending_creates.values()))
        self._rate.record(now_s)  # every decided order counts, refused ones too (a message is a message)
        steps: list[tuple[str, dict[str, Any], str]] = [("preflight", {}, "")]
        if refusal is not None:
            steps.append(("reject", {"reason": refusal[0], "detail": refusal[1]}, refusal[0]))
        else:
            # The pair's assets go into the journal so positions can be computed from it alone (engine.ledger);
            # the rules are known here: check_filters refuses a symbol without them
            rules = self.rules[req.symbol]
            assets = {"baseAsset": rules.base_asset, "quoteAsset": rules.quote_asset}
            steps.append(("send_test" if mode == "test" else "send", assets, ""))
        entries = [decide_create(req, mode, actor), *self.store.chain(S.NEW, 1, cid, steps, actor)]
        outcome = {"decision": steps[-1][0], **({"reason": refusal[0]} if refusal else {})}

        def not_written(exc: BaseException) -> None:
            if not isinstance(exc, EngineStopped):
                # No create row was written (VersionConflict: the group's own savepoint refused it;
                # journal_unavailable or any other failure: the writer fails a group only once the
                # journal shows nothing of it, reading a commit whose answer was lost back first, or
                # when nothing of it was attempted: engine.writer), so this decision is no order in the
                # rate window either: memory counts what a restart would count. Not on EngineStopped:
                # an engine stopping before the journal could tell answers it with the create possibly
                # durable, and a window that forgot a durable create hands out one more order than the
                # journal's, and a restart's, allows; counting one that was not is the safe side. Here,
                # in the writer's callback, before anyone waiting on the create is woken: a cap refusal
                # waiting for it decides again on the window without it
                self._rate.forget(now_s)

        first = self._commit_audited(None, entries, audit, outcome, reserve=None if refusal else req,
                                     on_failed=not_written)  # fmt: skip
        self._pending_creates[cid] = first
        first.add_done_callback(partial(self._create_resolved, cid))  # before any waiter's: it runs first
        # ---- end of the synchronous step ----
        flow = self.store.spawn(self._after_submit(first, req, refusal, mode, session, session.version))
        return await _awaited(flow)

    def _create_resolved(self, cid: str, first: asyncio.Future[Order]) -> None:
        """A create's commit resolved: it no longer counts as pending (unless a newer create of the same id
        took its place before this callback ran)."""
        if self._pending_creates.get(cid) is first:
            del self._pending_creates[cid]

    async def _after_submit(
        self,
        first: asyncio.Future[Order],
        req: OrderRequest,
        refusal: Refusal | None,
        mode: str,
        session: TradingSession,
        decided_in: int,
    ) -> Placement:
        try:
            order = await first
        except VersionConflict:
            # The id exists already (finished and no longer in the history, or created by another process
            # just now): answer with it
            known = await self.store.find_async(req.client_order_id)
            if known is None:
                raise
            return await self._existing(known, req)
        if refusal is not None:
            reason, detail = refusal
            state = self._state(order)
            if reason == "session_hold":
                raise SessionHalted(f"session is on HOLD: {session.hold_reason}", detail=state)
            if reason == "preflight_failed":
                await self._sessions.preflight.hold_for(
                    [f for f in detail if "stale_s" not in (f["detail"] or {})]
                )
                raise PreflightFailed("preflight failed before a live order", detail=detail)
            raise OrderRejected(str(detail), reason=reason, detail=state)
        if order.client_order_id in self.store.unconfirmed:
            return await self._unconfirmed(order)
        if mode == "test":
            return await self._send_test(order)
        return await self._send(order, decided_in)

    async def _unconfirmed(self, order: Order) -> Placement:
        """An order whose create group's commit raised and which the writer then found in the journal
        (its answer to COMMIT was lost): SENT (or TEST) there, and never sent. Reading it back takes as
        long as the database outage does, while the order was decided against the session, prices, caps
        and preflight verdict of its moment, and its caller may have timed out and placed it again under
        another id: sent late, it could be an order nobody wants any more. A restart never sends such an
        order either (SENT without a venue answer is queried by client order id, never resent, and ends
        REJECTED when the venue does not show it). Here the engine knows the request never left the
        process, so the journal says so at once: `reject`, reason commit_answer_lost, as the send gate
        does for a decision that no longer holds. Memory and a replay of the journal agree at every step
        (SENT, then REJECTED). A quick read-back is treated like a slow one: whether an order goes out
        never depends on how long the database took to answer."""
        cid = order.client_order_id
        self.store.unconfirmed.discard(cid)
        reason = COMMIT_ANSWER_LOST
        detail = "the journal commit's answer was lost; the journal holds the order, which was never sent"
        refused = await self._record(order, lambda o: (
            [o.decide("reject", {"reason": reason, "detail": detail}, "system", reason)]
            if o.state in (S.SENT, S.TEST) else []
        ))  # fmt: skip
        raise OrderRejected(
            f"order not sent: {detail}; a new order needs a new clientOrderId",
            reason=reason,
            detail=self._state(refused),
        )

    def _commit_audited(
        self, order: Order | None, entries: list[NewEntry], audit: AuditSlot | None, outcome: dict[str, Any],
        reserve: OrderRequest | None = None, on_failed: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[Order]:  # fmt: skip
        """The store's commit with the call's audit row first in the same group; `on_failed` runs in the
        writer's callback as the store's does, after the audit slot's."""
        if audit is None:
            return self.store.commit(order, entries, reserve=reserve, on_failed=on_failed)
        slot = audit

        def failed(exc: BaseException) -> None:
            slot.unclaim(exc)
            if on_failed is not None:
                on_failed(exc)

        prefix = [audit.claim(outcome)]
        try:
            return self.store.commit(
                order, entries, prefix, reserve=reserve, on_durable=audit.settle, on_failed=failed
            )
        except EngineError:
            audit.unclaim()
            raise

    def restore_rate(self, created_at: list[float]) -> None:
        """Start-up: the creates journaled in the last minute count against max_orders_per_minute (every
        decided order writes one, refused ones too, exactly as the window records them)."""
        self._rate.restore(created_at)

    def risk_headroom(self) -> Check:
        return risk_headroom(self.open_count(), self._settings.risk.max_open_orders)

    def open_count(self) -> int:
        """Open orders plus creates decided and not yet durable: what every cap counts."""
        return len(self.store.open) + len(self.store.reserved)

    def _same_request(self, known: Order, req: OrderRequest) -> Placement:
        # Field by field, quantities and prices as numbers: "0.0010" is the order "0.001" asked for (as
        # the venue reads them), so a client that writes its retry's numbers differently is no conflict
        if known.request != req:
            raise IdempotencyConflict(
                "this clientOrderId was used for a different order",
                detail=self._state(known),
            )
        return Placement(known, existing=True)

    async def _existing(self, known: Order, req: OrderRequest) -> Placement:
        """The answer to a resend of a finished order: the order (existing), or AlreadyRejected."""
        placement = self._same_request(known, req)
        if known.state is S.REJECTED:
            raise await self._rejected_before(known) from None
        return placement

    async def _rejected_before(self, known: Order) -> AlreadyRejected:
        """The answer to a resubmit of a refused order: never 200 (a retry after a lost answer would read
        as placed), and never the first refusal's status either (a 503 says "retry", and this id can never
        be placed again). The detail names the row that ended it: its reason, else its trigger."""
        cid = known.client_order_id
        rows = await asyncio.to_thread(self.store.journal.stream, "order", cid)
        # The row that ended it: a refusal names its reason; the reconciler's (a request that died with
        # the process, never executed: reconcile_rejected) names its trigger
        last = rows[-1] if rows else None
        refusal = (last.reason or str(last.payload.get("reason") or "") or last.trigger) if last else ""
        if last is not None and last.trigger == "reconcile_rejected":
            # Concluded, not known: the send went unanswered and the venue did not show the order within
            # the grace period. A late sighting holds the session (docs/OPERATIONS_LIVE.md)
            what = "its send went unanswered and the venue did not show it within the grace period"
        else:
            what = f"it was refused ({refusal or 'no reason journaled'}): nothing was placed"
        return AlreadyRejected(
            f"clientOrderId {cid} ended REJECTED, {what}; a new order needs a new clientOrderId",
            detail={**self._state(known), "existing": True, "refusal": refusal},
        )

    def _refusal(self, req: OrderRequest, session: TradingSession, mode: str, now_s: float) -> Refusal | None:
        """Why the order may not go out now, from memory alone (no I/O), or None."""
        if session.state is SessionState.HOLD:
            return "session_hold", session.hold_reason
        if mode == "paper" and self._exchange.venue != "paper":
            # The mode follows the session; a paper session must never reach a real venue's place()
            return "paper_on_real_venue", f"a paper session cannot trade on {self._exchange.venue}"
        if mode == "live" and self._settings.safe_mode:
            return "safe_mode_config", "config has safe_mode on: live orders are not allowed"
        if mode == "live" and session.approval_lapsed(now_s):
            # Not left to the expiry job's next tick: the approval ends when it says it does
            return "approval_expired", "the two-man-rule approval for this LIVE session has expired"
        if req.symbol not in self._settings.symbols and not self._settings.allow_unlisted_symbols:
            return "symbol_not_configured", f"{req.symbol} is not in the configured symbols"
        if mode == "live":  # a test order never fills: the gate guards what fills could be missed
            gate = self._exchange.order_gate()
            if gate is not None:
                return "venue_gap", gate
        if mode == "live":
            # The open-orders cap is the risk check's below (a refusal, not a HOLD)
            failed = self._sessions.preflight.failures(Check("risk", True))
            if failed:
                return "preflight_failed", failed
        last = self.last_prices.get(req.symbol)
        rules = self.rules.get(req.symbol)
        return (
            check_filters(req, rules, last)
            or check_risk(req, self._settings.risk, last, self.open_count(), self._rate.count(now_s))
            or check_position(
                req,
                rules,
                self._settings.risk,
                lambda: self._held(rules),
                lambda: self._open_buys(req.symbol),
                last,
            )
        )

    @property
    def balances(self) -> dict[str, Decimal]:
        """asset -> free + locked as of the last balance snapshot (pushed or read)."""
        return self.positions.balances

    def _held(self, rules: SymbolRules | None) -> Decimal:
        """The last balance snapshot plus what our own orders bought (less sold) since it was taken."""
        if rules is None:
            return Decimal(0)
        return self.positions.held(rules.base_asset)

    def heard(self, vo: VenueOrder) -> None:
        """A venue view of one of our orders arrived (pushed, or a REST answer): note how far it filled,
        before anything is decided from it (engine.guardrails.position)."""
        streamed = vo.pushed
        order = self.store.open.get(vo.client_order_id)
        if order is None:  # finished meanwhile: its entry (if any) still counts until a snapshot covers it
            self.positions.heard_again(vo.client_order_id, vo.executed_qty, streamed=streamed)
        elif order.symbol == vo.symbol:
            self._note(order, vo.executed_qty, streamed=streamed)

    def _note(self, order: Order, executed: Decimal, *, streamed: bool = False) -> None:
        rules = self.rules.get(order.symbol)
        if rules is not None and executed:
            sign = 1 if order.request.side is Side.BUY else -1
            self.positions.heard(order.client_order_id, rules.base_asset, sign, executed, streamed=streamed)

    def _on_filled(self, order: Order, delta: Decimal) -> None:
        self._note(order, order.filled_qty)  # applied fills count too (a venue with no push, e.g. paper)

    def on_balances(self, push: BalancePush) -> None:
        """The venue pushed balances (user data stream): the snapshot max_position starts from."""
        self.positions.pushed(push, set(self.store.open))

    def _open_buys(self, symbol: str) -> Decimal:
        """Base quantity still to be bought by open BUYs and by BUYs reserved but not yet durable."""
        open_part = sum(
            ((base_quantity(o.request, self.last_prices.get(symbol)) or Decimal(0)) - o.filled_qty
             for o in self.store.open.values()
             if o.symbol == symbol and o.request.side is Side.BUY),
            Decimal(0),
        )  # fmt: skip
        last = self.last_prices.get(symbol)
        reserved = sum(
            (base_quantity(r, last) or Decimal(0) for r in self.store.reserved.values()
             if r.symbol == symbol and r.side is Side.BUY),
            Decimal(0),
        )  # fmt: skip
        return open_part + reserved

    async def refresh_market(self) -> None:
        """Exchange filters, last prices and holdings for local checks: a background job, never on the
        order path."""
        self.rules = await self._exchange.symbol_rules()
        if self._settings.risk.max_position:
            covered = self.positions.begin_read()  # what the read will include at least
            account = await self._exchange.account()
            self.positions.read(
                {b.asset: b.free + b.locked for b in account.balances}, account.update_time_ms, covered,
                set(self.store.open),
            )  # fmt: skip
        prices: dict[str, Decimal] = {}
        for symbol in self._settings.symbols:
            price = await self._exchange.last_price(symbol)
            if price is not None:
                prices[symbol] = price
        self.last_prices = prices

    async def _send_test(self, order: Order) -> Placement:
        try:
            # A test order never executes: whatever broke, it ends rejected
            answer = await _venue_call("place_test", self._exchange.place_test(order.request))
        except ExchangeError as exc:
            payload, reason = self._error_payload(exc), exc.reason
            await self._record(order, lambda o: [o.decide("reject", payload, "system", reason)])
            raise
        await self._record(order, lambda o: [o.decide("test_ok", {}, "system")])
        return Placement(order, exchange=dict(answer))

    def _send_gate(self, order: Order, decided_in: int) -> SendGate:
        """The order's send gate (ExchangePort.place): asked by the adapter right before the request leaves,
        after whatever it queued behind (a HOLD committed in the same group as the order, in-flight slots,
        the rate governor, a clock resync). The order goes out only while the session still allows what
        it was decided for: not on HOLD, still in the session version it was decided in (`decided_in`: any
        transition since, a disarm, the approval's expiry, a HOLD and resume, left that mode even when
        the session is back in it, e.g. re-armed with another approval) and, for a live order, under an
        unexpired approval. Otherwise it never goes out and is journaled rejected with that reason, which
        is the truth: it was not sent."""
        mode = order.mode

        def may_send() -> str | None:
            session = self._sessions.current
            if session.state is SessionState.HOLD:
                return "session_hold"
            if session.version != decided_in:  # the version the order's mode was read from
                return "session_changed"
            if mode == "live" and session.approval_lapsed(self._now_s()):
                return "approval_expired"
            return None

        return may_send

    def _now_s(self) -> float:
        return self._clock.now().timestamp()

    async def _send(self, order: Order, decided_in: int) -> Placement:
        started = time.perf_counter()  # not loop.time(): uvloop caches it per iteration (ms steps)
        cid = order.client_order_id

        def from_sent(trigger: str, exc: ExchangeError) -> Callable[[Order], list[NewEntry]]:
            # A pushed update may have moved the order already: then the answer adds nothing
            return lambda o: (
                [o.decide(trigger, self._error_payload(exc), "system", exc.reason)]
                if o.state is S.SENT
                else []
            )

        try:
            vo = await _venue_call(
                "place", self._exchange.place(order.request, may_send=self._send_gate(order, decided_in))
            )
            self.heard(vo)
        except ExecutionStatusUnknown as exc:
            await self._record(order, from_sent("mark_unknown", exc))
            self.reconciler.watch_unknown(cid)
            raise
        except (ExchangeRejected, ExchangeUnavailable) as exc:
            # Both mean "not executed": a refusal, or a request that never reached the matching engine
            refused = await self._record(order, from_sent("reject", exc))
            if exc.reason == "IP_BANNED":
                await self._sessions.hold_once(f"IP_BANNED: {exc}")
            if isinstance(exc, OrderNotSent):  # the session changed while the order waited to go out
                if exc.reason == "session_hold":
                    raise SessionHalted(
                        f"session is on HOLD: {self._sessions.current.hold_reason}",
                        detail=self._state(refused),
                    ) from None
                raise OrderRejected(
                    f"order not sent: {_NOT_SENT.get(exc.reason, exc.reason)}",
                    reason=exc.reason,
                    detail=self._state(refused),
                ) from None
            raise
        if vo.status not in KNOWN_STATUSES:
            # Never guessed at: the order is in an unknown state, resolved by query, and an operator looks
            text = vo.status_text
            unknown = ExecutionStatusUnknown(
                f"venue answered status {text!r}", reason="VENUE_STATUS_UNRECOGNISED"
            )
            await self._record(order, from_sent("mark_unknown", unknown))
            await self._sessions.hold_once(f"venue reported unknown order status {text!r} for {cid}")
            self.reconciler.watch_unknown(cid)
            return Placement(order, exchange=vo.raw)
        await self._record(order, lambda o: self.store.chain(
            o.state, o.version, cid, [(t, p, "") for t, p in plan_sync(o, vo)], "system"))  # fmt: skip
        await self._trace_answer(vo)
        self.store.writer.metrics.observe_send_latency(time.perf_counter() - started)
        return Placement(order, exchange=vo.raw)

    async def _trace_answer(self, vo: VenueOrder) -> None:
        """The answer's trades may explain quantity that a view without them (a REST catch-up whose
        GET /myTrades lagged) journaled while the request was out, the order finished meanwhile included:
        they are journaled as late trades (engine.late_trades), not dropped with an answer that moves
        nothing. A failure leaves them to the trade tracer."""
        if not vo.fills:
            return
        try:
            await self.store.sync(vo.client_order_id, vo)
        except EngineError as exc:
            log.info("trades of the answer for %s not journaled: %s", vo.client_order_id, exc.reason)

    async def _record(self, order: Order, decide: Callable[[Order], list[NewEntry]]) -> Order:
        """Decide from the order's applied state once it is idle, and commit (nothing when it is no
        longer open or `decide` has nothing to add)."""
        cid = order.client_order_id
        delay = 0.05
        while True:
            await self.store.idle(cid)
            current = self.store.open.get(cid)
            if current is None:
                return order
            entries = decide(current)
            if not entries:
                return current
            try:
                return await self.store.commit(current, entries)
            except EngineError as exc:
                if exc.reason != "journal_unavailable":
                    raise
                # The venue's answer must not be lost with a failed commit: the order would stay SENT with
                # nobody to finish it. Retry until the journal is back (or the engine stops: EngineStopped)
                log.warning("recording %s for %s failed (%s); retrying", entries[-1].trigger, cid, exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

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
        audit: AuditSlot | None = None,
    ) -> Placement:
        """Cancel by client order id or, without one, by the venue's orderId; the order is found the same
        way for both (client_order_id_of): one that finished is InvalidTransition, one this engine does
        not know UnknownOrder.

        Raises:
            UnknownOrder, InvalidTransition, ExchangeError subclasses.
        """
        cid = client_order_id or self.client_order_id_of(symbol, order_id or 0)
        if not cid:
            raise UnknownOrder("no such open order on this symbol")  # input is never echoed
        await self.store.idle(cid)
        # ---- synchronous from here to the commit ----
        order = self.open.get(cid)
        if order is None or order.symbol != symbol:
            # Memory first (open, then the history of finished orders); only an order the history no
            # longer holds, named by its client id, is read back from the journal
            known = order or self.known(cid) or await self.store.find_async(cid)
            if known is not None and known.symbol == symbol:
                raise InvalidTransition("order", known.state.value, "request_cancel")
            raise UnknownOrder("no such open order on this symbol")
        entries = [order.decide("request_cancel", {}, actor)]
        first = self._commit_audited(order, entries, audit, {"decision": "request_cancel"})
        # ---- end of the synchronous step ----
        return await _awaited(self.store.spawn(self._after_cancel(first)))

    async def _after_cancel(self, first: asyncio.Future[Order]) -> Placement:
        order = await first
        try:
            vo = await _venue_call("cancel", self._exchange.cancel(order.symbol, order.client_order_id))
            self.heard(vo)
        except ExecutionStatusUnknown:
            self.reconciler.watch_unknown(order.client_order_id)
            raise
        except ExchangeError as exc:
            await self._cancel_failed(order, exc)
            raise
        cid = order.client_order_id
        await self._record(order, lambda o: self.store.chain(
            o.state, o.version, cid, [(t, p, "") for t, p in plan_sync(o, vo)], "system"))  # fmt: skip
        return Placement(order, exchange=vo.raw)

    async def _cancel_failed(self, order: Order, exc: ExchangeError) -> None:
        # The venue refused the cancel: it may have filled meanwhile, so ask before deciding
        with contextlib.suppress(ExchangeError):
            vo = await self._exchange.query(order.symbol, order.client_order_id)
            if vo is not None and plan_sync(order, vo):
                await self.store.sync(order.client_order_id, vo)
                return

        def failed(o: Order) -> list[NewEntry]:
            if o.state is not S.CANCEL_PENDING:
                return []
            trigger = "cancel_failed_partial" if o.filled_qty else "cancel_failed"
            return [o.decide(trigger, self._error_payload(exc), "system", exc.reason)]

        await self._record(order, failed)

    async def cancel_all(self, reason: str, actor: str) -> tuple[TradingSession, KillReport]:
        """The kill switch: HOLD (journaled first, with cancel_all in its row), then a cancel of every own
        open order, those still in flight included as soon as they become cancellable (engine.kill_switch
        says what is guaranteed). Answers once the cancels that could be sent now have their outcome."""
        session = await self._sessions.hold(reason, actor, cancel_all=True)
        return session, await self.kill_switch.settle(session.version)

    def cancellable(self, symbol: str | None = None) -> list[Order]:
        """Our open orders a cancel may be requested for now (optionally on one symbol): what cancel-all,
        the kill switch and cancel-on-disconnect act on. Foreign orders are never in it."""
        prefix = self._settings.client_order_id_prefix
        return [
            o for o in list(self.open.values())
            if (symbol is None or o.symbol == symbol) and o.state in (S.ACKED, S.PARTIALLY_FILLED)
            and is_own(o.client_order_id, prefix)
        ]  # fmt: skip

    def foreign_orders(self) -> list[dict[str, Any]]:
        """Working orders on the account that are not ours, as last seen (for /api/status)."""
        return self.reconciler.foreign_orders()

    # -- delegated to the store and the reconciler ---------------------------------------------

    @property
    def open(self) -> dict[str, Order]:
        return self.store.open

    def find(self, client_order_id: str) -> Order | None:
        return self.store.find(client_order_id)

    def known(self, client_order_id: str) -> Order | None:
        """The order from memory alone: open, else finished and still in the history read model."""
        order = self.store.open.get(client_order_id)
        if order is not None:
            return order
        history = self.history()
        return history.order(client_order_id) if history is not None else None

    def client_order_id_of(self, symbol: str, order_id: int) -> str | None:
        """The client order id of the order the venue numbered `order_id` on `symbol`, from memory alone:
        an open order, else a finished one the history still holds (its TERMINAL_KEPT newest), else None."""
        open_order = self.store.find_by_order_id(symbol, order_id)
        if open_order is not None:
            return open_order.client_order_id
        history = self.history()
        return history.finished_order_id(symbol, order_id) if history is not None else None

    async def reconcile_open(self) -> list[str]:
        return await self.reconciler.reconcile_open()

    async def close(self) -> None:
        await self.store.close()

    @staticmethod
    def _state(order: Order) -> dict[str, Any]:
        return {"clientOrderId": order.client_order_id, "state": order.state.value}


async def _venue_call(call: str, pending: Awaitable[T]) -> T:
    """Await a venue call; one that fails outside the port's contract (anything but ExchangeError: an
    adapter bug, an answer it could not read) may have executed, so it raises ExecutionStatusUnknown and
    the order is resolved by query, never left SENT or CANCEL_PENDING with nobody watching it."""
    try:
        return await pending
    except ExchangeError:
        raise
    except Exception as exc:
        log.error("venue %s raised %r: its outcome is treated as unknown", call, exc, exc_info=exc)
        raise ExecutionStatusUnknown(
            f"the venue call {call} failed unexpectedly ({type(exc).__name__})", reason="VENUE_CALL_FAILED"
        ) from exc


async def _awaited(flow: asyncio.Task[Placement]) -> Placement:
    """Wait for a store-owned flow without carrying it: cancelling the caller leaves the flow running;
    the flow cancelled by the engine's stop answers EngineStopped (503), not a bare CancelledError."""
    try:
        return await asyncio.shield(flow)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if flow.cancelled() and (task is None or not task.cancelling()):
            raise EngineStopped("the engine stopped before the order's outcome was recorded") from None
        raise
