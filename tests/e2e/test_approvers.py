"""The two-man rule compares people, not strings: the approver a token names must be a configured
operator whose role may approve, and not the requester under another spelling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.e2e.server import ApiServer, approval_token, approver_key, simulator_and_api

KEYS: dict[str, tuple[Ed25519PrivateKey, str]] = {
    name: approver_key() for name in ("approver2", "viewer", "ghost", "Admin")
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ApiServer]]:
    # Every key is configured: only who the approver is may refuse the token
    public = {name: pub for name, (_, pub) in KEYS.items()}
    with simulator_and_api(tmp_path_factory.mktemp("approvers"), approvals={"public_keys": public}) as pair:
        yield pair


def arm(api: ApiServer, approver: str) -> Any:
    admin = api.client("admin")
    session_id = admin.get("/api/session").json()["session"]["session_id"]
    return admin.post(
        "/api/session/arm", json={"token": approval_token(KEYS[approver][0], approver, session_id)}
    )


@pytest.mark.parametrize(
    ("approver", "reason"),
    [
        ("viewer", "approval_role"),  # an operator, but a viewer may not approve
        ("ghost", "approval_unknown_approver"),  # a key filed under a name no operator has
        ("Admin", "approval_same_operator"),  # the requester "admin" under another spelling
    ],
)
def test_an_approver_who_is_not_a_second_approving_operator_is_refused(
    stack: tuple[Any, ApiServer], approver: str, reason: str
) -> None:
    _, api = stack
    r = arm(api, approver)
    assert (r.status_code, r.json()["reason"]) == (403, reason), r.text
    assert api.client("viewer").get("/api/session").json()["session"]["state"] == "TESTNET"


def test_a_second_admin_approves(stack: tuple[Any, ApiServer]) -> None:
    _, api = stack
    r = arm(api, "approver2")
    assert r.status_code == 200, r.text
    assert r.json()["session"]["state"] == "ARMED"
