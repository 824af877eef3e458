"""`propbot mirror` survives a broker outage: the broker (a private nats-server) is SIGKILLed while the
mirror runs as a real process and rows keep being appended; the mirror stays up, shows ERROR and
`connected: false` in its status, reconnects with backoff when the broker is back on its store, resumes
after its database's last seq, and ends equal to the journal row by row.

It survives an outage of its own database too: its PostgreSQL sessions (and only those: the server is
shared) are terminated over and over while the relay keeps publishing, mid-batch included; a batch whose
transaction died is not acknowledged, so JetStream delivers it again after the mirror's last seq."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from sqlalchemy import create_engine, text

from api.cli import main
from engine.persistence.sql_journal import SqlJournal
from tests.conftest import PG_URL
from tests.outbox.broker import ROOT, Broker, free_port, relay_process, stop
from tests.outbox.test_broker_outage import SteadyAppends, _status, _until_status
from tests.outbox.test_relay import fill


def mirror_process(nats_url: str, db_url: str, source: str, status_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "mirror", "--nats", nats_url, "--db", db_url, "--source", source,
         "--status-port", str(status_port), "--log-every", "1"],
        cwd=ROOT, env={**os.environ, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@dataclass
class MirrorStack:
    """A private broker, the journal's relay and `propbot mirror` (status on `port`), all real processes;
    `logs` gets the mirror's then the relay's output once they are stopped."""

    broker: Broker
    relay: subprocess.Popen[bytes]
    mirror: subprocess.Popen[bytes]
    port: int
    logs: list[str] = field(default_factory=list)


@contextmanager
def mirror_stack(journal_url: str, mirror_url: str, source: str, tmp_path: Path) -> Iterator[MirrorStack]:
    b = Broker(tmp_path / "nats")
    b.start()
    relay = relay_process(journal_url, b.url, source, "PROPBOT")
    port = free_port()
    stack = MirrorStack(b, relay, mirror_process(b.url, mirror_url, source, port), port)
    try:
        yield stack
    finally:
        stack.logs.append(stop(stack.mirror))
        stack.logs.append(stop(relay))
        b.kill()


def assert_mirror_equals(
    journal: SqlJournal, journal_url: str, mirror_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rows: int,
) -> None:  # fmt: skip
    """Row by row, and as `journal verify --against-mirror` sees it."""
    copy = SqlJournal(mirror_url)
    try:
        assert list(copy.scan()) == list(journal.scan())
    finally:
        copy.close()
    capsys.readouterr()
    verify = ["journal", "verify", "--db", journal_url, "--data-dir", str(tmp_path / "data")]
    assert main([*verify, "--against-mirror", mirror_url]) == 0
    assert f"mirror OK: {rows} rows equal, last seq {rows}" in capsys.readouterr().out


@pytest.mark.timeout(300)
async def test_the_mirror_reconnects_after_a_broker_outage_and_resumes_where_it_was(
    journal_url: str, journal: SqlJournal, mirror_url: str, tmp_path: Path, source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with mirror_stack(journal_url, mirror_url, source, tmp_path) as stack:
        b, port, mirror = stack.broker, stack.port, stack.mirror
        fill(journal, 100)
        await _until_status(port, "head_seq", 100)
        b.kill()
        await _until_status(port, "connected", False)
        fill(journal, 50, "during")  # the engine goes on; the relay and the mirror catch up later
        await asyncio.sleep(2)  # several reconnect attempts fail meanwhile
        down = await asyncio.to_thread(_status, port)
        assert mirror.poll() is None, "the mirror exited on the broker outage"
        assert down["status"] == "ERROR"
        assert down["components"]["mirror"]["failures"] >= 1
        assert down["head_seq"] == 100
        episodes = down["episodes"]
        b.start()
        back = await _until_status(port, "head_seq", 150, timeout=120)
        assert back["connected"]
        assert back["episodes"] > episodes
        assert back["rows_written"] == 150  # nothing written twice: it resumed after seq 100
    logs = stack.logs
    assert mirror.returncode == 0, logs[0]
    assert "mirror failed (" in logs[0], logs[0]  # the supervisor logged the outage: not silent
    assert "resuming after seq 100" in logs[0], logs[0]
    assert_mirror_equals(journal, journal_url, mirror_url, tmp_path, capsys, 150)


_TERMINATE = text(
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name = :n AND pid <> pg_backend_pid()"
)


def _kill_sessions(app: str, for_s: float) -> int:
    """Terminate every session named `app` (the mirror's, nobody else's) every 20 ms for `for_s` seconds;
    how many were terminated."""
    admin = create_engine(PG_URL)
    killed = 0
    end = time.monotonic() + for_s
    try:
        with admin.connect() as conn:
            while time.monotonic() < end:
                killed += int(conn.execute(_TERMINATE, {"n": app}).scalar_one())
                conn.commit()
                time.sleep(0.02)
    finally:
        admin.dispose()
    return killed


@pytest.mark.timeout(180)
@pytest.mark.parametrize("journal_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_the_mirror_survives_its_database_sessions_being_killed_and_writes_each_row_once(
    journal_url: str, journal: SqlJournal, mirror_url: str, tmp_path: Path, source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    app = f"mirror-test-{uuid.uuid4().hex[:10]}"  # libpq's application_name: only these sessions are killed
    appends = SteadyAppends(journal, every_s=0.01)
    try:
        with mirror_stack(journal_url, f"{mirror_url}&application_name={app}", source, tmp_path) as stack:
            port, mirror = stack.port, stack.mirror
            fill(journal, 100, "before")  # SteadyAppends writes o0, o1, ...
            up = await _until_status(port, "head_seq", 100)
            episodes, failures = (
                up["episodes"],
                up["components"]["mirror"]["failures"],
            )  # it may have come first
            appends.start()  # the relay publishes a row every ~10 ms: the mirror writes batches all along
            killed = await asyncio.to_thread(_kill_sessions, app, 4.0)
            down = await asyncio.to_thread(_status, port)
            assert killed >= 2, killed
            assert mirror.poll() is None, "the mirror exited on its database outage"
            assert down["status"] == "ERROR", down  # not OK while its writes fail
            assert down["components"]["mirror"]["failures"] > failures, down
            assert down["components"]["mirror"]["last_error"].startswith("OperationalError"), down
            assert down["episodes"] > episodes, down
            await asyncio.sleep(1)  # appends go on with the database back
            appends.halt.set()
            await asyncio.to_thread(appends.join)
            total = 100 + appends.count
            back = await _until_status(port, "head_seq", total, timeout=60)
            assert mirror.poll() is None
            assert back["rows_written"] == total, back  # nothing written twice, nothing skipped
    finally:
        appends.halt.set()  # also when an assertion failed: the thread must not outlive the test
    logs = stack.logs
    assert mirror.returncode == 0, logs[0]
    assert "mirror failed (OperationalError" in logs[0], logs[0]  # the supervisor logged it: not silent
    resumed = [int(line.rsplit(" ", 1)[1]) for line in logs[0].splitlines() if "resuming after seq" in line]
    assert len(resumed) >= 2, logs[0]
    assert resumed[1:] == sorted(resumed[1:]), resumed  # each new episode after its database's last seq
    assert resumed[-1] >= 100, resumed
    assert_mirror_equals(journal, journal_url, mirror_url, tmp_path, capsys, total)


def _stall_once(schema: str, seq: int) -> str:
    """SQL for a trigger on the mirror's journal that, the first time row `seq` is inserted, records the
    highest seq its own transaction sees (committed or not) and sleeps: the batch is caught mid-write. The
    sequences are not transactional, so neither is undone when that transaction is rolled back."""
    return f"""
        CREATE SEQUENCE {schema}.stall_once; CREATE SEQUENCE {schema}.seen_in_tx MINVALUE 0 START 0;
        CREATE FUNCTION {schema}.stall() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.seq = {seq} AND nextval('{schema}.stall_once') = 1 THEN
                PERFORM setval('{schema}.seen_in_tx', (SELECT coalesce(max(seq), 0) FROM {schema}.journal));
                PERFORM pg_sleep(60);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER stall BEFORE INSERT ON {schema}.journal FOR EACH ROW EXECUTE FUNCTION {schema}.stall();
    """


@pytest.mark.timeout(180)
@pytest.mark.parametrize("journal_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_a_batch_whose_transaction_dies_is_not_acked_and_comes_again(
    journal_url: str, journal: SqlJournal, mirror_url: str, tmp_path: Path, source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    app = f"mirror-test-{uuid.uuid4().hex[:10]}"
    schema = mirror_url.rsplit("search_path%3D", 1)[1]
    admin = create_engine(PG_URL)
    with mirror_stack(journal_url, f"{mirror_url}&application_name={app}", source, tmp_path) as stack:
        b, port, mirror = stack.broker, stack.port, stack.mirror
        try:
            fill(journal, 100)
            await _until_status(port, "head_seq", 100)
            with admin.begin() as conn:
                conn.execute(text(_stall_once(schema, 150)))
            fill(journal, 50, "batch")  # one commit: the relay publishes 101..150 together
            with admin.connect() as conn:
                end = time.monotonic() + 60
                while not conn.execute(
                    text("SELECT 1 FROM pg_stat_activity WHERE application_name = :n AND wait_event = 'PgSleep'"),
                    {"n": app},
                ).first():  # fmt: skip
                    conn.commit()
                    assert time.monotonic() < end, "the mirror never inserted seq 150"
                    await asyncio.sleep(0.02)
                committed = int(conn.execute(text(f"SELECT max(seq) FROM {schema}.journal")).scalar_one())
                in_tx = int(conn.execute(text(f"SELECT last_value FROM {schema}.seen_in_tx")).scalar_one())
                assert committed < in_tx == 149, (committed, in_tx)  # rows committed-to-be sit in the open tx
                nc = await nats.connect(b.url)
                try:  # the batch is delivered and not acknowledged while its transaction is open
                    info = await nc.jetstream().consumer_info("PROPBOT", f"mirror-{source}")
                finally:
                    await nc.close()
                assert (info.num_ack_pending or 0) >= 150 - committed, info
                assert int(conn.execute(_TERMINATE, {"n": app}).scalar_one()) >= 1
                conn.commit()
            back = await _until_status(port, "head_seq", 150)
            assert mirror.poll() is None
            assert back["rows_written"] == 150, back  # the rolled-back rows came again, each written once
            assert back["components"]["mirror"]["failures"] >= 1, back
            assert back["status"] == "ERROR", back  # the failure stays visible for a while
        finally:
            with admin.begin() as conn:  # a stall left behind by a failed assertion would hold up the stop
                conn.execute(_TERMINATE, {"n": app})
            admin.dispose()
    logs = stack.logs
    assert mirror.returncode == 0, logs[0]
    assert "mirror failed (OperationalError" in logs[0], logs[0]
    assert f"resuming after seq {committed}" in logs[0], logs[0]
    assert_mirror_equals(journal, journal_url, mirror_url, tmp_path, capsys, 150)
