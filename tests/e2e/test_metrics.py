"""GET /metrics over a real server: Prometheus text that moves with the engine."""

from __future__ import annotations

import re

import httpx


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_transitions_refusals_and_latency(trader: httpx.Client, viewer: httpx.Client) -> None:
    before = viewer.get("/metrics").text
    ok = trader.post(
        "/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    )
    assert ok.status_code == 200, ok.text
    refused = trader.post("/api/live/order", json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "GTC", "quantity": "0.001", "price": "1.00"})  # fmt: skip
    assert refused.status_code in (409, 422)
    after = viewer.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    created = 'propbot_transitions_total{stream="order",trigger="create",to_state="NEW"}'
    assert _value(after.text, created) == _value(before, created) + 2
    assert (
        _value(after.text, "propbot_send_to_answer_seconds_count")
        == _value(before, "propbot_send_to_answer_seconds_count") + 1
    )
    assert re.search(r'^propbot_order_rejects_total\{reason="\w+"\} [1-9]', after.text, re.M)
    assert 'propbot_session_state{state="PAPER"} 1' in after.text


def test_metrics_need_a_token(api) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{api.base_url}/metrics").status_code == 401
