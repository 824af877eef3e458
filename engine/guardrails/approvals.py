"""Two-man rule: an approval is a short-lived Ed25519-signed token from a second operator, bound to the
session, the action and a nonce, and usable once. The engine holds public keys only.

Token text: base64url(claims JSON) "." base64url(signature over the claims bytes).
Claims: {"approver", "session_id", "action", "nonce", "expires_at" (epoch seconds)}.

What is journaled (Approval.as_payload, in the arm row and again in go_live) carries the token's signed
body and signature, so `replay(..., approver_keys=...)` re-verifies every approval from the journal alone
(verify_journaled): a row rewritten with a made-up approval does not verify without the approver's key.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.errors import ApprovalRejected

# The approver's machine may run a little ahead of ours: do not refuse a token over that
_CLOCK_SLACK_S = 30.0


# approver id -> its public key, or its keys (current and rotated out): what journaled approvals verify against
ApproverKeys = Mapping[str, str | tuple[str, ...]]


def journal_keys(
    public_keys: Mapping[str, str], retired_keys: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """Every key each approver signed with, current first: what journaled approvals verify against (a
    rotated-out key still verifies what it signed; new tokens are checked against public_keys alone)."""
    ids = dict.fromkeys([*public_keys, *retired_keys])
    return {i: (*([public_keys[i]] if i in public_keys else []), *retired_keys.get(i, ())) for i in ids}


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Approval:
    approver: str
    session_id: str
    action: str
    nonce: str
    expires_at: float
    # The token's two halves as signed (base64url, as in the token text): what replay re-verifies
    signed_body: str = ""
    signature: str = ""

    def as_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "approver": self.approver,
            "action": self.action,
            "nonce": self.nonce,
            "expires_at": self.expires_at,
        }
        if self.signed_body:
            out["signed_body"] = self.signed_body
            out["signature"] = self.signature
        return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def claimed_approver(token: str) -> str | None:
    """The approver a token names, read WITHOUT verifying it (so the caller can check who that is before
    the engine checks the signature); None when the token is malformed (the engine then says so)."""
    try:
        claims = json.loads(_b64d(token.strip().split(".")[0]), parse_constant=_no_constant)
        approver = claims["approver"]
    except Exception:
        return None
    return approver if isinstance(approver, str) else None


def sign_approval(private_key: Ed25519PrivateKey, claims: dict[str, Any]) -> str:
    """What the approving operator's tool does (the CLI's `propbot approve`); kept here for one format."""
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64e(body)}.{_b64e(private_key.sign(body))}"


def verify_approval(
    token: str,
    *,
    public_keys: dict[str, str],
    requester: str,
    session_id: str,
    action: str,
    now_s: float,
    used_nonces: set[str],
    max_ttl_s: float | None = None,
) -> Approval:
    """Check every rule of the two-man rule.

    Raises:
        ApprovalRejected: with a reason naming the rule that failed.
    """
    try:
        body_text, sig_text = token.strip().split(".")
        body, sig = _b64d(body_text), _b64d(sig_text)
        claims = json.loads(body, parse_constant=_no_constant)  # NaN/Infinity are not JSON: refused
        expires = claims["expires_at"]
        # An integer epoch second: a float (let alone NaN, which compares false with everything) is refused
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise TypeError("expires_at must be an integer")
        approval = Approval(
            str(claims["approver"]), str(claims["session_id"]), str(claims["action"]),
            str(claims["nonce"]), float(expires), body_text, sig_text,
        )  # fmt: skip
    except Exception as exc:  # whatever a crafted token does to the parser (overflow, recursion) is malformed
        raise ApprovalRejected("approval token is malformed", reason="approval_malformed") from exc
    key_b64 = public_keys.get(approval.approver)
    if key_b64 is None:
        raise ApprovalRejected(
            f"{approval.approver!r} is not a configured approver", reason="approval_unknown_approver"
        )
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(sig, body)
    except (InvalidSignature, ValueError) as exc:
        raise ApprovalRejected("approval signature is not valid", reason="approval_bad_signature") from exc
    # People, not strings: "Bob" and "bob" are one operator
    if hmac.compare_digest(approval.approver.casefold().encode(), requester.casefold().encode()):
        raise ApprovalRejected(
            "the requester cannot approve their own request", reason="approval_same_operator"
        )
    if not hmac.compare_digest(approval.session_id.encode(), session_id.encode()):
        raise ApprovalRejected("approval is for another session", reason="approval_wrong_session")
    if not hmac.compare_digest(approval.action.encode(), action.encode()):
        raise ApprovalRejected(
            f"approval is for {approval.action!r}, not {action!r}", reason="approval_wrong_action"
        )
    if not approval.expires_at > now_s:
        raise ApprovalRejected("approval has expired", reason="approval_expired")
    if max_ttl_s is not None and approval.expires_at - now_s > max_ttl_s + _CLOCK_SLACK_S:
        # Short-lived by policy: a token signed for longer than the configured TTL is refused outright
        raise ApprovalRejected(
            f"approval lives longer than the allowed {max_ttl_s:g}s", reason="approval_ttl_too_long"
        )
    if approval.nonce in used_nonces:
        raise ApprovalRejected("approval was already used", reason="approval_reused")
    return approval


def verify_journaled(
    approval: Any, *, public_keys: ApproverKeys, session_id: str, requester: str | None
) -> str | None:
    """Re-check an approval as journaled (Approval.as_payload plus "requester"): the signature over the
    signed body with the approver's key, that the journaled fields are the signed claims, and (with
    `requester`, when the two-man rule is on) that the approver is another person than the requester.

    Returns None when it holds, else the problem (for JournalCorrupt)."""
    if not isinstance(approval, dict):
        return "approval is not an object"
    body_text, sig_text = approval.get("signed_body"), approval.get("signature")
    if not isinstance(body_text, str) or not isinstance(sig_text, str) or not body_text:
        return "approval carries no signed token"
    approver = approval.get("approver")
    found = public_keys.get(approver) if isinstance(approver, str) else None
    if not found:
        return f"approver {approver!r} is not a configured approver"
    try:
        body, sig = _b64d(body_text), _b64d(sig_text)
        claims = json.loads(body)
    except (ValueError, TypeError):
        return f"approval by {approver!r} has no valid signature"
    if not any(_signed_by(key_b64, sig, body) for key_b64 in ((found,) if isinstance(found, str) else found)):
        return f"approval by {approver!r} has no valid signature"
    if not isinstance(claims, dict):
        return "approval claims are not an object"
    for name in ("approver", "action", "nonce", "expires_at"):
        if claims.get(name) != approval.get(name):
            return f"journaled approval {name} {approval.get(name)!r} is not the signed {claims.get(name)!r}"
    if claims.get("session_id") != session_id:
        return f"approval is signed for session {claims.get('session_id')!r}, not {session_id!r}"
    # A requester's own valid signature is a well-formed token that breaks the two-man rule
    if requester is not None and (
        not isinstance(requester, str) or str(approver).casefold() == requester.casefold()
    ):
        return f"approval by {approver!r} is the requester's own (requester {requester!r})"
    return None


def _signed_by(key_b64: str, sig: bytes, body: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(sig, body)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
