"""The journal outbox relay: journal rows after a durable cursor → JetStream, in seq order, at least once.

It publishes only while it holds its source's lock (engine.persistence.relay_lock); another relay for
the same source waits as a standby. Then a loop, one NATS connection per episode
(adapters.nats.stream.connect):
1. on a wake-up, read the contiguous run of rows after the last published one, on the event loop
   (engine.persistence.outbox_reader);
2. publish them at once with async acks, not waiting for the acks of rows already in flight (up to
   max_in_flight);
3. move the cursor over the acknowledged prefix, in seq order (committed to relay_cursor at most every
   cursor_every_s while busy, at once when idle or failing).
Any failure (broker gone, ack timeout, database error) ends the episode after the acknowledged prefix is
committed; the supervisor logs it, shows ERROR in the status and starts a new episode with backoff,
which republishes from the cursor (the broker's duplicate window or the consumer's SeqGate absorbs the
repeat). It wakes on PostgreSQL NOTIFY or SQLite's PRAGMA data_version (engine.persistence.journal_wakeup),
and reads on a slow timer besides. The engine never waits for it: it only reads the journal, and writes
its own cursor row.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from adapters.nats.stream import (
    DEFAULT_DUPLICATE_WINDOW_S,
    DEFAULT_STREAM,
    close_quietly,
    connect,
    ensure_stream,
)
from engine.outbox import (
    HDR_HASH,
    HDR_SEQ,
    OutboxMessage,
    SourceMismatch,
    check_source,
    encode_row,
    relay_metrics,
    source_subjects,
)
from engine.persistence.journal_wakeup import listen_for_appends, watch_sqlite_commits
from engine.persistence.outbox_reader import open_row_reader
from engine.persistence.outbox_source import OutboxSource
from engine.persistence.relay_lock import LockHolder, open_relay_lock
from engine.supervisor import Supervisor

log = logging.getLogger(__name__)
T = TypeVar("T")

# Test-only fault injection (tests/outbox/test_relay_crash.py): "kill-after-ack" makes the process
# SIGKILL itself after JetStream acknowledged a batch and before the cursor commit
FAULT_ENV = "PROPBOT_RELAY_FAULT"
# Rows encoded, and publishes queued, before the loop gets its turn: the first rows of a large batch go
# out while the rest are still being queued, and nothing else on the loop waits for a whole batch
_FLUSH_EVERY = 64


STARTING, ACTIVE, STANDBY = "STARTING", "ACTIVE", "STANDBY"


class RowTooLarge(Exception):
    """A journal row does not fit the broker's max_payload: it cannot be published, nor (the relay never
    skips a seq) anything after it, until the broker's limit is raised."""


def _wire_size(m: OutboxMessage, stream: str) -> int:
    """What the broker counts against max_payload: the payload and the header block as nats-py writes it
    (NATS/1.0 line, each `key: value` line, the blank line), with the Nats-Expected-Stream header that
    publish_async(stream=...) adds."""
    headers = {**m.headers, "Nats-Expected-Stream": stream}
    return len(m.data) + 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


class RelayLockLost(Exception):
    """The source's lock is gone (its database session ended, or its lock file was replaced)."""


async def _answer(request: Awaitable[T]) -> T:
    """A JetStream API request that a stop can cancel: nats-py waits for the answer with Python 3.11's
    wait_for, which swallows a cancellation that meets the answer, and the relay would then carry on
    publishing after stop() (which waits for it for good)."""
    try:
        return await request
    finally:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


def _describe(holder: LockHolder | None) -> str:
    if holder is None:
        return "holder unknown"
    return f"relay {holder.relay_id or '?'}, pid {holder.pid or '?'}, since {holder.since or '?'}"


