"""A warm standby: a replay fed in parts equals one replay of everything (state, head and errors); an
engine that followed the journal while another wrote takes over reading only the newer rows; a row
changed under it after it verified it is found by the prefix verify after the takeover, which HOLDs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.config import EngineSettings
from engine.errors import JournalCorrupt
from engine.persistence.sql_journal import SqlJournal
from engine.replay import Replayer, replay
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce
from tests.engine.conftest import running
from tests.fakes import FakeExchange, FrozenClock
from tests.journal import attacker
from tests.waiting import eventually_async


def _order(cid: str) -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, cid, Decimal("0.001"), Decimal("60000"),
                        TimeInForce.GTC)  # fmt: skip


async def _write(engine: Engine, prefix: str, n: int) -> None:
    for i in range(n):
        await engine.orders.submit(_order(f"pb-{prefix}{i}"), "ops")


def _standby(db_url: str, fake: FakeExchange, settings: EngineSettings) -> Engine:
    return Engine(SqlJournal(db_url), fake, settings, FrozenClock(), session_id="testnet")


async def test_a_replay_fed_in_parts_is_one_replay(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    async with running(db_url, fake, settings) as eng:
        await _write(eng, "p", 6)
    rows = list(SqlJournal(db_url).scan())
    whole = replay(rows)
    for cut in range(len(rows) + 1):
        parts = Replayer()
        parts.feed(rows[:cut])
        got = parts.feed(rows[cut:])
        assert (got.rows, got.last_seq, got.last_hash) == (whole.rows, whole.last_seq, whole.last_hash)
        assert {k: o.state for k, o in got.open_orders.items()} == {
            k: o.state for k, o in whole.open_orders.items()
        }
    broken = Replayer()
    with pytest.raises(JournalCorrupt, match="seq gap"):
        broken.feed(rows[2:])
    with pytest.raises(JournalCorrupt, match="seq gap"):  # a broken replay stays broken
        broken.feed(rows[:1])


async def test_a_standby_that_followed_takes_over_reading_only_the_new_rows(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    standby = _standby(db_url, fake, settings)
    async with running(db_url, fake, settings) as active:
        await _write(active, "a", 5)
        assert await standby.follow(max_rows=3) == 3  # bounded: the lease is polled between calls
        followed = await standby.follow()
        assert followed == active.writer.head[0]  # type: ignore[index]
        await _write(active, "b", 3)  # written after the standby's last look
    report = await standby.start()  # the takeover (the active engine is gone)
    try:
        assert report.rows == standby.writer.head[0]  # type: ignore[index]
        cold = replay(standby.journal.scan())
        assert report.rows == cold.rows
        assert set(standby.orders.open) == set(cold.open_orders)
        await eventually_async(lambda: standby.prefix_verify == "OK", timeout=20)
        assert standby.prefix_verify == "OK"
    finally:
        await standby.stop()


async def test_a_row_changed_under_the_standby_is_found_after_the_takeover(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    standby = _standby(db_url, fake, settings)
    async with running(db_url, fake, settings) as active:
        await _write(active, "a", 4)
        await standby.follow()

    def change_a_payload(rows: attacker.Rows) -> attacker.Rows:
        first = next(r for r in rows if (r[1], r[4]) == ("order", "create"))
        first[7] = first[7].replace('"0.001"', '"0.002"')  # hashes left alone: only a full verify sees it
        return rows

    attacker.rewrite(db_url, change_a_payload, recompute_from=None)
    await standby.start()  # the head the standby verified is still there: it takes over at once
    try:
        await eventually_async(lambda: standby.prefix_verify not in (None, "pending"), timeout=20)
        assert "hash does not match" in str(standby.prefix_verify)
        session = standby.sessions.current
        assert session.state.value == "HOLD"
        assert "journal verify after takeover" in session.hold_reason
    finally:
        await standby.stop()


async def test_a_standby_replays_everything_when_the_head_it_verified_changed(
    db_url: str, fake: FakeExchange, settings: EngineSettings
) -> None:
    standby = _standby(db_url, fake, settings)
    async with running(db_url, fake, settings) as active:
        await _write(active, "a", 3)
        await standby.follow()

    def rewrite_consistently(rows: attacker.Rows) -> attacker.Rows:
        rows[1][8] = "someone"  # the actor of row 2, and every hash from there recomputed
        return rows

    attacker.rewrite(db_url, rewrite_consistently, recompute_from=1)
    report = await standby.start()  # the kept replay is dropped: a cold replay of the chain as it is now
    try:
        assert report.rows == replay(standby.journal.scan()).rows
        assert standby.prefix_verify is None  # nothing warm to check again
    finally:
        await standby.stop()
