"""The relay's cursor is what some stream acknowledged once, not what the stream in front of it holds: a
stream deleted (and created again) under a running relay, or a relay pointed at a new broker with the
same journal, must get the journal from seq 1, not the rows after the cursor with a hole before them
for good (every consumer and the mirror stop at OutboxGap while the relay reports lag 0). A stream that
removed rows by its own limits (purge) keeps its documented hole: the relay does not put them back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.outbox import OutboxGap
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import broker, consume_all
from tests.outbox.test_relay import fill, relay_until

pytestmark = pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)


async def test_a_stream_deleted_under_a_running_relay_gets_the_whole_journal(
    journal_url: str, journal: SqlJournal, source: str, tmp_path: Path
) -> None:
    with broker(tmp_path / "nats") as b:
        fill(journal, 30)
        relay = OutboxRelay(RelayConfig(journal_url, b.url, source, min_backoff_s=0.05, ack_timeout_s=2))
        relay.start()
        try:
            while relay.cursor < 30:
                await asyncio.sleep(0.02)
            nc = await nats.connect(b.url)
            await nc.jetstream().delete_stream("PROPBOT")
            await nc.close()
            fill(journal, 10, "p")
            async with asyncio.timeout(60):
                while relay.cursor < 40 or relay.durable_cursor < 40:
                    await asyncio.sleep(0.02)
        finally:
            await relay.stop()
        rows, delivered = await consume_all(b.url, "PROPBOT", source)
        assert [r.seq for r in rows] == list(range(1, 41))
        assert delivered == 40


async def test_a_relay_moved_to_a_new_broker_publishes_from_seq_1(
    journal_url: str, journal: SqlJournal, source: str, tmp_path: Path
) -> None:
    fill(journal, 30)
    with broker(tmp_path / "old") as old:
        await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(journal_url, old.url, source)), 30), 60)
    fill(journal, 5, "p")
    with broker(tmp_path / "new") as new:
        await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(journal_url, new.url, source)), 35), 60)
        rows, _ = await consume_all(new.url, "PROPBOT", source)
        assert [r.seq for r in rows] == list(range(1, 36))


async def test_a_purged_stream_keeps_its_hole(
    journal_url: str, journal: SqlJournal, source: str, tmp_path: Path
) -> None:
    with broker(tmp_path / "nats") as b:
        fill(journal, 30)
        await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(journal_url, b.url, source)), 30), 60)
        nc = await nats.connect(b.url)
        await nc.jetstream().purge_stream("PROPBOT")
        await nc.close()
        fill(journal, 5, "p")
        relay = OutboxRelay(RelayConfig(journal_url, b.url, source))
        await asyncio.wait_for(relay_until(relay, 35), 60)
        assert relay.published == 5  # after its cursor, as documented for a purge
        with pytest.raises(OutboxGap, match="seq 31 arrived after 0"):
            await consume_all(b.url, "PROPBOT", source)
