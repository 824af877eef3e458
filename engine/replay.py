"""Rebuild state from the journal and verify it in the same pass.

Verify checks, row by row: seq contiguous, prev_hash equals the previous row's hash, the hash recomputes,
created_at never goes backwards, the payload is a JSON object of a known schema_version, every
order/session/approval row is a legal edge of its FSM from the aggregate's current state, and per-stream versions
are contiguous. With `approver_keys`, every approval in an arm/go_live row is re-verified against its
signed token (and every approval request's approve row), and with `two_man_rule` its approver must be
another person than the requester; with `require_token`, an arm/go_live row without one is refused. An
`arm` with an approval request's nonce must be committed with that request's `use` row (the next row),
and a `use` row only so. The first failure raises
JournalCorrupt naming the row's seq: no damage (a NULL, a wrong type, invalid JSON) escapes as another
exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine import approval_request as approval_mod
from engine import order as order_mod
from engine import session as session_mod
from engine.approval_request import ApprovalRequest
from engine.errors import JournalCorrupt
from engine.fsm.approval_table import APPROVAL_CREATE_TRIGGER
from engine.fsm.machines import APPROVAL_EDGES, ORDER_EDGES, SESSION_EDGES
from engine.fsm.order_table import ORDER_CREATE_TRIGGER, ORDER_INITIAL, ORDER_TERMINAL
from engine.fsm.session_table import SESSION_CREATE_TRIGGER
from engine.guardrails.approvals import verify_journaled
from engine.journal import GENESIS_HASH, RAW_COLUMNS, SCHEMA_VERSION, RawRow, row_hash
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
    approvals: dict[str, ApprovalRequest] = field(default_factory=dict)  # every approval request


# Python type of each raw column (None allowed only where listed): used to name the damage of a bad row
_COLUMN_TYPES: tuple[type, ...] = (int, str, str, int, str, str, str, str, str, str, int, str, str, str)
_NULLABLE = frozenset({"from_state", "to_state"})
_TS_LEN = len("2026-01-01T00:00:00.000000Z")
_GUARDED = frozenset({"arm", "go_live"})


def _diagnose(row: Any, exc: BaseException) -> str:
    """What is wrong with a row that made replay raise something other than JournalCorrupt."""
    if not isinstance(row, tuple | list) or len(row) != len(RAW_COLUMNS):
        return (
            f"row has {len(row) if isinstance(row, tuple | list) else 'no'} columns, not {len(RAW_COLUMNS)}"
        )
    for name, want, value in zip(RAW_COLUMNS, _COLUMN_TYPES, row, strict=True):
        if value is None:
            if name not in _NULLABLE:
                return f"NULL in column {name}"
        elif type(value) is not want:
            return f"column {name} holds {type(value).__name__} {value!r:.40}, not {want.__name__}"
    return f"row cannot be read: {exc!r:.200}"


def _check_guarded(
    seq: int, sid: str, trigger: str, payload: dict[str, Any], sess: TradingSession | None, actor: str,
    approver_keys: dict[str, str] | None, require_token: bool, two_man_rule: bool,
) -> None:  # fmt: skip
    approval = payload.get("approval")
    if not approval:
        if require_token:
            raise JournalCorrupt(seq, f"{trigger} without an approval")
        return
    if not isinstance(approval, dict):
        raise JournalCorrupt(seq, "approval is not an object")
    if approver_keys is not None:
        # go_live may be fired by another admin: the requester is the one who armed (in the approval)
        requester = approval.get("requester") if two_man_rule else None
        if trigger == "arm" and two_man_rule and requester != actor:
            raise JournalCorrupt(seq, f"approval requester {requester!r} is not the arm's actor {actor!r}")
        problem = verify_journaled(approval, public_keys=approver_keys, session_id=sid, requester=requester)
        if problem:
            raise JournalCorrupt(seq, problem)
    if trigger == "arm" and sess is not None and approval.get("nonce") in sess.used_nonces:
        raise JournalCorrupt(seq, "approval nonce was already used in this session")


def _replay_approval(
    approvals: dict[str, ApprovalRequest], seq: int, sid: str, version: int, trigger: str,
    frm: str | None, to: str | None, payload: dict[str, Any], reason: str, approver_keys: dict[str, str] | None,
    two_man_rule: bool,
) -> None:  # fmt: skip
    req = approvals.get(sid)
    if req is None:
        if trigger != APPROVAL_CREATE_TRIGGER or version != 1 or frm is not None:
            raise JournalCorrupt(seq, "approval stream must start with request")
    elif version != req.version + 1:
        raise JournalCorrupt(seq, f"version {version} after {req.version}")
    elif frm != req.state or (frm, trigger, to) not in APPROVAL_EDGES:
        raise JournalCorrupt(seq, f"illegal approval transition {frm} --{trigger}--> {to}")
    if trigger == "approve" and req is not None:
        approval = payload.get("approval")
        if not isinstance(approval, dict) or approval.get("nonce") != req.nonce:
            raise JournalCorrupt(seq, "approval is not signed over the request's nonce")
        if approver_keys is not None:
            if payload.get("approver") != approval.get("approver"):
                raise JournalCorrupt(
                    seq,
                    f"approver {payload.get('approver')!r} is not the signer {approval.get('approver')!r}",
                )
            problem = verify_journaled(
                approval, public_keys=approver_keys, session_id=req.session_id,
                requester=req.requester if two_man_rule else None,
            )  # fmt: skip
            if problem:
                raise JournalCorrupt(seq, problem)
    try:
        approvals[sid] = approval_mod.apply(req, sid, trigger, to or "", version, payload, reason)
    except (KeyError, ValueError, TypeError) as exc:
        raise JournalCorrupt(seq, f"payload cannot be applied: {exc!r}") from exc


def _owed_use(
    seq: int, trigger: str, payload: dict[str, Any], request_nonces: dict[str, str]
) -> tuple[int, str] | None:
    """An arm with the token of an approval request owes that request's `use` row in the same commit: a
    token read back from a request's approve row arms nothing without it (engine.sessions)."""
    approval = payload.get("approval")
    nonce = approval.get("nonce") if trigger == "arm" and isinstance(approval, dict) else None
    request_id = request_nonces.get(nonce) if isinstance(nonce, str) else None
    return None if request_id is None else (seq, request_id)


