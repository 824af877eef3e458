"""Rotating an approver's key (docs/SECURITY.md §7) must not brick start-up: the journal's old arm rows
were signed with the old key, and start-up re-verifies every approval. approvals.retired_keys keeps the
old key for re-verifying history only; a new token signed with it arms nothing."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
import yaml

from api.settings import load_settings
from engine.config import ApprovalSettings, EngineSettings
from engine.errors import ApprovalRejected, JournalCorrupt
from engine.fsm.session_table import SessionState
from engine.guardrails.approvals import journal_keys, sign_approval
from engine.guardrails.preflight import Check
from engine.persistence.sql_journal import SqlJournal
from engine.runtime import Engine
from tests.engine.test_sessions import KEYS, PUBLIC, token
from tests.fakes import FakeExchange, FrozenClock

RISK = Check("risk", True)
OLD, NEW = PUBLIC["bob"], PUBLIC["alice"]  # bob's key before and after the rotation


def _settings(approvals: ApprovalSettings) -> EngineSettings:
    return EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",), approvals=approvals)


async def _armed_once_with_old_key(url: str, clock: FrozenClock) -> None:
    eng = Engine(SqlJournal(url), FakeExchange(), _settings(ApprovalSettings(public_keys={"bob": OLD})), clock,
                 session_id="testnet")  # fmt: skip
    await eng.start()
    try:
        await eng.sessions.guarded("arm", "carol", token("bob", clock), RISK)
        await eng.sessions.guarded("go_live", "carol", None, RISK)
    finally:
        await eng.stop()


async def test_start_after_rotation_verifies_history_with_retired_keys(db_url: str) -> None:
    clock = FrozenClock()
    await _armed_once_with_old_key(db_url, clock)
    rotated = ApprovalSettings(public_keys={"bob": NEW}, retired_keys={"bob": (OLD,)})
    eng = Engine(SqlJournal(db_url), FakeExchange(), _settings(rotated), clock, session_id="testnet")
    await eng.start()  # on main: JournalCorrupt at the arm row, so the documented rotation bricked start-up
    try:
        assert eng.sessions.current.state is SessionState.HOLD  # the restart of a LIVE session
        await eng.sessions.transition("resume", "carol")
        # The retired key verifies history only: a fresh token signed with it is refused
        with pytest.raises(ApprovalRejected) as refused:
            await eng.sessions.guarded("arm", "carol", token("bob", clock), RISK)
        assert refused.value.reason == "approval_bad_signature"
        # ...and one signed with the new key arms
        claims = {"approver": "bob", "session_id": "testnet", "action": "arm", "nonce": uuid.uuid4().hex,
                  "expires_at": int(clock.now().timestamp() + 600)}  # fmt: skip
        armed = await eng.sessions.guarded("arm", "carol", sign_approval(KEYS["alice"], claims), RISK)
        assert armed.state is SessionState.ARMED
    finally:
        await eng.stop()


async def test_without_the_retired_key_start_up_names_the_row(db_url: str) -> None:
    clock = FrozenClock()
    await _armed_once_with_old_key(db_url, clock)
    rotated = dataclasses.replace(ApprovalSettings(), public_keys={"bob": NEW})
    eng = Engine(SqlJournal(db_url), FakeExchange(), _settings(rotated), clock, session_id="testnet")
    with pytest.raises(JournalCorrupt, match="approval by 'bob' has no valid signature"):
        await eng.start()
    await eng.stop()


def test_config_file_reads_retired_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.paper.yaml"
    path.write_text(yaml.safe_dump({"profile": "paper", "exchange": "paper",
                                    "approvals": {"public_keys": {"bob": NEW}, "retired_keys": {"bob": [OLD]}}}))  # fmt: skip
    rules = load_settings(config_file=path, data_dir=tmp_path, env={}).engine.approvals
    assert rules.retired_keys == {"bob": (OLD,)}
    assert journal_keys(rules.public_keys, rules.retired_keys) == {"bob": (NEW, OLD)}
