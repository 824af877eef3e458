"""The user data stream feeds the engine: with polling effectively off, a resting LIVE order's fill
arrives through executionReport, journaled with its trade id, price and commission."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.server import approver_key, go_live, journal_rows, simulator_and_api
from tests.waiting import eventually


def test_a_fill_arrives_by_the_user_data_stream_with_its_trade(tmp_path: Path) -> None:
    key, public = approver_key()
    with simulator_and_api(
        tmp_path, ws_api=True, safe_mode=False, approvals={"public_keys": {"approver2": public}},
        binance={"poll_interval_s": 60, "timeout_s": 5},
    ) as (sim, api):  # fmt: skip
        viewer = api.client("viewer")
        eventually(
            lambda: viewer.get("/api/status").json()["components"]["user_stream"]["detail"]["connected"]
        )
        go_live(api, key)
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                "price": "64000.00", "newClientOrderId": "pb-uds-1"}  # fmt: skip
        placed = api.client("trader").post("/api/live/order", json=body)
        assert (placed.status_code, placed.json()["state"]) == (200, "ACKED"), placed.text
        httpx.post(
            f"{sim.base_url}/_sim/price", json={"symbol": "BTCUSDT", "price": "63900"}
        ).raise_for_status()
        auditor = api.client("auditor")
        rows = eventually(
            lambda: [
                r
                for r in journal_rows(auditor, stream="order", stream_id="pb-uds-1")
                if r["trigger"] in ("fill", "partial_fill")
            ]
        )
        fills = [f for r in rows for f in r["payload"]["fills"]]
        assert fills, rows
        assert all(isinstance(f["tradeId"], int) and f["price"] and f["commissionAsset"] for f in fills)
        assert api.runtime.engine.exchange.stream_live  # type: ignore[attr-defined]


def test_live_orders_wait_while_the_stream_has_a_gap(tmp_path: Path) -> None:
    key, public = approver_key()
    with simulator_and_api(
        tmp_path, ws_api=True, safe_mode=False, approvals={"public_keys": {"approver2": public}},
        binance={"poll_interval_s": 60, "timeout_s": 5},
    ) as (sim, api):  # fmt: skip
        exchange = api.runtime.engine.exchange
        eventually(lambda: exchange.stream_live)  # type: ignore[attr-defined]
        go_live(api, key)
        trader = api.client("trader")
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                "price": "64000.00"}  # fmt: skip
        gaps_before = exchange.stream_gaps  # type: ignore[attr-defined]
        httpx.post(f"{sim.base_url}/_sim/ws_api/faults", json={"drop": True}).raise_for_status()
        eventually(lambda: exchange.stream_gaps > gaps_before)  # type: ignore[attr-defined]
        refused = trader.post("/api/live/order", json={**body, "newClientOrderId": "pb-gap-1"})
        if refused.status_code == 503:  # the stream may already be back: then the order simply goes out
            assert refused.json()["reason"] == "venue_gap"
        eventually(lambda: exchange.order_gate() is None)  # type: ignore[attr-defined]
        ok = trader.post("/api/live/order", json={**body, "newClientOrderId": "pb-gap-2"})
        assert ok.status_code == 200, ok.text