# Told every order row once it verified and applied: (seq, client order id, trigger, to_state, version,
# payload, created_at, the order as applied); engine.ledger's read models are built from the same scan
OnOrderRow = Callable[[int, str, str, str | None, int, dict[str, Any], str, Order], None]


def replay(
    rows: Iterable[RawRow],
    *,
    keep_terminal: bool = False,
    approver_keys: dict[str, str] | None = None,
    require_token: bool = False,
    two_man_rule: bool = True,
    on_order: OnOrderRow | None = None,
) -> ReplayResult:
    """Fold rows (in seq order) into state, verifying as it goes.

    approver_keys: approver id -> Ed25519 public key (base64), the keys in force; when given, every
    journaled approval must verify with them. require_token: arm/go_live rows must carry an approval.
    two_man_rule: (with approver_keys) an approval signed by its own requester is refused.

    Raises:
        JournalCorrupt: the first row that breaks the chain, the versions, the FSM, the clock or a
        signature, or cannot be read at all (NULL, wrong type, invalid JSON, unknown schema_version).
    """
    try:
        return _replay(rows, keep_terminal, approver_keys, require_token, two_man_rule, on_order)
    except _RowUnreadable as bad:
        expect_seq, row, exc = bad.args
        raise JournalCorrupt(expect_seq, _diagnose(row, exc)) from exc


class _RowUnreadable(Exception):
    """(seq being read, the raw row, the original exception): turned into JournalCorrupt by replay."""


