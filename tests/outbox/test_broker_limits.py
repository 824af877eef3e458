"""A stream at its limit with discard=new refuses further publishes; the relay must say so at once, with
the broker's reason. nats-py 2.16 never completes a publish_async future whose answer is an error (its
APIError.from_error raises inside the reply handler, and the error goes to the error callback only),
so the relay showed OK until its 10 s ack deadline and then "JetStream did not acknowledge seq 6 in
time", the broker's "maximum messages exceeded" logged nowhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import broker
from tests.outbox.test_relay import fill

pytestmark = pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)


async def test_a_full_stream_with_discard_new_shows_the_brokers_reason_at_once(
    journal_url: str, journal: SqlJournal, source: str, tmp_path: Path
) -> None:
    fill(journal, 10)
    with broker(tmp_path / "nats") as b:
        nc = await nats.connect(b.url)
        await nc.jetstream().add_stream(
            StreamConfig(name="PROPBOT", subjects=["propbot.>"], max_msgs=5, discard=DiscardPolicy.NEW)
        )
        await nc.close()
        relay = OutboxRelay(RelayConfig(journal_url, b.url, source, ack_timeout_s=30, min_backoff_s=0.05))
        relay.start()
        try:
            async with asyncio.timeout(5):  # well before the 30 s ack deadline
                while not relay.status()["components"].get("publish", {}).get("last_error"):
                    await asyncio.sleep(0.02)
            status = relay.status()
        finally:
            await relay.stop()
    assert status["status"] == "ERROR"
    assert "maximum messages exceeded" in status["components"]["publish"]["last_error"]
    assert (status["cursor"], status["lag_rows"]) == (5, 5)