@dataclass(frozen=True)
class RelayConfig:
    db_url: str
    nats_url: str
    source: str
    stream: str = DEFAULT_STREAM
    batch: int = 512
    ack_timeout_s: float = 10.0
    # The fallback read while a wake-up source (PostgreSQL LISTEN, SQLite's commit watch) is up; while
    # it is down (failed, restarting) the relay reads every unwatched_poll_s instead
    poll_s: float = 1.0
    unwatched_poll_s: float = 0.05
    # SQLite: how often the commit watch checks PRAGMA data_version (a few microseconds each), while
    # the journal changed in the last second, and after a second without a change
    commit_check_s: float = 0.002
    idle_commit_check_s: float = 0.025
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    min_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    head_every_s: float = 1.0
    cursor_every_s: float = 0.2
    standby_poll_s: float = 0.5  # a standby tries the source's lock this often
    lock_check_s: float = 0.5  # the holder checks it still holds it this often
    # Rows waiting longer than this turn the status WARN: the relay is up but not moving (a seq that a
    # writer outside the engine's lock never committed, which the relay never skips, or a broker that
    # takes but never acknowledges), which a lag count alone would leave for someone to notice
    stuck_warn_s: float = 30.0

    def __post_init__(self) -> None:
        check_source(self.source)
        if self.batch < 1:
            raise ValueError("batch must be at least 1")

    @property
    def max_in_flight(self) -> int:
        """Unacknowledged publishes at most: two batches (nats-py itself allows 4,000)."""
        return min(2 * self.batch, 4000)


@dataclass(slots=True)
class _InFlight:
    seq: int
    ack: asyncio.Future[Any]
    deadline: float  # loop time by which JetStream must have acknowledged it
    hash: str
    checked: bool = False  # a duplicate ack: the stored message was checked to be this row


