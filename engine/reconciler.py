"""Reconciliation: pushed venue updates, UNKNOWN resolution by client order id (never by resending),
and the connect-time pass that finishes what a crash interrupted. Venue queries run with nothing held;
each decision is taken afterwards against the order's applied state (engine.order_store)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.client_ids import is_own
from engine.config import EngineSettings
from engine.errors import EngineError, EngineStopped, ExchangeError, VersionConflict
from engine.fsm.order_table import OrderState
from engine.journal import NewEntry
from engine.order import CLIENT_ORDER_ID, Order, decide_create
from engine.order_store import OrderStore
from engine.ports import ExchangePort
from engine.reconcile import KNOWN_STATUSES
from engine.sessions import SessionService
from engine.types import VenueOrder, VenueStatus

S = OrderState
log = logging.getLogger(__name__)
_FINISHED = frozenset(
    {VenueStatus.FILLED, VenueStatus.CANCELED, VenueStatus.REJECTED, VenueStatus.EXPIRED,
     VenueStatus.EXPIRED_IN_MATCH}
)  # fmt: skip
EXTERNAL_ORDER = "external_order"  # the audit trigger of a foreign order's one journal row


def _list_leg(vo: VenueOrder) -> bool:
    return vo.status is VenueStatus.PENDING_NEW or vo.order_list_id != -1


def _status_text(vo: VenueOrder) -> str:
    """The venue's status; its own text for one the engine does not model."""
    if vo.status is VenueStatus.UNRECOGNISED:
        return vo.status_text
    return vo.status.value


def _described(vo: VenueOrder, why: str) -> dict[str, Any]:
    """A foreign order as /api/status shows it; its journal row adds a few fields."""
    return {
        "symbol": vo.symbol,
        "clientOrderId": vo.client_order_id,
        "orderId": vo.order_id,
        "status": _status_text(vo),
        "side": vo.side.value if vo.side is not None else None,
        "qty": str(vo.orig_qty),
        "why": why,
    }


def _external_row(vo: VenueOrder, why: str) -> NewEntry | None:
    """The one audit row of a foreign order: its stream id names the order (symbol and the venue's order
    id), so a second append of it, in this run or after a restart, is a version conflict and nothing
    is written twice. None when the venue's answer names no order id."""
    if vo.order_id is None:
        return None
    payload = {
        **_described(vo, why),
        "executedQty": str(vo.executed_qty),
        "price": str(vo.price) if vo.price is not None else None,
        "orderListId": vo.order_list_id,
    }
    sid = f"{EXTERNAL_ORDER}-{vo.symbol}-{vo.order_id}"
    return NewEntry("audit", sid, 1, EXTERNAL_ORDER, None, None, payload, "system", why)


