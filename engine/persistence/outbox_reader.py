"""The relay's read of new journal rows, on the event loop: no worker thread, no pool, one query.

The relay reads after every commit, so what a read costs besides the query is paid per commit: a worker
thread hop (two wake-ups and a GIL hand-over each way) and a pool checkout with its pre-ping cost more
than the SELECT itself. PostgreSQL: one psycopg async connection in autocommit with a prepared query.
SQLite: one stdlib connection whose reads run inline (a WAL reader does not wait for writers: a read of
new rows takes microseconds; in the rare moment SQLite answers busy, the read is retried after a short
sleep, never blocking the loop).

Rows are returned only as a contiguous run from after+1. The PostgreSQL journal assigns seq under a
transaction-scoped advisory lock, so seq N+1 cannot commit before N; the relay does not rely on that
alone: a run stops at the first hole, and the relay waits for the hole to fill instead of skipping it
(tests/outbox/test_late_commit.py commits a later seq first on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import make_url

from engine.journal import RAW_COLUMNS, RawRow
from engine.persistence.database import is_sqlite
from engine.persistence.outbox_source import libpq_conninfo

_COLUMNS = ", ".join(RAW_COLUMNS)
_SQLITE_BUSY_RETRY_S = 5.0  # then the read fails and the relay's episode restarts (shown as ERROR)


def contiguous_run(rows: Sequence[Sequence[Any]], after: int) -> list[RawRow]:
    """The rows from seq after+1 on, up to the first missing seq."""
    run: list[RawRow] = []
    expected = after + 1
    for row in rows:
        if row[0] != expected:
            break
        run.append(tuple(row))
        expected += 1
    return run


class RowReader(Protocol):
    async def rows_after(self, after: int, limit: int) -> list[RawRow]:
        """Up to `limit` rows after seq `after`, stopping before the first missing seq."""
        ...

    async def close(self) -> None: ...


def open_row_reader(url: str, timeout_s: float = 10.0) -> RowReader:
    return SqliteRowReader(url) if is_sqlite(url) else PgRowReader(url, timeout_s)


class PgRowReader:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._conninfo = libpq_conninfo(url)
        self._timeout_s = timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._sql = f"SELECT {_COLUMNS} FROM journal WHERE seq > %s ORDER BY seq LIMIT %s"

    async def rows_after(self, after: int, limit: int) -> list[RawRow]:
        try:
            async with asyncio.timeout(self._timeout_s):  # a server that stopped answering is a failure
                if self._conn is None:
                    self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                cur = await self._conn.execute(self._sql, (after, limit), prepare=True)
                rows = await cur.fetchall()
        except BaseException:
            await self.close()  # possibly broken or mid-query: the next read connects afresh
            raise
        return contiguous_run(rows, after)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())


class SqliteRowReader:
    def __init__(self, url: str) -> None:
        path = make_url(url).database
        if not path or path == ":memory:":
            raise ValueError("an in-memory SQLite journal cannot be relayed: no other process can read it")
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._sql = f"SELECT {_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"

    async def rows_after(self, after: int, limit: int) -> list[RawRow]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _SQLITE_BUSY_RETRY_S
        pause = 0.001
        while True:
            try:
                if self._conn is None:
                    # mode=rw: never create an empty file where the journal should be; timeout 0: a
                    # busy answer comes back at once instead of blocking the event loop
                    uri = f"file:{self._path}?mode=rw"
                    self._conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
                # autocommit: the read transaction ends with the statement, never pinning the WAL
                rows = self._conn.execute(self._sql, (after, limit)).fetchall()
                return contiguous_run(rows, after)
            except sqlite3.OperationalError as exc:
                busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                )
                if not busy or loop.time() > give_up:
                    await self.close()
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
