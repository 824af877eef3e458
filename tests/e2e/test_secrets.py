"""Secrets never appear in logs, API responses or the journal, whatever the call and whatever fails."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import SIM_KEY, SIM_SECRET, simulator_and_api


def test_keys_stay_out_of_logs_responses_and_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every thread: the API, the client, the transport
    bodies: list[str] = []
    with simulator_and_api(tmp_path) as (sim, api):
        trader, auditor = api.client("trader"), api.client("auditor")
        calls = [
            trader.get("/api/live/ping"),
            trader.get("/api/live/account"),
            trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                 "timeInForce": "GTC", "quantity": "0.001", "price": "60000.00"}),
            trader.post("/api/live/order", json={"symbol": "NOPE", "side": "BUY", "type": "MARKET", "quantity": "1"}),
            trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "missing"}),
            trader.get("/api/live/open_orders"),
            trader.get("/api/status"),
            trader.get("/metrics"),
            auditor.get("/api/journal", params={"limit": 1000}),
            auditor.get("/api/journal/export", params={"format": "jsonl"}),
        ]  # fmt: skip
        httpx.post(f"{sim.base_url}/_sim/faults", json={"http_5xx": 1}).raise_for_status()
        calls.append(trader.get("/api/live/account"))  # a venue failure's error answer too
        bodies = [r.text for r in calls]
        journal_files = [p.read_bytes() for p in tmp_path.rglob("*.db*")]
    assert len(bodies) == 11
    assert journal_files  # the SQLite journal (and its WAL) were read
    for secret in (SIM_SECRET, SIM_KEY):
        assert all(secret not in body for body in bodies)
        assert secret not in caplog.text
        assert all(secret.encode() not in data for data in journal_files)
