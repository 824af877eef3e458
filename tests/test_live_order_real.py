"""Seed test C3 (real orders): SAFE_MODE=false + two-man-rule approval + preflight → a real order, then cancel.

Two variants share one body:
- simulator: always runs, loopback only; the simulator's ground truth shows exactly one real order;
- real Spot Testnet: skipped unless ALLOW_LIVE_ORDERS=1, SAFE_MODE=false and the testnet keys are set.
  It places a very small LIMIT far from the market on LIVE_TEST_SYMBOL (default BTCUSDT) and cancels it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.settings import CONFIG_DIR, load_settings
from tests.e2e.server import (
    ApiServer,
    add_operators,
    approval_token,
    approver_key,
    go_live,
    journal_rows,
    simulator_and_api,
    small_limit,
)
from tests.waiting import eventually

REAL_TESTNET = (
    os.environ.get("ALLOW_LIVE_ORDERS") == "1"
    and os.environ.get("SAFE_MODE", "").lower() == "false"
    and bool(os.environ.get("BINANCE_API_KEY_TESTNET"))
    and bool(os.environ.get("BINANCE_API_SECRET_TESTNET"))
)


def _place_and_cancel(api: ApiServer, symbol: str) -> dict[str, Any]:
    trader = api.client("trader")
    placed = trader.post("/api/live/order", json=small_limit(api, symbol))
    assert placed.status_code == 200, placed.text
    order = placed.json()
    assert order["mode"] == "live"
    assert order["state"] == "ACKED"
    assert isinstance(order["orderId"], int)
    listed = trader.get("/api/live/open_orders", params={"symbol": symbol}).json()["orders"]
    assert order["clientOrderId"] in [o["clientOrderId"] for o in listed]
    cancelled = trader.post(
        "/api/live/cancel", json={"symbol": symbol, "origClientOrderId": order["clientOrderId"]}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELLED"

    auditor = api.client("auditor")
    steps = [r["trigger"] for r in journal_rows(auditor, stream="order", stream_id=order["clientOrderId"])]
    assert steps == ["create", "preflight", "send", "ack", "request_cancel", "cancelled"]
    session_rows = journal_rows(auditor, stream="session")
    arm = next(r for r in session_rows if r["trigger"] == "arm")
    assert arm["payload"]["approval"]["approver"] == "approver2"
    assert arm["payload"]["approval"]["requester"] == "admin"
    assert [r["trigger"] for r in session_rows][-2:] == ["arm", "go_live"]
    audit_triggers = [r["trigger"] for r in journal_rows(auditor, stream="audit")]
    assert "api.live.order" in audit_triggers
    assert "api.live.cancel" in audit_triggers
    assert auditor.get("/api/journal/verify").status_code == 200
    return order


@pytest.fixture
def sim_live(tmp_path: Path) -> Iterator[tuple[Any, ApiServer, Any]]:
    key, public = approver_key()
    own_key, own_public = approver_key()
    approvals = {"two_man_rule": True, "require_token": True, "ttl_s": 900,
                 "public_keys": {"approver2": public, "admin": own_public}}  # fmt: skip
    ws = {
        "enabled": True,
        "symbol": "BTCUSDT",
        "stall_after_s": 2,
        "error_after_s": 4,
        "disconnect_grace_s": 1,
        "cancel_on_disconnect": True,
    }
    with simulator_and_api(tmp_path, env={"SAFE_MODE": "false"}, approvals=approvals, ws=ws) as (sim, api):
        api.own_key = own_key  # type: ignore[attr-defined]
        yield sim, api, key


def test_real_order_on_the_simulator(sim_live: tuple[Any, ApiServer, Any]) -> None:
    sim, api, key = sim_live
    assert api.settings.safe_mode is False
    go_live(api, key)
    order = _place_and_cancel(api, "BTCUSDT")
    truth = httpx.get(f"{sim.base_url}/_sim/ground_truth").json()
    assert truth["real_orders"] == 1
    assert [(o["clientOrderId"], o["status"]) for o in truth["orders"]] == [
        (order["clientOrderId"], "CANCELED")
    ]


def test_two_man_rule_and_single_use(sim_live: tuple[Any, ApiServer, Any]) -> None:
    _, api, key = sim_live
    admin = api.client("admin")
    own = admin.post(
        "/api/session/arm", json={"token": approval_token(api.own_key, "admin", _session_id(admin))}
    )  # type: ignore[attr-defined]
    assert (own.status_code, own.json()["reason"]) == (403, "approval_same_operator")
    token = approval_token(key, "approver2", _session_id(admin))
    assert admin.post("/api/session/arm", json={"token": token}).status_code == 200
    assert admin.post("/api/session/disarm").json()["session"]["state"] == "TESTNET"
    reused = admin.post("/api/session/arm", json={"token": token})
    assert (reused.status_code, reused.json()["reason"]) == (409, "approval_reused")
    wrong = admin.post("/api/session/arm", json={"token": approval_token(key, "approver2", "live")})
    assert (wrong.status_code, wrong.json()["reason"]) == (409, "approval_wrong_session")
    refusals = [
        r["payload"]["refused"] for r in journal_rows(api.client("auditor"), trigger="api.session.arm")
    ]
    assert refusals == ["approval_same_operator", "approval_reused", "approval_wrong_session"]


def test_stream_disconnect_cancels_open_orders(sim_live: tuple[Any, ApiServer, Any]) -> None:
    sim, api, key = sim_live
    viewer = api.client("viewer")
    eventually(lambda: viewer.get("/api/status").json()["components"]["market_data"]["status"] == "OK")
    go_live(api, key)
    order = api.client("trader").post("/api/live/order", json=small_limit(api, "BTCUSDT")).json()
    assert order["state"] == "ACKED"
    # an outage past ws.disconnect_grace_s: sockets dropped, reconnects refused for 3 s
    httpx.post(f"{sim.base_url}/_sim/faults", json={"ws_drop": True, "ws_refuse": 3}).raise_for_status()
    eventually(
        lambda: viewer.get(f"/api/orders/{order['clientOrderId']}").json()["order"]["state"] == "CANCELLED"
    )
    rows = journal_rows(api.client("auditor"), trigger="cancel_on_disconnect")
    assert [r["payload"]["clientOrderId"] for r in rows] == [order["clientOrderId"]]
    assert httpx.get(f"{sim.base_url}/_sim/ground_truth").json()["orders"][0]["status"] == "CANCELED"


def test_go_live_is_refused_while_config_keeps_safe_mode(tmp_path: Path) -> None:
    key, public = approver_key()
    approvals = {"public_keys": {"approver2": public}}
    with simulator_and_api(tmp_path, approvals=approvals) as (_, api):
        admin = api.client("admin")
        assert (
            admin.post(
                "/api/session/arm", json={"token": approval_token(key, "approver2", _session_id(admin))}
            ).status_code
            == 200
        )
        r = admin.post("/api/session/go_live")
        assert (r.status_code, r.json()["reason"]) == (409, "safe_mode_config")
        assert r.json()["detail"]["session_state"] == "ARMED"


@pytest.mark.skipif(
    not REAL_TESTNET,
    reason="real Spot Testnet orders need ALLOW_LIVE_ORDERS=1, SAFE_MODE=false and BINANCE_API_*_TESTNET keys",
)
def test_real_order_on_spot_testnet(tmp_path: Path) -> None:
    key, public = approver_key()
    config = yaml.safe_load((CONFIG_DIR / "config.testnet.yaml").read_text())
    config["approvals"]["public_keys"] = {"approver2": public}
    config["ws"]["enabled"] = False
    path = tmp_path / "config.testnet.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(config_file=path, env=dict(os.environ), data_dir=tmp_path)
    with ApiServer(settings, tokens=add_operators(tmp_path)) as api:
        go_live(api, key)
        _place_and_cancel(api, os.environ.get("LIVE_TEST_SYMBOL", "BTCUSDT"))


def test_cli_keygen_and_approve_feed_the_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main

    pem = tmp_path / "approver2.pem"
    assert main(["keygen", "--out", str(pem)]) == 0
    public = capsys.readouterr().out.strip().splitlines()[-1]
    with simulator_and_api(tmp_path / "api", approvals={"public_keys": {"approver2": public}}) as (_, api):
        token_file = api.settings.data_dir / "approvals" / "token.txt"
        argv = [
            "approve",
            "--key",
            str(pem),
            "--approver",
            "approver2",
            "--session",
            _session_id(api.client("admin")),
            "--out",
            str(token_file),
        ]
        assert main(argv) == 0
        printed = capsys.readouterr().out.strip().splitlines()[-1]
        assert token_file.read_text().strip() == printed
        armed = api.client("admin").post("/api/session/arm")  # no body: the token file is used
        assert armed.status_code == 200, armed.text
        assert armed.json()["session"]["approval"]["approver"] == "approver2"


def _session_id(admin: Any) -> str:
    """The session id an approval must name: unique to the journal, read from the API."""
    return str(admin.get("/api/session").json()["session"]["session_id"])
