"""The outbox relay's durable cursor: per journal source, the last seq JetStream acknowledged.

It lives in the journal's own database (table relay_cursor, migration 0003) so a relay needs one URL,
and it is an ordinary writable table: the append-only triggers guard the journal table only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from engine.journal import format_ts
from engine.persistence.tables import relay_cursor


def load_cursor(engine: Engine, source: str) -> int:
    """The last acknowledged seq of `source`, 0 when it never published."""
    with engine.connect() as conn:
        value = conn.execute(select(relay_cursor.c.last_seq).where(relay_cursor.c.source == source)).scalar()
    return 0 if value is None else int(value)


def save_cursor(engine: Engine, source: str, last_seq: int) -> None:
    """Move the cursor to `last_seq` (never backwards: a second relay that lags cannot rewind it)."""
    now = format_ts(datetime.now(UTC))
    with engine.begin() as conn:
        current = conn.execute(
            select(relay_cursor.c.last_seq).where(relay_cursor.c.source == source).with_for_update()
        ).scalar()
        if current is None:
            conn.execute(relay_cursor.insert().values(source=source, last_seq=last_seq, updated_at=now))
        elif last_seq > int(current):
            conn.execute(
                relay_cursor.update()
                .where(relay_cursor.c.source == source)
                .values(last_seq=last_seq, updated_at=now)
            )
