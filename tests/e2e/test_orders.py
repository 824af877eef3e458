"""Order flows through the real HTTP server on the paper venue: resting, filled, cancelled, idempotent."""

from __future__ import annotations

import httpx

from tests.e2e.server import ApiServer, journal_rows

LIMIT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}


def test_ping_answers_server_time_and_skew_status(viewer: httpx.Client) -> None:
    r = viewer.get("/api/live/ping")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["status"] == "OK"
    assert isinstance(body["serverTime"], int)
    assert body["serverTime"] > 1_600_000_000_000
    assert body["clock_skew_ms"] == 0


def test_account_lists_balances_and_permissions(viewer: httpx.Client) -> None:
    body = viewer.get("/api/live/account").json()
    assert body["ok"] is True
    assert body["canTrade"] is True
    assert body["permissions"] == ["SPOT"]
    assert body["permissions_missing"] == []  # SPOT_TRADE in the config maps to Binance's SPOT
    assert {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"} in body["balances"]


def test_limit_order_rests_then_cancels(trader: httpx.Client) -> None:
    r = trader.post("/api/live/order", json={**LIMIT, "price": "60000", "newClientOrderId": "pb-e2e-rest-1"})
    assert r.status_code == 200, r.text
    placed = r.json()
    assert placed["mode"] == "paper"
    assert placed["state"] == "ACKED"
    assert placed["clientOrderId"] == "pb-e2e-rest-1"
    assert placed["exchange"]["status"] == "NEW"
    listed = trader.get("/api/live/open_orders", params={"symbol": "BTCUSDT"}).json()["orders"]
    assert [(o["clientOrderId"], o["state"]) for o in listed] == [("pb-e2e-rest-1", "ACKED")]

    r = trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "orderId": placed["orderId"]})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "CANCELLED"
    assert trader.get("/api/live/open_orders").json()["orders"] == []
    again = trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-e2e-rest-1"})
    assert again.status_code == 409
    assert again.json()["reason"] == "invalid_transition"


def test_a_finished_order_cancelled_by_order_id_answers_as_by_client_id(
    trader: httpx.Client, auditor: httpx.Client
) -> None:
    # Was 404 unknown_order by orderId (looked up among open orders only) beside 409 by client id
    r = trader.post("/api/live/order", json={**LIMIT, "price": "60100", "newClientOrderId": "pb-e2e-done-1"})
    order_id = r.json()["orderId"]
    assert trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "orderId": order_id}).status_code == 200
    answers = []
    for ids in ({"origClientOrderId": "pb-e2e-done-1"}, {"orderId": order_id}):
        before = len(journal_rows(auditor, stream="audit", trigger="api.live.cancel"))
        again = trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", **ids})
        assert again.status_code == 409, again.text
        answers.append(again.json())
        rows = journal_rows(auditor, stream="audit", trigger="api.live.cancel")
        assert len(rows) == before + 1  # exactly one audit row per call
        assert rows[-1]["actor"] == "trader"
        assert rows[-1]["payload"]["outcome"] == {"status": 409, "reason": "invalid_transition"}
    by_cid, by_id = answers
    assert by_id == by_cid
    assert by_id["reason"] == "invalid_transition"
    assert by_id["detail"]["clientOrderId"] == "pb-e2e-done-1"
    assert by_id["detail"]["state"] == "CANCELLED"
    # the same orderId on another symbol, or an orderId nobody placed, is still unknown
    for body in (
        {"symbol": "ETHUSDT", "orderId": order_id},
        {"symbol": "BTCUSDT", "orderId": order_id + 10**6},
    ):
        unknown = trader.post("/api/live/cancel", json=body)
        assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_order")
    steps = [t["trigger"] for t in journal_rows(auditor, stream="order", stream_id="pb-e2e-done-1")]
    assert steps.count("request_cancel") == 1


