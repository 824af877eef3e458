"""Every REST fault of /_sim/faults, observed through real HTTP."""

from __future__ import annotations

import time

import pytest

from adapters.simulator.server import SimulatorServer
from tests.simulator.helpers import FakeClock, SignedClient, limit_buy

TIMEOUT_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)


def set_faults(c: SignedClient, **spec: object) -> dict:
    r = c.raw("POST", "/_sim/faults", json=spec)
    assert r.status_code == 200, r.text
    return r.json()


def truth(c: SignedClient) -> dict:
    return c.raw("GET", "/_sim/ground_truth").json()


def test_latency_is_added_and_cleared(client: SignedClient) -> None:
    set_faults(client, latency_ms=300)
    t0 = time.perf_counter()
    assert client.get("/api/v3/ping").status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    client.raw("DELETE", "/_sim/faults")
    t0 = time.perf_counter()
    client.get("/api/v3/ping")
    assert time.perf_counter() - t0 < 0.25


def test_http_5xx_answers_without_executing(fake_client: SignedClient) -> None:
    set_faults(fake_client, http_5xx=2, http_5xx_status=500)
    first = fake_client.signed("POST", "/api/v3/order", limit_buy())
    second = fake_client.get("/api/v3/ping")
    assert (first.status_code, second.status_code) == (500, 500)
    assert first.json()["code"] == -1000
    assert truth(fake_client)["orders"] == []
    assert fake_client.get("/api/v3/ping").status_code == 200
    fake_client.raw("DELETE", "/_sim/faults")
    set_faults(fake_client, http_5xx=1)  # default status 503
    r = fake_client.get("/api/v3/time")
    assert (r.status_code, r.json()["code"]) == (503, -1008)


@pytest.mark.parametrize("status", [500, 503])
def test_lost_response_executes_then_answers_1007(fake_client: SignedClient, status: int) -> None:
    set_faults(fake_client, lost_response=1, lost_response_status=status)
    r = fake_client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="lost-1"))
    assert r.status_code == status
    assert r.json() == {"code": -1007, "msg": TIMEOUT_MSG}
    gt = truth(fake_client)
    assert [o["clientOrderId"] for o in gt["orders"]] == ["lost-1"]
    assert (gt["real_orders"], gt["lost_responses"]) == (1, 1)
    # the order exists: a reconciler finds it by client id; the next order answers normally
    q = fake_client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-1"})
    assert q.json()["status"] == "NEW"
    assert fake_client.signed("POST", "/api/v3/order", limit_buy(price="59000")).status_code == 200


def test_order_answer_delay_executes_first_then_answers_late(client: SignedClient) -> None:
    set_faults(client, order_answer_delay_ms=400)
    t0 = time.perf_counter()
    r = client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="late-answer"))
    assert r.status_code == 200
    assert time.perf_counter() - t0 >= 0.4
    # executed (tests/crash kills the engine during the delay and finds the order already on the venue)
    assert [o["clientOrderId"] for o in truth(client)["orders"]] == ["late-answer"]
    t0 = time.perf_counter()
    assert client.get("/api/v3/ping").status_code == 200  # only order placements are held back
    assert time.perf_counter() - t0 < 0.3


def test_not_found_lag_hides_new_orders_for_a_while(fake_client: SignedClient, clock: FakeClock) -> None:
    set_faults(fake_client, not_found_lag_s=30)
    placed = fake_client.signed("POST", "/api/v3/order", limit_buy(newClientOrderId="lagging")).json()
    by_id = {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}
    by_client = {"symbol": "BTCUSDT", "origClientOrderId": "lagging"}
    for params in (by_id, by_client):
        r = fake_client.signed("GET", "/api/v3/order", params)
        assert (r.status_code, r.json()) == (400, {"code": -2013, "msg": "Order does not exist."})
    assert fake_client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json() == []
    clock.advance(30_001)
    assert fake_client.signed("GET", "/api/v3/order", by_client).json()["orderId"] == placed["orderId"]
    assert len(fake_client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}).json()) == 1


def test_clock_skew_moves_server_time_and_the_window(fake_client: SignedClient, clock: FakeClock) -> None:
    set_faults(fake_client, clock_skew_ms=10_000)
    assert fake_client.get("/api/v3/time").json()["serverTime"] == clock() + 10_000
    # a client that does not track the offset is now 10 s behind: outside the default recvWindow
    r = fake_client.signed("GET", "/api/v3/account")
    assert r.json()["code"] == -1021
    assert fake_client.signed("GET", "/api/v3/account", timestamp=clock() + 10_000).status_code == 200
    set_faults(fake_client, clock_skew_ms=-2_000)
    ahead = fake_client.signed("GET", "/api/v3/account")
    assert ahead.json()["msg"] == "Timestamp for this request was 1000ms ahead of the server's time."


def test_forced_429_then_normal(fake_client: SignedClient) -> None:
    set_faults(fake_client, rate_limit={"status": 429, "count": 2, "retry_after_s": 7})
    for _ in range(2):
        r = fake_client.get("/api/v3/ping")
        assert (r.status_code, r.json()["code"], r.headers["Retry-After"]) == (429, -1003, "7")
    assert fake_client.get("/api/v3/ping").status_code == 200


def test_forced_418_ban_for_seconds(fake_client: SignedClient, clock: FakeClock) -> None:
    set_faults(fake_client, rate_limit={"status": 418, "seconds": 30})
    r = fake_client.signed("GET", "/api/v3/account")
    assert (r.status_code, r.headers["Retry-After"]) == (418, "30")
    clock.advance(29_000)
    assert fake_client.get("/api/v3/ping").headers["Retry-After"] == "1"
    clock.advance(1_000)
    assert fake_client.get("/api/v3/ping").status_code == 200


def test_delete_faults_clears_everything(fake_client: SignedClient) -> None:
    set_faults(fake_client, http_5xx=5, rate_limit={"status": 418, "seconds": 60}, clock_skew_ms=5)
    assert fake_client.raw("DELETE", "/_sim/faults").json()["faults"]["http_5xx"] == 0
    assert fake_client.get("/api/v3/ping").status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"nope": 1},
        {"http_5xx": -1},
        {"http_5xx_status": 404},
        {"rate_limit": {"status": 500}},
        {"latency_ms": "x"},
    ],
)
def test_bad_fault_specs_are_refused_and_change_nothing(fake_client: SignedClient, spec: dict) -> None:
    r = fake_client.raw("POST", "/_sim/faults", json={"latency_ms": 5, **spec})
    assert r.status_code == 400
    assert fake_client.raw("GET", "/_sim/state").json()["faults"]["latency_ms"] == 0


def test_state_reports_faults_weights_and_counts(
    fake_sim: SimulatorServer, fake_client: SignedClient
) -> None:
    fake_client.get("/api/v3/exchangeInfo")
    fake_client.signed("POST", "/api/v3/order/test", limit_buy())
    fake_client.signed("POST", "/api/v3/order", limit_buy())
    set_faults(fake_client, latency_ms=1)
    state = fake_client.raw("GET", "/_sim/state").json()
    assert state["faults"]["latency_ms"] == 1
    assert state["weights"]["ips"]["127.0.0.1"]["used_weight_1m"] == 21
    assert (state["real_orders"], state["test_orders"]) == (1, 1)
    assert state["ws_clients"] == []
    gt = truth(fake_client)
    assert (gt["real_orders"], gt["test_orders"], len(gt["orders"])) == (1, 1, 1)
