"""Rebuild state from the journal and verify it in the same pass.

Verify checks, row by row: seq contiguous, prev_hash equals the previous row's hash, the hash recomputes,
created_at never goes backwards, the payload is a JSON object of a known schema_version, every
order/session/approval row is a legal edge of its FSM from the aggregate's current state, and per-stream versions
are contiguous. With `approver_keys`, every approval in an arm/go_live row is re-verified against its
signed token (and every approval request's approve row), and with `two_man_rule` its approver must be
another person than the requester; with `require_token`, an arm/go_live row without one is refused; a
go_live row carrying anything but its arm's approval, field for field (none included), is refused always. An
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
from engine.guardrails.approvals import ApproverKeys, verify_journaled
from engine.journal import GENESIS_HASH, RAW_COLUMNS, SCHEMA_VERSION, RawRow, row_hash
from engine.late_trades import (
    TRADE_STREAM,
    TRADE_TRIGGER,
    UntracedOrders,
    apply_trace,
    check_trace,
    trade_stream_id,
)
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
    # Terminal orders with untraced quantity: their late trades may still be journaled (engine.late_trades)
    untraced: UntracedOrders = field(default_factory=UntracedOrders)


# Python type of each raw column (None allowed only where listed): used to name the damage of a bad row
_COLUMN_TYPES: tuple[type, ...] = (int, str, str, int, str, str, str, str, str, str, int, str, str, str, str)
_NULLABLE = frozenset({"from_state", "to_state", "engine_id"})
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
    approver_keys: ApproverKeys | None, require_token: bool, two_man_rule: bool,
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


def _check_go_live(seq: int, payload: dict[str, Any], sess: TradingSession | None) -> None:
    """The engine's go_live carries its arm's approval as it is (engine.session): another one (a fresh
    token with a later expiry, the arm's nonce with another expires_at or requester, or none at all) would
    replace it on apply and stretch LIVE past the approval the arm was granted, or drop its expiry. Checked
    with or without approver keys: it needs no key, only the arm row before it."""
    armed = sess.approval if sess is not None else None
    if armed and payload.get("approval") != armed:
        raise JournalCorrupt(seq, "go_live carries another approval than its arm's")


def _replay_approval(
    approvals: dict[str, ApprovalRequest], seq: int, sid: str, version: int, trigger: str,
    frm: str | None, to: str | None, payload: dict[str, Any], reason: str, approver_keys: ApproverKeys | None,
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


def _no_use_row(owed: tuple[int, str]) -> JournalCorrupt:
    return JournalCorrupt(owed[0], f"arm with request {owed[1]}'s approval has no use row")


# Told every order row once it verified and applied: (seq, client order id, trigger, to_state, version,
# payload, created_at, the order as applied); engine.ledger's read models are built from the same scan
OnOrderRow = Callable[[int, str, str, str | None, int, dict[str, Any], str, Order], None]
# Told every trade row once it verified: (seq, payload, created_at)
OnTradeRow = Callable[[int, dict[str, Any], str], None]


def replay(
    rows: Iterable[RawRow],
    *,
    keep_terminal: bool = False,
    approver_keys: ApproverKeys | None = None,
    require_token: bool = False,
    two_man_rule: bool = True,
    on_order: OnOrderRow | None = None,
    on_trade: OnTradeRow | None = None,
) -> ReplayResult:
    """Fold rows (in seq order) into state, verifying as it goes.

    approver_keys: approver id -> Ed25519 public key (base64), the keys in force; when given, every
    journaled approval must verify with them. require_token: arm/go_live rows must carry an approval.
    two_man_rule: (with approver_keys) an approval signed by its own requester is refused.

    Raises:
        JournalCorrupt: the first row that breaks the chain, the versions, the FSM, the clock or a
        signature, or cannot be read at all (NULL, wrong type, invalid JSON, unknown schema_version).
    """
    return Replayer(
        keep_terminal=keep_terminal, approver_keys=approver_keys, require_token=require_token,
        two_man_rule=two_man_rule, on_order=on_order, on_trade=on_trade,
    ).feed(rows, complete=True)  # fmt: skip


@dataclass
class _Cursor:
    """Where a replay stands between two feeds: the next seq, the last hash and time, finished orders."""

    expect_seq: int = 1
    prev: str = GENESIS_HASH
    prev_created: str = ""
    finished: set[str] = field(default_factory=set)
    # Finished orders evicted from ReplayResult.untraced with quantity still untraced: their late trades
    # cannot be checked any more (every other trade row must name an order replay holds)
    untraced_evicted: set[str] = field(default_factory=set)
    request_nonces: dict[str, str] = field(default_factory=dict)  # nonce -> approval request id
    owed_use: tuple[int, str] | None = None  # (seq of an arm with a request's token, that request's id)


class Replayer:
    """A replay fed in parts: rows 1..n in one call or in several give the same state and the same
    errors (a warm standby verifies the journal as it grows, and at takeover reads only the rows after
    the last one it verified). A replay that found damage stays broken."""

    def __init__(
        self, *, keep_terminal: bool = False, approver_keys: ApproverKeys | None = None,
        require_token: bool = False, two_man_rule: bool = True, on_order: OnOrderRow | None = None,
        on_trade: OnTradeRow | None = None,
    ) -> None:  # fmt: skip
        self.result = ReplayResult(keep_terminal=keep_terminal)
        self._cursor = _Cursor()
        self._approver_keys = approver_keys
        self._require_token = require_token
        self._two_man_rule = two_man_rule
        self._on_order = on_order
        self._on_trade = on_trade
        self._broken: JournalCorrupt | None = None

    @property
    def last_seq(self) -> int:
        return self.result.last_seq

    @property
    def last_hash(self) -> str:
        return self.result.last_hash

    def feed(self, rows: Iterable[RawRow], *, complete: bool = False) -> ReplayResult:
        """Fold the rows after the last one fed (the first must be seq last_seq + 1). `complete`: these
        are all the rows (a commit's rows are never cut off then, as a bounded feed may cut them).

        Raises:
            JournalCorrupt: as `replay`; every later feed raises it again.
        """
        if self._broken is not None:
            raise JournalCorrupt(self._broken.seq, self._broken.problem)
        try:
            _replay(rows, self.result, self._cursor, self._approver_keys, self._require_token,
                    self._two_man_rule, self._on_order, self._on_trade)  # fmt: skip
            if complete and self._cursor.owed_use is not None:
                raise _no_use_row(self._cursor.owed_use)
        except _RowUnreadable as bad:
            expect_seq, row, exc = bad.args
            self._broken = JournalCorrupt(expect_seq, _diagnose(row, exc))
            raise self._broken from exc
        except JournalCorrupt as exc:
            self._broken = exc
            raise
        return self.result


def _replay_trade(
    seq: int, sid: str, version: int, trigger: str, frm: str | None, to: str | None, payload: dict[str, Any],
    orders: dict[str, Order], untraced: UntracedOrders, cursor: _Cursor,
) -> None:  # fmt: skip
    """A late trade (engine.late_trades): one row per trade, naming it, of an order held (open, or
    finished with untraced quantity) and within its untraced quantity. The one exception: an order
    evicted from `untraced`, which cannot be checked."""
    if version != 1 or trigger != TRADE_TRIGGER or frm is not None or to is not None:
        raise JournalCorrupt(seq, f"a trade row is one '{TRADE_TRIGGER}' row without states")
    fill = payload["fill"]
    if sid != trade_stream_id(str(payload["symbol"]), int(fill["tradeId"]), str(payload["side"])):
        raise JournalCorrupt(seq, f"trade row {sid!r:.60} does not name its trade")
    cid = str(payload["clientOrderId"])
    order = orders.get(cid) or untraced.get(cid)
    if order is None:
        if cid in cursor.untraced_evicted:
            return
        why = "every trade of it is journaled already" if cid in cursor.finished else "no such order"
        raise JournalCorrupt(seq, f"trade row of {cid!r:.40}: {why}")
    if (order.symbol, order.request.side.value) != (payload["symbol"], payload["side"]):
        raise JournalCorrupt(
            seq, f"trade row of {cid} names {payload['symbol']!r:.20} {payload['side']!r:.8}, not its order's"
        )
    problem = check_trace(order, payload)
    if problem is not None:
        raise JournalCorrupt(seq, problem)
    apply_trace(order, payload)
    if order.terminal:
        untraced.traced(order)


class _RowUnreadable(Exception):
    """(seq being read, the raw row, the original exception): turned into JournalCorrupt by replay."""


def _replay(
    rows: Iterable[RawRow],
    res: ReplayResult,
    cursor: _Cursor,
    approver_keys: ApproverKeys | None,
    require_token: bool,
    two_man_rule: bool,
    on_order: OnOrderRow | None = None,
    on_trade: OnTradeRow | None = None,
) -> None:
    keep_terminal = res.keep_terminal
    untraced = res.untraced
    orders = res.open_orders
    sessions = res.sessions
    finished = cursor.finished
    loads = json.loads
    apply_order = order_mod.apply
    expect_seq, prev, prev_created = cursor.expect_seq, cursor.prev, cursor.prev_created
    guarded = approver_keys is not None or require_token
    request_nonces, owed_use = cursor.request_nonces, cursor.owed_use
    row: Any = None
    try:
        for row in rows:
            seq, stream, sid, version, trigger, frm, to, payload_json, actor, reason, schema, created, prev_hash, digest, engine_id = row  # fmt: skip
            if seq != expect_seq:
                if type(seq) is not int:
                    raise JournalCorrupt(expect_seq, f"seq {seq!r:.40} is not an integer")
                raise JournalCorrupt(seq, f"seq gap: expected {expect_seq}")
            if prev_hash != prev:
                raise JournalCorrupt(seq, "prev_hash does not match the previous row's hash")
            if row_hash(prev, seq, stream, sid, version, trigger, frm, to, payload_json, actor, reason,
                        schema, created, engine_id) != digest:  # fmt: skip
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
                    raise _no_use_row(owed_use)
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
                    cursor.untraced_evicted.update(untraced.finished(updated))
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
                if trigger == "go_live":
                    _check_go_live(seq, payload, sess)
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
            elif stream == TRADE_STREAM:
                _replay_trade(seq, sid, version, trigger, frm, to, payload, orders, untraced, cursor)
                if on_trade is not None:
                    on_trade(seq, payload, created)
            else:
                raise JournalCorrupt(seq, f"unknown stream {stream!r}")
            prev = digest
            prev_created = created
            expect_seq = seq + 1
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as exc:
        raise _RowUnreadable(expect_seq, row, exc) from exc
    cursor.expect_seq, cursor.prev, cursor.prev_created = expect_seq, prev, prev_created
    cursor.owed_use = owed_use
    res.rows = expect_seq - 1
    res.last_seq = expect_seq - 1
    res.last_hash = prev
