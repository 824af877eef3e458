"""Database engines for the journal: SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

# libpq keepalives and timeouts on every PostgreSQL connection: a half-open connection (a network
# partition, a host that vanished) fails in seconds instead of blocking its caller — the journal's
# writer thread, the mirror's insert — until the kernel gives up hours later. A URL that sets one of
# these keeps its own value.
PG_KEEPALIVES: dict[str, int] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                                 "keepalives_count": 3, "tcp_user_timeout": 10_000, "connect_timeout": 5}  # fmt: skip


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def prepare_sqlite_file(url: str) -> None:
    """Create the journal's folder, and the file itself owner-only: trading history is nobody else's
    business (SQLite gives its -wal and -shm files the same mode)."""
    if not is_sqlite(url) or not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(writer, reader). On SQLite the writer opens every transaction with BEGIN IMMEDIATE so the
    chain read and the insert happen under one write lock; readers stay deferred and never block it."""
    if not is_sqlite(url):
        eng = create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=pg_connect_args(url)
        )
        return eng, eng
    return _sqlite_engine(url, "BEGIN IMMEDIATE"), _sqlite_engine(url, "BEGIN")


def pg_connect_args(url: str) -> dict[str, Any]:
    """PG_KEEPALIVES less what the URL's own query already sets."""
    given = make_url(url).query
    return {k: v for k, v in PG_KEEPALIVES.items() if k not in given}


def _sqlite_engine(url: str, begin_sql: str) -> Engine:
    prepare_sqlite_file(url)
    eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (SQLAlchemy's documented recipe)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)

    return eng
