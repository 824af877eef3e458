"""The auditors' mirror: rebuild a journal copy in another database from the JetStream stream alone.

Each new row must chain onto the mirror's head (its prev_hash is the head's hash) and hash to its own
hash (engine.journal.row_hash, recomputed from the published text); the first row that does not is
refused and reported, and nothing after it is written. Repeats are dropped by seq (SeqGate), and a
batch is acknowledged only after it is committed, so redelivery after a crash is harmless. The mirror's
position is its own database's last seq: it needs no other state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from adapters.nats.outbox_consumer import OutboxConsumer
from adapters.nats.stream import DEFAULT_STREAM, close_quietly, connect
from engine.journal import RawRow
from engine.outbox import check_link, check_source
from engine.persistence.mirror_store import MirrorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirrorConfig:
    nats_url: str
    db_url: str
    source: str
    stream: str = DEFAULT_STREAM
    durable: str | None = None
    batch: int = 512

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


async def run_mirror(
    config: MirrorConfig,
    *,
    until_caught_up: bool = False,
    on_batch: Callable[[MirrorProgress], None] | None = None,
) -> MirrorProgress:
    """Mirror until cancelled (or, with `until_caught_up`, until the consumer has nothing pending).

    Raises:
        ChainBroken: a row does not chain (reported with its seq; nothing after it is written).
        OutboxGap: a seq is missing from the stream."""
    store = MirrorStore(config.db_url)
    nc = await connect(config.nats_url, f"propbot-mirror-{config.source}")
    progress = MirrorProgress()
    try:
        js = nc.jetstream()
        head_seq, head_hash = await asyncio.to_thread(store.head)
        progress.head_seq = head_seq
        consumer = await OutboxConsumer.open(
            js, stream=config.stream, source=config.source, durable=config.durable_name, last_seq=head_seq
        )
        while True:
            batch = await consumer.fetch(config.batch)
            if batch:
                rows: list[RawRow] = []
                try:
                    for b in batch:
                        check_link(head_hash, b.row)
                        rows.append(b.row)
                        head_hash = b.row[13]
                finally:  # the rows before a broken one are evidence too: keep them
                    await asyncio.to_thread(store.insert, rows)
                    progress.head_seq = rows[-1][0] if rows else progress.head_seq
                    progress.rows_written += len(rows)
            await consumer.ack(batch)
            if on_batch is not None:
                on_batch(progress)
            if not batch and until_caught_up and await consumer.pending() == 0:
                progress.caught_up = True
                return progress
    finally:
        await close_quietly(nc)
        await asyncio.to_thread(store.close)
