"""An approval request's rows re-verify like the arm row: a rewritten `approve` row (hashes recomputed by
the attacker) with a forged signature, another request's nonce, an unconfigured approver, the requester's
own signature or an approver other than the signer is JournalCorrupt at that row when replay has the
approver keys; an illegal approval edge is always, and so is an arm with a request's token whose `use`
row is missing (or a `use` row without its arm)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.config import ApprovalSettings, EngineSettings
from engine.errors import JournalCorrupt
from engine.guardrails.approvals import sign_approval
from engine.guardrails.preflight import Check
from engine.journal import canonical_json
from engine.persistence.sql_journal import SqlJournal
from engine.replay import Replayer, replay
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock
from tests.journal import attacker

BOB = Ed25519PrivateKey.generate()
PUBLIC = {"bob": base64.b64encode(BOB.public_key().public_bytes_raw()).decode()}
APPROVE_SEQ = 3  # open, request, approve


async def approved_journal(url: str) -> None:
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=PUBLIC))  # fmt: skip
    eng = Engine(SqlJournal(url), FakeExchange(), settings, FrozenClock(), session_id="testnet")
    await eng.start()
    req = await eng.approvals.request("alice")
    claims = {"approver": "bob", "session_id": "testnet", "action": "arm", "nonce": req.nonce,
              "expires_at": req.expires_at}  # fmt: skip
    await eng.approvals.approve(req.request_id, "bob", sign_approval(BOB, claims))
    await eng.stop()
    eng.journal.close()


def verify(url: str, **kw: Any) -> int:
    j = SqlJournal(url)
    try:
        return replay(j.scan(), **kw).rows
    finally:
        j.close()


def resigned(key: Ed25519PrivateKey, **over: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(a: dict[str, Any]) -> dict[str, Any]:
        claims = {**{k: a[k] for k in ("approver", "action", "nonce", "expires_at")}, "session_id": "testnet"}
        body, sig = sign_approval(key, {**claims, **over}).split(".")
        return {**a, **over, "signed_body": body, "signature": sig}

    return change


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bool]] = {
    # (change to the approve row's approval, caught without the keys too)
    "signed by another key": (resigned(Ed25519PrivateKey.generate()), False),
    "another request's nonce": (resigned(BOB, nonce="0" * 32), True),
    "an unconfigured approver": (resigned(Ed25519PrivateKey.generate(), approver="mallory"), False),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_a_rewritten_approve_row_is_caught_at_its_seq(journal_url: str, name: str) -> None:
    await approved_journal(journal_url)
    assert verify(journal_url, approver_keys=PUBLIC, require_token=True) == 3
    change, without_keys = FORGERIES[name]

    def mutate(rows: attacker.Rows) -> attacker.Rows:
        row = rows[APPROVE_SEQ - 1]
        assert (row[1], row[4]) == ("approval", "approve")
        payload = json.loads(row[7])
        payload["approval"] = change(dict(payload["approval"]))
        row[7] = canonical_json(payload)
        return rows

    attacker.rewrite(journal_url, mutate, recompute_from=APPROVE_SEQ - 1)
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url, approver_keys=PUBLIC)
    assert broken.value.seq == APPROVE_SEQ
    if without_keys:
        with pytest.raises(JournalCorrupt):
            verify(journal_url)
    else:
        assert verify(journal_url) == 3


async def test_an_illegal_approval_edge_is_caught(journal_url: str) -> None:
    await approved_journal(journal_url)

    def mutate(rows: attacker.Rows) -> attacker.Rows:
        rows[APPROVE_SEQ - 1][6] = "USED"  # PENDING --approve--> USED is no edge of the approval FSM
        return rows

    attacker.rewrite(journal_url, mutate, recompute_from=APPROVE_SEQ - 1)
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url)
    assert broken.value.seq == APPROVE_SEQ
    assert "illegal approval transition" in broken.value.problem


ALICE = Ed25519PrivateKey.generate()  # the requester, a configured approver herself
WITH_ALICE = {**PUBLIC, "alice": base64.b64encode(ALICE.public_key().public_bytes_raw()).decode()}


def rewrite_approve_row(url: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    def mutate(rows: attacker.Rows) -> attacker.Rows:
        row = rows[APPROVE_SEQ - 1]
        assert (row[1], row[4]) == ("approval", "approve")
        row[7] = canonical_json(change(json.loads(row[7])))
        return rows

    attacker.rewrite(url, mutate, recompute_from=APPROVE_SEQ - 1)


def _self_approved(payload: dict[str, Any]) -> dict[str, Any]:
    """alice approves her own request with her own valid signature, and the row names her as approver."""
    assert payload["requester"] == "alice"
    approval = resigned(ALICE, approver="alice")(dict(payload["approval"]))
    return {**payload, "approval": approval, "approver": "alice"}


async def test_a_self_approved_request_is_caught_at_its_approve_row(journal_url: str) -> None:
    await approved_journal(journal_url)
    rewrite_approve_row(journal_url, _self_approved)
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url, approver_keys=WITH_ALICE, require_token=True)
    assert broken.value.seq == APPROVE_SEQ
    assert "is the requester's own" in broken.value.problem
    # approvals.two_man_rule false (never on live) allows an operator to approve their own request
    assert verify(journal_url, approver_keys=WITH_ALICE, two_man_rule=False) == 3


async def test_an_approve_row_naming_another_approver_than_the_signer_is_caught(journal_url: str) -> None:
    await approved_journal(journal_url)
    rewrite_approve_row(journal_url, lambda p: {**p, "approver": "carol"})  # bob's signature kept
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url, approver_keys=PUBLIC)
    assert broken.value.seq == APPROVE_SEQ
    assert "approver 'carol' is not the signer 'bob'" in broken.value.problem


ARM_SEQ, USE_SEQ = 4, 5  # open, request, approve, arm + use (one commit)


async def armed_with_request_journal(url: str) -> None:
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=PUBLIC))  # fmt: skip
    eng = Engine(SqlJournal(url), FakeExchange(), settings, FrozenClock(), session_id="testnet")
    await eng.start()
    req = await eng.approvals.request("alice")
    claims = {"approver": "bob", "session_id": "testnet", "action": "arm", "nonce": req.nonce,
              "expires_at": req.expires_at}  # fmt: skip
    await eng.approvals.approve(req.request_id, "bob", sign_approval(BOB, claims))
    await eng.approvals.arm(req.request_id, "alice", Check("risk_headroom", True))
    await eng.stop()
    eng.journal.close()


def drop_row(url: str, seq: int) -> None:
    def mutate(rows: attacker.Rows) -> attacker.Rows:
        del rows[seq - 1]
        for i, row in enumerate(rows):
            row[0] = i + 1
        return rows

    attacker.rewrite(url, mutate, recompute_from=seq - 1)


async def test_an_arm_with_a_requests_token_needs_its_use_row(journal_url: str) -> None:
    await armed_with_request_journal(journal_url)
    assert verify(journal_url, approver_keys=PUBLIC, require_token=True) == USE_SEQ
    drop_row(journal_url, USE_SEQ)  # as if the token, read from the approve row, had armed on its own
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url)
    assert broken.value.seq == ARM_SEQ
    assert "has no use row" in broken.value.problem


async def test_a_use_row_without_its_arm_is_caught(journal_url: str) -> None:
    await armed_with_request_journal(journal_url)
    drop_row(journal_url, ARM_SEQ)
    with pytest.raises(JournalCorrupt) as broken:
        verify(journal_url)
    assert broken.value.seq == ARM_SEQ  # the use row, renumbered
    assert "use row not committed with an arm" in broken.value.problem


async def test_a_feed_cut_between_the_arm_and_its_use_row_resumes(journal_url: str) -> None:
    # A standby's bounded feed may end between a commit's rows; the next feed brings the use row
    await armed_with_request_journal(journal_url)
    j = SqlJournal(journal_url)
    try:
        rows = list(j.scan())
    finally:
        j.close()
    replayer = Replayer(approver_keys=PUBLIC, require_token=True)
    assert replayer.feed(rows[:ARM_SEQ]).last_seq == ARM_SEQ
    with pytest.raises(JournalCorrupt, match="has no use row"):
        Replayer(approver_keys=PUBLIC).feed(rows[:ARM_SEQ], complete=True)
    assert replayer.feed(rows[ARM_SEQ:], complete=True).last_seq == USE_SEQ
