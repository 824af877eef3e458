"""What the outbox relay reads from a journal database besides new rows (engine.persistence.outbox_reader):
the head, a row's hash, and its own cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from sqlalchemy import make_url, text

from engine.journal import parse_ts
from engine.persistence.database import is_sqlite, make_engines
from engine.persistence.relay_cursor import load_cursor, save_cursor


def libpq_conninfo(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI (for a raw psycopg connection: LISTEN, the relay's reads).

    Query values are percent-encoded: SQLAlchemy renders a space as '+', which libpq takes literally
    (`options=-crole=r -csearch_path=s` would name the role "r+-csearch_path=s")."""
    parsed = make_url(url)
    base = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    query = urlencode(parsed.query, doseq=True, quote_via=quote)
    return f"{base}?{query}" if query else base


class OutboxSource:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        # The reader engine: on SQLite it begins deferred, so the relay never takes the write lock
        # except for its own cursor row
        self._writer, self.engine = make_engines(url)

    def head(self, cursor: int) -> tuple[int, float]:
        """(last seq, seconds since the oldest row after `cursor` was written; 0.0 when none).

        The oldest row after it, not row cursor+1: while the relay waits at a hole (a seq that has not
        committed, or never will), the rows behind the hole are what is waiting."""
        with self.engine.connect() as conn:
            last = conn.execute(text("SELECT MAX(seq) FROM journal")).scalar()
            oldest = conn.execute(
                text("SELECT created_at FROM journal WHERE seq > :s ORDER BY seq LIMIT 1"), {"s": cursor}
            ).scalar()
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - parse_ts(str(oldest))).total_seconds())
        return int(last or 0), age

    def hash_at(self, seq: int) -> str | None:
        """The hash of the row at `seq`, None when the journal has no such row."""
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT hash FROM journal WHERE seq = :s"), {"s": seq}).scalar()
        return None if value is None else str(value)

    def load_cursor(self, source: str) -> int:
        return load_cursor(self._writer, source)

    def save_cursor(self, source: str, last_seq: int) -> None:
        save_cursor(self._writer, source, last_seq)

    def close(self) -> None:
        self._writer.dispose()
        if self.engine is not self._writer:
            self.engine.dispose()
