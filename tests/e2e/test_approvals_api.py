"""The two-man rule through the API, with no shell on the server: the requester asks (POST
/api/approvals), the approver fetches the request, signs it on their own machine with `propbot approve
--request` and submits the token (POST /api/approvals/{id}); arm uses it once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.auth import write_private
from api.cli import main
from engine.guardrails.approvals import sign_approval
from tests.e2e.server import ApiServer, approver_key, journal_rows, simulator_and_api

KEYS: dict[str, tuple[Ed25519PrivateKey, str]] = {n: approver_key() for n in ("approver2", "admin", "viewer")}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    public = {name: pub for name, (_, pub) in KEYS.items()}
    with simulator_and_api(tmp_path_factory.mktemp("approvals"), approvals={"public_keys": public}) as (
        _,
        srv,
    ):
        yield srv


def key_file(tmp_path: Path, name: str) -> Path:
    pem = KEYS[name][0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / f"{name}.pem"
    write_private(path, pem.decode())
    return path


def sign(name: str, request: dict[str, Any], **override: Any) -> str:
    claims = {"approver": name, "session_id": request["session_id"], "action": request["action"],
              "nonce": request["nonce"], "expires_at": request["expires_at"], **override}  # fmt: skip
    return sign_approval(KEYS[name][0], claims)


def new_request(api: ApiServer) -> dict[str, Any]:
    r = api.client("admin").post("/api/approvals")
    assert r.status_code == 201, r.text
    req: dict[str, Any] = r.json()["approval"]
    return req


def status_of(api: ApiServer, request_id: str) -> str:
    status: str = api.client("viewer").get(f"/api/approvals/{request_id}").json()["approval"]["status"]
    return status


def test_request_sign_on_the_approvers_machine_submit_arm(
    api: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, approver = api.client("admin"), api.client(token=api.tokens["approver2"])
    session_id = admin.get("/api/session").json()["session"]["session_id"]
    req = new_request(api)
    assert {k: req[k] for k in ("action", "session_id", "requester", "status")} == {
        "action": "arm", "session_id": session_id, "requester": "admin", "status": "PENDING",
    }  # fmt: skip
    assert set(req) >= {"id", "nonce", "created_at", "expires_at"}
    listed = approver.get("/api/approvals").json()["items"]
    assert req["id"] in [i["id"] for i in listed]
    # The approver saves the request as fetched and signs it with their own key, on their machine
    fetched = approver.get(f"/api/approvals/{req['id']}")
    request_file = tmp_path / "request.json"
    request_file.write_text(fetched.text)
    argv = ["approve", "--request", str(request_file), "--key", str(key_file(tmp_path, "approver2")),
            "--approver", "approver2"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"approving request {req['id']} as approver2: arm session {session_id}")
    token = out[-1]
    # stdin works too (`curl ... | propbot approve --request -`)
    monkeypatch.setattr("sys.stdin", open(request_file))  # noqa: SIM115
    assert main([*argv[:1], "--request", "-", *argv[3:]]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == token  # the same claims, the same token
    submitted = approver.post(f"/api/approvals/{req['id']}", json={"token": token})
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["approval"]["status"] == "APPROVED"
    assert submitted.json()["approval"]["approver"] == "approver2"
    armed = admin.post("/api/session/arm", json={"approval_id": req["id"]})
    assert armed.status_code == 200, armed.text
    assert armed.json()["session"]["state"] == "ARMED"
    assert armed.json()["session"]["approval"]["approver"] == "approver2"
    assert status_of(api, req["id"]) == "USED"
    again = admin.post("/api/session/arm", json={"approval_id": req["id"]})
    assert again.status_code == 409
    rows = journal_rows(api.client("auditor"), stream="approval", stream_id=req["id"])
    assert [(r["trigger"], r["actor"], r["payload"]["requester"]) for r in rows] == [
        ("request", "admin", "admin"), ("approve", "approver2", "admin"), ("use", "admin", "admin"),
    ]  # fmt: skip
    assert rows[1]["payload"]["approver"] == rows[2]["payload"]["approver"] == "approver2"
    assert admin.post("/api/session/disarm").status_code == 200


@pytest.mark.parametrize(
    ("who", "signer", "override", "status", "reason"),
    [
        ("admin", "admin", {}, 403, "approval_same_operator"),  # the requester approving themselves
        ("viewer", "viewer", {}, 403, "forbidden"),  # a viewer may not approve at all
        ("approver2", "viewer", {}, 403, "approval_not_signer"),  # a token someone else signed
        ("approver2", "approver2", {"approver": "ghost"}, 403, "approval_unknown_approver"),
        ("approver2", "approver2", {"nonce": "0" * 32}, 403, "approval_wrong_nonce"),
        ("approver2", "approver2", {"session_id": "testnet-other"}, 409, "approval_wrong_session"),
        ("approver2", "approver2", {"expires_at": 1}, 409, "approval_expired"),
    ],
)
def test_refused_approvals_leave_the_request_pending_and_are_journaled(
    api: ApiServer, who: str, signer: str, override: dict[str, Any], status: int, reason: str
) -> None:
    req = new_request(api)
    client = api.client(token=api.tokens[who]) if who == "approver2" else api.client(who)
    r = client.post(f"/api/approvals/{req['id']}", json={"token": sign(signer, req, **override)})
    assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
    assert status_of(api, req["id"]) == "PENDING"
    if reason != "forbidden":  # a role refusal is answered before any step runs
        audits = journal_rows(api.client("auditor"), stream="audit", trigger="api.approvals.approve")
        last = audits[-1]["payload"]
        assert (last["approval_id"], last["refused"], last["requester"]) == (req["id"], reason, "admin")
        assert audits[-1]["actor"] == who


def test_arm_without_a_choice_fails_closed_on_two_approved_requests(api: ApiServer) -> None:
    admin, approver = api.client("admin"), api.client(token=api.tokens["approver2"])
    ids = []
    for _ in range(2):
        req = new_request(api)
        r = approver.post(f"/api/approvals/{req['id']}", json={"token": sign("approver2", req)})
        assert r.status_code == 200, r.text
        ids.append(req["id"])
    r = admin.post("/api/session/arm")
    assert (r.status_code, r.json()["reason"]) == (409, "approval_ambiguous")
    assert sorted(r.json()["detail"]["found"]) == sorted(ids)
    both = admin.post("/api/session/arm", json={"approval_id": ids[0], "token": "x"})
    assert both.status_code == 422
    # Rejecting one leaves exactly one: arm with no body takes it
    assert admin.post(f"/api/approvals/{ids[1]}/reject", json={"reason": "duplicate"}).status_code == 200
    armed = admin.post("/api/session/arm")
    assert armed.status_code == 200, armed.text
    assert [status_of(api, i) for i in ids] == ["USED", "REJECTED"]
    assert admin.post("/api/session/disarm").status_code == 200


def test_unknown_and_malformed_ids(api: ApiServer) -> None:
    viewer = api.client("viewer")
    assert viewer.get("/api/approvals/apr-0000000000000000").json()["reason"] == "unknown_approval"
    assert viewer.get("/api/approvals/apr-0000000000000000").status_code == 404
    assert viewer.get("/api/approvals/../x").status_code in (404, 422)
    assert viewer.get("/api/approvals/nope").status_code == 422
    assert viewer.post("/api/approvals").status_code == 403


def test_approve_cli_refuses_a_request_that_is_not_pending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = {"id": "apr-1", "action": "arm", "session_id": "s", "requester": "admin", "nonce": "n",
               "status": "USED", "expires_at": 2**40}  # fmt: skip
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"ok": True, "approval": request}))
    argv = [
        "approve",
        "--request",
        str(path),
        "--key",
        str(key_file(tmp_path, "approver2")),
        "--approver",
        "a",
    ]
    assert main(argv) == 2
    assert "USED, not PENDING" in capsys.readouterr().err
    path.write_text("{\n  nope")
    assert main(argv) == 2
    assert f"{path}: line 2" in capsys.readouterr().err


def test_a_rejected_requests_token_read_from_the_journal_does_not_arm(api: ApiServer) -> None:
    admin, approver = api.client("admin"), api.client(token=api.tokens["approver2"])
    req = new_request(api)
    token = sign("approver2", req)
    assert approver.post(f"/api/approvals/{req['id']}", json={"token": token}).status_code == 200
    assert admin.post(f"/api/approvals/{req['id']}/reject", json={"reason": "withdrawn"}).status_code == 200
    # The approve row carries the token (an auditor or admin reads it back): given raw, it is refused
    a = journal_rows(admin, stream="approval", stream_id=req["id"])[1]["payload"]["approval"]
    leaked = f"{a['signed_body']}.{a['signature']}"
    assert leaked == token
    r = admin.post("/api/session/arm", json={"token": leaked})
    assert (r.status_code, r.json()["reason"]) == (403, "approval_use_request"), r.text
    assert r.json()["detail"]["approval_id"] == req["id"]
    assert admin.get("/api/session").json()["session"]["state"] == "TESTNET"
    assert status_of(api, req["id"]) == "REJECTED"
    audits = journal_rows(api.client("auditor"), stream="audit", trigger="api.session.arm")
    assert audits[-1]["payload"]["refused"] == "approval_use_request"
