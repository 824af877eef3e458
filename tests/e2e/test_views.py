"""Fills, positions and order history (GET /api/fills, /api/positions, /api/orders) through the whole stack:
LIVE orders on the simulator with partial fills, both sides and fees in two assets (the simulator charges
the received asset: BTC on a BUY, USDT on a SELL), checked against a hand computation from the
simulator's own trade list, against a replay of the journal and against `propbot positions`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from api.cli import main
from engine.ledger import project
from engine.persistence.sql_journal import SqlJournal
from tests.e2e.server import ApiServer, approver_key, go_live, paper_settings, simulator_and_api
from tests.waiting import eventually

D = Decimal
_TOLERANCE = D("1e-20")  # average cost is a division: hand and engine may differ past the 20th place


def _hand_positions(trades: list[dict[str, Any]], base: str) -> dict[str, Decimal]:
    """Average cost, written out independently of engine.positions: the venue's trades in id order."""
    qty = cost = realized = D(0)
    fees: dict[str, Decimal] = {}
    for t in sorted(trades, key=lambda t: t["id"]):
        price, q, fee, fee_asset = D(t["price"]), D(t["qty"]), D(t["commission"]), t["commissionAsset"]
        if t["isBuyer"]:
            qty, cost = qty + q, cost + price * q
        else:
            avg = cost / qty
            realized += (price - avg) * q
            qty, cost = qty - q, cost - avg * q
        fees[fee_asset] = fees.get(fee_asset, D(0)) + fee
        if fee_asset == base:  # the fee leaves the holding at its average cost
            cost -= cost / qty * fee
            qty -= fee
    return {
        "quantity": qty,
        "avg_cost": cost / qty,
        "realized_pnl": realized,
        **{f"fee:{a}": v for a, v in fees.items()},
    }


def _order_state(viewer: httpx.Client, cid: str) -> tuple[str, str]:
    rows = [o for o in viewer.get("/api/orders").json()["orders"] if o["clientOrderId"] == cid]
    return (rows[0]["state"], rows[0]["filledQty"]) if rows else ("", "")


def _price(sim: Any, price: str) -> None:
    httpx.post(f"{sim.base_url}/_sim/price", json={"symbol": "BTCUSDT", "price": price}).raise_for_status()


def _limit(side: str, qty: str, price: str, cid: str) -> dict[str, str]:
    return {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty,
            "price": price, "newClientOrderId": cid}  # fmt: skip


def _trade_flow(sim: Any, api: ApiServer) -> None:
    """Partial fills of resting BUYs, a partly filled order cancelled, a MARKET SELL sweeping two levels
    and a resting SELL filled: the venue fills at most 0.05 BTC per price move."""
    trader, viewer = api.client("trader"), api.client("viewer")
    placed = trader.post("/api/live/order", json=_limit("BUY", "0.08", "64000", "pb-v-buy-1"))
    assert (placed.status_code, placed.json()["state"]) == (200, "ACKED"), placed.text
    _price(sim, "64000")
    eventually(lambda: _order_state(viewer, "pb-v-buy-1") == ("PARTIALLY_FILLED", "0.05000000"))
    _price(sim, "64000")
    eventually(lambda: _order_state(viewer, "pb-v-buy-1")[0] == "FILLED")

    placed = trader.post("/api/live/order", json=_limit("BUY", "0.06", "63000", "pb-v-buy-2"))
    assert placed.status_code == 200, placed.text
    _price(sim, "63000")
    eventually(lambda: _order_state(viewer, "pb-v-buy-2") == ("PARTIALLY_FILLED", "0.05000000"))
    cancelled = trader.post("/api/live/cancel", json={"symbol": "BTCUSDT", "origClientOrderId": "pb-v-buy-2"})
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "CANCELLED"), cancelled.text

    market = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.07",
              "newClientOrderId": "pb-v-sell-1"}  # fmt: skip
    sold = trader.post("/api/live/order", json=market)
    assert (sold.status_code, sold.json()["state"]) == (200, "FILLED"), sold.text

    placed = trader.post("/api/live/order", json=_limit("SELL", "0.04", "65500", "pb-v-sell-2"))
    assert placed.status_code == 200, placed.text
    _price(sim, "65500")
    eventually(lambda: _order_state(viewer, "pb-v-sell-2")[0] == "FILLED")


