"""Takeover time: SIGKILL of the active engine → its standby accepting commands (/readyz 200), over a
journal of --rows rows (default 1,000,000) on PostgreSQL, p50 and max over --runs runs (default 10).

Run: PROPBOT_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     .venv/bin/python benchmarks/bench_takeover.py [--rows 1000000] [--runs 10]

Set-up (not timed): an account schema filled by COPY with validly chained rows (realistic order streams,
hashes from engine.journal.row_hash), the simulator in a child process, one `propbot serve` that replays
the journal and becomes the writer. Each run starts a new standby and waits until it has followed the
journal to its head (a warm standby verifies rows as they come, `leadership.followed_seq` in
/api/status), then SIGKILLs the writer and times until the standby is ready: the lease handover (its next
poll, ≤ 0.1 s), migrate (a no-op), the check that the journal still has the hash it verified, replay of the
rows after it, reconcile with the venue, HOLD restart. The standby becomes the writer of the next run.
`--cold` kills the writer as soon as the standby answers, before it followed: the takeover then replays
and verifies every row.

Raw floor, measured in the same run: a bare process holding the same kind of session lock is SIGKILLed
and a bare poller (every 10 ms) takes the lock; for --cold plus a raw psycopg scan of the whole journal
with json.loads of each payload — the least a takeover that reads the whole journal can cost. The scan
is printed in both modes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_replay import order_rows
from common import PG_URL, ROOT, free_port, save, simulator_process, table

from engine.journal import GENESIS_HASH, RAW_COLUMNS, SCHEMA_VERSION, format_ts, row_hash
from engine.persistence.migrate import upgrade

PROPBOT = Path(sys.executable).with_name("propbot")
KEY, SECRET = "bench-takeover-key", "bench-takeover-secret"
POLL_S = 0.005


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def generate(url: str, rows: int) -> float:
    """COPY `rows` rows (whole order streams) with their chain computed here; returns seconds."""
    import psycopg

    t = time.perf_counter()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    prev, seq = GENESIS_HASH, 0
    cols = ", ".join(RAW_COLUMNS)
    with psycopg.connect(dsn(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY journal ({cols}) FROM STDIN") as copy:
            for i in range(rows // 5):
                for e in order_rows(i):
                    seq += 1
                    created = format_ts(base + timedelta(microseconds=seq))
                    digest = row_hash(prev, seq, e.stream, e.stream_id, e.version, e.trigger, e.from_state,
                                      e.to_state, e.payload_json, e.actor, e.reason, SCHEMA_VERSION, created,
                                      "bench-generator")  # fmt: skip
                    copy.write_row((seq, e.stream, e.stream_id, e.version, e.trigger, e.from_state, e.to_state,
                                    e.payload_json, e.actor, e.reason, SCHEMA_VERSION, created, prev, digest,
                                    "bench-generator"))  # fmt: skip
                    prev = digest
        conn.commit()
    return time.perf_counter() - t


def last_seq(url: str) -> int:
    import psycopg

    with psycopg.connect(dsn(url)) as conn:
        return int(conn.execute("SELECT max(seq) FROM journal").fetchone()[0])  # type: ignore[index]


def _viewer(folder: Path, env: dict[str, str]) -> str:
    """A viewer token in <folder>/operators.json (copied into every standby's data dir)."""
    done = subprocess.run(
        [str(PROPBOT), "operators", "add", "bench", "--role", "viewer", "--profile", "testnet", "--data-dir",
         str(folder)], env=env, capture_output=True, text=True, check=True, cwd=folder.parent,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def raw_scan_s(url: str) -> float:
    import psycopg

    loads = json.loads
    with psycopg.connect(dsn(url)) as conn, conn.cursor(name="raw_scan") as cur:
        cur.itersize = 10_000
        t = time.perf_counter()
        cur.execute("SELECT * FROM journal ORDER BY seq")
        for row in cur:
            loads(row[7])
        return time.perf_counter() - t


_HOLDER = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s)", (int(sys.argv[2]),))
print("held", flush=True)
time.sleep(3600)
"""


def raw_handover_s(url: str) -> float:
    """SIGKILL a bare lock holder; time until a bare poller holds the lock."""
    import psycopg

    key = 0x7A6B5C4D
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, dsn(url), str(key)], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"held"
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        t = time.perf_counter()
        holder.send_signal(signal.SIGKILL)
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.01)
        elapsed = time.perf_counter() - t
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    holder.wait()
    return elapsed


class Engine:
    """One `propbot serve` of the account (testnet profile routed to the simulator)."""

    def __init__(
        self, folder: Path, config: Path, env: dict[str, str], operators: Path | None = None
    ) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        if operators is not None:
            shutil.copy2(operators / "operators.json", folder / "operators.json")
        self.log = (folder / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [str(PROPBOT), "serve", "--config", str(config), "--data-dir", str(folder), "--port", str(self.port)],
            cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def followed(self, token: str) -> int:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/api/status", timeout=5,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        except httpx.TransportError:
            return -1
        return int(r.json()["components"]["leadership"]["detail"].get("followed_seq") or 0)

    def readyz(self) -> tuple[int, str]:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
        except httpx.TransportError:
            return 0, "down"
        return r.status_code, str(r.json().get("reason") or r.json().get("status"))

    def wait(self, want: tuple[int, str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.readyz() != want:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engine on port {self.port} never answered {want}: see {self.log.name}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cold", action="store_true", help="kill before the standby followed the journal")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still drops its schema
    if not PG_URL:
        print("bench_takeover: skipped (set PROPBOT_TEST_PG_URL or PROPBOT_BENCH_PG_URL to a PostgreSQL URL)")
        return
    from sqlalchemy import create_engine, text

    account = f"bench{uuid.uuid4().hex[:8]}"
    schema = f"propbot_{account}"
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    folder = Path(tempfile.mkdtemp(prefix="propbot-bench-takeover-"))
    engines: list[Engine] = []
    try:
        upgrade(url)
        built = generate(url, args.rows)
        print(f"generated {args.rows:,} rows by COPY in {built:.1f}s")
        floor_scan = raw_scan_s(url)
        floor_lock = statistics.median(raw_handover_s(PG_URL) for _ in range(3))
        with simulator_process(KEY, SECRET) as sim:
            config = folder / "config.yaml"
            config.write_text(yaml.safe_dump(_config(sim, account)))
            scrub = ("SAFE_MODE", "EXCHANGE_PROFILE", "PROPBOT_DATA_DIR", "PROPBOT_DB_URL", "PROPBOT_ENV_FILE",
                     "PROPBOT_ACCOUNT")  # fmt: skip
            env = {k: v for k, v in os.environ.items() if k not in scrub}
            env.update({f"BINANCE_API_KEY_TESTNET_{account.upper()}": KEY,
                        f"BINANCE_API_SECRET_TESTNET_{account.upper()}": SECRET})  # fmt: skip
            token = _viewer(folder / "ops", env)
            active = Engine(folder / "e0", config, env)
            engines.append(active)
            t = time.perf_counter()
            active.wait((200, "ready"), timeout_s=900)
            first_start = time.perf_counter() - t
            print(f"first writer ready in {first_start:.1f}s (replay of the generated journal)")
            times: list[float] = []
            for run in range(1, args.runs + 1):
                standby = Engine(folder / f"e{run}", config, env, operators=folder / "ops")
                engines.append(standby)
                standby.wait((503, "standby"), timeout_s=120)
                if not args.cold:
                    head = last_seq(url)
                    deadline = time.monotonic() + 900
                    while standby.followed(token) < head:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the standby never caught up with the journal")
                        time.sleep(0.2)
                t = time.perf_counter()
                active.kill()
                while standby.readyz()[0] != 200:
                    if standby.proc.poll() is not None:
                        raise RuntimeError(f"the standby exited: see {standby.log.name}")
                    time.sleep(POLL_S)
                times.append(time.perf_counter() - t)
                print(f"run {run}: takeover {times[-1]:.2f}s")
                active = standby
    finally:
        for e in engines:
            if e.proc.poll() is None:
                e.stop()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
    floor = floor_lock + (floor_scan if args.cold else 0.0)  # a warm standby reads no prefix at takeover
    p50, worst = statistics.median(times), max(times)
    rows = [{"journal rows": args.rows, "standby": "cold" if args.cold else "warm", "runs": len(times), "takeover p50 s": p50, "takeover max s": worst,
             "raw floor s": floor, "p50 / floor": p50 / floor,
             "raw lock handover s": floor_lock, "raw scan+json s": floor_scan}]  # fmt: skip
    table("takeover: SIGKILL of the writer -> standby ready", rows)
    save(
        "takeover_cold" if args.cold else "takeover",
        {"rows": rows, "runs_s": times, "args": vars(args), "generate_s": built},
    )


def _config(sim_url: str, account: str) -> dict[str, Any]:
    ws = sim_url.replace("http://", "ws://")
    return {
        "profile": "testnet", "exchange": "binance_spot", "account": account,
        "routing": {"base_url_rest": sim_url, "base_url_ws": ws},
        "journal": {"url": PG_URL}, "safe_mode": True, "ws": {"enabled": False},
        "preflight": {"time_skew_ms_max": 1000, "ping_timeout_ms": 1500, "permissions_required": ["SPOT_TRADE"]},
        "binance": {"poll_interval_s": 0.5, "timeout_s": 5},
    }  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
