"""An approval request's rows re-verify like the arm row: a rewritten `approve` row (hashes recomputed by
the attacker) with a forged signature, another request's nonce or an unconfigured approver is
JournalCorrupt at that row when replay has the approver keys; an illegal approval edge is always."""

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
from engine.journal import canonical_json
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
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
