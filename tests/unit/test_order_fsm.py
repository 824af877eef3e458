"""Every (state, trigger) pair of the order FSM, legal or not, against an oracle written by hand from docs/state-machines.md."""

from __future__ import annotations

import itertools

import pytest

from engine.errors import InvalidTransition
from engine.fsm.machines import ORDER_EDGES, ORDER_FSM, Probe, fire
from engine.fsm.order_table import ORDER_TERMINAL, OrderState

O = OrderState  # noqa: E741 (reads like the table)
# (source, trigger) -> dest, written out by hand: the code's table must match it exactly
EXPECTED = {
    (O.NEW, "preflight"): O.PREFLIGHT,
    (O.PREFLIGHT, "send_test"): O.TEST,
    (O.PREFLIGHT, "send"): O.SENT,
    (O.PREFLIGHT, "reject"): O.REJECTED,
    (O.TEST, "test_ok"): O.TESTED,
    (O.TEST, "reject"): O.REJECTED,
    (O.SENT, "reject"): O.REJECTED,
    (O.SENT, "mark_unknown"): O.UNKNOWN,
    (O.SENT, "ack"): O.ACKED,
    (O.SENT, "partial_fill"): O.PARTIALLY_FILLED,
    (O.SENT, "fill"): O.FILLED,
    (O.SENT, "expire"): O.EXPIRED,
    (O.ACKED, "partial_fill"): O.PARTIALLY_FILLED,
    (O.ACKED, "fill"): O.FILLED,
    (O.ACKED, "expire"): O.EXPIRED,
    (O.ACKED, "request_cancel"): O.CANCEL_PENDING,
    (O.ACKED, "cancelled"): O.CANCELLED,
    (O.PARTIALLY_FILLED, "partial_fill"): O.PARTIALLY_FILLED,
    (O.PARTIALLY_FILLED, "fill"): O.FILLED,
    (O.PARTIALLY_FILLED, "expire"): O.EXPIRED,
    (O.PARTIALLY_FILLED, "request_cancel"): O.CANCEL_PENDING,
    (O.PARTIALLY_FILLED, "cancelled"): O.CANCELLED,
    (O.CANCEL_PENDING, "cancelled"): O.CANCELLED,
    (O.CANCEL_PENDING, "partial_fill"): O.CANCEL_PENDING,
    (O.CANCEL_PENDING, "fill"): O.FILLED,
    (O.CANCEL_PENDING, "expire"): O.EXPIRED,
    (O.CANCEL_PENDING, "cancel_failed"): O.ACKED,
    (O.CANCEL_PENDING, "cancel_failed_partial"): O.PARTIALLY_FILLED,
    (O.UNKNOWN, "reconcile_acked"): O.ACKED,
    (O.UNKNOWN, "reconcile_partially_filled"): O.PARTIALLY_FILLED,
    (O.UNKNOWN, "reconcile_filled"): O.FILLED,
    (O.UNKNOWN, "reconcile_rejected"): O.REJECTED,
    (O.UNKNOWN, "reconcile_cancelled"): O.CANCELLED,
    (O.UNKNOWN, "reconcile_expired"): O.EXPIRED,
    (O.NEW, "adopt"): O.ACKED,
    (O.NEW, "adopt_partial"): O.PARTIALLY_FILLED,
}
TRIGGERS = sorted({t for _, t in EXPECTED} | {"bogus"})


def test_table_matches_the_design_exactly() -> None:
    assert {(s.value, t, d.value) for (s, t), d in EXPECTED.items()} == ORDER_EDGES


def test_terminal_states_have_no_way_out() -> None:
    assert {O.TESTED, O.FILLED, O.CANCELLED, O.EXPIRED, O.REJECTED} == ORDER_TERMINAL
    assert not [e for e in ORDER_EDGES if e[0] in ORDER_TERMINAL]


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(list(O), TRIGGERS)))
def test_every_state_trigger_pair(state: OrderState, trigger: str) -> None:
    probe = Probe(state)
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition) as info:
            fire(ORDER_FSM, probe, trigger)
        assert info.value.state == state.value
        assert probe.state is state  # an illegal trigger leaves the model untouched
    else:
        assert fire(ORDER_FSM, probe, trigger) is expected
