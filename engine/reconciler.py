"""Reconciliation: pushed venue updates, UNKNOWN resolution by client order id (never by resending),
and the startup pass that finishes what a crash interrupted."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.config import EngineSettings
from engine.errors import ExchangeError
from engine.fsm.order_table import OrderState
from engine.order import CLIENT_ORDER_ID, Order, decide_create
from engine.order_store import OrderStore
from engine.ports import ExchangePort
from engine.sessions import SessionService
from engine.types import VenueOrder, VenueStatus

S = OrderState


class Reconciler:
    def __init__(
        self, store: OrderStore, exchange: ExchangePort, sessions: SessionService, settings: EngineSettings
    ) -> None:
        self._store = store
        self._exchange = exchange
        self._sessions = sessions
        self._settings = settings

    def on_venue_update(self, vo: VenueOrder) -> None:
        """Listener for pushed updates (fills of resting orders, expiries, foreign cancels)."""
        if vo.client_order_id in self._store.open:
            self._store.spawn(self._locked_sync(vo))
        elif vo.status is not VenueStatus.REJECTED:
            self._store.spawn(self._check_closed(vo))

    async def _check_closed(self, vo: VenueOrder) -> None:
        """An update for an order the journal closed as REJECTED (e.g. absent past the UNKNOWN grace)
        means the venue has it after all: a mismatch no rule explains, so HOLD for an operator."""
        order = await asyncio.to_thread(self._store.find, vo.client_order_id)
        if order is not None and order.state is S.REJECTED and order.order_id is None:
            await self._sessions.hold(
                f"order {vo.client_order_id} is journalled REJECTED but the venue shows it {vo.status.value}"
            )

    async def _locked_sync(self, vo: VenueOrder) -> None:
        async with self._store.lock(vo.client_order_id):
            order = self._store.open.get(vo.client_order_id)
            if order is not None:
                await self._store.sync(order, vo)

    async def resolve_unknown(self, client_order_id: str) -> None:
        """Query by client order id until the venue shows the order or the grace period ends.
        Never resends: newClientOrderId is unique only among open orders."""
        store = self._store
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.unknown_grace_s
        delay = self._settings.reconcile_interval_s
        while True:
            order = store.open.get(client_order_id)
            if order is None or order.state not in (S.UNKNOWN, S.CANCEL_PENDING):
                return
            try:
                vo = await self._exchange.query(order.symbol, client_order_id)
            except ExchangeError:
                vo = None
            async with store.lock(client_order_id):
                if vo is not None:
                    await store.sync(order, vo)
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
            await self._store.commit(order, [order.decide("reconcile_rejected", {}, "reconciler", reason)])
        elif vo is not None:  # CANCEL_PENDING, and the venue still shows it working: the cancel did not land
            trigger = "cancel_failed_partial" if order.filled_qty else "cancel_failed"
            await self._store.commit(
                order, [order.decide(trigger, {}, "reconciler", f"still open after {grace}")]
            )
        else:
            await self._sessions.hold(
                f"order {order.client_order_id}: cancel outcome unknown, venue does not show it"
            )

    async def reconcile_open(self) -> list[str]:
        """Startup: finish what a crash interrupted and compare every open order with the venue.
        Returns problems it could not explain (the caller puts the session on HOLD)."""
        store = self._store
        problems: list[str] = []
        for order in list(store.open.values()):
            async with store.lock(order.client_order_id):
                if order.state in (S.NEW, S.PREFLIGHT, S.TEST):
                    # Crashed before the request left (or a test order): nothing reached the venue
                    steps: list[tuple[str, dict[str, Any], str]] = (
                        [("preflight", {}, "")] if order.state is S.NEW else []
                    )
                    steps.append(("reject", {"reason": "restart"}, "restart before send"))
                    entries = store.chain(
                        order.state, order.version, order.client_order_id, steps, "reconciler"
                    )
                    await store.commit(order, entries)
                    continue
                if order.state is S.SENT:
                    await store.commit(
                        order, [order.decide("mark_unknown", {}, "reconciler", "restart after send")]
                    )
            if order.state is S.UNKNOWN:
                store.spawn(self.resolve_unknown(order.client_order_id))
                continue
            try:
                vo = await self._exchange.query(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                problems.append(f"{order.client_order_id}: query failed ({exc.reason})")
                continue
            async with store.lock(order.client_order_id):
                if vo is not None:
                    await store.sync(order, vo)
                    if order.state is S.CANCEL_PENDING:  # the cancel's outcome died with the process
                        store.spawn(self.resolve_unknown(order.client_order_id))
                elif self._exchange.venue == "paper":
                    # The paper venue lives in memory: its resting orders are gone after a restart
                    await store.commit(
                        order, [order.decide("expire", {}, "reconciler", "paper venue restarted")]
                    )
                else:
                    problems.append(f"{order.client_order_id}: open in the journal, unknown to the venue")
        try:
            venue_open = await self._exchange.open_orders(None)
        except ExchangeError as exc:
            return [*problems, f"open orders query failed ({exc.reason})"]
        for vo in venue_open:
            known = store.find(vo.client_order_id)
            if known is None:
                if not await self._adopt(vo):
                    problems.append(
                        f"{vo.client_order_id}: open on the venue, unknown to the journal, cannot adopt"
                    )
            elif known.terminal:
                problems.append(
                    f"{vo.client_order_id}: journalled {known.state.value} but working on the venue"
                )
        return problems

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
        async with self._store.lock(req.client_order_id):
            await self._store.commit(None, entries)
        return True
