"""The relay publishes every journal row in seq order with the documented subject, id and headers, and
the consumer library hands each seq over once; the mirror rebuilds and verifies the chain."""

from __future__ import annotations

import asyncio
import json

import nats

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.journal import RAW_COLUMNS
from engine.outbox import decode_row, recompute_hash
from engine.persistence.sql_journal import SqlJournal
from tests.journal.test_sql_journal import entry
from tests.outbox.broker import Broker, consume_all, wait_for_count


def fill(journal: SqlJournal, n: int, prefix: str = "o") -> None:
    for i in range(0, n, 50):
        journal.append([entry(f"{prefix}{k}", 1) for k in range(i, min(n, i + 50))])


async def relay_until(relay: OutboxRelay, seq: int) -> None:
    relay.start()
    try:
        while relay.cursor < seq:
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()


async def test_every_row_is_published_once_in_order_with_its_hash(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    fill(journal, 1200)
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source, "PROPBOT", batch=256))
    await asyncio.wait_for(relay_until(relay, 1200), 120)
    rows, delivered = await consume_all(nats_broker.url, "PROPBOT", source)
    assert [r.seq for r in rows] == list(range(1, 1201))
    assert delivered == 1200
    stored = list(journal.scan())
    assert [r.row for r in rows] == stored  # every column exactly as the journal stores it
    assert all(recompute_hash(r.row) == r.row[13] for r in rows)


async def test_subject_message_id_and_headers(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    journal.append([entry("a.b*c", 1)])
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source, "PROPBOT"))
    await asyncio.wait_for(relay_until(relay, 1), 60)
    nc = await nats.connect(nats_broker.url)
    try:
        msg = await nc.jetstream().get_last_msg("PROPBOT", f"propbot.{source}.>")
    finally:
        await nc.close()
    assert msg.subject == f"propbot.{source}.order.a%2Eb%2Ac"
    assert msg.headers is not None
    row = decode_row(msg.data)
    assert msg.headers["Nats-Msg-Id"] == f"{source}:1"
    assert (msg.headers["Propbot-Hash"], msg.headers["Propbot-Prev-Hash"]) == (row[13], row[12])
    assert set(json.loads(msg.data)) == set(RAW_COLUMNS)


async def test_the_relay_resumes_after_its_cursor(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    fill(journal, 100)
    await asyncio.wait_for(
        relay_until(OutboxRelay(RelayConfig(journal_url, nats_broker.url, source, "PROPBOT")), 100), 60
    )
    fill(journal, 30, "p")
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source, "PROPBOT"))
    await asyncio.wait_for(relay_until(relay, 130), 60)
    assert relay.published == 30  # nothing before its cursor again
    assert await wait_for_count(nats_broker.url, "PROPBOT", source, 130) == 130


async def test_lag_and_position_are_served_on_the_status_port(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    from adapters.nats.relay_status import serve_status
    from tests.outbox.broker import free_port

    fill(journal, 5)
    relay = OutboxRelay(RelayConfig(journal_url, nats_broker.url, source))
    port = free_port()
    runner = await serve_status(relay, port)
    relay.start()
    try:
        while relay.cursor < 5 or relay.journal_last_seq < 5:
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        status = relay.status()
    finally:
        await relay.stop()
        await runner.cleanup()
    assert f'propbot_relay_cursor{{source="{source}"}} 5' in text
    assert f'propbot_relay_lag_rows{{source="{source}"}} 0' in text
    assert (status["status"], status["cursor"], status["lag_rows"]) == ("OK", 5, 0)
