"""Arming needs a passing preflight and a second operator's single-use, short-lived approval."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.config import ApprovalSettings, EngineSettings, fingerprint
from engine.errors import (
    ApprovalRejected,
    EngineError,
    ExchangeUnavailable,
    InvalidTransition,
    PreflightFailed,
)
from engine.fsm.session_table import SessionState
from engine.guardrails.approvals import sign_approval
from engine.guardrails.preflight import Check
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from engine.types import AccountInfo, PingResult, SymbolRules
from tests.engine.conftest import running
from tests.fakes import FakeExchange, FrozenClock

KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob")}
PUBLIC = {
    name: base64.b64encode(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    for name, k in KEYS.items()
}
RISK_OK = Check("risk_headroom", True)


def token(approver: str, clock: FrozenClock, *, action: str = "arm", session: str = "testnet", ttl: float = 900,
          nonce: str | None = None) -> str:  # fmt: skip
    claims = {"approver": approver, "session_id": session, "action": action,
              "nonce": nonce or uuid.uuid4().hex, "expires_at": int(clock.now().timestamp() + ttl)}  # fmt: skip
    return sign_approval(KEYS[approver], claims)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@asynccontextmanager
async def running_engine(
    db_url: str, fake: FakeExchange, settings: EngineSettings, clock: FrozenClock
) -> AsyncIterator[Engine]:
    eng = Engine(SqlJournal(db_url), fake, settings, clock, session_id="testnet")
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
async def live_engine(db_url: str, fake: FakeExchange, clock: FrozenClock):  # type: ignore[no-untyped-def]
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=PUBLIC, ttl_s=900))  # fmt: skip
    eng = Engine(SqlJournal(db_url), fake, settings, clock, session_id="testnet")
    await eng.start()
    yield eng
    await eng.stop()


async def test_arm_and_go_live_with_a_second_operators_approval(
    live_engine: Engine, clock: FrozenClock
) -> None:
    await live_engine.sessions.guarded("arm", "alice", token("bob", clock), RISK_OK)
    assert live_engine.sessions.current.state is SessionState.ARMED
    await live_engine.sessions.guarded("go_live", "alice", None, RISK_OK)
    assert live_engine.sessions.current.state is SessionState.LIVE
    rows = live_engine.journal.stream("session", "testnet")
    assert [r.trigger for r in rows] == ["open", "arm", "go_live"]
    assert rows[1].payload["approval"]["approver"] == "bob"
    assert rows[1].payload["venue"] == "binance-testnet"
    # the configuration in force is fingerprinted on entering ARMED and LIVE
    assert (
        rows[1].payload["config_hash"] == rows[2].payload["config_hash"] == fingerprint(live_engine.settings)
    )
    assert rows[2].payload["risk_limits"]["max_order_notional"] == "100000"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: token("alice", c), "approval_same_operator"),
        (lambda c: token("bob", c, ttl=-1), "approval_expired"),
        (lambda c: token("bob", c, ttl=3600), "approval_ttl_too_long"),  # config allows 900 s
        (lambda c: token("bob", c, action="go_live"), "approval_wrong_action"),
        (lambda c: token("bob", c, session="live"), "approval_wrong_session"),
        (lambda c: token("bob", c)[:-4] + "AAAA", "approval_bad_signature"),
        (lambda c: "not-a-token", "approval_malformed"),
        (lambda c: None, "approval_required"),
    ],
)
async def test_every_bad_approval_is_refused(
    live_engine: Engine, clock: FrozenClock, make, reason: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApprovalRejected) as info:
        await live_engine.sessions.guarded("arm", "alice", make(clock), RISK_OK)
    assert info.value.reason == reason
    assert live_engine.sessions.current.state is SessionState.TESTNET


async def test_an_approval_is_single_use_even_across_restarts(
    live_engine: Engine, clock: FrozenClock
) -> None:
    tok = token("bob", clock, nonce="n-1")
    await live_engine.sessions.guarded("arm", "alice", tok, RISK_OK)
    await live_engine.sessions.transition("disarm", "alice")
    with pytest.raises(ApprovalRejected, match="already used"):
        await live_engine.sessions.guarded("arm", "alice", tok, RISK_OK)
    rebuilt = replay(live_engine.journal.scan()).sessions["testnet"]
    assert "n-1" in rebuilt.used_nonces


async def test_failed_preflight_refuses_and_holds(
    live_engine: Engine, fake: FakeExchange, clock: FrozenClock
) -> None:
    fake.skew_ms = 900.0
    await live_engine.preflight.refresh()  # measured in the background; TESTNET does not hold on skew
    assert live_engine.sessions.current.state is SessionState.TESTNET
    with pytest.raises(PreflightFailed) as info:
        await live_engine.sessions.guarded("arm", "alice", token("bob", clock), RISK_OK)
    assert {f["check"] for f in info.value.detail} == {"clock_skew"}
    session = live_engine.sessions.current
    assert session.state is SessionState.HOLD
    assert "clock_skew" in session.hold_reason
    # resume goes back to TESTNET, never to LIVE
    await live_engine.sessions.transition("resume", "alice")
    assert live_engine.sessions.current.state is SessionState.TESTNET


async def test_missing_permissions_hold_the_session_in_any_state(
    live_engine: Engine, fake: FakeExchange
) -> None:
    fake.permissions = ("MARGIN",)
    await live_engine.preflight.refresh()
    await live_engine.preflight.refresh()
    holds = [r for r in live_engine.journal.stream("session", "testnet") if r.trigger == "hold"]
    assert [r.reason for r in holds] == ["preflight_failed: permissions"]  # once per episode


TESTNET = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",))


class BackingOff(FakeExchange):
    """A venue client refusing to send during a Retry-After (RATE_LIMIT), as BinanceSpotClient does."""

    def __init__(self) -> None:
        super().__init__()
        self.error: ExchangeUnavailable | None = None

    async def account(self) -> AccountInfo:
        if self.error is not None:
            raise self.error
        return await super().account()

    async def ping(self) -> PingResult:
        if self.error is not None:
            raise self.error
        return await super().ping()


async def test_a_rate_limit_back_off_measures_nothing_and_holds_nothing(
    db_url: str, clock: FrozenClock
) -> None:
    # Was: the account check failed on the client's own Retry-After refusal (nothing was asked of the
    # venue) and HOLDs in any state, so a one-second 429 halted the desk until an operator resumed it
    fake = BackingOff()
    async with running_engine(db_url, fake, TESTNET, clock) as eng:
        await eng.preflight.refresh()
        measured = eng.preflight.status()["checks"]
        fake.error = ExchangeUnavailable(
            "Retry-After in force for another 0.7s; nothing sent", reason="RATE_LIMIT"
        )
        await eng.preflight.refresh()
        assert eng.sessions.current.state is SessionState.TESTNET
        assert eng.preflight.status()["checks"] == measured  # the last measurement stands, and ages
        assert eng.preflight.status()["deferred"] == ["clock", "account"]
        clock.advance(eng.settings.preflight.account_max_age_s + 1)
        stale = {f["check"] for f in eng.preflight.failures(RISK_OK) if "stale_s" in (f["detail"] or {})}
        assert "can_trade" in stale  # too old now: arming and LIVE orders are refused as stale
        # A venue that cannot be reached is another matter: the account check fails, and holds
        fake.error = ExchangeUnavailable("connection refused", reason="EXCHANGE_UNAVAILABLE")
        await eng.preflight.refresh()
        assert eng.sessions.current.state is SessionState.HOLD
        assert "account (EXCHANGE_UNAVAILABLE)" in eng.sessions.current.hold_reason


class PartlyBackingOff(FakeExchange):
    """account() answers (or fails on its own), then a later read of the same refresh meets the client's
    Retry-After: another call's 429 set it while account() was on its way."""

    def __init__(self) -> None:
        super().__init__()
        self.account_error: ExchangeUnavailable | None = None
        self.backing_off = False

    async def account(self) -> AccountInfo:
        if self.account_error is not None:
            raise self.account_error
        return await super().account()

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        if self.backing_off:
            raise ExchangeUnavailable(
                "Retry-After in force for another 0.7s; nothing sent", reason="RATE_LIMIT"
            )
        return await super().symbol_rules()


