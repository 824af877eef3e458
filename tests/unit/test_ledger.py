"""engine.ledger on hand-made journal records: fills from payloads, deduplication by trade id within an
order, untraced quantity at its average price, pagination at row boundaries, bounded history."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from engine.journal import Record
from engine.ledger import Ledger

D = Decimal
_seq = itertools.count(1)


def _rec(cid: str, version: int, trigger: str, to_state: str, payload: dict[str, Any]) -> Record:
    seq = next(_seq)
    return Record(seq, "order", cid, version, trigger, None, to_state, json.dumps(payload), "t", "", 1,
                  f"2026-01-01T00:00:{seq:02d}.000000Z", "", "")  # fmt: skip


def _order(cid: str, side: str = "BUY", qty: str = "1", order_id: int = 7) -> list[Record]:
    request = {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "clientOrderId": cid, "quantity": qty,
               "price": "100", "timeInForce": "GTC"}  # fmt: skip
    return [
        _rec(cid, 1, "create", "NEW", {"request": request, "mode": "live"}),
        _rec(cid, 2, "preflight", "PREFLIGHT", {}),
        _rec(cid, 3, "send", "SENT", {"baseAsset": "BTC", "quoteAsset": "USDT"}),
        _rec(cid, 4, "ack", "ACKED", {"orderId": order_id, "venueStatus": "NEW"}),
    ]


def _fill(trade_id: int, price: str, qty: str, fee: str = "0", asset: str = "USDT") -> dict[str, Any]:
    return {"tradeId": trade_id, "price": price, "qty": qty, "commission": fee, "commissionAsset": asset}


def test_a_trade_reported_twice_counts_once_and_untraced_quantity_counts_at_its_average() -> None:
    ledger = Ledger()
    ledger.observe(_order("pb-a"))
    ledger.observe([
        _rec("pb-a", 5, "partial_fill", "PARTIALLY_FILLED", {"executedQty": "0.4", "cumQuoteQty": "40",
             "tradeIds": [1], "fills": [_fill(1, "100", "0.4")]}),
        # the same trade again (a stream report after the answer), then 0.6 more without trades (a poll)
        _rec("pb-a", 6, "fill", "FILLED", {"executedQty": "1", "cumQuoteQty": "106", "tradeIds": [1],
             "fills": [_fill(1, "100", "0.4")]}),
    ])  # fmt: skip
    page = ledger.fills()
    assert [(f["tradeId"], f["qty"], f["price"], f["traced"]) for f in page.items] == [
        (1, "0.4", "100", True),
        (None, "0.6", "110", False),  # (106 - 40) / 0.6
    ]
    [pos] = ledger.positions()["positions"]
    assert (pos["quantity"], pos["avg_cost"], pos["trades"], pos["untraced_trades"]) == ("1", "106", 2, 1)
    assert ledger.list_orders().items[0]["state"] == "FILLED"


def test_a_page_never_splits_a_row_and_the_cursor_continues() -> None:
    ledger = Ledger()
    ledger.observe(_order("pb-b", qty="3"))
    fills = [_fill(10 + i, "100", "1") for i in range(3)]
    ledger.observe([_rec("pb-b", 5, "fill", "FILLED", {"executedQty": "3", "cumQuoteQty": "300",
                                                        "tradeIds": [10, 11, 12], "fills": fills})])  # fmt: skip
    ledger.observe(_order("pb-c"))
    ledger.observe([_rec("pb-c", 5, "fill", "FILLED", {"executedQty": "1", "cumQuoteQty": "100",
                                                        "tradeIds": [20], "fills": [_fill(20, "100", "1")]})])  # fmt: skip
    first = ledger.fills(limit=2)
    assert [f["tradeId"] for f in first.items] == [10, 11, 12]  # one row's three fills stay together
    second = ledger.fills(after_seq=first.next_after_seq or 0, limit=2)
    assert [f["tradeId"] for f in second.items] == [20]
    assert second.next_after_seq is None


def test_finished_orders_beyond_the_bound_leave_the_history_but_not_the_positions() -> None:
    ledger = Ledger(terminal_kept=2)
    for i in range(5):
        cid = f"pb-{i}"
        ledger.observe(_order(cid))
        ledger.observe([_rec(cid, 5, "fill", "FILLED", {"executedQty": "1", "cumQuoteQty": "100",
                                                         "tradeIds": [i], "fills": [_fill(i, "100", "1")]})])  # fmt: skip
    assert [o["clientOrderId"] for o in ledger.list_orders().items] == ["pb-3", "pb-4"]
    assert ledger.positions()["positions"][0]["quantity"] == "5"
    assert ledger.list_orders(open_only=True).items == []


def test_finished_orders_are_found_by_order_id_while_the_history_holds_them() -> None:
    # What a cancel by orderId reads for a finished order (engine.orders.client_order_id_of): memory only
    ledger = Ledger(terminal_kept=2)
    for i in range(4):
        ledger.observe(_order(f"pb-id-{i}", order_id=100 + i))
    assert ledger.finished_order_id("BTCUSDT", 100) is None  # open: the store's own index finds those
    for i in range(4):
        ledger.observe([_rec(f"pb-id-{i}", 5, "cancelled", "CANCELLED", {})])
    found = [ledger.finished_order_id("BTCUSDT", 100 + i) for i in range(4)]
    assert found == [None, None, "pb-id-2", "pb-id-3"]  # the oldest two left the history
    assert ledger.finished_order_id("ETHUSDT", 103) is None  # the venue numbers orders per symbol
    order = ledger.order("pb-id-3")
    assert order is not None
    assert order.state.value == "CANCELLED"
    assert ledger.order("pb-id-0") is None  # evicted: the journal still has it
