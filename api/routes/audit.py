"""Audit: one order with its transitions, the journal (filtered, paginated by seq), verify, export."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.deps import Auditor, EngineDep, Reader, RuntimeDep
from api.errors import ApiError
from api.export import export_csv, export_jsonl
from api.query_time import query_instant
from api.schemas import CLIENT_ORDER_ID
from engine.errors import EngineError, JournalCorrupt
from engine.journal import JournalQuery, Record
from engine.replay import replay

router = APIRouter(tags=["audit"])
log = logging.getLogger(__name__)
_CID = re.compile(CLIENT_ORDER_ID)
T = TypeVar("T")


def journal_filters(
    stream: Literal["session", "order", "trade", "audit", "approval"] | None = None,
    stream_id: Annotated[str | None, Query(max_length=64)] = None,
    trigger: Annotated[str | None, Query(max_length=48)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO-8601, inclusive")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO-8601, exclusive")] = None,
    after_seq: Annotated[int, Query(ge=0, lt=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JournalQuery:
    return JournalQuery(
        after_seq,
        limit,
        stream,
        stream_id,
        trigger,
        actor,
        query_instant("since", since),
        query_instant("until", until),
    )


Filters = Annotated[JournalQuery, Depends(journal_filters)]


async def _read(fn: Callable[[], T]) -> T:
    """Journal reads run in a thread; a database failure is a 503, never a 500."""
    try:
        return await asyncio.to_thread(fn)
    except EngineError:
        raise
    except Exception as exc:
        log.error("journal read failed: %s", type(exc).__name__)
        raise EngineError("the journal cannot be read", reason="journal_unavailable") from None


@router.get("/api/orders/{client_order_id}")
async def get_order(
    client_order_id: str, op: Reader, engine: EngineDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """One order's current state and every transition it went through."""
    if not _CID.match(client_order_id):
        raise ApiError(404, "unknown_order", "no such order")  # input is never echoed
    order = await _read(lambda: engine.orders.find(client_order_id))
    if order is None:
        raise ApiError(404, "unknown_order", "no such order")
    rows = await _read(lambda: runtime.journal.stream("order", client_order_id))
    return {"ok": True, "order": order.snapshot(), "transitions": [r.as_dict() for r in rows]}


@router.get("/api/journal")
async def query_journal(op: Auditor, runtime: RuntimeDep, q: Filters) -> dict[str, Any]:
    """Journal rows after `after_seq` matching the filters; follow `next_after_seq` while `has_more`."""
    rows: list[Record] = await _read(lambda: runtime.journal.query(q))
    return {
        "ok": True,
        "items": [r.as_dict() for r in rows],
        "next_after_seq": rows[-1].seq if rows else q.after_seq,
        "has_more": len(rows) == q.limit,
    }


@router.get("/api/journal/verify")
async def verify_journal(op: Auditor, runtime: RuntimeDep) -> dict[str, Any]:
    """Recheck the whole hash chain, versions and FSM edges; 503 journal_corrupt names the first bad seq."""
    journal = runtime.journal
    try:
        result = await asyncio.to_thread(lambda: replay(journal.scan()))
    except JournalCorrupt:
        raise
    except Exception as exc:
        log.error("journal verify failed: %s", type(exc).__name__)
        raise EngineError("the journal cannot be read", reason="journal_unavailable") from None
    return {
        "ok": True,
        "rows": result.rows,
        "last_seq": result.last_seq,
        "last_hash": result.last_hash,
        "open_orders": len(result.open_orders),
        "finished_orders": result.finished_orders,
    }


@router.get("/api/journal/export")
async def export_journal(
    op: Auditor, runtime: RuntimeDep, q: Filters, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """Stream the (filtered) journal as JSON lines or CSV, in seq order; `limit` does not apply."""
    journal = runtime.journal
    # Fail before the 200 goes out if the database cannot be read at all
    await _read(lambda: journal.query(replace(q, limit=1)))
    if format == "csv":
        return StreamingResponse(
            export_csv(journal, q), media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="journal.csv"'},
        )  # fmt: skip
    return StreamingResponse(
        export_jsonl(journal, q), media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="journal.jsonl"'},
    )  # fmt: skip
