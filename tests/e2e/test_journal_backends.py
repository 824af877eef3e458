"""The API end to end on each journal backend (SQLite; PostgreSQL when PROPBOT_TEST_PG_URL is set):
orders through a real server, a restart that replays them, the chain verifying throughout."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.settings import load_settings
from tests.e2e.server import ApiServer, journal_rows

LIMIT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "64000.00"}  # fmt: skip


def test_orders_survive_a_restart_on_this_journal(tmp_path: Path, journal_url: str) -> None:
    config = tmp_path / "config.paper.yaml"
    config.write_text(
        yaml.safe_dump({"profile": "paper", "exchange": "paper", "paper": {"price_interval_s": 0}})
    )
    settings = load_settings(config_file=config, data_dir=tmp_path, db_url=journal_url, env={})
    with ApiServer(settings) as api:
        trader = api.client("trader")
        resting = trader.post("/api/live/order", json={**LIMIT, "newClientOrderId": "pb-keep-1"})
        assert resting.json()["state"] == "ACKED", resting.text
        filled = trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                      "quantity": "0.001", "newClientOrderId": "pb-fill-1"})  # fmt: skip
        assert filled.json()["state"] == "FILLED", filled.text
        tokens = api.tokens
        rows_before = len(journal_rows(api.client("auditor")))
    with ApiServer(settings, tokens=tokens) as again:
        viewer, auditor = again.client("viewer"), again.client("auditor")
        assert again.runtime.engine.report.rows == rows_before  # replayed every row
        # the paper venue lives in memory: its resting order is expired by reconciliation, journalled
        assert viewer.get("/api/orders/pb-keep-1").json()["order"]["state"] == "EXPIRED"
        assert viewer.get("/api/orders/pb-fill-1").json()["order"]["state"] == "FILLED"
        assert auditor.get("/api/journal/verify").status_code == 200
        same = again.client("trader").post("/api/live/order", json={**LIMIT, "newClientOrderId": "pb-keep-1"})
        assert same.json()["existing"] is True  # the idempotency key outlives the process
