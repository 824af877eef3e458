"""The status page in a real headless Chromium against a real server (paper profile, real uvicorn on
127.0.0.1): sign in with a token, watch orders, fills and positions arrive without a reload, press the
kill switch, and check that a viewer gets no action buttons and is refused when forcing an admin call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import ApiServer, paper_settings, simulator_and_api, small_limit

# The first test's set-up may install Chromium (apt-get, about 70 s on a fresh machine): past the default
pytestmark = pytest.mark.timeout(600)
TIMEOUT_MS = 15_000  # a condition, not a timing assertion: how long to wait before calling it broken
XSS = "<img src=x onerror=window.__xss=1> & <b>bold</b>"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(paper_settings(tmp_path / "paper")) as server:
        yield server


@pytest.fixture
def page_for(browser: Any, api: ApiServer) -> Iterator[Any]:
    """page_for(role): a fresh browser context (its own sessionStorage) signed in as `role`."""
    contexts: list[Any] = []
    problems: list[str] = []

    def open_as(role: str | None, token: str | None = None) -> Any:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        # A CSP violation, a script error or a server error would show here (a refused call's status,
        # 401/403/404/409, is logged by Chromium as "Failed to load resource": expected in these tests)
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and problems.append(m.text))  # fmt: skip
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("response", lambda r: r.status >= 500 and problems.append(f"{r.status} {r.url}"))
        page.goto(api.base_url + "/")
        page.wait_for_selector("#login:not([hidden])")
        if role is not None or token is not None:
            page.fill("#token", token or api.tokens[role or ""])
            page.click("#login-submit")
        if role is not None:
            page.wait_for_selector("#app:not([hidden])")
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert problems == []


def confirm(page: Any) -> None:
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-yes")


def test_operator_flow_orders_fills_positions_and_the_kill_switch(
    api: ApiServer, page_for: Any, screenshot_dir: Path
) -> None:
    page = page_for("admin")
    page.wait_for_function("() => document.getElementById('state').textContent === 'PAPER'")
    assert page.is_visible("#admin-actions")
    assert page.is_visible("#journal-panel")  # admins may audit

    trader = api.client("trader")
    resting = trader.post("/api/live/order", json=small_limit(api, "BTCUSDT"))
    assert resting.status_code == 200, resting.text
    cid = resting.json()["clientOrderId"]
    row = f"#orders tr[data-cid='{cid}']"
    page.wait_for_selector(row)  # no reload: the page polls
    assert page.text_content(f"{row} .order-state") == "ACKED"

    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    filled = trader.post("/api/live/order", json=market)
    assert filled.status_code == 200, filled.text
    assert filled.json()["state"] == "FILLED"
    page.wait_for_selector("#positions tr[data-asset='BTC']")
    held = next(p for p in trader.get("/api/positions").json()["positions"] if p["asset"] == "BTC")
    assert Decimal(held["quantity"]) > 0  # bought 0.001, less the commission taken in BTC
    assert page.text_content("#positions tr[data-asset='BTC'] .position-qty") == held["quantity"]
    page.wait_for_function(
        "cid => [...document.querySelectorAll('#fills td')].some(td => td.textContent === cid)",
        arg=filled.json()["clientOrderId"],
    )

    # The kill switch, with a hold reason that would be markup if it were ever inserted as HTML
    page.fill("#hold-reason-input", XSS)
    assert page.is_checked("#hold-cancel-all")
    page.click("#hold")
    assert "cancel ALL open orders" in page.text_content("#confirm-text")
    confirm(page)
    page.wait_for_function("() => document.getElementById('state').textContent === 'HOLD'")
    page.wait_for_selector(row, state="detached")  # the resting order left the open orders
    assert api.client("admin").get(f"/api/orders/{cid}").json()["order"]["state"] == "CANCELLED"
    assert re.search(r"Cancels requested: 1, failed: 0", page.text_content("#message") or "")
    page.wait_for_function("() => document.getElementById('hold-reason').textContent !== '—'")
    assert page.text_content("#hold-reason") == XSS  # rendered as text, exactly
    assert page.text_content("#session-kill") == "engaged: open orders are being cancelled"
    assert page.eval_on_selector_all("img, b", "nodes => nodes.length") == 0
    assert page.evaluate("window.__xss") is None
    page.wait_for_function(
        "text => [...document.querySelectorAll('#journal .journal-reason')].some(td => td.textContent === text)",
        arg=XSS,
    )
    shot = screenshot_dir / "status-page-hold.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    # Resume through the page, then a trader cancels one order with the page's own button
    page.click("#resume")
    confirm(page)
    page.wait_for_function("() => document.getElementById('state').textContent === 'PAPER'")
    second = trader.post("/api/live/order", json=small_limit(api, "BTCUSDT")).json()["clientOrderId"]
    trader_page = page_for("trader")
    assert not trader_page.is_visible("#admin-actions")
    assert not trader_page.is_visible("#journal-panel")  # a trader may not audit
    trader_page.click(f"#orders tr[data-cid='{second}'] button.cancel")
    confirm(trader_page)
    trader_page.wait_for_selector(f"#orders tr[data-cid='{second}']", state="detached")
    rows = api.client("auditor").get("/api/journal", params={"stream_id": second}).json()["items"]
    assert [r["actor"] for r in rows if r["trigger"] == "request_cancel"] == ["trader"]


def test_viewer_sees_no_actions_and_a_forced_admin_call_is_refused(api: ApiServer, page_for: Any) -> None:
    cid = (
        api.client("trader").post("/api/live/order", json=small_limit(api, "BTCUSDT")).json()["clientOrderId"]
    )
    page = page_for("viewer")
    page.wait_for_selector(f"#orders tr[data-cid='{cid}']")
    assert page.text_content("#who") == "viewer (viewer)"
    assert not page.is_visible("#admin-actions")
    assert page.query_selector_all("button.cancel") == []
    assert page.query_selector_all("#hold, #resume, #disarm") != []  # in the markup, hidden
    assert not page.is_visible("#hold")
    forced = page.evaluate(
        """async () => {
            const r = await fetch('/api/session/hold', {method: 'POST', headers: {
                'Authorization': 'Bearer ' + sessionStorage.getItem('propbot.token'),
                'Content-Type': 'application/json'}, body: JSON.stringify({cancel_all: true})});
            return [r.status, (await r.json()).reason];
        }"""
    )
    assert forced == [403, "forbidden"]
    assert api.client("admin").get("/api/session").json()["session"]["state"] == "PAPER"


def test_a_bad_or_revoked_token_shows_the_login_again(api: ApiServer, page_for: Any) -> None:
    page = page_for(None, token="pbt_not-a-token")
    page.wait_for_selector("#login:not([hidden])")
    assert "not valid" in (page.text_content("#login-error") or "")
    # Signed in, then the token is rotated on the server: the next poll's 401 brings the login back
    page = page_for("viewer")
    api.runtime.operators.add("viewer", "viewer")
    page.wait_for_selector("#login:not([hidden])")
    assert "401" in (page.text_content("#login-error") or "")
    assert page.evaluate("sessionStorage.getItem('propbot.token')") is None


def test_pending_approval_requests_appear_on_testnet(browser: Any, tmp_path: Path) -> None:
    """On the testnet profile (against the local simulator) an admin's approval request shows up in the
    pending panel, for a viewer too, without a reload."""
    with simulator_and_api(tmp_path / "testnet") as (_sim, api):
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(api.base_url + "/")
            page.fill("#token", api.tokens["viewer"])
            page.click("#login-submit")
            page.wait_for_function("() => document.getElementById('state').textContent === 'TESTNET'")
            created = api.client("admin").post("/api/approvals", json={})
            assert created.status_code == 201, created.text
            request_id = created.json()["approval"]["id"]
            row = f"#approvals tr[data-approval='{request_id}']"
            page.wait_for_selector(row)
            assert page.is_visible("#approvals-panel")
            assert page.text_content(f"{row} .approval-status") == "PENDING"
            assert not page.is_visible("#admin-actions")
        finally:
            context.close()
