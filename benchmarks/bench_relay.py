"""The journal outbox relay: throughput into JetStream beside raw nats-py publishes, and commit→receipt lag.

Run: .venv/bin/python benchmarks/bench_relay.py [--n 20000] [--batch 512] [--rate 200] [--seconds 10]
     .venv/bin/python benchmarks/bench_relay.py --api-load [--seconds 10] [--journal both] [--trace]

- relay: OutboxRelay publishing a pre-filled journal (read by seq, encode, publish_async with up to two
  batches unacknowledged, the cursor following the acks in order) until its cursor reaches the last row;
- raw nats-py: the same messages (subjects, headers with Nats-Msg-Id, payloads) published with
  js.publish_async in the same batches, each batch's acks awaited: no journal read, no cursor commit.
  Target: relay ≥ 0.5× raw.
- lag: rows appended at a steady --rate (one per commit) for --seconds while `propbot relay` runs as its
  own process; a JetStream ordered consumer notes each row's receipt; lag = receipt − the appender's
  return from the commit, p50/p99 (relay_*: a core subscriber's receipt of the relay's publish).
- --api-load (only this): a real `propbot serve --profile paper` (run by traced_serve.py, which notes when
  each row's commit returned in the engine); its maximum order rate is measured first (bench_api.py's wrk
  load, 5 s, 32 connections), then paced_orders.py sends orders at half that rate for --seconds while
  `propbot relay` publishes its journal and a JetStream ordered consumer notes each row's receipt.
  lag = receipt − the engine's commit returned (target, issue 11: p99 < 100 ms); beside it receipt − the
  row's created_at (taken inside the append transaction before the INSERT: an upper bound that adds the
  engine's own commit time, shown as engine_commit_p99), the CPU each process used in the window (share of
  one core; "other" is work outside the benchmark), cpu_waiting_pct (Linux PSI: the share of the window in
  which some task waited for a CPU), and the floor: the plain-append lag run above at the
  same rows/s on a fresh journal of the same kind (no API). --journal picks one kind; --trace also runs
  the relay under traced_relay.py and prints each hop's p50/p99 (commit -> wake-up -> read -> publish ->
  ack -> receipt) and the slowest rows; --relay-from DIR runs the relay of another checkout (A/B).
Each runs on SQLite and, when PROPBOT_BENCH_PG_URL/PROPBOT_TEST_PG_URL is set, on PostgreSQL. A private
nats-server (file store in a temp folder) is started when nats-server is installed, else --nats is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's (command, user+system CPU seconds) from /proc: who used the cores during a run."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(d.name)] = (
            cmd or stat[stat.index("(") + 1 : stat.rindex(")")],
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return out


def cpu_pressure_us() -> int | None:
    """Microseconds some task waited for a CPU (Linux PSI, /proc/pressure/cpu), None where unavailable."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(line.rsplit("total=", 1)[1])


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                roles: dict[int, str], seconds: float) -> dict[str, float]:  # fmt: skip
    """Share of one core per role over the window (pids not named: by command; other work: 'other')."""
    use: dict[str, float] = {}
    for pid, (cmd, t) in after.items():
        spent = t - before.get(pid, (cmd, 0.0))[1]
        if spent <= 0:
            continue
        role = roles.get(pid) or ("postgres" if cmd.startswith("postgres") else
                                  "nats-server" if "nats-server" in cmd else "other")  # fmt: skip
        use[role] = use.get(role, 0.0) + spent
    return {k: round(v / seconds, 2) for k, v in sorted(use.items(), key=lambda kv: -kv[1])}


