from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


async def go_live(engine: Engine) -> None:
    """Straight to LIVE without the guards: order-flow tests; tests/engine/test_sessions.py tests arming."""
    for trigger in ("arm", "go_live"):
        await engine.sessions.transition(trigger, "ops")


@asynccontextmanager
async def running(
    db_url: str, fake: FakeExchange, settings: EngineSettings, *, live: bool = False
) -> AsyncIterator[Engine]:
    """An engine started on `db_url` (replay, reconcile: its report is `engine.report`), stopped after."""
    eng = Engine(SqlJournal(db_url), fake, settings, FrozenClock())
    await eng.start()
    try:
        if live:
            await go_live(eng)
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
async def engine(db_url: str, fake: FakeExchange, settings: EngineSettings) -> AsyncIterator[Engine]:
    async with running(db_url, fake, settings) as eng:
        yield eng
