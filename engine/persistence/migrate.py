"""Run the alembic migrations programmatically (used at start and by tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

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
