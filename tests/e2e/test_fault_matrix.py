"""Every simulator fault through the whole stack over real sockets (API → engine → Binance client →
simulator), each ending in its expected state, and in every case the journal agreeing with the
simulator's ground truth: nothing lost, nothing placed twice."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agreement import ground_truth, journal_agrees_with_venue, sim_fault
from tests.e2e.server import (
    ApiServer,
    approver_key,
    go_live,
    journal_rows,
    simulator_and_api,
    small_limit,
)
from tests.waiting import eventually

WS = {
    "enabled": True,
    "symbol": "BTCUSDT",
    "stall_after_s": 1,
    "error_after_s": 2,
    "disconnect_grace_s": 1,
    "cancel_on_disconnect": True,
}
GRACE_S = 2  # tests/e2e/server.py sim_settings: orders.unknown_grace_s


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Any, ApiServer]]:
    key, public = approver_key()
    with simulator_and_api(tmp_path, env={"SAFE_MODE": "false"}, approvals={"public_keys": {"approver2": public}},
                           ws=WS) as (sim, api):  # fmt: skip
        go_live(api, key)
        yield sim, api


@pytest.fixture
def safe(tmp_path: Path) -> Iterator[tuple[Any, ApiServer]]:
    with simulator_and_api(tmp_path) as (sim, api):
        yield sim, api


def order(api: ApiServer, cid: str) -> httpx.Response:
    return api.client("trader").post(
        "/api/live/order", json={**small_limit(api, "BTCUSDT"), "newClientOrderId": cid}
    )


def state_of(api: ApiServer, cid: str) -> str:
    return str(api.client("viewer").get(f"/api/orders/{cid}").json()["order"]["state"])


def agree(sim: Any, api: ApiServer) -> dict[str, list[dict[str, Any]]]:
    streams, _ = journal_agrees_with_venue(api.client("auditor"), sim.base_url, timeout_s=GRACE_S + 8)
    assert api.client("auditor").get("/api/journal/verify").status_code == 200
    return streams


def test_latency_only_slows_things_down(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    sim_fault(sim.base_url, {"latency_ms": 150})
    r = order(api, "pb-lat-1")
    assert (r.status_code, r.json()["state"]) == (200, "ACKED")
    agree(sim, api)


def test_5xx_on_the_order_is_unknown_then_absent_after_the_grace(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    sim_fault(sim.base_url, {"http_5xx": 1, "http_5xx_path": "/api/v3/order", "http_5xx_status": 502})
    r = order(api, "pb-5xx-1")
    assert (r.status_code, r.json()["reason"], r.json()["detail"]["state"]) == (
        504,
        "EXECUTION_STATUS_UNKNOWN",
        "UNKNOWN",
    )
    eventually(lambda: state_of(api, "pb-5xx-1") == "REJECTED", timeout=GRACE_S + 8)
    streams = agree(sim, api)
    assert streams["pb-5xx-1"][-1]["trigger"] == "reconcile_rejected"
    assert ground_truth(sim.base_url)["real_orders"] == 0


def test_lost_response_with_not_found_lag_waits_then_adopts_the_order(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    sim_fault(sim.base_url, {"lost_response": 1, "not_found_lag_s": 1})
    r = order(api, "pb-lost-1")
    assert r.status_code == 504
    eventually(lambda: state_of(api, "pb-lost-1") == "ACKED", timeout=GRACE_S + 8)
    streams = agree(sim, api)
    assert [row["trigger"] for row in streams["pb-lost-1"]][-2:] == ["mark_unknown", "reconcile_acked"]
    assert ground_truth(sim.base_url)["real_orders"] == 1  # executed once, never resent


def test_clock_skew_is_fixed_by_a_resync_in_safe_mode(safe: tuple[Any, ApiServer]) -> None:
    sim, api = safe
    sim_fault(sim.base_url, {"clock_skew_ms": -1500})  # our timestamps now look 1.5 s ahead: -1021
    r = order(api, "pb-skew-1")
    assert (r.status_code, r.json()["mode"], r.json()["state"]) == (200, "test", "TESTED"), r.text
    assert api.runtime.engine.exchange.client.timestamp_retries >= 1  # type: ignore[attr-defined]
    agree(sim, api)
    assert ground_truth(sim.base_url)["test_orders"] == 1


def test_clock_skew_beyond_the_limit_refuses_live_orders_and_holds(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    sim_fault(sim.base_url, {"clock_skew_ms": 2000})
    # the preflight monitor measures the clock in the background (every second) and holds at once
    session = eventually(
        lambda: (s := api.client("viewer").get("/api/session").json()["session"])["state"] == "HOLD" and s
    )
    assert "clock_skew" in session["hold_reason"]
    r = order(api, "pb-skew-live-1")
    assert (r.status_code, r.json()["reason"]) == (409, "session_hold")
    agree(sim, api)
    assert ground_truth(sim.base_url)["real_orders"] == 0


def test_429_refuses_without_executing_and_warns(safe: tuple[Any, ApiServer]) -> None:
    sim, api = safe
    sim_fault(sim.base_url, {"rate_limit": {"status": 429, "count": 1, "retry_after_s": 1}})
    r = order(api, "pb-rl-1")
    assert (r.status_code, r.json()["reason"]) == (503, "RATE_LIMIT"), r.text
    status = api.client("viewer").get("/api/status").json()
    assert status["components"]["rate_limit"]["status"] == "WARN"
    assert state_of(api, "pb-rl-1") == "REJECTED"
    agree(sim, api)
    # After Retry-After, all is well. Each try is a new order: a refused id is spent (a resend of it is
    # 409 already_rejected; this loop's resends of one id used to read the refusal as a 200)
    tries = itertools.count()
    eventually(lambda: order(api, f"pb-rl-2-{next(tries)}").status_code == 200, timeout=4)


def test_418_ban_holds_the_session_and_places_nothing(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    sim_fault(sim.base_url, {"rate_limit": {"status": 418, "seconds": 3}})
    r = order(api, "pb-ban-1")
    assert r.status_code in (409, 503), r.text
    session = eventually(
        lambda: (s := api.client("viewer").get("/api/session").json()["session"])["state"] == "HOLD" and s
    )
    # whoever meets the ban first holds: the order's own send, or the preflight monitor's next measurement
    assert session["hold_reason"].startswith(("IP_BANNED", "preflight_failed", "rate_limit")), session
    assert "IP_BANNED" in r.text
    agree(sim, api)
    assert ground_truth(sim.base_url)["real_orders"] == 0


def market_data(api: ApiServer) -> dict[str, Any]:
    component: dict[str, Any] = api.client("viewer").get("/api/status").json()["components"]["market_data"]
    return component


@pytest.mark.parametrize(
    "fault",
    [{"ws_stall": 4}, {"ws_drop": True}, {"ws_shutdown": 0.5}],
    ids=["stall-on-a-live-socket", "drop-reconnected-inside-the-grace", "server-shutdown-rollover"],
)
def test_stream_stall_or_short_drop_keeps_open_orders(
    live: tuple[Any, ApiServer], fault: dict[str, Any]
) -> None:
    sim, api = live
    eventually(lambda: market_data(api)["status"] == "OK")
    r = order(api, "pb-ws-keep-1")
    assert r.json()["state"] == "ACKED"
    sim_fault(sim.base_url, fault)
    if "ws_stall" in fault:  # silent past error_after_s, socket alive: WARN, never ERROR
        eventually(lambda: market_data(api)["status"] == "WARN")
    seen: set[str] = set()
    deadline = time.monotonic() + WS["error_after_s"] + WS["disconnect_grace_s"] + 0.5
    while time.monotonic() < deadline:
        seen.add(market_data(api)["status"])
        time.sleep(0.05)
    assert "ERROR" not in seen
    feed = market_data(api)["detail"]
    if "ws_stall" in fault:
        assert feed["connects"] == 1  # the silent socket was kept: ping/pong says it is alive
    else:
        assert feed["connects"] >= 2  # the fault did end the first connection
        assert feed["rollovers"] == (1 if "ws_shutdown" in fault else 0)
    assert feed["cancels_fired"] == 0
    assert state_of(api, "pb-ws-keep-1") == "ACKED"
    assert journal_rows(api.client("auditor"), trigger="cancel_on_disconnect") == []
    agree(sim, api)
    assert ground_truth(sim.base_url)["orders"][0]["status"] == "NEW"


def test_stream_outage_past_the_grace_cancels_open_orders(live: tuple[Any, ApiServer]) -> None:
    sim, api = live
    eventually(lambda: market_data(api)["status"] == "OK")
    r = order(api, "pb-ws-1")
    assert r.json()["state"] == "ACKED"
    # every socket dropped and reconnects refused for longer than ws.disconnect_grace_s
    sim_fault(sim.base_url, {"ws_drop": True, "ws_refuse": WS["disconnect_grace_s"] + 2})
    eventually(lambda: market_data(api)["status"] == "ERROR", timeout=5)
    eventually(lambda: state_of(api, "pb-ws-1") == "CANCELLED", timeout=10)
    eventually(lambda: market_data(api)["status"] == "OK", timeout=10)  # the outage ended
    assert [
        row["payload"]["clientOrderId"]
        for row in journal_rows(api.client("auditor"), trigger="cancel_on_disconnect")
    ] == ["pb-ws-1"]
    agree(sim, api)
    assert ground_truth(sim.base_url)["orders"][0]["status"] == "CANCELED"
