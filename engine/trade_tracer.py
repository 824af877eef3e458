"""Asks the venue again for the trades behind untraced quantity (engine.late_trades).

A fill learned without its trades (GET /myTrades behind GET /order right after a catch-up, an adopted
order's earlier fills) would otherwise stay untraced unless a late executionReport happens to carry it:
Binance replays no missed user-data events. This supervised component queries each such order by client
order id, with its trades (the Binance adapter completes a query from GET /myTrades), at growing intervals,
and journals what explains the untraced quantity through the order store like every other venue view.
It gives up on an order after `attempts` queries; the status then names it (WARN, not a HOLD: the
quantity, the balance and the cost are known, only trade ids and commissions are missing).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, ExchangeError
from engine.fsm.order_table import OrderState
from engine.order import Order
from engine.order_store import OrderStore
from engine.ports import ExchangePort
from engine.reconcile import KNOWN_STATUSES

log = logging.getLogger(__name__)
_NAMED = 5  # orders named in the status


@dataclass
class _Attempts:
    next_at: float
    delay: float
    made: int = 0


class TradeTracer:
    def __init__(
        self, store: OrderStore, exchange: ExchangePort, *, first_s: float = 2.0, max_s: float = 120.0,
        attempts: int = 10, tick_s: float = 1.0,
    ) -> None:  # fmt: skip
        self._store = store
        self._exchange = exchange
        self.first_s, self.max_s, self.attempts, self.tick_s = first_s, max_s, attempts, tick_s
        self._due: dict[str, _Attempts] = {}
        self.given_up: dict[str, str] = {}  # clientOrderId -> symbol: asked `attempts` times, still untraced
        self.traced = 0  # orders this component completed

    def candidates(self) -> list[Order]:
        """Own orders with untraced quantity that a query can complete: placed (an order id) and not in
        UNKNOWN (its resolution queries it anyway)."""
        store = self._store
        out = [o for o in store.open.values() if o.traced_qty < o.filled_qty and o.order_id is not None
               and o.state is not OrderState.UNKNOWN]  # fmt: skip
        out.extend(o for o in store.untraced.orders.values() if o.order_id is not None)
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            wanted = {o.client_order_id: o for o in self.candidates()}
            for cid in [c for c in self._due if c not in wanted]:
                if cid not in self.given_up:
                    self.traced += 1
                del self._due[cid]
            for cid in [c for c in self.given_up if c not in wanted]:
                del self.given_up[cid]
            failure: Exception | None = None
            for cid, order in wanted.items():
                if cid in self.given_up:
                    continue
                due = self._due.setdefault(cid, _Attempts(now + self.first_s, self.first_s))
                if now >= due.next_at:
                    try:
                        await self._ask(order, due, loop)
                    except Exception as exc:  # one order's answer nobody can read: the others are asked
                        failure = failure or exc
            if failure is not None:
                raise failure  # the supervisor shows it (ERROR) and starts this loop again

    async def _ask(self, order: Order, due: _Attempts, loop: asyncio.AbstractEventLoop) -> None:
        cid = order.client_order_id
        due.made += 1
        try:
            vo = await self._exchange.query_trades(order.symbol, cid)
            # An unknown status gives nothing to trace: it counts as an attempt (not a HOLD: see the note
            # in docs/architecture.md "Late trades")
            if vo is not None and vo.status in KNOWN_STATUSES:
                await self._store.sync(cid, vo)  # open or finished-and-held alike
        except (ExchangeError, EngineError) as exc:  # asked again later; never the end of the component
            log.info("trades of %s not asked: %s", cid, exc.reason)
        finally:  # whatever the query raised: the next attempt waits, and the last one gives up
            if due.made >= self.attempts:
                self.given_up[cid] = order.symbol
                log.warning("%s: untraced quantity left after %d queries of its trades", cid, due.made)
            else:
                due.delay = min(due.delay * 2, self.max_s)
                due.next_at = loop.time() + due.delay

    def status(self) -> dict[str, Any]:
        pending = [c for c in self._due if c not in self.given_up]
        detail: dict[str, Any] = {"pending": len(pending), "given_up": len(self.given_up),
                                  "traced": self.traced}  # fmt: skip
        if self.given_up:
            detail["untraced_orders"] = sorted(self.given_up)[:_NAMED]
        detail["status"] = "WARN" if self.given_up else "OK"
        return detail
