"""Read models of the journal's trades: GET /api/fills, /api/positions, /api/orders (engine.ledger).

Served from the engine's in-memory ledger, fed by the writer after every commit: no I/O and no write on
the request path, any reader role. `propbot positions|fills --db URL` computes the same by replay.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Reader, RuntimeDep
from api.errors import ApiError
from api.routes.audit import _instant
from api.runtime import Runtime
from api.schemas import CLIENT_ORDER_ID, SYMBOL
from engine.errors import EngineError
from engine.fsm.order_table import OrderState
from engine.journal import format_ts
from engine.ledger import Ledger

router = APIRouter(tags=["views"])
_STATES = frozenset(s.value for s in OrderState)

Symbol = Annotated[str | None, Query(pattern=SYMBOL, description="e.g. BTCUSDT")]
Since = Annotated[str | None, Query(max_length=40, description="ISO-8601 with a timezone, inclusive")]
Until = Annotated[str | None, Query(max_length=40, description="ISO-8601 with a timezone, exclusive")]
AfterSeq = Annotated[int, Query(ge=0, lt=2**62, description="the previous page's next_after_seq")]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _ledger(runtime: Runtime) -> Ledger:
    """The engine's ledger once the journal is replayed; the start-up error (503) before that."""
    error = runtime.start_error
    if error is not None:
        detail = {"message": str(error), **error.detail} if isinstance(error.detail, dict) else str(error)
        raise ApiError(503, error.reason, detail)
    if not runtime.engine.opened:
        raise EngineError("the engine is starting", reason="not_ready")
    return runtime.engine.ledger


def _ts(name: str, text: str | None) -> str | None:
    """An ISO-8601 instant as the journal's own timestamp text, which compares as time."""
    instant = _instant(name, text)
    return format_ts(instant) if instant is not None else None


def _states(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    states = frozenset(v.strip() for value in values for v in value.split(",") if v.strip())
    unknown = sorted(states - _STATES)
    if unknown or not states:
        raise ApiError(
            422, "invalid_query",
            [{"field": "state", "error": f"must be among {', '.join(sorted(_STATES))}"}],
        )  # fmt: skip
    return states


@router.get("/api/fills")
async def list_fills(
    op: Reader,
    runtime: RuntimeDep,
    symbol: Symbol = None,
    client_order_id: Annotated[
        str | None, Query(alias="clientOrderId", pattern=CLIENT_ORDER_ID, description="one order's fills")
    ] = None,
    since: Since = None,
    until: Until = None,
    after_seq: AfterSeq = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Our trades from the journal, oldest first; follow `next_after_seq` (null: no more). `time` is when
    the fill was journaled; a page ends at a journal row's end, so it can exceed `limit` by that row's
    other fills."""
    page = _ledger(runtime).fills(
        symbol=symbol, client_order_id=client_order_id, since=_ts("since", since), until=_ts("until", until),
        after_seq=after_seq, limit=limit,
    )  # fmt: skip
    return {"ok": True, "fills": page.items, "next_after_seq": page.next_after_seq}


@router.get("/api/positions")
async def positions(op: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """Per (asset, cost asset): signed quantity, average cost, realized P&L (in the cost asset) and fees
    by asset, from every fill in the journal by the average-cost method (docs/api.md)."""
    return {"ok": True, **_ledger(runtime).positions()}


@router.get("/api/orders")
async def list_orders(
    op: Reader,
    runtime: RuntimeDep,
    state: Annotated[
        list[str] | None,
        Query(max_length=200, description="repeatable or comma-separated, e.g. ACKED,FILLED"),
    ] = None,
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
    open: Annotated[bool | None, Query(description="true: working orders only; false: finished only")] = None,
    after_seq: AfterSeq = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Orders by creation (their create row's seq), oldest first; follow `next_after_seq` (null: no more).
    Open orders are always listed; of finished ones, the most recent 10,000 (the journal has them all)."""
    page = _ledger(runtime).list_orders(
        states=_states(state), symbol=symbol, since=_ts("since", since), until=_ts("until", until),
        open_only=open, after_seq=after_seq, limit=limit,
    )  # fmt: skip
    return {"ok": True, "orders": page.items, "next_after_seq": page.next_after_seq}
