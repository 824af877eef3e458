"""The broker SIGKILLed under a steady flow of orders through a real `propbot serve` (paper profile, its
durable SQLite journal), down for a while, then restarted on its store: every order is answered 200
during the outage (the outbox never blocks the order path), and once the relay (a real process) has
caught up the stream holds every journal row exactly once, in seq order.

The outage lasts PROPBOT_TEST_BROKER_OUTAGE_S seconds (default 5, CI too); the issue's 60 s runs with
PROPBOT_TEST_LONG_OUTAGE=1, as in test_broker_outage.py."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from engine.persistence.sql_journal import SqlJournal
from tests.crash.harness import PROPBOT
from tests.outbox.broker import (
    Broker,
    consume_all,
    free_port,
    relay_process,
    stop,
    stream_count,
    wait_for_count,
)
from tests.outbox.test_broker_outage import OUTAGES, _until_status
from tests.waiting import eventually


class SteadyOrders(threading.Thread):
    """One MARKET order (BUY and SELL alternating) every `every_s` through the API, until stopped; each
    answer's status code is kept with the time it came back."""

    def __init__(self, base_url: str, token: str, every_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.answers: list[tuple[float, str, int]] = []  # (monotonic time, client order id, status)
        self.halt = threading.Event()
        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set():
                cid = f"pb-out-{n}"
                body = {"symbol": "BTCUSDT", "side": "BUY" if n % 2 == 0 else "SELL", "type": "MARKET",
                        "quantity": "0.001", "newClientOrderId": cid}  # fmt: skip
                status = self._http.post("/api/live/order", json=body).status_code
                self.answers.append((time.monotonic(), cid, status))
                n += 1
                time.sleep(self.every_s)
        finally:
            self._http.close()

    def between(self, start: float, end: float) -> list[int]:
        return [status for t, _, status in list(self.answers) if start <= t <= end]


def _serve(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`propbot serve --profile paper` with risk caps raised for the flow; (process, base URL, data dir)."""
    data = tmp / "data"
    data.mkdir()
    config = {
        "profile": "paper",
        "exchange": "paper",
        "paper": {"price_interval_s": 0},
        "risk": {"max_open_orders": 1_000_000, "max_orders_per_minute": 1_000_000,
                 "max_order_notional": "1000000000", "max_order_qty": "1000"},
    }  # fmt: skip
    cfg = tmp / "config.paper.yaml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(PROPBOT), "serve", "--profile", "paper", "--config", str(cfg), "--data-dir", str(data),
             "--port", str(port)],
            cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    eventually(ready, timeout=60, interval=0.05)
    return proc, base, data


def _token(data: Path, role: str) -> str:
    lines = (data / "tokens.txt").read_text().splitlines()
    return next(ln.split()[2] for ln in lines if ln.startswith(role))


@pytest.mark.timeout(600)
@OUTAGES
async def test_orders_are_answered_through_a_broker_outage_and_the_stream_holds_every_row_once(
    tmp_path: Path, source: str, outage_s: float
) -> None:
    b = Broker(tmp_path / "nats")
    b.start()
    server, base, data = _serve(tmp_path)
    db_url = f"sqlite:///{data / 'journal.db'}"
    port = free_port()
    relay = relay_process(db_url, b.url, source, "PROPBOT", status_port=port)
    flow = SteadyOrders(base, _token(data, "trader"))
    flow.start()
    try:
        await wait_for_count(b.url, "PROPBOT", source, 50)
        b.kill()
        down_at = time.monotonic()
        await _until_status(port, "connected", False)
        await asyncio.sleep(outage_s)
        up_at = time.monotonic()
        during = flow.between(down_at, up_at)
        assert during, "no order was answered while the broker was down"
        assert set(during) == {200}, during  # the order path never waits for the outbox
        b.start()
        await _until_status(port, "connected", True)
        await asyncio.sleep(0.5)  # orders go on after the broker is back
    finally:
        flow.halt.set()
        flow.join()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert {status for _, _, status in flow.answers} == {200}
    journal = SqlJournal(db_url)
    try:
        last = journal.last_seq()
        order_ids = {row[2] for row in journal.scan() if row[1] == "order"}
    finally:
        journal.close()
    try:
        caught_up = await _until_status(port, "cursor", last, timeout=120)
        assert caught_up["lag_rows"] == 0
        assert await stream_count(b.url, "PROPBOT", source) == last  # once each: repeats were dropped
        rows, delivered = await consume_all(b.url, "PROPBOT", source)
    finally:
        log = stop(relay)
        b.kill()
    assert [r.seq for r in rows] == list(range(1, last + 1)), log
    assert delivered == last
    assert {cid for _, cid, _ in flow.answers} <= order_ids  # every answered order's rows are in it
    assert "ERROR" in log  # the outage was logged, not silent
