"""Group commit with apply-on-durable: concurrent callers' groups share one transaction, and each group's
`on_durable` callback runs on the event loop, inside the writer, right after the commit that holds it and
before anyone is answered. Durable and applied are one step that no caller's cancellation can split: the
caller only waits; it does not carry the apply.

A commit that raises is not proof that nothing was written: the database may have committed and its
answer been lost (a PostgreSQL connection dropped during COMMIT, a disk error after the WAL was written).
So the writer never answers a batch on such an error alone: it reads the journal back after the head it
last committed (the engine is the journal's only writer under its lease), and a group whose rows are
there is delivered like any durable group, observers and `on_durable` in journal order; only the groups
that are not there get `on_failed`. Memory stays a function of the journal by construction, whichever
caller is still waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from engine.checkpoint import Checkpointer
from engine.errors import EngineStopped, JournalUnavailable, VersionConflict
from engine.journal import Journal, NewEntry, Record
from engine.metrics import Metrics

log = logging.getLogger(__name__)

OnDurable = Callable[[list[Record]], None]
OnFailed = Callable[[BaseException], None]
Result = list[Record] | Exception
_Key = tuple[str, str, int]  # (stream, stream_id, version): unique in the journal
# Asking the journal again whether a batch whose commit answer was lost landed: first after this long,
# doubling up to the maximum, for as long as it takes (see _resolve)
_RESOLVE_FIRST_S = 0.05
_RESOLVE_MAX_S = 2.0


@dataclass(slots=True)
class _Group:
    entries: Sequence[NewEntry]
    on_durable: OnDurable
    on_failed: OnFailed


def _ignore(_: object) -> None:
    return None


class _NotAttempted(Exception):
    """The journal's head could not be read before the batch: nothing of it went to the database."""


def _cause(exc: _NotAttempted) -> Exception:
    return exc.__cause__ if isinstance(exc.__cause__, Exception) else exc


class _Unsure(Exception):
    """append_groups raised: the batch may or may not be in the journal after seq `after`."""

    def __init__(self, after: int, error: Exception) -> None:
        super().__init__(after, error)
        self.after = after
        self.error = error


