"""`propbot mirror` survives a broker outage: the broker (a private nats-server) is SIGKILLed while the
mirror runs as a real process and rows keep being appended; the mirror stays up, shows ERROR and
`connected: false` in its status, reconnects with backoff when the broker is back on its store, resumes
after its database's last seq, and ends equal to the journal row by row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import main
from engine.persistence.sql_journal import SqlJournal
from tests.outbox.broker import ROOT, Broker, free_port, relay_process, stop
from tests.outbox.test_broker_outage import _status, _until_status
from tests.outbox.test_relay import fill


def mirror_process(nats_url: str, db_url: str, source: str, status_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "mirror", "--nats", nats_url, "--db", db_url, "--source", source,
         "--status-port", str(status_port), "--log-every", "1"],
        cwd=ROOT, env={**os.environ, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.timeout(300)
async def test_the_mirror_reconnects_after_a_broker_outage_and_resumes_where_it_was(
    journal_url: str, journal: SqlJournal, mirror_url: str, tmp_path: Path, source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    b = Broker(tmp_path / "nats")
    b.start()
    relay = relay_process(journal_url, b.url, source, "PROPBOT")
    port = free_port()
    mirror = mirror_process(b.url, mirror_url, source, port)
    logs: list[str] = []
    try:
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
    finally:
        logs.append(stop(mirror))
        logs.append(stop(relay))
        b.kill()
    assert mirror.returncode == 0, logs[0]
    assert "mirror failed (" in logs[0], logs[0]  # the supervisor logged the outage: not silent
    assert "resuming after seq 100" in logs[0], logs[0]
    capsys.readouterr()
    verify = ["journal", "verify", "--db", journal_url, "--data-dir", str(tmp_path / "data")]
    assert main([*verify, "--against-mirror", mirror_url]) == 0
    assert "mirror OK: 150 rows equal, last seq 150" in capsys.readouterr().out