def test_positions_equal_a_hand_computation_from_the_simulators_trades(tmp_path: Path) -> None:
    key, public = approver_key()
    with simulator_and_api(
        tmp_path, sim_kwargs={"quiet_market": True}, safe_mode=False, ws_api=True,
        approvals={"public_keys": {"approver2": public}}, binance={"poll_interval_s": 60, "timeout_s": 5},
    ) as (sim, api):  # fmt: skip
        viewer = api.client("viewer")
        # Fills of resting orders arrive by the user data stream, each with its trade (id, price, fee)
        eventually(lambda: api.runtime.engine.exchange.stream_live)
        go_live(api, key)
        _trade_flow(sim, api)
        trades = sim.state.engine.my_trades("BTCUSDT", limit=1000)
        assert len(trades) == 6  # 2 + 1 fills of the BUYs, 2 levels of the MARKET SELL, 1 resting SELL
        assert {t["commissionAsset"] for t in trades} == {"BTC", "USDT"}

        # Every trade of the venue once, with its side, price, quantity and fee
        fills = viewer.get("/api/fills", params={"symbol": "BTCUSDT"}).json()
        assert fills["next_after_seq"] is None
        got = sorted(
            (f["tradeId"], f["side"], D(f["price"]), D(f["qty"]), D(f["commission"]), f["commissionAsset"])
            for f in fills["fills"]
        )
        want = sorted(
            (t["id"], "BUY" if t["isBuyer"] else "SELL", D(t["price"]), D(t["qty"]), D(t["commission"]),
             t["commissionAsset"])
            for t in trades
        )  # fmt: skip
        assert got == want

        body = viewer.get("/api/positions").json()
        assert body["ok"] is True
        [pos] = body["positions"]
        assert (pos["asset"], pos["cost_asset"], pos["trades"], pos["untraced_trades"]) == (
            "BTC",
            "USDT",
            6,
            0,
        )
        hand = _hand_positions(trades, "BTC")
        assert D(pos["quantity"]) == hand["quantity"]
        assert abs(D(pos["avg_cost"]) - hand["avg_cost"]) < _TOLERANCE
        assert abs(D(pos["realized_pnl"]) - hand["realized_pnl"]) < _TOLERANCE
        assert {a: D(v) for a, v in pos["fees"].items()} == {
            k.removeprefix("fee:"): v for k, v in hand.items() if k.startswith("fee:")
        }
        assert body["fees_total"] == pos["fees"]
        # The quantity is what the venue's own balance moved by
        assert D(pos["quantity"]) == _balance(sim, "BTC") - D(1)

        # The same numbers by replay of the journal alone, in-process and through the auditor's CLI
        journal = SqlJournal(api.settings.db_url)
        try:
            ledger, _ = project(journal.scan())
        finally:
            journal.close()
        assert ledger.positions()["positions"] == body["positions"]
        assert ledger.positions()["as_of_seq"] <= body["as_of_seq"]  # audit rows may follow the last trade

        orders = viewer.get("/api/orders", params={"symbol": "BTCUSDT"}).json()["orders"]
        assert [(o["clientOrderId"], o["state"], o["side"]) for o in orders] == [
            ("pb-v-buy-1", "FILLED", "BUY"), ("pb-v-buy-2", "CANCELLED", "BUY"), ("pb-v-sell-1", "FILLED", "SELL"),
            ("pb-v-sell-2", "FILLED", "SELL"),
        ]  # fmt: skip
        one = viewer.get("/api/fills", params={"clientOrderId": "pb-v-sell-1"}).json()["fills"]
        assert len(one) == 2
        assert one[0]["seq"] == one[1]["seq"]  # one journal row (the FULL answer), two levels of the book
    cli_out = _cli(
        ["positions", "--profile", "testnet", "--data-dir", str(tmp_path), "--db", api.settings.db_url]
    )
    assert json.loads(cli_out)["positions"] == body["positions"]
    lines = _cli(["fills", "--profile", "testnet", "--data-dir", str(tmp_path), "--db", api.settings.db_url,
                  "--symbol", "BTCUSDT"]).splitlines()  # fmt: skip
    assert [json.loads(line) for line in lines] == fills["fills"]


def _cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def _balance(sim: Any, asset: str) -> Decimal:
    ledger = sim.state.engine.ledger
    return Decimal(ledger.free[asset] + ledger.locked[asset])


