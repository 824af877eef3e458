"""Alembic environment: the target is the engine's own metadata, the URL comes from the caller."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from engine.persistence.database import prepare_sqlite_file
from engine.persistence.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("db_url") or context.get_x_argument(as_dictionary=True).get("db_url")
    url = url or config.get_main_option("sqlalchemy.url") or os.environ.get("PROPBOT_DB_URL")
    if not url:
        raise SystemExit("no database URL: set PROPBOT_DB_URL or pass -x db_url=...")
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    prepare_sqlite_file(url)  # a journal file created by `alembic upgrade head` by hand is 0600 too
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
