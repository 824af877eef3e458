"""Approval requests (engine.approvals): PENDING → APPROVED → USED | EXPIRED | REJECTED as journal rows,
rebuilt by replay after a restart, single-use under concurrency, and refused past their expiry."""

from __future__ import annotations

import asyncio

import pytest

from engine.approval_request import ApprovalRequest
from engine.config import EngineSettings
from engine.errors import ApprovalRejected, EngineError, InvalidTransition
from engine.fsm.approval_table import ApprovalState
from engine.fsm.session_table import SessionState
from engine.guardrails.approvals import sign_approval
from engine.guardrails.preflight import Check
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from tests.approvals import APPROVER, APPROVER_KEY, APPROVER_KEYS
from tests.engine.conftest import running
from tests.fakes import FakeExchange, FrozenClock

RISK = Check("risk_headroom", True)


def token_for(req: ApprovalRequest, *, nonce: str | None = None, approver: str = APPROVER) -> str:
    claims = {"approver": approver, "session_id": req.session_id, "action": req.action,
              "nonce": nonce or req.nonce, "expires_at": req.expires_at}  # fmt: skip
    return sign_approval(APPROVER_KEY, claims)


async def approved(engine: Engine) -> ApprovalRequest:
    req = await engine.approvals.request("ops")
    return await engine.approvals.approve(req.request_id, APPROVER, token_for(req))


def rows(engine: Engine, request_id: str) -> list[tuple[str, str | None, str, dict[str, object]]]:
    return [
        (r.trigger, r.to_state, r.actor, r.payload) for r in engine.journal.stream("approval", request_id)
    ]


