"""SessionService: the one active trading session, its transitions and the two-man rule."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from engine.config import EngineSettings, fingerprint
from engine.errors import ApprovalRejected, EngineError, PreflightFailed
from engine.fsm.session_table import SessionState
from engine.guardrails.approvals import verify_approval
from engine.guardrails.preflight import Check, failures, run_preflight
from engine.journal import NewEntry
from engine.ports import Clock, ExchangePort
from engine.session import TradingSession, apply, decide_open
from engine.writer import GroupCommitWriter


class SessionService:
    def __init__(
        self, writer: GroupCommitWriter, exchange: ExchangePort, settings: EngineSettings, clock: Clock
    ) -> None:
        self._writer = writer
        self._exchange = exchange
        self._settings = settings
        self._clock = clock
        self._lock = asyncio.Lock()
        self.session: TradingSession | None = None

    @property
    def current(self) -> TradingSession:
        if self.session is None:
            raise EngineError("session not started", reason="not_ready")
        return self.session

    async def restore(self, replayed: dict[str, TradingSession]) -> None:
        """Adopt the replayed session of this profile or open one. ARMED/LIVE never survive a restart."""
        sid = self._settings.profile
        self.session = replayed.get(sid)
        if self.session is None:
            await self._append(decide_open(sid, self._settings.profile, self._exchange.venue, "system"))
        elif self.session.state in (SessionState.ARMED, SessionState.LIVE):
            await self.transition("hold", "system", reason="restart")

    async def transition(
        self, trigger: str, actor: str, *, reason: str = "", payload: dict[str, Any] | None = None
    ) -> TradingSession:
        """Raises InvalidTransition when `trigger` is illegal in the current state."""
        async with self._lock:
            await self._append(self.current.decide(trigger, payload or {}, actor, reason))
        return self.current

    async def hold(self, reason: str, actor: str = "system") -> TradingSession:
        return await self.transition("hold", actor, reason=reason)

    async def _append(self, entry: NewEntry) -> None:
        (rec,) = await self._writer.append([entry])
        self.session = apply(self.session, rec.stream_id, rec.trigger, rec.to_state or "", rec.version,
                             entry.payload, rec.reason)  # fmt: skip

    # -- arming: preflight + second operator's approval ----------------------------------------

    async def preflight(self, risk_ok: Check) -> list[Check]:
        return await run_preflight(self._exchange, self._settings.preflight, self._clock.now(),
                                   self._settings.symbols, risk_ok)  # fmt: skip

    async def preflight_or_hold(self, risk_ok: Check, actor: str) -> None:
        """Before each real order: every check must pass, else HOLD and refuse.

        Raises:
            PreflightFailed: with the failed checks as detail; the session is on HOLD by then.
        """
        failed = failures(await self.preflight(risk_ok))
        if failed:
            await self.hold(f"preflight_failed: {', '.join(f['check'] for f in failed)}", actor)
            raise PreflightFailed("preflight failed before a live order", detail=failed)

    async def guarded(self, trigger: str, actor: str, token: str | None, risk_ok: Check) -> TradingSession:
        """arm / go_live: refuse (and HOLD on preflight failure) unless every guard passes.

        Raises:
            ApprovalRejected, PreflightFailed, InvalidTransition.
        """
        session = self.current
        session.decide(trigger, {}, actor)  # illegal trigger fails before any check runs
        if trigger == "go_live" and self._settings.safe_mode:
            raise EngineError(
                "config has safe_mode on: live trading is not allowed", reason="safe_mode_config"
            )
        approval = self._approval(trigger, actor, token)
        checks = await self.preflight(risk_ok)
        failed = failures(checks)
        if failed:
            await self.hold(f"preflight_failed: {', '.join(f['check'] for f in failed)}", actor)
            raise PreflightFailed("preflight failed", detail=failed)
        risk = {k: str(v) for k, v in asdict(self._settings.risk).items()}
        payload: dict[str, Any] = {"approval": approval, "checks": [c.name for c in checks],
                                   "config_hash": fingerprint(self._settings), "risk_limits": risk}  # fmt: skip
        return await self.transition(trigger, actor, payload=payload)

    def _approval(self, trigger: str, actor: str, token: str | None) -> dict[str, Any] | None:
        rules = self._settings.approvals
        if trigger == "go_live":
            # go_live re-checks the approval given at arm time: still valid, same action chain
            held = self.current.approval
            if rules.require_token and (held is None or held["expires_at"] <= self._clock.now().timestamp()):
                raise ApprovalRejected("the arm approval has expired", reason="approval_expired")
            return held
        if not rules.require_token:
            return None
        if not token:
            raise ApprovalRejected(
                "a second operator's approval token is required", reason="approval_required"
            )
        approval = verify_approval(
            token, public_keys=rules.public_keys, requester=actor if rules.two_man_rule else "",
            session_id=self.current.session_id, action=trigger, now_s=self._clock.now().timestamp(),
            used_nonces=self.current.used_nonces, max_ttl_s=rules.ttl_s,
        )  # fmt: skip
        return {**approval.as_payload(), "requester": actor}

    async def expire_if_due(self) -> None:
        session, approval = self.current, self.current.approval
        live = session.state in (SessionState.ARMED, SessionState.LIVE)
        if live and approval is not None and approval["expires_at"] <= self._clock.now().timestamp():
            await self.transition("expire", "system", reason="approval ttl ended")