def _replay(
    rows: Iterable[RawRow],
    keep_terminal: bool,
    approver_keys: dict[str, str] | None,
    require_token: bool,
    two_man_rule: bool,
    on_order: OnOrderRow | None = None,
) -> ReplayResult:
    res = ReplayResult(keep_terminal=keep_terminal)
    orders = res.open_orders
    sessions = res.sessions
    finished: set[str] = set()
    loads = json.loads
    apply_order = order_mod.apply
    expect_seq = 1
    prev = GENESIS_HASH
    prev_created = ""
    guarded = approver_keys is not None or require_token
    request_nonces: dict[str, str] = {}  # nonce -> approval request id
    owed_use: tuple[int, str] | None = None  # (seq of an arm with a request's token, that request's id)
    row: Any = None
    try:
        for row in rows:
            seq, stream, sid, version, trigger, frm, to, payload_json, actor, reason, schema, created, prev_hash, digest = row  # fmt: skip
            if seq != expect_seq:
                if type(seq) is not int:
                    raise JournalCorrupt(expect_seq, f"seq {seq!r:.40} is not an integer")
                raise JournalCorrupt(seq, f"seq gap: expected {expect_seq}")
            if prev_hash != prev:
                raise JournalCorrupt(seq, "prev_hash does not match the previous row's hash")
            # Columns seq..created_at are row_hash's arguments after prev_hash, in the same order
            if row_hash(prev, *row[:12]) != digest:
                raise JournalCorrupt(seq, "hash does not match the row's content")
            if created < prev_created or len(created) != _TS_LEN:
                problem = (
                    f"created_at {created!r:.40} is not a timestamp"
                    if len(created) != _TS_LEN
                    else f"created_at {created} is before the previous row's {prev_created}"
                )
                raise JournalCorrupt(seq, problem)
            try:
                payload = loads(payload_json) if payload_json != "{}" else {}
            except ValueError:
                raise JournalCorrupt(seq, "payload is not valid JSON") from None
            if type(payload) is not dict:
                raise JournalCorrupt(seq, f"payload is a JSON {type(payload).__name__}, not an object")
            if schema != SCHEMA_VERSION:
                if type(schema) is not int or not 1 <= schema < SCHEMA_VERSION or schema not in UPCASTERS:
                    raise JournalCorrupt(seq, f"unknown schema_version {schema!r:.20}")
                payload = upcast(payload, schema)
            if owed_use is not None:  # the arm and its request's use are one commit: adjacent rows
                if (stream, sid, trigger) != ("approval", owed_use[1], "use"):
                    raise JournalCorrupt(
                        owed_use[0], f"arm with request {owed_use[1]}'s approval has no use row"
                    )
                owed_use = None
            elif stream == "approval" and trigger == "use":
                raise JournalCorrupt(seq, "use row not committed with an arm")
            if stream == "order":
                current = orders.get(sid)
                if current is None:
                    if (
                        trigger != ORDER_CREATE_TRIGGER
                        or version != 1
                        or frm is not None
                        or to != ORDER_INITIAL
                    ):
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
                if on_order is not None:
                    on_order(seq, sid, trigger, to, version, payload, created, updated)
            elif stream == "session":
                sess = sessions.get(sid)
                if sess is None:
                    if trigger != SESSION_CREATE_TRIGGER or version != 1 or frm is not None:
                        raise JournalCorrupt(seq, "session stream must start with open")
                elif version != sess.version + 1:
                    raise JournalCorrupt(seq, f"version {version} after {sess.version}")
                elif frm != sess.state or (frm, trigger, to) not in SESSION_EDGES:
                    raise JournalCorrupt(seq, f"illegal session transition {frm} --{trigger}--> {to}")
                if guarded and trigger in _GUARDED:
                    _check_guarded(seq, sid, trigger, payload, sess, actor, approver_keys, require_token,
                                   two_man_rule)  # fmt: skip
                owed_use = _owed_use(seq, trigger, payload, request_nonces)
                try:
                    sessions[sid] = session_mod.apply(
                        sess, sid, trigger, to or "", version, payload, reason, at=created
                    )
                except (KeyError, ValueError) as exc:
                    raise JournalCorrupt(seq, f"payload cannot be applied: {exc!r}") from exc
            elif stream == "approval":
                _replay_approval(res.approvals, seq, sid, version, trigger, frm, to, payload, reason,
                                 approver_keys, two_man_rule)  # fmt: skip
                if version == 1:
                    request_nonces[res.approvals[sid].nonce] = sid
            elif stream == "audit":
                if version != 1:
                    raise JournalCorrupt(seq, "audit rows are single-version")
            else:
                raise JournalCorrupt(seq, f"unknown stream {stream!r}")
            prev = digest
            prev_created = created
            expect_seq = seq + 1
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as exc:
        raise _RowUnreadable(expect_seq, row, exc) from exc
    if owed_use is not None:
        raise JournalCorrupt(owed_use[0], f"arm with request {owed_use[1]}'s approval has no use row")
    res.rows = expect_seq - 1
    res.last_seq = expect_seq - 1
    res.last_hash = prev
    return res
