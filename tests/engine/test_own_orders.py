"""Own orders only: the client-order-id prefix tells ours from foreign ones. Adoption, cancel-all and
cancel-on-disconnect touch only ours; each foreign working order is journaled once (an `external_order`
audit row, also across restarts) and listed for /api/status, never adopted or cancelled."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

import pytest

from engine.client_ids import check_prefix, new_client_order_id
from engine.config import EngineSettings
from engine.errors import OrderRejected
from engine.fsm.order_table import OrderState
from engine.fsm.session_table import SessionState
from engine.journal import JournalQuery
from engine.runtime import Engine
from engine.types import OrderRequest, OrderType, Side, TimeInForce, VenueStatus
from tests.engine.conftest import running
from tests.fakes import FakeExchange
from tests.waiting import eventually_async as eventually

BINANCE_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")  # fix-api.md "Client order ID fields"


def limit(cid: str, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", side, OrderType.LIMIT, cid, Decimal("0.001"), Decimal("65000.00"), TimeInForce.GTC
    )


def external_rows(eng: Engine) -> list[dict[str, object]]:
    rows = eng.journal.query(JournalQuery(limit=1000, stream="audit", trigger="external_order"))
    return [r.payload for r in rows]


async def venue_with_foreign() -> FakeExchange:
    fake = FakeExchange()
    await fake.place(limit("pb-mine"))  # ours, unknown to the journal (e.g. placed by a lost run)
    await fake.place(limit("bot2-1", Side.SELL))  # another bot's order on the same account
    return fake


async def test_only_own_orders_are_adopted_and_foreign_ones_are_journaled_once(
    db_url: str, settings: EngineSettings
) -> None:
    fake = await venue_with_foreign()
    async with running(db_url, fake, settings) as eng:
        assert eng.report.problems == []
        assert eng.sessions.current.state is SessionState.TESTNET  # reported, not held (the default)
        assert eng.orders.open["pb-mine"].state is OrderState.ACKED  # adopted
        assert "bot2-1" not in eng.orders.open
        assert eng.journal.stream("order", "bot2-1") == []
        [row] = external_rows(eng)
        assert (row["symbol"], row["clientOrderId"], row["orderId"], row["status"], row["side"], row["qty"]) == (
            "BTCUSDT", "bot2-1", fake.orders["bot2-1"].order_id, "NEW", "SELL", "0.001"
        )  # fmt: skip
        assert [o["clientOrderId"] for o in eng.orders.foreign_orders()] == ["bot2-1"]
        # The same order pushed again (twice, at once) is still one row
        for _ in range(2):
            for listener in fake.listeners:
                listener(fake.orders["bot2-1"])
        assert eng.orders.cancellable() == [eng.orders.open["pb-mine"]]
        await eng.orders.cancel_all("panic", "ops")  # the kill switch: HOLD, then cancel our orders
        await eventually(lambda: fake.orders["pb-mine"].status is VenueStatus.CANCELED)
        assert fake.orders["bot2-1"].status is VenueStatus.NEW  # never touched
    fake.listeners.clear()
    async with running(db_url, fake, settings) as again:  # a restart sees it again: not journaled twice
        assert [o["clientOrderId"] for o in again.orders.foreign_orders()] == ["bot2-1"]
        assert len(external_rows(again)) == 1


async def test_a_foreign_order_pushed_later_is_reported_and_leaves_the_report_when_done(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings) as eng:
        await fake.place(limit("human-7"))
        fake.fill("human-7", Decimal("0.0004"))  # pushed: a fill of someone else's order
        await eventually(lambda: len(external_rows(eng)) == 1)
        assert external_rows(eng)[0]["status"] == "PARTIALLY_FILLED"
        assert eng.orders.foreign_orders()[0]["status"] == "PARTIALLY_FILLED"
        assert "human-7" not in eng.orders.open
        fake.fill("human-7", Decimal("0.0006"), VenueStatus.FILLED)
        assert eng.orders.foreign_orders() == []
        await eng.writer.append([eng.audit_entry("test", "barrier", {})])  # every earlier row is durable
        assert eng.journal.stream("order", "human-7") == []
        assert len(external_rows(eng)) == 1


async def test_foreign_orders_hold_the_session_when_the_config_says_so(
    db_url: str, settings: EngineSettings
) -> None:
    fake = await venue_with_foreign()
    async with running(db_url, fake, replace(settings, hold_on_foreign_orders=True)) as eng:
        assert eng.sessions.current.state is SessionState.HOLD
        assert "foreign" in (eng.sessions.current.hold_reason or "")


async def test_an_id_without_the_prefix_is_refused_before_anything_is_journaled(
    db_url: str, settings: EngineSettings
) -> None:
    fake = FakeExchange()
    async with running(db_url, fake, settings, live=True) as eng:
        with pytest.raises(OrderRejected) as info:
            await eng.orders.submit(limit("my-1"), "trader")
        assert info.value.reason == "client_order_id_prefix"
        assert eng.journal.stream("order", "my-1") == []
        assert fake.placed == []
        # the same id with the prefix goes through, and a replay of it is idempotent
        first = await eng.orders.submit(limit("pb-my-1"), "trader")
        again = await eng.orders.submit(limit("pb-my-1"), "trader")
        assert (first.order.state, again.existing, len(fake.placed)) == (OrderState.ACKED, True, 1)


async def test_a_configured_prefix_decides_what_is_ours(db_url: str, settings: EngineSettings) -> None:
    fake = FakeExchange()
    await fake.place(limit("desk7_a1"))
    await fake.place(limit("pb-old"))  # the default prefix is not ours under this configuration
    async with running(db_url, fake, replace(settings, client_order_id_prefix="desk7_")) as eng:
        assert sorted(eng.orders.open) == ["desk7_a1"]
        assert [o["clientOrderId"] for o in eng.orders.foreign_orders()] == ["pb-old"]


@pytest.mark.parametrize("prefix", ["pb-", "x", "A_b-9", "p" * 20])
def test_generated_ids_carry_the_prefix_and_fit_binance(prefix: str) -> None:
    assert check_prefix(prefix) == prefix
    cid = new_client_order_id(prefix)
    assert cid.startswith(prefix)
    assert BINANCE_ID.match(cid)
    assert len(cid) - len(prefix) >= 16  # 64 random bits at least


@pytest.mark.parametrize("prefix", ["", "pb.", "a/b", "p" * 21, "pb-\n", "é"])
def test_an_invalid_prefix_fails_closed(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        EngineSettings(client_order_id_prefix=prefix)


async def test_an_open_order_without_the_prefix_from_an_older_journal_is_never_cancelled_in_bulk(
    db_url: str, settings: EngineSettings
) -> None:
    """A journal written before the prefix (or under another one) may hold an open order without it:
    cancel-all and cancel-on-disconnect leave it alone; cancelling it by its id still works."""
    from api.bootstrap import _cancel_open_on
    from engine.order import decide_create

    fake = FakeExchange()
    old = limit("legacy-1")
    await fake.place(old)
    await fake.place(limit("pb-new-1"))
    async with running(db_url, fake, settings) as eng:
        entries = [decide_create(old, "live", "trader")]
        entries += eng.orders.store.chain(OrderState.NEW, 1, "legacy-1", [("adopt", {"orderId": 1}, "")], "t")
        await eng.writer.append(entries)
    async with running(db_url, fake, settings) as eng:
        assert {"legacy-1", "pb-new-1"} <= set(eng.orders.open)
        assert [o.client_order_id for o in eng.orders.cancellable("BTCUSDT")] == ["pb-new-1"]
        await _cancel_open_on(eng, "BTCUSDT")()  # the market-data watchdog's cancel_on_disconnect
        assert fake.orders["pb-new-1"].status is VenueStatus.CANCELED
        assert fake.orders["legacy-1"].status is VenueStatus.NEW
        await fake.place(limit("pb-new-2"))
        await eng.orders.reconcile_open()  # adopted: ours, open
        await eng.orders.cancel_all("panic", "ops")
        await eventually(lambda: fake.orders["pb-new-2"].status is VenueStatus.CANCELED)
        assert fake.orders["legacy-1"].status is VenueStatus.NEW
        # the switch's status counts own orders only: the foreign one resting keeps no retry going
        await eventually(lambda: eng.orders.kill_switch.status()["status"] == "OK")
        assert eng.orders.kill_switch.status() == {
            "status": "OK",
            "engaged": True,
            "uncancelled": [],
            "unresolved": [],
        }
        await eng.orders.cancel("BTCUSDT", "legacy-1", None, "ops")  # by name: an operator's own call
        assert fake.orders["legacy-1"].status is VenueStatus.CANCELED
