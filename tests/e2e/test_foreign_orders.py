"""Foreign orders over real sockets: another client's order on the simulator account is reported in
/api/status (WARN, with its id), journaled once as an `external_order` audit row, never adopted and never
cancelled; an operator's newClientOrderId without the engine's prefix is refused before it is journaled."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.server import SIM_KEY, SIM_SECRET, journal_rows, simulator_and_api
from tests.simulator.helpers import SignedClient
from tests.waiting import eventually

BODY = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
        "price": "90000.00"}  # fmt: skip


def test_a_foreign_order_is_reported_journaled_once_and_left_alone(tmp_path: Path) -> None:
    with simulator_and_api(tmp_path, ws_api=True, binance={"poll_interval_s": 60, "timeout_s": 5}) as (
        sim,
        api,
    ):
        viewer = api.client("viewer")
        eventually(
            lambda: viewer.get("/api/status").json()["components"]["user_stream"]["detail"]["connected"]
        )
        other_bot = SignedClient(sim.base_url, lambda: time.time_ns() // 1_000_000, SIM_KEY, SIM_SECRET)
        placed = other_bot.signed("POST", "/api/v3/order", {**BODY, "newClientOrderId": "bot2-77"})
        assert placed.status_code == 200, placed.text
        foreign = eventually(
            lambda: (
                (c := viewer.get("/api/status").json()["components"]["foreign_orders"])["detail"]["count"]
                and c
            )
        )
        assert foreign["status"] == "WARN"
        assert [o["clientOrderId"] for o in foreign["detail"]["orders"]] == ["bot2-77"]
        auditor = api.client("auditor")
        rows = eventually(lambda: journal_rows(auditor, stream="audit", trigger="external_order"))
        assert [(r["payload"]["clientOrderId"], r["payload"]["orderId"]) for r in rows] == [
            ("bot2-77", placed.json()["orderId"])
        ]
        assert journal_rows(auditor, stream="order", stream_id="bot2-77") == []

        refused = api.client("trader").post("/api/live/order", json={**BODY, "newClientOrderId": "mine-1"})
        assert (refused.status_code, refused.json()["reason"]) == (422, "client_order_id_prefix")
        assert journal_rows(auditor, stream="order", stream_id="mine-1") == []

        still = other_bot.signed(
            "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "bot2-77"}
        )
        assert still.json()["status"] == "NEW"