def _same(rec: Record, entry: NewEntry) -> bool:
    """The stored row is this entry (its stream version is already known to match)."""
    return (rec.trigger, rec.from_state, rec.to_state, rec.payload_json, rec.actor, rec.reason) == (
        entry.trigger, entry.from_state, entry.to_state, entry.payload_json, entry.actor, entry.reason,
    )  # fmt: skip


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
        # A batch whose commit raised and whose outcome the journal could not be read to tell (see _resolve)
        self._unresolved = False
        # How many times that began: a caller that waited across one (for a session, an order, a create
        # that a cap counts) tells by it that its decision would come late (engine.orders, .sessions)
        self.outages = 0
        # True while the callbacks of groups found durable by reading the journal back run (their commit's
        # answer was lost): a callback may treat such a group differently (engine.order_store: never sent)
        self.recovering = False
        # One thread owns the database writes: no lock contention inside the process
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self.commits = 0
        self.rows = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """Groups queued or in a commit whose callbacks have not run yet (a commit whose outcome is being
        read back from the journal included)."""
        return bool(self._queue) or self._in_flight

    @property
    def unresolved(self) -> bool:
        """A commit raised and the journal cannot be read to tell whether it landed: every new group is
        failed with JournalUnavailable until it can."""
        return self._unresolved

    def refuse_if_outage_since(self, outages: int, what: str) -> None:
        """For a command about to be decided after waiting (for the session, a pending create): refuse it
        while a commit's outcome is being read back, or when such a time began since `outages` (this
        writer's count when the command began). What it waited for sat in that commit for as long as the
        journal stayed away, and its caller may have given up long ago; new groups are refused then for
        the same reason (submit).

        Raises:
            JournalUnavailable: nothing of the command was decided or written.
        """
        if self._unresolved or self.outages != outages:
            raise JournalUnavailable(
                f"journal unavailable: an earlier commit's outcome was being read back; {what} was not "
                "decided, nothing was written"
            )

    def submit(
        self, entries: Sequence[NewEntry], on_durable: OnDurable = _ignore, on_failed: OnFailed = _ignore
    ) -> None:
        """Queue `entries` as one all-or-nothing group. Synchronous, so a caller can decide and queue
        without an `await` in between. Exactly one of the callbacks runs later, on the loop:
        `on_durable(records)` once the group is committed (in journal order with every other group),
        or `on_failed(exc)` (VersionConflict: nothing of the group was written; JournalUnavailable:
        nothing of it is in the journal; EngineStopped: the writer stopped before the journal could say
        whether the group landed, the next start's replay has whatever it holds).

        Raises:
            EngineStopped: the writer is closing or closed; nothing was queued.
        """
        if self._closed:
            raise EngineStopped("the journal writer is closed", reason="engine_stopped")
        loop = asyncio.get_running_loop()
        if self._unresolved:
            # Nothing of this group is attempted: it could only queue behind a batch that must be resolved
            # first, for as long as the database is down, and then be written long after its caller gave up
            loop.call_soon(self._call, on_failed, self._unresolved_error())
            return
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="journal-group-commit")
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
            after = self.head[0] if self.head is not None else None
            work: ThreadFuture[list[Result]] = self._executor.submit(self._append, batch, after)
            try:
                results, recovered = await self._outcome(batch, work)
            except asyncio.CancelledError:
                # Cancelled mid-commit or while its outcome is read back (loop shutdown): the thread still
                # finishes the transaction, so apply what it committed before giving up, or memory would
                # lag the journal
                results, recovered = self._outcome_now(batch, work)
                self._in_flight = False
                self._deliver(batch, results, recovered=recovered)
                self._closed = True  # nothing may queue to a writer that no longer runs
                self._fail_queued(EngineStopped("the journal writer was cancelled", reason="engine_stopped"))
                raise
            self._in_flight = False
            self._deliver(batch, results, recovered=recovered)

    async def _outcome(
        self, batch: list[_Group], work: ThreadFuture[list[Result]]
    ) -> tuple[list[Result], bool]:
        """Each group's result, and whether they were read back from the journal (the commit raised)."""
        try:
            results = await asyncio.wrap_future(work)
        except _NotAttempted as exc:  # nothing was sent to the database: every group learns it
            return [_cause(exc)] * len(batch), False
        except _Unsure as unsure:  # the journal says what landed (or the writer stops not knowing)
            return await self._resolve(batch, unsure), True
        self.commits += 1
        return results, False

    def _outcome_now(
        self, batch: list[_Group], work: ThreadFuture[list[Result]]
    ) -> tuple[list[Result], bool]:
        """_outcome, blocking, with one look at the journal at most: the loop is going away."""
        try:
            return work.result(), False
        except _NotAttempted as exc:
            return [_cause(exc)] * len(batch), False
        except _Unsure as unsure:
            try:
                return self._executor.submit(self._landed, batch, unsure.after, unsure.error).result(), True
            except Exception:
                return [self._gave_up(unsure.error)] * len(batch), False

    def _append(self, batch: list[_Group], after: int | None) -> list[Result]:
        """The writer thread's commit. Raises _Unsure when append_groups raised (its outcome is for the
        journal to tell), _NotAttempted when nothing reached the database."""
        if after is None:  # no head known yet (an engine tells it after replay): the base to read back from
            try:
                after = self.journal.last_seq()
            except Exception as exc:
                raise _NotAttempted() from exc
        try:
            return self.journal.append_groups([g.entries for g in batch])
        except Exception as exc:
            raise _Unsure(after, exc) from exc

    async def _resolve(self, batch: list[_Group], unsure: _Unsure) -> list[Result]:
        """What of `batch` is in the journal, after its append raised `unsure.error`.

        Fail closed: until the journal can be read to tell, nobody of the batch is answered (neither
        "durable", which may be false, nor "failed", which may be false and would leave memory short of
        the journal for good: an order SENT in the journal that nothing sends or reconciles). The look is
        repeated with backoff for as long as it takes; meanwhile every new group is failed at once with
        JournalUnavailable (nothing of it is attempted, so that answer is true), rather than queued behind
        the batch to be written long after its caller gave up. A caller that times out meanwhile only
        stops waiting: its group's callbacks run here once the journal answers. When the writer is closed
        (the engine stops) while the journal still cannot tell, the batch's groups get EngineStopped and
        the next start's replay has whatever landed."""
        delay = _RESOLVE_FIRST_S
        log.warning(
            "journal commit of %d group(s) raised %r: reading the journal back to learn whether it landed",
            len(batch), unsure.error,
        )  # fmt: skip
        try:
            while True:
                work = self._executor.submit(self._landed, batch, unsure.after, unsure.error)
                try:
                    results = await asyncio.wrap_future(work)
                except Exception as exc:  # (a cancellation is _run's: one last look, blocking)
                    if not self._unresolved:
                        log.error(
                            "cannot tell whether a journal commit landed (%r): new groups fail until it can",
                            exc,
                        )
                        self.outages += 1
                    self._unresolved = True
                    self._fail_queued(self._unresolved_error())
                    if self._closed:
                        return [self._gave_up(unsure.error)] * len(batch)
                    assert self._wake is not None
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):  # close() wakes it for one last look
                        await asyncio.wait_for(self._wake.wait(), delay)
                    delay = min(delay * 2, _RESOLVE_MAX_S)
                    continue
                landed = sum(isinstance(r, list) and bool(r) for r in results)
                log.warning("journal commit read back: %d of %d group(s) landed", landed, len(batch))
                if landed:
                    self.commits += 1
                return results
        finally:
            self._unresolved = False

    def _landed(self, batch: list[_Group], after: int, error: Exception) -> list[Result]:
        """The writer thread's look at the journal: each group's records when its rows are stored after
        seq `after` (its stream versions, with its own content), VersionConflict when one of its stream
        versions holds another row (after `after` or before it), else `error` (nothing of it was written).

        Raises:
            JournalUnavailable (or any read failure): the journal cannot tell now.
        """
        self.journal.settle()
        wanted: set[_Key] = {(e.stream, e.stream_id, e.version) for g in batch for e in g.entries}
        found: dict[_Key, Record] = {}
        for row in self.journal.scan(after_seq=after):
            key = (row[1], row[2], row[3])
            if key in wanted:
                found[key] = Record(*row)
        out: list[Result] = []
        for group in batch:
            stored = [found.get((e.stream, e.stream_id, e.version)) for e in group.entries]
            if all(r is not None and _same(r, e) for r, e in zip(stored, group.entries, strict=True)):
                # decoded: the payload the row was encoded from, as a commit's own records carry it
                out.append([replace(r, decoded=e.payload) for r, e in zip(stored, group.entries, strict=True)
                            if r is not None])  # fmt: skip
            elif any(r is not None for r in stored) or self._taken(group.entries):
                ids = sorted({f"{e.stream}/{e.stream_id}@{e.version}" for e in group.entries})
                out.append(VersionConflict(f"stream version already taken: {', '.join(ids)}", detail=ids))
            else:
                out.append(error)
        return out

    def _taken(self, entries: Sequence[NewEntry]) -> bool:
        """One of `entries`' stream versions holds a row, one older than the scan's (the scan after the
        head found none of the group's): the group could not have been written, and the commit answers
        VersionConflict for it, as it does without a lost answer (a resubmit of a finished order's id:
        OrderService answers that order, and takes its decision out of the rate window, which counts what
        the journal holds). Versions are gapless, so the stream's highest version tells."""
        highest: dict[tuple[str, str], int] = {}
        for e in entries:
            key = (e.stream, e.stream_id)
            if key not in highest:
                highest[key] = self.journal.stream_version(*key)
            if highest[key] >= e.version:
                return True
        return False

    @staticmethod
    def _gave_up(error: Exception) -> EngineStopped:
        return EngineStopped(
            f"the engine stopped before the journal could tell whether this commit landed ({error}); "
            "the next start replays whatever it holds",
            reason="engine_stopped",
        )

    @staticmethod
    def _unresolved_error() -> JournalUnavailable:
        return JournalUnavailable(
            "journal unavailable: an earlier commit's outcome cannot be read back yet; nothing was written"
        )

    def _deliver(self, batch: list[_Group], results: list[Result], *, recovered: bool = False) -> None:
        head = max(
            (r[-1] for r in results if isinstance(r, list) and r), key=lambda rec: rec.seq, default=None
        )
        if head is not None:
            self.head = (head.seq, head.hash)
            if self.checkpointer is not None:
                self.checkpointer.note(head.seq, head.hash)
        self.recovering = recovered
        try:
            for group, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    self._call(group.on_failed, result)
                    continue
                self.rows += len(result)
                self.metrics.observe(result)
                for observe in self.observers:
                    self._call(observe, result)
                self._call(group.on_durable, result)
        finally:
            self.recovering = False

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
