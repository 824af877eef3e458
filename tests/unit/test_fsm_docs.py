from __future__ import annotations

from pathlib import Path

from engine.fsm.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machines.md"


def test_state_machine_doc_is_in_sync_with_the_tables() -> None:
    assert DOC.read_text() == render(), "regenerate with: python -m engine.fsm.docs > docs/state-machines.md"
