"""Consuming the journal outbox: one source's rows from JetStream, in seq order, each seq once.

    consumer = await OutboxConsumer.open(js, source="acct1", durable="risk", last_seq=my_persisted_seq)
    while True:
        batch = await consumer.fetch()
        with my_db.transaction():        # apply the rows and store batch[-1].seq in ONE transaction
            ...
        await consumer.ack(batch)        # after the commit: a crash before it only causes duplicates

The contract (docs/scale-out.md): rows of one source arrive in seq order; a row may arrive more than
once (the relay is at-least-once; the broker drops repeats only within its duplicate window); a row
never arrives before its predecessor. SeqGate drops repeats by (source, seq) and raises OutboxGap on a
hole (history missing from the stream: purged, or a limit reached). The consumer must persist its last
seq with its effects; the broker-side durable only saves re-reading.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from engine.journal import RawRow
from engine.outbox import HDR_HASH, HDR_SEQ, OutboxError, SeqGate, decode_row, source_subjects

# Long: a batch held longer than this is redelivered, which would look like a hole to the gate
_ACK_WAIT_S = 300.0


async def _journal_seq_at(js: JetStreamContext, stream: str, stream_seq: int) -> int:
    """The journal seq of the stream's message `stream_seq`; a huge number when it is gone or carries
    none (retention removed it: nothing says where the caller stands, so read from the start)."""
    try:
        msg = await js.get_msg(stream, stream_seq)
    except NotFoundError:
        return 2**63
    value = (msg.headers or {}).get(HDR_SEQ, "")
    return int(value) if value.isdigit() else 2**63


@dataclass(frozen=True, slots=True)
class OutboxRow:
    source: str
    seq: int
    row: RawRow
    stream_seq: int


class OutboxConsumer:
    def __init__(self, js: JetStreamContext, stream: str, source: str, durable: str, gate: SeqGate) -> None:
        self.js = js
        self.stream = stream
        self.source = source
        self.durable = durable
        self.gate = gate
        self._sub: JetStreamContext.PullSubscription | None = None
        self._unacked: list[Msg] = []
        self.delivered = 0  # messages received, repeats included
        # (seq, hash) of the repeats the last fetch dropped: a consumer that keeps the rows (the mirror)
        # can check they are the rows it has
        self.repeats: list[tuple[int, str]] = []
        # A bad message (a hole, not a journal row of this source) found behind good rows of the same
        # fetch: those rows are returned first, and this is raised by the next fetch
        self._error: OutboxError | None = None

    @classmethod
    async def open(
        cls, js: JetStreamContext, *, stream: str, source: str, durable: str, last_seq: int = 0
    ) -> OutboxConsumer:
        """A pull consumer named `durable` over `source`'s subjects. It is recreated from its ack floor on
        every open, so rows left unacknowledged by a crash come again first, in order (JetStream would
        otherwise redeliver them only after the ack wait, behind newer rows)."""
        self = cls(js, stream, source, durable, SeqGate({source: last_seq}))
        start = 0
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(stream, durable)
            if info.ack_floor is not None and info.ack_floor.stream_seq:
                floor = info.ack_floor.stream_seq
                # Only when the caller has what the durable acknowledged: a consumer whose database is
                # behind it (restored, replaced, a mirror on a fresh database) must read from the start,
                # or it skips those rows and reports itself caught up
                if await _journal_seq_at(js, stream, floor) <= last_seq:
                    start = floor + 1
            await js.delete_consumer(stream, durable)
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=source_subjects(source),
            ack_policy=AckPolicy.ALL,  # one ack for a whole batch
            ack_wait=_ACK_WAIT_S,
            max_ack_pending=-1,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            opt_start_seq=start or None,
        )
        await js.add_consumer(stream, config)
        self._sub = await js.pull_subscribe_bind(durable, stream=stream)
        return self

    async def fetch(self, batch: int = 512, timeout: float = 1.0) -> list[OutboxRow]:
        """The next new rows (possibly none after `timeout`), repeats dropped. Call ack() after using them.
        The rows before a bad message are returned (and count as delivered) before the error is raised,
        by this fetch when there are none, else by the next one; the bad message is never acknowledged.

        Raises:
            OutboxGap: a seq is missing. OutboxError: a message is not a journal row of this source."""
        assert self._sub is not None
        if self._error is not None:
            raise self._error
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing came
            return []
        out: list[OutboxRow] = []
        self.repeats = []
        for msg in msgs:
            try:
                row = decode_row(msg.data)
                if (msg.headers or {}).get(HDR_HASH) != row[13]:
                    raise OutboxError(f"seq {row[0]}: header hash differs from the row's hash")
                new = self.gate.admit(self.source, row[0])
            except OutboxError as exc:
                if not out:
                    raise
                self._error = exc
                break
            self._unacked.append(msg)
            self.delivered += 1
            if new:
                out.append(OutboxRow(self.source, row[0], row, msg.metadata.sequence.stream))
            else:
                self.repeats.append((row[0], row[13]))
        return out

    async def ack(self, rows: Sequence[OutboxRow] = ()) -> None:
        """Acknowledge everything fetched so far (the rows given and the repeats dropped with them)."""
        del rows
        msgs, self._unacked = self._unacked, []
        if msgs:
            await msgs[-1].ack()  # AckPolicy.ALL: acks every earlier one

    async def pending(self) -> int:
        """Messages the broker still has for this consumer (not delivered, or delivered and not acked)."""
        info = await self.js.consumer_info(self.stream, self.durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
