"""Seed test C3 (SAFE_MODE): POST /api/live/order goes to /api/v3/order/test and answers "mode": "test".

Testnet profile against the local simulator; its ground truth proves no real order was ever placed.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.server import ApiServer, journal_rows

ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "60000.00",
}


def _truth(sim: Any) -> dict[str, Any]:
    return httpx.get(f"{sim.base_url}/_sim/ground_truth").json()


def test_safe_mode_order_is_validated_never_executed(sim_stack: tuple[Any, ApiServer]) -> None:
    sim, api = sim_stack
    assert api.settings.safe_mode is True
    r = api.client("trader").post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-safe-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True
    assert body["mode"] == "test"
    assert body["state"] == "TESTED"
    assert "orderId" not in body
    truth = _truth(sim)
    assert truth["real_orders"] == 0
    assert truth["test_orders"] == 1
    assert truth["orders"] == []
    assert api.client("viewer").get("/api/live/open_orders").json()["orders"] == []


def test_safe_mode_order_is_journaled_with_its_audit_row(sim_stack: tuple[Any, ApiServer]) -> None:
    _, api = sim_stack
    api.client("trader").post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-safe-2"})
    auditor = api.client("auditor")
    steps = [
        (r["trigger"], r["to_state"]) for r in journal_rows(auditor, stream="order", stream_id="pb-safe-2")
    ]
    assert steps == [
        ("create", "NEW"),
        ("preflight", "PREFLIGHT"),
        ("send_test", "TEST"),
        ("test_ok", "TESTED"),
    ]
    audits = [
        r
        for r in journal_rows(auditor, stream="audit", trigger="api.live.order")
        if r["payload"].get("request", {}).get("clientOrderId") == "pb-safe-2"
    ]
    assert len(audits) == 1
    assert audits[0]["actor"] == "trader"
    assert audits[0]["payload"]["venue"] == "binance-testnet"
    text = str(journal_rows(auditor))
    assert "e2e-sim-secret" not in text
    assert "e2e-sim-key" not in text


def test_venue_rejection_of_a_test_order_is_422_with_its_code(sim_stack: tuple[Any, ApiServer]) -> None:
    sim, api = sim_stack
    # A filter the engine does not check locally: the venue's PERCENT_PRICE (price far below the market)
    api.runtime.engine.orders.last_prices.pop("BTCUSDT", None)  # no collar: let the venue judge
    r = api.client("trader").post(
        "/api/live/order",
        json={**ORDER, "quantity": "0.1", "price": "1000.00", "newClientOrderId": "pb-safe-3"},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert "code" in body["detail"], r.text
    assert body["detail"]["code"] is not None
    assert body["detail"]["code"] < 0
    assert body["detail"]["state"] == "REJECTED"
    assert _truth(sim)["real_orders"] == 0


def test_tested_order_cannot_be_cancelled(sim_stack: tuple[Any, ApiServer]) -> None:
    _, api = sim_stack
    api.client("trader").post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-safe-4"})
    r = api.client("trader").post(
        "/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-safe-4"}
    )
    assert r.status_code == 409
    assert r.json()["reason"] == "invalid_transition"
