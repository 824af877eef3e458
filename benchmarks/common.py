"""Helpers shared by the benchmark scripts: a printed table, a JSON result file, RSS, a fresh journal."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PG_URL = os.environ.get("PROPBOT_BENCH_PG_URL") or os.environ.get("PROPBOT_TEST_PG_URL", "")


def table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    cols = list(rows[0])
    widths = [max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def temp_sqlite_url(name: str) -> tuple[str, Path]:
    """A database file in a fresh temp folder, removed when the benchmark exits (a 1M-row journal is ~350 MB)."""
    folder = Path(tempfile.mkdtemp(prefix="propbot-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return f"sqlite:///{folder / name}", folder / name


# The journal's columns in the order the raw floors insert them (the engine's own table, engine.persistence)
JOURNAL_COLS = (
    "seq, stream, stream_id, version, trigger, from_state, to_state, payload, actor, reason, schema_version, "
    "created_at, prev_hash, hash"
)
RAW_INSERT = f"INSERT INTO journal ({JOURNAL_COLS}) VALUES ({','.join('?' * 14)})"


def raw_sqlite(path: str | Path) -> sqlite3.Connection:
    """A raw sqlite3 connection as the journal's writer configures its file: WAL, synchronous=FULL (every
    COMMIT durable), autocommit mode so the floor says BEGIN IMMEDIATE / COMMIT itself."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def fresh_pg_schema(tag: str) -> str | None:
    """A new empty schema on the PostgreSQL server, or None when no server URL is configured."""
    if not PG_URL:
        return None
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    eng = create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    schema = url.rsplit("%3D", 1)[1]
    eng = create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    eng.dispose()


# -- a simulator in a child process, signed requests, latency percentiles (bench_client.py) ---------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_simulator(port: int, api_key: str, api_secret: str) -> None:
    from adapters.simulator.server import run_simulator

    big = 10**12  # rate limits lifted: the benchmark measures the HTTP path, not the governor
    run_simulator(
        "127.0.0.1", port, api_key, api_secret, weight_limit=big, order_limit_10s=big, order_limit_1d=big
    )


@contextmanager
def simulator_process(api_key: str, api_secret: str, start_timeout_s: float = 20.0) -> Iterator[str]:
    """The simulator (uvicorn, one worker, rate limits lifted) in a spawned child on 127.0.0.1; yields its base URL."""
    import multiprocessing
    import time

    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve_simulator, args=(port, api_key, api_secret), daemon=True
    )
    proc.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                httpx.get(f"{base}/api/v3/ping", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise RuntimeError("simulator did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.join(timeout=10)


def hmac_signed_query(params: dict[str, str], secret: str) -> str:
    """Binance HMAC signing with the stdlib only: encode once, sign those bytes, append the signature."""
    import hashlib
    import hmac
    import time
    from urllib.parse import urlencode

    query = urlencode({**params, "timestamp": str(time.time_ns() // 1_000_000)})
    return f"{query}&signature={hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()}"


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    import statistics

    ordered = sorted(latencies_s)
    return statistics.median(ordered) * 1e3, ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1e3


def wait_http(url: str, proc: Any, timeout_s: float = 60.0) -> None:
    """Poll `url` until it answers 200; `proc` (a subprocess.Popen) exiting first, or the deadline, raises."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 in {timeout_s}s")
