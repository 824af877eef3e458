"""The relay SIGKILLed after JetStream's ack and before its cursor commit (the test-only fault hook
PROPBOT_RELAY_FAULT=kill-after-ack): restarted, it republishes from its old cursor; the stream holds
every row and a consumer using the library sees each seq once. Run as a real process, both when the
restart falls inside the broker's duplicate window (no repeat stored) and after it (repeats stored,
dropped by the consumer)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig
from sqlalchemy import create_engine

from engine.persistence.relay_cursor import load_cursor
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import broker, consume_all, relay_process, stop, wait_for_count
from tests.outbox.test_relay import fill


async def _make_stream(url: str, duplicate_window_s: float) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name="PROPBOT", subjects=["propbot.>"], duplicate_window=duplicate_window_s)
        )
    finally:
        await nc.close()


@pytest.mark.parametrize("window_s", [120.0, 0.2], ids=["inside-window", "after-window"])
async def test_killed_between_ack_and_cursor_commit_loses_and_repeats_nothing(
    journal_url: str, journal: SqlJournal, tmp_path: Path, source: str, window_s: float
) -> None:
    fill(journal, 300)
    with broker(tmp_path / "nats") as b:
        await _make_stream(b.url, window_s)  # the relay leaves an existing stream as it is
        crashing = relay_process(
            journal_url, b.url, source, "PROPBOT", env={"PROPBOT_RELAY_FAULT": "kill-after-ack"}
        )
        assert crashing.wait(timeout=120) == -signal.SIGKILL
        acked = await wait_for_count(b.url, "PROPBOT", source, 1)
        assert acked > 0  # JetStream acknowledged rows the relay never recorded
        engine = create_engine(journal_url)
        assert load_cursor(engine, source) == 0
        engine.dispose()
        if window_s < 1:
            await asyncio.sleep(window_s * 3)  # let the duplicate window pass: the repeats are stored
        fill(journal, 50, "late")
        relay = relay_process(journal_url, b.url, source, "PROPBOT")
        try:
            total = await wait_for_count(b.url, "PROPBOT", source, 350 + (acked if window_s < 1 else 0))
        finally:
            log = stop(relay)
        rows, delivered = await consume_all(b.url, "PROPBOT", source)
    assert [r.seq for r in rows] == list(range(1, 351)), log
    if window_s < 1:
        assert total == delivered == 350 + acked  # the broker kept the repeats; the consumer dropped them
    else:
        assert total == delivered == 350  # the broker dropped the repeats by Nats-Msg-Id
