"""Verify re-checks every journaled approval: the arm row carries the token's signed body and signature,
so a rewritten row naming an unconfigured approver, a forged signature, edited claims or the requester's
own signature is JournalCorrupt at that row when replay is given the approver keys; with require_token an arm without approval is too."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from engine.config import ApprovalSettings, EngineSettings
from engine.errors import JournalCorrupt
from engine.guardrails.approvals import sign_approval
from engine.guardrails.preflight import Check
from engine.journal import canonical_json
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from tests.fakes import FakeExchange, FrozenClock
from tests.journal import attacker

KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob")}
PUBLIC = {name: base64.b64encode(k.public_key().public_bytes_raw()).decode() for name, k in KEYS.items()}
ARM_SEQ = 2  # open, arm, go_live


def claims(clock: FrozenClock, **over: Any) -> dict[str, Any]:
    return {"approver": "bob", "session_id": "testnet", "action": "arm", "nonce": uuid.uuid4().hex,
            "expires_at": int(clock.now().timestamp()) + 600, **over}  # fmt: skip


async def armed_journal(url: str) -> None:
    """open → arm (alice asks, bob approves) → go_live, through the engine's own SessionService."""
    clock = FrozenClock()
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=PUBLIC, ttl_s=900))  # fmt: skip
    eng = Engine(SqlJournal(url), FakeExchange(), settings, clock, session_id="testnet")
    await eng.start()
    ok = Check("risk_headroom", True)
    await eng.sessions.guarded("arm", "alice", sign_approval(KEYS["bob"], claims(clock)), ok)
    await eng.sessions.guarded("go_live", "alice", None, ok)
    await eng.stop()
    eng.journal.close()


def verify(url: str, **kw: Any) -> int:
    j = SqlJournal(url)
    try:
        return replay(j.scan(), **kw).rows
    finally:
        j.close()


def edit_arm_approval(url: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """The arm row's approval changed, and the go_live row's with it (the engine's go_live carries its
    arm's approval): the journal an engine would have written with that arm."""

    def mutate(rows: attacker.Rows) -> attacker.Rows:
        assert (rows[ARM_SEQ - 1][4], rows[ARM_SEQ][4]) == ("arm", "go_live")
        approval = change(dict(json.loads(rows[ARM_SEQ - 1][7])["approval"]))
        for row in rows[ARM_SEQ - 1 : ARM_SEQ + 1]:
            payload = json.loads(row[7])
            payload["approval"] = approval
            row[7] = canonical_json(payload)
        return rows

    attacker.rewrite(url, mutate, recompute_from=ARM_SEQ - 1)


async def test_the_arm_row_carries_the_signed_token_and_replay_reverifies_it(journal_url: str) -> None:
    await armed_journal(journal_url)
    j = SqlJournal(journal_url)
    arm = j.stream("session", "testnet")[1]
    j.close()
    approval = arm.payload["approval"]
    assert {"approver", "action", "nonce", "expires_at", "requester", "signed_body", "signature"} <= set(
        approval
    )
    assert json.loads(base64.urlsafe_b64decode(approval["signed_body"] + "=="))["approver"] == "bob"
    assert verify(journal_url, approver_keys=PUBLIC, require_token=True) == 3


def _forged_by_mallory(a: dict[str, Any]) -> dict[str, Any]:
    mallory = Ed25519PrivateKey.generate()
    token = sign_approval(mallory, {k: a[k] for k in ("approver", "action", "nonce", "expires_at")}
                          | {"session_id": "testnet"})  # fmt: skip
    body, sig = token.split(".")
    return {**a, "signed_body": body, "signature": sig}


def _signed_for_live(a: dict[str, Any]) -> dict[str, Any]:
    token = sign_approval(KEYS["bob"], {k: a[k] for k in ("approver", "action", "nonce", "expires_at")}
                          | {"session_id": "live"})  # fmt: skip
    body, sig = token.split(".")
    return {**a, "signed_body": body, "signature": sig}


def _self_signed(a: dict[str, Any]) -> dict[str, Any]:
    """alice, who armed, signs her own approval with her own (configured) key."""
    token = sign_approval(KEYS["alice"], {k: a[k] for k in ("action", "nonce", "expires_at")}
                          | {"approver": "alice", "session_id": "testnet"})  # fmt: skip
    body, sig = token.split(".")
    return {**a, "approver": "alice", "signed_body": body, "signature": sig}


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any] | None], str]] = {
    "an unconfigured approver": (
        lambda a: {**a, "approver": "carol"},
        "approver 'carol' is not a configured",
    ),
    "a signature by another key": (_forged_by_mallory, "approval by 'bob' has no valid signature"),
    "an unsigned approval (the old format)": (
        lambda a: {k: v for k, v in a.items() if k not in ("signed_body", "signature")},
        "approval carries no signed token",
    ),
    "a longer expiry than signed": (
        lambda a: {**a, "expires_at": a["expires_at"] + 86400},
        "journaled approval expires_at",
    ),
    "a token for another session": (_signed_for_live, "signed for session 'live', not 'testnet'"),
    "the requester's own signature": (_self_signed, "approval by 'alice' is the requester's own"),
    "another requester than the arm's actor": (
        lambda a: {**a, "requester": "carol"},
        "approval requester 'carol' is not the arm's actor 'alice'",
    ),
}


