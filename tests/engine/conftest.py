from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.config import EngineSettings
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock


@pytest.fixture
def db_url(journal_url: str) -> str:
    """The service tests run on both journals: SQLite, and PostgreSQL when PROPBOT_TEST_PG_URL is set."""
    return journal_url


@pytest.fixture
def fake() -> FakeExchange:
    return FakeExchange()


@pytest.fixture
def settings() -> EngineSettings:
    return EngineSettings(
        profile="testnet", symbols=("BTCUSDT",), unknown_grace_s=0.3, reconcile_interval_s=0.01
    )


@pytest.fixture
async def engine(db_url: str, fake: FakeExchange, settings: EngineSettings) -> AsyncIterator[Engine]:
    eng = Engine(SqlJournal(db_url), fake, settings, FrozenClock())
    await eng.start()
    yield eng
    await eng.stop()
