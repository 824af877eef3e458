"""Durable append: the journal's real path next to raw driver commits of the same row, in one run.

Run: .venv/bin/python benchmarks/bench_journal.py [--n 3000]

- propbot SqlJournal.append: build the row, canonical JSON, SHA-256 chain, INSERT, COMMIT (one transition
  per transaction; SQLite WAL + synchronous=FULL, BEGIN IMMEDIATE; PostgreSQL with the chain's advisory lock)
- raw sqlite3 / raw psycopg: the same prebuilt row into the same migrated table, one INSERT + COMMIT each
Target: propbot ≥ 0.5× raw on SQLite.
"""

from __future__ import annotations

import argparse
import time

from common import (
    JOURNAL_COLS,
    PG_URL,
    RAW_INSERT,
    drop_pg_schema,
    fresh_pg_schema,
    raw_sqlite,
    save,
    table,
    temp_sqlite_url,
)

from engine.journal import NewEntry
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal

PAYLOAD = {"orderId": 123456, "executedQty": "0.00100000", "venueStatus": "FILLED", "tradeIds": [98765]}
COLS = JOURNAL_COLS


def entry(i: int) -> NewEntry:
    return NewEntry("order", f"bench-{i}", 1, "create", None, "NEW", PAYLOAD, "system")


def raw_row(i: int) -> tuple[object, ...]:
    return (i, "order", f"bench-{i}", 1, "create", None, "NEW", '{"executedQty":"0.00100000"}', "system", "", 1,
            "2026-11-25T00:00:00.000000Z", "0" * 64, "f" * 64)  # fmt: skip


def bench_propbot(url: str, n: int) -> float:
    j = SqlJournal(url)
    j.append([entry(0)])  # warm: connection, compiled statement
    t = time.perf_counter()
    for i in range(1, n + 1):
        j.append([entry(i)])
    rate = n / (time.perf_counter() - t)
    j.close()
    return rate


def bench_raw_sqlite(path: str, n: int) -> float:
    conn = raw_sqlite(path)
    sql = RAW_INSERT
    base = 10_000_000
    t = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, raw_row(base + i))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - t)
    conn.close()
    return rate


def bench_raw_psycopg(url: str, n: int) -> float:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    sql = f"INSERT INTO journal ({COLS}) VALUES ({','.join(['%s'] * 14)})"
    base = 10_000_000
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        for i in range(n):
            conn.execute(sql, raw_row(base + i))
            conn.commit()
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    rows = []
    url, path = temp_sqlite_url("append.db")
    upgrade(url)
    raw = bench_raw_sqlite(str(path), args.n)
    ours = bench_propbot(url, args.n)
    rows.append({"backend": "sqlite", "raw commits/s": raw, "propbot appends/s": ours, "ratio": ours / raw,
                 "target": "≥ 0.5"})  # fmt: skip
    pg = fresh_pg_schema("append")
    if pg is not None:
        upgrade(pg)
        try:
            raw = bench_raw_psycopg(pg, args.n)
            ours = bench_propbot(pg, args.n)
            rows.append({"backend": "postgresql", "raw commits/s": raw, "propbot appends/s": ours,
                         "ratio": ours / raw, "target": "reported"})  # fmt: skip
        finally:
            drop_pg_schema(pg)
    else:
        print(f"(PostgreSQL skipped: set PROPBOT_BENCH_PG_URL; PG_URL={PG_URL!r})")
    table(f"durable single-transition append, n={args.n}", rows)
    save("journal_append", {"n": args.n, "rows": rows})


if __name__ == "__main__":
    main()
