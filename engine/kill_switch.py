"""The kill switch: HOLD, then cancel every own open order, including the ones still in flight.

The guarantee, by construction rather than by one sweep at the moment the button is pressed: from the
moment a HOLD with `cancel_all` is applied (the session row says so, so it survives a restart) until the
session is resumed, every own order that *is or becomes* ACKED or PARTIALLY_FILLED gets a cancel request.

- The sweep starts in the session's durability callback, in the same synchronous step that applies the
  HOLD: no order transition can be applied between the HOLD and the sweep's reading of the open orders.
- Every order transition applied after it is seen in the store's durability callback: an order that was
  SENT when the switch was pressed is cancelled as soon as its ACK (or a partial fill) is applied; an
  UNKNOWN order as soon as reconciliation (by client order id, never by guessing) finds it resting; a
  cancel that failed (CANCEL_PENDING back to ACKED) is cancelled again.
- HOLD refuses every new order, so the set of orders that can still become cancellable is exactly the
  open and reserved ones at the moment of the HOLD.
- A cancel the venue refuses is retried a few times with a short backoff, then reported as failed in the
  press's report; from then on `retry_forever` (a supervised component) sweeps again with a capped
  backoff for as long as the switch is engaged and a cancellable own order remains, which `status()` shows
  as ERROR with the ids. Resume wakes it and it stops: nothing is sent once the session is off the HOLD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import EngineError, ExecutionStatusUnknown
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.order import Order
from engine.order_store import OrderStore
from engine.session import TradingSession

S = OrderState
log = logging.getLogger(__name__)
CANCELLABLE = frozenset({S.ACKED, S.PARTIALLY_FILLED})
# Open, not cancellable yet: the switch cancels them once their outcome is applied (see the docstring)
IN_FLIGHT = frozenset({S.NEW, S.PREFLIGHT, S.SENT, S.UNKNOWN, S.CANCEL_PENDING})
UNRESOLVED = frozenset({S.SENT, S.UNKNOWN, S.CANCEL_PENDING})  # may rest on the venue: not known yet
ATTEMPTS = 3
RETRY_S = 0.2
RESWEEP_MIN_S = 1.0  # after a press's attempts failed: the backoff of the sweeps that follow, doubling
RESWEEP_MAX_S = 30.0  # up to this, for as long as the switch is engaged and cancellable orders remain
_PRESSES_KEPT = 8  # a HOLD nobody settles (a plain one while engaged) must not grow memory


@dataclass
class _Press:
    """One engaged HOLD: the own orders open at that moment, and every cancel started since."""

    open_at_press: set[str]
    tasks: dict[str, asyncio.Task[dict[str, Any]]] = field(default_factory=dict)


class _Sessions(Protocol):
    @property
    def session(self) -> TradingSession | None: ...


class _Placed(Protocol):
    @property
    def order(self) -> Order: ...


Cancel = Callable[[str, str, int | None, str], Awaitable[_Placed]]  # (symbol, cid, order_id, actor)


@dataclass
class KillReport:
    """What one press did: cancels requested (and the state each ended in), cancels that failed, orders
    still in flight (cancelled once cancellable), and orders that finished before their cancel."""

    requested: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "finished": self.finished,
        }


class KillSwitch:
    def __init__(
        self,
        store: OrderStore,
        sessions: _Sessions,
        cancel: Cancel,
        *,
        own: Callable[[str], bool] = lambda _c: True,
    ) -> None:
        """`own(clientOrderId)`: whether an order is ours (the engine's prefix); a foreign one is never
        cancelled."""
        self._own = own
        self._store = store
        self._sessions = sessions
        self._cancel = cancel
        self._tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}  # one running cancel per order
        self._presses: dict[int, _Press] = {}  # by the HOLD's session version, until settle() reports it
        self._wake = asyncio.Event()  # a cancel failed, or the session changed: retry_forever looks again

    @property
    def engaged_by(self) -> str | None:
        """The operator who pressed the switch while the session is on that HOLD, else None."""
        session = self._sessions.session
        if session is None or session.state is not SessionState.HOLD:
            return None
        return session.cancel_all_by

    # -- the two durability callbacks (synchronous: they only start tasks) ------------------------

    def on_session(self, session: TradingSession) -> None:
        self._wake.set()  # a resume stops the re-sweeps; a new HOLD may need them
        if self.engaged_by is not None:
            press = _Press({c for c in (*self._store.open, *self._store.reserved) if self._own(c)})
            self._presses[session.version] = press
            while len(self._presses) > _PRESSES_KEPT:
                del self._presses[next(iter(self._presses))]
            self.sweep()

    def on_order(self, order: Order) -> None:
        actor = self.engaged_by
        if (
            actor is not None and order.state in CANCELLABLE and not self._store.closed
            and self._own(order.client_order_id)
        ):  # fmt: skip
            self._start(order, actor)

    def sweep(self) -> dict[str, asyncio.Task[dict[str, Any]]]:
        """Start a cancel for every cancellable open order (the start-up path calls it too); returns the
        cancels running for them, started now or before."""
        actor = self.engaged_by
        if actor is None or self._store.closed:
            return {}
        return {
            order.client_order_id: self._start(order, actor)
            for order in list(self._store.open.values())
            if order.state in CANCELLABLE and self._own(order.client_order_id)
        }

    def _start(self, order: Order, actor: str) -> asyncio.Task[dict[str, Any]]:
        cid = order.client_order_id
        task = self._tasks.get(cid)
        if task is None:
            task = self._tasks[cid] = self._store.spawn(self._cancel_one(cid, order.symbol, actor))
        for press in self._presses.values():
            press.tasks.setdefault(cid, task)
        return task

    def uncancelled(self) -> list[str]:
        """The own orders still cancellable (resting on the venue) while the switch is engaged."""
        if self.engaged_by is None:
            return []
        return sorted(
            cid for cid, order in self._store.open.items() if order.state in CANCELLABLE and self._own(cid)
        )

    def unresolved(self) -> list[str]:
        """Own orders the switch cannot call cancelled yet although none is cancellable: a cancel or a
        send whose outcome is not known (CANCEL_PENDING, SENT, UNKNOWN), which may still rest on the venue
        until the reconciler resolves it."""
        if self.engaged_by is None:
            return []
        return sorted(
            cid for cid, order in self._store.open.items() if order.state in UNRESOLVED and self._own(cid)
        )

    def status(self) -> dict[str, Any]:
        """While the switch is engaged: ERROR when own orders it has not cancelled yet remain, WARN when
        only orders whose cancel (or send) outcome is still unknown remain — OK would say the book is flat."""
        remaining, unresolved = self.uncancelled(), self.unresolved()
        level = "ERROR" if remaining else "WARN" if unresolved else "OK"
        return {"status": level, "engaged": self.engaged_by is not None, "uncancelled": remaining,
                "unresolved": unresolved}  # fmt: skip

    async def retry_forever(self) -> None:
        """Sweep again, with a capped backoff, while the switch is engaged and cancellable orders remain
        (run supervised: a failure here restarts it, shown in the status)."""
        while True:
            delay = RESWEEP_MIN_S
            while self.uncancelled():
                with contextlib.suppress(TimeoutError):  # a session change (resume) ends the wait early
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                tasks = self.sweep()  # nothing once resumed (or the store is closed)
                if tasks:
                    log.warning("kill switch: sweeping %d order(s) again after %.1fs", len(tasks), delay)
                    await asyncio.wait(tasks.values())
                delay = min(delay * 2, RESWEEP_MAX_S)
            await self._wake.wait()
            self._wake.clear()

    # -- the cancels -------------------------------------------------------------------------------

    async def _cancel_one(self, cid: str, symbol: str, actor: str) -> dict[str, Any]:
        out: dict[str, Any] = {"clientOrderId": cid, "symbol": symbol}
        try:
            reason = ""
            for attempt in range(ATTEMPTS):
                await self._store.idle(cid)
                order = self._store.open.get(cid)
                if order is None:
                    return {**out, "outcome": "finished"}
                if order.state not in CANCELLABLE or self.engaged_by is None:
                    # Someone else's cancel is out (its failure comes back here), or resumed meanwhile
                    return {**out, "outcome": "in_flight", "state": order.state.value}
                try:
                    placed = await self._cancel(symbol, cid, None, actor)
                except ExecutionStatusUnknown as exc:
                    # CANCEL_PENDING, watched by the reconciler: a failed cancel brings it back here
                    return {**out, "outcome": "failed", "reason": exc.reason}
                except EngineError as exc:
                    reason = exc.reason
                    if reason == "engine_stopped":
                        break
                    log.warning("kill switch: cancel of %s failed (%s), attempt %d", cid, reason, attempt + 1)
                    await asyncio.sleep(RETRY_S * 2**attempt)
                    continue
                return {**out, "outcome": "requested", "state": placed.order.state.value}
            self._wake.set()  # retry_forever takes it from here while the switch stays engaged
            return {**out, "outcome": "failed", "reason": reason}
        finally:
            self._tasks.pop(cid, None)

    async def settle(self, session_version: int) -> KillReport:
        """Wait for the cancels started since the HOLD at `session_version` (without cancelling them if the
        waiter goes) and report on every own order that was open then."""
        press = self._presses.pop(session_version, None) or _Press(
            {c for c in self._store.open if self._own(c)}
        )
        tasks = {**press.tasks, **self._tasks}
        if tasks:
            await asyncio.wait(tasks.values())
        report = KillReport()
        lists = {"requested": report.requested, "failed": report.failed, "finished": report.finished}
        for cid, task in tasks.items():
            if task.cancelled() or task.exception() is not None:
                # Cancelled by the engine's stop; an unexpected error is logged by the store's task owner
                reason = "engine_stopped" if task.cancelled() else "internal_error"
                report.failed.append({"clientOrderId": cid, "outcome": "failed", "reason": reason})
                continue
            result = task.result()
            lists.get(result["outcome"], report.in_flight).append(result)
        for cid in sorted(press.open_at_press - set(tasks)):
            order = self._store.open.get(cid)
            if order is not None:
                report.in_flight.append({"clientOrderId": cid, "symbol": order.symbol, "outcome": "in_flight",
                                         "state": order.state.value})  # fmt: skip
            elif cid in self._store.reserved:
                report.in_flight.append({"clientOrderId": cid, "symbol": self._store.reserved[cid].symbol,
                                         "outcome": "in_flight", "state": S.NEW.value})  # fmt: skip
            else:
                report.finished.append({"clientOrderId": cid, "outcome": "finished"})  # rejected, filled
        return report
