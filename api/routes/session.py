"""The trading session: read it, and fire arm / go_live / disarm / hold / resume (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.approvers import check_approver
from api.deps import Admin, EngineDep, Reader, RuntimeDep, json_body
from api.errors import ApiError
from api.runtime import Runtime
from api.schemas import ArmBody, EmptyBody, HoldBody, parse_body
from engine.errors import ApprovalRejected, EngineError
from engine.guardrails.approvals import claimed_approver
from engine.runtime import Engine
from engine.session import TradingSession

router = APIRouter(prefix="/api/session", tags=["session"])
_TOKEN_MAX_BYTES = 4096


def _answer(engine: Engine, session: TradingSession) -> dict[str, Any]:
    mode = {"PAPER": "paper", "TESTNET": "test", "ARMED": "test", "LIVE": "live"}.get(
        session.state.value, "none"
    )
    return {
        "ok": True,
        "session": session.snapshot(),
        "order_mode": mode,
        "safe_mode": engine.settings.safe_mode,
        "venue": engine.exchange.venue,
    }


def _token_file(runtime: Runtime) -> str | None:
    path = runtime.settings.data_dir / "approvals" / "token.txt"
    try:
        data = path.read_bytes()[: _TOKEN_MAX_BYTES + 1]
    except OSError:
        return None
    if len(data) > _TOKEN_MAX_BYTES:
        raise ApiError(422, "invalid_body", [{"field": "token", "error": f"{path.name} is too large"}])
    return data.decode("ascii", errors="replace").strip() or None


async def _fire(engine: Engine, op_id: str, trigger: str, call: Any) -> dict[str, Any]:
    """Run one session operation; a refusal is journaled as an audit row before it is answered."""
    try:
        session = await call
    except EngineError as exc:
        await engine.audit(
            op_id, f"api.session.{trigger}", {"refused": exc.reason, "message": str(exc)[:300]}
        )
        raise
    return _answer(engine, session)


@router.get("")
async def get_session(op: Reader, engine: EngineDep) -> dict[str, Any]:
    """The current session: state, hold reason, approval in force."""
    return _answer(engine, engine.sessions.current)


@router.post("/arm")
async def arm(request: Request, op: Admin, engine: EngineDep, runtime: RuntimeDep) -> dict[str, Any]:
    """TESTNET → ARMED: needs preflight OK and a second operator's approval (a token, or an approved
    request from POST /api/approvals by `approval_id`; with neither: the token file or the one approved
    request, never a guess between several)."""
    body = parse_body(ArmBody, await json_body(request, optional=True))

    async def run() -> TradingSession:
        token, request_id = _pick(engine, runtime, body)
        if request_id is not None:
            return await _arm_with_request(engine, runtime, op.id, request_id)
        return await _arm(engine, runtime, op.id, token)

    return await _fire(engine, op.id, "arm", run())


async def _arm(engine: Engine, runtime: Runtime, requester: str, token: str | None) -> TradingSession:
    """The approver a token names is checked as a person (api.approvers); the engine then verifies the
    token itself."""
    approver_id = claimed_approver(token) if token else None
    if approver_id is not None:
        check_approver(runtime.operators, approver_id, requester)
    return await engine.sessions.guarded("arm", requester, token, engine.orders.risk_headroom())


async def _arm_with_request(
    engine: Engine, runtime: Runtime, requester: str, request_id: str
) -> TradingSession:
    """Arm with an APPROVED request (POST /api/approvals); its approver is checked again as a person
    (they may have lost the role since), and the request becomes USED in the arm's own commit."""
    req = engine.approvals.get(request_id)
    if req.approver is not None:
        check_approver(runtime.operators, req.approver, requester)
    return await engine.approvals.arm(request_id, requester, engine.orders.risk_headroom())


def _pick(engine: Engine, runtime: Runtime, body: ArmBody) -> tuple[str | None, str | None]:
    """(token, approval request id) for an arm call; without either in the body: the token file, or the
    one APPROVED request of this session. Both at once, or several requests, is ambiguous: refused.

    Raises:
        ApiError: 422 both given. ApprovalRejected: 409 approval_ambiguous."""
    if body.token and body.approval_id:
        raise ApiError(
            422, "invalid_body", [{"field": "approval_id", "error": "give token or approval_id, not both"}]
        )
    if body.token or body.approval_id:
        return body.token, body.approval_id
    approved = engine.approvals.approved_for(engine.sessions.current.session_id)
    token = _token_file(runtime)
    if len(approved) + (token is not None) > 1:
        found = [r.request_id for r in approved] + (["approvals/token.txt"] if token else [])
        raise ApprovalRejected(
            "more than one approval is at hand: name one with approval_id or token",
            reason="approval_ambiguous",
            detail={"found": found},
        )
    if approved:
        return None, approved[0].request_id
    return token, None


@router.post("/go_live")
async def go_live(request: Request, op: Admin, engine: EngineDep) -> dict[str, Any]:
    """ARMED → LIVE: preflight re-run, approval still valid, config safe_mode off."""
    parse_body(EmptyBody, await json_body(request, optional=True))
    return await _fire(
        engine,
        op.id,
        "go_live",
        engine.sessions.guarded("go_live", op.id, None, engine.orders.risk_headroom()),
    )


@router.post("/disarm")
async def disarm(request: Request, op: Admin, engine: EngineDep) -> dict[str, Any]:
    """ARMED | LIVE → TESTNET."""
    parse_body(EmptyBody, await json_body(request, optional=True))
    return await _fire(engine, op.id, "disarm", engine.sessions.transition("disarm", op.id))


@router.post("/hold")
async def hold(request: Request, op: Admin, engine: EngineDep) -> dict[str, Any]:
    """Any state → HOLD: no new orders until resumed; cancels and reads still work. With
    `"cancel_all": true`, the kill switch: then every own open order is cancelled, including orders in
    flight once the venue acknowledges them, until resume; the answer lists what happened to each."""
    body = parse_body(HoldBody, await json_body(request, optional=True))
    if not body.cancel_all:
        return await _fire(engine, op.id, "hold", engine.sessions.hold(body.reason, op.id))
    try:
        session, report = await engine.orders.cancel_all(body.reason, op.id)
    except EngineError as exc:
        await engine.audit(op.id, "api.session.hold", {"cancel_all": True, "refused": exc.reason,
                                                       "message": str(exc)[:300]})  # fmt: skip
        raise
    # The HOLD row and each cancel's rows are journaled by the engine; this row is the call's outcome
    outcome = report.as_dict()
    await engine.audit(op.id, "api.session.hold", {"cancel_all": True, "outcome": _ids(outcome)})
    return {**_answer(engine, session), "cancel_all": outcome}


def _ids(outcome: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {k: [str(o["clientOrderId"]) for o in v] for k, v in outcome.items()}


@router.post("/resume")
async def resume(request: Request, op: Admin, engine: EngineDep, runtime: RuntimeDep) -> dict[str, Any]:
    """HOLD → PAPER or TESTNET (never LIVE), once no component still demands the hold."""
    parse_body(EmptyBody, await json_body(request, optional=True))
    causes = [c for c in (check() for check in runtime.hold_checks) if c]
    if causes:
        await engine.audit(op.id, "api.session.resume", {"refused": "hold_cause_active", "causes": causes})
        raise EngineError(
            "the hold's cause is still active", reason="hold_cause_active", detail={"causes": causes}
        )
    return await _fire(engine, op.id, "resume", engine.sessions.transition("resume", op.id))
