"""Engine errors, named for what the caller does next.

EngineError
├── InvalidTransition        trigger not legal in the current state (API: 409 with the state)
├── VersionConflict          another writer appended to the same stream first; nothing written
├── JournalCorrupt           verify found a bad row; names the first bad seq
├── JournalUnavailable       the journal database cannot be written or read now (API: 503)
├── UnknownOrder             no such client order id (API: 404)
├── UnknownApproval          no such approval request (API: 404)
├── IdempotencyConflict      same client order id, different body (API: 409)
├── SessionHalted            session is on HOLD: no new orders (API: 409)
├── PreflightFailed          a preflight check failed; the session went to HOLD (API: 409)
├── ApprovalRejected         two-man-rule approval refused (API: 403/409)
├── OrderRejected            refused locally: filters, risk caps (API: 422/409)
├── EngineStopped            the engine is stopping or stopped: nothing more is journaled (API: 503)
└── ExchangeError            the venue answered badly or not at all
    ├── ExchangeRejected     final: the venue said no; do not retry as is
    ├── ExchangeUnavailable  retryable: the request was not executed (not sent, 429, 418, busy)
    └── ExecutionStatusUnknown  the request may have executed: reconcile, never resend
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Root of every error the engine raises."""

    reason: str = "engine_error"

    def __init__(self, message: str, *, reason: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.detail = detail


class InvalidTransition(EngineError):
    reason = "invalid_transition"

    def __init__(self, kind: str, state: str | None, trigger: str) -> None:
        super().__init__(
            f"{kind} trigger {trigger!r} is not legal in state {state}",
            detail={"state": state, "trigger": trigger},
        )
        self.kind = kind
        self.state = state
        self.trigger = trigger


class VersionConflict(EngineError):
    reason = "version_conflict"


class JournalCorrupt(EngineError):
    reason = "journal_corrupt"

    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(
            f"journal is broken at seq {seq}: {problem}", detail={"seq": seq, "problem": problem}
        )
        self.seq = seq
        self.problem = problem


class JournalUnavailable(EngineError):
    """The journal's database failed a write or a read (a server down, a dropped connection, a disk)."""

    reason = "journal_unavailable"


class UnknownOrder(EngineError):
    reason = "unknown_order"


class UnknownApproval(EngineError):
    reason = "unknown_approval"


class IdempotencyConflict(EngineError):
    reason = "idempotency_conflict"


class AlreadyRejected(EngineError):
    """A resubmit of an order the engine or the venue refused: the id is spent, nothing was placed."""

    reason = "already_rejected"


class SessionHalted(EngineError):
    reason = "session_hold"


class PreflightFailed(EngineError):
    reason = "preflight_failed"


class ApprovalRejected(EngineError):
    reason = "approval_rejected"


class OrderRejected(EngineError):
    reason = "order_rejected"


class EngineStopped(EngineError):
    reason = "engine_stopped"


class ExchangeError(EngineError):
    """The venue failed; `reason` is an internal code such as RATE_LIMIT or FILTER_FAILURE."""

    reason = "EXCHANGE_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        code: int | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message, reason=reason, detail={"code": code, "msg": message, "http_status": http_status}
        )
        self.code = code
        self.http_status = http_status
        self.retry_after_s = retry_after_s


class ExchangeRejected(ExchangeError):
    reason = "EXCHANGE_REJECTED"


class OrderNotSent(ExchangeRejected):
    """The order never left: its send gate (ExchangePort.place's `may_send`) refused it at the last moment
    before the request would have been sent. Final and not executed, like any rejection."""

    reason = "NOT_SENT"


class ExchangeUnavailable(ExchangeError):
    reason = "EXCHANGE_UNAVAILABLE"


class ExecutionStatusUnknown(ExchangeError):
    reason = "EXECUTION_STATUS_UNKNOWN"
