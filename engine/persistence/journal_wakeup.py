"""Wake-ups on journal appends: PostgreSQL LISTEN on the channel migration 0003's trigger notifies, and
on SQLite a cheap check of `PRAGMA data_version`.

Only a wake-up: a wake-up says "something committed", the listener never reads rows, and the relay
re-reads the journal by seq. A lost wake-up costs one poll interval, not a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable

import psycopg
from sqlalchemy import make_url

from engine.persistence.outbox_source import libpq_conninfo

CHANNEL = "propbot_journal"


async def listen_for_appends(
    url: str, wake: Callable[[], None], on_listening: Callable[[bool], None]
) -> None:
    """Call `wake` on every notification until cancelled; raises when the connection fails (the caller
    supervises and restarts it; it polls meanwhile)."""
    conn = await psycopg.AsyncConnection.connect(libpq_conninfo(url), autocommit=True)
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
        on_listening(True)
        wake()  # rows committed before LISTEN took effect are read now
        async for _note in conn.notifies():
            wake()
    finally:
        on_listening(False)
        await asyncio.shield(conn.close())


async def watch_sqlite_commits(
    url: str, wake: Callable[[], None], on_listening: Callable[[bool], None], every_s: float,
    idle_every_s: float, idle_after_s: float = 1.0,
) -> None:  # fmt: skip
    """Call `wake` whenever another connection committed to the SQLite file: checked every `every_s`
    while the journal changed in the last `idle_after_s`, every `idle_every_s` after that.

    `PRAGMA data_version` changes when any other connection (another process or this one's other
    connections) commits; it reads the WAL index in shared memory, a few microseconds, so checking
    often costs far less than re-reading the journal on a timer (the timer's own wake-up costs more than
    the check: hence the slower pace when idle). It runs on the event loop thread: with busy_timeout 0
    it never blocks (a busy answer counts as a change: the relay then reads)."""
    path = make_url(url).database
    if not path or path == ":memory:":
        raise ValueError("an in-memory SQLite journal has no other writer to watch")
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0, isolation_level=None)
    loop = asyncio.get_running_loop()
    try:
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.OperationalError:  # busy at this very moment: as below, the relay reads anyway
            last = None
        changed_at = loop.time()
        on_listening(True)
        wake()  # rows committed before the watch began are read now
        while True:
            await asyncio.sleep(every_s if loop.time() - changed_at < idle_after_s else idle_every_s)
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.OperationalError:  # busy or locked for a moment: look at the rows instead
                version = None
            if version != last:
                last, changed_at = version, loop.time()
                wake()
    finally:
        on_listening(False)
        with contextlib.suppress(Exception):
            conn.close()
