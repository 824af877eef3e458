"""Migration 0003: the relay cursor table is writable (the append-only triggers are on the journal only)
and, on PostgreSQL, a journal append sends the wake-up NOTIFY at commit."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, make_url

from engine.persistence.relay_cursor import load_cursor, save_cursor
from tests.journal.test_sql_journal import entry


def test_the_cursor_starts_at_zero_moves_forward_only_per_source(journal_url: str) -> None:
    engine = create_engine(journal_url)
    try:
        assert load_cursor(engine, "a") == 0
        save_cursor(engine, "a", 5)
        save_cursor(engine, "a", 9)
        save_cursor(engine, "a", 7)  # a lagging relay cannot rewind it
        save_cursor(engine, "b", 2)
        assert (load_cursor(engine, "a"), load_cursor(engine, "b")) == (9, 2)
    finally:
        engine.dispose()


def test_a_postgres_append_notifies_at_commit(journal_url: str, journal: object) -> None:
    if journal_url.startswith("sqlite"):
        return  # SQLite has no NOTIFY: the relay polls there
    conninfo = make_url(journal_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN propbot_journal")
        schema = listener.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        journal.append([entry("a", 1)])  # type: ignore[attr-defined]
        # Other schemas of the database (other tests, other accounts) notify on the same channel
        got = []
        for n in listener.notifies(timeout=30):
            if n.payload == schema:
                got.append(n)
                break
    assert [(n.channel, n.payload) for n in got] == [("propbot_journal", schema)]