@pytest.mark.parametrize("fault", ["unreachable", "missing_permission"])
async def test_a_failure_measured_before_a_back_off_in_the_same_refresh_still_holds(
    db_url: str, clock: FrozenClock, fault: str
) -> None:
    # Was: account_checks returned None (measured nothing) as soon as any of its reads met the back-off,
    # throwing away what account() had already measured: an unreachable venue or a missing permission
    # neither failed nor held, and the last good measurement stayed fresh for account_max_age_s
    fake = PartlyBackingOff()
    async with running_engine(db_url, fake, TESTNET, clock) as eng:
        await eng.preflight.refresh()
        assert not eng.preflight.failures(RISK_OK)
        if fault == "unreachable":
            fake.account_error = ExchangeUnavailable("connection refused", reason="EXCHANGE_UNAVAILABLE")
        else:
            fake.permissions = ()
        fake.backing_off = True
        await eng.preflight.refresh()
        assert eng.sessions.current.state is SessionState.HOLD
        failed = {f["check"] for f in eng.preflight.failures(RISK_OK)}
        assert failed & {"account", "permissions"}
        assert "symbols" not in failed  # not measured this time: the last measurement stands and ages


async def test_a_back_off_outlasting_the_verdict_holds_a_live_session(db_url: str) -> None:
    # Was (after the back-off stopped failing checks): a LIVE session whose venue client kept backing
    # off refused every order as stale and stayed LIVE for good; armed or live, no fresh verdict is a
    # failed check, and the monitor holds once
    fake = BackingOff()
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",))
    async with running(db_url, fake, settings, live=True) as eng:
        await eng.preflight.refresh()
        fake.error = ExchangeUnavailable("Retry-After in force; nothing sent", reason="RATE_LIMIT")
        await eng.preflight.refresh()
        assert eng.sessions.current.state is SessionState.LIVE  # still fresh: a short back-off is no fault
        eng.clock.advance(settings.preflight.max_age_s + 1)  # type: ignore[attr-defined]
        await eng.preflight.refresh()
        session = eng.sessions.current
        assert session.state is SessionState.HOLD
        assert "(stale: backing off)" in session.hold_reason


