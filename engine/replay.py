"""Rebuild state from the journal and verify it in the same pass.

Verify checks, row by row: seq contiguous, prev_hash equals the previous row's hash, the hash recomputes,
every order/session row is a legal edge of its FSM from the aggregate's current state, and per-stream
versions are contiguous. The first failure raises JournalCorrupt naming the row's seq.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine import order as order_mod
from engine import session as session_mod
from engine.errors import JournalCorrupt
from engine.fsm.machines import ORDER_EDGES, SESSION_EDGES
from engine.fsm.order_table import ORDER_CREATE_TRIGGER, ORDER_INITIAL, ORDER_TERMINAL
from engine.fsm.session_table import SESSION_CREATE_TRIGGER
from engine.journal import GENESIS_HASH, SCHEMA_VERSION, RawRow, row_hash
from engine.order import Order
from engine.session import TradingSession

# Upcasters by schema_version: each turns a payload of version N into version N+1
UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upcast(payload: dict[str, Any], schema_version: int) -> dict[str, Any]:
    while schema_version < SCHEMA_VERSION:
        payload = UPCASTERS[schema_version](payload)
        schema_version += 1
    return payload


@dataclass
class ReplayResult:
    sessions: dict[str, TradingSession] = field(default_factory=dict)
    open_orders: dict[str, Order] = field(default_factory=dict)  # non-terminal orders only
    finished_orders: int = 0
    rows: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    keep_terminal: bool = False
    terminal_orders: dict[str, Order] = field(default_factory=dict)


def replay(rows: Iterable[RawRow], *, keep_terminal: bool = False) -> ReplayResult:
    """Fold rows (in seq order) into state, verifying as it goes.

    Raises:
        JournalCorrupt: the first row that breaks the chain, the versions or the FSM.
    """
    res = ReplayResult(keep_terminal=keep_terminal)
    orders = res.open_orders
    sessions = res.sessions
    finished: set[str] = set()
    loads = json.loads
    apply_order = order_mod.apply
    expect_seq = 1
    prev = GENESIS_HASH
    for row in rows:
        seq, stream, sid, version, trigger, frm, to, payload_json, _, reason, schema, _, prev_hash, digest = row  # fmt: skip
        if seq != expect_seq:
            raise JournalCorrupt(seq, f"seq gap: expected {expect_seq}")
        if prev_hash != prev:
            raise JournalCorrupt(seq, "prev_hash does not match the previous row's hash")
        # Columns seq..created_at are row_hash's arguments after prev_hash, in the same order
        if row_hash(prev, *row[:12]) != digest:
            raise JournalCorrupt(seq, "hash does not match the row's content")
        payload = loads(payload_json) if payload_json != "{}" else {}
        if schema != SCHEMA_VERSION:
            payload = upcast(payload, schema)
        if stream == "order":
            current = orders.get(sid)
            if current is None:
                if trigger != ORDER_CREATE_TRIGGER or version != 1 or frm is not None or to != ORDER_INITIAL:
                    problem = (
                        "row after a terminal state"
                        if sid in finished
                        else "order stream must start with create"
                    )
                    raise JournalCorrupt(seq, problem)
                if sid in finished:
                    raise JournalCorrupt(seq, "order created twice")
            else:
                if version != current.version + 1:
                    raise JournalCorrupt(seq, f"version {version} after {current.version}")
                if frm != current.state or (frm, trigger, to) not in ORDER_EDGES:
                    raise JournalCorrupt(seq, f"illegal order transition {frm} --{trigger}--> {to}")
            try:
                updated = apply_order(current, trigger, to or "", version, payload)
            except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
                raise JournalCorrupt(seq, f"payload cannot be applied: {exc!r}") from exc
            if updated.state in ORDER_TERMINAL:
                orders.pop(sid, None)
                finished.add(sid)
                res.finished_orders += 1
                if keep_terminal:
                    res.terminal_orders[sid] = updated
            elif current is None:
                orders[sid] = updated
        elif stream == "session":
            sess = sessions.get(sid)
            if sess is None:
                if trigger != SESSION_CREATE_TRIGGER or version != 1 or frm is not None:
                    raise JournalCorrupt(seq, "session stream must start with open")
            elif version != sess.version + 1:
                raise JournalCorrupt(seq, f"version {version} after {sess.version}")
            elif frm != sess.state or (frm, trigger, to) not in SESSION_EDGES:
                raise JournalCorrupt(seq, f"illegal session transition {frm} --{trigger}--> {to}")
            try:
                sessions[sid] = session_mod.apply(sess, sid, trigger, to or "", version, payload, reason)
            except (KeyError, ValueError) as exc:
                raise JournalCorrupt(seq, f"payload cannot be applied: {exc!r}") from exc
        elif stream == "audit":
            if version != 1:
                raise JournalCorrupt(seq, "audit rows are single-version")
        else:
            raise JournalCorrupt(seq, f"unknown stream {stream!r}")
        prev = digest
        expect_seq = seq + 1
    res.rows = expect_seq - 1
    res.last_seq = expect_seq - 1
    res.last_hash = prev
    return res
