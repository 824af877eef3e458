"""ApprovalService: pending approval requests for the two-man rule, approved and used through the API.

The requester asks (`request`), a second operator signs the request's nonce with their own key and submits
the token (`approve`, verified against approvals.public_keys right away), and `arm` uses it: the session's
arm row and the request's `use` row are one commit, so a request is USED exactly when the session armed
with it. A refused token leaves the request PENDING (the approver may retry; an admin may `reject` it);
expired requests are journaled EXPIRED by the engine's expiry loop and refused before that.

Each request is busy while one of its transitions is pending, and every command waits for that before it
decides: two approvals or two arms racing on one request decide one after the other, and exactly one wins.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

from engine.approval_request import ApprovalRequest, apply, decide_request
from engine.config import EngineSettings
from engine.errors import ApprovalRejected, EngineError, UnknownApproval
from engine.fsm.approval_table import ApprovalState
from engine.guardrails.approvals import verify_approval
from engine.guardrails.preflight import Check
from engine.journal import NewEntry, Record, format_ts
from engine.ports import Clock
from engine.session import TradingSession
from engine.sessions import SessionService
from engine.writer import GroupCommitWriter, OnDurable

ACTIONS = ("arm",)
_MAX_OPEN = 20  # open requests at once: a loop of requests cannot grow the journal without bound
_KEEP_CLOSED = 100  # terminal requests kept in memory for GET /api/approvals (the journal keeps all)


class ApprovalService:
    def __init__(
        self, writer: GroupCommitWriter, sessions: SessionService, settings: EngineSettings, clock: Clock
    ) -> None:
        self._writer = writer
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self.requests: dict[str, ApprovalRequest] = {}
        self._busy: dict[str, asyncio.Future[None]] = {}
        # nonce -> request id of every request, trimmed ones too: the session refuses their tokens on the
        # raw-token path, so a request's approval is only ever used through the request
        self._nonces: dict[str, str] = {}
        sessions.request_of_nonce = self._nonces.get

    def restore(self, replayed: dict[str, ApprovalRequest]) -> None:
        self.requests = dict(replayed)
        self._nonces.clear()
        self._nonces.update((r.nonce, r.request_id) for r in replayed.values())
        self._trim()

    def get(self, request_id: str) -> ApprovalRequest:
        req = self.requests.get(request_id)
        if req is None:
            raise UnknownApproval(f"no approval request {request_id!r}", detail={"id": request_id})
        return req

    def listing(self) -> list[ApprovalRequest]:
        """Open requests first, then the recent closed ones; newest first within each."""
        reqs = sorted(self.requests.values(), key=lambda r: r.created_at, reverse=True)
        return [r for r in reqs if r.open] + [r for r in reqs if not r.open]

    def still_open(self) -> list[ApprovalRequest]:
        """Open requests not yet past their expiry (the expiry loop journals those EXPIRED shortly)."""
        now = self._now()
        return [r for r in self.requests.values() if r.open and r.expires_at > now]

    def approved_for(self, session_id: str) -> list[ApprovalRequest]:
        return [
            r for r in self.still_open() if r.state is ApprovalState.APPROVED and r.session_id == session_id
        ]

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # -- commands ----------------------------------------------------------------------------------

    async def request(self, requester: str, action: str = "arm") -> ApprovalRequest:
        """A new PENDING request for `action` on the current session.

        Raises:
            EngineError: approval_not_applicable (paper sessions are never armed), approval_too_many.
        """
        if action not in ACTIONS:
            raise EngineError(f"no approval for {action!r}", reason="approval_not_applicable")
        session = self._sessions.current
        if session.is_paper:
            raise EngineError("a paper session is never armed", reason="approval_not_applicable")
        if sum(1 for r in self.requests.values() if r.open) >= _MAX_OPEN:
            raise EngineError(f"{_MAX_OPEN} requests are open already", reason="approval_too_many")
        now = self._clock.now()
        request_id = f"apr-{secrets.token_hex(8)}"
        entry = decide_request(
            request_id, action, session.session_id, requester, secrets.token_hex(16), format_ts(now),
            int(now.timestamp() + self._settings.approvals.ttl_s),
        )  # fmt: skip
        with self._claim(request_id):
            await self._commit([entry])
        return self.requests[request_id]

    async def approve(self, request_id: str, approver: str, token: str) -> ApprovalRequest:
        """Verify the approver's token against the request and record it: PENDING → APPROVED.

        Raises:
            UnknownApproval; InvalidTransition (not PENDING); ApprovalRejected: expired, or any rule of
            verify_approval, or a token for another request's nonce, or signed to outlive the request
            (approval_ttl_too_long), or signed by someone else than the operator submitting it. A refused
            token leaves the request PENDING.
        """
        async with self._exclusive(request_id) as req:
            self._check_not_expired(req)
            entry = req.decide("approve", {}, approver)  # only a PENDING request can be approved
            rules = self._settings.approvals
            session = self._sessions.current
            used = session.used_nonces if session.session_id == req.session_id else set()
            approval = verify_approval(
                token, public_keys=rules.public_keys, requester=req.requester if rules.two_man_rule else "",
                session_id=req.session_id, action=req.action, now_s=self._now(), used_nonces=used,
                max_ttl_s=rules.ttl_s,
            )  # fmt: skip
            if approval.nonce != req.nonce:
                raise ApprovalRejected("the token is for another request", reason="approval_wrong_nonce")
            if approval.expires_at > req.expires_at:
                raise ApprovalRejected(
                    f"the token lives past the request's expiry ({req.expires_at})",
                    reason="approval_ttl_too_long",
                )
            if approval.approver.casefold() != approver.casefold():
                raise ApprovalRejected(
                    f"the token is signed by {approval.approver!r}, not by {approver!r}",
                    reason="approval_not_signer",
                )
            entry = req.decide("approve", {"approver": approval.approver, "approval": approval.as_payload()},
                               approver)  # fmt: skip
            await self._commit([entry])
        return req

    async def reject(self, request_id: str, actor: str, reason: str) -> ApprovalRequest:
        """PENDING | APPROVED → REJECTED (the approver declines, or an admin withdraws it unused)."""
        async with self._exclusive(request_id) as req:
            await self._commit([req.decide("reject", {"by": actor}, actor, reason)])
        return req

    async def arm(self, request_id: str, requester: str, risk: Check) -> TradingSession:
        """Arm the session with an APPROVED request; the request becomes USED in the same commit.

        Raises:
            UnknownApproval; InvalidTransition (the request is not APPROVED); ApprovalRejected: expired,
            armed by someone other than its requester, for another session; whatever the session's
            `guarded("arm")` raises (the engine verifies the token itself, as for any arm).
        """
        async with self._exclusive(request_id) as req:
            self._check_not_expired(req)
            use = req.decide("use", {}, requester)  # only an APPROVED request can be used
            if req.requester.casefold() != requester.casefold():
                raise ApprovalRejected(
                    f"only {req.requester!r}, who requested it, may arm with it",
                    reason="approval_not_requester",
                )
            if req.session_id != self._sessions.current.session_id:
                raise ApprovalRejected("the request is for another session", reason="approval_wrong_session")

            def rows() -> tuple[Sequence[NewEntry], OnDurable]:
                return [use], self._apply

            return await self._sessions.guarded("arm", requester, req.token, risk, also=rows)

    async def expire_due(self) -> None:
        """Journal EXPIRED for every open request past its expiry (skipping one busy right now)."""
        now = self._now()
        for req in list(self.requests.values()):
            if req.open and req.expires_at <= now and req.request_id not in self._busy:
                with self._claim(req.request_id):
                    await self._commit([req.decide("expire", {}, "system", "approval request ttl ended")])

    # -- plumbing ----------------------------------------------------------------------------------

    def _check_not_expired(self, req: ApprovalRequest) -> None:
        if req.open and req.expires_at <= self._now():
            raise ApprovalRejected("the approval request has expired", reason="approval_expired")

    @contextmanager
    def _claim(self, request_id: str) -> Iterator[None]:
        """Mark the request busy (synchronously: the caller decided without an await in between)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._busy[request_id] = done
        try:
            yield
        finally:
            del self._busy[request_id]
            done.set_result(None)

    @asynccontextmanager
    async def _exclusive(self, request_id: str) -> AsyncIterator[ApprovalRequest]:
        """Wait until no transition of the request is pending, then hold it busy for the block: every
        decision inside is made from its applied state."""
        req = await self._wait_idle(request_id)
        with self._claim(request_id):  # no await since the wait: nobody decided in between
            yield req

    async def _wait_idle(self, request_id: str) -> ApprovalRequest:
        while (busy := self._busy.get(request_id)) is not None:
            await asyncio.wait([busy])
        return self.get(request_id)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            req = self.requests[rec.stream_id] = apply(
                self.requests.get(rec.stream_id), rec.stream_id, rec.trigger, rec.to_state or "",
                rec.version, rec.payload, rec.reason,
            )  # fmt: skip
            self._nonces[req.nonce] = req.request_id
        self._trim()

    def _commit(self, entries: list[NewEntry]) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())

        def durable(records: list[Record]) -> None:
            self._apply(records)
            if not done.done():
                done.set_result(None)

        def failed(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        self._writer.submit(entries, durable, failed)
        return done

    def _trim(self) -> None:
        closed = sorted((r for r in self.requests.values() if not r.open), key=lambda r: r.created_at)
        for req in closed[: max(0, len(closed) - _KEEP_CLOSED)]:
            del self.requests[req.request_id]
