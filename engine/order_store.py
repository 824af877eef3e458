"""The orders in memory and the one way they change: decide (synchronously) → queue to the group-commit
writer → apply in the writer's durability callback.

Exclusivity without locks held across I/O: an order with a decided group that is not yet durable is
*busy*; the next command on it waits for that group (a commit, milliseconds) and then decides against the
applied state. Venue calls never happen inside that window: while a request is out, the order's own FSM
state (SENT, CANCEL_PENDING) is what keeps other commands off it.

Reservations: a create that is decided but not yet applied already counts against the risk caps, so a
burst of concurrent submits cannot all pass a check that each made before any of them was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from engine import order as order_mod
from engine.errors import EngineError, EngineStopped
from engine.fsm.order_table import OrderState
from engine.journal import Journal, NewEntry, Record
from engine.late_trades import UntracedOrders, apply_trace, plan_traces, trade_entry
from engine.order import Order, decide_from
from engine.reconcile import plan_sync
from engine.types import OrderRequest, VenueOrder
from engine.writer import GroupCommitWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


def _observe(fut: asyncio.Future[Any]) -> None:
    # Nobody may await a fire-and-forget commit: retrieve its exception so asyncio does not warn
    if not fut.cancelled():
        fut.exception()


class OrderStore:
    def __init__(self, writer: GroupCommitWriter, journal: Journal) -> None:
        self.writer = writer
        self.journal = journal
        self.open: dict[str, Order] = {}
        self.untraced = UntracedOrders()  # terminal orders whose late trades may still be journaled
        self.reserved: dict[str, OrderRequest] = {}  # creates decided, not yet durable
        # Orders to be sent (creates with a reservation) whose group the writer found durable by reading
        # the journal back, its commit's answer lost (engine.writer): OrderService never sends them
        self.unconfirmed: set[str] = set()
        self._busy: dict[str, asyncio.Future[Order]] = {}
        self._by_order_id: dict[tuple[str, int], str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False  # set by close(): the engine is stopping, nothing new starts
        self.on_filled: Callable[[Order, Decimal], None] | None = None  # told each applied fill's quantity
        self.on_applied: Callable[[Order], None] | None = None  # told each applied group's resulting order

    # -- reading -------------------------------------------------------------------------------

    def find(self, client_order_id: str) -> Order | None:
        """The order from memory if open, else rebuilt from its journal stream (a database read)."""
        order = self.open.get(client_order_id)
        if order is not None:
            return order
        rebuilt: Order | None = None
        for rec in self.journal.stream("order", client_order_id):
            rebuilt = order_mod.apply(rebuilt, rec.trigger, rec.to_state or "", rec.version, rec.payload)
        return rebuilt

    async def find_async(self, client_order_id: str) -> Order | None:
        order = self.open.get(client_order_id)
        return order if order is not None else await asyncio.to_thread(self.find, client_order_id)

    def find_by_order_id(self, symbol: str, order_id: int) -> Order | None:
        cid = self._by_order_id.get((symbol, order_id))
        return self.open.get(cid) if cid is not None else None

    def busy(self, client_order_id: str) -> bool:
        return client_order_id in self._busy

    async def idle(self, client_order_id: str) -> None:
        """Wait until no decided group of this order is pending. asyncio.wait neither raises the group's
        error here nor cancels the group if this waiter is cancelled."""
        while (pending := self._busy.get(client_order_id)) is not None:
            await asyncio.wait([pending])

    # -- writing -------------------------------------------------------------------------------

    @staticmethod
    def chain(
        state: OrderState,
        version: int,
        cid: str,
        steps: Sequence[tuple[str, dict[str, Any], str]],
        actor: str,
    ) -> list[NewEntry]:
        """Several transitions of one order decided in a row, each from the previous one's state."""
        out = []
        for trigger, payload, reason in steps:
            entry = decide_from(state, version, cid, trigger, payload, actor, reason)
            out.append(entry)
            state, version = order_mod.state_of(entry.to_state or ""), entry.version
        return out

    def commit(
        self,
        order: Order | None,
        entries: list[NewEntry],
        prefix: Sequence[NewEntry] = (),
        *,
        reserve: OrderRequest | None = None,
        on_durable: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[Order]:
        """Queue `prefix` + `entries` as one group; the returned future resolves once they are durable
        *and applied* (or fails with VersionConflict / JournalUnavailable, nothing written or applied;
        EngineStopped, the writer stopped before the journal could tell whether they landed: the next
        start replays them if they did). A group found durable only by reading the journal back, its
        commit's answer lost, is applied like any other; a create among them is in `unconfirmed`.
        Synchronous: call it in the same step that read the state `entries` were decided from.

        Raises:
            EngineStopped: the store or the writer is closed; nothing was queued.
        """
        self._refuse_if_closed()
        cid = entries[0].stream_id
        if cid in self._busy:
            raise EngineError(f"order {cid} has a pending commit", reason="order_busy")
        done: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_observe)
        skip = len(prefix)

        def durable(records: list[Record]) -> None:
            current = order
            before = order.filled_qty if order is not None else Decimal(0)
            try:
                for rec, entry in zip(records[skip:], entries, strict=True):
                    current = order_mod.apply(
                        current, rec.trigger, rec.to_state or "", rec.version, entry.payload, reserve
                    )
                assert current is not None
                if reserve is not None and self.writer.recovering:
                    self.unconfirmed.add(cid)
                if self.on_filled is not None and current.filled_qty != before:
                    self.on_filled(current, current.filled_qty - before)
                self._place(current)
            except BaseException as exc:
                # An apply that raises is a bug (the writer logs it); the order must not stay busy and
                # its caller must not wait forever. Memory now lags the journal for this order: its next
                # command is decided from the old version and refused by the journal's version check.
                self._release(cid)
                if not done.done():
                    done.set_exception(exc)
                raise
            self._release(cid)
            if self.on_applied is not None:
                self.on_applied(current)
            if on_durable is not None:
                on_durable()
            if not done.done():
                done.set_result(current)

        def failed(exc: BaseException) -> None:
            self._release(cid)
            if on_failed is not None:
                on_failed(exc)
            if not done.done():
                done.set_exception(exc)

        self.writer.submit([*prefix, *entries], durable, failed)
        self._busy[cid] = done
        if reserve is not None:
            self.reserved[cid] = reserve
        return done

    def _refuse_if_closed(self) -> None:
        # close() cancels the tasks it finds; a command decided after it would start a flow (a venue
        # call) that nothing cancels or awaits, racing the writer's and the venue client's close
        if self.closed:
            raise EngineStopped("the engine is stopping: no new order command is accepted")

    def _place(self, order: Order) -> None:
        cid = order.client_order_id
        if order.terminal:
            self.open.pop(cid, None)
            self.unconfirmed.discard(cid)
            self.untraced.finished(order)
            if order.order_id is not None:
                self._by_order_id.pop((order.symbol, order.order_id), None)
        else:
            self.open[cid] = order
            if order.order_id is not None:
                self._by_order_id[(order.symbol, order.order_id)] = cid

    def _release(self, cid: str) -> None:
        self._busy.pop(cid, None)
        self.reserved.pop(cid, None)

    def restore(self, orders: dict[str, Order], untraced: UntracedOrders | None = None) -> None:
        """The open orders (and the terminal ones with untraced quantity) replay rebuilt (start-up only)."""
        self.open = {}
        self._by_order_id = {}
        self.untraced = untraced if untraced is not None else UntracedOrders()
        for order in orders.values():
            self._place(order)

    def sync_now(self, order: Order, vo: VenueOrder) -> asyncio.Future[Order] | None:
        """Decide and queue whatever moves `order` to the venue's view; None when it is already there.
        A view that moves nothing but carries trades behind the order's untraced quantity journals them."""
        steps = plan_sync(order, vo)
        if not steps:
            return self.trace_now(order, vo)
        actor = "reconciler" if order.state is OrderState.UNKNOWN else "system"
        entries = self.chain(
            order.state, order.version, order.client_order_id, [(t, p, "") for t, p in steps], actor
        )
        return self.commit(order, entries)

    def trace_now(self, order: Order, vo: VenueOrder) -> asyncio.Future[Order] | None:
        """Queue one trade row per trade in `vo` that explains `order`'s untraced quantity (engine.late_trades);
        None when there is none. `order` may be open or terminal (held in `untraced`). Applied in the
        durability callback like every order change; the order is busy until then."""
        fills = plan_traces(order, vo) if vo.symbol == order.symbol else []
        if not fills:
            return None
        self._refuse_if_closed()
        cid = order.client_order_id
        if cid in self._busy:
            raise EngineError(f"order {cid} has a pending commit", reason="order_busy")
        entries = [trade_entry(order, fill, "reconciler") for fill in fills]
        done: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_observe)

        def durable(_records: list[Record]) -> None:
            for entry in entries:
                apply_trace(order, entry.payload)
            if order.terminal:
                self.untraced.traced(order)
            self._release(cid)
            if not done.done():
                done.set_result(order)

        def failed(exc: BaseException) -> None:
            self._release(cid)
            if not done.done():
                done.set_exception(exc)

        self.writer.submit(entries, durable, failed)
        self._busy[cid] = done
        return done

    async def sync(self, client_order_id: str, vo: VenueOrder) -> Order | None:
        """Bring the open order to the venue's view; None when it is not open (any more). An order that
        finished while this waited still gets the view's trades behind its untraced quantity."""
        await self.idle(client_order_id)
        order = self.open.get(client_order_id)
        if order is None:
            done = self.untraced.get(client_order_id)
            if done is not None and (tracing := self.trace_now(done, vo)) is not None:
                await tracing
            return None
        pending = self.sync_now(order, vo)
        return order if pending is None else await pending

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task owned by the store: cancelled and awaited by close(); its failure is logged, not lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if not isinstance(exc, EngineError):
            log.error("order task failed: %r", exc, exc_info=exc)
        elif exc.reason in ("journal_unavailable", "engine_stopped", "order_busy", "session_busy"):
            # Not a venue's or a check's refusal (those are the caller's answer): the engine's own trouble
            log.warning("order task ended on %s: %s", exc.reason, exc)

    async def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