def test_market_order_fills(trader: httpx.Client) -> None:
    r = trader.post(
        "/api/live/order", json={"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": 0.01}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "FILLED"
    assert body["filledQty"] == "0.01000000"
    assert body["clientOrderId"].startswith("pb-")


def test_market_order_by_quote_quantity(trader: httpx.Client) -> None:
    r = trader.post(
        "/api/live/order", json={"symbol": "BNBUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "60"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "FILLED"


def test_idempotent_resend_places_nothing(
    trader: httpx.Client, auditor: httpx.Client, api: ApiServer
) -> None:
    body = {**LIMIT, "price": "61000", "newClientOrderId": "pb-e2e-idem-1"}
    first = trader.post("/api/live/order", json=body).json()
    second = trader.post("/api/live/order", json=body)
    assert second.status_code == 200
    assert second.json()["existing"] is True
    assert second.json()["orderId"] == first["orderId"]
    venue_open = api.runtime.engine.exchange.engine.open_orders("BTCUSDT")
    assert [o["clientOrderId"] for o in venue_open].count("pb-e2e-idem-1") == 1
    creates = journal_rows(auditor, stream="order", stream_id="pb-e2e-idem-1", trigger="create")
    assert len(creates) == 1
    # the resend still leaves its own audit row
    audits = [
        a
        for a in journal_rows(auditor, stream="audit")
        if a["payload"].get("request", {}).get("clientOrderId") == "pb-e2e-idem-1"
    ]
    assert len(audits) == 2
    assert audits[1]["payload"]["outcome"] == {"status": 200, "idempotent_replay": True}

    conflict = trader.post("/api/live/order", json={**body, "quantity": "0.002"})
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "idempotency_conflict"
    assert conflict.json()["detail"]["clientOrderId"] == "pb-e2e-idem-1"
    trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-e2e-idem-1"})


def test_order_endpoint_shows_state_and_transitions(trader: httpx.Client) -> None:
    trader.post("/api/live/order", json={**LIMIT, "price": "60500", "newClientOrderId": "pb-e2e-trace-1"})
    trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-e2e-trace-1"})
    r = trader.get("/api/orders/pb-e2e-trace-1")
    assert r.status_code == 200
    body = r.json()
    assert body["order"]["state"] == "CANCELLED"
    steps = [(t["trigger"], t["to_state"]) for t in body["transitions"]]
    assert steps == [
        ("create", "NEW"),
        ("preflight", "PREFLIGHT"),
        ("send", "SENT"),
        ("ack", "ACKED"),
        ("request_cancel", "CANCEL_PENDING"),
        ("cancelled", "CANCELLED"),
    ]
    assert [t["version"] for t in body["transitions"]] == [1, 2, 3, 4, 5, 6]


def test_every_live_call_writes_an_audit_row(viewer: httpx.Client, auditor: httpx.Client) -> None:
    before = len(journal_rows(auditor, stream="audit", actor="viewer"))
    viewer.get("/api/live/ping")
    viewer.get("/api/live/account")
    viewer.get("/api/live/open_orders")
    rows = journal_rows(auditor, stream="audit", actor="viewer")
    assert [r["trigger"] for r in rows[before:]] == [
        "api.live.ping",
        "api.live.account",
        "api.live.open_orders",
    ]


def test_open_orders_rejects_a_malformed_symbol(viewer: httpx.Client) -> None:
    r = viewer.get("/api/live/open_orders", params={"symbol": "btc-usdt"})
    assert r.status_code == 422
    assert r.json()["reason"] == "invalid_query"


def test_a_resend_of_a_refused_order_is_no_success(trader: httpx.Client, auditor: httpx.Client) -> None:
    # Was 200 {"ok": true, "state": "REJECTED", "existing": true}: a client retrying after a lost answer
    # read a refused order as placed. The id is spent, so it is not the first refusal's status either
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "2", "price": "60000", "newClientOrderId": "pb-e2e-refused-1"}  # fmt: skip
    first = trader.post("/api/live/order", json=body)
    assert first.status_code == 409
    assert first.json()["reason"] == "risk_max_notional"
    again = trader.post("/api/live/order", json=body)
    assert again.status_code == 409, again.text
    answer = again.json()
    assert answer["ok"] is False
    assert answer["reason"] == "already_rejected"
    assert answer["detail"]["refusal"] == "risk_max_notional"
    assert answer["detail"]["existing"] is True
    assert answer["detail"]["state"] == "REJECTED"
    assert len(journal_rows(auditor, stream="order", stream_id="pb-e2e-refused-1", trigger="create")) == 1
    # a different body under the spent id is still the idempotency conflict it always was
    other = trader.post("/api/live/order", json={**body, "quantity": "0.001"})
    assert other.json()["reason"] == "idempotency_conflict"
