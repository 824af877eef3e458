"""Shared fixtures. Journal tests run on SQLite always and on PostgreSQL when PROPBOT_TEST_PG_URL is set
(.ci/run sets it; a plain `make test` on a machine without PostgreSQL skips those with that reason)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal

PG_URL = os.environ.get("PROPBOT_TEST_PG_URL", "")
PG_SKIP = "PostgreSQL variant: PROPBOT_TEST_PG_URL is not set (CI sets it; see .ci/run)"


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema(prefix: str = "t", *, migrate: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL schema (migrated unless `migrate` is off), as a URL whose search_path names it;
    dropped with everything in it afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = _pg_schema_url(schema)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def _closing_journals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every SqlJournal opened meanwhile: engines do not own their journal (the runtime closes it),
    so tests that build engines would leave pooled connections to the garbage collector, and over the
    suite PostgreSQL runs out of connections ("too many clients")."""
    opened: list[SqlJournal] = []
    original = SqlJournal.__init__

    def init(self: SqlJournal, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(SqlJournal, "__init__", init)
    try:
        yield
    finally:
        for journal in opened:
            with suppress(Exception):
                journal.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def journal_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A migrated, empty journal database: a temp SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'journal.db'}"
        upgrade(url)
        with _closing_journals(monkeypatch):
            yield url
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    with pg_schema() as url, _closing_journals(monkeypatch):
        yield url


@pytest.fixture
def journal(journal_url: str) -> Iterator[SqlJournal]:
    j = SqlJournal(journal_url)
    yield j
    j.close()


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(simulator, API server on the testnet profile routed to it), shared by one test module."""
    from tests.e2e.server import simulator_and_api  # the API stack is imported only by tests that use it

    with simulator_and_api(tmp_path_factory.mktemp("stack")) as pair:
        yield pair
