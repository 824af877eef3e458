"""Two journals relayed under one source name would share `Nats-Msg-Id`s (`<source>:<seq>`): JetStream
drops the second one's rows as duplicates while both relays report lag 0. The relay refuses instead: no
default name that journals share, and a check of the stream's last row of the source against the
journal's own row at that seq before anything is published."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import Broker, consume_all
from tests.outbox.test_relay import fill, relay_until


def _journal(tmp_path: Path, name: str, rows: int) -> str:
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    upgrade(url)
    journal = SqlJournal(url)
    fill(journal, rows, prefix=f"{name}-")
    journal.close()
    return url


async def test_a_second_journal_under_the_same_source_is_refused(
    tmp_path: Path, nats_broker: Broker, source: str
) -> None:
    first, second = _journal(tmp_path, "acct0", 20), _journal(tmp_path, "acct1", 20)
    await asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(first, nats_broker.url, source)), 20), 60)
    other = OutboxRelay(RelayConfig(second, nats_broker.url, source))
    other.start()
    try:
        await asyncio.wait_for(other.refusal.wait(), 60)
        status = other.status()
    finally:
        await other.stop()
    assert status["status"] == "ERROR"
    assert "another journal is relayed under this source name" in (status["refused"] or "")
    assert (status["cursor"], status["published_total"]) == (0, 0)  # never "caught up" on nothing
    rows, delivered = await consume_all(nats_broker.url, "PROPBOT", source)
    assert delivered == 20
    assert {r.row[2].split("-")[0] for r in rows} == {"acct0"}
    # The first journal itself, relayed again after more rows: its own chain, so it carries on
    journal = SqlJournal(first)
    fill(journal, 5, prefix="acct0-more-")
    journal.close()
    again = OutboxRelay(RelayConfig(first, nats_broker.url, source))
    await asyncio.wait_for(relay_until(again, 25), 60)
    assert again.refused is None
    assert (await consume_all(nats_broker.url, "PROPBOT", source, durable="again"))[1] == 25


def test_the_cli_names_the_missing_source_and_the_collision(
    tmp_path: Path, nats_broker: Broker, source: str
) -> None:
    first, second = _journal(tmp_path, "acct0", 3), _journal(tmp_path, "acct1", 3)
    cli = [sys.executable, "-m", "api.cli", "relay", "--nats", nats_broker.url]
    no_source = subprocess.run([*cli, "--db", first], capture_output=True, text=True, timeout=60, check=False)
    assert no_source.returncode != 0
    assert "names no PostgreSQL schema" in no_source.stderr
    assert "--source" in no_source.stderr
    asyncio.run(
        asyncio.wait_for(relay_until(OutboxRelay(RelayConfig(first, nats_broker.url, source)), 3), 60)
    )
    clash = subprocess.run(
        [*cli, "--db", second, "--source", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert clash.returncode != 0
    assert "another journal is relayed under this source name" in clash.stderr


async def test_two_journals_started_together_on_an_empty_stream_are_caught_by_the_duplicate_acks(
    tmp_path: Path, source: str
) -> None:
    """Both relays start before either has published: each start-up check finds nothing of the source
    in the stream and passes. The broker then keeps one journal's row per `Nats-Msg-Id` and answers the
    other's publishes as duplicates, which used to count as acknowledged: that relay reported cursor 20,
    status OK, with none of its rows in the stream. A duplicate ack is now checked against the message
    the broker kept."""
    from tests.outbox.broker import broker

    first, second = _journal(tmp_path, "acct0", 20), _journal(tmp_path, "acct1", 20)
    with broker(tmp_path / "nats") as b:
        relays = [OutboxRelay(RelayConfig(url, b.url, source)) for url in (first, second)]
        for relay in relays:
            relay.start()
        try:
            async with asyncio.timeout(30):
                while not all(r.refused or r.cursor == 20 for r in relays):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
        finally:
            for relay in relays:
                await relay.stop()
        rows, _ = await consume_all(b.url, "PROPBOT", source)
    # a relay that says it published 20 rows has its own rows in the stream, one whose rows the broker
    # dropped refuses (both do when their rows were interleaved)
    assert any(r.refused for r in relays)
    kept = {r.row[2].split("-")[0] for r in rows}
    for name, relay in zip(("acct0", "acct1"), relays, strict=True):
        if relay.refused is None:
            assert relay.cursor == 20
            assert kept == {name}
        else:
            assert "another journal is relayed under this source name" in relay.refused
            assert relay.status()["status"] == "ERROR"
