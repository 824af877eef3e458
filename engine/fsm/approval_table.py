"""The approval-request FSM as data (docs/state-machines.md is generated from it).

A request for a guarded action (today only `arm`) that a second operator approves with a signed token
bound to the request's nonce; `arm` then uses it, once."""

from __future__ import annotations

from enum import StrEnum


class ApprovalState(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    USED = "USED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


A = ApprovalState

APPROVAL_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "approve", "source": A.PENDING, "dest": A.APPROVED},  # a verified token, by the approver
    # Declined by the approver, or withdrawn (even once approved, while unused) by an admin
    {"trigger": "reject", "source": [A.PENDING, A.APPROVED], "dest": A.REJECTED},
    {"trigger": "use", "source": A.APPROVED, "dest": A.USED},  # in the same commit as the session's arm
    {"trigger": "expire", "source": [A.PENDING, A.APPROVED], "dest": A.EXPIRED},  # its TTL ended
]

APPROVAL_CREATE_TRIGGER = "request"
APPROVAL_INITIAL = A.PENDING
APPROVAL_TERMINAL = frozenset({A.USED, A.EXPIRED, A.REJECTED})
