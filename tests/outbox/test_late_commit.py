"""A PostgreSQL writer whose transaction commits late is never skipped by the relay.

The failure this guards against skipped committed events in a well-known event store: seqs taken from
a sequence commit out of order, a reader sees N+1 before N and moves its position past N forever. Here
(1) the journal's advisory lock is shown to make a second writer wait for the held one, so N+1 cannot
commit before N; and (2) with the lock bypassed on purpose (raw INSERTs, N+1 committed first), the relay
stops at the hole and publishes N and N+1 in order once N commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, create_engine, text

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.journal import RAW_COLUMNS, SCHEMA_VERSION, JournalQuery
from engine.outbox import recompute_hash
from engine.persistence.sql_journal import SqlJournal
from tests.journal.test_sql_journal import entry
from tests.outbox.broker import Broker, consume_all
from tests.outbox.test_relay import fill

pytestmark = pytest.mark.postgres


class HeldJournal(SqlJournal):
    """Holds its transaction open after the INSERT, before the commit, until released."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.inserted = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        with super()._write_tx() as conn:
            yield conn
            self.inserted.set()
            assert self.release.wait(120)


def _pg(journal_url: str) -> None:
    if journal_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: concurrent writers and the advisory lock")


async def _until(cond: object, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_held_append_makes_the_next_writer_wait_and_nothing_is_skipped(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    _pg(journal_url)
    fill(journal, 10)
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source))
    relay.start()
    held = HeldJournal(journal_url)
    other = SqlJournal(journal_url)
    admin = create_engine(journal_url)
    try:
        await _until(lambda: relay.cursor == 10)
        first = asyncio.create_task(asyncio.to_thread(held.append, [entry("held", 1)]))
        await asyncio.to_thread(held.inserted.wait, 60)
        second = asyncio.create_task(asyncio.to_thread(other.append, [entry("after", 1)]))

        def second_waits_on_the_lock() -> bool:
            with admin.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%pg_advisory_xact_lock%'"
                )).scalar())  # fmt: skip

        await _until(second_waits_on_the_lock)
        reads = relay.reads
        relay.wake()
        await _until(lambda: relay.reads > reads)
        assert relay.cursor == 10  # nothing after 10 is committed: seq 11 is held, 12 not even assigned
        held.release.set()
        assert [r.seq for r in await first] == [11]
        assert [r.seq for r in await second] == [12]
        await _until(lambda: relay.cursor == 12)
    finally:
        held.release.set()
        await relay.stop()
        held.close()
        other.close()
        admin.dispose()
    rows, _ = await consume_all(nats_broker.url, "PROPBOT", source)
    assert [r.seq for r in rows] == list(range(1, 13))


def _next_rows(journal: SqlJournal, n: int) -> list[dict[str, object]]:
    last, prev = journal.head()
    created = journal.query(JournalQuery(after_seq=last - 1))[0].created_at
    out = []
    for seq in range(last + 1, last + n + 1):
        row = (seq, "order", f"raw{seq}", 1, "create", None, "NEW", "{}", "tester", "", SCHEMA_VERSION, created,
               prev, "", "late-writer")  # fmt: skip
        digest = recompute_hash(row)  # type: ignore[arg-type]
        out.append(dict(zip(RAW_COLUMNS, (*row[:13], digest, row[14]), strict=True)))
        prev = digest
    return out


async def test_a_later_seq_committed_first_is_not_published_before_the_hole_fills(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    _pg(journal_url)
    fill(journal, 10)
    eleven, twelve = _next_rows(journal, 2)
    insert = text(
        f"INSERT INTO journal ({', '.join(RAW_COLUMNS)}) VALUES ({', '.join(':' + c for c in RAW_COLUMNS)})"
    )
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source))
    relay.start()
    db = create_engine(journal_url)
    late = db.connect()
    try:
        await _until(lambda: relay.cursor == 10)
        tx = late.begin()
        late.execute(insert, eleven)  # seq 11: written, not committed
        with db.begin() as conn:  # seq 12 commits first (the advisory lock bypassed on purpose)
            conn.execute(insert, twelve)
        await _until(lambda: relay.journal_last_seq == 12)
        reads = relay.reads
        await _until(lambda: relay.reads >= reads + 2)
        assert relay.cursor == 10  # the relay saw 12 and waits for 11 instead of skipping it
        tx.commit()
        await _until(lambda: relay.cursor == 12)
    finally:
        late.close()
        db.dispose()
        await relay.stop()
    rows, _ = await consume_all(nats_broker.url, "PROPBOT", source)
    assert [r.seq for r in rows] == list(range(1, 13))


async def test_a_hole_that_never_fills_shows_in_the_lag_seconds(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    """A writer that bypassed the lock and rolled back seq 11 after seq 12 committed leaves a hole for
    good: the relay waits at it (it never skips a seq), and its status must say rows are waiting and
    for how long. lag_seconds used to read the age of row cursor+1 only, which does not exist: 0.0."""
    _pg(journal_url)
    fill(journal, 10)
    eleven, twelve = _next_rows(journal, 2)
    insert = text(
        f"INSERT INTO journal ({', '.join(RAW_COLUMNS)}) VALUES ({', '.join(':' + c for c in RAW_COLUMNS)})"
    )
    relay = OutboxRelay(
        RelayConfig(journal_url, nats_broker.url, source, head_every_s=0.05, stuck_warn_s=1.0)
    )
    relay.start()
    db = create_engine(journal_url)
    try:
        await _until(lambda: relay.cursor == 10)
        assert (relay.status()["status"], relay.status()["stuck_at_seq"]) == ("OK", None)
        with db.connect() as late:
            tx = late.begin()
            late.execute(insert, eleven)
            with db.begin() as conn:
                conn.execute(insert, twelve)
            tx.rollback()  # seq 11 never commits
        await _until(lambda: relay.journal_last_seq == 12 and relay.lag_seconds > 0, timeout=10)
        status = relay.status()
        assert (status["cursor"], status["lag_rows"]) == (10, 2)
        assert status["lag_seconds"] > 0
        # Up but not moving: WARN once the rows waited past stuck_warn_s, naming the seq it waits for
        await _until(lambda: relay.status()["status"] == "WARN", timeout=10)
        assert relay.status()["stuck_at_seq"] == 11
    finally:
        db.dispose()
        await relay.stop()


async def test_a_relay_catching_up_on_old_rows_is_not_stuck(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    """Stuck is a cursor that does not move while rows wait: a relay whose cursor just moved is catching
    up, however old the rows after it are (a fresh stream over a long journal, the backlog after an
    outage). It used to read WARN with a stuck_at_seq for the whole catch-up, as rows older than
    stuck_warn_s were waiting."""
    fill(journal, 10)
    relay = OutboxRelay(
        RelayConfig(journal_url, nats_broker.url, source, head_every_s=30.0, stuck_warn_s=5.0)
    )
    relay.start()
    try:
        await _until(lambda: relay.cursor == 10)
        # What the head poll reports mid catch-up: rows after the cursor, the oldest a minute old
        relay.journal_last_seq, relay.lag_seconds = 1_000, 60.0
        status = relay.status()
        assert (status["status"], status["stuck_at_seq"], status["lag_rows"]) == ("OK", None, 990)
    finally:
        await relay.stop()
