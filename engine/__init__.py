"""PropBot's engine: FSMs, aggregates, the journal port, replay, guardrails and the services.

The api layer uses this surface; adapters implement `ExchangePort` and raise the `ExchangeError` family.
Nothing here connects at import time, and nothing imports `api` or `adapters`.
"""

from engine.config import EngineSettings
from engine.errors import (
    ApprovalRejected,
    EngineError,
    EngineStopped,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionStatusUnknown,
    IdempotencyConflict,
    InvalidTransition,
    JournalCorrupt,
    OrderRejected,
    PreflightFailed,
    SessionHalted,
    UnknownOrder,
    VersionConflict,
)
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.journal import Journal, JournalQuery, NewEntry, Record
from engine.ports import Clock, ExchangePort
from engine.replay import replay
from engine.runtime import Engine

__all__ = [
    "ApprovalRejected",
    "Clock",
    "Engine",
    "EngineError",
    "EngineSettings",
    "EngineStopped",
    "ExchangeError",
    "ExchangePort",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "ExecutionStatusUnknown",
    "IdempotencyConflict",
    "InvalidTransition",
    "Journal",
    "JournalCorrupt",
    "JournalQuery",
    "NewEntry",
    "OrderRejected",
    "OrderState",
    "PreflightFailed",
    "Record",
    "SessionHalted",
    "SessionState",
    "UnknownOrder",
    "VersionConflict",
    "replay",
]
