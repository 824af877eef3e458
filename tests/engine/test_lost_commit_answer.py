"""A commit whose answer is lost: the database committed, and the writer was told it failed (a PostgreSQL
connection dropped during COMMIT). The writer reads the journal back before anyone is answered
(engine.writer): what landed is applied like any durable group, what did not is failed, and while the
journal cannot be read to tell, nothing of the batch is answered and nothing new is attempted. An order
whose create was found that way is never sent: it ends REJECTED (commit_answer_lost), as the journal says.

Each test checks memory against a replay of the journal (the engine's central invariant) and the
engine's own self-check against the journal's head."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from engine.config import EngineSettings
from engine.errors import AlreadyRejected, EngineError, EngineStopped, OrderRejected, VersionConflict
from engine.fsm.order_table import OrderState
from engine.guardrails.preflight import Check
from engine.journal import JournalQuery, NewEntry, Record
from engine.ledger import project
from engine.order import Order
from engine.orders import Placement
from engine.persistence.sql_journal import SqlJournal
from engine.replay import replay
from engine.runtime import Engine
from engine.writer import GroupCommitWriter
from tests.approvals import approval_token
from tests.engine.conftest import go_live
from tests.engine.faulty import FlakyJournal, flaky_engine, flaky_live
from tests.engine.test_concurrency import limit, snapshot
from tests.fakes import FakeExchange, FrozenClock
from tests.waiting import eventually_async as eventually

S = OrderState
RISK_OK = Check("risk", True)


def applied_states(eng: Engine) -> dict[str, list[S]]:
    """Every state the store applied to each order, in order (a hook on the store's own callback)."""
    seen: dict[str, list[S]] = {}
    told = eng.orders.store.on_applied

    def applied(order: Order) -> None:
        seen.setdefault(order.client_order_id, []).append(order.state)
        if told is not None:
            told(order)

    eng.orders.store.on_applied = applied
    return seen


async def settled(eng: Engine, *cids: str) -> None:
    """No group of these orders, and nothing of the writer, is pending any more."""
    await eventually(lambda: not eng.writer.busy and not any(map(eng.orders.store.busy, cids)))


async def assert_memory_is_the_journal(eng: Engine) -> None:
    """A replay of the journal (which verifies it) rebuilds what is in memory: open orders, the session,
    every order's final state, the ledger's order history; and the engine's self-check finds the head it
    committed at the journal's end."""
    rebuilt = replay(eng.journal.scan(), keep_terminal=True)
    assert {c: snapshot(o) for c, o in rebuilt.open_orders.items()} == {
        c: snapshot(o) for c, o in eng.orders.open.items()
    }
    again = rebuilt.sessions[eng.sessions.current.session_id]
    assert (again.state, again.version) == (eng.sessions.current.state, eng.sessions.current.version)
    for cid, order in {**rebuilt.terminal_orders, **rebuilt.open_orders}.items():
        known = await eng.orders.store.find_async(cid)
        assert known is not None, cid
        assert snapshot(known) == snapshot(order), cid
    ledger, _ = project(eng.journal.scan())
    assert eng.ledger.list_orders(limit=1000) == ledger.list_orders(limit=1000)
    assert await eng.journal_self_check() is None


def triggers(journal: SqlJournal, cid: str) -> list[str]:
    return [r.trigger for r in journal.stream("order", cid)]


SENT_THEN_NOT = ["create", "preflight", "send", "reject"]


async def test_a_create_whose_commit_answer_was_lost_is_held_as_the_journal_holds_it_and_never_sent(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: the group got on_failed(JournalUnavailable) although its create, preflight and SENT rows were
    # durable: memory had no such order, nothing sent it and nothing reconciled it until a restart,
    # while the journal said SENT
    fake = FakeExchange()
    async with flaky_live(db_url, settings, fake) as (eng, journal):
        states = applied_states(eng)
        journal.lose_answer("create")
        with pytest.raises(OrderRejected) as info:
            await eng.orders.submit(limit("pb-lost-1"), "trader")
        assert journal.lost_answers == 1
        assert info.value.reason == "commit_answer_lost"
        assert info.value.detail == {"clientOrderId": "pb-lost-1", "state": "REJECTED"}
        await settled(eng, "pb-lost-1")
        # Memory went through what the journal holds: SENT (the write-ahead group), then not sent
        assert states["pb-lost-1"] == [S.SENT, S.REJECTED]
        assert triggers(eng.journal, "pb-lost-1") == SENT_THEN_NOT
        assert eng.journal.stream("order", "pb-lost-1")[-1].reason == "commit_answer_lost"
        assert fake.placed == []
        assert eng.orders.store.reserved == {}
        assert eng.orders.store.unconfirmed == set()
        await assert_memory_is_the_journal(eng)
        # A resubmit of the id answers the order the journal has: refused, never placed
        with pytest.raises(AlreadyRejected) as again:
            await eng.orders.submit(limit("pb-lost-1"), "trader")
        assert again.value.detail["refusal"] == "commit_answer_lost"
        # And the engine goes on: the next order is sent as usual
        placed = await eng.orders.submit(limit("pb-next-1"), "trader")
        assert placed.order.state is S.ACKED
        assert [r.client_order_id for r in fake.placed] == ["pb-next-1"]
        await assert_memory_is_the_journal(eng)


async def test_a_lost_commit_answer_while_the_journal_stays_unreadable_is_resolved_once_it_is_back(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with flaky_live(db_url, settings, fake) as (eng, journal):
        states = applied_states(eng)
        # the database goes away right after committing, before anyone looks
        journal.lose_answer("create", then_dark=True)
        first = asyncio.create_task(eng.orders.submit(limit("pb-dark-1"), "trader"))
        await eventually(lambda: journal.lost_answers == 1)
        await asyncio.sleep(0.3)  # the writer keeps asking, and the journal keeps not answering
        # Nobody of the batch is answered while the journal cannot tell: neither "failed" nor "durable"
        assert not first.done()
        assert eng.writer.unresolved
        # Nothing new is attempted meanwhile: refused at once, and true (nothing of it was written)
        with pytest.raises(EngineError) as info:
            await eng.orders.submit(limit("pb-dark-2"), "trader")
        assert info.value.reason == "journal_unavailable"
        # The caller gives up; a retry of the same id waits for the first decision instead of a second one
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        retry = asyncio.create_task(eng.orders.submit(limit("pb-dark-1"), "trader"))
        await asyncio.sleep(0.1)
        assert not retry.done()
        assert "pb-dark-1" not in states  # nothing applied before the journal said it landed
        journal.dark = False  # the database is back
        answer: Any = await asyncio.gather(retry, return_exceptions=True)
        await settled(eng, "pb-dark-1")
        # The cancelled caller's group was applied all the same (the apply is the writer's, not the
        # caller's), then the order was refused, never sent
        assert states["pb-dark-1"] == [S.SENT, S.REJECTED]
        assert triggers(eng.journal, "pb-dark-1") == SENT_THEN_NOT
        assert fake.placed == []
        # The retry answered that same order: as it stood (SENT) or as it ended (refused)
        (result,) = answer
        if isinstance(result, Placement):
            assert result.existing
            assert result.order.client_order_id == "pb-dark-1"
        else:
            assert isinstance(result, AlreadyRejected), result
        assert triggers(eng.journal, "pb-dark-2") == []
        assert not eng.writer.unresolved
        await assert_memory_is_the_journal(eng)
        placed = await eng.orders.submit(limit("pb-dark-3"), "trader")
        assert placed.order.state is S.ACKED
        await assert_memory_is_the_journal(eng)


async def test_every_group_of_a_batch_whose_commit_answer_was_lost_is_resolved_as_the_journal_has_it(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with flaky_live(db_url, settings, fake) as (eng, journal):
        resting = await eng.orders.submit(limit("pb-rest-1"), "trader")
        assert resting.order.state is S.ACKED
        states = applied_states(eng)
        # One batch: two creates to send, a create refused by a risk cap, a cancel of a resting order
        journal.fail, journal.fail_if, journal.after_commit = 1, (lambda groups: len(groups) >= 4), True
        results = await asyncio.gather(
            eng.orders.submit(limit("pb-b-1"), "trader"),
            eng.orders.submit(limit("pb-b-2"), "trader"),
            eng.orders.submit(limit("pb-b-big", "5"), "trader"),
            eng.orders.cancel("BTCUSDT", "pb-rest-1", None, "trader"),
            return_exceptions=True,
        )
        assert journal.lost_answers == 1  # the four groups were one batch, and it landed
        await settled(eng, "pb-b-1", "pb-b-2", "pb-b-big", "pb-rest-1")
        for r in results[:2]:
            assert isinstance(r, OrderRejected), r
            assert r.reason == "commit_answer_lost"
        big = results[2]
        assert isinstance(big, OrderRejected), big
        assert big.reason == "risk_max_notional"  # its own answer
        cancelled = results[3]
        assert isinstance(cancelled, Placement), cancelled  # a cancel goes out late: it only takes risk off
        rested = eng.orders.find("pb-rest-1")
        assert rested is not None
        assert rested.state is S.CANCELLED
        assert states["pb-rest-1"] == [S.CANCEL_PENDING, S.CANCELLED]
        for cid in ("pb-b-1", "pb-b-2"):
            assert states[cid] == [S.SENT, S.REJECTED]
            assert triggers(eng.journal, cid) == SENT_THEN_NOT
        assert states["pb-b-big"] == [S.REJECTED]
        assert [r.client_order_id for r in fake.placed] == ["pb-rest-1"]
        await assert_memory_is_the_journal(eng)


def _order(sid: str, version: int, trigger: str = "create", reason: str = "") -> NewEntry:
    payload = {"request": {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "clientOrderId": sid,
                           "quantity": "0.001"}, "mode": "paper"}  # fmt: skip
    return NewEntry("order", sid, version, trigger, None, "NEW", payload, "tester", reason)


def _audit(sid: str) -> NewEntry:
    return NewEntry("audit", sid, 1, "api.live.ping", None, None, {"n": sid}, "ops")


async def test_the_writer_resolves_a_lost_answer_group_by_group_in_journal_order(journal_url: str) -> None:
    """Below the engine: a batch that went down the slow path (a group conflicting with a row written
    before it, two groups racing for one stream version), committed, and lost its answer. A writer
    that was never told the head reads it itself before its first batch."""
    journal = FlakyJournal(journal_url)
    journal.append([_order("x", 1)])
    writer = GroupCommitWriter(journal)
    observed: list[list[int]] = []
    writer.observers.append(lambda recs: observed.append([r.seq for r in recs]))
    groups: list[Sequence[NewEntry]] = [
        [_audit("a-1")],
        [_order("x", 1)],  # taken before this batch: nothing of it is written (VersionConflict)
        [_order("y", 1, reason="first")],
        [_order("y", 1, reason="second")],  # the same stream version, decided otherwise: a conflict
        [_audit("b-1"), _audit("b-2")],
    ]
    outcome: dict[int, list[Record] | BaseException] = {}
    order_of_calls: list[int] = []

    def answer(i: int) -> Callable[[list[Record] | BaseException], None]:
        def told(result: list[Record] | BaseException) -> None:
            order_of_calls.append(i)
            outcome[i] = result

        return told

    journal.fail, journal.after_commit = 1, True
    try:
        for i, group in enumerate(groups):
            writer.submit(group, answer(i), answer(i))
        await eventually(lambda: len(outcome) == len(groups))
    finally:
        await writer.close()
    assert journal.lost_answers == 1
    assert order_of_calls == [0, 1, 2, 3, 4]  # every group answered once, in the batch's (journal) order
    stored = journal.query(JournalQuery(after_seq=1))
    landed = [r for i in (0, 2, 4) if isinstance(r := outcome[i], list)]
    assert len(landed) == 3
    assert [r for recs in landed for r in recs] == stored
    assert [[r.seq for r in recs] for recs in landed] == observed == [[2], [3], [4, 5]]
    assert landed[1][0].payload is groups[2][0].payload  # the decided dict, as a commit's own records
    # Its stream version holds an older row: VersionConflict, as the commit answers without a lost answer
    assert isinstance(outcome[1], VersionConflict)
    assert isinstance(outcome[3], VersionConflict)
    assert [r.reason for r in journal.stream("order", "y")] == ["first"]
    assert len(journal.stream("order", "x")) == 1
    assert writer.head == (stored[-1].seq, stored[-1].hash)
    replay(journal.scan())  # whole and verifying


async def test_an_engine_stopped_before_the_journal_could_tell_leaves_it_to_the_next_start(
    db_url: str, settings: EngineSettings
) -> None:
    """Stopping while a lost answer cannot be read back does not hang: the writer gives up (EngineStopped)
    and the next start finds the order SENT without an answer, queries it by client order id and, the
    venue not showing it, ends it REJECTED. It is never sent."""
    fake = FakeExchange()
    journal = FlakyJournal(db_url)
    eng = Engine(journal, fake, replace(settings, safe_mode=False), FrozenClock(), session_id="testnet")
    await eng.start()
    try:
        await go_live(eng)
        journal.lose_answer("create", then_dark=True)
        first = asyncio.create_task(eng.orders.submit(limit("pb-stop-1"), "trader"))
        await eventually(lambda: journal.lost_answers == 1)
        await asyncio.sleep(0.1)
        assert not first.done()
    finally:
        await asyncio.wait_for(eng.stop(), 15)
    (answer,) = await asyncio.gather(first, return_exceptions=True)
    assert isinstance(answer, EngineStopped), answer
    journal.dark = False
    assert triggers(journal, "pb-stop-1") == ["create", "preflight", "send"]
    again = Engine(SqlJournal(db_url), fake, settings, FrozenClock(), session_id="testnet")
    await again.start()
    try:
        await eventually(lambda: "pb-stop-1" not in again.orders.open, timeout=10)
        assert triggers(again.journal, "pb-stop-1")[3:] == ["mark_unknown", "reconcile_rejected"]
        assert fake.placed == []
        await assert_memory_is_the_journal(again)
    finally:
        await again.stop()


async def test_a_group_whose_stream_version_was_taken_before_a_lost_answer_batch_is_a_version_conflict(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: only the rows after the writer's head were looked at, so a group conflicting with an older row
    # (a resubmit of a finished order's id) was failed with the commit's own error (journal_unavailable),
    # not VersionConflict as the same batch answered without the lost answer: the resubmit was 503 instead
    # of the order the id names, and the rate window kept its decision although the journal holds no
    # create for it (memory counted one order more than a replay of the journal)
    fake = FakeExchange()
    async with flaky_live(db_url, settings, fake) as (eng, journal):
        await eng.orders.submit(limit("pb-old-1"), "trader")
        await eng.orders.cancel("BTCUSDT", "pb-old-1", None, "trader")
        assert "pb-old-1" not in eng.orders.open
        # Beyond the history (TERMINAL_KEPT newer since): the resend is decided and meets its id at the
        # commit (one the history still holds is answered from memory, never decided)
        eng.orders.history = lambda: None
        journal.fail, journal.fail_if, journal.after_commit = 1, (lambda groups: len(groups) >= 2), True
        again, new = await asyncio.gather(
            eng.orders.submit(limit("pb-old-1"), "trader"),
            eng.orders.submit(limit("pb-new-1"), "trader"),
            return_exceptions=True,
        )
        # One batch: the resubmit refused by its savepoint, the new order landed
        assert journal.lost_answers == 1
        await settled(eng, "pb-old-1", "pb-new-1")
        assert isinstance(new, OrderRejected), new
        assert new.reason == "commit_answer_lost"
        # The resubmit answers the order the id names, as without the lost answer
        assert isinstance(again, Placement), again
        assert again.existing
        assert again.order.state is S.CANCELLED
        creates = eng.journal.query(JournalQuery(stream="order", trigger="create", limit=1000))
        now_s = eng.clock.now().timestamp()
        assert eng.orders._rate.count(now_s) == len(creates) == 2
        await assert_memory_is_the_journal(eng)


async def test_orders_refused_while_a_commit_is_unresolved_leave_no_decision_in_the_rate_window(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: a group failed with journal_unavailable kept its decision in the rate window (only a
    # VersionConflict took it back) although the writer answers journal_unavailable only for a group of
    # which nothing is in the journal (refused at once while a commit is unresolved, or read back as not
    # there): every order refused during an outage counted for a minute after it, memory one create more
    # than a replay of the journal each, and orders were refused risk_order_rate once the journal was back
    fake = FakeExchange()
    settings = replace(settings, risk=replace(settings.risk, max_orders_per_minute=4))
    async with flaky_live(db_url, settings, fake) as (eng, journal):
        journal.lose_answer("create", then_dark=True)
        first = asyncio.create_task(eng.orders.submit(limit("pb-rate-1"), "trader"))
        await eventually(lambda: eng.writer.unresolved)
        for i in range(3):
            with pytest.raises(EngineError) as info:
                await eng.orders.submit(limit(f"pb-rate-x{i}"), "trader")
            assert info.value.reason == "journal_unavailable"
        journal.dark = False
        with pytest.raises(OrderRejected):
            await first  # found durable, never sent (commit_answer_lost)
        await settled(eng, "pb-rate-1")
        creates = eng.journal.query(JournalQuery(stream="order", trigger="create", limit=1000))
        assert [r.stream_id for r in creates] == ["pb-rate-1"]
        assert eng.orders._rate.count(eng.clock.now().timestamp()) == len(creates)
        # The cap has room for what the journal allows: 3 more orders this minute
        for i in range(3):
            placed = await eng.orders.submit(limit(f"pb-rate-{i + 2}"), "trader")
            assert placed.order.state is S.ACKED
        await assert_memory_is_the_journal(eng)


@asynccontextmanager
async def armed_then_lost(
    db_url: str, settings: EngineSettings, trigger: str
) -> AsyncIterator[tuple[Engine, FlakyJournal, FakeExchange]]:
    """An ARMED engine whose next `trigger` row commits, loses its answer, and leaves the journal dark."""
    fake = FakeExchange()
    async with flaky_engine(db_url, settings, fake) as (eng, journal):
        now_s = eng.clock.now().timestamp()
        token = approval_token(eng.sessions.current.session_id, now_s)
        await eng.sessions.guarded("arm", "ops", token, RISK_OK)
        journal.lose_answer(trigger, then_dark=True)
        yield eng, journal, fake


async def refused_at_once(task: asyncio.Task[Any]) -> None:
    """Refused journal_unavailable without waiting, as every new group is while a commit is unresolved."""
    await asyncio.sleep(0.3)
    assert task.done()
    with pytest.raises(EngineError) as info:
        task.result()
    assert info.value.reason == "journal_unavailable"


async def test_an_order_is_refused_at_once_not_decided_late_behind_a_session_transition_being_read_back(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: an order submitted while the session's transition sat in a commit being read back waited for
    # the session (OrderService.submit waits while it is busy) for as long as the journal stayed away,
    # then was decided and sent once it answered, long after its caller may have given up: the late
    # order the writer refuses new groups for, and never sends for a create found that way
    async with armed_then_lost(db_url, settings, "go_live") as (eng, journal, fake):
        live = asyncio.create_task(eng.sessions.guarded("go_live", "ops", None, RISK_OK))
        await asyncio.sleep(0)
        # Decided on no journal answer yet: it waits for the session, across the outage that follows
        early = asyncio.create_task(eng.orders.submit(limit("pb-late-0"), "trader"))
        await eventually(lambda: eng.writer.unresolved)
        # Refused at once (nothing of it recorded)
        await refused_at_once(asyncio.create_task(eng.orders.submit(limit("pb-late-1"), "trader")))
        journal.dark = False
        assert (await live).state.value == "LIVE"  # the go_live landed: found durable, applied
        # The early one is refused too once the journal is back, not decided (LIVE by now) and sent
        with pytest.raises(EngineError) as early_info:
            await early
        assert early_info.value.reason == "journal_unavailable"
        await settled(eng, "pb-late-0", "pb-late-1")
        assert fake.placed == []
        assert fake.tested == []
        assert triggers(eng.journal, "pb-late-0") == []
        assert triggers(eng.journal, "pb-late-1") == []
        await assert_memory_is_the_journal(eng)


async def test_a_session_is_not_armed_late_behind_a_transition_being_read_back(
    db_url: str, settings: EngineSettings
) -> None:
    # Was: arm waited for the session's pending transition (a disarm whose commit answer was lost) for as
    # long as the journal stayed away, then armed it once the journal answered: late, its caller gone
    async with armed_then_lost(db_url, settings, "disarm") as (eng, journal, _fake):
        disarm = asyncio.create_task(eng.sessions.transition("disarm", "ops"))
        await eventually(lambda: eng.writer.unresolved)
        token = approval_token(eng.sessions.current.session_id, eng.clock.now().timestamp())
        await refused_at_once(asyncio.create_task(eng.sessions.guarded("arm", "ops", token, RISK_OK)))
        journal.dark = False
        assert (await disarm).state.value == "TESTNET"
        assert eng.sessions.current.state.value == "TESTNET"  # not armed again
        await assert_memory_is_the_journal(eng)
