"""A token signed over an approval request's nonce arms only through that request: read back from the
request's `approve` row (any auditor can) and given to `guarded("arm")` as a raw token, it is refused
(approval_use_request) whatever the request's state, after a restart and once the request is trimmed
from memory too; a token outliving its request is refused at approve; and replay refuses an `arm` with a
request's nonce that is not committed with that request's `use` row."""

from __future__ import annotations

import pytest

from engine import approvals as approvals_mod
from engine.config import EngineSettings
from engine.errors import ApprovalRejected, JournalCorrupt
from engine.fsm.approval_table import ApprovalState
from engine.fsm.session_table import SessionState
from engine.guardrails.approvals import sign_approval
from engine.journal import NewEntry
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from engine.writer import OnDurable
from tests.approvals import APPROVER, APPROVER_KEY, APPROVER_KEYS
from tests.engine.conftest import running
from tests.engine.test_approval_requests import RISK, approved, token_for
from tests.fakes import FakeExchange


async def _refused_raw(engine: Engine, actor: str, token: str | None) -> str:
    with pytest.raises(ApprovalRejected) as refused:
        await engine.sessions.guarded("arm", actor, token, RISK)
    assert engine.sessions.current.state is SessionState.TESTNET
    return refused.value.reason


async def test_a_rejected_requests_token_does_not_arm_raw(engine: Engine) -> None:
    req = await approved(engine)
    token = req.token
    await engine.approvals.reject(req.request_id, APPROVER, "changed my mind")
    assert await _refused_raw(engine, "ops", token) == "approval_use_request"


async def test_another_admins_approved_request_does_not_arm_raw_and_stays_usable(engine: Engine) -> None:
    req = await approved(engine)  # requested by ops
    assert await _refused_raw(engine, "mallory_admin", req.token) == "approval_use_request"
    assert await _refused_raw(engine, "ops", req.token) == "approval_use_request"  # its requester too
    # Nothing was spent: the request is still offered, and arms through the request path
    assert engine.approvals.approved_for(req.session_id) == [req] == engine.approvals.still_open()
    session = await engine.approvals.arm(req.request_id, "ops", RISK)
    assert session.state is SessionState.ARMED
    assert req.state is ApprovalState.USED
    assert engine.approvals.still_open() == []


async def test_a_token_signed_but_never_submitted_does_not_arm_raw(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    assert await _refused_raw(engine, "ops", token_for(req)) == "approval_use_request"
    assert req.state is ApprovalState.PENDING


async def test_a_requests_token_arms_only_with_that_requests_use_row_in_the_commit(engine: Engine) -> None:
    req, other = await approved(engine), await engine.approvals.request("ops")
    wrong_use = other.decide("reject", {}, "ops")

    def rows() -> tuple[list[NewEntry], OnDurable]:  # another stream's rows, not this request's use
        return [wrong_use], lambda records: None

    with pytest.raises(ApprovalRejected) as refused:
        await engine.sessions.guarded("arm", "ops", req.token, RISK, also=rows)
    assert refused.value.reason == "approval_use_request"
    assert engine.sessions.current.state is SessionState.TESTNET
    assert (req.state, other.state) == (ApprovalState.APPROVED, ApprovalState.PENDING)


async def test_approve_refuses_a_token_that_outlives_its_request(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    claims = {"approver": APPROVER, "session_id": req.session_id, "action": req.action, "nonce": req.nonce,
              "expires_at": req.expires_at + 25}  # fmt: skip
    with pytest.raises(ApprovalRejected) as refused:
        await engine.approvals.approve(req.request_id, APPROVER, sign_approval(APPROVER_KEY, claims))
    assert refused.value.reason == "approval_ttl_too_long"
    assert req.state is ApprovalState.PENDING


async def test_a_trimmed_requests_token_does_not_arm_raw(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approvals_mod, "_KEEP_CLOSED", 0)
    req = await approved(engine)
    await engine.approvals.reject(req.request_id, APPROVER, "withdrawn")
    assert req.request_id not in engine.approvals.requests
    assert await _refused_raw(engine, "ops", req.token) == "approval_use_request"


async def test_a_rejected_requests_token_does_not_arm_raw_after_a_restart(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings) as eng:
        req = await approved(eng)
        token = req.token
        await eng.approvals.reject(req.request_id, APPROVER, "withdrawn")
    async with running(db_url, fake, settings) as eng:
        assert await _refused_raw(eng, "ops", token) == "approval_use_request"


async def test_replay_refuses_an_arm_with_a_requests_token_but_no_use_row(
    engine: Engine, db_url: str
) -> None:
    req = await approved(engine)
    await engine.approvals.reject(req.request_id, APPROVER, "withdrawn")
    engine.sessions.request_of_nonce = lambda nonce: None  # the engine before this fix
    session = await engine.sessions.guarded("arm", "ops", req.token, RISK)
    assert session.state is SessionState.ARMED
    arm_seq = engine.journal.last_seq()
    journal = SqlJournal(db_url)
    try:
        with pytest.raises(JournalCorrupt) as broken:
            replay(journal.scan(), approver_keys=APPROVER_KEYS, require_token=True)
    finally:
        journal.close()
    assert broken.value.seq == arm_seq
    assert "has no use row" in broken.value.problem
