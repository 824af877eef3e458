"""The journal outbox relay: journal rows after a durable cursor → JetStream, in seq order, at least once.

A loop, one NATS connection per episode (adapters.nats.stream.connect):
1. read the contiguous run of rows after the cursor (engine.persistence.outbox_source);
2. publish them all with async acks (pipelined: N in flight), then await the acks in order;
3. move the cursor to the end of the acknowledged prefix (committed to relay_cursor at most every
   cursor_every_s while busy, at once when idle or failing), reading the next batch meanwhile.
Any failure (broker gone, ack timeout, database error) ends the episode after the acknowledged prefix is
committed; the supervisor logs it, shows ERROR in the status and starts a new episode with backoff,
which republishes from the cursor (the broker's duplicate window or the consumer's SeqGate absorbs the
repeat). It wakes on PostgreSQL NOTIFY or a short poll (SQLite: poll only). The engine never waits for
it: it only reads the journal, and writes its own cursor row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from adapters.nats.stream import (
    DEFAULT_DUPLICATE_WINDOW_S,
    DEFAULT_STREAM,
    close_quietly,
    connect,
    ensure_stream,
)
from engine.outbox import OutboxMessage, check_source, encode_row, relay_metrics
from engine.persistence.journal_wakeup import listen_for_appends
from engine.persistence.outbox_source import OutboxSource
from engine.supervisor import Supervisor

log = logging.getLogger(__name__)

# Test-only fault injection (tests/outbox/test_relay_crash.py): "kill-after-ack" makes the process
# SIGKILL itself after JetStream acknowledged a batch and before the cursor commit
FAULT_ENV = "PROPBOT_RELAY_FAULT"


@dataclass(frozen=True)
class RelayConfig:
    db_url: str
    nats_url: str
    source: str
    stream: str = DEFAULT_STREAM
    batch: int = 512
    ack_timeout_s: float = 10.0
    # PostgreSQL: NOTIFY wakes the relay, the poll is the fallback; SQLite has only the poll
    poll_s: float | None = None
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    min_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    head_every_s: float = 1.0
    cursor_every_s: float = 0.2

    def __post_init__(self) -> None:
        check_source(self.source)
        if self.batch < 1:
            raise ValueError("batch must be at least 1")


class OutboxRelay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.journal = OutboxSource(config.db_url)
        self.poll_s = config.poll_s if config.poll_s is not None else (0.05 if self.journal.sqlite else 1.0)
        self.supervisor = Supervisor(min_backoff_s=config.min_backoff_s, max_backoff_s=config.max_backoff_s)
        self.cursor = 0  # the last seq JetStream acknowledged
        self.durable_cursor = 0  # the last seq committed to relay_cursor
        self._persisted_at = 0.0
        self._saving: asyncio.Future[None] | None = None
        self._prefetch: tuple[int, asyncio.Future[list[OutboxMessage]]] | None = None
        self.published = 0  # rows acknowledged since start (republished duplicates included)
        self.batches = 0
        self.reads = 0  # journal reads (tests wait on it)
        self.connected = False
        self.listening = False
        self.journal_last_seq = 0
        self.lag_seconds = 0.0
        self._wake = asyncio.Event()
        self._fault = os.environ.get(FAULT_ENV, "")

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay's components under its supervisor (each restarts with backoff on failure)."""
        self.supervisor.start("publish", self._episode)
        self.supervisor.start("head", self._watch_head)
        if not self.journal.sqlite:
            self.supervisor.start("listen", self._listen)

    async def stop(self) -> None:
        await self.supervisor.stop()
        with contextlib.suppress(Exception):
            await self._persist(force=True)
        await asyncio.to_thread(self.journal.close)

    async def _listen(self) -> None:
        await listen_for_appends(self.config.db_url, self._wake.set, self._set_listening)

    def _set_listening(self, on: bool) -> None:
        self.listening = on

    async def _watch_head(self) -> None:
        while True:
            self.journal_last_seq, self.lag_seconds = await asyncio.to_thread(self.journal.head, self.cursor)
            await asyncio.sleep(self.config.head_every_s)

    async def _episode(self) -> None:
        nc = await connect(self.config.nats_url, f"propbot-relay-{self.config.source}")
        try:
            self.connected = True
            js = nc.jetstream(timeout=self.config.ack_timeout_s)
            await ensure_stream(js, self.config.stream, self.config.duplicate_window_s)
            self.cursor = await asyncio.to_thread(self.journal.load_cursor, self.config.source)
            self.durable_cursor = self.cursor
            log.info(
                "relay %s: publishing after seq %d to %s", self.config.source, self.cursor, self.config.stream
            )
            while True:
                if not nc.is_connected:
                    raise ConnectionError("NATS connection lost")
                if await self.pump(js) == 0:
                    await self._persist(force=False)  # the last acks of a burst, in the background
                    await self._idle(nc)
        finally:
            self.connected = False
            self._drop_prefetch()
            with contextlib.suppress(Exception):
                await self._persist(force=True)
            await close_quietly(nc)

    async def _idle(self, nc: Client) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that meets a
        # completed wait, and a relay asked to stop then polls on forever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_s):
                await self._wake.wait()
        del nc

    def _read(self, after: int) -> list[OutboxMessage]:
        """The next batch after `after`, encoded (on a worker thread: the loop keeps taking acks)."""
        rows = self.journal.rows_after(after, self.config.batch)
        self.reads += 1
        return [encode_row(self.config.source, row) for row in rows]

    async def pump(self, js: JetStreamContext) -> int:
        """Publish one batch after the cursor; returns how many rows JetStream acknowledged.

        Pipelined: the batch is published whole (async acks), the next batch is read while its acks
        arrive, the cursor moves to the end of the acknowledged prefix only.

        Raises:
            Exception: a publish failed or timed out (after the acknowledged prefix was committed)."""
        self._wake.clear()  # a wake-up arriving from now on is for rows this read may not see
        prefetched, self._prefetch = self._prefetch, None
        messages = None
        if prefetched is not None:
            after, task = prefetched
            messages = await task if after == self.cursor else None
        if not messages:  # none prefetched, or an empty read from before the wake-up was cleared
            messages = await asyncio.to_thread(self._read, self.cursor)
        if not messages:
            return 0
        stream = self.config.stream
        pending = [
            await js.publish_async(m.subject, m.data, headers=m.headers, stream=stream) for m in messages
        ]
        if len(messages) == self.config.batch:  # more may be waiting: read them while the acks come
            after = messages[-1].seq
            self._prefetch = (after, asyncio.ensure_future(asyncio.to_thread(self._read, after)))
        acked = self.cursor
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                for message, ack in zip(messages, pending, strict=True):
                    await ack
                    acked = message.seq
        except BaseException:
            self._drop_prefetch()
            raise
        finally:
            for ack in pending:
                ack.cancel()  # no-op for the resolved ones
            if acked > self.cursor:
                self.published += acked - self.cursor
                self.batches += 1
                self.cursor = acked
        await self._persist(force=False)
        return len(messages)

    def _drop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch[1].cancel()
            self._prefetch = None

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

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        components = self.supervisor.status()
        level = "ERROR" if any(c["status"] == "ERROR" for c in components.values()) else "OK"
        lag_rows = max(0, self.journal_last_seq - self.cursor)
        return {
            "status": level,
            "source": self.config.source,
            "stream": self.config.stream,
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
