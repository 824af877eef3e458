"""Every /api/live/* call writes exactly one audit row with the operator, the action and the outcome;
a 401 has no operator and is counted, never journaled (api.audit_trail)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request

from api.app import create_app
from engine.audit import AuditSlot
from engine.journal import JournalQuery
from engine.persistence.sql_journal import JournalUnavailable
from tests.e2e.server import ApiServer, add_operators, journal_rows, paper_settings
from tests.waiting import eventually_async

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "60000.00"}  # fmt: skip


def audits(auditor: httpx.Client, action: str) -> list[dict[str, Any]]:
    return journal_rows(auditor, stream="audit", trigger=action)


def test_a_viewers_refused_order_writes_its_audit_row(viewer: httpx.Client, auditor: httpx.Client) -> None:
    before = len(audits(auditor, "api.live.order"))
    r = viewer.post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-viewer-1"})
    assert (r.status_code, r.json()["reason"]) == (403, "forbidden")
    rows = audits(auditor, "api.live.order")
    assert len(rows) == before + 1
    assert rows[-1]["actor"] == "viewer"
    assert rows[-1]["payload"]["outcome"] == {"status": 403, "reason": "forbidden"}
    assert journal_rows(auditor, stream="order", stream_id="pb-viewer-1") == []  # no order id was reached


def test_each_call_writes_exactly_one_row(trader: httpx.Client, auditor: httpx.Client) -> None:
    cases = [
        ("post", "/api/live/order", {"json": {**ORDER, "newClientOrderId": "pb-one-1"}}, 200),
        ("post", "/api/live/order", {"json": {**ORDER, "newClientOrderId": "pb-one-1"}}, 200),  # replay
        (
            "post",
            "/api/live/order",
            {"json": {**ORDER, "quantity": "0.002", "newClientOrderId": "pb-one-1"}},
            409,
        ),
        ("post", "/api/live/order", {"content": b"{oops"}, 400),
        (
            "post",
            "/api/live/order",
            {"json": {**ORDER, "symbol": "XYZUSDT", "newClientOrderId": "pb-one-2"}},
            422,
        ),
        ("post", "/api/live/cancel", {"json": {"symbol": "BTCUSDT", "origClientOrderId": "pb-one-1"}}, 200),
        ("post", "/api/live/cancel", {"json": {"symbol": "BTCUSDT", "origClientOrderId": "nope"}}, 404),
        ("get", "/api/live/ping", {}, 200),
        ("get", "/api/live/open_orders", {"params": {"symbol": "bad symbol"}}, 422),
    ]
    for method, path, kwargs, status in cases:
        action = path.strip("/").replace("/", ".")
        before = len(audits(auditor, action))
        r = getattr(trader, method)(path, **kwargs)
        assert r.status_code == status, (path, r.text)
        rows = audits(auditor, action)
        assert len(rows) == before + 1, (path, status)
        assert rows[-1]["actor"] == "trader"
        assert (
            rows[-1]["payload"]["outcome"].get("status", 200) == status
            or "decision" in rows[-1]["payload"]["outcome"]
        )


def test_each_resend_of_a_refused_id_writes_one_row_naming_already_rejected(
    api: ApiServer, auditor: httpx.Client
) -> None:
    # A resend's own group (its audit row first) meets the existing id and is written not at all; the row
    # is then written by the audit route, once, with the engine's answer: 409 already_rejected
    body = {**ORDER, "quantity": "2", "newClientOrderId": "pb-resend-1"}  # 120,000 USDT: over the cap

    def rows() -> list[dict[str, Any]]:
        return [r for r in audits(auditor, "api.live.order")
                if r["payload"].get("request", {}).get("clientOrderId") == "pb-resend-1"]  # fmt: skip

    trader = api.client("trader")
    first = trader.post("/api/live/order", json=body)
    assert (first.status_code, first.json()["reason"]) == (409, "risk_max_notional")
    [row] = rows()
    assert row["payload"]["outcome"] == {"decision": "reject", "reason": "risk_max_notional"}
    again = trader.post("/api/live/order", json=body)
    assert (again.status_code, again.json()["reason"]) == (409, "already_rejected")
    # then three at once, each on its own connection
    clients = [api.client("trader") for _ in range(3)]
    barrier = threading.Barrier(3)
    answers: list[httpx.Response] = []

    def resend(client: httpx.Client) -> None:
        barrier.wait(5)
        answers.append(client.post("/api/live/order", json=body))

    threads = [threading.Thread(target=resend, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted((r.status_code, r.json()["reason"]) for r in answers) == [(409, "already_rejected")] * 3
    assert all(r.json()["detail"]["refusal"] == "risk_max_notional" for r in answers)
    resent = rows()[1:]
    assert len(resent) == 4  # one per call, no more, no fewer
    for row in resent:
        assert row["actor"] == "trader"
        assert row["trigger"] == "api.live.order"
        assert row["payload"]["outcome"] == {"status": 409, "reason": "already_rejected"}
    assert len(journal_rows(auditor, stream="order", stream_id="pb-resend-1", trigger="create")) == 1


def test_an_answered_order_leaves_no_reference_cycle(trader: httpx.Client) -> None:
    # The slot's row is durable before the answer, so nothing is left that refers back to the request:
    # the server's collector finds no garbage per order (api.serving tunes it on that assumption)
    trader.post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-cycle-0"})  # warm
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for i in range(1, 6):
            assert (
                trader.post(
                    "/api/live/order", json={**ORDER, "newClientOrderId": f"pb-cycle-{i}"}
                ).status_code
                == 200
            )
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, AuditSlot | Request)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_an_unauthenticated_call_is_counted_not_journaled(api: ApiServer, auditor: httpx.Client) -> None:
    before = len(journal_rows(auditor, stream="audit"))
    anonymous = httpx.Client(base_url=api.base_url)
    for _ in range(20):
        assert anonymous.post("/api/live/order", json=ORDER).status_code == 401
    assert len(journal_rows(auditor, stream="audit")) == before
    metrics = auditor.get("/metrics").text
    line = next(
        x
        for x in metrics.splitlines()
        if x.startswith('propbot_calls_unjournaled_total{reason="unauthorized"}')
    )
    assert float(line.split()[-1]) >= 20


def test_a_read_flood_is_throttled_without_growing_the_journal(api: ApiServer, auditor: httpx.Client) -> None:
    viewer = api.client("viewer")
    before = len(journal_rows(auditor, stream="audit"))
    codes = [viewer.get("/api/live/ping").status_code for _ in range(120)]
    assert codes.count(429) > 0
    grown = len(journal_rows(auditor, stream="audit")) - before
    assert grown == codes.count(200) < 120


def test_an_order_flood_is_throttled_without_growing_the_journal_without_bound(tmp_path: Path) -> None:
    from tests.e2e.server import paper_settings

    settings = paper_settings(tmp_path, risk={"max_orders_per_minute": 60})  # 2/s, burst 10 per operator
    with ApiServer(settings) as api:
        trader, auditor = api.client("trader"), api.client("auditor")
        codes = [trader.post("/api/live/order", json={**ORDER, "newClientOrderId": f"pb-flood-{i}"}).status_code
                 for i in range(60)]  # fmt: skip
        assert codes.count(429) >= 40
        audits = [r for r in journal_rows(auditor, stream="audit") if r["trigger"] == "api.live.order"]
        assert len(audits) == 60 - codes.count(429)  # throttled calls never reached the journal


async def test_a_call_cut_short_whose_commit_then_fails_still_writes_its_row(tmp_path: Path) -> None:
    """The engine claimed the call's row for the order's first commit; the call is cancelled while that
    commit is in flight, and the commit then fails: the finisher writes the row after all (one row)."""
    settings = paper_settings(tmp_path)
    token = add_operators(settings.data_dir)["trader"]
    app = create_app(settings, announce=lambda _: None)
    async with app.router.lifespan_context(app):
        journal = app.state.runtime.journal
        entered, gate = threading.Event(), threading.Event()
        real = journal.append_groups

        def stalls_then_fails(groups: Any) -> Any:
            if any(e.stream_id == "pb-cut-1" for g in groups for e in g):
                entered.set()
                gate.wait(10)
                raise JournalUnavailable("journal write failed: injected outage")
            return real(groups)

        journal.append_groups = stalls_then_fails
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
            call = asyncio.create_task(
                client.post("/api/live/order", json={**ORDER, "newClientOrderId": "pb-cut-1"})
            )
            assert await asyncio.to_thread(entered.wait, 10)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            gate.set()

            def rows() -> list[Any]:
                return [
                    r for r in journal.query(JournalQuery(stream="audit")) if r.trigger == "api.live.order"
                ]

            await eventually_async(lambda: len(rows()) == 1)
            await asyncio.sleep(0.2)  # and no second row follows
            (row,) = rows()
            assert row.actor == "trader"
            assert row.payload["outcome"]["reason"] == "call_cancelled"
            assert row.payload["outcome"]["claimed_commit_failed"] == "journal_unavailable"
            assert journal.stream("order", "pb-cut-1") == []
