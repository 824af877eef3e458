"""The journal outbox relay: throughput into JetStream beside raw nats-py publishes, and commit→receipt lag.

Run: .venv/bin/python benchmarks/bench_relay.py [--n 20000] [--batch 512] [--rate 200] [--seconds 10]

- relay: OutboxRelay publishing a pre-filled journal (read by seq, encode, publish_async pipelined per batch,
  acks awaited in order, cursor committed per batch) until its cursor reaches the last row;
- raw nats-py: the same messages (subjects, headers with Nats-Msg-Id, payloads) published with
  js.publish_async in the same batches, each batch's acks awaited: no journal read, no cursor commit.
  Target: relay ≥ 0.5× raw.
- lag: rows appended at a steady --rate (one per commit) for --seconds while `propbot relay` runs as its
  own process; a JetStream ordered consumer notes each row's receipt; lag = receipt − the appender's
  return from the commit, p50/p99 (relay_*: a core subscriber's receipt of the relay's publish).
Each runs on SQLite and, when PROPBOT_BENCH_PG_URL/PROPBOT_TEST_PG_URL is set, on PostgreSQL. A private
nats-server (file store in a temp folder) is started when nats-server is installed, else --nats is used.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from common import ROOT, drop_pg_schema, fresh_pg_schema, save, table, temp_sqlite_url

from adapters.nats.relay import OutboxRelay, RelayConfig
from adapters.nats.stream import ensure_stream
from engine.journal import NewEntry
from engine.outbox import encode_row
from engine.persistence.migrate import upgrade
from engine.persistence.outbox_source import OutboxSource
from engine.persistence.sql_journal import SqlJournal

PAYLOAD = {"orderId": 123456, "executedQty": "0.00100000", "venueStatus": "FILLED", "tradeIds": [98765]}


def entry(i: int, tag: str = "bench") -> NewEntry:
    return NewEntry("order", f"{tag}-{i}", 1, "create", None, "NEW", PAYLOAD, "system")


def private_broker() -> tuple[str, subprocess.Popen[bytes] | None]:
    exe = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").is_file() else None
    )
    if exe is None:
        return "nats://127.0.0.1:4222", None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tempfile.mkdtemp(prefix="propbot-bench-nats-")
    proc = subprocess.Popen([exe, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.01)
    return f"nats://127.0.0.1:{port}", proc


def fill(url: str, n: int) -> None:
    j = SqlJournal(url)
    for i in range(0, n, 500):
        j.append([entry(k) for k in range(i, min(n, i + 500))])
    j.close()


async def bench_relay(db_url: str, nats_url: str, n: int, batch: int) -> float:
    relay = OutboxRelay(RelayConfig(db_url, nats_url, f"r{uuid.uuid4().hex[:8]}", batch=batch))
    t = time.perf_counter()
    relay.start()
    while relay.cursor < n:
        await asyncio.sleep(0.001)
    rate = n / (time.perf_counter() - t)
    await relay.stop()
    return rate


async def bench_raw(db_url: str, nats_url: str, n: int, batch: int) -> float:
    j = SqlJournal(db_url)
    source = f"raw{uuid.uuid4().hex[:8]}"
    messages = [encode_row(source, row) for row in j.scan()][:n]  # built before the clock starts
    j.close()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, "PROPBOT")
    t = time.perf_counter()
    for i in range(0, n, batch):
        acks = [await js.publish_async(m.subject, m.data, headers=m.headers, stream="PROPBOT")
                for m in messages[i : i + batch]]  # fmt: skip
        for ack in acks:
            await ack
    rate = n / (time.perf_counter() - t)
    await nc.close()
    return rate


async def bench_lag(db_url: str, nats_url: str, rate: float, seconds: float) -> dict[str, Any]:
    source = f"l{uuid.uuid4().hex[:8]}"
    journal = SqlJournal(db_url)
    base = journal.last_seq()
    committed: dict[int, float] = {}
    received: dict[int, float] = {}
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, "PROPBOT")
    cursor = OutboxSource(db_url)  # publish only the rows appended from now on
    cursor.save_cursor(source, base)
    cursor.close()

    published: dict[int, float] = {}

    async def on_msg(msg: Any) -> None:
        received[int(msg.headers["Propbot-Seq"])] = time.time()

    async def on_publish(msg: Any) -> None:  # a core subscriber sees the relay's publish as it arrives
        published[int(msg.headers["Propbot-Seq"])] = time.time()

    sub = await js.subscribe(f"propbot.{source}.>", cb=on_msg, ordered_consumer=True)
    core = await nc.subscribe(f"propbot.{source}.>", cb=on_publish)
    # the relay as its own process, as it is deployed: it does not share this process's GIL
    relay = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "relay", "--db", db_url, "--nats", nats_url, "--source", source],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    warm = journal.append([entry(-1, f"lag-{source}")])[0].seq  # measured from when the relay is up
    while warm not in received:
        await asyncio.sleep(0.01)
    halt = threading.Event()

    def append_steadily() -> None:
        i, start = 0, time.monotonic()
        while not halt.is_set():
            rec = journal.append([entry(i, f"lag-{source}")])[0]
            committed[rec.seq] = time.time()
            i += 1
            sleep = start + i / rate - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)

    writer = threading.Thread(target=append_steadily, daemon=True)
    writer.start()
    await asyncio.sleep(seconds)
    halt.set()
    writer.join()
    last = max(committed)
    for _ in range(3000):
        if last in received:
            break
        await asyncio.sleep(0.01)
    relay.terminate()
    relay.wait()
    await sub.unsubscribe()
    await core.unsubscribe()
    await nc.close()
    journal.close()
    lags = sorted((received[s] - c) * 1000 for s, c in committed.items() if s in received)
    relay_lags = sorted((published[s] - c) * 1000 for s, c in committed.items() if s in published)
    return {
        "relay_p50_ms": relay_lags[len(relay_lags) // 2],
        "relay_p99_ms": relay_lags[min(len(relay_lags) - 1, int(len(relay_lags) * 0.99))],
        "rows": len(committed),
        "received": len(lags),
        "lag_p50_ms": lags[len(lags) // 2],
        "lag_p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        "lag_max_ms": lags[-1],
    }


async def run(args: argparse.Namespace) -> None:
    nats_url, proc = private_broker()
    results: dict[str, Any] = {"n": args.n, "batch": args.batch, "rate": args.rate, "seconds": args.seconds}
    try:
        backends: list[tuple[str, str]] = [("sqlite", temp_sqlite_url("relay.db")[0])]
        pg = fresh_pg_schema("relay")
        if pg:
            backends.append(("postgres", pg))
        rows, lag_rows = [], []
        for name, url in backends:
            upgrade(url)
            fill(url, args.n)
            relay_rate = await bench_relay(url, nats_url, args.n, args.batch)
            raw_rate = await bench_raw(url, nats_url, args.n, args.batch)
            rows.append({"journal": name, "relay rows/s": relay_rate, "raw nats-py rows/s": raw_rate,
                         "ratio": relay_rate / raw_rate})  # fmt: skip
            lag = await bench_lag(url, nats_url, args.rate, args.seconds)
            lag_rows.append({"journal": name, **lag})
        table(
            f"relay throughput into JetStream, {args.n} rows, batch {args.batch} (target ratio >= 0.5)", rows
        )
        table(f"commit -> consumer receipt at {args.rate:.0f} rows/s for {args.seconds:.0f} s", lag_rows)
        results["throughput"], results["lag"] = rows, lag_rows
        save("bench_relay", results)
        if pg:
            drop_pg_schema(pg)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--rate", type=float, default=200.0, help="rows/s appended during the lag run")
    p.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
