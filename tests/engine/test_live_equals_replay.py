"""Memory is a function of the journal: the same commands run live leave exactly the memory and the read
models that a replay of their journal rebuilds (a restarted engine on the same database).

The writer's observers (the ledger, the approvals service) and the order store read the payload dict a
row was encoded from (Record.decoded), not its JSON: so every payload the engine writes must be exactly
its own JSON round trip (lists, not tuples; str keys; plain str/int, not enum members), and the created
order's request (the decider's object, order.apply(request=)) must be the one replay parses back."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from engine.config import EngineSettings
from engine.errors import EngineError, ExchangeRejected
from engine.guardrails.preflight import Check
from engine.journal import Record
from engine.ledger import project
from engine.order import Order
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from engine.types import Fill, OrderRequest, OrderType, Side, TimeInForce, VenueOrder, VenueStatus
from tests.engine.conftest import running
from tests.engine.test_approval_requests import token_for
from tests.fakes import FakeExchange
from tests.waiting import eventually_async as eventually

D, V = Decimal, VenueStatus
RISK = Check("risk_headroom", True)


def strict(value: Any) -> Any:
    """`value` with each container's and scalar's exact type kept: a tuple is not a list, an enum member
    not its str, True not 1 (== alone would equate them)."""
    if isinstance(value, dict):
        return ("dict", sorted(((strict(k), strict(v)) for k, v in value.items()), key=repr))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [strict(v) for v in value])
    return (type(value).__name__, repr(value))


def order_view(o: Order) -> tuple[Any, ...]:
    req = o.request
    return (
        o.snapshot(),
        req,
        strict(req.to_payload()),
        frozenset(o.trade_ids or ()),
        o.traced_qty,
        o.filled_qty,
    )


def req(cid: str, qty: str, price: str = "65000.00") -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, cid, D(qty), D(price), TimeInForce.GTC)


async def commands(eng: Engine, fake: FakeExchange) -> dict[str, Order]:
    """Runs the commands; returns the live order objects (as the API answered them), finished ones too."""
    seen: dict[str, Order] = {}
    told = eng.orders.store.on_applied

    def applied(order: Order) -> None:  # every order object the store applied a group to, refused ones too
        seen[order.client_order_id] = order
        if told is not None:
            told(order)

    eng.orders.store.on_applied = applied

    async def submit(r: OrderRequest) -> None:
        try:
            placed = (await eng.orders.submit(r, "trader")).order
        except EngineError:
            return
        assert placed is seen[r.client_order_id]

    # The two-man rule through an approval request, to LIVE
    apr = await eng.approvals.request("ops")
    await eng.approvals.approve(apr.request_id, "approver", token_for(apr))
    await eng.approvals.arm(apr.request_id, "ops", RISK)
    await eng.sessions.guarded("go_live", "ops", None, RISK)
    declined = await eng.approvals.request("ops")
    await eng.approvals.reject(declined.request_id, "ops", "not needed")
    # Orders: numbers written with trailing zeros, a retry written otherwise, fills pushed and polled
    await submit(req("pb-a", "0.0030"))
    assert (await eng.orders.submit(req("pb-a", "0.003", "65000"), "trader")).existing
    fake.fill("pb-a", D("0.0010"))
    await eventually(lambda: eng.orders.open["pb-a"].filled_qty == D("0.001"))
    await submit(req("pb-b", "0.001"))
    fake.fill("pb-b", D("0.001"), V.FILLED)
    await eventually(lambda: "pb-b" not in eng.orders.open)
    # Filled by a view without its trades (untraced), traced later by a late trade row
    await submit(req("pb-c", "0.0010"))
    vo = fake.orders["pb-c"]
    t1, t2 = (
        Fill(901, D("65000"), D("0.0004"), D("0.0000004"), "BTC", True),
        Fill(902, D("64990"), D("0.0006")),
    )
    quote = D("65000") * D("0.0004") + D("64990") * D("0.0006")
    filled: VenueOrder = replace(vo, status=V.FILLED, executed_qty=D("0.001"), cumulative_quote_qty=quote)
    await eng.orders.store.sync("pb-c", filled)
    done = eng.orders.store.untraced.get("pb-c")
    assert done is not None
    pending = eng.orders.store.trace_now(done, replace(filled, fills=(t1, t2)))
    assert pending is not None
    await pending
    # Refusals (journaled), a venue rejection, a cancel
    for refused in (req("pb-d", "5"), OrderRequest("ETHUSDT", Side.SELL, OrderType.MARKET, "pb-e", D("1"))):
        await submit(refused)
    fake.fail_next = ExchangeRejected("no", reason="ORDER_REJECTED", code=-2010)
    await submit(req("pb-f", "0.001"))
    await submit(req("pb-g", "0.002"))
    await eng.orders.cancel("BTCUSDT", "pb-g", None, "trader")
    # The kill switch: HOLD with cancel_all, the rest cancelled
    await eng.orders.cancel_all("stop", "ops")
    for _ in range(20):
        await asyncio.sleep(0)
    return seen


async def test_the_same_commands_live_leave_what_a_replay_of_their_journal_rebuilds(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    written: list[Record] = []
    async with running(db_url, fake, settings) as eng:
        eng.writer.observers.append(written.extend)
        seen = await commands(eng, fake)
        await eventually(
            lambda: not eng.orders.store.reserved and not any(map(eng.orders.store.busy, "abcdefg"))
        )
        live_orders = {cid: order_view(o) for cid, o in eng.orders.open.items()}
        live_seen = {cid: order_view(eng.orders.open.get(cid) or o) for cid, o in seen.items()}
        live_untraced = sorted(eng.orders.store.untraced.orders)
        live_ledger = (
            eng.ledger.positions(),
            eng.ledger.fills(limit=10**6),
            eng.ledger.list_orders(limit=1000),
        )
        live_problems = list(eng.ledger.problems)
        live_session = (eng.sessions.current.snapshot(), strict(eng.sessions.current.approval),
                        sorted(eng.sessions.current.used_nonces))  # fmt: skip
        live_approvals = {
            rid: (r.snapshot(), strict(r.approval), r.token) for rid, r in eng.approvals.requests.items()
        }
    # Every row the observers were handed carries exactly its own JSON round trip
    assert written
    drift = [
        (r.seq, r.stream, r.trigger)
        for r in written
        if strict(r.payload) != strict(json.loads(r.payload_json))
    ]
    assert drift == []

    async with running(db_url, FakeExchange(), settings) as again:
        assert {cid: order_view(o) for cid, o in again.orders.open.items()} == live_orders
        assert set(live_seen) == {"pb-" + c for c in "abcdefg"}
        # The live order objects (what submit answered, finished ones included) are the replayed ones
        rebuilt = replay(SqlJournal(db_url).scan(), keep_terminal=True)
        replayed = {**rebuilt.terminal_orders, **rebuilt.open_orders}
        assert {cid: order_view(replayed[cid]) for cid in live_seen} == live_seen
        assert sorted(again.orders.store.untraced.orders) == live_untraced
        assert (again.ledger.positions(), again.ledger.fills(limit=10**6),
                again.ledger.list_orders(limit=1000)) == live_ledger  # fmt: skip
        assert list(again.ledger.problems) == live_problems == []
        assert (again.sessions.current.snapshot(), strict(again.sessions.current.approval),
                sorted(again.sessions.current.used_nonces)) == live_session  # fmt: skip
        assert {
            rid: (r.snapshot(), strict(r.approval), r.token) for rid, r in again.approvals.requests.items()
        } == live_approvals
    # And an auditor's projection of the journal alone serves the same read models
    ledger, _ = project(SqlJournal(db_url).scan())
    assert (ledger.positions(), ledger.fills(limit=10**6), ledger.list_orders(limit=1000)) == live_ledger
