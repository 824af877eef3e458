"""The engine as one object.

Lifecycle, each step once and in order:
- `open()`: replay → verify → restore the session (journal only; once, a second call is a no-op) and
  register the venue listener (once);
- `connect()`: refresh market data and the preflight verdict, reconcile with the venue, start the
  background components. Retryable and idempotent: the runtime calls it again until it succeeds;
- `stop()`: in reverse dependency order: venue sources (updates arriving from now on are refused cleanly
  and reconciled at the next start) and background components, the store's tasks, then the writer,
  which commits and applies everything queued before it closes, and last the venue client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.approvals import ApprovalService
from engine.audit import audit_entry
from engine.checkpoint import Checkpointer, CheckpointLog
from engine.config import EngineSettings
from engine.guardrails.approvals import journal_keys
from engine.guardrails.risk import OrderRateWindow
from engine.journal import Journal, JournalQuery, NewEntry, parse_ts
from engine.ledger import Ledger
from engine.orders import OrderService
from engine.ports import Clock, ExchangePort
from engine.replay import Replayer, ReplayResult
from engine.sessions import SessionService
from engine.supervisor import Supervisor
from engine.types import BalancePush, VenueOrder
from engine.writer import GroupCommitWriter

log = logging.getLogger(__name__)
_MARKET_REFRESH_S = 30.0
_APPROVAL_CHECK_S = 1.0
_SELF_CHECK_S = 5.0


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
    def __init__(
        self, journal: Journal, exchange: ExchangePort, settings: EngineSettings, clock: Clock | None = None,
        *, checkpoints: CheckpointLog | None = None, session_id: str | None = None,
    ) -> None:  # fmt: skip
        """`checkpoints`: the signed log of journal heads kept outside the database (engine.checkpoint);
        start-up refuses a journal short of it or contradicting it, and every commit moves it on."""
        self.journal = journal
        self.exchange = exchange
        self.settings = settings
        self.clock = clock or SystemClock()
        self.checkpoints = checkpoints
        checkpointer = Checkpointer(checkpoints) if checkpoints is not None else None
        self.writer = GroupCommitWriter(journal, checkpointer=checkpointer)
        # session_id: a fixed id (tests); by default a new journal's session gets a unique one
        self.sessions = SessionService(self.writer, exchange, settings, self.clock, session_id)
        self.approvals = ApprovalService(self.writer, self.sessions, settings, self.clock)
        self.orders = OrderService(self.writer, journal, exchange, self.sessions, settings, self.clock)
        self.preflight = self.sessions.preflight
        # Fills, positions, order history: rebuilt by open()'s replay, then fed every durable group
        self.ledger = Ledger()
        self.writer.observers.append(lambda records: self.ledger.observe(records))
        self.orders.history = lambda: self.ledger  # read at each call: open() replaces the ledger
        self.supervisor = Supervisor(self._report_failure)
        self.opened = False
        self.connected = False
        self.stopping = False
        self.report = StartReport()
        self.opens = 0  # replays run: 1 for the life of an engine
        self.self_check_problem: str | None = None
        # A standby's replay, kept up with the journal by follow(): at takeover only the newer rows are read
        self._warm: tuple[Replayer, Ledger] | None = None
        # After a warm takeover: the whole prefix is verified again in the background ("pending", "OK" or
        # the damage found, which HOLDs the session)
        self.prefix_verify: str | None = None
        self._prefix_task: asyncio.Task[None] | None = None
        self._prefix_check: tuple[int, str] | None = None

    @property
    def ready(self) -> bool:
        return self.connected and not self.stopping

    async def open(self) -> StartReport:
        """Replay and verify the journal and restore the session; once.

        Raises:
            JournalCorrupt: naming the first bad seq.
        """
        if self.opened:
            return self.report
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        replayer, ledger = await self._warm_replayer() or self._replayer()
        warm_seq, warm_hash = replayer.last_seq, replayer.last_hash
        result: ReplayResult = await asyncio.to_thread(
            lambda: replayer.feed(self.journal.scan(after_seq=replayer.last_seq), complete=True)
        )
        # The ledger was built in the replay's thread(s), and is published on the loop once it is complete
        ledger.last_seq = result.last_seq
        self.ledger = ledger
        self.opens += 1
        if warm_seq:  # verified again once connected: not competing with the takeover for the CPU
            self.prefix_verify = "pending"
            self._prefix_check = (warm_seq, warm_hash)
        self.writer.head = (result.last_seq, result.last_hash)
        if self.checkpoints is not None:
            await asyncio.to_thread(self.checkpoints.check, result, self.journal.hash_at)
            if self.writer.checkpointer is not None:  # a checkpoint even before the first new write
                self.writer.checkpointer.note(result.last_seq, result.last_hash)
        self.report = StartReport(
            result.rows, len(result.open_orders), result.finished_orders, loop.time() - t0
        )
        self.orders.store.restore(result.open_orders, result.untraced)
        self.orders.restore_rate(await asyncio.to_thread(self._recent_creates))
        await self.sessions.restore(result.sessions)
        self.approvals.restore(result.approvals)
        self.exchange.on_update(self._on_update)
        self.exchange.on_balances(self._on_balances)
        self.opened = True
        return self.report

    def _recent_creates(self) -> list[float]:
        """When the orders created in the last minute were journaled, newest `max_orders_per_minute` only
        (the window refuses while it holds that many: older ones cannot change its answer)."""
        since = self.clock.now() - timedelta(seconds=OrderRateWindow.SPAN_S)
        keep: collections.deque[float] = collections.deque(maxlen=self.settings.risk.max_orders_per_minute)
        after = 0
        while True:
            page = self.journal.query(
                JournalQuery(after_seq=after, limit=1000, stream="order", trigger="create", since=since)
            )
            keep.extend(parse_ts(r.created_at).timestamp() for r in page)
            if len(page) < 1000:
                return list(keep)
            after = page[-1].seq

    def _replayer(self) -> tuple[Replayer, Ledger]:
        rules = self.settings.approvals
        ledger = Ledger()
        # Every arm/go_live row must carry an approval that verifies against the approver keys in force, or
        # ones rotated out since (approvals.retired_keys): a documented key rotation must not brick start-up
        replayer = Replayer(
            approver_keys=journal_keys(rules.public_keys, rules.retired_keys), require_token=rules.require_token,
            two_man_rule=rules.two_man_rule, on_order=ledger.on_order_row, on_trade=ledger.on_trade_row,
        )  # fmt: skip
        return replayer, ledger

    async def follow(self, max_rows: int = 200_000) -> int:
        """A standby's catch-up, read-only: verify and fold up to `max_rows` rows appended since the last
        call into a replay kept for the takeover (bounded, so a standby catching up with a large journal
        still polls its lease between calls); returns the seq reached. Once opened, a no-op.

        Raises:
            JournalCorrupt, JournalUnavailable: the kept replay is dropped (open() starts from scratch).
        """
        if self.opened:
            return self.report.rows
        warm = self._warm or self._replayer()
        self._warm = None
        replayer = warm[0]
        rows = itertools.islice(self.journal.scan(after_seq=replayer.last_seq), max_rows)
        await asyncio.to_thread(lambda: replayer.feed(rows))
        self._warm = warm
        return replayer.last_seq

    @property
    def followed_seq(self) -> int | None:
        return self._warm[0].last_seq if self._warm is not None else None

    async def _warm_replayer(self) -> tuple[Replayer, Ledger] | None:
        """The standby's replay, if the journal still has the hash it verified at its last row (a rewrite
        of any row before it changes that hash); else None."""
        warm, self._warm = self._warm, None
        if warm is None or warm[0].last_seq == 0:
            return warm
        if await asyncio.to_thread(self.journal.hash_at, warm[0].last_seq) != warm[0].last_hash:
            log.warning(
                "journal changed under the standby's replay at seq %s: replaying it all", warm[0].last_seq
            )
            return None
        return warm

    async def _verify_prefix(self, seq: int, digest: str) -> None:
        """After a warm takeover, replay and verify rows 1..seq once more, from the database as it is
        now; damage (a row changed after the standby read it) HOLDs the session."""
        try:
            again, _ = self._replayer()
            rows = itertools.takewhile(lambda r: r[0] <= seq, self.journal.scan())
            await asyncio.to_thread(lambda: again.feed(rows))
            problem = None if (again.last_seq, again.last_hash) == (seq, digest) else (
                f"rows 1..{seq} no longer hash to what the standby verified"
            )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"[:300]
        if problem is not None:
            log.error("journal verify after takeover: %s", problem)
            self.self_check_problem = problem
            with contextlib.suppress(Exception):
                await self.sessions.hold_once(f"journal verify after takeover: {problem}"[:500])
        self.prefix_verify = problem or "OK"  # after the HOLD: whoever reads it sees the session held

    async def connect(self) -> StartReport:
        """Reconcile with the venue and start the background components; retry until it returns.

        Raises:
            ExchangeError: the venue could not be reached; nothing half-done needs undoing.
        """
        if self.connected:
            return self.report
        await self.open()
        await self.orders.refresh_market()
        await self.preflight.refresh()
        problems = await self.orders.reconcile_open()
        if problems:
            self.report.problems = problems
            await self.sessions.hold(f"reconciliation: {'; '.join(problems)}"[:500])
        # Restarted on a kill switch's HOLD: what reconciliation found resting is cancelled now
        self.orders.kill_switch.sweep()
        self.supervisor.start("preflight", self.preflight.run)
        self.supervisor.start("market_data_refresh", self._refresh_market_forever)
        self.supervisor.start("approval_expiry", self._expire_forever)
        self.supervisor.start("journal_self_check", self._self_check_forever)
        self.supervisor.start("kill_switch_retry", self.orders.kill_switch.retry_forever)
        self.supervisor.start("trade_tracer", self.orders.trade_tracer.run)
        self.connected = True
        if self._prefix_check is not None and self._prefix_task is None:
            self._prefix_task = asyncio.get_running_loop().create_task(
                self._verify_prefix(*self._prefix_check), name="prefix-verify"
            )
        return self.report

    async def start(self) -> StartReport:
        await self.open()
        return await self.connect()

    def _on_update(self, vo: VenueOrder) -> None:
        if self.stopping:
            # The venue keeps the truth: the next start's reconciliation journals it
            log.info("update for %s arrived while stopping: left to the next start", vo.client_order_id)
            return
        self.orders.reconciler.on_venue_update(vo)

    def _on_balances(self, push: BalancePush) -> None:
        if not self.stopping:
            self.orders.on_balances(push)

    async def _refresh_market_forever(self) -> None:
        while True:
            await asyncio.sleep(_MARKET_REFRESH_S)
            await self.orders.refresh_market()

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(_APPROVAL_CHECK_S)
            await self.sessions.expire_if_due()
            await self.approvals.expire_due()

    async def _self_check_forever(self) -> None:
        while True:
            await asyncio.sleep(_SELF_CHECK_S)
            problem = await self.journal_self_check()
            if problem is not None:
                self.self_check_problem = problem
                await self.sessions.hold_once(f"journal self-check: {problem}"[:500])

    async def journal_self_check(self) -> str | None:
        """The journal's tail as the database has it now against what this engine committed: rows deleted
        or rewritten under a running engine are found here, not only at the next start. None when they
        agree (or when a commit moved the head during the check: the next round looks again)."""
        head = self.writer.head
        if head is None or self.writer.busy:
            return None
        seq, digest = head
        last, stored = await asyncio.to_thread(lambda: (self.journal.last_seq(), self.journal.hash_at(seq)))
        if self.writer.head != head:
            return None
        if last < seq or stored is None:
            return f"the journal ends at seq {last}, this engine committed up to seq {seq}"
        if stored != digest:
            return f"row {seq} no longer has the hash this engine committed"
        if last > seq:
            return f"rows after seq {seq} were appended by someone other than this engine"
        return None

    async def _report_failure(self, component: str, error: str) -> None:
        await self.writer.append(
            [audit_entry("system", "component.error", {"component": component, "error": error})]
        )

    async def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        await self.writer.append([self.audit_entry(actor, action, detail)])

    @staticmethod
    def audit_entry(actor: str, action: str, detail: dict[str, Any]) -> NewEntry:
        return audit_entry(actor, action, detail)

    async def stop(self) -> None:
        """Idempotent; see the module docstring for the order."""
        self.stopping = True  # venue sources first: from here on their updates are refused cleanly
        if self._prefix_task is not None:
            self._prefix_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prefix_task
        await self.supervisor.stop()
        await self.orders.close()  # a send cut short stays SENT: the next start resolves it by query
        await self.writer.close()
        await self.exchange.close()
