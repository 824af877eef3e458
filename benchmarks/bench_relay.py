"""The journal outbox relay: throughput into JetStream beside raw nats-py publishes, and commit→receipt lag.

Run: .venv/bin/python benchmarks/bench_relay.py [--n 20000] [--batch 512] [--rate 200] [--seconds 10]
     .venv/bin/python benchmarks/bench_relay.py --api-load [--seconds 10]

- relay: OutboxRelay publishing a pre-filled journal (read by seq, encode, publish_async pipelined per batch,
  acks awaited in order, cursor committed per batch) until its cursor reaches the last row;
- raw nats-py: the same messages (subjects, headers with Nats-Msg-Id, payloads) published with
  js.publish_async in the same batches, each batch's acks awaited: no journal read, no cursor commit.
  Target: relay ≥ 0.5× raw.
- lag: rows appended at a steady --rate (one per commit) for --seconds while `propbot relay` runs as its
  own process; a JetStream ordered consumer notes each row's receipt; lag = receipt − the appender's
  return from the commit, p50/p99 (relay_*: a core subscriber's receipt of the relay's publish).
- --api-load (only this): a real `propbot serve --profile paper`; its maximum order rate is measured
  first (bench_api.py's wrk load, 5 s, 32 connections), then paced_orders.py sends orders at half that
  rate for --seconds while `propbot relay` publishes its journal and a JetStream ordered consumer notes
  each row's receipt; lag = receipt − the row's created_at (taken inside the append transaction, before
  the commit: an upper bound of commit → receipt). Target (issue 11): p99 < 100 ms. Beside it, the floor:
  the plain-append lag run above at the same rows/s on a fresh journal of the same kind (no API).
Each runs on SQLite and, when PROPBOT_BENCH_PG_URL/PROPBOT_TEST_PG_URL is set, on PostgreSQL. A private
nats-server (file store in a temp folder) is started when nats-server is installed, else --nats is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from bench_api import paper_server, token_of, wrk_orders
from common import ROOT, drop_pg_schema, free_port, fresh_pg_schema, save, table, temp_sqlite_url

from adapters.nats.relay import OutboxRelay, RelayConfig
from adapters.nats.stream import ensure_stream
from engine.journal import NewEntry, parse_ts
from engine.outbox import decode_row, encode_row
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


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


async def _relay_idle(status_port: int, timeout_s: float = 120.0) -> None:
    """Until the relay's status says it has published everything (lag 0 rows, cursor > 0)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                st = (await http.get(f"http://127.0.0.1:{status_port}/status")).json()
                if st["lag_rows"] == 0 and st["cursor"] > 0:
                    return
            except (httpx.TransportError, ValueError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the relay did not catch up")


async def bench_api_lag(journal_url: str | None, nats_url: str, seconds: float) -> dict[str, Any]:
    """Commit → consumer receipt while `propbot serve` takes orders at half its measured maximum rate."""
    tmp = Path(tempfile.mkdtemp(prefix="propbot-bench-apilag-"))
    data = tmp / "data"
    source = f"a{uuid.uuid4().hex[:8]}"
    try:
        with paper_server(data, journal_url) as (_, base):
            token = token_of(data, "trader")
            wrk_orders(base, token, 2, 32, tmp)  # warm-up
            peak = wrk_orders(base, token, 5, 32, tmp)
            rate = peak["req_s"] / 2
            db_url = journal_url or f"sqlite:///{data / 'journal.db'}"
            status_port = free_port()
            relay = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "relay", "--db", db_url, "--nats", nats_url, "--source", source,
                 "--status-port", str(status_port)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await _relay_idle(status_port)  # the peak run's rows are published before the clock starts
                nc = await nats.connect(nats_url)
                received: list[tuple[bytes, float]] = []  # decoded after the run: the callback only notes

                async def on_msg(msg: Any) -> None:
                    received.append((msg.data, time.time()))

                from nats.js.api import DeliverPolicy

                sub = await nc.jetstream().subscribe(
                    f"propbot.{source}.>", cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
                )
                start = time.time()
                load = await asyncio.create_subprocess_exec(
                    sys.executable, str(ROOT / "benchmarks" / "paced_orders.py"), base, token, str(rate),
                    str(seconds), stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await load.communicate()
                orders = json.loads(out)
                await _relay_idle(status_port)
                await asyncio.sleep(0.5)  # the last publishes reach the consumer
                await sub.unsubscribe()
                await nc.close()
            finally:
                relay.terminate()
                relay.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lags = sorted(
        (at - parse_ts(row[11]).timestamp()) * 1000
        for row, at in ((decode_row(d), at) for d, at in received)
        if parse_ts(row[11]).timestamp() >= start
    )
    return {
        "max_req_s": peak["req_s"],
        "load_req_s": round(rate, 1),
        "achieved_req_s": orders["achieved_req_s"],
        "orders_non_200": orders["non_2xx"] + orders["errors"],
        "order_p99_ms": orders["p99_ms"],
        "rows": len(lags),
        "lag_p50_ms": _pct(lags, 0.5),
        "lag_p90_ms": _pct(lags, 0.9),
        "lag_p99_ms": _pct(lags, 0.99),
        "lag_max_ms": round(lags[-1], 2),
    }


async def run_api_load(args: argparse.Namespace) -> None:
    nats_url, proc = private_broker()
    try:
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        pg = fresh_pg_schema("apilag")
        if pg:
            backends.append(("postgres", pg))
        rows: list[dict[str, Any]] = []
        for name, url in backends:
            loaded = await bench_api_lag(url, nats_url, args.seconds)
            # the floor: the same rows/s appended by a bare journal writer, no API, no order flow
            floor_url = temp_sqlite_url("floor.db")[0] if url is None else fresh_pg_schema("apilagfloor")
            assert floor_url is not None
            upgrade(floor_url)
            floor = await bench_lag(floor_url, nats_url, loaded["rows"] / args.seconds, args.seconds)
            if url is not None:
                drop_pg_schema(floor_url)
            rows.append({"journal": name, **loaded, "floor_lag_p50_ms": round(floor["lag_p50_ms"], 2),
                         "floor_lag_p99_ms": round(floor["lag_p99_ms"], 2)})  # fmt: skip
        table(f"commit -> consumer receipt, propbot serve at half its max order rate for {args.seconds:.0f} s",
              rows)  # fmt: skip
        met = all(r["lag_p99_ms"] < 100 and r["orders_non_200"] == 0 for r in rows)
        print(f"lag p99 target < 100 ms, every order 200: {'MET' if met else 'NOT MET'}")
        save("bench_relay_api_load", {"seconds": args.seconds, "rows": rows, "targets_met": met})
        if pg:
            drop_pg_schema(pg)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


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
    p.add_argument("--api-load", action="store_true", help="the lag under propbot serve at half its max rate")
    args = p.parse_args()
    asyncio.run(run_api_load(args) if args.api_load else run(args))


if __name__ == "__main__":
    main()
