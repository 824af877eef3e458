"""Does the journal agree with the venue? The invariant every fault and crash test ends with: nothing
lost, nothing placed twice, every order reconciled to what the simulator's ground truth says."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from tests.e2e.server import journal_rows
from tests.waiting import eventually

# Venue status (Binance) → the state the journal must reach for that order
SETTLED = {
    "NEW": "ACKED",
    "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED",
    "CANCELED": "CANCELLED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",
    "REJECTED": "REJECTED",
}
_UNSETTLED = ("SENT", "UNKNOWN")


def sim_fault(sim_url: str, spec: dict[str, Any] | None) -> None:
    """Set simulator faults, or clear every fault (and not-found lag) with None."""
    if spec is None:
        httpx.delete(f"{sim_url}/_sim/faults").raise_for_status()
    else:
        httpx.post(f"{sim_url}/_sim/faults", json=spec).raise_for_status()


def ground_truth(sim_url: str) -> dict[str, Any]:
    return httpx.get(f"{sim_url}/_sim/ground_truth").json()  # type: ignore[no-any-return]


def order_streams(auditor: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """Every order's journal rows, oldest first, keyed by client order id."""
    streams: dict[str, list[dict[str, Any]]] = {}
    for row in journal_rows(auditor, stream="order"):
        streams.setdefault(row["stream_id"], []).append(row)
    return streams


def final_state(rows: list[dict[str, Any]]) -> str:
    return str(rows[-1]["to_state"])


def wait_settled(auditor: httpx.Client, timeout_s: float) -> dict[str, list[dict[str, Any]]]:
    """Poll the journal until no order is left SENT or UNKNOWN; returns the order streams."""

    def settled() -> tuple[dict[str, list[dict[str, Any]]]] | None:
        streams = order_streams(auditor)  # wrapped: a journal without orders is settled too
        return None if any(final_state(r) in _UNSETTLED for r in streams.values()) else (streams,)

    try:
        return eventually(settled, timeout=timeout_s, interval=0.1)[0]  # type: ignore[no-any-return]
    except AssertionError:
        stuck = {cid: _brief(r) for cid, r in order_streams(auditor).items() if final_state(r) in _UNSETTLED}
        raise AssertionError(f"orders still unsettled after {timeout_s}s: {stuck}") from None


def _brief(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["seq"], r["trigger"], r["from_state"], r["to_state"], r["actor"], r["reason"]) for r in rows]


def journal_agrees_with_venue(
    auditor: httpx.Client, sim_url: str, timeout_s: float
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Wait until no order is SENT/UNKNOWN, then assert:
    - the simulator never accepted two orders with one client order id (nothing placed twice);
    - every order it accepted is in the journal exactly once (one create, one send), settled to its status;
    - every journaled order it never saw ended REJECTED or TESTED (nothing invented).
    Returns (order streams, ground truth) for further checks."""
    streams = wait_settled(auditor, timeout_s)
    truth = ground_truth(sim_url)
    placed = Counter(o["clientOrderId"] for o in truth["orders"])
    assert [cid for cid, n in placed.items() if n > 1] == [], "an order was placed twice"
    for o in truth["orders"]:
        rows = streams.get(o["clientOrderId"])
        assert rows is not None, f"{o['clientOrderId']} is on the venue but not in the journal"
        triggers = [r["trigger"] for r in rows]
        assert (triggers.count("create"), triggers.count("send")) == (1, 1), _brief(rows)
        assert final_state(rows) == SETTLED[o["status"]], (o["status"], _brief(rows))
    for cid, rows in streams.items():
        if cid not in placed:
            assert final_state(rows) in ("REJECTED", "TESTED"), (cid, _brief(rows))
    return streams, truth
