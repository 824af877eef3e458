"""Real two-man-rule tokens for tests: a test approver's Ed25519 key and a signer, so every test that
reaches LIVE goes through the same guards as an operator does."""

from __future__ import annotations

import base64
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.guardrails.approvals import sign_approval

APPROVER = "approver"
APPROVER_KEY = Ed25519PrivateKey.generate()
APPROVER_KEYS = {
    APPROVER: base64.b64encode(
        APPROVER_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
}


def approval_token(session_id: str, now_s: float, *, action: str = "arm", ttl_s: float = 600) -> str:
    claims = {"approver": APPROVER, "session_id": session_id, "action": action,
              "nonce": uuid.uuid4().hex, "expires_at": int(now_s + ttl_s)}  # fmt: skip
    return sign_approval(APPROVER_KEY, claims)
