"""The engine as one object: start (replay → verify → reconcile → accept orders), audit, stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.config import EngineSettings
from engine.journal import Journal, NewEntry
from engine.orders import OrderService
from engine.ports import Clock, ExchangePort
from engine.replay import ReplayResult, replay
from engine.sessions import SessionService
from engine.writer import GroupCommitWriter


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class StartReport:
    rows: int = 0
    open_orders: int = 0
    finished_orders: int = 0
    replay_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class Engine:
    # Issue 8: set by the composition root to CheckpointLog.check against this journal; raises
    # JournalCorrupt when the replayed journal is short of, or contradicts, its signed checkpoints
    checkpoint_check: Callable[[ReplayResult], None] | None = None

    def __init__(
        self, journal: Journal, exchange: ExchangePort, settings: EngineSettings, clock: Clock | None = None
    ) -> None:
        self.journal = journal
        self.exchange = exchange
        self.settings = settings
        self.clock = clock or SystemClock()
        self.writer = GroupCommitWriter(journal)
        self.sessions = SessionService(self.writer, exchange, settings, self.clock)
        self.orders = OrderService(self.writer, journal, exchange, self.sessions, settings, self.clock)
        self.ready = False
        self.report = StartReport()

    async def start(self) -> StartReport:
        """Raises JournalCorrupt (naming the first bad seq) when the journal does not verify."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result: ReplayResult = await asyncio.to_thread(lambda: replay(self.journal.scan()))
        if self.checkpoint_check is not None:  # issue 8
            await asyncio.to_thread(self.checkpoint_check, result)
        self.report = StartReport(
            result.rows, len(result.open_orders), result.finished_orders, loop.time() - t0
        )
        self.orders.open = result.open_orders
        await self.sessions.restore(result.sessions)
        self.exchange.on_update(self.orders.on_venue_update)
        await self.orders.refresh_market()
        problems = await self.orders.reconcile_open()
        if problems:
            self.report.problems = problems
            await self.sessions.hold(f"reconciliation: {'; '.join(problems)}"[:500])
        self.ready = True
        return self.report

    async def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        await self.writer.append([self.audit_entry(actor, action, detail)])

    @staticmethod
    def audit_entry(actor: str, action: str, detail: dict[str, Any]) -> NewEntry:
        """One row per API call, written before the call's side effect (single-version stream)."""
        return NewEntry("audit", f"{action}-{uuid.uuid4().hex}", 1, action, None, None, detail, actor)

    async def stop(self) -> None:
        self.ready = False
        await self.orders.close()
        await self.writer.close()
        await self.exchange.close()
