"""Approval requests for the two-man rule, so the second operator needs no shell on the server: the
requester creates one, the approver fetches it, signs it on their own machine (`propbot approve
--request`) and submits the token here; `POST /api/session/arm {"approval_id": ...}` then uses it.

Every step is a row of the request's `approval` stream naming both operators; a refused step is an audit
row with both ids and the reason (the request stays as it was)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from api.approvers import check_approver
from api.auth import Operator
from api.deps import Admin, EngineDep, Reader, RuntimeDep, json_body, require
from api.schemas import APPROVAL_ID, ApprovalRequestBody, ApproveBody, RejectBody, parse_body
from engine.approval_request import ApprovalRequest
from engine.errors import EngineError
from engine.guardrails.approvals import claimed_approver
from engine.runtime import Engine

router = APIRouter(prefix="/api/approvals", tags=["approvals"])
Approver = Annotated[Operator, Depends(require("approve"))]
RequestId = Annotated[str, Path(pattern=APPROVAL_ID)]


def _view(req: ApprovalRequest) -> dict[str, Any]:
    return {"ok": True, "approval": req.snapshot()}


async def _step(
    engine: Engine, op_id: str, step: str, request_id: str | None, call: Awaitable[ApprovalRequest],
    approver: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run one step; a refusal is journaled as an audit row (with both operator ids) before it is answered."""
    try:
        return _view(await call)
    except EngineError as exc:
        req = engine.approvals.requests.get(request_id or "")
        detail = {"refused": exc.reason, "message": str(exc)[:300], "approval_id": request_id,
                  "requester": req.requester if req else op_id, "approver": approver}  # fmt: skip
        await engine.audit(op_id, f"api.approvals.{step}", detail)
        raise


@router.post("", status_code=201)
async def create(request: Request, op: Admin, engine: EngineDep) -> dict[str, Any]:
    """A PENDING approval request for `arm` on the current session; its nonce is what the approver signs."""
    body = parse_body(ApprovalRequestBody, await json_body(request, optional=True))
    return await _step(engine, op.id, "request", None, engine.approvals.request(op.id, body.action))


@router.get("")
async def listing(op: Reader, engine: EngineDep) -> dict[str, Any]:
    """Open requests (PENDING, APPROVED) first, then recent closed ones; newest first."""
    return {"ok": True, "items": [r.snapshot() for r in engine.approvals.listing()]}


@router.get("/{request_id}")
async def get_one(request_id: RequestId, op: Reader, engine: EngineDep) -> dict[str, Any]:
    """One request, as `propbot approve --request` reads it."""
    return _view(engine.approvals.get(request_id))


@router.post("/{request_id}")
async def approve(
    request_id: RequestId, request: Request, op: Approver, engine: EngineDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """The approver submits the token they signed for this request: verified now (signature, session,
    action, nonce, expiry, and that they are a second approving operator). PENDING → APPROVED; a refused
    token leaves the request PENDING."""
    body = parse_body(ApproveBody, await json_body(request))
    approver = claimed_approver(body.token) or op.id

    async def run() -> ApprovalRequest:
        req = engine.approvals.get(request_id)
        check_approver(runtime.operators, op.id, req.requester)
        return await engine.approvals.approve(request_id, op.id, body.token)

    return await _step(engine, op.id, "approve", request_id, run(), approver)


@router.post("/{request_id}/reject")
async def reject(request_id: RequestId, request: Request, op: Admin, engine: EngineDep) -> dict[str, Any]:
    """PENDING | APPROVED → REJECTED: the approver declines, or an admin withdraws it unused."""
    body = parse_body(RejectBody, await json_body(request, optional=True))
    return await _step(
        engine, op.id, "reject", request_id, engine.approvals.reject(request_id, op.id, body.reason)
    )
