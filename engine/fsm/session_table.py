"""The trading-session FSM as data (docs/state-machines.md is generated from it)."""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    PAPER = "PAPER"
    TESTNET = "TESTNET"
    ARMED = "ARMED"
    LIVE = "LIVE"
    HOLD = "HOLD"


S = SessionState

SESSION_TRANSITIONS: list[dict[str, object]] = [
    {
        "trigger": "arm",
        "source": S.TESTNET,
        "dest": S.ARMED,
    },  # guarded by the aggregate itself: approval, preflight (engine.session.Guard)
    {"trigger": "go_live", "source": S.ARMED, "dest": S.LIVE},
    {"trigger": "disarm", "source": [S.ARMED, S.LIVE], "dest": S.TESTNET},
    {"trigger": "expire", "source": [S.ARMED, S.LIVE], "dest": S.TESTNET},  # the approval's TTL ended
    # Any state, HOLD included: a second cause while halted is recorded too
    {"trigger": "hold", "source": list(S), "dest": S.HOLD},
    # Back to a SAFE state only, never straight to LIVE; the profile decides which
    {"trigger": "resume", "source": S.HOLD, "dest": S.PAPER, "conditions": "is_paper"},
    {"trigger": "resume", "source": S.HOLD, "dest": S.TESTNET, "unless": "is_paper"},
]

SESSION_CREATE_TRIGGER = "open"
# Triggers the session aggregate refuses without its Guard (engine.session): approval, safe mode, preflight
SESSION_GUARDED = frozenset({"arm", "go_live"})
SESSION_TRADING_STATES = frozenset({S.PAPER, S.TESTNET, S.ARMED, S.LIVE})
