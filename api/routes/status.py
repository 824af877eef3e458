"""GET /api/status: the session and every component, each OK / WARN / ERROR with detail."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from api.deps import Reader, RuntimeDep
from api.runtime import Runtime
from engine.guardrails.preflight import HOLDING_CHECKS, Check

router = APIRouter(tags=["status"])
_RANK = {"OK": 0, "WARN": 1, "ERROR": 2}


def _component(level: str, detail: Any) -> dict[str, Any]:
    return {"status": level, "detail": detail}


async def _journal(runtime: Runtime) -> dict[str, Any]:
    if runtime.start_error is not None and runtime.start_error.reason == "journal_corrupt":
        return _component("ERROR", {"reason": "journal_corrupt", **(runtime.start_error.detail or {})})
    if runtime.engine.writer.unresolved:  # engine.writer: a commit's outcome is still to be read back
        return _component("ERROR", {"reason": "journal_unavailable", "commit_outcome_unknown": True})
    try:
        last = await asyncio.to_thread(runtime.journal.last_seq)
    except Exception:
        return _component("ERROR", {"reason": "journal_unavailable"})
    return _component("OK", {"last_seq": last, "rows_at_start": runtime.engine.report.rows})


def _from_checks(checks: list[Check], monitor: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by = {c.name: c for c in checks}
    ping = by.get("ping")
    skew = by.get("clock_skew")
    failed = [c for c in checks if not c.ok]
    holding = [c for c in failed if c.name in HOLDING_CHECKS]
    return {
        "exchange": _component("OK" if ping and ping.ok else "ERROR", ping.detail if ping else None),
        "clock_skew": _component(
            "OK" if skew and skew.ok else "WARN", skew.detail if skew else "no ping answer"
        ),
        "preflight": _component(
            "ERROR" if holding else "WARN" if failed else "OK",
            {
                "failed": [{"check": c.name, "detail": c.detail} for c in failed],
                "checked": [c.name for c in checks],
                "measured": {
                    "refreshes": monitor["refreshes"],
                    "age_s": monitor["age_s"],
                    "last_error": monitor["last_error"],
                },
            },
        ),
    }


def _with_server_clock(component: dict[str, Any], clock: dict[str, Any]) -> dict[str, Any]:
    """The client's own clock (offset adopted for signing, RTT, syncs) beside the preflight's skew."""
    detail = component["detail"]
    merged = {**detail} if isinstance(detail, dict) else {"note": detail}
    return _component(component["status"], {**merged, "server_clock": clock})


def _approvals(runtime: Runtime) -> dict[str, Any]:
    rules = runtime.settings.engine.approvals
    session = runtime.engine.sessions.session
    detail = {
        "two_man_rule": rules.two_man_rule,
        "require_token": rules.require_token,
        "ttl_s": rules.ttl_s,
        "approvers": sorted(rules.public_keys),
        "in_force": session.approval if session else None,
        "open_requests": len(runtime.engine.approvals.still_open()),
    }
    if not rules.require_token:
        return _component("WARN", {**detail, "note": "approval tokens are not required"})
    if not rules.public_keys:
        return _component("WARN", {**detail, "note": "no approver keys configured: arming is not possible",
                                   "next_step": _NO_KEYS_HINT})  # fmt: skip
    return _component("OK", detail)


def _foreign(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """Working orders on the account that are not ours (no engine prefix, order-list legs): never
    adopted or cancelled; WARN while any exist, with the first few named."""
    detail = {"count": len(orders), "orders": orders[:5]}
    return _component("WARN" if orders else "OK", detail)


# What a fresh install's WARN tells the operator to do next
_NO_KEYS_HINT = (
    "the second operator runs `propbot keygen --out approver.pem` on their own machine; put the public key "
    "it prints under their operator id in the config's approvals.public_keys and restart "
    "(docs/walkthrough.md, docs/LIVE_TRADING_README.md section 6). A paper session is never armed: "
    "this matters for the testnet and live profiles"
)


def _leadership(runtime: Runtime) -> dict[str, Any]:
    """Which engine writes this account's journal: ACTIVE here, STANDBY (and who holds the lease, when
    PostgreSQL lets this role see it), or LOST (fenced: this process must be started again)."""
    base = {"account": runtime.settings.account, "engine_id": runtime.settings.engine_id}
    if runtime.lease is None:
        return _component(
            "OK", {**base, "role": "ACTIVE", "lease": "none: SQLite, one engine per journal file"}
        )
    engine = runtime.engine
    detail = {**base, **runtime.lease.status(), "followed_seq": engine.followed_seq,
              "follow_error": runtime.follow_error, "prefix_verify": engine.prefix_verify}  # fmt: skip
    level = {"ACTIVE": "OK", "STANDBY": "WARN"}.get(str(detail["role"]), "ERROR")
    return _component(level, detail)


@router.get("/api/status")
async def status(op: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """Session state and hold reason, and each component's OK/WARN/ERROR with detail."""
    engine = runtime.engine
    components: dict[str, dict[str, Any]] = {"journal": await _journal(runtime)}
    # A read: every verdict here was measured by a background component; nothing is sent or written
    if runtime.ready:
        verdict = engine.preflight.verdict(engine.orders.risk_headroom())
        components.update(_from_checks(verdict, engine.preflight.status()))
        kill_switch = engine.orders.kill_switch.status()
        components["kill_switch"] = _component(kill_switch["status"], kill_switch)
        tracer = engine.orders.trade_tracer.status()
        components["untraced_trades"] = _component(tracer.pop("status"), tracer)
    else:
        error = runtime.start_error
        detail = {"reason": error.reason, "message": str(error)} if error else {"reason": "not_ready"}
        # A standby is healthy as such: it measures nothing until it is the writer
        level = "WARN" if error is not None and error.reason == "standby" else "ERROR"
        for name in ("exchange", "clock_skew", "preflight"):
            components[name] = _component(level, detail)
    for name, comp in {**engine.supervisor.status(), **runtime.supervisor.status()}.items():
        components[f"task.{name}"] = _component(comp["status"], comp)
    clock = runtime.status_sources.get("clock")
    if clock is not None:
        components["clock_skew"] = _with_server_clock(components["clock_skew"], clock())
    notes = {
        "rate_limit": "not applicable to the paper venue",
        "market_data": "market-data stream disabled",
        "user_stream": "no user data stream (paper venue, or no routing.base_url_ws_api): fills come from polling",
    }
    for name, note in notes.items():
        fn = runtime.status_sources.get(name)
        if fn is None:
            components[name] = _component("OK", note)
        else:
            data = fn()
            components[name] = _component(str(data.get("level", "WARN")), data)
    components["approvals"] = _approvals(runtime)
    components["foreign_orders"] = _foreign(engine.orders.foreign_orders())
    relay = runtime.status_sources.get("outbox_relay")
    if relay is not None:  # the `relay:` config section: the outbox relay runs in this process
        data = relay()
        components["outbox_relay"] = _component(str(data["status"]), data)
    components["leadership"] = _leadership(runtime)
    session = engine.sessions.session
    overall = max((c["status"] for c in components.values()), key=lambda s: _RANK.get(s, 2))
    return {
        "ok": True,
        "status": overall,
        "profile": runtime.settings.profile,
        "account": runtime.settings.account,
        "engine_id": runtime.settings.engine_id,
        "role": runtime.role,
        "venue": engine.exchange.venue,
        "safe_mode": runtime.settings.safe_mode,
        "ready": runtime.ready,
        "session": {
            "state": session.state.value if session else None,
            "hold_reason": (session.hold_reason or None) if session else None,
            "since": (session.since or None) if session else None,
            "cancel_all": session.cancel_all_by is not None if session else False,
            "session_id": session.session_id if session else None,
        },
        "components": components,
    }
