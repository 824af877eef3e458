"""The trading-session aggregate: same decide/apply shape as Order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ApprovalRejected, EngineError, PreflightFailed
from engine.fsm.machines import SESSION_FSM, Probe, fire
from engine.fsm.session_table import SESSION_CREATE_TRIGGER, SESSION_GUARDED, SessionState
from engine.guardrails.approvals import Approval
from engine.journal import NewEntry


@dataclass(frozen=True, slots=True)
class Guard:
    """What must hold for arm / go_live, checked by the aggregate itself so that no caller can skip it:
    a verified approval (unless tokens are not required), safe_mode off for go_live, and a fresh,
    passing preflight verdict (the failed checks, empty when it passed)."""

    require_token: bool
    safe_mode: bool
    now_s: float
    preflight_failures: tuple[dict[str, Any], ...]
    approval: Approval | None = None  # arm: the token just verified; go_live uses the one held since arm


class TradingSession:
    __slots__ = (
        "approval",
        "cancel_all_by",
        "hold_reason",
        "profile",
        "session_id",
        "since",
        "state",
        "used_nonces",
        "venue",
        "version",
    )

    def __init__(self, session_id: str, profile: str, venue: str) -> None:
        self.session_id = session_id
        self.profile = profile
        self.venue = venue
        self.state = SessionState.PAPER if profile == "paper" else SessionState.TESTNET
        self.version = 0
        self.hold_reason = ""
        # The kill switch: while on a HOLD entered with cancel_all, every own order that is or becomes
        # cancellable gets a cancel (engine.kill_switch); the operator who pressed it, None when off
        self.cancel_all_by: str | None = None
        self.since = ""  # created_at of the row that entered the current state
        self.approval: dict[str, Any] | None = None
        self.used_nonces: set[str] = set()  # approvals are single-use, across restarts too

    @property
    def is_paper(self) -> bool:
        return self.profile == "paper"

    def decide(
        self,
        trigger: str,
        payload: dict[str, Any],
        actor: str,
        reason: str = "",
        *,
        guard: Guard | None = None,
    ) -> NewEntry:
        """The next transition as a journal entry, without mutating the session.

        Raises:
            InvalidTransition: `trigger` is not legal now.
            ApprovalRejected, PreflightFailed, EngineError(safe_mode_config): a guarded trigger's guard.
        """
        dest = fire(SESSION_FSM, Probe(self.state, is_paper=self.is_paper), trigger)
        if trigger in SESSION_GUARDED:
            payload = {**payload, "approval": self._check(trigger, guard, actor)}
        payload = {"venue": self.venue, **payload}
        return NewEntry(
            "session",
            self.session_id,
            self.version + 1,
            trigger,
            self.state.value,
            dest.value,
            payload,
            actor,
            reason,
        )

    def _check(self, trigger: str, guard: Guard | None, actor: str) -> dict[str, Any] | None:
        """The approval payload to journal, once every guard of `trigger` holds."""
        if guard is None:
            raise ApprovalRejected(f"{trigger} needs the two-man rule's checks", reason="approval_required")
        if trigger == "go_live" and guard.safe_mode:
            raise EngineError(
                "config has safe_mode on: live trading is not allowed", reason="safe_mode_config"
            )
        if trigger == "arm":
            approval = (
                {**guard.approval.as_payload(), "requester": actor} if guard.approval is not None else None
            )
            if approval is not None and approval["nonce"] in self.used_nonces:
                raise ApprovalRejected("approval was already used", reason="approval_reused")
        else:
            approval = self.approval
            if self.approval_lapsed(guard.now_s):
                raise ApprovalRejected("the arm approval has expired", reason="approval_expired")
        if guard.require_token and approval is None:
            raise ApprovalRejected(
                "a second operator's approval token is required", reason="approval_required"
            )
        if guard.preflight_failures:
            raise PreflightFailed(f"preflight failed before {trigger}", detail=list(guard.preflight_failures))
        return approval

    def approval_lapsed(self, now_s: float) -> bool:
        """The session's approval has an expiry at or before `now_s` (an approval ends when it says)."""
        approval = self.approval
        return approval is not None and not approval["expires_at"] > now_s

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "profile": self.profile,
            "venue": self.venue,
            "state": self.state.value,
            "version": self.version,
            "hold_reason": self.hold_reason or None,
            "since": self.since or None,
            "cancel_all": self.cancel_all_by is not None,
            "cancel_all_by": self.cancel_all_by,
            "approval": self.approval,
        }


def decide_open(session_id: str, profile: str, venue: str, actor: str) -> NewEntry:
    state = SessionState.PAPER if profile == "paper" else SessionState.TESTNET
    payload = {"profile": profile, "venue": venue}
    return NewEntry("session", session_id, 1, SESSION_CREATE_TRIGGER, None, state.value, payload, actor)


def apply(
    session: TradingSession | None, stream_id: str, trigger: str, to_state: str, version: int,
    payload: dict[str, Any], reason: str, *, at: str = "",
) -> TradingSession:  # fmt: skip
    """`at`: the row's created_at, kept as `since` when the state changes (a second HOLD keeps the first's)."""
    if session is None:
        session = TradingSession(stream_id, payload["profile"], payload["venue"])
    entered = SessionState(to_state)
    if entered is not session.state or version == 1:
        session.since = at
    session.state = entered
    session.version = version
    if trigger == "hold":
        session.hold_reason = reason
        if payload.get("cancel_all"):
            # Sticky until resume: a second HOLD without the option does not switch the kill switch off
            session.cancel_all_by = str(payload["requested_by"])
    else:
        session.cancel_all_by = None
        if session.state is not SessionState.HOLD:
            session.hold_reason = ""
    if trigger in ("arm", "go_live"):
        session.approval = payload.get("approval")
        if session.approval:
            session.used_nonces.add(session.approval["nonce"])
    elif trigger in ("disarm", "expire", "hold", "resume"):
        session.approval = None
    return session
