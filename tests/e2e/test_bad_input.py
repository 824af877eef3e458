"""Every kind of bad input is a 4xx with a machine reason, never a 500, and the journal still verifies."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.server import journal_rows

GOOD = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "60000",
}


def _without(key: str) -> dict[str, object]:
    return {k: v for k, v in GOOD.items() if k != key}


BAD_ORDER_BODIES = [
    # (raw body, status, reason)
    (b"{not json", 400, "malformed_json"),
    (b'{"symbol": "BTCUSDT",}', 400, "malformed_json"),
    (b'{"symbol": "BTCUSDT", "quantity": NaN}', 400, "malformed_json"),
    (b"\xff\xfe\x00garbage", 400, "malformed_json"),
    (b"[" * 20_000, 400, "malformed_json"),  # nesting deeper than the parser's recursion limit
    (b"", 422, "invalid_body"),
    (b"[]", 422, "invalid_body"),
    (b'"BTCUSDT"', 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": "-1"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": "0"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": "abc"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": "Infinity"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": "1e999999"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": True}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "quantity": [1]}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "price": {"v": 1}}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "symbol": 42}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "symbol": "btcusdt"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "symbol": "BTC/USDT"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "side": "HOLD"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "type": "ICEBERG"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "timeInForce": "GTX"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "newClientOrderId": "has space"}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "newClientOrderId": "x" * 37}).encode(), 422, "invalid_body"),
    (json.dumps({**GOOD, "unknownField": 1}).encode(), 422, "invalid_body"),
    (json.dumps(_without("symbol")).encode(), 422, "invalid_body"),
    (json.dumps(_without("price")).encode(), 422, "invalid_body"),
    (json.dumps(_without("timeInForce")).encode(), 422, "invalid_body"),
    (json.dumps({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}).encode(), 422, "invalid_body"),
    (
        json.dumps({**GOOD, "symbol": "XYZUSDT"}).encode(),
        422,
        "symbol_not_configured",
    ),  # not in config.symbols
    (json.dumps({**GOOD, "quantity": "0.001000001"}).encode(), 422, "bad_precision"),
    (json.dumps({**GOOD, "quantity": "0.000015"}).encode(), 422, "filter_failure"),
    (json.dumps({**GOOD, "price": "10000"}).encode(), 409, "risk_price_collar"),
    (json.dumps({**GOOD, "quantity": "2"}).encode(), 409, "risk_max_notional"),
]


@pytest.mark.parametrize(("raw", "status", "reason"), BAD_ORDER_BODIES)
def test_bad_order_body(trader: httpx.Client, raw: bytes, status: int, reason: str) -> None:
    r = trader.post("/api/live/order", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["ok"] is False
    assert body["reason"] == reason
    assert body["detail"]
    assert "Traceback" not in r.text


def test_field_errors_name_the_fields_without_echoing_input(trader: httpx.Client) -> None:
    r = trader.post("/api/live/order", json={**GOOD, "quantity": "-7.5", "side": "SIDEWAYS"})
    fields = {e["field"] for e in r.json()["detail"]}
    assert fields == {"quantity", "side"}
    assert "-7.5" not in r.text


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"symbol": "BTCUSDT"}, 422, "invalid_body"),
        ({"symbol": "BTCUSDT", "orderId": "one"}, 422, "invalid_body"),
        ({"symbol": "BTCUSDT", "orderId": -5}, 422, "invalid_body"),
        ({"symbol": "BTCUSDT", "orderId": 999999}, 404, "unknown_order"),
        ({"symbol": "BTCUSDT", "origClientOrderId": "never-placed"}, 404, "unknown_order"),
    ],
)
def test_bad_cancel(trader: httpx.Client, body: dict[str, object], status: int, reason: str) -> None:
    r = trader.post("/api/live/cancel", json=body)
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason


@pytest.mark.parametrize("order_id", ["never-placed", "bad id with spaces", "x" * 200, "%00"])
def test_unknown_order_ids_are_404(viewer: httpx.Client, order_id: str) -> None:
    r = viewer.get(f"/api/orders/{order_id}")
    assert r.status_code == 404
    assert r.json()["reason"] == "unknown_order"


def test_oversized_body_is_413_by_content_length(trader: httpx.Client) -> None:
    r = trader.post("/api/live/order", content=b"{" + b" " * (70 * 1024) + b"}")
    assert r.status_code == 413
    assert r.json()["reason"] == "body_too_large"


def test_oversized_body_is_413_when_streamed_without_length(trader: httpx.Client) -> None:
    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(80):
            yield b" " * 1024

    r = trader.post("/api/live/order", content=chunks())
    assert r.status_code == 413
    assert r.json()["reason"] == "body_too_large"


@pytest.mark.parametrize(
    "params",
    [{"limit": 1001}, {"limit": 0}, {"after_seq": -1}, {"stream": "orders"}, {"since": "yesterday"},
     {"since": "2026-01-01T00:00:00"}, {"limit": "ten"}],
)  # fmt: skip
def test_bad_journal_query_is_422(auditor: httpx.Client, params: dict[str, object]) -> None:
    r = auditor.get("/api/journal", params=params)
    assert r.status_code == 422
    assert r.json()["reason"] == "invalid_query"


def test_unknown_route_and_method_keep_the_error_shape(trader: httpx.Client) -> None:
    r = trader.get("/api/nope")
    assert (r.status_code, r.json()["reason"]) == (404, "not_found")
    r = trader.put("/api/live/order", json=GOOD)
    assert (r.status_code, r.json()["reason"]) == (405, "method_not_allowed")


def test_journal_still_verifies_after_all_that(auditor: httpx.Client) -> None:
    r = auditor.get("/api/journal/verify")
    assert r.status_code == 200
    assert r.json()["ok"] is True
    assert r.json()["rows"] > 0


def test_refused_live_calls_are_audited_too(trader: httpx.Client, auditor: httpx.Client) -> None:
    assert trader.post("/api/live/order", content=b"{nope").status_code == 400
    assert trader.post("/api/live/cancel", json={"symbol": "BTCUSDT"}).status_code == 422
    refused = {
        (r["trigger"], r["payload"]["outcome"].get("reason"))
        for r in journal_rows(auditor, stream="audit")
        if r["actor"] == "trader" and "reason" in r["payload"].get("outcome", {})
    }
    assert {("api.live.order", "malformed_json"), ("api.live.cancel", "invalid_body")} <= refused


def test_a_body_refused_by_the_body_limit_writes_no_audit_row(
    trader: httpx.Client, auditor: httpx.Client
) -> None:
    # The limit runs before the token is read (docs/api.md, "Not journaled"): no operator, no row
    before = len(journal_rows(auditor, stream="audit"))
    r = trader.post("/api/live/order", content=b"{" + b" " * (70 * 1024) + b"}")
    assert (r.status_code, r.json()["reason"]) == (413, "body_too_large")
    assert len(journal_rows(auditor, stream="audit")) == before
