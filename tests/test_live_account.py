"""Seed test C2: GET /api/live/account answers canTrade, balances and permissions; missing rights → HOLD.

The simulator variant always runs (real sockets, loopback only). The real Spot Testnet variant runs only
when BINANCE_API_KEY_TESTNET and BINANCE_API_SECRET_TESTNET are set; CI without keys skips it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.settings import load_settings
from tests.e2e.server import ApiServer, simulator_and_api
from tests.waiting import eventually


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Any, ApiServer]]:
    # One stack per test, not the shared sim_stack: a test here changes the venue's account
    with simulator_and_api(tmp_path) as pair:
        yield pair


def test_account_fields_and_permission_mapping(stack: tuple[Any, ApiServer]) -> None:
    _, api = stack
    r = api.client("viewer").get("/api/live/account")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["canTrade"] is True
    assert "SPOT" in body["permissions"]
    assert body["permissions_required"] == ["SPOT_TRADE"]  # the config's name, mapped to Binance's SPOT
    assert body["permissions_missing"] == []
    assert body["status"] == "OK"
    assert any(b["asset"] == "USDT" for b in body["balances"])
    assert api.client("viewer").get("/api/session").json()["session"]["state"] == "TESTNET"


def test_account_that_cannot_trade_holds_the_session(stack: tuple[Any, ApiServer]) -> None:
    sim, api = stack
    sim.state.engine.can_trade = False
    body = api.client("viewer").get("/api/live/account").json()
    assert body["canTrade"] is False
    assert body["status"] == "ERROR"
    # the read holds nothing: the preflight monitor, which measures the account in the background, does
    status = eventually(
        lambda: (s := api.client("viewer").get("/api/status").json())["session"]["state"] == "HOLD" and s
    )
    assert "can_trade" in status["session"]["hold_reason"]
    assert status["components"]["preflight"]["status"] == "ERROR"
    refused = api.client("trader").post(
        "/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    )
    assert (refused.status_code, refused.json()["reason"]) == (409, "session_hold")

    sim.state.engine.can_trade = True
    assert api.client("admin").post("/api/session/resume").json()["session"]["state"] == "TESTNET"


@pytest.mark.skipif(
    not (os.environ.get("BINANCE_API_KEY_TESTNET") and os.environ.get("BINANCE_API_SECRET_TESTNET")),
    reason="BINANCE_API_KEY_TESTNET/BINANCE_API_SECRET_TESTNET not set: real Spot Testnet account check skipped",
)
def test_real_testnet_account(tmp_path: Path) -> None:
    settings = load_settings(
        "testnet", env=dict(os.environ), data_dir=tmp_path, db_url=f"sqlite:///{tmp_path}/j.db"
    )
    with ApiServer(settings) as api:
        body = api.client("viewer").get("/api/live/account").json()
        assert body["ok"] is True
        assert isinstance(body["canTrade"], bool)
        assert "SPOT" in body["permissions"]