async def test_approval_ttl_expiry_disarms(live_engine: Engine, clock: FrozenClock) -> None:
    await live_engine.sessions.guarded("arm", "alice", token("bob", clock, ttl=60), RISK_OK)
    await live_engine.sessions.guarded("go_live", "alice", None, RISK_OK)
    clock.advance(61)
    await live_engine.sessions.expire_if_due()
    assert live_engine.sessions.current.state is SessionState.TESTNET


async def test_go_live_is_refused_while_config_has_safe_mode_on(
    db_url: str, fake: FakeExchange, clock: FrozenClock
) -> None:
    settings = EngineSettings(
        profile="testnet", symbols=("BTCUSDT",), approvals=ApprovalSettings(public_keys=PUBLIC)
    )
    async with running_engine(db_url, fake, settings, clock) as eng:
        await eng.sessions.guarded("arm", "alice", token("bob", clock), RISK_OK)  # arming is allowed
        with pytest.raises(EngineError) as info:
            await eng.sessions.guarded("go_live", "alice", None, RISK_OK)
        assert info.value.reason == "safe_mode_config"
        assert eng.sessions.current.state is SessionState.ARMED


async def test_arm_from_paper_is_illegal(db_url: str, fake: FakeExchange) -> None:
    eng = Engine(
        SqlJournal(db_url), fake, dataclasses.replace(EngineSettings(), profile="paper"), FrozenClock()
    )
    await eng.start()
    with pytest.raises(InvalidTransition):
        await eng.sessions.guarded("arm", "alice", None, RISK_OK)
    await eng.stop()


