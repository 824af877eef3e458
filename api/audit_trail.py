"""The one rule of the audit trail, in one place: every call to a route of `AuditedRoute` (the
/api/live/* endpoints), refused or not, writes exactly one audit row with the operator, the action and the
outcome: 403s, body errors, idempotent replays and preflight refusals included.

How: the route class gives each request an `AuditSlot` (engine.audit). Orders and cancels let the engine
claim it, so the row goes into the same commit as the order's first rows; anything the engine did not
claim is written here when the call ends. A 401 has no operator: it is counted and logged, never
journaled, so anonymous traffic cannot grow the journal; a 429 from the per-operator limit likewise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.errors import ApiError, status_of
from engine.audit import AuditSlot
from engine.errors import EngineError

log = logging.getLogger(__name__)

# Calls without an operator or throttled before they ran: counted for /metrics, never journaled
UNJOURNALED: dict[str, int] = {"unauthorized": 0, "rate_limited": 0, "journal_unwritable": 0}


def action_of(path: str) -> str:
    """'/api/live/order' → 'api.live.order'."""
    return path.strip("/").replace("/", ".")


def outcome_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, asyncio.CancelledError):
        return {"status": 499, "reason": "call_cancelled"}  # the client or a shutdown cut the call short
    if isinstance(exc, ApiError):
        return {"status": exc.status, "reason": exc.reason}
    if isinstance(exc, EngineError):
        return {"status": status_of(exc), "reason": exc.reason}
    if isinstance(exc, RequestValidationError):
        return {"status": 422, "reason": "invalid_query"}
    if isinstance(exc, HTTPException):
        return {"status": exc.status_code, "reason": "http_error"}
    return {"status": 500, "reason": "internal_error"}


async def slot_of(request: Request) -> AuditSlot:
    slot: AuditSlot = request.state.audit
    return slot


Audit = Annotated[AuditSlot, Depends(slot_of)]


class RateLimiter:
    """A token bucket per operator for calls that write a journal row."""

    def __init__(self, per_s: float, burst: float) -> None:
        self.per_s = per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, operator_id: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(operator_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_s)
        if tokens < 1:
            self._buckets[operator_id] = (tokens, now)
            return False
        self._buckets[operator_id] = (tokens - 1, now)
        return True


class AuditedRoute(APIRoute):
    """A route whose every call ends in exactly one audit row (see the module docstring)."""

    def request_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """What answers the call inside its audit (FastAPI's own handler; api.trade_route's is leaner)."""
        return super().get_route_handler()

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = self.request_handler()
        action = action_of(self.path)

        async def audited(request: Request) -> Response:
            slot = AuditSlot("", action)
            request.state.audit = slot
            try:
                response = await handler(request)
            except BaseException as exc:
                await _finish(request, slot, outcome_of(exc))
                raise
            await _finish(request, slot, {"status": response.status_code, **slot_outcome(request)})
            return response

        return audited


def slot_outcome(request: Request) -> dict[str, Any]:
    """What a route added to its successful outcome (e.g. an idempotent replay)."""
    extra: dict[str, Any] = getattr(request.state, "audit_outcome", {})
    return extra


_ORPHANS: set[asyncio.Task[None]] = set()  # rows of calls whose claimed commit failed after they ended


async def _finish(request: Request, slot: AuditSlot, outcome: dict[str, Any]) -> None:
    if slot.claimed:
        # The engine's commit holds the row; if the call ended first (its client went away) and that
        # commit then fails, the row is written here after all: exactly one row either way
        if not slot.settled:
            slot.on_released = lambda exc: _write_orphan(request, slot, outcome, exc)
        return
    operator = getattr(request.state, "operator", None)
    if operator is None:
        UNJOURNALED["unauthorized"] += 1
        log.info("%s refused before authentication (%s)", slot.action, outcome.get("reason"))
        return
    if outcome.get("status") == 429:
        UNJOURNALED["rate_limited"] += 1
        return
    runtime = request.app.state.runtime
    engine = runtime.engine
    if not engine.opened:
        # Nothing is appended to a journal that did not verify, or before it was opened
        UNJOURNALED["journal_unwritable"] += 1
        log.warning("%s by %s not journaled: the journal is not open", slot.action, operator.id)
        return
    slot.actor = operator.id
    try:
        # Shielded: a call cut short by its client is still a call, and its row still lands
        await asyncio.shield(engine.writer.append([slot.entry(outcome)]))
    except EngineError as exc:
        UNJOURNALED["journal_unwritable"] += 1
        log.warning("audit row for %s by %s not written: %s", slot.action, operator.id, exc.reason)


def _write_orphan(
    request: Request, slot: AuditSlot, outcome: dict[str, Any], exc: BaseException | None
) -> None:
    reason = exc.reason if isinstance(exc, EngineError) else "commit_failed"
    task = asyncio.get_running_loop().create_task(
        _finish(request, slot, {**outcome, "claimed_commit_failed": reason})
    )
    _ORPHANS.add(task)
    task.add_done_callback(_ORPHANS.discard)
