"""Runtime: what the routes see of a running PropBot (engine, journal, operators, component status).

Built by api.bootstrap (the only api module that knows the adapters); this module does not import them.
Start-up failures do not kill the server: a broken journal or an unreachable venue leaves the API up,
answering 503 with the reason, while /api/status and /healthz keep working.

With a writer lease (PostgreSQL, docs/scale-out.md) the runtime starts as a STANDBY: every command is 503
`standby` and nothing is journaled while another engine holds the account's lease; it polls for the lease
and, once it holds it, starts as any engine starts (migrate, replay, verify, reconcile, HOLD restart).
An ACTIVE runtime checks its lease as often; when the lease is lost it is fenced at once: commands are
503 `lease_lost`, background components stop, the journal refuses appends, and `on_fenced` (the server
exiting, so a process supervisor starts it again as a standby) is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

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
# How often a standby tries the lease (a takeover waits for the next try; a try is one tiny query), and
# how often an active engine checks it holds it when idle (each append checks it too)
LEASE_POLL_S = 0.1
LEASE_CHECK_S = 0.5


class Lease(Protocol):
    """engine.persistence.lease.WriterLease, as the runtime uses it (routes may not import persistence)."""

    state: str

    def try_acquire(self) -> bool: ...

    def check(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


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
        lease: Lease | None = None,
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
        self.lease = lease
        self.fenced = False
        self.on_fenced: Callable[[], None] = lambda: None
        self._writer_start: asyncio.Task[None] | None = None  # a standby's takeover runs here
        self._writer_started = False
        self.follow_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.engine.ready and self.start_error is None and not self.fenced

    @property
    def role(self) -> str:
        """ACTIVE (holds the lease, or needs none), STANDBY, or LOST (fenced)."""
        return "ACTIVE" if self.lease is None else self.lease.state

    async def start(self) -> None:
        """Without a lease: start as the writer now. With one: standby until the lease is held."""
        if self.lease is None:
            await self._start_writer()
            return
        if await asyncio.to_thread(self.lease.try_acquire):
            # The writer from the first moment: start as an engine without a lease does (the server
            # begins answering only once this returns)
            self._writer_started = True
            await self._start_writer()
        else:
            self.start_error = self._standby_error()
        self.supervisor.start("leadership", self._lead)

    def _standby_error(self) -> EngineError:
        assert self.lease is not None
        status = self.lease.status()
        holder = status.get("holder") or {}
        return EngineError(
            f"standby: engine {holder.get('engine_id') or 'unknown'} holds the writer lease of "
            f"{status.get('schema')}",
            reason="standby",
            detail={"holder": holder or None, "schema": status.get("schema")},
        )

    async def _lead(self) -> None:
        """Standby until the lease is ours, then start the writer and watch the lease for good."""
        assert self.lease is not None
        lease = self.lease
        while not await asyncio.to_thread(lease.try_acquire):
            if lease.state == "LOST":
                return await self._fence("the writer lease was lost")
            self.start_error = self._standby_error()
            await self._follow()
            await asyncio.sleep(LEASE_POLL_S)
        if not self._writer_started:
            self._writer_started = True
            log.warning("writer lease held: starting as the account's writer")
            self.start_error = None
            # Its own task: replaying a large journal must not delay the lease checks below
            self._writer_start = asyncio.get_running_loop().create_task(
                self._start_writer(), name="writer-start"
            )
        while not self.fenced:
            await asyncio.sleep(LEASE_CHECK_S)
            if not await asyncio.to_thread(lease.check):
                await self._fence(str(lease.status().get("lost_reason") or "the writer lease was lost"))

    async def _follow(self) -> None:
        """A warm standby: verify the account's new rows as they come (read-only), so a takeover reads
        only what was appended since the last poll. A journal not readable yet (a new account, no writer
        has migrated it) is retried at the next poll; the takeover replays from scratch then."""
        try:
            await self.engine.follow()
            self.follow_error = None
        except Exception as exc:
            self.follow_error = f"{type(exc).__name__}: {exc}"[:300]
            log.debug("standby follow failed: %s", self.follow_error)

    async def _fence(self, why: str) -> None:
        """Stop being the writer at once: nothing is journaled or sent from here on (the journal itself
        refuses appends without the lease); the process is expected to exit (`on_fenced`)."""
        if self.fenced:
            return
        self.fenced = True
        log.error("FENCED: %s; refusing every command", why)
        self.start_error = EngineError(
            f"this engine lost the writer lease ({why}): another engine may be the writer now",
            reason="lease_lost",
            detail=self.lease.status() if self.lease is not None else None,
        )
        self.engine.stopping = True  # venue updates are left to the next writer's reconciliation
        if (
            self._writer_start is not None
            and not self._writer_start.done()
            and self._writer_start is not asyncio.current_task()  # a takeover that gives the lease up
        ):
            self._writer_start.cancel()
        for name in ("connect", "hold_checks"):
            comp = self.supervisor.components.get(name)
            if comp is not None and comp.task is not None:
                comp.task.cancel()
        await self.engine.supervisor.stop()
        # The writer too (nothing is journaled from here on): a commit whose outcome it is still reading
        # back (the database unreachable, as in the partition that cost the lease) is answered
        # engine_stopped after one last look, instead of holding its calls, and with them the server's
        # graceful exit, until the database answers again; the next writer's replay has whatever landed
        await self.engine.writer.close()
        self.on_fenced()

    async def _start_writer(self) -> None:
        """Migrate the journal, open the engine once (replay → verify → restore), then connect it
        (reconcile; retried in the background until the venue answers) and start the side services."""
        try:
            await asyncio.to_thread(self.prepare_journal)
        except Exception as exc:  # unreachable database, no permission, bad URL: serve 503, do not crash
            log.error("journal cannot be prepared: %s", type(exc).__name__)
            self.start_error = EngineError(
                f"journal cannot be prepared ({type(exc).__name__})", reason="journal_unavailable"
            )
            return await self._give_up_lease(f"the journal cannot be prepared ({type(exc).__name__})")
        try:
            await self.engine.open()
        except JournalCorrupt as exc:
            # Every standby would find the same damage: the lease stays here, nothing is written, and the
            # 503 names the row until an operator looks (docs/scale-out.md)
            log.error("journal does not verify: %s", exc)
            self.start_error = exc
            return
        except EngineError as exc:  # the database went away after it was prepared: 503, not a crash
            log.error("journal cannot be opened: %s (%s)", exc, exc.reason)
            self.start_error = exc
            return await self._give_up_lease(f"the journal cannot be opened ({exc.reason})")
        except Exception as exc:  # a bug: never a task that dies holding the lease with nobody serving
            log.exception("engine cannot be opened")
            self.start_error = EngineError(
                f"engine cannot be opened ({type(exc).__name__})", reason="engine_open_failed"
            )
            return await self._give_up_lease(f"the engine cannot be opened ({type(exc).__name__})")
        if self.lease is not None:  # who took over from whom, for the auditors (rows carry engine_id too)
            lease = self.lease.status()
            await self.engine.audit("system", "writer.lease_acquired", {
                k: lease.get(k) for k in ("engine_id", "schema", "backend_pid", "previous_holder")
            })  # fmt: skip
        if not await self._connect():
            self.supervisor.start("connect", self._connect_until_done)
        self.supervisor.start("hold_checks", self._hold_checks_forever)

    async def _give_up_lease(self, why: str) -> None:
        """A writer that took the lease but cannot open the journal (a transient failure: too many
        connections, the database restarting) must not keep the lease and answer 503 for good while
        another standby could take over: it fences itself, and the process exits (`on_fenced`) so its
        supervisor starts it again as a standby. Without a lease there is nobody to hand over to: the
        engine stays up and answers 503 with the reason."""
        if self.lease is not None:
            await self._fence(why)

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
        if self._writer_start is not None and not self._writer_start.done():
            self._writer_start.cancel()
        await self.engine.stop()
        await asyncio.to_thread(self.journal.close)
        if self.lease is not None:  # after the last commit: a clean stop hands over to a standby at once
            await asyncio.to_thread(self.lease.close)
