"""Runtime: what the routes see of a running PropBot (engine, journal, operators, component status).

Built by api.bootstrap (the only api module that knows the adapters); this module does not import them.
Start-up failures do not kill the server: a broken journal or an unreachable venue leaves the API up,
answering 503 with the reason, while /api/status and /healthz keep working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from api.audit_trail import RateLimiter
from api.auth import OperatorStore
from api.metrics import Exposition
from api.settings import Settings
from engine.errors import EngineError, JournalCorrupt
from engine.journal import Journal
from engine.runtime import Engine
from engine.supervisor import Supervisor

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
_TICK_S = 1.0
_CONNECT_RETRY_S = 1.0
_CONNECT_RETRY_MAX_S = 30.0
# Journal-writing reads (ping, account, open orders) per operator: a flood is answered 429, unjournaled
_READS_PER_S = 20.0
_READ_BURST = 40.0


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        journal: Journal,
        operators: OperatorStore,
        *,
        prepare_journal: Callable[[], None] = lambda: None,
        status_sources: dict[str, Callable[[], dict[str, Any]]] | None = None,
        hold_checks: list[Callable[[], str | None]] | None = None,
        start_hooks: list[Hook] | None = None,
        stop_hooks: list[Hook] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.journal = journal
        self.operators = operators
        self.prepare_journal = prepare_journal
        self.status_sources = status_sources or {}
        self.hold_checks = hold_checks or []
        self.start_hooks = start_hooks or []
        self.stop_hooks = stop_hooks or []
        self.start_error: EngineError | None = None
        self.supervisor = Supervisor(self._report)
        self.read_limiter = RateLimiter(_READS_PER_S, _READ_BURST)
        # Twice the engine's order-rate cap per operator, a tenth of a minute's worth as burst: calls past
        # it are 429, unjournaled (the engine refuses, with rows, what gets past the cap itself)
        per_minute = settings.engine.risk.max_orders_per_minute
        self.trade_limiter = RateLimiter(max(1.0, per_minute / 30), max(10.0, per_minute / 6))
        self._hooks_started = False
        # This runtime's own Prometheus registry (api.metrics), fed by the engine from the start
        self.metrics = Exposition(self)

    @property
    def ready(self) -> bool:
        return self.engine.ready and self.start_error is None

    async def start(self) -> None:
        """Migrate the journal, open the engine once (replay → verify → restore), then connect it
        (reconcile; retried in the background until the venue answers) and start the side services."""
        try:
            await asyncio.to_thread(self.prepare_journal)
        except Exception as exc:  # unreachable database, no permission, bad URL: serve 503, do not crash
            log.error("journal cannot be prepared: %s", type(exc).__name__)
            self.start_error = EngineError(
                f"journal cannot be prepared ({type(exc).__name__})", reason="journal_unavailable"
            )
            return
        try:
            await self.engine.open()
        except JournalCorrupt as exc:
            log.error("journal does not verify: %s", exc)
            self.start_error = exc
            return
        except EngineError as exc:  # the database went away after it was prepared: 503, not a crash
            log.error("journal cannot be opened: %s (%s)", exc, exc.reason)
            self.start_error = exc
            return
        if not await self._connect():
            self.supervisor.start("connect", self._connect_until_done)
        self.supervisor.start("hold_checks", self._hold_checks_forever)

    async def _connect(self) -> bool:
        try:
            await self.engine.connect()
        except EngineError as exc:
            # The venue is unreachable, or the journal failed a commit: keep serving (503), retry in the background
            log.warning("engine connect failed, will retry: %s (%s)", exc, exc.reason)
            self.start_error = exc
            return False
        self.start_error = None
        if not self._hooks_started:
            self._hooks_started = True
            for hook in self.start_hooks:
                await hook()
        return True

    async def _connect_until_done(self) -> None:
        delay = _CONNECT_RETRY_S
        while not await self._connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, _CONNECT_RETRY_MAX_S)

    async def _hold_checks_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            if self.ready:
                await self.apply_hold_checks()

    async def apply_hold_checks(self) -> list[str]:
        """HOLD the session when a component demands it (e.g. an IP ban), once; returns the causes."""
        causes = [c for c in (check() for check in self.hold_checks) if c]
        if causes:
            await self.engine.sessions.hold_once("; ".join(causes)[:500])
        return causes

    async def _report(self, component: str, error: str) -> None:
        await self.engine.audit("system", "component.error", {"component": component, "error": error})

    async def stop(self) -> None:
        await self.supervisor.stop()
        for hook in reversed(self.stop_hooks):
            try:
                await hook()
            except Exception:
                log.exception("stop hook failed")
        await self.engine.stop()
        await asyncio.to_thread(self.journal.close)
