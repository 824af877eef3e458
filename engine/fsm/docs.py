"""Render the FSM tables as markdown: `python -m engine.fsm.docs > docs/state-machines.md`.
A test keeps the committed file equal to this output."""

from __future__ import annotations

from engine.fsm.approval_table import APPROVAL_CREATE_TRIGGER, APPROVAL_TERMINAL, APPROVAL_TRANSITIONS
from engine.fsm.order_table import ORDER_CREATE_TRIGGER, ORDER_TERMINAL, ORDER_TRANSITIONS
from engine.fsm.session_table import SESSION_CREATE_TRIGGER, SESSION_TRANSITIONS


def _sources(row: dict[str, object]) -> str:
    src = row["source"]
    items = src if isinstance(src, list) else [src]
    return ", ".join(str(s) for s in items)


def _guard(row: dict[str, object]) -> str:
    if "conditions" in row:
        return f"if {row['conditions']}"
    if "unless" in row:
        return f"unless {row['unless']}"
    return ""


def _table(rows: list[dict[str, object]]) -> list[str]:
    out = ["| trigger | from | to | guard |", "|---|---|---|---|"]
    out += [f"| `{r['trigger']}` | {_sources(r)} | {r['dest']} | {_guard(r)} |" for r in rows]
    return out


def render() -> str:
    lines = [
        "# State machines",
        "",
        "Generated from `engine/fsm/*_table.py` by `python -m engine.fsm.docs`; do not edit by hand",
        "(`tests/unit/test_fsm_docs.py` fails when this file and the code disagree).",
        "",
        "## Session",
        "",
        f"A session stream starts with `{SESSION_CREATE_TRIGGER}` into PAPER (paper profile) or TESTNET.",
        "",
        *_table(SESSION_TRANSITIONS),
        "",
        "## Order",
        "",
        f"An order stream starts with `{ORDER_CREATE_TRIGGER}` into NEW. Terminal: "
        + ", ".join(sorted(s.value for s in ORDER_TERMINAL))
        + ".",
        "",
        *_table(ORDER_TRANSITIONS),
        "",
        "## Approval request",
        "",
        f"An approval stream starts with `{APPROVAL_CREATE_TRIGGER}` into PENDING (`POST /api/approvals`). "
        "Terminal: " + ", ".join(sorted(s.value for s in APPROVAL_TERMINAL)) + ".",
        "",
        *_table(APPROVAL_TRANSITIONS),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
