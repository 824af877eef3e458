"""A journal row larger than the broker's max_payload cannot be published, and the relay never skips a
seq: it must publish the rows before it, then stop there with an ERROR that names the row and the
limit. It used to fail the whole batch with nats-py's bare "maximum payload exceeded" (the rows before
the large one in the same batch were never acknowledged, so the cursor stayed put), and a row whose
payload fit but whose headers did not got the connection dropped by the broker: "NATS connection
lost", over and over."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from adapters.nats.relay import OutboxRelay, RelayConfig
from engine.journal import NewEntry
from engine.persistence.sql_journal import SqlJournal
from tests.journal.test_sql_journal import entry
from tests.outbox.broker import NATS_SERVER, NO_NATS, consume_all, free_port

pytestmark = pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)
MAX_PAYLOAD = 4096


def _small_broker(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    if NATS_SERVER is None:
        pytest.skip(NO_NATS)
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f"host: 127.0.0.1\nport: {port}\nmax_payload: {MAX_PAYLOAD}\njetstream {{ store_dir: {tmp_path / 'js'} }}\n"
    )
    proc = subprocess.Popen(
        [NATS_SERVER, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, f"nats://127.0.0.1:{port}"


async def _relay_until_error(url: str, nats_url: str, source: str) -> dict[str, object]:
    relay = OutboxRelay(RelayConfig(url, nats_url, source, min_backoff_s=0.05))
    relay.start()
    try:
        async with asyncio.timeout(20):
            while relay.cursor < 3 or not relay.status()["components"]["publish"]["last_error"]:
                await asyncio.sleep(0.02)
        return relay.status()
    finally:
        await relay.stop()


@pytest.mark.parametrize("fill", [20_000, MAX_PAYLOAD - 500], ids=["payload", "payload+headers"])
async def test_a_row_over_max_payload_stops_the_relay_after_the_rows_before_it(
    journal_url: str, journal: SqlJournal, source: str, tmp_path: Path, fill: int
) -> None:
    journal.append([entry("a", 1), entry("b", 1), entry("c", 1)])
    journal.append([NewEntry("order", "big", 1, "create", None, "NEW", {"x": "y" * fill}, "tester")])
    journal.append([entry("d", 1)])
    proc, nats_url = _small_broker(tmp_path)
    try:
        await asyncio.sleep(0.3)
        status = await _relay_until_error(journal_url, nats_url, source)
        assert status["cursor"] == 3
        assert status["status"] == "ERROR"
        error = str(status["components"]["publish"]["last_error"])  # type: ignore[index]
        assert "RowTooLarge: journal row seq 4 is" in error
        assert f"over the broker's max_payload {MAX_PAYLOAD}" in error
        rows, _ = await consume_all(nats_url, "PROPBOT", source)
        assert [r.seq for r in rows] == [1, 2, 3]
    finally:
        proc.kill()
        proc.wait()
