"""The order FSM as data: the single source of truth for states and legal transitions (docs/state-machines.md is generated from it)."""

from __future__ import annotations

from enum import StrEnum


class OrderState(StrEnum):
    NEW = "NEW"
    PREFLIGHT = "PREFLIGHT"
    TEST = "TEST"
    TESTED = "TESTED"
    SENT = "SENT"
    ACKED = "ACKED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCEL_PENDING = "CANCEL_PENDING"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


S = OrderState
_OPEN_ON_VENUE = [S.ACKED, S.PARTIALLY_FILLED]

ORDER_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "preflight", "source": S.NEW, "dest": S.PREFLIGHT},
    {"trigger": "send_test", "source": S.PREFLIGHT, "dest": S.TEST},  # SAFE_MODE: /api/v3/order/test
    {"trigger": "test_ok", "source": S.TEST, "dest": S.TESTED},
    {"trigger": "reject", "source": S.TEST, "dest": S.REJECTED},  # the venue refused the test order
    {"trigger": "send", "source": S.PREFLIGHT, "dest": S.SENT},  # written before the request leaves
    {"trigger": "reject", "source": S.PREFLIGHT, "dest": S.REJECTED},  # refused locally: risk, filters, HOLD
    {"trigger": "reject", "source": S.SENT, "dest": S.REJECTED},  # the exchange said no
    {"trigger": "mark_unknown", "source": S.SENT, "dest": S.UNKNOWN},  # timeout, 5xx, -1006, -1007
    {"trigger": "ack", "source": S.SENT, "dest": S.ACKED},
    # FULL responses can carry fills: an order may be partly or wholly filled in its first answer
    {"trigger": "partial_fill", "source": [S.SENT, *_OPEN_ON_VENUE], "dest": S.PARTIALLY_FILLED},
    {"trigger": "fill", "source": [S.SENT, *_OPEN_ON_VENUE], "dest": S.FILLED},
    {"trigger": "expire", "source": [S.SENT, *_OPEN_ON_VENUE], "dest": S.EXPIRED},  # IOC/FOK rest, STP
    {"trigger": "request_cancel", "source": _OPEN_ON_VENUE, "dest": S.CANCEL_PENDING},
    {"trigger": "cancelled", "source": S.CANCEL_PENDING, "dest": S.CANCELLED},
    # Cancelled by someone else (another session, the venue) and seen by reconciliation
    {"trigger": "cancelled", "source": _OPEN_ON_VENUE, "dest": S.CANCELLED},
    {
        "trigger": "partial_fill",
        "source": S.CANCEL_PENDING,
        "dest": S.CANCEL_PENDING,
    },  # fill raced the cancel
    {"trigger": "fill", "source": S.CANCEL_PENDING, "dest": S.FILLED},  # filled before the cancel landed
    {"trigger": "expire", "source": S.CANCEL_PENDING, "dest": S.EXPIRED},
    {
        "trigger": "cancel_failed",
        "source": S.CANCEL_PENDING,
        "dest": S.ACKED,
    },  # cancel refused, nothing filled
    {"trigger": "cancel_failed_partial", "source": S.CANCEL_PENDING, "dest": S.PARTIALLY_FILLED},
    # UNKNOWN is left only through reconciliation by client order id, never by resending
    {"trigger": "reconcile_acked", "source": S.UNKNOWN, "dest": S.ACKED},
    {"trigger": "reconcile_partially_filled", "source": S.UNKNOWN, "dest": S.PARTIALLY_FILLED},
    {"trigger": "reconcile_filled", "source": S.UNKNOWN, "dest": S.FILLED},
    {"trigger": "reconcile_rejected", "source": S.UNKNOWN, "dest": S.REJECTED},  # proven absent
    {"trigger": "reconcile_cancelled", "source": S.UNKNOWN, "dest": S.CANCELLED},
    {
        "trigger": "reconcile_expired",
        "source": S.UNKNOWN,
        "dest": S.EXPIRED,
    },  # an IOC that found no liquidity
    # Found working on the venue at startup, unknown to the journal (placed by hand, or a lost journal)
    {"trigger": "adopt", "source": S.NEW, "dest": S.ACKED},
    {"trigger": "adopt_partial", "source": S.NEW, "dest": S.PARTIALLY_FILLED},
]

ORDER_INITIAL = S.NEW
ORDER_CREATE_TRIGGER = "create"
ORDER_TERMINAL = frozenset({S.TESTED, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED})
