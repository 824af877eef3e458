"""Every (state, trigger) pair of the session FSM, for both profile kinds."""

from __future__ import annotations

import itertools

import pytest

from engine.errors import InvalidTransition
from engine.fsm.machines import SESSION_FSM, Probe, fire
from engine.fsm.session_table import SessionState

S = SessionState


def expected(state: SessionState, trigger: str, is_paper: bool) -> SessionState | None:
    if trigger == "hold":
        return S.HOLD  # from anywhere
    table = {
        (S.TESTNET, "arm"): S.ARMED,
        (S.ARMED, "go_live"): S.LIVE,
        (S.ARMED, "disarm"): S.TESTNET,
        (S.LIVE, "disarm"): S.TESTNET,
        (S.ARMED, "expire"): S.TESTNET,
        (S.LIVE, "expire"): S.TESTNET,
        (S.HOLD, "resume"): S.PAPER if is_paper else S.TESTNET,  # never straight back to LIVE
    }
    return table.get((state, trigger))


TRIGGERS = ["arm", "go_live", "disarm", "expire", "hold", "resume", "open", "bogus"]


@pytest.mark.parametrize(
    ("state", "trigger", "is_paper"), list(itertools.product(list(S), TRIGGERS, [True, False]))
)
def test_every_state_trigger_pair(state: SessionState, trigger: str, is_paper: bool) -> None:
    want = expected(state, trigger, is_paper)
    probe = Probe(state, is_paper=is_paper)
    if want is None:
        with pytest.raises(InvalidTransition):
            fire(SESSION_FSM, probe, trigger)
        assert probe.state is state
    else:
        assert fire(SESSION_FSM, probe, trigger) is want
