"""Seed test C1: GET /api/live/ping answers 200 with serverTime and clock skew; the skew flips OK/WARN.

Runs the testnet profile against the local Binance simulator over real sockets (never the internet).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from engine.config import PreflightSettings
from engine.guardrails.preflight import skew_status
from tests.e2e.server import ApiServer, journal_rows
from tests.waiting import eventually


def test_ping_is_200_with_server_time_and_small_skew(sim_stack: tuple[Any, ApiServer]) -> None:
    sim, api = sim_stack
    r = api.client("viewer").get("/api/live/ping")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["status"] == "OK"
    assert body["venue"] == "binance-testnet"
    assert abs(body["serverTime"] - sim.state.now_ms()) < 5_000
    assert abs(body["clock_skew_ms"]) < 250


def test_skew_beyond_the_threshold_is_warn(sim_stack: tuple[Any, ApiServer]) -> None:
    sim, api = sim_stack
    httpx.post(f"{sim.base_url}/_sim/faults", json={"clock_skew_ms": 1000}).raise_for_status()
    try:
        body = api.client("viewer").get("/api/live/ping").json()
        assert body["status"] == "WARN"
        assert 750 < body["clock_skew_ms"] < 1250
        # /api/status reads the preflight monitor's verdict, measured in the background each second
        eventually(
            lambda: (
                api.client("viewer").get("/api/status").json()["components"]["clock_skew"]["status"] == "WARN"
            )
        )
        # signed requests still work: the client stamps them with the measured server time
        assert api.client("viewer").get("/api/live/account").status_code == 200
    finally:
        httpx.delete(f"{sim.base_url}/_sim/faults").raise_for_status()
    assert api.client("viewer").get("/api/live/ping").json()["status"] == "OK"


@pytest.mark.parametrize(
    ("skew", "expected"), [(0, "OK"), (250, "OK"), (-250, "OK"), (250.5, "WARN"), (-900, "WARN")]
)
def test_skew_rule_uses_the_configured_maximum(skew: float, expected: str) -> None:
    assert skew_status(skew, PreflightSettings(time_skew_ms_max=250)) == expected


def test_ping_writes_an_audit_row(sim_stack: tuple[Any, ApiServer]) -> None:
    _, api = sim_stack
    before = len(journal_rows(api.client("auditor"), trigger="api.live.ping"))
    api.client("viewer").get("/api/live/ping")
    rows = journal_rows(api.client("auditor"), trigger="api.live.ping")
    assert len(rows) == before + 1
    assert rows[-1]["actor"] == "viewer"
    assert rows[-1]["payload"] == {"venue": "binance-testnet", "outcome": {"status": 200}}
