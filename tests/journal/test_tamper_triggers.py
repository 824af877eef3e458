"""Append-only enforced by the database: UPDATE, DELETE (and TRUNCATE on PostgreSQL) on journal fail,
and on PostgreSQL the engine can run as a role that may only SELECT and INSERT."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from engine.persistence.migrate import upgrade
from engine.persistence.outbox_reader import open_row_reader
from engine.persistence.outbox_source import OutboxSource
from engine.persistence.relay_lock import PgRelayLock
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from tests.conftest import PG_SKIP, PG_URL
from tests.journal.test_sql_journal import entry

ROOT = Path(__file__).resolve().parents[2]
ENGINE_ROLE = "propbot_engine"
RELAY_ROLE = "propbot_relay"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE journal SET actor = 'mallory' WHERE seq = 1",
        "UPDATE journal SET reason = 'x'",
        "DELETE FROM journal WHERE seq > 1",
        "DELETE FROM journal",
    ],
)
def test_update_and_delete_are_refused_by_the_database(journal: SqlJournal, sql: str) -> None:
    journal.append([entry("a", 1)])
    journal.append([entry("a", 2, "preflight", "NEW", "PREFLIGHT")])
    engine = create_engine(journal.url)
    with pytest.raises(DBAPIError, match="journal is append-only"), engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()
    assert replay(journal.scan()).rows == 2


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(journal_url: str) -> None:
    if not journal_url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's")
    j = SqlJournal(journal_url)
    j.append([entry("a", 1)])
    engine = create_engine(journal_url)
    with pytest.raises(DBAPIError, match="journal is append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE journal"))
    engine.dispose()
    assert j.count() == 1
    j.close()


def _as_role(url: str, role: str) -> str:
    """The schema URL with the session role set at connect (the same as SET ROLE)."""
    return url.replace("options=", f"options=-crole%3D{role}%20", 1)


@pytest.mark.postgres
def test_the_engine_role_may_select_and_insert_only(journal_url: str) -> None:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    if not journal_url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's")
    admin = create_engine(journal_url)
    with admin.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        # The set-up docs/SECURITY.md gives, for the schema the journal lives in
        conn.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {ENGINE_ROLE} NOLOGIN; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
        )
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {ENGINE_ROLE}"))
        conn.execute(text(f"GRANT SELECT, INSERT ON journal TO {ENGINE_ROLE}"))
        conn.execute(text(f"GRANT SELECT ON alembic_version TO {ENGINE_ROLE}"))
    admin.dispose()
    url = _as_role(journal_url, ENGINE_ROLE)
    upgrade(url)  # start-up's migrate step is a no-op read for the engine role
    j = SqlJournal(url)
    j.append([entry("a", 1)])  # INSERT works, through the engine's own writer
    j.append([entry("a", 2, "preflight", "NEW", "PREFLIGHT")])
    assert replay(j.scan()).rows == 2
    j.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == ENGINE_ROLE
    for sql in (
        "UPDATE journal SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM journal WHERE seq = 2",
        "TRUNCATE journal",
        "DROP TRIGGER journal_no_update_delete ON journal",
        "ALTER TABLE journal DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
    ):
        with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), engine.begin() as conn:
            conn.execute(text(sql))
    engine.dispose()


def _create_role(conn: Connection, role: str) -> None:
    conn.execute(
        text(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    )


@pytest.mark.postgres
def test_the_relay_roles_read_the_journal_and_keep_their_cursor_only(journal_url: str) -> None:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    if not journal_url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's")
    j = SqlJournal(journal_url)
    j.append([entry("a", 1)])
    j.close()
    admin = create_engine(journal_url)
    with admin.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        # docs/SECURITY.md: the separate relay's role, and the engine role's extra grant for the relay
        # inside the API process
        for role in (RELAY_ROLE, ENGINE_ROLE):
            _create_role(conn, role)
            conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE ON relay_cursor TO {role}"))
        conn.execute(text(f"GRANT SELECT ON journal TO {RELAY_ROLE}"))
        conn.execute(text(f"GRANT SELECT, INSERT ON journal TO {ENGINE_ROLE}"))
    admin.dispose()
    for role in (RELAY_ROLE, ENGINE_ROLE):
        url = _as_role(journal_url, role)
        assert [row[0] for row in asyncio.run(_rows_after(url, 0))] == [1]
        lock = PgRelayLock(url, f"{role}-{uuid.uuid4().hex[:6]}", "test")  # one relay per source
        try:
            assert lock.try_acquire()
            assert lock.check()
        finally:
            lock.close()
        source = OutboxSource(url)
        try:
            assert source.load_cursor(role) == 0
            source.save_cursor(role, 1)  # the first save inserts the row, the next ones update it
            source.save_cursor(role, 1)
            assert source.load_cursor(role) == 1
        finally:
            source.close()
    relay = create_engine(_as_role(journal_url, RELAY_ROLE))
    for sql in ("INSERT INTO journal SELECT * FROM journal WHERE seq = 1", "DELETE FROM relay_cursor"):
        with pytest.raises(DBAPIError, match="permission denied"), relay.begin() as conn:
            conn.execute(text(sql))
    relay.dispose()


async def _rows_after(url: str, after: int) -> list[tuple[object, ...]]:
    reader = open_row_reader(url)
    try:
        return list(await reader.rows_after(after, 10))
    finally:
        await reader.close()


def test_alembic_by_hand_creates_an_owner_only_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    env = {**os.environ, "PROPBOT_DB_URL": f"sqlite:///{path}"}
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    j = SqlJournal(f"sqlite:///{path}")
    j.append([entry("a", 1)])
    j.close()
    engine = create_engine(f"sqlite:///{path}")
    with pytest.raises(DBAPIError, match="journal is append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM journal"))
    engine.dispose()
