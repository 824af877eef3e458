"""Session control, status and authentication through the real HTTP server (paper profile)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.server import ApiServer, journal_rows

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


def test_hold_refuses_orders_until_resumed(
    admin: httpx.Client, trader: httpx.Client, auditor: httpx.Client
) -> None:
    r = admin.post("/api/session/hold", json={"reason": "e2e drill"})
    assert r.status_code == 200
    assert r.json()["session"]["state"] == "HOLD"
    assert r.json()["session"]["hold_reason"] == "e2e drill"

    refused = trader.post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-e2e-held-1"})
    assert refused.status_code == 409
    body = refused.json()
    assert body["ok"] is False
    assert body["reason"] == "session_hold"
    assert body["detail"]["state"] == "REJECTED"
    assert body["detail"]["session_state"] == "HOLD"
    # refused, but journaled: the order exists, REJECTED
    assert trader.get("/api/orders/pb-e2e-held-1").json()["order"]["state"] == "REJECTED"

    status = admin.get("/api/status").json()
    assert {k: v for k, v in status["session"].items() if k not in ("session_id", "since")} == {
        "state": "HOLD",
        "hold_reason": "e2e drill",
        "cancel_all": False,
    }
    assert status["session"]["since"]  # when it entered HOLD
    assert status["session"]["session_id"].startswith("paper-")  # unique to this journal

    r = admin.post("/api/session/resume")
    assert r.status_code == 200
    assert r.json()["session"]["state"] == "PAPER"
    assert trader.post("/api/live/order", json=ORDER).json()["state"] == "FILLED"
    triggers = [row["trigger"] for row in journal_rows(auditor, stream="session")]
    assert triggers[-2:] == ["hold", "resume"]


def test_illegal_session_triggers_answer_409_with_the_state(admin: httpx.Client) -> None:
    r = admin.post("/api/session/resume")  # not on HOLD
    assert r.status_code == 409
    assert r.json()["reason"] == "invalid_transition"
    assert r.json()["detail"]["session_state"] == "PAPER"
    r = admin.post("/api/session/arm", json={"token": "x.y"})  # paper sessions are never armed
    assert r.status_code == 409
    assert r.json()["reason"] == "invalid_transition"


def test_status_reports_every_component(viewer: httpx.Client) -> None:
    body = viewer.get("/api/status").json()
    assert body["ok"] is True
    assert body["ready"] is True
    assert body["profile"] == "paper"
    assert body["safe_mode"] is True
    components = body["components"]
    tasks = {
        "task.preflight",
        "task.market_data_refresh",
        "task.approval_expiry",
        "task.journal_self_check",
        "task.kill_switch_retry",
        "task.trade_tracer",
        "task.hold_checks",
    }
    assert set(components) == {
        "journal", "exchange", "clock_skew", "preflight", "rate_limit", "market_data", "user_stream", "approvals",
        "foreign_orders", "leadership", "kill_switch", "untraced_trades", *tasks,
    }  # fmt: skip
    assert all(c["status"] in ("OK", "WARN", "ERROR") for c in components.values())
    assert components["journal"]["status"] == "OK"
    assert components["exchange"]["status"] == "OK"
    # no approver keys in this config: arming is impossible, which status says
    assert components["approvals"]["status"] == "WARN"
    # SQLite: one engine per journal file, no lease
    assert (body["role"], components["leadership"]["status"]) == ("ACTIVE", "OK")


def test_healthz_needs_no_token(api: ApiServer) -> None:
    r = api.client().get("/healthz")
    assert r.status_code == 200
    assert r.json()["ok"] is True
    assert api.client().get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/live/ping"), ("POST", "/api/live/order"), ("GET", "/api/journal"), ("GET", "/api/status")],
)
def test_missing_or_bad_token_is_401(api: ApiServer, method: str, path: str) -> None:
    for client in (api.client(), api.client(token="pbt_not-a-real-token")):
        r = client.request(method, path)
        assert r.status_code == 401
        assert r.json() == {"ok": False, "reason": "unauthorized", "detail": r.json()["detail"]}
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("viewer", "POST", "/api/live/order", {"symbol": "BTCUSDT"}),
        ("viewer", "POST", "/api/live/cancel", {"symbol": "BTCUSDT", "orderId": 1}),
        ("viewer", "GET", "/api/journal", None),
        ("trader", "POST", "/api/session/hold", {}),
        ("trader", "GET", "/api/journal/export", None),
        ("auditor", "POST", "/api/live/order", {"symbol": "BTCUSDT"}),
        ("auditor", "POST", "/api/session/resume", None),
    ],
)
def test_wrong_role_is_403(api: ApiServer, role: str, method: str, path: str, body: object) -> None:
    r = api.client(role).request(method, path, json=body)
    assert r.status_code == 403
    assert r.json()["reason"] == "forbidden"


def test_auditor_reads_the_journal_and_viewer_reads_orders(
    auditor: httpx.Client, viewer: httpx.Client
) -> None:
    assert auditor.get("/api/journal/verify").status_code == 200
    assert viewer.get("/api/session").status_code == 200
