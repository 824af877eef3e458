"""What the outbox relay reads from a journal database: rows after its cursor, the head, the cursor.

Rows are returned only as a contiguous run from cursor+1. The PostgreSQL journal assigns seq under a
transaction-scoped advisory lock, so seq N+1 cannot commit before N; the relay does not rely on that
alone: a run stops at the first hole, and the relay waits for the hole to fill instead of skipping it
(tests/outbox/test_late_commit.py commits a later seq first on purpose).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import make_url, text

from engine.journal import RAW_COLUMNS, RawRow, parse_ts
from engine.persistence.database import is_sqlite, make_engines
from engine.persistence.relay_cursor import load_cursor, save_cursor

_COLUMNS = ", ".join(RAW_COLUMNS)


def libpq_conninfo(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI (for a raw psycopg connection: LISTEN)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def default_source(url: str) -> str:
    """A relay's source name when none is given: the PostgreSQL schema of the URL's search_path (one
    chain per schema), else "default"."""
    options = str(make_url(url).query.get("options", ""))
    for part in options.split():
        if part.startswith("-csearch_path="):
            schema = part.removeprefix("-csearch_path=").split(",")[0].strip()
            if schema:
                return schema[:64]
    return "default"


class OutboxSource:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        # The reader engine: on SQLite it begins deferred, so the relay never takes the write lock
        # except for its own cursor row
        self._writer, self.engine = make_engines(url)
        self._sql = text(f"SELECT {_COLUMNS} FROM journal WHERE seq > :after ORDER BY seq LIMIT :n")

    def rows_after(self, after: int, limit: int) -> list[RawRow]:
        """Up to `limit` rows after seq `after`, stopping before the first missing seq."""
        with self.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(self._sql, {"after": after, "n": limit})]
        run: list[RawRow] = []
        expected = after + 1
        for row in rows:
            if row[0] != expected:
                break
            run.append(row)
            expected += 1
        return run

    def head(self, cursor: int) -> tuple[int, float]:
        """(last seq, seconds since the oldest row after `cursor` was written; 0.0 when none)."""
        with self.engine.connect() as conn:
            last = conn.execute(text("SELECT MAX(seq) FROM journal")).scalar()
            oldest = conn.execute(
                text("SELECT created_at FROM journal WHERE seq = :s"), {"s": cursor + 1}
            ).scalar()
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - parse_ts(str(oldest))).total_seconds())
        return int(last or 0), age

    def load_cursor(self, source: str) -> int:
        return load_cursor(self._writer, source)

    def save_cursor(self, source: str, last_seq: int) -> None:
        save_cursor(self._writer, source, last_seq)

    def close(self) -> None:
        self._writer.dispose()
        if self.engine is not self._writer:
            self.engine.dispose()
