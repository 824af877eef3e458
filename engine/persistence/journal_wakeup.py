"""Wake-ups on journal appends: PostgreSQL LISTEN on the channel migration 0003's trigger notifies.

Only a wake-up: a notification says "something committed", the listener never reads its payload, and
the relay re-reads the journal by seq. A lost notification costs one poll interval, not a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg

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
