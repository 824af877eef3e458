"""Through the API: an order whose first commit lands and loses its answer, while the database then stays
away for a while. /api/status names the unresolved commit, the call waits for the journal instead of
being answered from a guess, and is then answered from what the journal holds (engine.writer)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from engine.journal import JournalQuery
from tests.e2e.outage import LostAnswerOutage
from tests.e2e.server import add_operators, paper_settings
from tests.waiting import eventually_async

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "60000.00", "newClientOrderId": "pb-lost-api-1"}  # fmt: skip


async def test_an_order_whose_commit_answer_was_lost_is_answered_from_the_journal(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path)
    token = add_operators(settings.data_dir)["trader"]
    app = create_app(settings, announce=lambda _: None)
    async with app.router.lifespan_context(app):
        journal = app.state.runtime.journal
        outage = LostAnswerOutage(ORDER["newClientOrderId"])
        outage.install(journal)

        def audit_rows() -> int:
            return sum(
                r.trigger == "api.live.order" for r in journal.query(JournalQuery(stream="audit", limit=1000))
            )

        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:

            async def journal_component() -> dict[str, Any]:
                r = await client.get("/api/status")
                assert r.status_code == 200, r.text
                return r.json()["components"]["journal"]  # type: ignore[no-any-return]

            audits = audit_rows()
            call = asyncio.create_task(client.post("/api/live/order", json=ORDER))
            await eventually_async(lambda: bool(outage.lost))

            async def unresolved() -> dict[str, Any] | None:
                got = await journal_component()
                return got if got["detail"].get("commit_outcome_unknown") else None

            component = await eventually_async(unresolved)
            assert component == {
                "status": "ERROR", "detail": {"reason": "journal_unavailable", "commit_outcome_unknown": True},
            }  # fmt: skip
            assert not call.done()
            outage.dark.clear()
            r = await asyncio.wait_for(call, 10)
            assert r.status_code == 503, r.text
            assert r.json()["reason"] == "commit_answer_lost"
            assert r.json()["detail"]["state"] == "REJECTED"
            rows = journal.stream("order", ORDER["newClientOrderId"])
            assert [x.trigger for x in rows] == ["create", "preflight", "send", "reject"]
            assert audit_rows() == audits + 1  # the call's row was in the group that landed: once
            assert (await journal_component())["status"] == "OK"
            again = await client.post("/api/live/order", json=ORDER)
            assert (again.status_code, again.json()["reason"]) == (409, "already_rejected")
