"""Runtime: what the routes see of a running PropBot (engine, journal, operators, component status).

Built by api.bootstrap (the only api module that knows the adapters); this module does not import them.
Start-up failures do not kill the server: a broken journal or an unreachable venue leaves the API up,
answering 503 with the reason, while /api/status and /healthz keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from api.auth import OperatorStore
from api.settings import Settings
from engine.errors import EngineError, ExchangeError, JournalCorrupt
from engine.fsm.session_table import SessionState
from engine.journal import Journal
from engine.runtime import Engine

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
_TICK_S = 1.0
_MARKET_REFRESH_S = 30.0
_START_RETRY_S = 5.0


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
        self._ticker: asyncio.Task[None] | None = None
        self._hooks_started = False

    @property
    def ready(self) -> bool:
        return self.engine.ready and self.start_error is None

    async def start(self) -> None:
        """Migrate the journal, start the engine (replay → verify → reconcile) and the side services."""
        try:
            await asyncio.to_thread(self.prepare_journal)
        except Exception as exc:  # unreachable database, no permission, bad URL: serve 503, do not crash
            log.error("journal cannot be prepared: %s", type(exc).__name__)
            self.start_error = EngineError(
                f"journal cannot be prepared ({type(exc).__name__})", reason="journal_unavailable"
            )
        else:
            await self._start_engine()
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="propbot-ticker")

    async def _start_engine(self) -> None:
        try:
            await self.engine.start()
        except JournalCorrupt as exc:
            log.error("journal does not verify: %s", exc)
            self.start_error = exc
            return
        except ExchangeError as exc:
            # The venue is unreachable: keep serving (503) and retry from the ticker
            log.warning("engine start failed, will retry: %s (%s)", exc, exc.reason)
            self.start_error = exc
            return
        self.start_error = None
        if not self._hooks_started:
            self._hooks_started = True
            for hook in self.start_hooks:
                await hook()

    async def _tick(self) -> None:
        since_refresh = since_retry = 0.0
        while True:
            await asyncio.sleep(_TICK_S)
            since_refresh += _TICK_S
            since_retry += _TICK_S
            try:
                if isinstance(self.start_error, ExchangeError) and since_retry >= _START_RETRY_S:
                    since_retry = 0.0
                    await self._start_engine()
                if not self.ready:
                    continue
                await self.engine.sessions.expire_if_due()
                await self.apply_hold_checks()
                if since_refresh >= _MARKET_REFRESH_S:
                    since_refresh = 0.0
                    await self.engine.orders.refresh_market()
            except EngineError as exc:
                log.warning("background check failed: %s (%s)", exc, exc.reason)

    async def apply_hold_checks(self) -> list[str]:
        """HOLD the session when a component demands it (e.g. an IP ban); returns the causes found."""
        causes = [c for c in (check() for check in self.hold_checks) if c]
        session = self.engine.sessions.current
        if causes and session.state is not SessionState.HOLD:
            await self.engine.sessions.hold("; ".join(causes)[:500])
        return causes

    async def hold_if(self, cause: str) -> None:
        """HOLD for `cause` unless already on HOLD (polling status must not add a row per poll)."""
        if self.engine.sessions.current.state is not SessionState.HOLD:
            await self.engine.sessions.hold(cause)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for hook in reversed(self.stop_hooks):
            try:
                await hook()
            except Exception:
                log.exception("stop hook failed")
        await self.engine.stop()
        await asyncio.to_thread(self.journal.close)
