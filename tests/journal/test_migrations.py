"""`alembic upgrade head` on an empty database gives exactly the schema the code uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from engine.persistence.tables import metadata

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
