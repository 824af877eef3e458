"""Bring an order's journalled state up to what the venue reports: one pure planner for place answers,
pushed updates, UNKNOWN resolution and startup reconciliation alike."""

from __future__ import annotations

from typing import Any

from engine.fsm.order_table import OrderState
from engine.order import Order
from engine.types import Fill, VenueOrder, VenueStatus

V = VenueStatus
S = OrderState

_RECONCILE = {
    V.NEW: "reconcile_acked",
    # An order-list leg waiting for its working leg (enums.md): accepted, not yet on the book
    V.PENDING_NEW: "reconcile_acked",
    V.PENDING_CANCEL: "reconcile_acked",
    V.PARTIALLY_FILLED: "reconcile_partially_filled",
    V.FILLED: "reconcile_filled",
    V.CANCELED: "reconcile_cancelled",
    V.REJECTED: "reconcile_rejected",
    V.EXPIRED: "reconcile_expired",
    V.EXPIRED_IN_MATCH: "reconcile_expired",
}
# Statuses this planner understands; any other is journaled and holds, never an exception (the reconciler)
KNOWN_STATUSES = frozenset(_RECONCILE)
_WORKING = (S.SENT, S.ACKED, S.PARTIALLY_FILLED, S.CANCEL_PENDING)


def _payloads(order: Order, vo: VenueOrder) -> tuple[dict[str, Any], dict[str, Any]]:
    base: dict[str, Any] = {"venueStatus": vo.status.value}
    if vo.order_id is not None:
        base["orderId"] = vo.order_id
    if vo.status is V.EXPIRED_IN_MATCH and vo.prevented_qty is not None:
        base["preventedQty"] = format(
            vo.prevented_qty, "f"
        )  # self-trade prevention's own outcome, kept for the audit
    seen = order.trade_ids or ()
    new = [f for f in vo.fills if f.trade_id not in seen]
    fill = {
        **base,
        "executedQty": str(vo.executed_qty),
        "cumQuoteQty": str(vo.cumulative_quote_qty),
        "tradeIds": [f.trade_id for f in new],
        "fills": [fill_payload(f) for f in new],
    }
    return base, fill


def fill_payload(f: Fill) -> dict[str, Any]:
    """One trade as journaled, the same whether the stream or GET /myTrades reported it."""
    out: dict[str, Any] = {"tradeId": f.trade_id, "price": str(f.price), "qty": str(f.qty),
                           "commission": str(f.commission), "commissionAsset": f.commission_asset}  # fmt: skip
    if f.is_maker is not None:
        out["isMaker"] = f.is_maker
    return out


def plan_sync(order: Order, vo: VenueOrder) -> list[tuple[str, dict[str, Any]]]:
    """The triggers (with payloads) that move `order` to the venue's view; empty when already there.
    Never moves backwards: a stale snapshot (less filled than we know) plans nothing."""
    state, st = order.state, vo.status
    if st not in KNOWN_STATUSES:  # UNRECOGNISED: the caller journals the raw value and holds
        return []
    base, fill = _payloads(order, vo)
    if state is S.UNKNOWN:
        return [(_RECONCILE[st], fill)]
    if state not in _WORKING or vo.executed_qty < order.filled_qty:
        return []
    more = vo.executed_qty > order.filled_qty
    if st is V.REJECTED:
        return [("reject", base)] if state is S.SENT else []
    if st in (V.NEW, V.PENDING_NEW, V.PENDING_CANCEL):
        return [("ack", base)] if state is S.SENT else []
    if st is V.FILLED:
        return [("fill", fill)]
    if st is V.PARTIALLY_FILLED:
        if more:
            return [("partial_fill", fill)]
        return [("ack", base)] if state is S.SENT else []
    steps: list[tuple[str, dict[str, Any]]] = []
    if more:  # fills that happened before the order closed come first
        steps.append(("partial_fill", fill))
    if st is V.CANCELED:
        if state is S.SENT and not more:
            steps.append(("ack", base))
        steps.append(("cancelled", base))
    else:
        steps.append(("expire", base))
    return steps
