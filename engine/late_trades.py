"""Trades that arrive after the quantity they explain: the journal's `trade` stream.

Binance's order queries (GET /order, openOrders, DELETE /order) carry executedQty but no trades, and
GET /myTrades reads from "Memory => Database" (rest-api.md, "Data Source"): right after a REST catch-up
it can show fewer trades than executedQty. The order's row then moves filled_qty by the full amount and
journals the trades it could see; the rest is *untraced* (Order.untraced_qty). When the missing trades show
up — a late executionReport, or a later GET /myTrades asked by the tracer — each is journaled once as a
row of its own, not as an order transition: the order may be terminal by then, and a terminal order's
stream takes no more rows (engine.replay). Its stream id is `<symbol>-<tradeId>-<side>`: Binance numbers
trades per symbol, and a self-trade is one trade id with two of our orders in it, the buyer and the seller
(docs/api.md "Where fills come from"), so the side names the order's part. Version 1: a second append of
the same trade is a version conflict, so nothing is written twice, in this run or after a restart.

A trade row never moves filled_qty; it moves traced_qty, never past filled_qty. The ledger swaps the
untraced quantity it counted at the average price for the trade, with its id and commission.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal
from typing import Any

from engine.journal import NewEntry
from engine.order import Order
from engine.reconcile import fill_payload
from engine.types import Fill, VenueOrder

TRADE_STREAM = "trade"
TRADE_TRIGGER = "traced"
# Terminal orders with untraced quantity kept in memory (open ones are in the order store anyway). Replay
# and the live store evict with the same rule, so both hold the same set; an evicted order's late trade is
# no longer journaled (the ledger keeps counting that quantity as untraced).
UNTRACED_KEPT = 10_000


def trade_stream_id(symbol: str, trade_id: int, side: str) -> str:
    return f"{symbol}-{trade_id}-{side}"


def plan_traces(order: Order, vo: VenueOrder) -> list[Fill]:
    """The trades in `vo` that explain `order`'s untraced quantity: not journaled yet, oldest first, and
    never more in total than what is untraced (a trade beyond it would belong to a fill the order rows
    have not reported: it comes with its own update). Empty when there is nothing to trace."""
    room = order.untraced_qty
    if room <= 0 or not vo.fills:
        return []
    seen = order.trade_ids or ()
    out: list[Fill] = []
    for fill in sorted(vo.fills, key=lambda f: f.trade_id):
        if fill.trade_id in seen or fill.qty > room:
            continue
        out.append(fill)
        room -= fill.qty
    return out


def trade_entry(order: Order, fill: Fill, actor: str) -> NewEntry:
    payload = {
        "clientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "symbol": order.symbol,
        "side": order.request.side.value,
        "fill": fill_payload(fill),
    }
    reason = "trade reported after its quantity"
    return NewEntry(
        TRADE_STREAM, trade_stream_id(order.symbol, fill.trade_id, order.request.side.value), 1, TRADE_TRIGGER, None, None, payload,
        actor, reason,
    )  # fmt: skip


def check_trace(order: Order, payload: dict[str, Any]) -> str | None:
    """Why a trade row cannot apply to `order` (replay names it as corruption), or None."""
    fill = payload["fill"]
    trade_id, qty = int(fill["tradeId"]), Decimal(fill["qty"])
    if order.trade_ids is not None and trade_id in order.trade_ids:
        return f"trade {trade_id} of {order.client_order_id} is journaled already"
    if qty <= 0 or qty > order.untraced_qty:
        return f"trade {trade_id} of {qty} exceeds {order.client_order_id}'s untraced {order.untraced_qty}"
    return None


def apply_trace(order: Order, payload: dict[str, Any]) -> None:
    """The one mutator of a trade row, shared by the live store and replay."""
    fill = payload["fill"]
    if order.trade_ids is None:
        order.trade_ids = set()
    order.trade_ids.add(int(fill["tradeId"]))
    order.traced_qty += Decimal(fill["qty"])


class UntracedOrders:
    """Terminal orders whose filled quantity is not all journaled as trades, oldest first, bounded."""

    def __init__(self, kept: int = UNTRACED_KEPT) -> None:
        self._kept = kept
        self.orders: OrderedDict[str, Order] = OrderedDict()

    def get(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def finished(self, order: Order) -> list[str]:
        """`order` became terminal: kept while some of its quantity is untraced. Returns the orders this
        evicted (still untraced: replay no longer checks their late trades)."""
        if order.untraced_qty <= 0:
            return []
        self.orders[order.client_order_id] = order
        evicted = []
        while len(self.orders) > self._kept:
            evicted.append(self.orders.popitem(last=False)[0])
        return evicted

    def traced(self, order: Order) -> None:
        """A trade row of `order` applied: it leaves once everything is traced."""
        if order.untraced_qty <= 0:
            self.orders.pop(order.client_order_id, None)

    def __len__(self) -> int:
        return len(self.orders)