@pytest.mark.parametrize(
    ("restrictions", "ok"),
    [
        ({"enableSpotAndMarginTrading": True, "enableWithdrawals": False, "ipRestrict": True}, True),
        ({"enableSpotAndMarginTrading": True, "enableWithdrawals": True, "ipRestrict": True}, False),
        ({"enableSpotAndMarginTrading": True, "enableWithdrawals": False, "ipRestrict": False}, False),
        ({"enableSpotAndMarginTrading": False, "enableWithdrawals": False, "ipRestrict": True}, False),
    ],
)
async def test_live_key_restrictions_are_part_of_preflight(
    live_engine: Engine, fake: FakeExchange, clock: FrozenClock, restrictions: dict[str, bool], ok: bool
) -> None:
    fake.restrictions = restrictions
    await live_engine.preflight.refresh()
    if ok:
        await live_engine.sessions.guarded("arm", "alice", token("bob", clock), RISK_OK)
        assert live_engine.sessions.current.state is SessionState.ARMED
        return
    with pytest.raises(PreflightFailed) as info:
        await live_engine.sessions.guarded("arm", "alice", token("bob", clock), RISK_OK)
    assert [f["check"] for f in info.value.detail] == ["key_restrictions"]
    assert live_engine.sessions.current.state is SessionState.HOLD


@pytest.mark.parametrize("expiry", [float("nan"), float("inf"), 1.5e12, "2099-01-01", True])
async def test_an_approval_whose_expiry_is_not_an_integer_is_refused(
    live_engine: Engine, clock: FrozenClock, expiry: object
) -> None:
    claims = {"approver": "bob", "session_id": "testnet", "action": "arm", "nonce": uuid.uuid4().hex,
              "expires_at": expiry}  # fmt: skip
    body = json.dumps(claims, allow_nan=True).encode()  # what a forger would send
    sig = KEYS["bob"].sign(body)
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    with pytest.raises(ApprovalRejected) as info:
        await live_engine.sessions.guarded("arm", "alice", f"{b64(body)}.{b64(sig)}", RISK_OK)
    assert info.value.reason == "approval_malformed"
    assert live_engine.sessions.current.state is SessionState.TESTNET


async def test_the_approver_differs_from_the_requester_as_a_person_not_a_string(
    db_url: str, fake: FakeExchange, clock: FrozenClock
) -> None:
    keys = {"Bob": PUBLIC["bob"]}
    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=keys))  # fmt: skip
    async with running_engine(db_url, fake, settings, clock) as eng:
        with pytest.raises(ApprovalRejected) as info:  # admin "bob" approving his own arm as "Bob"
            await eng.sessions.guarded("arm", "bob", _signed("Bob", clock), RISK_OK)
        assert info.value.reason == "approval_same_operator"


def _signed(approver: str, clock: FrozenClock) -> str:
    claims = {"approver": approver, "session_id": "testnet", "action": "arm", "nonce": uuid.uuid4().hex,
              "expires_at": int(clock.now().timestamp()) + 600}  # fmt: skip
    return sign_approval(KEYS["bob"], claims)


async def test_a_token_for_one_instance_cannot_arm_another_of_the_same_profile(
    tmp_path: pytest.TempPathFactory, fake: FakeExchange, clock: FrozenClock
) -> None:
    from engine.persistence.migrate import upgrade

    settings = EngineSettings(profile="testnet", safe_mode=False, symbols=("BTCUSDT",),
                              approvals=ApprovalSettings(public_keys=PUBLIC))  # fmt: skip
    engines = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path}/{name}.db"  # type: ignore[operator]
        upgrade(url)
        eng = Engine(SqlJournal(url), fake, settings, clock)  # ids generated, as in production
        await eng.start()
        engines.append(eng)
    try:
        a, b = engines
        assert a.sessions.current.session_id != b.sessions.current.session_id
        assert a.sessions.current.session_id.startswith("testnet-")
        for_a = token("bob", clock, session=a.sessions.current.session_id)
        with pytest.raises(ApprovalRejected) as info:
            await b.sessions.guarded("arm", "alice", for_a, RISK_OK)
        assert info.value.reason == "approval_wrong_session"
        await a.sessions.guarded("arm", "alice", for_a, RISK_OK)
        assert a.sessions.current.state is SessionState.ARMED
    finally:
        for eng in engines:
            await eng.stop()