def test_fills_learned_by_polling_add_up_to_the_venues_trades(tmp_path: Path) -> None:
    """Without the user data stream, fills of resting orders are learned by polling. Whether the adapter
    completes them with their trades or not (untraced: counted by quantity at the average price from
    cumQuoteQty, without a fee), the fills add up to the venue's trades and the quantity to what they
    bought and sold less the base-asset fees the journal knows."""
    key, public = approver_key()
    with simulator_and_api(
        tmp_path, sim_kwargs={"quiet_market": True}, safe_mode=False,
        approvals={"public_keys": {"approver2": public}},
    ) as (sim, api):  # fmt: skip
        go_live(api, key)
        _trade_flow(sim, api)
        viewer = api.client("viewer")
        trades = sim.state.engine.my_trades("BTCUSDT", limit=1000)
        [pos] = viewer.get("/api/positions").json()["positions"]
        fills = viewer.get("/api/fills").json()["fills"]
        traced = [f for f in fills if f["traced"]]
        assert pos["untraced_trades"] == len(fills) - len(traced)
        for side in ("BUY", "SELL"):
            venue = sum(D(t["qty"]) for t in trades if t["isBuyer"] == (side == "BUY"))
            assert sum(D(f["qty"]) for f in fills if f["side"] == side) == venue
            quote = sum(D(t["quoteQty"]) for t in trades if t["isBuyer"] == (side == "BUY"))
            assert sum(D(f["quoteQty"]) for f in fills if f["side"] == side) == quote
        signed = sum(D(t["qty"]) * (1 if t["isBuyer"] else -1) for t in trades)
        base_fees = sum(D(f["commission"]) for f in traced if f["commissionAsset"] == "BTC")
        assert D(pos["quantity"]) == signed - base_fees
        assert all(f["tradeId"] is None and f["commission"] is None for f in fills if not f["traced"])


def test_positions_read_while_fills_arrive_are_each_a_journal_prefix(tmp_path: Path) -> None:
    """Orders filling concurrently with reads of /api/positions: every answer is exactly the replay of
    the journal up to its as_of_seq, never a half-applied fill."""

    async def flow(api: ApiServer) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {api.tokens['trader']}"}
        async with httpx.AsyncClient(base_url=api.base_url, headers=headers, timeout=20) as client:

            async def order(i: int) -> None:
                side = "BUY" if i % 3 else "SELL"
                body = {"symbol": "ETHUSDT", "side": side, "type": "MARKET", "quantity": f"0.0{i % 5 + 1}"}
                r = await client.post("/api/live/order", json=body)
                assert (r.status_code, r.json()["state"]) == (200, "FILLED"), r.text

            async def read() -> dict[str, Any]:
                r = await client.get("/api/positions")
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body

            async def orders_in_pairs() -> None:
                for i in range(0, 20, 2):
                    await asyncio.gather(order(i), order(i + 1))

            orders = asyncio.ensure_future(orders_in_pairs())
            snapshots = []
            while not orders.done():  # two readers, back to back, for as long as orders are filling
                snapshots += await asyncio.gather(read(), read())
            await orders
            return [*snapshots, await read()]

    with ApiServer(paper_settings(tmp_path)) as api:
        snapshots = asyncio.run(flow(api))
        url = api.settings.db_url
    assert snapshots[-1]["positions"][0]["trades"] == 20
    journal = SqlJournal(url)
    try:
        rows = list(journal.scan())
    finally:
        journal.close()
    for snap in snapshots:
        prefix = [r for r in rows if r[0] <= snap["as_of_seq"]]
        ledger, _ = project(prefix)
        assert {"ok": True, **ledger.positions()} == snap


def test_bad_filters_are_422_invalid_query(tmp_path: Path) -> None:
    with ApiServer(paper_settings(tmp_path)) as api:
        viewer = api.client("viewer")
        for path, params in [
            ("/api/fills", {"since": "yesterday"}),
            ("/api/fills", {"until": "2026-01-01T00:00:00"}),  # no timezone
            ("/api/fills", {"limit": "0"}),
            ("/api/fills", {"symbol": "btc usdt"}),
            ("/api/fills", {"clientOrderId": "bad id!"}),
            ("/api/orders", {"state": "FILLED,BOGUS"}),
            ("/api/orders", {"open": "maybe"}),
            ("/api/orders", {"after_seq": "-1"}),
            ("/api/orders", {"limit": "1001"}),
        ]:
            r = viewer.get(path, params=params)
            assert (r.status_code, r.json()["reason"]) == (422, "invalid_query"), (path, params, r.text)
        assert api.client().get("/api/positions").status_code == 401
        ok = viewer.get("/api/orders", params=[("state", "FILLED"), ("state", "CANCELLED,ACKED")])
        assert ok.status_code == 200
        since = viewer.get("/api/fills", params={"since": "2020-01-01T00:00:00+00:00"})
        assert since.json() == {"ok": True, "fills": [], "next_after_seq": None}