async def test_request_approve_arm_journals_each_step_with_both_operators(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    assert (req.state, req.session_id, req.requester) == (ApprovalState.PENDING, "testnet", "ops")
    await engine.approvals.approve(req.request_id, APPROVER, token_for(req))
    session = await engine.approvals.arm(req.request_id, "ops", RISK)
    assert session.state is SessionState.ARMED
    assert session.approval is not None
    assert session.approval["nonce"] == req.nonce
    assert req.state is ApprovalState.USED
    steps = rows(engine, req.request_id)
    assert [(t, s, a) for t, s, a, _ in steps] == [
        ("request", "PENDING", "ops"), ("approve", "APPROVED", APPROVER), ("use", "USED", "ops"),
    ]  # fmt: skip
    assert all(p["requester"] == "ops" for *_, p in steps)
    assert [p.get("approver") for *_, p in steps[1:]] == [APPROVER, APPROVER]
    # The session's arm row and the request's use row are one commit: adjacent rows
    arm = engine.journal.stream("session", "testnet")[-1]
    use = engine.journal.stream("approval", req.request_id)[-1]
    assert (arm.trigger, use.seq) == ("arm", arm.seq + 1)


async def test_a_refused_token_leaves_the_request_pending(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    other = await engine.approvals.request("ops")
    cases = [
        (token_for(req, nonce=other.nonce), APPROVER, "approval_wrong_nonce"),
        (token_for(req), "someone_else", "approval_not_signer"),
        (token_for(req, approver="nobody"), "nobody", "approval_unknown_approver"),
        ("not-a-token", APPROVER, "approval_malformed"),
    ]
    for token, submitter, reason in cases:
        with pytest.raises(ApprovalRejected) as refused:
            await engine.approvals.approve(req.request_id, submitter, token)
        assert refused.value.reason == reason
    assert req.state is ApprovalState.PENDING
    # Only an APPROVED request arms; a pending one is refused and stays pending
    with pytest.raises(InvalidTransition):
        await engine.approvals.arm(req.request_id, "ops", RISK)
    assert engine.sessions.current.state is SessionState.TESTNET


async def test_a_used_request_cannot_arm_again(engine: Engine) -> None:
    req = await approved(engine)
    await engine.approvals.arm(req.request_id, "ops", RISK)
    await engine.sessions.transition("disarm", "ops")
    with pytest.raises(InvalidTransition):
        await engine.approvals.arm(req.request_id, "ops", RISK)
    with pytest.raises(InvalidTransition):
        await engine.approvals.approve(req.request_id, APPROVER, token_for(req))
    assert engine.sessions.current.state is SessionState.TESTNET


async def test_only_the_requester_arms_with_a_request(engine: Engine) -> None:
    req = await approved(engine)
    with pytest.raises(ApprovalRejected) as refused:
        await engine.approvals.arm(req.request_id, "other_admin", RISK)
    assert refused.value.reason == "approval_not_requester"
    assert req.state is ApprovalState.APPROVED


async def test_expired_requests_are_refused_then_journaled_expired(engine: Engine) -> None:
    pending = await engine.approvals.request("ops")
    ready = await approved(engine)
    assert isinstance(engine.clock, FrozenClock)
    engine.clock.advance(engine.settings.approvals.ttl_s + 1)
    with pytest.raises(ApprovalRejected) as late_approve:
        await engine.approvals.approve(pending.request_id, APPROVER, token_for(pending))
    with pytest.raises(ApprovalRejected) as late_arm:
        await engine.approvals.arm(ready.request_id, "ops", RISK)
    assert late_approve.value.reason == late_arm.value.reason == "approval_expired"
    await engine.approvals.expire_due()
    assert (pending.state, ready.state) == (ApprovalState.EXPIRED, ApprovalState.EXPIRED)
    assert engine.sessions.current.state is SessionState.TESTNET
    assert engine.approvals.approved_for("testnet") == []


async def test_reject_closes_a_pending_request(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    await engine.approvals.reject(req.request_id, APPROVER, "not now")
    assert (req.state, req.reason) == (ApprovalState.REJECTED, "not now")
    with pytest.raises(InvalidTransition):
        await engine.approvals.approve(req.request_id, APPROVER, token_for(req))


async def test_a_paper_session_takes_no_requests(db_url: str, fake: FakeExchange) -> None:
    async with running(db_url, fake, EngineSettings(profile="paper")) as eng:
        with pytest.raises(EngineError) as refused:
            await eng.approvals.request("ops")
    assert refused.value.reason == "approval_not_applicable"


async def test_two_approvals_racing_on_one_request_exactly_one_wins(engine: Engine) -> None:
    req = await engine.approvals.request("ops")
    results = await asyncio.gather(
        *(engine.approvals.approve(req.request_id, APPROVER, token_for(req)) for _ in range(2)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ApprovalRequest) for r in results) == 1
    assert [type(r) for r in results if not isinstance(r, ApprovalRequest)] == [InvalidTransition]
    assert [t for t, *_ in rows(engine, req.request_id)] == ["request", "approve"]


async def test_two_arms_racing_on_one_request_exactly_one_wins(engine: Engine) -> None:
    req = await approved(engine)
    results = await asyncio.gather(
        *(engine.approvals.arm(req.request_id, "ops", RISK) for _ in range(3)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, InvalidTransition) for r in results if isinstance(r, BaseException))
    assert [t for t, *_ in rows(engine, req.request_id)] == ["request", "approve", "use"]
    assert [r.trigger for r in engine.journal.stream("session", "testnet")].count("arm") == 1


async def test_pending_and_approved_requests_survive_a_restart(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings) as eng:
        pending = await eng.approvals.request("ops")
        ready = await approved(eng)
        used = await approved(eng)
        await eng.approvals.arm(used.request_id, "ops", RISK)
    # Replay with the approver keys re-verifies every journaled approval
    journal = SqlJournal(db_url)
    try:
        result = replay(journal.scan(), approver_keys=APPROVER_KEYS, require_token=True)
    finally:
        journal.close()
    assert {k: v.state for k, v in result.approvals.items()} == {
        pending.request_id: ApprovalState.PENDING, ready.request_id: ApprovalState.APPROVED,
        used.request_id: ApprovalState.USED,
    }  # fmt: skip
    async with running(db_url, fake, settings) as eng:
        # ARMED did not survive the restart (HOLD); resumed, the approved request still arms
        assert eng.sessions.current.state is SessionState.HOLD
        await eng.sessions.transition("resume", "ops")
        session = await eng.approvals.arm(ready.request_id, "ops", RISK)
        assert session.state is SessionState.ARMED
        restored = eng.approvals.get(pending.request_id)
        await eng.approvals.approve(pending.request_id, APPROVER, token_for(restored))
        assert restored.state is ApprovalState.APPROVED