def trace_breakdown(trace: dict[str, Any], rows: dict[int, tuple[float, float]]) -> dict[str, Any]:
    """p50/p99 of each hop: created_at -> the engine's commit returned (traced_serve.py) -> the wake-up the relay read the row after (commit, NOTIFY or
    the SQLite commit watch) -> read start -> read returned -> publish call -> ack -> consumer receipt."""
    import bisect

    wakes: list[float] = trace["wakes"]
    committed: dict[int, float] = trace["committed"]
    hops: dict[str, list[float]] = {"created_to_commit": [], "commit_to_wake": [], "created_to_wake": [], "wake_to_read_start": [], "read": [],
                                    "read_to_publish": [], "publish_to_ack": [], "ack_to_receipt": []}  # fmt: skip
    worst: list[tuple[float, int, dict[str, float]]] = []
    for seq, (created, received) in rows.items():
        t = trace["rows"].get(str(seq))
        if t is None or not all(t):
            continue
        read_start, read_end, pub, ack = t
        i = bisect.bisect_right(wakes, read_start) - 1
        wake = wakes[i] if i >= 0 and wakes[i] >= created else read_start  # read on a poll, not a wake-up
        row = {"created_to_commit": committed[seq] - created, "commit_to_wake": wake - committed[seq],
               "created_to_wake": wake - created, "wake_to_read_start": read_start - wake,
               "read": read_end - read_start, "read_to_publish": pub - read_end, "publish_to_ack": ack - pub,
               "ack_to_receipt": received - ack}  # fmt: skip
        for name, v in row.items():
            hops[name].append(v * 1000)
        worst.append((received - committed[seq], seq, {k: round(v * 1000, 1) for k, v in row.items()}))
    worst.sort(reverse=True)
    out: dict[str, Any] = {
        name: {"p50": _pct(sorted(v), 0.5), "p99": _pct(sorted(v), 0.99)} for name, v in hops.items() if v
    }
    # the slowest rows' hops, and when they were committed (seconds into the run): one stall or many
    t0 = min(committed.values())
    out["slowest"] = [
        {"seq": seq, "at_s": round(committed[seq] - t0, 2), **h}
        for _, seq, h in worst[:: max(1, len(worst) // 200)][:5]
    ]
    return out


async def bench_api_lag(
    journal_url: str | None, nats_url: str, seconds: float, trace: bool = False, relay_from: Path = ROOT
) -> dict[str, Any]:
    """Commit → consumer receipt while `propbot serve` takes orders at half its measured maximum rate."""
    tmp = Path(tempfile.mkdtemp(prefix="propbot-bench-apilag-"))
    data = tmp / "data"
    source = f"a{uuid.uuid4().hex[:8]}"
    try:
        serve_trace = tmp / "serve-trace.json"  # when each row's commit returned in the engine
        wrapper = [sys.executable, str(ROOT / "benchmarks" / "traced_serve.py"), str(serve_trace), "--"]
        with paper_server(data, journal_url, wrapper) as (server, base):
            token = token_of(data, "trader")
            wrk_orders(base, token, 2, 32, tmp)  # warm-up
            peak = wrk_orders(base, token, 5, 32, tmp)
            rate = peak["req_s"] / 2
            db_url = journal_url or f"sqlite:///{data / 'journal.db'}"
            status_port = free_port()
            relay_args = ["--db", db_url, "--nats", nats_url, "--source", source,
                          "--status-port", str(status_port)]  # fmt: skip
            trace_file = tmp / "trace.json"
            command = ([sys.executable, str(ROOT / "benchmarks" / "traced_relay.py"), str(trace_file), "--"] if trace
                       else [sys.executable, "-m", "api.cli", "relay"])  # fmt: skip
            relay = subprocess.Popen(command + relay_args, cwd=relay_from, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
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
                cpu_before, pressure_before = cpu_seconds(), cpu_pressure_us()
                load = await asyncio.create_subprocess_exec(
                    sys.executable, str(ROOT / "benchmarks" / "paced_orders.py"), base, token, str(rate),
                    str(seconds), stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await load.communicate()
                cpu = cpu_by_role(cpu_before, cpu_seconds(), {server.pid: "serve", relay.pid: "relay",
                                  load.pid: "load generator", os.getpid(): "consumer (bench)"},
                                  time.time() - start)  # fmt: skip
                orders = json.loads(out)
                cpu["load generator"] = round(orders["cpu_s"] / (time.time() - start), 2)  # gone from /proc
                pressure_after = cpu_pressure_us()
                window_us = (time.time() - start) * 1e6
                pressure = (
                    round((pressure_after - pressure_before) / window_us * 100)
                    if pressure_after is not None and pressure_before is not None
                    else None
                )
                await _relay_idle(status_port)
                await asyncio.sleep(0.5)  # the last publishes reach the consumer
                await sub.unsubscribe()
                await nc.close()
            finally:
                relay.terminate()
                relay.wait(timeout=30)
        committed = {int(k): v for k, v in json.loads(serve_trace.read_text()).items()}
        traced = json.loads(trace_file.read_text()) if trace else {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {
        row[0]: (parse_ts(row[11]).timestamp(), at) for row, at in ((decode_row(d), at) for d, at in received)
    }
    rows = {seq: v for seq, v in rows.items() if v[0] >= start}
    lags = sorted((at - committed[seq]) * 1000 for seq, (_, at) in rows.items())
    upper = sorted((at - created) * 1000 for created, at in rows.values())
    engine = sorted((committed[seq] - created) * 1000 for seq, (created, _) in rows.items())
    extra: dict[str, Any] = {"cpu_cores": cpu}
    if trace:
        extra["hops_ms"] = trace_breakdown({**traced, "committed": committed}, rows)
    return {
        "max_req_s": peak["req_s"],
        "load_req_s": round(rate, 1),
        "achieved_req_s": orders["achieved_req_s"],
        "orders_non_200": orders["non_2xx"] + orders["errors"],
        "order_p99_ms": orders["p99_ms"],
        "rows": len(lags),
        "cpu_waiting_pct": pressure,
        "lag_p50_ms": _pct(lags, 0.5),
        "lag_p90_ms": _pct(lags, 0.9),
        "lag_p99_ms": _pct(lags, 0.99),
        "lag_max_ms": round(lags[-1], 2),
        "from_created_p50_ms": _pct(upper, 0.5),
        "from_created_p99_ms": _pct(upper, 0.99),
        "engine_commit_p99_ms": _pct(engine, 0.99),
        **extra,
    }


async def run_api_load(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:  # as bench_api.py: the load generator is a Debian package
        print("--api-load: wrk is not installed (apt-get install wrk): skipped")
        return
    nats_url, proc = private_broker()
    try:
        backends: list[tuple[str, str | None]] = [("sqlite", None)] if args.journal != "postgres" else []
        pg = fresh_pg_schema("apilag") if args.journal != "sqlite" else None
        if pg:
            backends.append(("postgres", pg))
        rows: list[dict[str, Any]] = []
        for name, url in backends:
            loaded = await bench_api_lag(url, nats_url, args.seconds, args.trace, args.relay_from)
            for key in ("cpu_cores", "hops_ms"):
                if key in loaded:
                    print(f"{name} {key}: {json.dumps(loaded.pop(key), indent=1)}")
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
    p.add_argument(
        "--journal", choices=["sqlite", "postgres", "both"], default="both", help="--api-load: which"
    )
    p.add_argument("--relay-from", type=Path, default=ROOT,
                   help="--api-load: run `propbot relay` from this checkout (A/B against another version)")  # fmt: skip
    p.add_argument(
        "--trace", action="store_true", help="--api-load: per-hop times (relay wrapped in traced_relay.py)"
    )
    args = p.parse_args()
    if args.trace and args.relay_from.resolve() != ROOT:
        p.error("--trace wraps this checkout's relay: it does not go with --relay-from")
    asyncio.run(run_api_load(args) if args.api_load else run(args))


if __name__ == "__main__":
    main()
