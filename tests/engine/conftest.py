from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from engine.config import ApprovalSettings, EngineSettings
from engine.guardrails.preflight import Check
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from tests.approvals import APPROVER_KEYS, approval_token
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
        profile="testnet", safe_mode=False, symbols=("BTCUSDT",), unknown_grace_s=0.3, reconcile_interval_s=0.01,
        approvals=ApprovalSettings(public_keys=APPROVER_KEYS),
    )  # fmt: skip


async def go_live(engine: Engine) -> None:
    """To LIVE the way an operator gets there: the test approver's signed token, then go_live."""
    risk = Check("risk", True)
    now_s = engine.clock.now().timestamp()
    token = approval_token(engine.sessions.current.session_id, now_s)
    await engine.sessions.guarded("arm", "ops", token, risk)
    await engine.sessions.guarded("go_live", "ops", None, risk)


@asynccontextmanager
async def running(
    db_url: str, fake: FakeExchange, settings: EngineSettings, *, live: bool = False
) -> AsyncIterator[Engine]:
    """An engine started on `db_url` (replay, reconcile: its report is `engine.report`), stopped after;
    `live` takes it to LIVE through the two-man rule (safe_mode off and the test approver's key added)."""
    if live:
        keys = {**settings.approvals.public_keys, **APPROVER_KEYS}
        settings = replace(settings, safe_mode=False, approvals=replace(settings.approvals, public_keys=keys))
    eng = Engine(SqlJournal(db_url), fake, settings, FrozenClock(), session_id="testnet")
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