class OutboxRelay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.journal = OutboxSource(config.db_url)  # head, cursor, hash checks (on worker threads)
        self.rows = open_row_reader(config.db_url, config.ack_timeout_s)  # new rows, on the loop
        lo, hi = config.min_backoff_s, config.max_backoff_s
        self.supervisor = Supervisor(min_backoff_s=lo, max_backoff_s=hi)  # the lock
        # publish, head, listen: while the lock is held
        self._publishing = Supervisor(min_backoff_s=lo, max_backoff_s=hi)
        # At most 55 characters, as an engine id: a PostgreSQL lock names its holder to a standby through
        # application_name ('propbot:' + id), of which the server keeps 63 bytes
        self.relay_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.role = STARTING
        self.lock_holder: LockHolder | None = None  # the other relay, while this one is a standby
        self.cursor = 0  # the last seq JetStream acknowledged
        self._moved_at = time.monotonic()  # when the cursor last moved (or an episode set it)
        self.durable_cursor = 0  # the last seq committed to relay_cursor
        self._persisted_at = 0.0
        self._saving: asyncio.Future[None] | None = None
        self._in_flight: collections.deque[_InFlight] = collections.deque()
        self._published_to = 0  # the last seq handed to publish_async in this episode
        self._max_payload = 0  # the broker's, as the connection announced it (0: not known)
        self._too_large: str | None = None  # why the next row cannot be published
        self._broker_error: Exception | None = None  # the broker refused a publish (limits, ...)
        self.published = 0  # rows acknowledged since start (republished duplicates included)
        self.reads = 0  # journal reads (tests wait on it)
        self.connected = False
        self.listening = False  # a wake-up source is up: LISTEN (PostgreSQL) or the commit watch (SQLite)
        self.journal_last_seq = 0
        self.lag_seconds = 0.0
        self._attention = asyncio.Event()  # rows appended, an ack arrived, or the connection dropped
        self._appended = True  # a wake-up came since the last read began (a read is due)
        self._fault = os.environ.get(FAULT_ENV, "")
        self.refused: str | None = None  # why this relay will not publish (its source names another chain)
        self.refusal = asyncio.Event()

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the source's lock (as a standby while another relay holds it), then publish. Every
        component runs under a supervisor and restarts with backoff on failure."""
        self.supervisor.start("lock", self._hold_lock)

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self._publishing.stop()
        with contextlib.suppress(Exception):
            await self._persist(force=True)
        await self.rows.close()
        await asyncio.to_thread(self.journal.close)

    async def _hold_lock(self) -> None:
        """Standby until this relay holds the source's lock, then run the publishing components for as
        long as it holds it. Losing it (PostgreSQL: the lock's session ended) stops them and fails this
        component: the supervisor shows ERROR and tries again with backoff, as a standby."""
        lock = open_relay_lock(self.config.db_url, self.config.source, self.relay_id)
        try:
            while not await asyncio.to_thread(lock.try_acquire):
                if self.role != STANDBY or self.lock_holder != lock.holder:
                    log.warning(
                        "relay %s: standby, another relay holds the source's lock (%s); trying every %.1fs",
                        self.config.source, _describe(lock.holder), self.config.standby_poll_s,
                    )  # fmt: skip
                self.role, self.lock_holder = STANDBY, lock.holder
                await asyncio.sleep(self.config.standby_poll_s)
            self.role, self.lock_holder = ACTIVE, None
            log.info("relay %s: holds the source's lock (%s)", self.config.source, self.relay_id)
            self._publishing.start("publish", self._episode)
            self._publishing.start("head", self._watch_head)
            self._publishing.start("listen", self._listen)
            while True:
                await asyncio.sleep(self.config.lock_check_s)
                if not await asyncio.to_thread(lock.check):
                    raise RelayLockLost(
                        f"relay {self.config.source}: lost the source's lock; publishing stopped"
                    )
        finally:
            await self._publishing.stop()  # the episode commits the acknowledged cursor as it ends
            if self.role == ACTIVE:
                self.role = STANDBY
            await asyncio.to_thread(lock.close)

    async def _listen(self) -> None:
        if self.journal.sqlite:
            await watch_sqlite_commits(
                self.config.db_url, self.wake, self._set_listening, self.config.commit_check_s,
                self.config.idle_commit_check_s,
            )  # fmt: skip
        else:
            await listen_for_appends(self.config.db_url, self.wake, self._set_listening)

    def wake(self) -> None:
        """New rows may have been committed: read."""
        self._appended = True
        self._attention.set()

    def _set_listening(self, on: bool) -> None:
        self.listening = on

    async def _watch_head(self) -> None:
        while True:
            self.journal_last_seq, self.lag_seconds = await asyncio.to_thread(self.journal.head, self.cursor)
            await asyncio.sleep(self.config.head_every_s)

    async def _episode(self) -> None:
        self._broker_error = None
        nc = await connect(self.config.nats_url, f"propbot-relay-{self.config.source}", self._on_broker_error)
        try:
            self.connected = True
            js = nc.jetstream(timeout=self.config.ack_timeout_s)
            await _answer(ensure_stream(js, self.config.stream, self.config.duplicate_window_s))
            try:
                streamed = await self._check_stream(js)
                self.durable_cursor = await asyncio.to_thread(self.journal.load_cursor, self.config.source)
                self.cursor = self._published_to = await self._start_after(js, streamed, self.durable_cursor)
                self._moved_at = time.monotonic()
                log.info(
                    "relay %s: publishing after seq %d to %s", self.config.source, self.cursor,
                    self.config.stream,
                )  # fmt: skip
                self._max_payload, self._too_large = int(nc.max_payload or 0), None
                await self._publish_forever(nc, js)
            except SourceMismatch as exc:
                # Not retried: the same answer would come back; the publish component stays ERROR
                self.refused = str(exc)
                self.refusal.set()
                log.error("relay %s refuses to publish: %s", self.config.source, exc)
                return
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                self._settle(asyncio.get_running_loop().time())  # acks that came after the last look
            for sent in self._in_flight:
                sent.ack.cancel()  # unacknowledged: the next episode republishes them from the cursor
            self._in_flight.clear()
            with contextlib.suppress(Exception):
                await self._persist(force=True)
            await close_quietly(nc)

    async def _start_after(self, js: JetStreamContext, streamed: int | None, cursor: int) -> int:
        """Where this episode publishes from: what the stream holds of this source, not the cursor alone.
        The cursor says what a stream acknowledged once; a stream deleted and created again, a new
        stream name or broker, or a broker that lost its tail no longer holds those rows, and publishing
        after the cursor would leave the stream a hole for good while the relay reports lag 0. Rows the
        stream removed by its own limits (purge, max_age, max_msgs) are not put back: it keeps fewer
        messages than it ever stored then, and consumers see the hole (docs/scale-out.md)."""
        if streamed is not None:
            return min(cursor, streamed)  # its last row of this source, checked to be ours
        if cursor == 0:
            return 0
        state = (await _answer(js.stream_info(self.config.stream))).state
        if state.messages == state.last_seq:  # it never removed a message: it never had our rows
            log.warning(
                "relay %s: stream %s holds no row of this source although seq %d was acknowledged "
                "(stream created again?): publishing the journal from seq 1",
                self.config.source, self.config.stream, cursor,
            )  # fmt: skip
            return 0
        return cursor

    async def _check_stream(self, js: JetStreamContext) -> int | None:
        """The stream's last row of this source must be this journal's row at that seq; returns that
        seq (None when the stream holds no row of this source).

        Raises:
            SourceMismatch: it is another chain's (or this journal no longer has that seq): publishing
                would have the broker drop our rows as duplicates of theirs while the lag reads 0."""
        try:
            last = await _answer(js.get_last_msg(self.config.stream, source_subjects(self.config.source)))
        except NotFoundError:
            return None  # nothing of this source in the stream
        headers = last.headers or {}
        seq, theirs = int(headers.get(HDR_SEQ, "0")), headers.get(HDR_HASH)
        ours = await asyncio.to_thread(self.journal.hash_at, seq)
        if ours is None or ours != theirs:
            raise SourceMismatch(
                f"stream {self.config.stream} already holds source {self.config.source!r} up to seq {seq} "
                f"with hash {theirs}, but this journal's row {seq} is "
                f"{'absent' if ours is None else 'hash ' + ours}: another journal is relayed under this "
                "source name; give this journal its own (`--source`, or `source:` in the relay section)"
            )
        return seq

    async def _publish_forever(self, nc: Client, js: JetStreamContext) -> None:
        """Read new rows as soon as they are committed and publish them without waiting for the acks
        of earlier ones (up to max_in_flight unacknowledged); the cursor follows the acks in order.

        Raises:
            Exception: the connection dropped, a publish failed, or an ack is late (the acknowledged
                prefix is committed by the episode's end)."""
        loop = asyncio.get_running_loop()
        more = True  # the last read may not have seen everything: read again without waiting
        while True:
            if not nc.is_connected:
                raise ConnectionError("NATS connection lost")
            self._attention.clear()  # from here on, a wake-up is for rows the next read may not see
            free = len(self._in_flight) < self.config.max_in_flight
            if (more or self._appended) and free and self._too_large is None:
                self._appended = False
                more = await self.publish_next(js) == self.config.batch
            self._settle(loop.time())
            if await self._check_duplicates(js):
                self._settle(loop.time())
            if self._broker_error is not None:
                # A publish the broker refused is never acknowledged: end the episode now, with the
                # broker's reason, rather than at its ack deadline as "not acknowledged in time"
                raise self._broker_error
            if self._too_large is not None and not self._in_flight:
                raise RowTooLarge(self._too_large)  # once the rows before it are acknowledged
            await self._persist(force=False)
            if more and len(self._in_flight) < self.config.max_in_flight:
                continue
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
                # that meets a completed wait, and a relay asked to stop then waits on forever
                async with asyncio.timeout(self._wait_s(loop.time())):
                    await self._attention.wait()
                    continue
            more = True  # waited the whole poll interval: read anyway (a lost wake-up costs this much)

    def _wait_s(self, now: float) -> float:
        """How long to wait for attention: the poll interval, or less when an ack deadline or a cursor
        commit falls due earlier."""
        wait = self.config.poll_s if self.listening else self.config.unwatched_poll_s
        if self._in_flight:
            wait = min(wait, max(0.0, self._in_flight[0].deadline - now))
        if self.cursor > self.durable_cursor and self._saving is None:
            due = self._persisted_at + self.config.cursor_every_s - time.monotonic()
            wait = min(wait, max(0.001, due))
        return wait

    async def _read(self, after: int) -> list[OutboxMessage]:
        """The next batch after `after`, encoded: in slices with the loop let in between, so a large
        batch never holds the event loop (inside the API process: the engine's) for long."""
        rows = await self.rows.rows_after(after, self.config.batch)
        self.reads += 1
        messages: list[OutboxMessage] = []
        for start in range(0, len(rows), _FLUSH_EVERY):
            if start:
                await asyncio.sleep(0)
            messages += [encode_row(self.config.source, row) for row in rows[start : start + _FLUSH_EVERY]]
        return messages

    async def publish_next(self, js: JetStreamContext) -> int:
        """Read the rows after the last one published and publish them (async acks); returns how many."""
        messages = await self._read(self._published_to)
        if not messages:
            return 0
        deadline = asyncio.get_running_loop().time() + self.config.ack_timeout_s
        stream = self.config.stream
        for i, m in enumerate(messages, 1):
            size = _wire_size(m, stream)
            if self._max_payload and size > self._max_payload:
                # nats-py checks the payload alone; the broker counts the headers too and drops the
                # connection on a violation: refuse here, saying which row and why
                self._too_large = (
                    f"journal row seq {m.seq} is {size} bytes as a message, over the broker's max_payload "
                    f"{self._max_payload}: nothing from it on is published until max_payload is raised"
                )
                return i - 1
            ack = await js.publish_async(m.subject, m.data, headers=m.headers, stream=stream)
            ack.add_done_callback(self._on_ack)
            self._in_flight.append(_InFlight(m.seq, ack, deadline, m.headers[HDR_HASH]))
            self._published_to = m.seq
            if i % _FLUSH_EVERY == 0:
                await asyncio.sleep(0)  # nats-py writes only when the loop runs its flusher: let it
        return len(messages)

    def _on_broker_error(self, exc: Exception) -> None:
        if isinstance(exc, APIError):  # an error answer to a publish (see adapters.nats.stream.connect)
            self._broker_error = self._broker_error or exc
            self._attention.set()

    def _on_ack(self, _ack: asyncio.Future[Any]) -> None:
        self._attention.set()

    def _settle(self, now: float) -> None:
        """Move the cursor over the acknowledged prefix of what is in flight, in seq order.

        Raises:
            Exception: the oldest publish failed, or was not acknowledged by its deadline."""
        acked = self.cursor
        try:
            while self._in_flight:
                oldest = self._in_flight[0]
                if not oldest.ack.done():
                    if now >= oldest.deadline:
                        raise TimeoutError(f"JetStream did not acknowledge seq {oldest.seq} in time")
                    break
                if getattr(oldest.ack.result(), "duplicate", False) and not oldest.checked:
                    break  # _check_duplicates first: is the message the broker kept this row?
                self._in_flight.popleft()
                acked = oldest.seq
        finally:
            if acked > self.cursor:
                self.published += acked - self.cursor
                self.cursor = acked
                self._moved_at = time.monotonic()

    async def _check_duplicates(self, js: JetStreamContext) -> bool:
        """The acknowledged publishes at the head of what is in flight that the broker dropped as
        duplicates (`Nats-Msg-Id` seen in its window): the message it kept under that id must be this
        row. A repeat after a restart is; another journal relayed under the same source name (both
        relays started on a stream holding nothing of the source, so neither start-up check saw the
        other) is not, and its acks would move our cursor over rows the stream never got. True when
        any was checked.

        Raises:
            SourceMismatch: the stream holds another chain's row at one of those seqs."""
        checked = False
        for sent in self._in_flight:
            if not sent.ack.done() or sent.ack.cancelled() or sent.ack.exception() is not None:
                break
            ack = sent.ack.result()
            if sent.checked or not getattr(ack, "duplicate", False):
                continue
            try:
                stored = await _answer(js.get_msg(self.config.stream, int(ack.seq)))
            except NotFoundError:  # removed since (limits, purge): nothing left to compare with
                sent.checked = checked = True
                continue
            theirs = (stored.headers or {}).get(HDR_HASH)
            if theirs != sent.hash:
                raise SourceMismatch(
                    f"stream {self.config.stream} already holds source {self.config.source!r} seq "
                    f"{sent.seq} with hash {theirs}, but this journal's row {sent.seq} is hash {sent.hash}: "
                    "another journal is relayed under this source name; give this journal its own "
                    "(`--source`, or `source:` in the relay section)"
                )
            sent.checked = checked = True
        return checked

    async def _persist(self, *, force: bool) -> None:
        """Commit the acknowledged position at most every cursor_every_s, in the background (on SQLite
        the commit waits for the one write lock, which the engine's appends keep busy: publishing must
        not wait for it); with `force` (failing, stopping) at once and awaited. A cursor behind the acks
        only means republishing on restart."""
        if self._saving is not None:
            if not force:
                return
            await self._saving
        if self.cursor <= self.durable_cursor:
            return
        if not force and time.monotonic() - self._persisted_at < self.config.cursor_every_s:
            return
        self._saving = asyncio.ensure_future(self._save(self.cursor))
        if force:
            await self._saving

    async def _save(self, cursor: int) -> None:
        try:
            if self._fault == "kill-after-ack":
                os.kill(os.getpid(), signal.SIGKILL)
            await asyncio.to_thread(self.journal.save_cursor, self.config.source, cursor)
            self.durable_cursor = max(self.durable_cursor, cursor)
            self._persisted_at = time.monotonic()
        finally:
            self._saving = None
            self._attention.set()  # a cursor commit may be due again

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        components = {**self.supervisor.status(), **self._publishing.status()}
        level = "ERROR" if any(c["status"] == "ERROR" for c in components.values()) else "OK"
        lag_rows = max(0, self.journal_last_seq - self.cursor) if self.role == ACTIVE else 0
        # Stuck is old rows waiting *and* a cursor that has not moved for as long: a relay catching up
        # a backlog of old rows (a fresh stream, after an outage) is moving, not stuck
        warn_s = self.config.stuck_warn_s
        stuck = bool(lag_rows) and self.lag_seconds > warn_s and time.monotonic() - self._moved_at > warn_s
        if level == "OK" and stuck:
            level = "WARN"
        return {
            "status": "ERROR" if self.refused else level,
            "stuck_at_seq": self.cursor + 1 if stuck else None,
            "refused": self.refused,
            "source": self.config.source,
            "stream": self.config.stream,
            "role": self.role,
            "relay_id": self.relay_id,
            "lock_holder": self.lock_holder.as_dict() if self.lock_holder else None,
            "connected": self.connected,
            "listening": self.listening,
            "cursor": self.cursor,
            "durable_cursor": self.durable_cursor,
            "journal_last_seq": self.journal_last_seq,
            "lag_rows": lag_rows,
            "lag_seconds": round(self.lag_seconds, 3) if lag_rows else 0.0,
            "published_total": self.published,
            "components": components,
        }

    def metrics(self) -> str:
        return relay_metrics(self.status())
