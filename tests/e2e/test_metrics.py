"""GET /metrics over a real server, read with prometheus-client's own parser: after a flow (place, fill,
cancel, a refusal) the expected series are there with the expected values."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ApiServer, simulator_and_api
from tests.waiting import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_after_place_fill_cancel_and_a_refusal(trader: httpx.Client, viewer: httpx.Client) -> None:
    before = scrape(viewer)
    filled = trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                  "quantity": "0.001"})  # fmt: skip
    assert (filled.status_code, filled.json()["state"]) == (200, "FILLED"), filled.text
    resting = trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "GTC", "quantity": "0.001", "price": "60000",
                                                   "newClientOrderId": "pb-m-rest-1"})  # fmt: skip
    assert resting.status_code == 200, resting.text
    during = scrape(viewer)
    assert value(during, "propbot_open_orders") == value(before, "propbot_open_orders") + 1
    cancelled = trader.post(
        "/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-m-rest-1"}
    )
    assert cancelled.status_code == 200, cancelled.text
    refused = trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "GTC", "quantity": "0.001", "price": "1.00"})  # fmt: skip
    assert refused.status_code in (409, 422)
    after = scrape(viewer)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    order = {"stream": "order"}
    assert grew("propbot_transitions_total", **order, trigger="create", to_state="NEW") == 3
    assert grew("propbot_transitions_total", **order, trigger="fill", to_state="FILLED") == 1
    assert grew("propbot_transitions_total", **order, trigger="cancelled", to_state="CANCELLED") == 1
    assert grew("propbot_transitions_total", **order, trigger="reject", to_state="REJECTED") == 1
    assert sum(v for (name, _), v in after.items() if name == "propbot_order_rejects_total") >= 1
    # Two orders the paper venue answered: the histogram's count, sum and +Inf bucket move together
    assert grew("propbot_send_to_answer_seconds_count") == 2
    assert grew("propbot_send_to_answer_seconds_bucket", le="+Inf") == 2
    assert value(after, "propbot_send_to_answer_seconds_sum") > value(
        before, "propbot_send_to_answer_seconds_sum"
    )
    assert value(after, "propbot_open_orders") == value(before, "propbot_open_orders")
    assert grew("propbot_journal_commits_total") >= 3
    assert grew("propbot_journal_rows_total") >= 4 * 3
    assert value(after, "propbot_session_state", state="PAPER") == 1
    assert value(after, "propbot_session_state", state="HOLD") == 0
    assert value(after, "propbot_session_on_hold") == 0
    assert value(after, "propbot_ready") == 1
    assert value(after, "propbot_journal_verify_failing") == 0
    assert value(after, "propbot_journal_self_check_failing") == 0
    assert value(after, "propbot_component_status", component="journal") == 0
    assert value(after, "propbot_component_status", component="exchange") == 0
    # No approver keys configured: the approvals component warns, and so does the overall status
    assert value(after, "propbot_component_status", component="approvals") == 1
    assert value(after, "propbot_status") == 1


def test_a_hold_shows_in_the_session_gauges(
    api: ApiServer, admin: httpx.Client, viewer: httpx.Client
) -> None:
    assert admin.post("/api/session/hold", json={"reason": "metrics test"}).status_code == 200
    try:
        held = scrape(viewer)
        assert value(held, "propbot_session_on_hold") == 1
        assert value(held, "propbot_session_state", state="HOLD") == 1
        assert value(held, "propbot_session_state", state="PAPER") == 0
    finally:
        assert admin.post("/api/session/resume").status_code == 200


def test_each_app_has_its_own_registry(api: ApiServer) -> None:
    # Many apps in one process (these tests): never prometheus-client's global registry
    from prometheus_client import REGISTRY

    assert api.runtime.metrics.registry is not REGISTRY
    names = {m.name for m in REGISTRY.collect()}
    assert not any(name.startswith("propbot_") for name in names)


def test_metrics_need_a_token(api: ApiServer) -> None:
    assert httpx.get(f"{api.base_url}/metrics").status_code == 401


def test_testnet_series_rate_limit_and_user_stream(tmp_path: Path) -> None:
    with simulator_and_api(tmp_path, ws_api=True) as (sim, api):
        viewer = api.client("viewer")
        eventually(lambda: value(scrape(viewer), "propbot_user_stream_connected") == 1)
        samples = scrape(viewer)
        assert value(samples, "propbot_rate_limit_level") == 0
        assert value(samples, "propbot_rate_limit_used", window="weight_1M") > 0
        assert value(samples, "propbot_rate_limit_limit", window="weight_1M") == 6000
        assert value(samples, "propbot_user_stream_level") == 0
        assert value(samples, "propbot_session_state", state="TESTNET") == 1
        httpx.post(f"{sim.base_url}/_sim/ws_api/faults", json={"drop": True}).raise_for_status()
        eventually(lambda: value(scrape(viewer), "propbot_user_stream_gaps_total") >= 1)
