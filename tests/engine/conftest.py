from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import EngineSettings
from engine.persistence.migrate import upgrade
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    upgrade(url)
    return url


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
