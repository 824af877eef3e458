"""One relay per source: a second `propbot relay` for the same source waits as a standby (PostgreSQL:
an advisory lock keyed by the source; SQLite: a flock beside the journal file) and takes over when the
active one is SIGKILLed; the stream then holds every row, each seq once, in order."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from engine.persistence.relay_lock import FileRelayLock
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import Broker, consume_all, free_port, relay_process, stop, wait_for_count
from tests.outbox.test_broker_outage import _status, _until_status
from tests.outbox.test_relay import fill


async def test_a_second_relay_for_the_source_is_a_standby_and_takes_over_when_the_first_dies(
    journal_url: str, journal: SqlJournal, nats_broker: Broker, source: str
) -> None:
    fill(journal, 100)
    ports = [free_port(), free_port()]
    first = relay_process(journal_url, nats_broker.url, source, "PROPBOT", status_port=ports[0])
    second = None
    logs: list[str] = []
    try:
        active = await _until_status(ports[0], "role", "ACTIVE")
        await _until_status(ports[0], "cursor", 100)
        second = relay_process(journal_url, nats_broker.url, source, "PROPBOT", status_port=ports[1])
        standby = await _until_status(ports[1], "role", "STANDBY")
        assert standby["status"] == "OK"  # waiting is healthy, not a failure
        if standby["lock_holder"] is not None:  # PostgreSQL shows it only with pg_read_all_stats
            assert standby["lock_holder"]["relay_id"] == active["relay_id"]
        fill(journal, 50, "more")
        await _until_status(ports[0], "cursor", 150)
        await asyncio.sleep(1.5)  # three standby polls: it keeps waiting while the first holds the lock
        st = await asyncio.to_thread(_status, ports[1])
        assert (st["role"], st["published_total"], st["cursor"]) == ("STANDBY", 0, 0)

        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        await _until_status(ports[1], "role", "ACTIVE", timeout=30)
        took_over_s = time.monotonic() - killed
        fill(journal, 50, "after")
        await _until_status(ports[1], "cursor", 200)
        assert await wait_for_count(nats_broker.url, "PROPBOT", source, 200) == 200  # no repeat stored
    finally:
        if second is not None:
            logs.append(stop(second))
        if first.poll() is None:
            logs.append(stop(first))
    rows, _ = await consume_all(nats_broker.url, "PROPBOT", source)
    assert [r.seq for r in rows] == list(range(1, 201))
    assert took_over_s < 10, took_over_s
    assert "standby, another relay holds the source's lock" in logs[0], logs[0]


def test_a_replaced_lock_file_is_a_lost_lock(tmp_path: Path) -> None:
    path = tmp_path / "journal.db.relay-s.lock"
    holder, other = FileRelayLock(path, "a"), FileRelayLock(path, "b")
    try:
        assert holder.try_acquire()
        assert not other.try_acquire()
        assert other.holder is not None
        assert (other.holder.relay_id, other.holder.pid) == ("a", os.getpid())
        assert holder.check()
        path.unlink()  # someone deletes it: a new relay could lock a new file by that name
        assert other.try_acquire()
        assert not holder.check()  # so the old holder gives up instead of publishing beside it
    finally:
        holder.close()
        other.close()
    again = FileRelayLock(path, "c")
    assert again.try_acquire()  # closing released it
    again.close()
