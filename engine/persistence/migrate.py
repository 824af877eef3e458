"""Run the alembic migrations programmatically (used at start and by tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from engine.persistence.database import prepare_sqlite_file

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["db_url"] = url
    return cfg


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (a no-op when it is already there)."""
    prepare_sqlite_file(url)
    command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str, schema: str) -> None:
    """Create a PostgreSQL schema (an account's journal) when it does not exist yet."""
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.begin() as conn:
            # Looked up first: a least-privilege engine role (docs/SECURITY.md) may not CREATE at all
            found = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
            if found is None:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # the account pattern: a-z0-9_ only
    finally:
        eng.dispose()
