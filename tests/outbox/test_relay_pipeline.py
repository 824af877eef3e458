"""The relay's low-latency parts without a broker: the wake-up on a commit by another connection (SQLite's
data_version watch, PostgreSQL's NOTIFY), the on-loop row reader, and pipelined publishing whose cursor
follows the acknowledged prefix only, whatever order the acks come back in."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.persistence.journal_wakeup import listen_for_appends, watch_sqlite_commits
from engine.persistence.outbox_reader import contiguous_run, open_row_reader
from engine.persistence.sql_journal import SqlJournal
from tests.journal.test_sql_journal import entry
from tests.outbox.test_relay import fill


async def _wakes_on_commit(journal_url: str, journal: SqlJournal) -> None:
    woke = asyncio.Event()
    listening = asyncio.Event()

    def on_listening(on: bool) -> None:
        if on:
            listening.set()

    if journal_url.startswith("sqlite"):
        watch = watch_sqlite_commits(journal_url, woke.set, on_listening, 0.002, 0.025)
    else:
        watch = listen_for_appends(journal_url, woke.set, on_listening)
    task = asyncio.create_task(watch)
    try:
        await asyncio.wait_for(listening.wait(), 30)
        await asyncio.wait_for(woke.wait(), 5)  # the first wake-up: rows committed before the watch
        woke.clear()
        await asyncio.sleep(0.2)
        assert not woke.is_set()  # nothing committed, no wake-up (SQLite: the watch does not read rows)
        await asyncio.to_thread(journal.append, [entry("w1", 1)])
        await asyncio.wait_for(woke.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_commit_by_another_connection_wakes_the_relay(journal_url: str, journal: SqlJournal) -> None:
    await _wakes_on_commit(journal_url, journal)


async def test_the_sqlite_watch_keeps_waking_after_an_idle_second(tmp_path: Path) -> None:
    from engine.persistence.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'j.db'}"
    upgrade(url)
    journal = SqlJournal(url)
    wakes: list[float] = []
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(watch_sqlite_commits(url, lambda: wakes.append(loop.time()), lambda _: None,
                                                    0.002, 0.025, idle_after_s=0.1))  # fmt: skip
    try:
        await asyncio.sleep(0.3)  # idle: the slow pace
        for i in range(3):
            n = len(wakes)
            committed = loop.time()
            await asyncio.to_thread(journal.append, [entry(f"i{i}", 1)])
            while len(wakes) == n:
                await asyncio.sleep(0.001)
            assert wakes[-1] - committed < 1.0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        journal.close()


def test_a_run_stops_at_the_first_hole() -> None:
    rows = [(3,), (4,), (6,), (7,)]
    assert contiguous_run(rows, 2) == [(3,), (4,)]
    assert contiguous_run(rows, 3) == []
    assert contiguous_run([], 0) == []


async def test_the_row_reader_returns_what_the_journal_stores(journal_url: str, journal: SqlJournal) -> None:
    fill(journal, 30)
    reader = open_row_reader(journal_url)
    try:
        assert await reader.rows_after(0, 1000) == list(journal.scan())
        assert [r[0] for r in await reader.rows_after(10, 5)] == [11, 12, 13, 14, 15]
        assert await reader.rows_after(30, 5) == []
    finally:
        await reader.close()


async def test_the_sqlite_reader_never_creates_a_missing_journal(tmp_path: Path) -> None:
    reader = open_row_reader(f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(Exception, match="unable to open"):
        await reader.rows_after(0, 10)
    assert not (tmp_path / "absent.db").exists()


class _HeldAcks:
    """A JetStream stand-in whose acks the test resolves, in any order."""

    def __init__(self) -> None:
        self.acks: dict[int, asyncio.Future[Any]] = {}

    async def publish_async(self, subject: str, data: bytes, **kw: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[int(kw["headers"]["Propbot-Seq"])] = fut
        return fut


async def test_the_cursor_follows_the_acknowledged_prefix_in_seq_order(
    journal_url: str, journal: SqlJournal
) -> None:
    fill(journal, 3)
    relay = OutboxRelay(RelayConfig(journal_url, "nats://127.0.0.1:1", "pipeline"))
    js = _HeldAcks()
    loop = asyncio.get_running_loop()
    try:
        assert await relay.publish_next(js) == 3  # type: ignore[arg-type]
        fill(journal, 2, prefix="late")
        assert await relay.publish_next(js) == 2  # type: ignore[arg-type]  (not waiting for 1-3's acks)
        assert sorted(js.acks) == [1, 2, 3, 4, 5]
        js.acks[3].set_result(None)
        js.acks[2].set_result(None)
        relay._settle(loop.time())
        assert relay.cursor == 0  # 1 is not acknowledged: 2 and 3 must wait
        js.acks[1].set_result(None)
        relay._settle(loop.time())
        assert relay.cursor == 3
        js.acks[5].set_result(None)
        js.acks[4].set_exception(RuntimeError("stream said no"))
        with pytest.raises(RuntimeError, match="stream said no"):
            relay._settle(loop.time())
        assert relay.cursor == 3  # never past a failed publish: the next episode republishes from 4
        relay._in_flight.clear()
        assert await relay.publish_next(js) == 0  # nothing new after 5
        relay._published_to = 0
        await relay.publish_next(js)
        with pytest.raises(TimeoutError, match="did not acknowledge seq 1"):
            relay._settle(loop.time() + relay.config.ack_timeout_s + 1)
    finally:
        relay._in_flight.clear()
        await relay.stop()


async def test_the_sqlite_watch_starts_while_the_journal_is_locked(tmp_path: Path) -> None:
    """Its first look at PRAGMA data_version used to be outside the busy handling: a journal locked at
    that moment (busy timeout 0; WAL recovery, an exclusive writer) failed the listen component, which
    then showed ERROR for a minute. A busy answer counts as a change, as at every later look."""
    import sqlite3

    from engine.persistence.migrate import upgrade

    path = tmp_path / "j.db"
    upgrade(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    woke = asyncio.Event()
    task = asyncio.create_task(
        watch_sqlite_commits(f"sqlite:///{path}", woke.set, lambda _: None, 0.002, 0.025)
    )
    try:
        await asyncio.sleep(0.2)
        assert not task.done(), task.exception()
        holder.execute("COMMIT")
        holder.close()
        await asyncio.wait_for(woke.wait(), 5)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
