"""The open orders in memory and the one way they change: decide → append (group commit) → apply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from typing import Any

from engine import order as order_mod
from engine.errors import EngineError
from engine.fsm.order_table import OrderState
from engine.journal import Journal, NewEntry, Record
from engine.order import Order, decide_from
from engine.reconcile import plan_sync
from engine.types import VenueOrder
from engine.writer import GroupCommitWriter

_STRIPES = 256


class OrderStore:
    def __init__(self, writer: GroupCommitWriter, journal: Journal) -> None:
        self.writer = writer
        self.journal = journal
        self.open: dict[str, Order] = {}
        # Striped locks: one per order would cost memory for 100k orders; 256 keep contention negligible
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._tasks: set[asyncio.Task[None]] = set()

    def lock(self, client_order_id: str) -> asyncio.Lock:
        return self._locks[hash(client_order_id) % _STRIPES]

    def find(self, client_order_id: str) -> Order | None:
        """The order from memory if open, else rebuilt from its journal stream."""
        order = self.open.get(client_order_id)
        if order is not None:
            return order
        rebuilt: Order | None = None
        for rec in self.journal.stream("order", client_order_id):
            rebuilt = order_mod.apply(rebuilt, rec.trigger, rec.to_state or "", rec.version, rec.payload)
        return rebuilt

    def find_by_order_id(self, symbol: str, order_id: int) -> Order | None:
        return next((o for o in self.open.values() if o.order_id == order_id and o.symbol == symbol), None)

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
            state, version = OrderState(entry.to_state or ""), entry.version
        return out

    async def commit(
        self, order: Order | None, entries: list[NewEntry], prefix: Sequence[NewEntry] = ()
    ) -> Order:
        """Append `prefix` + `entries` in one group (durable when this returns), then apply `entries`.

        Raises:
            VersionConflict: nothing was written or applied.
        """
        records: list[Record] = await self.writer.append([*prefix, *entries])
        for rec, entry in zip(records[len(prefix) :], entries, strict=True):
            order = order_mod.apply(order, rec.trigger, rec.to_state or "", rec.version, entry.payload)
        assert order is not None
        if order.terminal:
            self.open.pop(order.client_order_id, None)
        else:
            self.open[order.client_order_id] = order
        return order

    async def sync(self, order: Order, vo: VenueOrder) -> None:
        """Journal whatever moves `order` to the venue's view (nothing when it is already there)."""
        steps = plan_sync(order, vo)
        if steps:
            actor = "reconciler" if order.state is OrderState.UNKNOWN else "system"
            entries = self.chain(
                order.state, order.version, order.client_order_id, [(t, p, "") for t, p in steps], actor
            )
            await self.commit(order, entries)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await task
