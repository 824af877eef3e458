"""`alembic upgrade head` on an empty database gives exactly the schema the code uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from engine.persistence.migrate import alembic_config
from engine.persistence.sql_journal import SqlJournal
from engine.persistence.tables import metadata
from tests.journal.test_sql_journal import entry

ROOT = Path(__file__).resolve().parents[2]


def test_migrated_schema_equals_the_code_metadata(journal_url: str) -> None:
    engine = create_engine(journal_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_no_code_updates_or_deletes_journal_rows() -> None:
    found = subprocess.run(
        ["grep", "-rniE", r"(update|delete from)\s+\"?journal", "engine", "adapters", "api", "migrations"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.stdout == "", found.stdout


def test_a_new_sqlite_journal_is_owner_only(tmp_path: Path) -> None:
    from engine.persistence.migrate import upgrade

    path = tmp_path / "sub" / "journal.db"
    upgrade(f"sqlite:///{path}")
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_append_only_revision_downgrades_and_upgrades(journal_url: str) -> None:
    """0002 adds only triggers (outside the metadata compared above): down removes them, up restores."""
    cfg = alembic_config(journal_url)
    engine = create_engine(journal_url)
    command.downgrade(cfg, "0001")
    with engine.begin() as conn:  # the code writes engine_id (0004): a row of the 0001 shape by hand
        conn.execute(text("INSERT INTO journal VALUES (1, 'order', 'a', 1, 'create', NULL, 'NEW', '{}', "
                          "'tester', '', 1, '2026-01-01T00:00:00.000000Z', :z, :z)"), {"z": "0" * 64})  # fmt: skip
        conn.execute(text("DELETE FROM journal"))  # allowed again without the triggers
    command.upgrade(cfg, "head")
    j = SqlJournal(journal_url)
    j.append([entry("a", 1)])  # the triggers are per row: there must be one to refuse
    j.close()
    with pytest.raises(DBAPIError, match="journal is append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM journal"))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()