@pytest.mark.parametrize("kind", list(FORGERIES))
async def test_a_forged_approval_is_corrupt_at_its_row(
    journal_url: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    change, fragment = FORGERIES[kind]
    await armed_journal(journal_url)
    edit_arm_approval(journal_url, change)
    assert verify(journal_url) == 3  # the chain alone accepts the forgery: that was the hole
    with pytest.raises(JournalCorrupt) as info:
        verify(journal_url, approver_keys=PUBLIC)
    assert info.value.seq == ARM_SEQ
    assert fragment in info.value.problem


async def test_a_self_approval_verifies_only_with_the_two_man_rule_off(journal_url: str) -> None:
    await armed_journal(journal_url)
    edit_arm_approval(journal_url, _self_signed)
    with pytest.raises(JournalCorrupt) as info:
        verify(journal_url, approver_keys=PUBLIC, require_token=True)
    assert info.value.seq == ARM_SEQ
    # approvals.two_man_rule false (never on live) allows an operator to approve their own arm
    assert verify(journal_url, approver_keys=PUBLIC, require_token=True, two_man_rule=False) == 3


async def test_require_token_refuses_an_arm_row_without_approval(journal_url: str) -> None:
    await armed_journal(journal_url)
    edit_arm_approval(journal_url, lambda a: None)
    assert verify(journal_url, approver_keys=PUBLIC) == 3  # approvals not required: nothing to check
    with pytest.raises(JournalCorrupt, match=f"seq {ARM_SEQ}: arm without an approval"):
        verify(journal_url, approver_keys=PUBLIC, require_token=True)


async def test_a_go_live_row_with_another_approval_than_its_arms_is_corrupt(journal_url: str) -> None:
    # Was: replay checked a go_live row's approval on its own; a validly signed second token (a later
    # expiry) in it replaced the arm's approval on replay and stretched LIVE past what the arm was granted
    await armed_journal(journal_url)
    clock = FrozenClock()
    fresh = sign_approval(KEYS["bob"], claims(clock, expires_at=int(clock.now().timestamp()) + 86400))
    body, sig = fresh.split(".")
    signed = json.loads(base64.urlsafe_b64decode(body + "=="))

    def mutate(rows: attacker.Rows) -> attacker.Rows:
        row = rows[ARM_SEQ]
        assert row[4] == "go_live"
        payload = json.loads(row[7])
        other = {k: signed[k] for k in ("approver", "action", "nonce", "expires_at")}
        payload["approval"] = {**payload["approval"], **other, "signed_body": body, "signature": sig}
        row[7] = canonical_json(payload)
        return rows

    attacker.rewrite(journal_url, mutate, recompute_from=ARM_SEQ)
    with pytest.raises(JournalCorrupt) as info:
        verify(journal_url, approver_keys=PUBLIC, require_token=True)
    assert info.value.seq == ARM_SEQ + 1
    assert "go_live carries another approval than its arm's" in info.value.problem


def edit_go_live_approval(url: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    def mutate(rows: attacker.Rows) -> attacker.Rows:
        row = rows[ARM_SEQ]
        assert row[4] == "go_live"
        payload = json.loads(row[7])
        payload["approval"] = change(dict(payload["approval"]))
        row[7] = canonical_json(payload)
        return rows

    attacker.rewrite(url, mutate, recompute_from=ARM_SEQ)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: None, id="approval-dropped"),
        pytest.param(lambda a: {**a, "expires_at": a["expires_at"] + 86400}, id="same-nonce-later-expiry"),
        pytest.param(lambda a: {**a, "requester": "bob"}, id="same-nonce-other-requester"),
    ],
)
async def test_a_go_live_row_whose_approval_is_not_exactly_its_arms_is_corrupt(
    journal_url: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> None:
    # Was: only the nonce was compared, and only when the go_live row carried an approval at all: a
    # go_live without one (no require_token) dropped the arm's expiry on replay, and one with the arm's
    # nonce but another expires_at stretched it (with no approver keys nothing re-reads the signed body)
    await armed_journal(journal_url)
    edit_go_live_approval(journal_url, change)
    for keys in ({}, {"approver_keys": PUBLIC}):  # journal verify without keys; start-up with them
        with pytest.raises(JournalCorrupt) as info:
            verify(journal_url, **keys)
        assert info.value.seq == ARM_SEQ + 1
        assert "go_live carries another approval than its arm's" in info.value.problem


async def test_cli_verify_check_approvals_uses_the_configs_keys(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.persistence.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    upgrade(url)
    await armed_journal(url)
    edit_arm_approval(url, lambda a: {**a, "approver": "carol"})
    config = tmp_path / "config.yaml"
    keys = "".join(f"\n    {name}: {key}" for name, key in PUBLIC.items())
    config.write_text(
        f"profile: paper\nexchange: paper\napprovals:\n  require_token: true\n  public_keys:{keys}\n"
    )
    capsys.readouterr()
    args = ["journal", "verify", "--db", url, "--config", str(config)]
    assert main(args) == 0  # without the flag: the chain only
    assert main([*args, "--check-approvals"]) == 1
    assert (
        f"journal BROKEN at seq {ARM_SEQ}: approver 'carol' is not a configured approver"
        in capsys.readouterr().out
    )
