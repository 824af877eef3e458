"""SessionService: the one active trading session, its transitions and the two-man rule.

Transitions are decided synchronously against the applied session and applied in the writer's durability
callback (engine.writer); while one is pending the session is busy and the next command waits for it, so
two commands never decide from the same state. `arm` and `go_live` go only through `guarded`, and the
aggregate itself refuses them without a Guard (approval, safe mode, a fresh passing preflight verdict).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from engine.config import EngineSettings, fingerprint
from engine.errors import ApprovalRejected, EngineError, PreflightFailed
from engine.fsm.session_table import SESSION_GUARDED, SessionState
from engine.guardrails.approvals import Approval, verify_approval
from engine.guardrails.preflight import Check, PreflightMonitor
from engine.journal import NewEntry, Record
from engine.ports import Clock, ExchangePort
from engine.session import Guard, TradingSession, apply, decide_open
from engine.writer import GroupCommitWriter, OnDurable

_LIVE_STATES = (SessionState.ARMED, SessionState.LIVE)


class SessionService:
    def __init__(
        self, writer: GroupCommitWriter, exchange: ExchangePort, settings: EngineSettings, clock: Clock,
        session_id: str | None = None,
    ) -> None:  # fmt: skip
        self._writer = writer
        self._exchange = exchange
        self._settings = settings
        self._clock = clock
        self._session_id = session_id  # None: generated when this journal opens its first session
        self._pending: asyncio.Future[TradingSession] | None = None
        self.session: TradingSession | None = None
        # Told each applied transition, in the durability callback (the kill switch's sweep starts there)
        self.on_applied: Callable[[TradingSession], None] | None = None
        # The approval request a nonce was issued for (engine.approvals sets it): such a token arms only
        # through its request, which checks the request's state and requester
        self.request_of_nonce: Callable[[str], str | None] = lambda nonce: None
        self.preflight = PreflightMonitor(
            exchange, settings.preflight, settings.symbols, clock, self.hold_once,
            lambda: self.session is not None and self.session.state in _LIVE_STATES,
        )  # fmt: skip

    @property
    def current(self) -> TradingSession:
        if self.session is None:
            raise EngineError("session not started", reason="not_ready")
        return self.session

    @property
    def busy(self) -> bool:
        return self._pending is not None

    async def idle(self) -> None:
        while (pending := self._pending) is not None:
            await asyncio.wait([pending])

    async def restore(self, replayed: dict[str, TradingSession]) -> None:
        """Adopt the replayed session of this profile or open one. ARMED/LIVE never survive a restart.

        A new session's id is the profile plus a random part, so it is unique to this journal: an approval
        token names it, and one signed for another instance (or another journal) of the same profile
        cannot arm this one."""
        ours = [s for s in replayed.values() if s.profile == self._settings.profile]
        if self._session_id is not None:
            ours = [s for s in ours if s.session_id == self._session_id]
        self.session = ours[-1] if ours else None
        if self.session is None:
            sid = self._session_id or f"{self._settings.profile}-{secrets.token_hex(6)}"
            await self._commit(decide_open(sid, self._settings.profile, self._exchange.venue, "system"))
        elif self.session.state in _LIVE_STATES:
            await self.transition("hold", "system", reason="restart")

    async def transition(
        self, trigger: str, actor: str, *, reason: str = "", payload: dict[str, Any] | None = None
    ) -> TradingSession:
        """Any unguarded trigger (disarm, hold, resume, expire).

        Raises:
            InvalidTransition: `trigger` is illegal in the current state.
            ApprovalRejected: `trigger` is arm or go_live, which only `guarded` may fire.
        """
        await self.idle()
        return await self._commit(self.current.decide(trigger, payload or {}, actor, reason))

    async def hold(self, reason: str, actor: str = "system", *, cancel_all: bool = False) -> TradingSession:
        """HOLD; with `cancel_all`, the kill switch: the HOLD row says so, and from the moment it is applied
        until resume every own order that is or becomes cancellable gets a cancel (engine.orders)."""
        payload = {"cancel_all": True, "requested_by": actor} if cancel_all else None
        return await self.transition("hold", actor, reason=reason, payload=payload)

    async def hold_once(self, reason: str, actor: str = "system") -> bool:
        """HOLD unless already on HOLD (a detector's fault episode is journaled once); True if it held."""
        await self.idle()
        if self.current.state is SessionState.HOLD:
            return False
        await self._commit(self.current.decide("hold", {}, actor, reason))
        return True

    def _commit(
        self, entry: NewEntry, also: Sequence[NewEntry] = (), on_also: OnDurable | None = None
    ) -> asyncio.Future[TradingSession]:
        """Queue one decided entry (with `also`, other streams' rows that must land in the same commit,
        applied by `on_also` in the same callback); the future resolves once it is durable and applied."""
        if self._pending is not None:
            raise EngineError("a session transition is pending", reason="session_busy")
        done: asyncio.Future[TradingSession] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())

        def durable(records: list[Record]) -> None:
            rec = records[0]
            if on_also is not None:
                on_also(records[1:])
            self.session = apply(self.session, rec.stream_id, rec.trigger, rec.to_state or "", rec.version,
                                 entry.payload, rec.reason, at=rec.created_at)  # fmt: skip
            self._pending = None
            if self.on_applied is not None:
                self.on_applied(self.session)
            if not done.done():
                done.set_result(self.session)

        def failed(exc: BaseException) -> None:
            self._pending = None
            if not done.done():
                done.set_exception(exc)

        self._writer.submit([entry, *also], durable, failed)
        self._pending = done
        return done

    # -- arming: preflight verdict + second operator's approval --------------------------------

    async def guarded(
        self, trigger: str, actor: str, token: str | None, risk: Check, *,
        also: Callable[[], tuple[Sequence[NewEntry], OnDurable]] | None = None,
    ) -> TradingSession:  # fmt: skip
        """arm / go_live, refused unless every guard passes; a failing verdict also HOLDs (once).

        `also`: decides rows of another stream (an approval request's `use`) that are committed with the
        session's row or not at all, and their applier; called once every guard has passed. A token
        signed over an approval request's nonce arms only with that request's `use` row among them
        (engine.approvals decides it, from APPROVED only): else approval_use_request, whatever the
        request's state.

        Raises:
            ApprovalRejected, PreflightFailed, InvalidTransition, EngineError(safe_mode_config).
        """
        if trigger not in SESSION_GUARDED:
            raise EngineError(f"{trigger} is not a guarded transition", reason="invalid_transition")
        outages = self._writer.outages
        if self.busy:
            # at once: the transition it would wait for is being read back
            self._writer.refuse_if_outage_since(outages, trigger)
        await self.idle()
        self._writer.refuse_if_outage_since(outages, trigger)
        session = self.current
        session.decide(trigger, {}, actor, guard=_OPEN_GUARD)  # an illegal trigger fails before any check
        now_s = self._clock.now().timestamp()
        approval = self._approval(trigger, actor, token, now_s) if trigger == "arm" else None
        owner = self.request_of_nonce(approval.nonce) if approval is not None else None
        if owner is not None and also is None:
            raise _use_request(owner)
        failed = tuple(self.preflight.failures(risk))
        guard = Guard(
            self._settings.approvals.require_token, self._settings.safe_mode, now_s, failed, approval
        )
        risk_limits = {k: str(v) for k, v in asdict(self._settings.risk).items()}
        payload: dict[str, Any] = {"checks": [c.name for c in self.preflight.verdict(risk)],
                                   "config_hash": fingerprint(self._settings), "risk_limits": risk_limits}  # fmt: skip
        try:
            entry = session.decide(trigger, payload, actor, guard=guard)
        except PreflightFailed:
            await self.preflight.hold_for([f for f in failed if "stale_s" not in (f["detail"] or {})])
            raise
        if also is None:
            return await self._commit(entry)
        rows, on_also = also()
        if owner is not None and not any(
            (r.stream, r.stream_id, r.trigger) == ("approval", owner, "use") for r in rows
        ):
            raise _use_request(owner)
        return await self._commit(entry, rows, on_also)

    def _approval(self, trigger: str, actor: str, token: str | None, now_s: float) -> Approval | None:
        rules = self._settings.approvals
        if not rules.require_token:
            return None
        if not token:
            raise ApprovalRejected(
                "a second operator's approval token is required", reason="approval_required"
            )
        return verify_approval(
            token, public_keys=rules.public_keys, requester=actor if rules.two_man_rule else "",
            session_id=self.current.session_id, action=trigger, now_s=now_s,
            used_nonces=self.current.used_nonces, max_ttl_s=rules.ttl_s,
        )  # fmt: skip

    async def expire_if_due(self) -> None:
        await self.idle()
        session = self.current
        if session.state in _LIVE_STATES and session.approval_lapsed(self._clock.now().timestamp()):
            await self._commit(session.decide("expire", {}, "system", "approval ttl ended"))


def _use_request(request_id: str) -> ApprovalRejected:
    # Read back from the request's approve row, the token alone would skip the request's state
    # (rejected, expired) and its requester: it is good only as that request's own use
    return ApprovalRejected(
        f"the token approves request {request_id}: arm with approval_id",
        reason="approval_use_request", detail={"approval_id": request_id},
    )  # fmt: skip


# Only to ask the FSM whether a guarded trigger is legal at all, before any check runs: never committed
_OPEN_GUARD = Guard(require_token=False, safe_mode=False, now_s=0.0, preflight_failures=())
