"""The trading-session aggregate: same decide/apply shape as Order."""

from __future__ import annotations

from typing import Any

from engine.fsm.machines import SESSION_FSM, Probe, fire
from engine.fsm.session_table import SESSION_CREATE_TRIGGER, SessionState
from engine.journal import NewEntry


class TradingSession:
    __slots__ = (
        "approval",
        "hold_reason",
        "profile",
        "session_id",
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
        self.approval: dict[str, Any] | None = None
        self.used_nonces: set[str] = set()  # approvals are single-use, across restarts too

    @property
    def is_paper(self) -> bool:
        return self.profile == "paper"

    def decide(self, trigger: str, payload: dict[str, Any], actor: str, reason: str = "") -> NewEntry:
        """Raises InvalidTransition when `trigger` is not legal now."""
        dest = fire(SESSION_FSM, Probe(self.state, is_paper=self.is_paper), trigger)
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

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "profile": self.profile,
            "venue": self.venue,
            "state": self.state.value,
            "version": self.version,
            "hold_reason": self.hold_reason or None,
            "approval": self.approval,
        }


def decide_open(session_id: str, profile: str, venue: str, actor: str) -> NewEntry:
    state = SessionState.PAPER if profile == "paper" else SessionState.TESTNET
    payload = {"profile": profile, "venue": venue}
    return NewEntry("session", session_id, 1, SESSION_CREATE_TRIGGER, None, state.value, payload, actor)


def apply(
    session: TradingSession | None, stream_id: str, trigger: str, to_state: str, version: int,
    payload: dict[str, Any], reason: str,
) -> TradingSession:  # fmt: skip
    if session is None:
        session = TradingSession(stream_id, payload["profile"], payload["venue"])
    session.state = SessionState(to_state)
    session.version = version
    if trigger == "hold":
        session.hold_reason = reason
    elif session.state is not SessionState.HOLD:
        session.hold_reason = ""
    if trigger in ("arm", "go_live"):
        session.approval = payload.get("approval")
        if session.approval:
            session.used_nonces.add(session.approval["nonce"])
    elif trigger in ("disarm", "expire", "hold", "resume"):
        session.approval = None
    return session
