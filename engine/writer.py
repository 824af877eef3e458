"""Group commit with apply-on-durable: concurrent callers' groups share one transaction, and each group's
`on_durable` callback runs on the event loop, inside the writer, right after the commit that holds it and
before anyone is answered. Durable and applied are one step that no caller's cancellation can split: the
caller only waits; it does not carry the apply."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.checkpoint import Checkpointer
from engine.errors import EngineStopped
from engine.journal import Journal, NewEntry, Record
from engine.metrics import Metrics

log = logging.getLogger(__name__)

OnDurable = Callable[[list[Record]], None]
OnFailed = Callable[[BaseException], None]


@dataclass(slots=True)
class _Group:
    entries: Sequence[NewEntry]
    on_durable: OnDurable
    on_failed: OnFailed


def _ignore(_: object) -> None:
    return None


class GroupCommitWriter:
    def __init__(
        self, journal: Journal, *, max_groups: int = 1024, metrics: Metrics | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:  # fmt: skip
        self.journal = journal
        # Told the new head after every commit (a tuple store); it signs it into its own log off the loop
        self.checkpointer = checkpointer
        # The journal's head as this writer last committed it: what the engine's self-check expects to find
        self.head: tuple[int, str] | None = None
        self.metrics = metrics or Metrics()
        # Read models told every durable group after the commit, before its callback (engine.ledger)
        self.observers: list[OnDurable] = []
        self._max_groups = max_groups
        self._queue: collections.deque[_Group] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._in_flight = False
        # One thread owns the database writes: no lock contention inside the process
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self.commits = 0
        self.rows = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """Groups queued or in a commit whose callbacks have not run yet."""
        return bool(self._queue) or self._in_flight

    def submit(
        self, entries: Sequence[NewEntry], on_durable: OnDurable = _ignore, on_failed: OnFailed = _ignore
    ) -> None:
        """Queue `entries` as one all-or-nothing group. Synchronous, so a caller can decide and queue
        without an `await` in between. Exactly one of the callbacks runs later, on the loop:
        `on_durable(records)` once the group is committed (in journal order with every other group),
        or `on_failed(exc)` (VersionConflict: nothing of the group was written; JournalUnavailable).

        Raises:
            EngineStopped: the writer is closing or closed; nothing was queued.
        """
        if self._closed:
            raise EngineStopped("the journal writer is closed", reason="engine_stopped")
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-group-commit")
        assert self._wake is not None
        self._queue.append(_Group(entries, on_durable, on_failed))
        self._wake.set()

    async def append(self, entries: Sequence[NewEntry]) -> list[Record]:
        """Durably append `entries` and return their records (for callers with nothing to apply).

        Raises:
            VersionConflict, JournalUnavailable, EngineStopped.
        """
        done: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()

        def durable(records: list[Record]) -> None:
            if not done.done():
                done.set_result(records)

        def failed(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        self.submit(entries, durable, failed)
        return await done

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._max_groups, len(self._queue)))]
            self._in_flight = True
            work: ThreadFuture[list[list[Record] | Exception]] = self._executor.submit(
                self.journal.append_groups, [g.entries for g in batch]
            )
            try:
                results = await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                # Cancelled mid-commit (loop shutdown): the thread still finishes the transaction, so
                # apply what it committed before giving up, or memory would lag the journal
                try:
                    results = work.result()
                except Exception as exc:  # the commit failed too: every group of the batch learns it
                    for group in batch:
                        self._call(group.on_failed, exc)
                else:
                    self._deliver(batch, results)
                self._closed = True  # nothing may queue to a writer that no longer runs
                self._fail_queued(EngineStopped("the journal writer was cancelled", reason="engine_stopped"))
                raise
            except Exception as exc:  # the database itself failed: every group in the batch learns it
                self._in_flight = False
                for group in batch:
                    self._call(group.on_failed, exc)
                continue
            self._in_flight = False
            self.commits += 1
            self._deliver(batch, results)

    def _deliver(self, batch: list[_Group], results: list[list[Record] | Exception]) -> None:
        head = max(
            (r[-1] for r in results if isinstance(r, list) and r), key=lambda rec: rec.seq, default=None
        )
        if head is not None:
            self.head = (head.seq, head.hash)
            if self.checkpointer is not None:
                self.checkpointer.note(head.seq, head.hash)
        for group, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                self._call(group.on_failed, result)
                continue
            self.rows += len(result)
            self.metrics.observe(result)
            for observe in self.observers:
                self._call(observe, result)
            self._call(group.on_durable, result)

    @staticmethod
    def _call(callback: Callable[[object], None] | OnDurable | OnFailed, arg: object) -> None:
        try:
            callback(arg)  # type: ignore[arg-type]
        except Exception:
            # An apply that raises is a bug; the rows are durable, and replay at the next start rebuilds them
            log.exception("journal callback failed")

    def _fail_queued(self, exc: BaseException) -> None:
        while self._queue:
            self._call(self._queue.popleft().on_failed, exc)

    async def close(self) -> None:
        """Refuse new groups, commit and apply every queued one, then stop. Idempotent."""
        self._closed = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                self._task.cancel()
                raise
            except Exception:
                log.exception("journal writer failed while closing")
        if self.checkpointer is not None:
            await self.checkpointer.close()
        self._executor.shutdown(wait=True)
