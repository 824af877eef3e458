"""The auditors' mirror: rebuild a journal copy in another database from the JetStream stream alone.

Each new row must chain onto the mirror's head (its prev_hash is the head's hash) and hash to its own
hash (engine.journal.row_hash, recomputed from the published text); the first row that does not is
refused and reported, and nothing after it is written. Repeats are dropped by seq (SeqGate), and a
batch is acknowledged only after it is committed, so redelivery after a crash is harmless. The mirror's
position is its own database's last seq: it needs no other state.

A broker (or mirror database) outage is not the end: the mirror runs as one supervised component whose
episode is one NATS connection; a lost connection or a failed read ends the episode, the supervisor logs
it, shows ERROR and starts a new one with backoff, which resumes after the database's last seq. Only
what the evidence itself says ends the mirror: a row that does not chain, a hole in the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.nats.outbox_consumer import OutboxConsumer
from adapters.nats.stream import DEFAULT_STREAM, close_quietly, connect
from engine.journal import RawRow
from engine.outbox import ChainBroken, OutboxError, check_link, check_source, mirror_metrics
from engine.persistence.mirror_store import MirrorStore
from engine.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirrorConfig:
    nats_url: str
    db_url: str
    source: str
    stream: str = DEFAULT_STREAM
    durable: str | None = None
    schema: str | None = None  # PostgreSQL: the mirror database's schema to create first (an account's)
    batch: int = 512
    min_backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        check_source(self.source)

    @property
    def durable_name(self) -> str:
        return self.durable or f"mirror-{self.source}"


@dataclass
class MirrorProgress:
    head_seq: int = 0
    rows_written: int = 0
    caught_up: bool = False


class Mirror:
    """The mirror as a long-running service: start(), then wait for `done` (a refused row, or caught up
    with `until_caught_up`), or stop()."""

    def __init__(
        self, config: MirrorConfig, *, until_caught_up: bool = False,
        on_batch: Callable[[MirrorProgress], None] | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.until_caught_up = until_caught_up
        self.on_batch = on_batch
        self.supervisor = Supervisor(min_backoff_s=config.min_backoff_s, max_backoff_s=config.max_backoff_s)
        self.progress = MirrorProgress()
        self.connected = False
        self.pending: int | None = None  # messages the broker still holds for the mirror, last looked at
        self.episodes = 0
        self.failure: OutboxError | None = None  # what the stream holds that the mirror refuses
        self.done = asyncio.Event()
        self._store: MirrorStore | None = None

    def start(self) -> None:
        self.supervisor.start("mirror", self._episode)

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

    async def _episode(self) -> None:
        """One connection: resume after the mirror database's last seq, mirror until it fails.

        Raises:
            Exception: the connection or the database failed (the supervisor retries with backoff)."""
        if self._store is None:
            # creates the account's schema if needed, then migrates
            self._store = await asyncio.to_thread(MirrorStore, self.config.db_url, self.config.schema)
        store = self._store
        nc = await connect(self.config.nats_url, f"propbot-mirror-{self.config.source}")
        try:
            self.connected = True
            self.episodes += 1
            head_seq, head_hash = await asyncio.to_thread(store.head)
            self.progress.head_seq = head_seq
            log.info("mirror %s: resuming after seq %d", self.config.source, head_seq)
            consumer = await OutboxConsumer.open(
                nc.jetstream(), stream=self.config.stream, source=self.config.source,
                durable=self.config.durable_name, last_seq=head_seq,
            )  # fmt: skip
            while True:
                if not nc.is_connected:
                    raise ConnectionError("NATS connection lost")
                try:
                    head_hash = await self._mirror_batch(consumer, store, head_hash)
                except OutboxError as exc:  # the evidence says no: retrying cannot change that
                    self.failure = exc
                    log.error("mirror %s refuses the stream: %s", self.config.source, exc)
                    self.done.set()
                    return
                if self.progress.caught_up and self.until_caught_up:
                    self.done.set()
                    return
        finally:
            self.connected = False
            await close_quietly(nc)

    async def _mirror_batch(self, consumer: OutboxConsumer, store: MirrorStore, head_hash: str) -> str:
        """Fetch, check, insert and acknowledge one batch; returns the new head's hash.

        Raises:
            ChainBroken: a row does not chain (the rows before it are inserted first).
            OutboxGap: a seq is missing from the stream."""
        batch = await consumer.fetch(self.config.batch)
        if consumer.repeats:
            # Rows the mirror already has, delivered again: they must be the rows it has, or its
            # database holds another chain (pointed at another account's copy) or the stream another
            # row under that seq; dropped unread, either would leave the mirror saying OK
            held = await asyncio.to_thread(store.hashes, [seq for seq, _ in consumer.repeats])
            for seq, digest in consumer.repeats:
                if held.get(seq, digest) != digest:
                    raise ChainBroken(
                        f"seq {seq}: the stream's row has hash {digest}, the mirror's database holds "
                        f"hash {held[seq]} at that seq (another chain)"
                    )
        if batch:
            rows: list[RawRow] = []
            try:
                for b in batch:
                    check_link(head_hash, b.row)
                    rows.append(b.row)
                    head_hash = b.row[13]
            finally:  # the rows before a broken one are evidence too: keep them
                await asyncio.to_thread(store.insert, rows)
                self.progress.head_seq = rows[-1][0] if rows else self.progress.head_seq
                self.progress.rows_written += len(rows)
        await consumer.ack(batch)
        if self.on_batch is not None:
            self.on_batch(self.progress)
        if not batch:
            self.pending = await consumer.pending()
            self.progress.caught_up = self.pending == 0
        else:
            self.progress.caught_up = False
        return head_hash

    def status(self) -> dict[str, Any]:
        components = self.supervisor.status()
        level = "ERROR" if self.failure or any(c["status"] == "ERROR" for c in components.values()) else "OK"
        return {
            "status": level,
            "source": self.config.source,
            "stream": self.config.stream,
            "durable": self.config.durable_name,
            "connected": self.connected,
            "head_seq": self.progress.head_seq,
            "rows_written": self.progress.rows_written,
            "pending": self.pending,
            "caught_up": self.progress.caught_up,
            "refused": str(self.failure) if self.failure else None,
            "episodes": self.episodes,
            "components": components,
        }

    def metrics(self) -> str:
        return mirror_metrics(self.status())


async def run_mirror(
    config: MirrorConfig,
    *,
    until_caught_up: bool = False,
    on_batch: Callable[[MirrorProgress], None] | None = None,
) -> MirrorProgress:
    """Mirror until cancelled (or, with `until_caught_up`, until the consumer has nothing pending); a
    broker or database outage is retried with backoff.

    Raises:
        ChainBroken: a row does not chain (reported with its seq; nothing after it is written).
        OutboxGap: a seq is missing from the stream."""
    mirror = Mirror(config, until_caught_up=until_caught_up, on_batch=on_batch)
    mirror.start()
    try:
        await mirror.done.wait()
    finally:
        await mirror.stop()
    if mirror.failure is not None:
        raise mirror.failure
    return mirror.progress
