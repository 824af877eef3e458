"""The venue's own failures through the API (simulator faults): 504 UNKNOWN then reconciled, 503 on
rate limits, and a 418 ban holding the session until it ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import (
    ApiServer,
    approval_token,
    approver_key,
    go_live,
    simulator_and_api,
    small_limit,
)
from tests.waiting import eventually


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Any, ApiServer]]:
    key, public = approver_key()
    approvals = {"public_keys": {"approver2": public}}
    with simulator_and_api(tmp_path, env={"SAFE_MODE": "false"}, approvals=approvals) as (sim, api):
        go_live(api, key)
        yield sim, api


def _fault(sim: Any, spec: dict[str, Any]) -> None:
    httpx.post(f"{sim.base_url}/_sim/faults", json=spec).raise_for_status()


def test_lost_response_is_504_unknown_then_reconciled_without_resending(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    _fault(sim, {"lost_response": 1})
    body = {**small_limit(api, "BTCUSDT"), "newClientOrderId": "pb-fault-lost-1"}
    r = api.client("trader").post("/api/live/order", json=body)
    assert r.status_code == 504, r.text
    assert r.json()["reason"] == "EXECUTION_STATUS_UNKNOWN"
    assert r.json()["detail"]["clientOrderId"] == "pb-fault-lost-1"
    assert r.json()["detail"]["state"] == "UNKNOWN"
    viewer = api.client("viewer")
    eventually(lambda: viewer.get("/api/orders/pb-fault-lost-1").json()["order"]["state"] == "ACKED")
    # the same request again is answered from the journal: nothing is resent
    again = api.client("trader").post("/api/live/order", json=body)
    assert again.json()["existing"] is True
    truth = httpx.get(f"{sim.base_url}/_sim/ground_truth").json()
    assert truth["real_orders"] == 1
    assert [o["clientOrderId"] for o in truth["orders"]] == ["pb-fault-lost-1"]


def test_rate_limit_is_503_with_retry_after(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    # aimed at this call's path: the engine's background calls must not take the one 429 first
    _fault(sim, {"rate_limit": {"status": 429, "count": 1, "retry_after_s": 1, "path": "/api/v3/openOrders"}})
    r = api.client("viewer").get("/api/live/open_orders", params={"symbol": "BTCUSDT"})
    assert r.status_code == 503, r.text
    assert r.json()["ok"] is False
    assert r.json()["detail"]["http_status"] == 429
    assert "retry-after" in r.headers


def test_ip_ban_holds_the_session_until_it_ends(tmp_path: Path) -> None:
    key, public = approver_key()
    with simulator_and_api(tmp_path, approvals={"public_keys": {"approver2": public}}) as (sim, api):
        _fault(sim, {"rate_limit": {"status": 418, "seconds": 2}})
        assert api.client("viewer").get("/api/live/account").status_code == 503
        viewer, admin = api.client("viewer"), api.client("admin")
        status = eventually(
            lambda: (s := viewer.get("/api/status").json())["session"]["state"] == "HOLD" and s
        )
        assert status["components"]["rate_limit"]["status"] == "ERROR"
        # the first detector to see the ban holds: the governor's hold check or the preflight monitor
        assert any(k in status["session"]["hold_reason"] for k in ("IP banned", "IP_BANNED"))
        refused = admin.post("/api/session/resume")
        assert (refused.status_code, refused.json()["reason"]) == (409, "hold_cause_active")
        resumed = eventually(lambda: admin.post("/api/session/resume").status_code == 200, timeout=6)
        assert resumed
        assert viewer.get("/api/session").json()["session"]["state"] == "TESTNET"
        assert approval_token(key, "approver2", "testnet")  # the key still signs; nothing else changed
