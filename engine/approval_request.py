"""The approval-request aggregate (decide/apply, as Order and TradingSession): a pending request for a
guarded session action that a second operator approves with a token signed over the request's nonce.
Its rows are the `approval` stream; replay rebuilds every request from them, so a pending or approved
request survives a restart."""

from __future__ import annotations

from typing import Any

from engine.fsm.approval_table import APPROVAL_CREATE_TRIGGER, APPROVAL_INITIAL, ApprovalState
from engine.fsm.machines import APPROVAL_FSM, Probe, fire
from engine.journal import NewEntry


class ApprovalRequest:
    __slots__ = (
        "action",
        "approval",
        "approver",
        "created_at",
        "expires_at",
        "nonce",
        "reason",
        "request_id",
        "requester",
        "session_id",
        "state",
        "version",
    )

    def __init__(
        self, request_id: str, action: str, session_id: str, requester: str, nonce: str, created_at: str,
        expires_at: int,
    ) -> None:  # fmt: skip
        self.request_id = request_id
        self.action = action
        self.session_id = session_id
        self.requester = requester
        self.nonce = nonce
        self.created_at = created_at
        self.expires_at = expires_at  # epoch seconds, as in the token's claims
        self.state: ApprovalState = APPROVAL_INITIAL
        self.version = 1
        self.approver: str | None = None
        # Approval.as_payload() of the verified token: what arm re-verifies (and replay with the keys)
        self.approval: dict[str, Any] | None = None
        self.reason = ""

    @property
    def open(self) -> bool:
        return self.state in (ApprovalState.PENDING, ApprovalState.APPROVED)

    @property
    def token(self) -> str | None:
        """The approver's token as signed (body.signature), rebuilt from the journaled approval."""
        if not self.approval:
            return None
        return f"{self.approval['signed_body']}.{self.approval['signature']}"

    def decide(self, trigger: str, payload: dict[str, Any], actor: str, reason: str = "") -> NewEntry:
        """The next transition as a journal entry, without mutating the request.

        Raises:
            InvalidTransition: `trigger` is not legal in the current state.
        """
        dest = fire(APPROVAL_FSM, Probe(self.state), trigger)
        body = {"requester": self.requester, "approver": self.approver, **payload}
        return NewEntry(
            "approval", self.request_id, self.version + 1, trigger, self.state.value, dest.value, body,
            actor, reason,
        )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "action": self.action,
            "session_id": self.session_id,
            "requester": self.requester,
            "nonce": self.nonce,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "status": self.state.value,
            "approver": self.approver,
            "version": self.version,
            "reason": self.reason or None,
        }


def decide_request(
    request_id: str, action: str, session_id: str, requester: str, nonce: str, created_at: str,
    expires_at: int,
) -> NewEntry:  # fmt: skip
    payload = {"action": action, "session_id": session_id, "requester": requester, "nonce": nonce,
               "created_at": created_at, "expires_at": expires_at}  # fmt: skip
    return NewEntry(
        "approval", request_id, 1, APPROVAL_CREATE_TRIGGER, None, APPROVAL_INITIAL.value, payload, requester
    )


def apply(
    req: ApprovalRequest | None, stream_id: str, trigger: str, to_state: str, version: int,
    payload: dict[str, Any], reason: str,
) -> ApprovalRequest:  # fmt: skip
    """The only mutator, shared by the live path (in the writer's durability callback) and replay.

    Raises:
        KeyError, ValueError, TypeError: the payload lacks what the row's trigger needs.
    """
    if req is None:
        expires = payload["expires_at"]
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise TypeError("expires_at must be an integer")
        req = ApprovalRequest(
            stream_id, str(payload["action"]), str(payload["session_id"]), str(payload["requester"]),
            str(payload["nonce"]), str(payload["created_at"]), expires,
        )  # fmt: skip
    req.state = ApprovalState(to_state)
    req.version = version
    if trigger == "approve":
        approval = payload["approval"]
        if not isinstance(approval, dict):
            raise TypeError("approval must be an object")
        req.approval = approval
        req.approver = str(payload["approver"])
    if reason:
        req.reason = reason
    return req
