"""Who may approve: the two-man rule by people, not strings. The engine verifies the token's signature;
the API knows the operators, so it checks that the approver a token names is a configured operator whose
role may approve and another person than the requester (ids compared case-insensitively)."""

from __future__ import annotations

from api.auth import OperatorStore
from engine.errors import ApprovalRejected


def check_approver(operators: OperatorStore, approver_id: str, requester: str) -> None:
    """Raises ApprovalRejected: approval_unknown_approver, approval_role, approval_same_operator (403)."""
    approver = operators.find(approver_id)
    if approver is None:
        raise ApprovalRejected(
            "the approver is not a configured operator", reason="approval_unknown_approver"
        )
    if not approver.may("approve"):
        raise ApprovalRejected(f"role {approver.role} may not approve", reason="approval_role")
    if approver.id.casefold() == requester.casefold():
        raise ApprovalRejected(
            "the requester cannot approve their own request", reason="approval_same_operator"
        )