class Reconciler:
    def __init__(
        self, store: OrderStore, exchange: ExchangePort, sessions: SessionService, settings: EngineSettings
    ) -> None:
        self._store = store
        self._exchange = exchange
        self._sessions = sessions
        self._settings = settings
        self._resolving: set[str] = set()
        # Working orders on the account that are not ours: (symbol, clientOrderId) -> what was last seen
        self.foreign: dict[tuple[str, str], dict[str, Any]] = {}
        self._reported: set[tuple[str, str]] = set()  # foreign orders journaled (or being) in this run
        self.on_heard: Callable[[VenueOrder], None] | None = None  # told of every view of ours on arrival

    def foreign_reason(self, vo: VenueOrder) -> str | None:
        """Why `vo` is not ours to adopt or cancel, or None when it is ours."""
        if _list_leg(vo):
            # An order-list leg (OTO/OCO...): this engine places no lists, and cancelling one leg alone
            # would cancel its whole list (rest-api.md): it is left to whoever placed the list
            return "order-list leg"
        if not is_own(vo.client_order_id, self._settings.client_order_id_prefix):
            return "clientOrderId without this engine's prefix"
        return None

    def note_foreign(self, vo: VenueOrder, why: str) -> asyncio.Future[None] | None:
        """Record a foreign order as the venue shows it now (a finished one leaves the report) and
        journal it once, the first time it is seen. Never adopted, never cancelled. Returns the commit
        of its row (resolved either way, never failed) when this call journaled it, else None."""
        key = (vo.symbol, vo.client_order_id)
        if vo.status in _FINISHED:
            self.foreign.pop(key, None)
            return None
        self.foreign[key] = _described(vo, why)
        entry = _external_row(vo, why)
        if key in self._reported or entry is None:
            return None
        self._reported.add(key)
        log.warning("foreign order on the account: %s %s (%s)", vo.symbol, vo.client_order_id, why)

        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def durable(_records: object) -> None:
            if not done.done():
                done.set_result(None)

        def failed(exc: BaseException) -> None:
            if not isinstance(exc, VersionConflict):  # a conflict: journaled already (an earlier run)
                self._reported.discard(key)  # e.g. the journal was down: journaled when next seen
                log.warning("foreign order %s not journaled: %r", vo.client_order_id, exc)
            if not done.done():
                done.set_result(None)

        try:
            self._store.writer.submit([entry], durable, failed)
        except EngineStopped:
            self._reported.discard(key)
            return None
        return done

    def foreign_orders(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self.foreign.values()]

    def on_venue_update(self, vo: VenueOrder) -> None:
        """Listener for pushed updates (fills of resting orders, expiries, foreign cancels). Decides at
        once when the order is idle, so updates apply in the order the venue sent them."""
        store = self._store
        if vo.status not in KNOWN_STATUSES:
            store.spawn(
                self._sessions.hold_once(f"venue reported unknown order status {vo.status_text!r}"[:300])
            )
            return
        if self.on_heard is not None:
            self.on_heard(vo)  # before deciding: a balance snapshot may arrive while this commits
        # A finished order still held for its untraced quantity takes the same path: for it, sync only
        # journals the view's late trades (engine.late_trades)
        order = store.open.get(vo.client_order_id) or store.untraced.get(vo.client_order_id)
        if order is None:
            why = self.foreign_reason(vo)
            if why is not None:
                if self.note_foreign(vo, why) is not None and self._settings.hold_on_foreign_orders:
                    store.spawn(
                        self._sessions.hold_once(
                            f"foreign order on the account: {vo.symbol} {vo.client_order_id} ({why})"[:300]
                        )
                    )
                return
            if vo.status is not VenueStatus.REJECTED:
                store.spawn(self._check_closed(vo))
            return
        if store.busy(vo.client_order_id):
            store.spawn(store.sync(vo.client_order_id, vo))
            return
        try:
            store.sync_now(order, vo)
        except EngineError as exc:  # the writer is closed (stopping): the next start reconciles it
            log.info("venue update for %s not journaled: %s", vo.client_order_id, exc.reason)

    async def _check_closed(self, vo: VenueOrder) -> None:
        """An update for an order the journal closed as REJECTED (e.g. absent past the UNKNOWN grace)
        means the venue has it after all: a mismatch no rule explains, so HOLD for an operator."""
        order = await self._store.find_async(vo.client_order_id)
        if order is not None and order.state is S.REJECTED and order.order_id is None:
            await self._sessions.hold_once(
                f"order {vo.client_order_id} is journalled REJECTED but the venue shows it {vo.status.value}"
            )

    def watch_unknown(self, client_order_id: str) -> None:
        """Resolve an UNKNOWN (or CANCEL_PENDING with an unknown outcome) order in the background, once."""
        if client_order_id not in self._resolving:
            self._resolving.add(client_order_id)
            self._store.spawn(self._resolve(client_order_id))

    async def _resolve(self, client_order_id: str) -> None:
        try:
            await self.resolve_unknown(client_order_id)
        finally:
            self._resolving.discard(client_order_id)

    async def resolve_unknown(self, client_order_id: str) -> None:
        """Query by client order id until the venue shows the order or the grace period ends.
        Never resends: newClientOrderId is unique only among open orders."""
        store = self._store
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.unknown_grace_s
        delay = self._settings.reconcile_interval_s
        proven_absent = False  # only a successful query that found nothing says "not there"
        while True:
            await store.idle(client_order_id)
            order = store.open.get(client_order_id)
            if order is None or order.state not in (S.UNKNOWN, S.CANCEL_PENDING):
                return
            vo: VenueOrder | None = None
            try:
                vo = await self._exchange.query(order.symbol, client_order_id)
                proven_absent = vo is None
            except ExchangeError as exc:
                proven_absent = False
                log.info("query of %s failed (%s): asking again", client_order_id, exc.reason)
            except Exception as exc:
                # Outside the port's contract: it proves nothing, and must not end the watch
                proven_absent = False
                log.error("query of %s raised %r: asking again", client_order_id, exc, exc_info=exc)
            try:
                if vo is not None and vo.status not in KNOWN_STATUSES:
                    proven_absent = False
                    await self._sessions.hold_once(
                        f"order {client_order_id}: venue shows unknown status {vo.status_text!r}"[:300]
                    )
                elif vo is not None:
                    order = await store.sync(client_order_id, vo) or order
                    if order.state is not S.CANCEL_PENDING:
                        return
                understood = vo is not None and vo.status in KNOWN_STATUSES
                if loop.time() >= deadline and (proven_absent or understood):
                    await self._give_up(client_order_id, vo)
                    return
                if loop.time() >= deadline + self._settings.unknown_grace_s:
                    # Still unproven after twice the grace (queries failing): an operator must look
                    await self._sessions.hold_once(
                        f"order {client_order_id}: outcome still unknown, venue unreachable"
                    )
            except EngineError as exc:  # a commit failed (journal down): keep trying, never die silently
                log.warning("resolving %s: %s (%s); retrying", client_order_id, exc, exc.reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _give_up(self, client_order_id: str, vo: VenueOrder | None) -> None:
        store = self._store
        await store.idle(client_order_id)
        order = store.open.get(client_order_id)
        if order is None:
            return
        grace = f"{self._settings.unknown_grace_s:g}s"
        if order.state is S.UNKNOWN:  # unseen for the whole grace period: taken as never placed
            reason = f"not found by clientOrderId after {grace}"
            await store.commit(order, [order.decide("reconcile_rejected", {}, "reconciler", reason)])
        elif order.state is not S.CANCEL_PENDING:
            return
        elif vo is not None:  # the venue still shows it working: the cancel did not land
            trigger = "cancel_failed_partial" if order.filled_qty else "cancel_failed"
            await store.commit(order, [order.decide(trigger, {}, "reconciler", f"still open after {grace}")])
        else:
            await self._sessions.hold_once(
                f"order {order.client_order_id}: cancel outcome unknown, venue does not show it"
            )

    async def reconcile_open(self) -> list[str]:
        """Connect time: finish what a crash interrupted and compare every open order with the venue.
        Idempotent (a retry after a failure plans nothing twice). Returns problems it could not explain
        (the caller puts the session on HOLD)."""
        store = self._store
        problems: list[str] = []
        for order in list(store.open.values()):
            await self._finish_interrupted(order)
        for order in list(store.open.values()):
            cid = order.client_order_id
            if order.state is S.UNKNOWN:
                self.watch_unknown(cid)
                continue
            try:
                vo = await self._exchange.query(order.symbol, cid)
            except ExchangeError as exc:
                problems.append(f"{cid}: query failed ({exc.reason})")
                continue
            if vo is not None:
                if vo.status not in KNOWN_STATUSES:
                    problems.append(f"{cid}: unknown venue status {vo.status_text!r}")
                    continue
                order = await store.sync(cid, vo) or order
                if order.state is S.CANCEL_PENDING:  # the cancel's outcome died with the process
                    self.watch_unknown(cid)
            elif self._exchange.venue == "paper":
                # The paper venue lives in memory: its resting orders are gone after a restart
                await self._expire_paper(cid)
            else:
                problems.append(f"{cid}: open in the journal, unknown to the venue")
        try:
            venue_open = await self._exchange.open_orders(None)
        except ExchangeError as exc:
            return [*problems, f"open orders query failed ({exc.reason})"]
        self.foreign = {}  # the venue's list is the truth: foreign orders that ended meanwhile leave
        journaling: list[asyncio.Future[None]] = []
        for vo in venue_open:
            why = self.foreign_reason(vo)
            if why is not None and vo.client_order_id not in store.open:
                if (row := self.note_foreign(vo, why)) is not None:
                    journaling.append(row)
                continue
            known = await store.find_async(vo.client_order_id)
            if known is None:
                if not await self._adopt(vo):
                    problems.append(
                        f"{vo.client_order_id}: open on the venue, unknown to the journal, cannot adopt"
                    )
            elif known.terminal:
                problems.append(
                    f"{vo.client_order_id}: journalled {known.state.value} but working on the venue"
                )
        await asyncio.gather(*journaling)  # connect returns with every foreign order journaled
        if self._settings.hold_on_foreign_orders and self.foreign:
            problems.append(f"{len(self.foreign)} foreign working order(s) on the account")
        return problems

    async def _finish_interrupted(self, order: Order) -> None:
        store = self._store
        cid = order.client_order_id
        await store.idle(cid)
        if order.state in (S.NEW, S.PREFLIGHT, S.TEST):
            # Crashed before the request left (or a test order): nothing reached the venue
            steps: list[tuple[str, dict[str, Any], str]] = (
                [("preflight", {}, "")] if order.state is S.NEW else []
            )
            steps.append(("reject", {"reason": "restart"}, "restart before send"))
            await store.commit(order, store.chain(order.state, order.version, cid, steps, "reconciler"))
        elif order.state is S.SENT:
            await store.commit(order, [order.decide("mark_unknown", {}, "reconciler", "restart after send")])

    async def _expire_paper(self, client_order_id: str) -> None:
        await self._store.idle(client_order_id)
        order = self._store.open.get(client_order_id)
        if order is not None and order.state in (S.ACKED, S.PARTIALLY_FILLED, S.CANCEL_PENDING):
            await self._store.commit(
                order, [order.decide("expire", {}, "reconciler", "paper venue restarted")]
            )

    async def _adopt(self, vo: VenueOrder) -> bool:
        """Journal a working order the journal does not know, so it is tracked (and can be cancelled) from
        now on; False when the venue's answer cannot be turned into an order we could have placed."""
        req = vo.as_request()
        if req is None or not CLIENT_ORDER_ID.match(vo.client_order_id):
            return False
        mode = "paper" if self._exchange.venue == "paper" else "live"
        trigger = "adopt_partial" if vo.executed_qty else "adopt"
        payload = {
            "orderId": vo.order_id,
            "executedQty": str(vo.executed_qty),
            "venueStatus": vo.status.value,
        }
        reason = "adopted: working on the venue, unknown to the journal"
        create = decide_create(req, mode, "reconciler", reason)
        steps = [(trigger, payload, reason)]
        entries = [create, *self._store.chain(S.NEW, 1, req.client_order_id, steps, "reconciler")]
        await self._store.idle(req.client_order_id)
        if req.client_order_id in self._store.open:
            return True
        await self._store.commit(None, entries)
        return True
